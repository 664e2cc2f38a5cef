/*
 * he_checker.h - the one process per RT instance that runs the checks.
 *
 * RT's workers never run a check: a status request reads the shared
 * result (he_status.c) and, when it is too old, asks the checker for a
 * run.  The checker is started by whichever worker finds none alive (it
 * wins an flock on the state's .lock file), double-forked so that it
 * outlives that worker, and has one child process per check, which waits
 * for runs and is killed when it overstays a deadline.
 */
#ifndef HE_CHECKER_H
#define HE_CHECKER_H

#include "he.h"
#include "he_shared.h"

#define HE_NS_PER_MS 1000000LL
#define HE_NS_PER_S 1000000000LL

#define HE_TICK_NS (500 * HE_NS_PER_MS)         /* heartbeat period */
#define HE_STALE_NS (2 * HE_NS_PER_S)           /* no heartbeat: replace */
#define HE_KILL_GRACE_NS (200 * HE_NS_PER_MS)   /* overdue run: kill */
#define HE_RUN_WATCH_NS (50 * HE_NS_PER_MS)     /* a run: retire, master? */
#define HE_LEASE_NS (300 * HE_NS_PER_S)         /* no reader: exit */
#define HE_RUN_DATA_EXTRA (64ULL << 20)         /* RLIMIT_DATA headroom */

/* Names the checker in ps (the glue sets $0). */
typedef void (*he_title_fn)(void *ctx, const char *title);

/* What a checker runs with.  A started checker keeps using this memory
 * (its own copy, after the fork), so it must stay valid in the caller's
 * process for the duration of the call that starts it. */
typedef struct {
    const he_config *cfg;               /* the checks */
    unsigned long long hash;            /* he_config_hash(cfg, version) */
    long long stamp;                    /* when cfg was built (realtime ns) */
    const char *version;                /* the module's */
    he_db_callback db_cb;               /* Oracle through DBI, or NULL */
    void *db_cb_ctx;
    he_title_fn set_title;              /* may be NULL */
    void *title_ctx;
} he_checker_ctx;

typedef enum {
    HE_CHECKER_SERVES = 0,              /* one is alive, config ok for x */
    HE_CHECKER_STARTED,                 /* this call started one */
    HE_CHECKER_ELSEWHERE,               /* another process holds the lock */
    HE_CHECKER_REPLACED,                /* the state file was replaced */
    HE_CHECKER_ERROR                    /* could not start one (err) */
} he_checker_state;

/*
 * Make sure a checker serves m with x's configuration or a newer one: if
 * none is alive (no heartbeat for HE_STALE_NS, or its pid is gone) one is
 * started; a hung one is killed first; one running an older configuration
 * than x (by stamp) is asked to retire and replaced.
 */
he_checker_state he_checker_ensure(he_shm *m, const he_checker_ctx *x,
                                   char *err, size_t errlen);

/* 1 when no checker is alive for m (none yet, or its process is gone). */
int he_checker_gone(he_shm *m);

/* Ask the checker of m to exit (a private state's owner going away). */
void he_checker_retire(he_shm *m);

/* ---- a run of the checks (he_run.c), inside the checker -------------- */

typedef struct {
    long pid;                           /* 0: none */
    int fd;                             /* the checker's end of its socket */
    int64_t kill_at;                    /* checking: killed then if still on */
} he_child;

typedef struct {
    he_shared *sh;
    const he_checker_ctx *x;            /* the checks to run */
    long checker;                       /* its pid: the children die with it */
    int lockfd;                         /* the election lock: not theirs */
    he_child idle[HE_NCHECKS];          /* waiting for the next run */
    he_child busy[HE_NCHECKS];          /* checking, or ended until reaped */
    void (*watch)(void *ctx, int64_t now);  /* the checker's own watch, */
    void *watch_ctx;                    /* every HE_RUN_WATCH_NS of a run */
} he_run;

/* Set r up in the checker and fork the children of its first run.  A run
 * calls watch(watch_ctx, now) while it waits for them: the checker may
 * exit there (its master gone, asked to retire), and its children die with
 * it. */
void he_run_init(he_run *r, he_shared *sh, const he_checker_ctx *x,
                 long checker, int lockfd,
                 void (*watch)(void *ctx, int64_t now), void *watch_ctx);

/* Run every check once, within x's Timeout, each that needs a connection
 * in its child process (waiting from an earlier run, or forked now),
 * killed HE_KILL_GRACE_NS after the deadline; publish the results in sh,
 * wake the readers, and fork the children that ended. */
void he_run_checks(he_run *r);

/* Reap the last run's children that have exited since (no waiting). */
void he_run_reap(he_run *r);

#endif /* HE_CHECKER_H */
