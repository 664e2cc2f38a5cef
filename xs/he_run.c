/*
 * he_run.c - one run of the checks, in the checker.
 *
 * A run hands each check that needs a connection (the database, Redis) to
 * that check's child process, which waits for it; a check decided without
 * one (skipped, unknown type, backend not built) is settled here.  Each
 * child sets its phase and result in its slot of the shared state and
 * says so; the checker waits for them until the deadline +
 * HE_KILL_GRACE_NS, publishes the results under the change counter, and
 * kills what is left.  The children die with the checker
 * (PR_SET_PDEATHSIG), never hold the election lock, and end with _exit().
 */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
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

/* A check in its child: check, fill the slot, mark it done. */
static he_result
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
    return r;
}

/*
 * The result of check id when it needs no process (skipped, unknown type,
 * backend not built; why in reason), or -1 when it needs one.
 */
static int
inline_result(const he_run *k, int id, char *reason, size_t len)
{
    const he_config *c = k->x->cfg;

    reason[0] = '\0';
    if (id == HE_CHECK_REDIS) {
        if (!c->redis.enabled)
            return HE_SKIPPED;
        if (!he_checks_have_redis())
            snprintf(reason, len, "no Redis backend in this build (built: "
                     "%s)", he_checks_backends());
        else if (c->redis.invalid)
            snprintf(reason, len, "the Redis server setting is invalid (see "
                     "the startup log)");
        else
            return -1;
    } else if (c->db.kind == HE_DB_NONE) {
        if (c->db.type == NULL)
            return HE_SKIPPED;
        snprintf(reason, len, "unknown database type '%.64s'", c->db.type);
    } else if (c->db.kind == HE_DB_CALLBACK && k->x->db_cb == NULL) {
        snprintf(reason, len, "no DBI callback for database type '%.64s'",
                 c->db.type);
    } else if (!he_checks_have_db(c->db.kind)) {
        snprintf(reason, len, "no %s backend in this build (built: %s)",
                 c->db.type, he_checks_backends());
    } else {
        return -1;
    }
    return HE_FAIL;
}

static int
needs_child(const he_run *k, int id)
{
    char why[HE_ERRLEN];

    return inline_result(k, id, why, sizeof why) < 0;
}

/* Fill the slot of a check that needs no process.  1 when it did. */
static int
settle_inline(const he_run *k, int id)
{
    he_slot *s = &k->sh->slot[id];
    int r = inline_result(k, id, s->reason, sizeof s->reason);

    if (r < 0)
        return 0;
    s->result = r;
    s->elapsed_ns = 0;
    he_store32(&s->done, 1);
    return 1;
}

/* ---- the children ----------------------------------------------------- */

/*
 * Each check that needs a connection has a child process of the checker,
 * forked before the run that first uses it: a fork of a process the size
 * of an RT worker, and the first use of the client libraries in it
 * (OpenSSL's configuration, Kerberos), cost a few milliseconds that a
 * status request waiting for the run would otherwise pay every time.
 *
 * The child waits (as rt-he-idle) until the checker sends it a run's
 * deadline over its socket, checks, fills its slot and answers one byte:
 * READY when it will wait for the next run, or EXITING.  It exits after a
 * failed check (nothing of a broken or lying peer's session lives on),
 * after HE_CHILD_RUNS runs, and on end of file (the checker gone; the
 * checker's death also kills it, PR_SET_PDEATHSIG).  A child still
 * checking HE_KILL_GRACE_NS after the deadline is killed, and the next
 * run gets a new one.
 */
#define HE_CHILD_RUNS 100
#define READY 'r'
#define EXITING 'x'

static void
child_main(const he_run *k, int id, int fd)
{
    unsigned runs;
    int64_t deadline;
    ssize_t n;
    char said;

    he_proc_die_with(k->checker);
    he_proc_limit(HE_RUN_DATA_EXTRA);
    he_proc_set_name("rt-he-idle");
    for (runs = 1;; runs++) {
        do
            n = read(fd, &deadline, sizeof deadline);
        while (n < 0 && errno == EINTR);
        if (n != (ssize_t)sizeof deadline)
            _exit(0);
        he_proc_set_name(id == HE_CHECK_DB ? "rt-he-database"
                                           : "rt-he-redis");
        he_proc_limit_cpu((unsigned)k->x->cfg->timeout + 1);
        said = run_check(k, id, deadline) != HE_FAIL && runs < HE_CHILD_RUNS
               ? READY : EXITING;
        /* Renamed before READY so that whoever reads it sees it idle. */
        if (said == READY)
            he_proc_set_name("rt-he-idle");
        if (send(fd, &said, 1, MSG_NOSIGNAL) != 1 || said == EXITING)
            _exit(0);
    }
}

static void
close_line(he_child *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Fork a waiting child for check id into k->idle[id].  0, or -1 with
 * errno set. */
static int
fork_child(he_run *k, int id)
{
    he_child *c = &k->idle[id];
    int sv[2], i, e;
    pid_t pid;

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        return -1;
    pid = fork();
    if (pid == 0) {
        close(sv[0]);
        for (i = 0; i < HE_NCHECKS; i++) {
            close_line(&k->idle[i]);    /* other children's lines */
            close_line(&k->busy[i]);
        }
        if (k->lockfd >= 0)
            close(k->lockfd);           /* the lock is the checker's alone */
        child_main(k, id, sv[1]);
    }
    e = errno;
    close(sv[1]);
    if (pid < 0) {
        close(sv[0]);
        errno = e;
        return -1;
    }
    c->pid = (long)pid;
    c->fd = sv[0];
    c->kill_at = 0;
    return 0;
}

/* Reap c if it has exited.  If not, kill it when now is set or its
 * kill_at has passed, and reap it; else leave it.  1 when it is gone. */
static int
reap_child(he_child *c, int now)
{
    if (c->pid <= 0)
        return 1;
    if (waitpid((pid_t)c->pid, NULL, WNOHANG) == 0) {
        if (!now && he_now_ns() < c->kill_at)
            return 0;
        kill((pid_t)c->pid, SIGKILL);
        while (waitpid((pid_t)c->pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    c->pid = 0;
    return 1;
}

/* Fork the children the next run needs and does not have.  One that
 * cannot be forked now is forked when the run starts, and fails it
 * there. */
static void
prepare_children(he_run *k)
{
    int i;

    for (i = 0; i < HE_NCHECKS; i++)
        if (k->idle[i].pid <= 0 && needs_child(k, i))
            (void)fork_child(k, i);
}

/* Start check id's child on the run ending at deadline_ns: the waiting
 * one, or one forked now when it is missing or died while it waited.  1
 * when it runs (k->busy[id]); 0 when none could be started (the slot
 * then says why). */
static int
start_child(he_run *k, int id, int64_t deadline_ns)
{
    he_child *c = &k->idle[id];
    he_slot *s = &k->sh->slot[id];
    const ssize_t want = (ssize_t)sizeof deadline_ns;
    int tries;

    for (tries = 0; tries < 2; tries++) {
        if (c->pid <= 0 && fork_child(k, id) != 0)
            break;
        if (send(c->fd, &deadline_ns, sizeof deadline_ns, MSG_NOSIGNAL)
            == want) {
            c->kill_at = deadline_ns + HE_KILL_GRACE_NS;
            k->busy[id] = *c;
            c->pid = 0;
            c->fd = -1;
            return 1;
        }
        close_line(c);                  /* gone while it waited */
        reap_child(c, 1);
    }
    snprintf(s->reason, sizeof s->reason, "cannot start a check process: "
             "%s", strerror(errno));
    s->result = HE_FAIL;
    he_store32(&s->done, 1);
    return 0;
}

/* After the run: a child that said READY waits for the next one; any
 * other is reaped (EXITING: it is on its way out; silent: overdue or
 * dead, killed now). */
static void
settle_child(he_run *k, int id, char said)
{
    he_child *c = &k->busy[id];

    if (said == READY && k->idle[id].pid <= 0) {
        c->kill_at = 0;
        k->idle[id] = *c;
        c->pid = 0;
        c->fd = -1;
        return;
    }
    close_line(c);
    (void)reap_child(c, said != EXITING);   /* EXITING: let it _exit */
}

/* ---- a run ---------------------------------------------------------------- */

/*
 * Wait until every running child has answered (READY or EXITING, in
 * said[]) or hung up (gone), or until kill_at.  One that hung up before it
 * began (killed while it waited, just before the run reached it) is
 * replaced once.
 */
static void
wait_children(he_run *k, int *running, char *said, int64_t kill_at,
              int64_t deadline)
{
    struct pollfd pf[HE_NCHECKS];
    int id[HE_NCHECKS], again[HE_NCHECKS];
    int64_t now;
    int i, j, n = 0, left;
    ssize_t got;

    for (i = 0; i < HE_NCHECKS; i++) {
        said[i] = 0;
        if (!running[i])
            continue;
        pf[n].fd = k->busy[i].fd;
        pf[n].events = POLLIN;
        again[n] = 0;
        id[n++] = i;
    }
    for (;;) {
        now = he_now_ns();
        he_store64(&k->sh->heartbeat_ns, now);
        if (k->watch != NULL)
            k->watch(k->watch_ctx, now);
        for (left = 0, i = 0; i < n; i++)
            left += pf[i].fd >= 0;
        if (left == 0 || now >= kill_at)
            return;
        for (i = 0; i < n; i++)
            pf[i].revents = 0;
        if (poll(pf, (nfds_t)n, (int)(((kill_at - now) < HE_RUN_WATCH_NS
                                        ? kill_at - now : HE_RUN_WATCH_NS)
                                       / HE_NS_PER_MS) + 1) <= 0)
            continue;
        for (i = 0; i < n; i++) {
            if (pf[i].fd < 0 || pf[i].revents == 0)
                continue;
            j = id[i];
            got = read(pf[i].fd, &said[j], 1);
            if (got < 0 && errno == EINTR)
                continue;
            pf[i].fd = -1;
            if (got == 1)
                continue;
            said[j] = 0;                /* end of file: gone */
            if (again[i]++ == 0 && now < deadline
                && he_load32(&k->sh->slot[j].phase) == HE_PHASE_IDLE) {
                settle_child(k, j, 0);
                running[j] = start_child(k, j, deadline);
                pf[i].fd = running[j] ? k->busy[j].fd : -1;
            }
        }
    }
}

/* Copy reason into out, escaping control characters (as \xNN), so that a
 * peer's text cannot forge a line of RT's log. */
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
    } else if (now < deadline) {
        r = HE_FAIL;
        pc->elapsed_ns = now - start;
        snprintf(why, sizeof why, "the check process ended without a result "
                 "during %s", he_phase_name(he_load32(&s->phase)));
        escape_reason(why, sh->reason[id], sizeof sh->reason[id]);
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
he_run_init(he_run *k, he_shared *sh, const he_checker_ctx *x, long checker,
            int lockfd, void (*watch)(void *ctx, int64_t now),
            void *watch_ctx)
{
    int i;

    memset(k, 0, sizeof *k);
    k->sh = sh;
    k->x = x;
    k->checker = checker;
    k->lockfd = lockfd;
    k->watch = watch;
    k->watch_ctx = watch_ctx;
    for (i = 0; i < HE_NCHECKS; i++)
        k->idle[i].fd = k->busy[i].fd = -1;
    prepare_children(k);
}

void
he_run_reap(he_run *k)
{
    he_child *c;
    int i;

    for (i = 0; i < HE_NCHECKS; i++) {
        (void)reap_child(&k->busy[i], 0);
        c = &k->idle[i];                /* killed while it waited */
        if (c->pid > 0 && waitpid((pid_t)c->pid, NULL, WNOHANG) > 0) {
            close_line(c);
            c->pid = 0;                 /* the next run forks another */
        }
    }
}

void
he_run_checks(he_run *k)
{
    he_shared *sh = k->sh;
    int64_t start = he_now_ns();
    int64_t deadline = start + (int64_t)(k->x->cfg->timeout * 1e9);
    int running[HE_NCHECKS], i;
    char said[HE_NCHECKS];

    for (i = 0; i < HE_NCHECKS; i++) {
        reap_child(&k->busy[i], 1);     /* EXITING after the last run */
        he_store32(&sh->slot[i].done, 0);
        he_store32(&sh->slot[i].phase, HE_PHASE_IDLE);
    }
    he_store64(&sh->run_started_ns, start);
    he_store64(&sh->run_deadline_ns, deadline);
    he_store32(&sh->running, 1);
    for (i = 0; i < HE_NCHECKS; i++)
        running[i] = !settle_inline(k, i) && start_child(k, i, deadline);
    wait_children(k, running, said, deadline + HE_KILL_GRACE_NS, deadline);
    publish(k, start, deadline);
    for (i = 0; i < HE_NCHECKS; i++)
        if (running[i])
            settle_child(k, i, said[i]);
    prepare_children(k);                /* replace those that ended */
}
