/*
 * he_checker.c - electing, starting and running the checker process.
 *
 * Life of a checker
 *   - A reader that needs a run and finds no live checker takes the
 *     election lock (flock on path.lock, non-blocking) and double-forks:
 *     the go-between exits at once, so the checker is reparented (init or
 *     a subreaper reaps it; we never install a waitpid(-1) reaper, which
 *     would steal exit codes from RT's own system() calls).  The reader
 *     closes its copy of the lock descriptor; the checker's copy keeps the
 *     lock until it dies, and the kernel releases it then.
 *   - The checker drops everything of RT's (descriptors, signal handlers),
 *     limits its memory, publishes its pid and a heartbeat, and waits on
 *     the `wanted` futex.  It exits when asked to retire, when its master
 *     (the server process whose worker started it) is gone, when no
 *     reader came for HE_LEASE_NS, or when the state file was replaced.
 *   - A run (he_run.c) hands each check to its child process (waiting
 *     from the run before), kills what overstays its deadline, and
 *     publishes the results.
 * Nothing here returns to Perl in a forked process; a child only ever
 * ends with _exit().
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "he_checker.h"
#include "he_proc.h"

#define ELECT_TRIES 20                  /* x 5 ms for an exiting holder */

typedef struct {
    he_shm *m;
    he_shared *sh;
    const he_checker_ctx *x;
    long self;
    uint32_t gen;
    long master;                        /* 0: none, the lease decides */
    uint64_t master_start;
    int64_t next_watch_ns;              /* next look at master and file */
    int lockfd;
} he_checker;

/* ---- the checker's own life ------------------------------------------- */

static void
checker_exit(he_checker *k)
{
    /* Mid-run too: no reader may wait for, or take slots of, a run that
     * will never publish.  The lock is still ours, so no successor has
     * begun a run of its own yet. */
    he_store32(&k->sh->running, 0);
    he_cas32((uint32_t *)&k->sh->checker_pid, (uint32_t)k->self, 0);
    _exit(0);
}

/* 1 when this checker should go: replaced, retired, orphaned, idle. */
static int
should_exit(he_checker *k, int64_t now)
{
    he_shared *sh = k->sh;

    if ((long)(int32_t)he_load32((uint32_t *)&sh->checker_pid) != k->self
        || he_load32(&sh->retire) == k->gen)
        return 1;
    if (he_load64(&sh->last_read_ns) < now - HE_LEASE_NS)
        return 1;                       /* (compared, not subtracted: the
                                           file's values may be anything) */
    if (now < k->next_watch_ns)
        return 0;
    k->next_watch_ns = now + HE_TICK_NS;
    if (k->master > 0 && !he_proc_alive(k->master, k->master_start))
        return 1;
    return he_shm_replaced(k->m);
}

/* A run's watch: go at once when it is time, without waiting for the run
 * (the children die with us). */
static void
watch_run(void *ctx, int64_t now)
{
    he_checker *k = ctx;

    if (should_exit(k, now))
        checker_exit(k);
}

/* Publish who we are.  A writer that died inside the change counter left
 * it odd: make it even again (the next run republishes everything). */
static void
take_over(he_checker *k)
{
    he_shared *sh = k->sh;
    int64_t now = he_now_ns();

    k->gen = __atomic_add_fetch(&sh->checker_gen, 1, __ATOMIC_SEQ_CST);
    sh->checker_starttime = he_proc_starttime(k->self);
    sh->checker_hash = k->x->hash;
    sh->checker_stamp = k->x->stamp;
    snprintf(sh->checker_version, sizeof sh->checker_version, "%s",
             k->x->version ? k->x->version : "");
    he_store64(&sh->last_read_ns, now);
    he_store64(&sh->heartbeat_ns, now);
    he_store32(&sh->running, 0);
    if (he_load32(&sh->changecount) & 1)
        __atomic_fetch_add(&sh->changecount, 1, __ATOMIC_SEQ_CST);
    he_store32((uint32_t *)&sh->checker_pid, (uint32_t)k->self);
}

static void
checker_main(he_shm *m, const he_checker_ctx *x, long master, int lockfd)
{
    char title[256];
    he_checker k;
    he_run run;
    uint32_t w;
    int64_t now;

    memset(&k, 0, sizeof k);
    k.m = m;
    k.sh = m->sh;
    k.x = x;
    k.self = (long)getpid();
    k.lockfd = lockfd;
    k.master = master;
    k.master_start = master > 0 ? he_proc_starttime(master) : 0;
    he_proc_reset_signals();
    he_proc_close_fds(lockfd);
    if (m->is_file)
        snprintf(title, sizeof title, "rt-healthendpoint checker (%s)",
                 m->path);
    else
        snprintf(title, sizeof title, "rt-healthendpoint checker (for "
                 "process %ld only)", master);
    if (x->set_title != NULL)
        x->set_title(x->title_ctx, title);
    he_proc_set_title(title);           /* where $0 could not */
    he_proc_set_name("rt-he-checker");  /* after: $0 sets it too */
    he_proc_limit(HE_RUN_DATA_EXTRA);
    take_over(&k);
    he_run_init(&run, k.sh, x, k.self, lockfd, watch_run, &k);
    for (;;) {
        now = he_now_ns();
        he_store64(&k.sh->heartbeat_ns, now);
        if (should_exit(&k, now))
            checker_exit(&k);
        w = he_load32(&k.sh->wanted);
        if (he_seq_after(w, he_load32(&k.sh->result_seq))) {
            he_run_checks(&run);
            continue;
        }
        he_run_reap(&run);
        he_wait_word(&k.sh->wanted, w, HE_TICK_NS);
    }
}

/* ---- starting one ----------------------------------------------------- */

/* Take the election lock.  Returns its descriptor (the caller hands it to
 * the checker and closes its own copy), or -1 when another process holds
 * it (err empty) or it cannot be opened (err set).  A holder that is on
 * its way out (killed, retiring) lets go within milliseconds: try again a
 * few times, unless a checker newer than generation gen has taken over
 * meanwhile (another worker won: waiting for it would only delay this
 * request). */
static int
elect(he_shm *m, uint32_t gen, char *err, size_t errlen)
{
    int fd, i;

    err[0] = '\0';
    fd = open(m->lock_path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "%s: %s", m->lock_path, strerror(errno));
        return -1;
    }
    for (i = 0; i < ELECT_TRIES; i++) {
        if (flock(fd, LOCK_EX | LOCK_NB) == 0)
            return fd;
        if (errno != EWOULDBLOCK && errno != EINTR) {
            snprintf(err, errlen, "%s: flock: %s", m->lock_path,
                     strerror(errno));
            break;
        }
        if (he_load32(&m->sh->checker_gen) != gen)
            break;
        he_sleep_ns(5 * HE_NS_PER_MS);
    }
    close(fd);
    return -1;
}

/* Fork the go-between, which forks the checker and exits.  0 or -1. */
static int
start(he_shm *m, const he_checker_ctx *x, int lockfd, char *err,
      size_t errlen)
{
    long master = m->is_file ? (long)getppid() : (long)getpid();
    pid_t pid = fork();

    if (pid < 0) {
        snprintf(err, errlen, "cannot start the checker: fork: %s",
                 strerror(errno));
        return -1;
    }
    if (pid == 0) {
        pid_t c = fork();

        if (c == 0)
            checker_main(m, x, master > 1 ? master : 0, lockfd);
        _exit(c < 0 ? 1 : 0);
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return 0;
}

he_checker_state
he_checker_ensure(he_shm *m, const he_checker_ctx *x, char *err,
                  size_t errlen)
{
    he_shared *sh = m->sh;
    int64_t now = he_now_ns(), beat = he_load64(&sh->heartbeat_ns);
    long pid = (long)(int32_t)he_load32((uint32_t *)&sh->checker_pid);
    uint64_t started = sh->checker_starttime;
    /* fresh: within HE_STALE_NS, and not from the future (a corrupt file;
     * a tick ahead is a live checker that wrote after we read the clock) */
    int alive = pid > 0 && beat > now - HE_STALE_NS && beat <= now + HE_TICK_NS;
    uint32_t gen = he_load32(&sh->checker_gen);
    int fd = -1;

    /* a checker killed a moment ago still has a fresh heartbeat: ask the
     * kernel whether it lives (a zombie does not: an init that does not
     * reap is common in containers) and is not a reused pid */
    if (alive)
        alive = he_proc_alive(pid, started);
    if (alive) {
        if (sh->checker_hash == x->hash || x->stamp <= sh->checker_stamp)
            return HE_CHECKER_SERVES;
        /* ours is newer: the old one goes, we take over */
        he_store32(&sh->retire, he_load32(&sh->checker_gen));
        he_wake_word(&sh->wanted);
    } else if (pid > 0 && started != 0 && he_proc_alive(pid, started)) {
        /* hung: its children die with it.  Never a pid whose start time is
         * unknown: that may be anybody's by now */
        kill((pid_t)pid, SIGKILL);
    }
    if (m->is_file) {
        fd = elect(m, gen, err, errlen);
        if (fd < 0 && err[0] != '\0')
            return HE_CHECKER_ERROR;
        if (fd < 0)
            return he_shm_replaced(m) ? HE_CHECKER_REPLACED
                                      : HE_CHECKER_ELSEWHERE;
    }
    if (start(m, x, fd, err, errlen) != 0) {
        if (fd >= 0)
            close(fd);
        return HE_CHECKER_ERROR;
    }
    if (fd >= 0)
        close(fd);                      /* never LOCK_UN: that frees ours */
    return HE_CHECKER_STARTED;
}

int
he_checker_gone(he_shm *m)
{
    long pid = (long)(int32_t)he_load32((uint32_t *)&m->sh->checker_pid);

    return pid <= 0 || !he_proc_alive(pid, m->sh->checker_starttime);
}

void
he_checker_retire(he_shm *m)
{
    if (m->sh == NULL)
        return;
    he_store32(&m->sh->retire, he_load32(&m->sh->checker_gen));
    he_wake_word(&m->sh->wanted);
}
