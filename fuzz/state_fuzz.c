/*
 * state_fuzz.c - libFuzzer target for the shared state file as input: the
 * reader's steps (he_status_judge, he_status_of_pub, he_status_unfinished,
 * he_status_logs) on arbitrary state contents, and he_shm_attach_file on
 * an arbitrary file.
 *
 * The state file is written by the checker and every RT worker of the
 * instance; a crash, a bug or a hand-edited file can leave anything in it,
 * and every status request reads it.
 *
 * Proves: no memory error, leak or undefined behaviour (ASan, LSan,
 * UBSan, including signed overflow) for any state contents, any `now` a
 * monotonic clock can show and any configuration, and that
 *   - the judgement is one of the four, and agrees with the age of the
 *     result: fresh only when usable and younger than CacheSeconds,
 *     refresh only when within CacheSeconds + Timeout, none whenever the
 *     copy cannot be made (a writer died mid-write: the counter is odd),
 *     the result never ran, is stamped in the future or before the
 *     clock's start, or belongs to an older configuration;
 *   - the answers are ok/fail/skipped only, unfinished says fail exactly
 *     for what is checked unless the run in progress finished it;
 *   - log lines: at most one per check and call, level "error" or
 *     "warning", text NUL-terminated within its buffer; a second call at
 *     the same time claims nothing (each turn is logged once); a minute
 *     later a check whose failure this call logged gets its reminder;
 *   - a file is attached with a valid header afterwards (initialised again
 *     when it was garbage, another boot's or an older layout; left as it
 *     was when it was ours), or refused with a reason (a newer layout, a
 *     group-writable file, a symbolic link); never a crash.
 *
 * Input layout:
 *   [0] flags: bit 0 file mode, bit 1 a valid header (magic, layout,
 *       size and this boot's id, so the reader goes deep), bit 2 "fields"
 *       (the rest fills the interesting fields: pub, logging, run state,
 *       reasons) instead of "raw" (the whole struct in order), bit 3 `now`
 *       relative to the database result's time, bit 4 our configuration's
 *       hash is the published one, bit 5 a database type is configured,
 *       bit 6 the Redis check is on, bit 7 the change counter may be odd
 *   [1] file mode flags: bit 0 group-writable, bit 1 through a symlink,
 *       bit 2 layout one newer (with a valid header)
 *   [2..3] CacheSeconds in ms, [4..5] Timeout in ms (0 -> 1 ms),
 *   [6..13] now, [14..21] our configuration's stamp (both little endian)
 *   [22..] the state (raw or fields; file mode: the file's bytes, raw)
 *
 * Run through fuzz/run.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "he.h"
#include "he_shared.h"
#include "he_status.h"

static void cleanup(void);

/* On failure the temp dir goes too (libFuzzer ends with _Exit). */
#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "state_fuzz: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                       \
            cleanup();                                                      \
            abort();                                                        \
        }                                                                   \
    } while (0)

#define CTL 22                          /* bytes before the state */
#define MAX_NOW (1LL << 62)             /* a monotonic clock: >= 0, ~146 y */

static he_shared header;                /* a real one: magic, boot id */
static char dir[64], path[128], lock_path[160], link_path[160];

static void
cleanup(void)
{
    unlink(path);
    unlink(lock_path);
    unlink(link_path);
    snprintf(lock_path, sizeof lock_path, "%s.lock", link_path);
    unlink(lock_path);
    rmdir(dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
    he_shm m;
    char err[HE_ERRLEN];

    (void)argc;
    (void)argv;
    if (he_shm_attach_private(&m, "fuzz", err, sizeof err) != 0) {
        fprintf(stderr, "state_fuzz: %s\n", err);
        abort();
    }
    header = *m.sh;                     /* freshly initialised */
    he_shm_detach(&m);
    snprintf(dir, sizeof dir, "%s/he-state-fuzz-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (mkdtemp(dir) == NULL) {
        perror("state_fuzz: mkdtemp");
        abort();
    }
    snprintf(path, sizeof path, "%s/state", dir);
    snprintf(lock_path, sizeof lock_path, "%s.lock", path);
    snprintf(link_path, sizeof link_path, "%s/link", dir);
    atexit(cleanup);
    return 0;
}

static uint64_t
le64(const uint8_t *p)
{
    uint64_t v = 0;
    int i;

    for (i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Put the header of a state this boot would accept into sh. */
static void
valid_header(he_shared *sh)
{
    sh->magic = header.magic;
    sh->layout = header.layout;
    sh->size = header.size;
    memcpy(sh->boot_id, header.boot_id, sizeof sh->boot_id);
}

/* Copy up to n bytes of the input into field f; *p, *left advance. */
static void
fill(void *f, size_t n, const uint8_t **p, size_t *left)
{
    if (n > *left)
        n = *left;
    memcpy(f, *p, n);
    *p += n;
    *left -= n;
}

/* "fields": the parts of the state the reader decides by, in order of
 * interest, over a zeroed state. */
static void
fill_fields(he_shared *sh, const uint8_t *p, size_t left)
{
    int i;

    fill(&sh->pub, sizeof sh->pub, &p, &left);
    fill(&sh->changecount, sizeof sh->changecount, &p, &left);
    fill(&sh->result_seq, sizeof sh->result_seq, &p, &left);
    fill(sh->logged_event, sizeof sh->logged_event, &p, &left);
    fill(sh->reminded_ns, sizeof sh->reminded_ns, &p, &left);
    fill(&sh->running, sizeof sh->running, &p, &left);
    for (i = 0; i < HE_NCHECKS; i++) {
        fill(&sh->slot[i].done, sizeof sh->slot[i].done, &p, &left);
        fill(&sh->slot[i].result, sizeof sh->slot[i].result, &p, &left);
    }
    for (i = 0; i < HE_NCHECKS; i++)
        fill(sh->reason[i], sizeof sh->reason[i], &p, &left);
}

static int
result_ok(he_result r)
{
    return r == HE_OK || r == HE_FAIL || r == HE_SKIPPED;
}

static he_result
mapped(int32_t r)
{
    return (r == HE_OK || r == HE_SKIPPED) ? (he_result)r : HE_FAIL;
}

/* Which check a line is about, from its text. */
static int
line_check(const he_log_line *l)
{
    if (strncmp(l->text, "database check ", 15) == 0)
        return HE_CHECK_DB;
    if (strncmp(l->text, "redis check ", 12) == 0)
        return HE_CHECK_REDIS;
    return -1;
}

static void
check_batch(const he_log_batch *log)
{
    int i, seen[HE_NCHECKS] = { 0 }, id;

    CHECK(log->n >= 0 && log->n <= HE_NCHECKS);
    for (i = 0; i < log->n; i++) {
        const he_log_line *l = &log->line[i];

        CHECK(l->level != NULL);
        CHECK(strcmp(l->level, "error") == 0
              || strcmp(l->level, "warning") == 0);
        CHECK(memchr(l->text, '\0', sizeof l->text) != NULL);
        id = line_check(l);
        CHECK(id >= 0);
        CHECK(!seen[id]);               /* one line per check and call */
        seen[id] = 1;
    }
}

static void
logs(he_shared *sh, const he_pub *seen, int64_t now, he_log_batch *log)
{
    memset(log, 0x5a, sizeof *log);
    log->n = 0;
    he_status_logs(sh, seen, now, log);
    check_batch(log);
}

/* The reader's steps on sh, with checks against what sh holds. */
static void
read_state(he_shared *sh, const he_checker_ctx *x, const he_config *c,
           int64_t now)
{
    he_pub p, before;
    he_status st;
    he_log_batch log, later;
    uint32_t seq = 0xdeadbeef;
    he_judgement j;
    int64_t cache = (int64_t)(c->cache_seconds * 1e9);
    int64_t timeout = (int64_t)(c->timeout * 1e9), age;
    int odd = he_load32(&sh->changecount) & 1, i, k, logged_fail[2] = { 0 };
    const he_pub_check *db;

    memset(&p, 0, sizeof p);
    before = sh->pub;
    j = he_status_judge(sh, x, now, &p, &seq);
    CHECK(j == HE_JUDGE_FRESH || j == HE_JUDGE_REFRESH || j == HE_JUDGE_WAIT
          || j == HE_JUDGE_NONE);
    CHECK(seq == sh->result_seq);
    CHECK(memcmp(&before, &sh->pub, sizeof before) == 0);   /* only reads */
    if (odd) {
        CHECK(j == HE_JUDGE_NONE);
    } else {
        CHECK(memcmp(&p, &sh->pub, sizeof p) == 0);
        db = &p.check[HE_CHECK_DB];
        if (db->result < 0 || db->at_ns < 0 || db->at_ns > now
            || (p.config_hash != x->hash && x->stamp > p.config_stamp))
            CHECK(j == HE_JUDGE_NONE);
        if (j != HE_JUDGE_NONE) {
            /* usable: 0 <= at <= now, and the age decides */
            CHECK(db->result >= 0 && db->at_ns >= 0 && db->at_ns <= now);
            CHECK(p.config_hash == x->hash || x->stamp <= p.config_stamp);
            age = now - db->at_ns;
            CHECK(j == (age < cache ? HE_JUDGE_FRESH
                        : cache > 0 && age < cache + timeout
                            ? HE_JUDGE_REFRESH : HE_JUDGE_WAIT));
        }
        if (c->cache_seconds == 0)
            CHECK(j == HE_JUDGE_WAIT || j == HE_JUDGE_NONE);
    }

    he_status_of_pub(&p, &st);
    CHECK(result_ok(st.db) && result_ok(st.redis));
    CHECK(st.db == mapped(p.check[HE_CHECK_DB].result));
    CHECK(st.redis == mapped(p.check[HE_CHECK_REDIS].result));

    he_status_unfinished(sh, c, &st);
    CHECK(result_ok(st.db) && result_ok(st.redis));
    if (!he_load32(&sh->running)) {
        CHECK(st.db == (c->db.type ? HE_FAIL : HE_SKIPPED));
        CHECK(st.redis == (c->redis.enabled ? HE_FAIL : HE_SKIPPED));
    } else {
        for (i = 0; i < HE_NCHECKS; i++) {
            he_result r = i == HE_CHECK_DB ? st.db : st.redis;

            if (he_load32(&sh->slot[i].done))
                CHECK(r == mapped(sh->slot[i].result));
        }
    }
    he_status_unfinished(NULL, c, &st);
    CHECK(st.db == (c->db.type ? HE_FAIL : HE_SKIPPED));
    CHECK(st.redis == (c->redis.enabled ? HE_FAIL : HE_SKIPPED));

    /* the log lines: claimed once, a reminder a minute later */
    logs(sh, &p, now, &log);
    for (i = 0; i < log.n; i++) {
        k = line_check(&log.line[i]);
        if (p.check[k].result == HE_FAIL)
            logged_fail[k] = 1;
    }
    logs(sh, &p, now, &later);
    CHECK(later.n == 0);
    logs(sh, &p, now + HE_REMIND_NS, &later);
    for (k = 0; k < HE_NCHECKS; k++) {
        int found = 0;

        for (i = 0; i < later.n; i++)
            found |= line_check(&later.line[i]) == k;
        if (logged_fail[k])
            CHECK(found);
        if (found)
            CHECK(p.check[k].result == HE_FAIL);
    }
}

/* A `now` a monotonic clock can show; with flag 8 shortly after the
 * database result (when that is a time at all), so that the age matters. */
static int64_t
now_for(const he_shared *sh, uint8_t flags, uint64_t now_in)
{
    int64_t at = sh->pub.check[HE_CHECK_DB].at_ns;

    if ((flags & 8) && at >= 0 && at < MAX_NOW)
        return at + (int64_t)(now_in % (1ULL << 37));   /* up to ~137 s */
    return (int64_t)(now_in % (uint64_t)MAX_NOW);
}

static void
memory_mode(const uint8_t *st, size_t n, uint8_t flags, he_checker_ctx *x,
            const he_config *c, uint64_t now_in)
{
    he_shared *sh = malloc(sizeof *sh);   /* exact: ASan sees an overrun */

    CHECK(sh != NULL);
    memset(sh, 0, sizeof *sh);
    if (flags & 4)
        fill_fields(sh, st, n);
    else
        memcpy(sh, st, n < sizeof *sh ? n : sizeof *sh);
    if (flags & 2)
        valid_header(sh);
    if (!(flags & 0x80))
        sh->changecount &= ~1u;
    if (flags & 0x10)
        x->hash = sh->pub.config_hash;
    read_state(sh, x, c, now_for(sh, flags, now_in));
    free(sh);
}

/* What he_shm_attach_file must make of a file that starts with buf. */
enum { KEEP, INIT, REFUSE };

static int
expected(const he_shared *h)
{
    if (h->magic != HE_SHARED_MAGIC || h->size != HE_SHARED_SIZE)
        return INIT;
    if (h->layout > HE_SHARED_LAYOUT)
        return REFUSE;
    if (memcmp(h->boot_id, header.boot_id, sizeof h->boot_id) != 0)
        return INIT;
    return h->layout == HE_SHARED_LAYOUT ? KEEP : INIT;
}

static void
file_mode(const uint8_t *st, size_t n, uint8_t flags, uint8_t fflags,
          he_checker_ctx *x, const he_config *c, uint64_t now_in)
{
    unsigned char *buf;
    size_t len = n, hlen = offsetof(he_shared, boot_id) + sizeof header.boot_id;
    he_shared h;
    he_shm m;
    char err[HE_ERRLEN];
    const char *at = path;
    int fd, want, rc;
    struct stat sb;

    /* the bytes of the file; a valid header needs its first bytes */
    if ((flags & 2) && len < hlen)
        len = hlen;
    buf = calloc(1, len ? len : 1);
    CHECK(buf != NULL);
    memcpy(buf, st, n);
    if (flags & 2) {
        memcpy(&h, buf, hlen);
        valid_header(&h);
        if (fflags & 4)
            h.layout = HE_SHARED_LAYOUT + 1;
        memcpy(buf, &h, hlen);
    }
    fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(len == 0 || write(fd, buf, len) == (ssize_t)len);
    if (fflags & 1)
        CHECK(fchmod(fd, 0620) == 0);
    close(fd);
    if (fflags & 2) {
        CHECK(symlink(path, link_path) == 0);
        at = link_path;
    }
    /* the header as the attach will see it: the file padded with zeros */
    memset(&h, 0, sizeof h);
    memcpy(&h, buf, len < sizeof h ? len : sizeof h);
    want = (fflags & 3) ? REFUSE : expected(&h);

    memset(err, 0, sizeof err);
    rc = he_shm_attach_file(&m, at, "fuzz", err, sizeof err);
    if (want == REFUSE) {
        CHECK(rc == -1);
        CHECK(err[0] != '\0' && memchr(err, '\0', sizeof err) != NULL);
        CHECK(m.sh == NULL && m.path == NULL && m.lock_path == NULL);
        if (fflags & 2)
            CHECK(strstr(err, "symbolic link") != NULL);
        else if (fflags & 1)
            CHECK(strstr(err, "writable by group") != NULL);
        else
            CHECK(strstr(err, "newer version") != NULL);
    } else {
        if (rc != 0)
            fprintf(stderr, "state_fuzz: attach failed: %s\n", err);
        CHECK(rc == 0 && m.sh != NULL && m.is_file);
        CHECK(he_shm_usable(&m, 0));
        CHECK(m.sh->magic == HE_SHARED_MAGIC
              && m.sh->layout == HE_SHARED_LAYOUT
              && m.sh->size == HE_SHARED_SIZE);
        CHECK(memcmp(m.sh->boot_id, header.boot_id, sizeof header.boot_id)
              == 0);
        CHECK(stat(path, &sb) == 0
              && (size_t)sb.st_size == (len > HE_SHARED_SIZE
                                        ? len : HE_SHARED_SIZE));
        if (want == KEEP) {
            CHECK(memcmp(m.sh, buf, len < HE_SHARED_SIZE ? len
                                                         : HE_SHARED_SIZE)
                  == 0);
            if (flags & 0x10)
                x->hash = m.sh->pub.config_hash;
            if (!(flags & 0x80))
                m.sh->changecount &= ~1u;
            read_state(m.sh, x, c, now_for(m.sh, flags, now_in));
        } else {
            /* initialised: no result, no checker */
            CHECK(strcmp(m.sh->version, "fuzz") == 0);
            CHECK(m.sh->pub.check[HE_CHECK_DB].result == -1
                  && m.sh->pub.check[HE_CHECK_REDIS].result == -1);
            CHECK(m.sh->checker_pid == 0 && m.sh->changecount == 0
                  && m.sh->result_seq == 0);
        }
        he_shm_detach(&m);
    }
    CHECK(unlink(path) == 0);
    unlink(lock_path);
    if (fflags & 2) {
        char l[200];

        unlink(link_path);
        snprintf(l, sizeof l, "%s.lock", link_path);
        unlink(l);
    }
    free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    he_config c;
    he_checker_ctx x;
    uint8_t flags, fflags;
    unsigned cache_ms, timeout_ms;
    uint64_t now_in;

    if (size < CTL)
        return 0;
    flags = data[0];
    fflags = data[1];
    cache_ms = (unsigned)data[2] | (unsigned)data[3] << 8;
    timeout_ms = (unsigned)data[4] | (unsigned)data[5] << 8;
    now_in = le64(data + 6);

    he_config_init(&c);
    c.cache_seconds = cache_ms / 1000.0;            /* 0 .. 65.5 s */
    c.timeout = (timeout_ms ? timeout_ms : 1) / 1000.0;
    if (flags & 0x20)
        he_config_set(&c, "db.type", "Pg", NULL, NULL);
    c.redis.enabled = (flags & 0x40) != 0;
    memset(&x, 0, sizeof x);
    x.cfg = &c;
    x.version = "fuzz";
    x.hash = he_config_hash(&c, x.version);
    x.stamp = (int64_t)le64(data + 14);

    if (flags & 1)
        file_mode(data + CTL, size - CTL, flags, fflags, &x, &c, now_in);
    else
        memory_mode(data + CTL, size - CTL, flags, &x, &c, now_in);
    he_config_free(&c);
    return 0;
}
