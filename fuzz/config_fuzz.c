/*
 * config_fuzz.c - libFuzzer target for the option parsers and the config
 * lifecycle: he_config_parse_seconds/_hostport/_cidr/_path,
 * he_config_addr_allowed, he_config_set + he_config_finish + he_config_free,
 * and he_checks_run on the result (built without backend defines, so no
 * check touches the network: each answers skipped/fail at once).
 *
 * Proves: no memory error, leak (LSan) or undefined behaviour for any
 * option value, and that what a parser accepts is well formed (a finite
 * number >= 0, a host without brackets/slashes and a port in 1..65535, a
 * prefix within 0..128 that contains its own address, a path of printable
 * ASCII starting with '/') and that any sequence of options leaves a config
 * within its documented bounds.
 *
 * Input: [0] % 6 picks the mode; the rest is the value (modes 0-3 take it
 * as one NUL-terminated string, mode 4 as "cidr\ncidr\n...\naddress",
 * mode 5 as records "K value\n": a K byte below 0x20 picks a known key from
 * keys[], otherwise the key runs to the first space).
 *
 * Run through fuzz/run.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "he.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "config_fuzz: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

static const char *const keys[] = {
    "ping_path", "status_path", "timeout", "cache_seconds", "allow_from",
    "db.type", "db.host", "db.port", "db.name", "db.user", "db.password",
    "db.extra.sslmode", "db.extra.", "redis.enabled", "redis.server",
    "redis.sock", "redis.username", "redis.password", "redis.database",
    "redis.sentinel", "redis.service", "redis.", "db.", "bogus",
};
#define NKEYS (sizeof keys / sizeof keys[0])

static size_t warnings;

static void
count_warn(void *ctx, const char *msg)
{
    (void)ctx;
    CHECK(msg != NULL && strlen(msg) < HE_ERRLEN);
    warnings++;
}

static void
check_seconds(const char *s)
{
    double v = -1;

    if (he_config_parse_seconds(s, &v) == 0)
        CHECK(isfinite(v) && v >= 0 && !strpbrk(s, "xXnN"));
}

static void
check_hostport(const char *s, int dflt)
{
    he_hostport hp = { NULL, 0 };
    size_t i;

    if (he_config_parse_hostport(s, dflt, &hp) != 0)
        return;
    CHECK(hp.host != NULL && hp.host[0] != '\0' && strlen(hp.host) <= 255);
    for (i = 0; hp.host[i]; i++)
        CHECK(hp.host[i] > 0x20 && hp.host[i] < 0x7f
              && !strchr("/[]", hp.host[i]));
    CHECK(hp.port >= 1 && hp.port <= 65535);
    if (!strchr(s, ':') && s[0] != '[')
        CHECK(hp.port == dflt && strcmp(hp.host, s) == 0);
    free(hp.host);
}

/* An accepted CIDR must contain the address it was written with. */
static void
check_cidr(const char *s)
{
    he_cidr cidr;
    he_config c;
    const char *slash;

    if (he_config_parse_cidr(s, &cidr) != 0)
        return;
    CHECK(cidr.bits >= 0 && cidr.bits <= 128);
    if (!strchr(s, '/'))
        CHECK(cidr.bits == 128);
    he_config_init(&c);
    CHECK(he_config_set(&c, "allow_from", s, count_warn, NULL) == 0);
    CHECK(c.n_allow == 1);
    slash = strchr(s, '/');
    CHECK(he_config_addr_allowed(&c, s, slash ? (size_t)(slash - s)
                                               : strlen(s)) == 1);
    he_config_free(&c);
}

static void
check_path(const char *s)
{
    size_t i;

    if (he_config_parse_path(s) != 0)
        return;
    CHECK(s[0] == '/' && strlen(s) <= 2048);
    for (i = 0; s[i]; i++)
        CHECK(s[i] > 0x20 && s[i] < 0x7f && s[i] != '?' && s[i] != '#');
}

/* "cidr\ncidr\n...\naddr": the address is the last line, not terminated. */
static void
check_allowed(const char *s, size_t len)
{
    he_config c;
    const char *line = s, *nl;
    char *addr;
    size_t alen;

    he_config_init(&c);
    while ((nl = memchr(line, '\n', len - (size_t)(line - s))) != NULL) {
        char *entry = strndup(line, (size_t)(nl - line));

        he_config_set(&c, "allow_from", entry, count_warn, NULL);
        free(entry);
        line = nl + 1;
    }
    alen = len - (size_t)(line - s);
    addr = malloc(alen ? alen : 1);
    memcpy(addr, line, alen);
    CHECK(he_config_addr_allowed(&c, addr, alen) == 0
          || he_config_addr_allowed(&c, addr, alen) == 1);
    if (c.n_allow == 0)
        CHECK(he_config_addr_allowed(&c, addr, alen) == 1);
    free(addr);
    he_config_free(&c);
}

/* Records "K value\n"; value "\x7f" alone stands for NULL (Perl undef). */
static void
check_sequence(const char *s, size_t len)
{
    he_config c;
    he_status_cache cache;
    he_status st;
    he_response resp;
    const char *rec = s, *end = s + len;
    size_t i;

    he_config_init(&c);
    memset(&cache, 0, sizeof cache);
    while (rec < end) {
        const char *nl = memchr(rec, '\n', (size_t)(end - rec));
        const char *rend = nl ? nl : end, *v;
        char *key, *value;

        if ((unsigned char)rec[0] < 0x20) {
            key = strdup(keys[(unsigned char)rec[0] % NKEYS]);
            v = rec + 1;
        } else {
            const char *sp = memchr(rec, ' ', (size_t)(rend - rec));

            v = sp ? sp : rend;
            key = strndup(rec, (size_t)(v - rec));
        }
        if (v < rend && *v == ' ')
            v++;
        value = strndup(v, (size_t)(rend - v));
        he_config_set(&c, key, strcmp(value, "\x7f") ? value : NULL,
                      count_warn, NULL);
        free(key);
        free(value);
        rec = nl ? nl + 1 : end;
    }
    he_config_finish(&c, count_warn, NULL);

    CHECK(c.ping_path && c.status_path);
    CHECK(c.ping_len == strlen(c.ping_path));
    CHECK(c.status_len == strlen(c.status_path));
    CHECK(strcmp(c.ping_path, c.status_path) != 0);
    CHECK(c.timeout > 0 && c.timeout <= 300);
    CHECK(c.cache_seconds >= 0 && c.cache_seconds <= 3600);
    CHECK(c.redis.server.host != NULL);
    CHECK(c.redis.server.port >= 1 && c.redis.server.port <= 65535);
    CHECK(c.redis.database >= -1);
    CHECK(c.redis.enabled == 0 || c.redis.enabled == 1);
    CHECK((c.allow == NULL) == (c.n_allow == 0) || c.allow != NULL);
    for (i = 0; i < c.n_allow; i++)
        CHECK(c.allow[i].bits >= 0 && c.allow[i].bits <= 128);
    for (i = 0; i < c.redis.n_sentinels; i++)
        CHECK(c.redis.sentinels[i].host != NULL);
    for (i = 0; i < c.db.n_extra; i++)
        CHECK(c.db.extra[i].key && c.db.extra[i].value);
    CHECK((c.db.type == NULL) || c.db.type[0] != '\0');

    /* No backend is compiled in: this answers at once, no thread, no I/O. */
    c.timeout = 0.05;
    he_checks_run(&c, &cache, NULL, NULL, &st);
    CHECK(st.db == HE_OK || st.db == HE_FAIL || st.db == HE_SKIPPED);
    CHECK(st.redis == HE_FAIL || st.redis == HE_SKIPPED);
    CHECK(strlen(st.db_err) < HE_ERRLEN && strlen(st.redis_err) < HE_ERRLEN);
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 0, &st, &resp);
    CHECK(resp.body_len == strlen(resp.body));
    he_checks_run(&c, &cache, NULL, NULL, &st);     /* cached or not */
    he_config_free(&c);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s;
    size_t len;

    if (size < 1)
        return 0;
    len = size - 1;
    s = malloc(len + 1);
    memcpy(s, data + 1, len);
    s[len] = '\0';
    switch (data[0] % 6) {
    case 0: check_seconds(s); break;
    case 1: check_hostport(s, data[0] & 0x80 ? 26379 : 6379); break;
    case 2: check_cidr(s); break;
    case 3: check_path(s); break;
    case 4: check_allowed(s, len); break;
    default: check_sequence(s, len); break;
    }
    free(s);
    return 0;
}
