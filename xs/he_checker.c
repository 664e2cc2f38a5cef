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
 *   - A run forks one child per check.  Each child sets its phase and
 *     result in its slot and exits; the checker waits for them until the
 *     deadline + HE_KILL_GRACE_NS, kills what is left, and publishes.
 *     The children die with the checker (PR_SET_PDEATHSIG).
 * Nothing here returns to Perl in a forked process; a child only ever
 * ends with _exit().
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
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

static void
sleep_ns(int64_t ns)
{
    struct timespec ts;

    ts.tv_sec = (time_t)(ns / HE_NS_PER_S);
    ts.tv_nsec = (long)(ns % HE_NS_PER_S);
    nanosleep(&ts, NULL);
}

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
run_check(he_checker *k, int id, int64_t deadline_ns)
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
settle_inline(he_checker *k, int id)
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
spawn_check(he_checker *k, int id, int64_t deadline_ns, const int pfd[2])
{
    he_slot *s = &k->sh->slot[id];
    double secs = k->x->cfg->timeout;
    pid_t pid = fork();

    if (pid == 0) {
        if (pfd[0] >= 0)
            close(pfd[0]);
        if (k->lockfd >= 0)
            close(k->lockfd);           /* the lock is the checker's alone */
        he_proc_die_with(k->self);
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
wait_children(he_checker *k, long *kids, int rfd, int64_t kill_at)
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
            sleep_ns(HE_NS_PER_MS);     /* gone; the reaping is due */
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
settle_check(he_checker *k, int id, int64_t start, int64_t deadline,
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
publish(he_checker *k, int64_t start, int64_t deadline)
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

static void
run(he_checker *k)
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

/* ---- the checker's own life ------------------------------------------- */

static void
checker_exit(he_checker *k)
{
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
    he_proc_set_name("rt-he-checker");  /* after: $0 sets it too */
    he_proc_limit(HE_RUN_DATA_EXTRA, 0);
    take_over(&k);
    for (;;) {
        now = he_now_ns();
        he_store64(&k.sh->heartbeat_ns, now);
        if (should_exit(&k, now))
            checker_exit(&k);
        w = he_load32(&k.sh->wanted);
        if (he_seq_after(w, he_load32(&k.sh->result_seq))) {
            run(&k);
            continue;
        }
        he_wait_word(&k.sh->wanted, w, HE_TICK_NS);
    }
}

/* ---- starting one ----------------------------------------------------- */

/* Take the election lock.  Returns its descriptor (the caller hands it to
 * the checker and closes its own copy), or -1 when another process holds
 * it (err empty) or it cannot be opened (err set). */
static int
elect(he_shm *m, char *err, size_t errlen)
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
        sleep_ns(5 * HE_NS_PER_MS);     /* a dying holder lets go soon */
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
        fd = elect(m, err, errlen);
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

void
he_checker_retire(he_shm *m)
{
    if (m->sh == NULL)
        return;
    he_store32(&m->sh->retire, he_load32(&m->sh->checker_gen));
    he_wake_word(&m->sh->wanted);
}
