/*
 * he_checks.c - run the database and Redis checks: dispatch, concurrency,
 * the per-process result cache.
 *
 * Each network check runs on its own detached thread with a private copy
 * of its settings.  The caller waits on a condition variable until the
 * deadline; if a check is still running then (stuck in getaddrinfo, which
 * no library lets us bound), it is reported as fail and abandoned: the
 * thread finishes on its own and the last of the two owners frees the job.
 * So the status answer is bounded by the deadline, and its latency is that
 * of the slower check rather than the sum.
 */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "he.h"

/* How long past the deadline we wait for a backend to notice it itself. */
#define GRACE 0.05

const char *
he_checks_backends(void)
{
    static const char names[] = ""
#ifdef HE_WITH_PG
        "Pg "
#endif
#ifdef HE_WITH_MYSQL
        "mysql "
#endif
#ifdef HE_WITH_SQLITE
        "SQLite "
#endif
#ifdef HE_WITH_REDIS
        "Redis "
#endif
        "Oracle(DBI)";                  /* always: it is done in Perl */

    return names;
}

int
he_checks_have_db(he_db_kind kind)
{
    switch (kind) {
#ifdef HE_WITH_PG
    case HE_DB_PG:
        return 1;
#endif
#ifdef HE_WITH_MYSQL
    case HE_DB_MYSQL:
        return 1;
#endif
#ifdef HE_WITH_SQLITE
    case HE_DB_SQLITE:
        return 1;
#endif
    case HE_DB_CALLBACK:
        return 1;
    default:
        return 0;
    }
}

int
he_checks_have_redis(void)
{
#ifdef HE_WITH_REDIS
    return 1;
#else
    return 0;
#endif
}

/* ---- one check on its own thread -------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs;                           /* caller + thread; last one frees */
    int done;
    int is_redis;
    he_db_config db;
    he_redis_config redis;
    double deadline;
    he_result result;
    double elapsed;
    char err[HE_ERRLEN];
} job;

static void
job_release(job *j)
{
    int last;

    pthread_mutex_lock(&j->mu);
    last = --j->refs == 0;
    pthread_mutex_unlock(&j->mu);
    if (!last)
        return;
    if (j->is_redis)
        he_config_free_redis(&j->redis);
    else
        he_config_free_db(&j->db);
    pthread_cond_destroy(&j->cv);
    pthread_mutex_destroy(&j->mu);
    free(j);
}

/* Run the check the job describes; fills result, err, elapsed. */
static void
job_run(job *j)
{
    double start = he_time_now();

    j->err[0] = '\0';
    j->result = HE_FAIL;
    if (j->is_redis) {
#ifdef HE_WITH_REDIS
        j->result = he_redis_check(&j->redis, j->deadline, j->err,
                                   sizeof j->err);
#endif
    } else {
        switch (j->db.kind) {
#ifdef HE_WITH_PG
        case HE_DB_PG:
            j->result = he_pg_check(&j->db, j->deadline, j->err,
                                    sizeof j->err);
            break;
#endif
#ifdef HE_WITH_MYSQL
        case HE_DB_MYSQL:
            j->result = he_mysql_check(&j->db, j->deadline, j->err,
                                       sizeof j->err);
            break;
#endif
        default:
            break;
        }
    }
    j->elapsed = he_time_now() - start;
}

static void *
job_thread(void *arg)
{
    job *j = arg;

    job_run(j);
    pthread_mutex_lock(&j->mu);
    j->done = 1;
    pthread_cond_signal(&j->cv);
    pthread_mutex_unlock(&j->mu);
    job_release(j);
    return NULL;
}

/*
 * Start a job on a detached thread with every signal blocked: the Perl
 * process keeps its handlers, and a SIGPIPE from a dead server's socket
 * stays on the thread and dies with it.  So the backends need no signal
 * handling of their own, and never run on the Perl thread.  If no thread
 * can be made (a resource limit), the check fails with that reason.
 */
static void
job_start(job *j)
{
    pthread_attr_t attr;
    pthread_condattr_t ca;
    pthread_t tid;
    sigset_t all, old;
    int rc;

    pthread_mutex_init(&j->mu, NULL);
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&j->cv, &ca);
    pthread_condattr_destroy(&ca);
    j->refs = 2;

    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    rc = pthread_create(&tid, &attr, job_thread, j);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);

    if (rc != 0) {
        j->refs = 1;
        j->result = HE_FAIL;
        snprintf(j->err, sizeof j->err, "cannot start a check thread: %s",
                 strerror(rc));
        j->done = 1;
    }
}

/* Wait for the job until its deadline (plus grace); copy out and release. */
static void
job_finish(job *j, he_result *result, char *err, size_t errlen,
           double *elapsed, double started)
{
    double until = j->deadline + GRACE;
    struct timespec ts;

    ts.tv_sec = (time_t)until;
    ts.tv_nsec = (long)((until - (double)ts.tv_sec) * 1e9);
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        if (pthread_cond_timedwait(&j->cv, &j->mu, &ts) != 0
            && he_time_now() >= until)
            break;
    }
    if (j->done) {
        *result = j->result;
        snprintf(err, errlen, "%s", j->err);
        *elapsed = j->elapsed;
    } else {
        *result = HE_FAIL;
        *elapsed = he_time_now() - started;
        snprintf(err, errlen, "no answer within %.3f s (still resolving "
                 "or connecting; the attempt was abandoned)",
                 j->deadline - started);
    }
    pthread_mutex_unlock(&j->mu);
    job_release(j);
}

static job *
new_job(double deadline)
{
    job *j = calloc(1, sizeof *j);

    if (j)
        j->deadline = deadline;
    return j;
}

/* ---- the status run ----------------------------------------------------- */

static int
cache_fresh(const he_config *c, const he_status_cache *cache, double now)
{
    return cache && cache->valid && c->cache_seconds > 0
        && cache->pid == (long)getpid()
        && now >= cache->at && now - cache->at < c->cache_seconds;
}

/* The database checks that need no thread: fixed answers, SQLite, DBI. */
static int
db_inline(const he_config *c, he_db_callback cb, void *cb_ctx,
          double deadline, he_status *out)
{
    const he_db_config *db = &c->db;

    switch (db->kind) {
    case HE_DB_NONE:
        if (db->type == NULL) {
            out->db = HE_SKIPPED;
        } else {
            out->db = HE_FAIL;
            snprintf(out->db_err, sizeof out->db_err,
                     "unknown database type '%.64s'", db->type);
        }
        return 1;
    case HE_DB_CALLBACK:
        if (cb == NULL) {
            out->db = HE_FAIL;
            snprintf(out->db_err, sizeof out->db_err,
                     "no DBI callback for database type '%.64s'", db->type);
        } else {
            out->db = cb(cb_ctx, deadline - he_time_now(), out->db_err,
                         sizeof out->db_err);
        }
        return 1;
    default:
        break;
    }
    if (!he_checks_have_db(db->kind)) {
        out->db = HE_FAIL;
        snprintf(out->db_err, sizeof out->db_err,
                 "no %s backend in this build (built: %s)", db->type,
                 he_checks_backends());
        return 1;
    }
#ifdef HE_WITH_SQLITE
    if (db->kind == HE_DB_SQLITE) {
        out->db = he_sqlite_check(db, deadline, out->db_err,
                                  sizeof out->db_err);
        return 1;
    }
#endif
    (void)deadline;
    return 0;
}

void
he_checks_run(const he_config *c, he_status_cache *cache,
              he_db_callback cb, void *cb_ctx, he_status *out)
{
    double start = he_time_now();
    double deadline = start + c->timeout;
    job *db_job = NULL, *redis_job = NULL;

    memset(out, 0, sizeof *out);
    if (cache_fresh(c, cache, start)) {
        out->db = cache->db;
        out->redis = cache->redis;
        out->from_cache = 1;
        return;
    }

    /* Redis first, so that it runs while the database check is made. */
    out->redis = HE_SKIPPED;
    if (c->redis.enabled && !he_checks_have_redis()) {
        out->redis = HE_FAIL;
        snprintf(out->redis_err, sizeof out->redis_err,
                 "no Redis backend in this build (built: %s)",
                 he_checks_backends());
    } else if (c->redis.enabled && c->redis.invalid) {
        out->redis = HE_FAIL;
        snprintf(out->redis_err, sizeof out->redis_err,
                 "the Redis server setting is invalid (see the startup log)");
    } else if (c->redis.enabled) {
        if ((redis_job = new_job(deadline)) != NULL) {
            redis_job->is_redis = 1;
            he_config_copy_redis(&redis_job->redis, &c->redis);
            job_start(redis_job);
        } else {
            out->redis = HE_FAIL;
            snprintf(out->redis_err, sizeof out->redis_err, "out of memory");
        }
    }

    if (!db_inline(c, cb, cb_ctx, deadline, out)) {
        if ((db_job = new_job(deadline)) != NULL) {
            he_config_copy_db(&db_job->db, &c->db);
            job_start(db_job);
            job_finish(db_job, &out->db, out->db_err, sizeof out->db_err,
                       &out->db_elapsed, start);
        } else {
            out->db = HE_FAIL;
            snprintf(out->db_err, sizeof out->db_err, "out of memory");
        }
    } else {
        out->db_elapsed = he_time_now() - start;
    }
    if (redis_job)
        job_finish(redis_job, &out->redis, out->redis_err,
                   sizeof out->redis_err, &out->redis_elapsed, start);

    if (cache) {
        cache->valid = 1;
        cache->pid = (long)getpid();
        cache->at = he_time_now();
        cache->db = out->db;
        cache->redis = out->redis;
    }
}
