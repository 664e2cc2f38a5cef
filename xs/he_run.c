/*
 * he_run.c - one run of the checks, in the checker.
 *
 * A run forks one child per check that needs a connection (the database,
 * Redis); a check decided without one (skipped, unknown type, backend not
 * built) is settled here.  Each child sets its phase and result in its
 * slot of the shared state and exits; the checker waits for them until
 * the deadline + HE_KILL_GRACE_NS, kills what is left, and publishes the
 * results under the change counter.  The children die with the checker
 * (PR_SET_PDEATHSIG), never hold the election lock, and end with _exit().
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "he_checker.h"
#include "he_proc.h"

/* ---- one check in a run's child --------------------------------------- */

/* The Oracle path: a late true is a failure, not an ok. */
static he_result
run_callback(const he_checker_ctx *x, he_probe *p)
{
    he_result r;

    r = x->db_cb(x->db_cb_ctx, p->deadline - he_time_now(), p->err,
                 p->errlen);
    if (r == HE_OK && he_time_now() > p->deadline) {
        he_time_wait_error(0, "the DBI check (it answered too late)",
                           p->start, p->err, p->errlen);
        r = HE_FAIL;
    }
    return r;
}

static he_result
run_db(const he_checker_ctx *x, he_probe *p)
{
    const he_db_config *db = &x->cfg->db;

    switch (db->kind) {
    case HE_DB_CALLBACK:
        return run_callback(x, p);
#ifdef HE_WITH_PG
    case HE_DB_PG:
        return he_pg_check(db, p);
#endif
#ifdef HE_WITH_MYSQL
    case HE_DB_MYSQL:
        return he_mysql_check(db, p);
#endif
#ifdef HE_WITH_SQLITE
    case HE_DB_SQLITE:
        return he_sqlite_check(db, p);
#endif
    default:
        snprintf(p->err, p->errlen, "no backend for this database type");
        return HE_FAIL;
    }
}

/* The body of a run's child: check, fill the slot, mark it done. */
static void
run_check(const he_run *k, int id, int64_t deadline_ns)
{
    he_slot *s = &k->sh->slot[id];
    he_probe p;
    he_result r = HE_FAIL;

    p.deadline = (double)deadline_ns / 1e9;
    p.start = he_time_now();
    p.phase = &s->phase;
    p.err = s->reason;
    p.errlen = sizeof s->reason;
    s->reason[0] = '\0';
    he_probe_phase(&p, HE_PHASE_STARTING);
    if (id == HE_CHECK_DB)
        r = run_db(k->x, &p);
#ifdef HE_WITH_REDIS
    else
        r = he_redis_check(&k->x->cfg->redis, &p);
#endif
    s->elapsed_ns = (int64_t)((he_time_now() - p.start) * 1e9);
    s->result = r;
    he_probe_phase(&p, HE_PHASE_DONE);
    he_store32(&s->done, 1);
}

/*
 * Decide a check that needs no process (skipped, unknown type, backend
 * not built).  Returns 1 when the slot was filled.
 */
static int
settle_inline(const he_run *k, int id)
{
    const he_config *c = k->x->cfg;
    he_slot *s = &k->sh->slot[id];
    he_result r = HE_FAIL;

    s->reason[0] = '\0';
    if (id == HE_CHECK_REDIS) {
        if (!c->redis.enabled)
            r = HE_SKIPPED;
        else if (!he_checks_have_redis())
            snprintf(s->reason, sizeof s->reason, "no Redis backend in this "
                     "build (built: %s)", he_checks_backends());
        else if (c->redis.invalid)
            snprintf(s->reason, sizeof s->reason, "the Redis server setting "
                     "is invalid (see the startup log)");
        else
            return 0;
    } else if (c->db.kind == HE_DB_NONE) {
        if (c->db.type == NULL)
            r = HE_SKIPPED;
        else
            snprintf(s->reason, sizeof s->reason,
                     "unknown database type '%.64s'", c->db.type);
    } else if (c->db.kind == HE_DB_CALLBACK && k->x->db_cb == NULL) {
        snprintf(s->reason, sizeof s->reason, "no DBI callback for database "
                 "type '%.64s'", c->db.type);
    } else if (!he_checks_have_db(c->db.kind)) {
        snprintf(s->reason, sizeof s->reason, "no %s backend in this build "
                 "(built: %s)", c->db.type, he_checks_backends());
    } else {
        return 0;
    }
    s->result = r;
    s->elapsed_ns = 0;
    he_store32(&s->done, 1);
    return 1;
}

/* Fork the child for check id.  Returns its pid, or 0 when none could be
 * made (the slot then says why). */
static long
spawn_check(const he_run *k, int id, int64_t deadline_ns, const int pfd[2])
{
    he_slot *s = &k->sh->slot[id];
    double secs = k->x->cfg->timeout;
    pid_t pid = fork();

    if (pid == 0) {
        if (pfd[0] >= 0)
            close(pfd[0]);
        if (k->lockfd >= 0)
            close(k->lockfd);           /* the lock is the checker's alone */
        he_proc_die_with(k->checker);
        he_proc_set_name(id == HE_CHECK_DB ? "rt-he-database" : "rt-he-redis");
        he_proc_limit(HE_RUN_DATA_EXTRA, (unsigned)secs + 2);
        run_check(k, id, deadline_ns);
        _exit(0);
    }
    if (pid < 0) {
        snprintf(s->reason, sizeof s->reason, "cannot start a check process: "
                 "%s", strerror(errno));
        s->result = HE_FAIL;
        he_store32(&s->done, 1);
        return 0;
    }
    return (long)pid;
}

/* ---- a run ---------------------------------------------------------------- */

/* Wait for the children (all of them close the pipe's write end when they
 * exit) until kill_at; kill what is left, reap everything. */
static void
wait_children(const he_run *k, long *kids, int rfd, int64_t kill_at)
{
    struct pollfd pf;
    int64_t now;
    int i, left;

    for (;;) {
        now = he_now_ns();
        he_store64(&k->sh->heartbeat_ns, now);
        for (left = 0, i = 0; i < HE_NCHECKS; i++) {
            if (kids[i] > 0 && waitpid((pid_t)kids[i], NULL, WNOHANG) > 0)
                kids[i] = 0;
            left += kids[i] > 0;
        }
        if (left == 0 || now >= kill_at)
            break;
        pf.fd = rfd;
        pf.events = POLLIN;
        pf.revents = 0;
        if (rfd >= 0 && poll(&pf, 1, 0) > 0 && (pf.revents & POLLHUP))
            he_sleep_ns(HE_NS_PER_MS);     /* gone; the reaping is due */
        else
            poll(&pf, rfd >= 0 ? 1 : 0,
                 (int)(((kill_at - now) < HE_TICK_NS ? kill_at - now
                        : HE_TICK_NS) / HE_NS_PER_MS) + 1);
    }
    for (i = 0; i < HE_NCHECKS; i++) {
        if (kids[i] <= 0)
            continue;
        kill((pid_t)kids[i], SIGKILL);
        while (waitpid((pid_t)kids[i], NULL, 0) < 0 && errno == EINTR)
            ;
    }
}

/* Copy reason into out, escaping control characters and backslashes, so
 * that a peer's text cannot forge a line of RT's log. */
static void
escape_reason(const char *in, char *out, size_t outlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;

    for (; *in != '\0' && o + 5 < outlen; in++) {
        unsigned char ch = (unsigned char)*in;

        if (ch < 0x20 || ch == 0x7f) {
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[ch >> 4];
            out[o++] = hex[ch & 15];
        } else {
            out[o++] = (char)ch;
        }
    }
    out[o] = '\0';
}

/* One check's published result from its slot and what came before. */
static void
settle_check(const he_run *k, int id, int64_t start, int64_t deadline,
             int64_t now)
{
    he_shared *sh = k->sh;
    he_slot *s = &sh->slot[id];
    he_pub_check *pc = &sh->pub.check[id];
    int32_t prev = pc->result;
    he_result r;
    char why[HE_ERRLEN];

    if (he_load32(&s->done)) {
        r = (he_result)s->result;
        pc->elapsed_ns = s->elapsed_ns;
        escape_reason(s->reason, sh->reason[id], sizeof sh->reason[id]);
    } else {
        r = HE_FAIL;
        pc->elapsed_ns = now - start;
        snprintf(why, sizeof why, "timed out after %.3f s during %s (the "
                 "check was stopped)", (double)(deadline - start) / 1e9,
                 he_phase_name(he_load32(&s->phase)));
        escape_reason(why, sh->reason[id], sizeof sh->reason[id]);
    }
    pc->runs++;
    if (r == HE_FAIL) {
        pc->failures++;
        if (prev != HE_FAIL) {
            pc->fail_since_ns = now;
            pc->fail_runs = 0;
            pc->event++;
        }
        pc->fail_runs++;
    } else if (prev == HE_FAIL) {
        pc->ended_after_ns = pc->fail_since_ns > 0 && pc->fail_since_ns <= now
                             ? now - pc->fail_since_ns : 0;
        pc->ended_runs = pc->fail_runs;
        pc->fail_since_ns = 0;
        pc->fail_runs = 0;
        pc->event++;
    }
    pc->result = (int32_t)r;
    pc->at_ns = now;
}

/* Publish the run under the change counter and wake the readers. */
static void
publish(const he_run *k, int64_t start, int64_t deadline)
{
    he_shared *sh = k->sh;
    const he_config *c = k->x->cfg;
    int64_t now = he_now_ns();
    int i;

    he_shm_write_begin(sh);
    sh->pub.config_hash = k->x->hash;
    sh->pub.config_stamp = k->x->stamp;
    snprintf(sh->pub.db_type, sizeof sh->pub.db_type, "%s",
             c->db.type ? c->db.type : "none");
    for (i = 0; i < HE_NCHECKS; i++)
        settle_check(k, i, start, deadline, now);
    he_store32(&sh->running, 0);
    sh->result_seq++;
    he_shm_write_end(sh);
    he_wake_word(&sh->result_seq);
}

void
he_run_checks(const he_run *k)
{
    he_shared *sh = k->sh;
    int64_t start = he_now_ns();
    int64_t deadline = start + (int64_t)(k->x->cfg->timeout * 1e9);
    long kids[HE_NCHECKS];
    int pfd[2] = { -1, -1 }, i;

    for (i = 0; i < HE_NCHECKS; i++) {
        he_store32(&sh->slot[i].done, 0);
        he_store32(&sh->slot[i].phase, HE_PHASE_IDLE);
        kids[i] = 0;
    }
    he_store64(&sh->run_started_ns, start);
    he_store64(&sh->run_deadline_ns, deadline);
    he_store32(&sh->running, 1);
    if (pipe(pfd) != 0)
        pfd[0] = pfd[1] = -1;           /* then waitpid alone notices */
    for (i = 0; i < HE_NCHECKS; i++)
        if (!settle_inline(k, i))
            kids[i] = spawn_check(k, i, deadline, pfd);
    if (pfd[1] >= 0)
        close(pfd[1]);
    wait_children(k, kids, pfd[0], deadline + HE_KILL_GRACE_NS);
    if (pfd[0] >= 0)
        close(pfd[0]);
    publish(k, start, deadline);
}

