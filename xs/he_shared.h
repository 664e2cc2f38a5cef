/*
 * he_shared.h - the health state shared by every process of one RT
 * instance: one small file, mapped MAP_SHARED, never replaced.
 *
 * Who writes what
 *   - The checker (he_checker.c) owns the identity, the run control and
 *     the published results; it is the only writer of `pub`, under the
 *     change counter (PostgreSQL's st_changecount protocol: odd while a
 *     write is under way; a reader copies, and retries while the counter is
 *     odd or has moved).
 *   - A run's children write only their own `slot` (phase, then result).
 *   - Readers (RT's workers, he_status.c) write `wanted` (max-CAS), the
 *     lease stamp, the retire request and the logging fields (CAS).
 * Times are CLOCK_MONOTONIC nanoseconds (one clock for the whole machine),
 * except config_stamp (CLOCK_REALTIME: compared across restarts).
 *
 * Nothing here includes perl.h.
 */
#ifndef HE_SHARED_H
#define HE_SHARED_H

#include <stddef.h>
#include <stdint.h>

#include "he.h"

#define HE_SHARED_MAGIC 0x54534548u    /* "HEST" in the file, x86 order */
#define HE_SHARED_LAYOUT 1u             /* bump when the struct changes */
#define HE_SHARED_SIZE 8192             /* bytes of the file */
#define HE_VERSION_LEN 16
#define HE_TYPE_LEN 16

typedef enum {
    HE_CHECK_DB = 0,
    HE_CHECK_REDIS = 1,
    HE_NCHECKS = 2
} he_check_id;

/* One check's result as published. */
typedef struct {
    int32_t result;                     /* he_result; -1: never run */
    uint32_t event;                     /* +1 at each turn to fail or back */
    int64_t at_ns;                      /* when the run ended */
    int64_t elapsed_ns;                 /* how long the check took */
    uint64_t runs;                      /* counters, for a metrics reader */
    uint64_t failures;
    int64_t fail_since_ns;              /* start of the current failure */
    uint32_t fail_runs;                 /* failed runs since then */
    uint32_t ended_runs;                /* of the failure that just ended */
    int64_t ended_after_ns;             /* its length */
} he_pub_check;

/* What readers copy on every status request (small on purpose). */
typedef struct {
    uint64_t config_hash;               /* the configuration that ran */
    int64_t config_stamp;
    he_pub_check check[HE_NCHECKS];
    char db_type[HE_TYPE_LEN];          /* for the log lines */
} he_pub;

/* A run's child writes its check's outcome here, then sets done. */
typedef struct {
    uint32_t phase;                     /* he_phase, stored atomically */
    uint32_t done;                      /* 1: result and reason are set */
    int32_t result;
    int32_t pad;
    int64_t elapsed_ns;
    char reason[HE_ERRLEN];
} he_slot;

typedef struct {
    /* header: written once, when the file is initialised */
    uint32_t magic;
    uint32_t layout;
    uint32_t size;
    uint32_t pad0;
    char version[HE_VERSION_LEN];       /* module that initialised it */
    char boot_id[40];                   /* the monotonic clock's boot: a
                                           file from before a reboot holds
                                           times of another clock */

    /* the checker (written by it; read by anyone) */
    int32_t checker_pid;                /* 0: none */
    uint32_t checker_gen;               /* +1 at each start */
    uint64_t checker_starttime;         /* /proc/PID/stat field 22 */
    int64_t heartbeat_ns;               /* at least every HE_TICK */
    uint64_t checker_hash;              /* its configuration */
    int64_t checker_stamp;              /* when that was built (realtime) */
    char checker_version[HE_VERSION_LEN];
    uint32_t retire;                    /* = checker_gen: please exit */

    /* run control */
    uint32_t wanted;                    /* futex: a result after this seq */
    uint32_t running;                   /* 1 during a run */
    uint32_t pad1;
    int64_t run_started_ns;
    int64_t run_deadline_ns;
    int64_t last_read_ns;               /* lease: a reader was here */
    he_slot slot[HE_NCHECKS];

    /* published results */
    uint32_t changecount;               /* odd while being written */
    uint32_t result_seq;                /* futex: +1 per publication */
    he_pub pub;
    char reason[HE_NCHECKS][HE_ERRLEN]; /* why, for the log (escaped) */

    /* logging: which process writes RT's log line, decided by CAS */
    uint32_t logged_event[HE_NCHECKS];
    int64_t reminded_ns[HE_NCHECKS];
} he_shared;

/* A process's attachment to the state. */
typedef struct {
    he_shared *sh;                      /* the mapping; NULL: none */
    int is_file;                        /* 0: a private anonymous mapping */
    long owner_pid;                     /* who mapped a private one */
    char *path;                         /* the state file (owned) */
    char *lock_path;                    /* path + ".lock" (owned) */
    unsigned long dev, ino;             /* the file mapped */
} he_shm;

/*
 * Map the state file at path: create it (O_EXCL, 0600) or open it, check
 * owner, type and layout, (re-)initialise it under an flock when it is new
 * or corrupt.  The lock file path.lock is created beside it.  Returns 0,
 * or -1 with the reason in err (m is then left detached).
 */
int he_shm_attach_file(he_shm *m, const char *path, const char *version,
                       char *err, size_t errlen);

/* A private MAP_SHARED|MAP_ANONYMOUS state for this process alone (and
 * the checker it forks).  0 or -1 with err. */
int he_shm_attach_private(he_shm *m, const char *version, char *err,
                          size_t errlen);

/* Unmap and free the paths; m is all zero afterwards. */
void he_shm_detach(he_shm *m);

/* 1 if m is usable by this process: attached, and a private mapping
 * only by the process that made it (a fork must make its own). */
int he_shm_usable(const he_shm *m, long pid);

/* 1 if the path no longer names the file this process mapped (someone
 * deleted or replaced it): the caller should attach again. */
int he_shm_replaced(const he_shm *m);

/* Copy the published results (and, when reasons is not NULL, the reason
 * texts) consistently.  *seq gets the result_seq the copy belongs to.
 * Returns 0, or -1 if no consistent copy could be made (a writer died in
 * the middle: the next checker repairs it). */
int he_shm_read(he_shared *sh, he_pub *out, char (*reasons)[HE_ERRLEN],
                uint32_t *seq);

/* Writer side of the change counter (the checker only). */
void he_shm_write_begin(he_shared *sh);
void he_shm_write_end(he_shared *sh);

/* ---- small atomics and cross-process waits ------------------------- */

int64_t he_now_ns(void);                /* CLOCK_MONOTONIC */
void he_sleep_ns(int64_t ns);
int64_t he_realtime_ns(void);

uint32_t he_load32(const uint32_t *p);
void he_store32(uint32_t *p, uint32_t v);
int64_t he_load64(const int64_t *p);
void he_store64(int64_t *p, int64_t v);
int he_cas32(uint32_t *p, uint32_t expect, uint32_t v);
int he_cas64(int64_t *p, int64_t expect, int64_t v);

/* Sleep while *word == expect, at most ns nanoseconds (may return early).
 * Wake every sleeper on word. */
void he_wait_word(uint32_t *word, uint32_t expect, int64_t ns);
void he_wake_word(uint32_t *word);

/* (int32)(a - b) > 0: a is after b on a wrapping counter. */
int he_seq_after(uint32_t a, uint32_t b);

#endif /* HE_SHARED_H */
