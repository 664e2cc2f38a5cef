/*
 * he_status.h - answering a status request from the shared result.
 *
 * One he_instance per wrapper: the configuration, the attachment to the
 * instance's state (the file, or a private mapping when the file cannot
 * be used), and what a checker started from here would run with.
 */
#ifndef HE_STATUS_H
#define HE_STATUS_H

#include "he.h"
#include "he_checker.h"
#include "he_shared.h"

#define HE_WAIT_GRACE_NS (20 * HE_NS_PER_MS)    /* past a run's deadline */
#define HE_REASK_NS (100 * HE_NS_PER_MS)        /* a waiter looks again */
#define HE_REMIND_NS (60 * HE_NS_PER_S)         /* "still failing" */

/* Lines for RT's log that this process has won the right to write. */
typedef struct {
    const char *level;                  /* "error", "warning" */
    char text[HE_ERRLEN + 192];
} he_log_line;

typedef struct {
    he_log_line line[2 * HE_NCHECKS + 2];
    int n;
} he_log_batch;

typedef struct {
    he_shm shm;                         /* attached lazily, per process */
    he_checker_ctx x;                   /* cfg, hash, stamp, callbacks */
    char *state_path;                   /* NULL: a private state */
    int file_failed;                    /* the file is unusable: private */
    int setup_failed;                   /* not even private: said once */
    int reattach;                       /* the file was replaced */
    char version[HE_VERSION_LEN];
    char last_error[HE_ERRLEN];         /* starting a checker; said once */
} he_instance;

/* Set up in (nothing is opened).  cfg must outlive in; state_path may be
 * NULL (then every process has its own private state). */
void he_instance_init(he_instance *in, const he_config *cfg,
                      const char *state_path, const char *version);

/* Release: a private state's checker is asked to exit; unmap. */
void he_instance_free(he_instance *in);

/* Attach the state file now (at startup, to report it).  0, or -1 with
 * the reason in err (the instance then uses a private state). */
int he_instance_attach(he_instance *in, char *err, size_t errlen);

/*
 * Answer a status request: at once from a result younger than
 * CacheSeconds; at once from one younger than CacheSeconds + Timeout,
 * asking for a new run; otherwise ask for a run and wait for it, at most
 * until its deadline + HE_WAIT_GRACE_NS, then answer fail for what did
 * not finish (CacheSeconds 0: always join the run in progress, or start
 * one).  log gets what this process should write to RT's log.
 */
void he_instance_answer(he_instance *in, he_status *out, he_log_batch *log);

/* ---- the steps of an answer, for tests and fuzzing -------------------- */

typedef enum {
    HE_JUDGE_FRESH = 0,                 /* answer with *p */
    HE_JUDGE_REFRESH,                   /* answer with *p, ask for a run */
    HE_JUDGE_WAIT,                      /* *p is too old: run and wait */
    HE_JUDGE_NONE                       /* nothing usable: run and wait */
} he_judgement;

/* Copy the published result into *p (its seq into *seq) and judge it by
 * age against x's CacheSeconds and Timeout at time now.  Only reads sh. */
he_judgement he_status_judge(he_shared *sh, const he_checker_ctx *x,
                             int64_t now, he_pub *p, uint32_t *seq);

/* The answer from a usable published result. */
void he_status_of_pub(const he_pub *p, he_status *out);

/* The answer when no result came in time: what the run in progress
 * finished (sh may be NULL), fail for the rest of what c checks. */
void he_status_unfinished(he_shared *sh, const he_config *c, he_status *out);

/* Claim, by CAS in sh, the log lines due for the result seen. */
void he_status_logs(he_shared *sh, const he_pub *seen, int64_t now,
                    he_log_batch *log);

#endif /* HE_STATUS_H */
