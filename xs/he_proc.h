/*
 * he_proc.h - what a process forked from an RT worker needs to become a
 * clean helper: no inherited descriptors or signal handlers, bounded
 * resources, a name in ps, and knowing whether another process lives.
 * Plain POSIX plus Linux extras where available (prctl, close_range,
 * /proc); nothing here includes perl.h.
 */
#ifndef HE_PROC_H
#define HE_PROC_H

#include <stdint.h>

/* Close every descriptor but keep (-1: none); 0, 1 and 2 are reopened on
 * /dev/null, so that nothing RT's (its log, a client connection, the
 * listening socket, a database handle) stays open here. */
void he_proc_close_fds(int keep);

/* Every signal back to its default action and unblocked; SIGPIPE ignored
 * (a peer that goes away is an error code, not a death). */
void he_proc_reset_signals(void);

/* RLIMIT_DATA at the current data size plus extra bytes, no core files. */
void he_proc_limit(uint64_t extra_data);

/* The soft RLIMIT_CPU at the CPU time used so far plus seconds (SIGXCPU
 * then ends the process); the hard limit stays, so that a process that
 * lives on can move it again. */
void he_proc_limit_cpu(unsigned seconds);

/* The command line ps shows, where the process's own argv area allows:
 * for when perl's $0 could not (mod_perl).  Cut to the area's length. */
void he_proc_set_title(const char *title);

/* The kernel's name of this process (ps -o comm, top), at most 15 bytes. */
void he_proc_set_name(const char *name);

/* Die with SIGKILL when the process parent exits; if it already has, exit
 * at once. */
void he_proc_die_with(long parent);

/* Start time of pid (ticks since boot, /proc/PID/stat field 22), or 0 when
 * unknown. */
uint64_t he_proc_starttime(long pid);

/* 1 if pid is alive (a zombie is not) and, when starttime is not 0, is
 * the same process (not a reused pid).  EPERM from kill(pid, 0) means
 * alive: a root-owned server master. */
int he_proc_alive(long pid, uint64_t starttime);

#endif /* HE_PROC_H */
