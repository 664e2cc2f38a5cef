/*
 * he_status.c - the reader side: a status request in an RT worker.
 *
 * No check runs here.  The request copies the published result (a few
 * dozen bytes under the change counter), decides by its age whether to
 * answer at once, ask the checker for a run, or wait for one, and
 * finally claims, by compare-and-swap, the log lines nobody has written
 * yet: the turn to fail and the recovery once per instance, a reminder at
 * most once a minute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "he_status.h"

void
he_instance_init(he_instance *in, const he_config *cfg,
                 const char *state_path, const char *version)
{
    memset(in, 0, sizeof *in);
    snprintf(in->version, sizeof in->version, "%s", version ? version : "");
    in->x.cfg = cfg;
    in->x.version = in->version;
    in->x.hash = he_config_hash(cfg, in->version);
    in->x.stamp = he_realtime_ns();
    in->state_path = he_strdup(state_path);
    if (state_path != NULL && in->state_path == NULL)
        in->file_failed = 1;            /* out of memory: private it is */
}

void
he_instance_free(he_instance *in)
{
    if (in->shm.sh != NULL && !in->shm.is_file
        && in->shm.owner_pid == (long)getpid())
        he_checker_retire(&in->shm);
    he_shm_detach(&in->shm);
    free(in->state_path);
    in->state_path = NULL;
}

int
he_instance_attach(he_instance *in, char *err, size_t errlen)
{
    if (in->state_path == NULL || in->file_failed) {
        snprintf(err, errlen, "no state file");
        return -1;
    }
    if (he_shm_usable(&in->shm, (long)getpid()))
        return 0;
    he_shm_detach(&in->shm);
    if (he_shm_attach_file(&in->shm, in->state_path, in->version, err,
                           errlen) == 0)
        return 0;
    in->file_failed = 1;
    return -1;
}

static he_log_line *
add_line(he_log_batch *log, const char *level)
{
    he_log_line *l;

    if (log->n >= (int)(sizeof log->line / sizeof log->line[0]))
        return NULL;
    l = &log->line[log->n++];
    l->level = level;
    l->text[0] = '\0';
    return l;
}

/* Attach for this process: the file if it can be used, else a private
 * state; each problem is reported once.  0, or -1 when neither works. */
static int
prepare(he_instance *in, he_log_batch *log)
{
    char err[HE_ERRLEN];
    he_log_line *l;

    if (he_shm_usable(&in->shm, (long)getpid()))
        return 0;
    he_shm_detach(&in->shm);            /* a fork's inherited private one */
    if (in->state_path != NULL && !in->file_failed) {
        if (he_instance_attach(in, err, sizeof err) == 0)
            return 0;
        if ((l = add_line(log, "error")) != NULL)
            snprintf(l->text, sizeof l->text, "the state file cannot be "
                     "used (%s); each process runs its own checker", err);
    }
    if (he_shm_attach_private(&in->shm, in->version, err, sizeof err) == 0)
        return 0;
    if (!in->setup_failed && (l = add_line(log, "error")) != NULL)
        snprintf(l->text, sizeof l->text, "cannot set up the health state "
                 "(%s); every status check reports fail", err);
    in->setup_failed = 1;
    return -1;
}

/* A published result this instance may answer with: it exists, is a
 * time of this clock (not before its start, not in the future: a corrupt
 * file; so the age cannot overflow), and ran with our configuration or a
 * newer one. */
static int
pub_usable(const he_pub *p, const he_checker_ctx *x, int64_t now)
{
    return p->check[HE_CHECK_DB].result >= 0
        && p->check[HE_CHECK_DB].at_ns >= 0
        && p->check[HE_CHECK_DB].at_ns <= now
        && (p->config_hash == x->hash || x->stamp <= p->config_stamp);
}

static he_result
result_of(int32_t r)
{
    return (r == HE_OK || r == HE_SKIPPED) ? (he_result)r : HE_FAIL;
}

void
he_status_of_pub(const he_pub *p, he_status *out)
{
    out->db = result_of(p->check[HE_CHECK_DB].result);
    out->redis = result_of(p->check[HE_CHECK_REDIS].result);
}

void
he_status_unfinished(he_shared *sh, const he_config *c, he_status *out)
{
    int running = sh != NULL && he_load32(&sh->running);
    he_result r[HE_NCHECKS];
    int i;

    r[HE_CHECK_DB] = c->db.type ? HE_FAIL : HE_SKIPPED;
    r[HE_CHECK_REDIS] = c->redis.enabled ? HE_FAIL : HE_SKIPPED;
    for (i = 0; running && i < HE_NCHECKS; i++)
        if (he_load32(&sh->slot[i].done))
            r[i] = result_of(sh->slot[i].result);
    out->db = r[HE_CHECK_DB];
    out->redis = r[HE_CHECK_REDIS];
}

/* wanted = max(wanted, seen + 1): one run serves everyone who saw seen. */
static void
want_after(he_shared *sh, uint32_t seen)
{
    uint32_t w;

    do {
        w = he_load32(&sh->wanted);
        if (!he_seq_after(seen + 1, w))
            return;                     /* whoever moved it woke the checker */
    } while (!he_cas32(&sh->wanted, w, seen + 1));
    he_wake_word(&sh->wanted);
}

/* Make sure a checker runs, ask it for a result after seen, and return
 * until when to wait for it: the run in progress's deadline, or this
 * request's own (it began at begun: starting a checker takes a fork). */
static int64_t
ask(he_instance *in, uint32_t seen, int64_t begun, he_log_batch *log)
{
    he_shared *sh = in->shm.sh;
    char err[HE_ERRLEN];
    he_checker_state st;
    he_log_line *l;
    int64_t timeout = (int64_t)(in->x.cfg->timeout * 1e9), mine, theirs;

    st = he_checker_ensure(&in->shm, &in->x, err, sizeof err);
    if (st == HE_CHECKER_REPLACED)
        in->reattach = 1;               /* after this answer */
    if (st == HE_CHECKER_ERROR && strcmp(err, in->last_error) != 0
        && (l = add_line(log, "error")) != NULL) {
        snprintf(l->text, sizeof l->text, "%s", err);
        snprintf(in->last_error, sizeof in->last_error, "%s", err);
    }
    want_after(sh, seen);
    mine = begun + timeout + HE_WAIT_GRACE_NS;
    /* a run's deadline binds only while a live checker runs it: one that
     * was killed mid-run left its flag and deadline behind */
    if (st != HE_CHECKER_SERVES || !he_load32(&sh->running))
        return mine;
    theirs = he_load64(&sh->run_deadline_ns);
    return theirs < mine - HE_WAIT_GRACE_NS ? theirs + HE_WAIT_GRACE_NS
                                            : mine; /* never past our own */
}

/*
 * Wait for a result after seen, at most until the deadline ask() gave.
 * Every HE_REASK_NS a waiter looks whether the checker it waits for is
 * still there: one killed, crashed or retiring in the middle of the run
 * is replaced now, not when the request's deadline has passed.  1 if a
 * result was published.
 */
static int
wait_result(he_instance *in, uint32_t seen, int64_t begun, he_log_batch *log)
{
    he_shared *sh = in->shm.sh;
    int64_t until = ask(in, seen, begun, log), left;

    while (he_load32(&sh->result_seq) == seen) {
        left = until - he_now_ns();
        if (left <= 0)
            return 0;
        he_wait_word(&sh->result_seq, seen, left < HE_REASK_NS ? left
                                                             : HE_REASK_NS);
        if (he_load32(&sh->result_seq) == seen && he_checker_gone(&in->shm))
            until = ask(in, seen, begun, log);
    }
    return 1;
}

/* ---- log lines --------------------------------------------------------- */

/* NUL-terminate s within len and replace what a log line must not hold:
 * the checker escapes a peer's text, but the file is input too. */
static void
printable(char *s, size_t len)
{
    size_t i;

    s[len - 1] = '\0';
    for (i = 0; s[i]; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            s[i] = '?';
}

static void
line_for(he_log_batch *log, const he_pub *p, const char *db_type,
         const char *reason, int id, int kind, int64_t now)
{
    const he_pub_check *c = &p->check[id];
    char what[64];
    he_log_line *l;

    if (id == HE_CHECK_DB)
        snprintf(what, sizeof what, "database check");
    else
        snprintf(what, sizeof what, "redis check");
    if ((l = add_line(log, kind == 1 ? "warning" : "error")) == NULL)
        return;
    if (kind == 0 && id == HE_CHECK_DB)
        snprintf(l->text, sizeof l->text, "%s failed (%s, %.3f s): %s", what,
                 db_type, (double)c->elapsed_ns / 1e9, reason);
    else if (kind == 0)
        snprintf(l->text, sizeof l->text, "%s failed (%.3f s): %s", what,
                 (double)c->elapsed_ns / 1e9, reason);
    else if (kind == 1)
        snprintf(l->text, sizeof l->text, "%s ok again after %.1f s (%u "
                 "failed runs)", what, (double)c->ended_after_ns / 1e9,
                 (unsigned)c->ended_runs);
    else
        snprintf(l->text, sizeof l->text, "%s still failing after %.1f s "
                 "(%u failed runs): %s", what,
                 ((double)now - (double)c->fail_since_ns) / 1e9,
                 (unsigned)c->fail_runs, reason);
}

/*
 * Claim what is due: each turn of a check (event) is logged by the one
 * reader whose CAS on logged_event wins; a check still failing gets a
 * reminder when reminded_ns is a minute old, by the same rule.
 */
void
he_status_logs(he_shared *sh, const he_pub *seen, int64_t now,
               he_log_batch *log)
{
    int kind[HE_NCHECKS], i, any = 0;
    char reasons[HE_NCHECKS][HE_ERRLEN];
    he_pub p;
    uint32_t seq;

    for (i = 0; i < HE_NCHECKS; i++) {
        const he_pub_check *c = &seen->check[i];
        uint32_t logged = he_load32(&sh->logged_event[i]);
        int64_t reminded = he_load64(&sh->reminded_ns[i]);

        kind[i] = -1;
        if (he_seq_after(c->event, logged)) {
            if (he_cas32(&sh->logged_event[i], logged, c->event)) {
                kind[i] = c->result == HE_FAIL ? 0 : 1;
                if (kind[i] == 0)
                    he_store64(&sh->reminded_ns[i], now);
            }
        } else if (c->result == HE_FAIL && reminded <= now - HE_REMIND_NS
                   && he_cas64(&sh->reminded_ns[i], reminded, now)) {
            kind[i] = 2;
        }
        any |= kind[i] >= 0;
    }
    if (!any)
        return;
    /* the texts: a consistent copy (perhaps of a newer run, which is fine) */
    if (he_shm_read(sh, &p, reasons, &seq) != 0) {
        p = *seen;
        for (i = 0; i < HE_NCHECKS; i++)
            snprintf(reasons[i], sizeof reasons[i], "(reason unavailable)");
    }
    for (i = 0; i < HE_NCHECKS; i++)    /* the file may be corrupt */
        printable(reasons[i], HE_ERRLEN);
    printable(p.db_type, sizeof p.db_type);
    for (i = 0; i < HE_NCHECKS; i++)
        if (kind[i] >= 0)
            line_for(log, kind[i] == 2 ? &p : seen, p.db_type, reasons[i], i,
                     kind[i], now);
}

/* ---- the answer ---------------------------------------------------------- */

he_judgement
he_status_judge(he_shared *sh, const he_checker_ctx *x, int64_t now,
                he_pub *p, uint32_t *seq)
{
    const he_config *c = x->cfg;
    int64_t cache = (int64_t)(c->cache_seconds * 1e9);
    int64_t timeout = (int64_t)(c->timeout * 1e9);
    int64_t age;

    if (he_shm_read(sh, p, NULL, seq) != 0 || !pub_usable(p, x, now))
        return HE_JUDGE_NONE;
    age = now - p->check[HE_CHECK_DB].at_ns;
    if (age < cache)
        return HE_JUDGE_FRESH;
    if (cache > 0 && age < cache + timeout)
        return HE_JUDGE_REFRESH;
    return HE_JUDGE_WAIT;
}

/*
 * Ask for a run after seq and wait for a result this instance may answer
 * with, within the request's own deadline (it began at begun).  A result
 * of an older configuration (the checker being replaced finished its run
 * first) asks once more.  1 with the result in p.
 */
static int
wait_usable(he_instance *in, he_pub *p, uint32_t *seq, int64_t begun,
            he_log_batch *log)
{
    he_shared *sh = in->shm.sh;
    int tries;

    for (tries = 0; tries < 2; tries++) {
        if (!wait_result(in, *seq, begun, log)
            || he_shm_read(sh, p, NULL, seq) != 0)
            return 0;
        if (pub_usable(p, &in->x, he_now_ns()))
            return 1;
    }
    return 0;
}

void
he_instance_answer(he_instance *in, he_status *out, he_log_batch *log)
{
    he_judgement j;
    he_shared *sh;
    he_pub p;
    uint32_t seq;
    int64_t now, last;
    int have = 0;

    log->n = 0;
    if (prepare(in, log) != 0) {
        he_status_unfinished(NULL, in->x.cfg, out);
        return;
    }
    sh = in->shm.sh;
    now = he_now_ns();
    last = he_load64(&sh->last_read_ns);
    if (last < now - HE_NS_PER_S || last > now)
        he_store64(&sh->last_read_ns, now);     /* the checker's lease */
    j = he_status_judge(sh, &in->x, now, &p, &seq);
    have = j != HE_JUDGE_NONE;          /* its log lines may still be due */
    if (j == HE_JUDGE_FRESH || j == HE_JUDGE_REFRESH) {
        he_status_of_pub(&p, out);      /* at once */
        if (j == HE_JUDGE_REFRESH)
            (void)ask(in, seq, now, log);
    } else if (wait_usable(in, &p, &seq, now, log)) {
        he_status_of_pub(&p, out);
        have = 1;
    } else {
        he_status_unfinished(sh, in->x.cfg, out);
    }
    if (have)
        he_status_logs(sh, &p, he_now_ns(), log);
    if (in->reattach) {
        in->reattach = 0;
        he_shm_detach(&in->shm);        /* the next request maps the new one */
    }
}
