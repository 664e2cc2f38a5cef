/*
 * config_fuzz.c - libFuzzer target for the option parsers and the config
 * lifecycle: he_parse_seconds/_hostport/_cidr/_path/_client/_list_next,
 * he_cidr_format, he_config_addr_allowed, he_config_set +
 * he_config_finish + he_config_copy + he_config_hash + he_config_free.
 *
 * Proves: no memory error, leak (LSan) or undefined behaviour for any
 * option value, and that
 *   - what a parser accepts is well formed: a finite number >= 0; a host
 *     without brackets/slashes and a port in 1..65535; a path of printable
 *     ASCII starting with '/';
 *   - a CIDR he_parse_cidr accepts contains the address it was written
 *     with; he_cidr_format prints it as text that he_parse_cidr reads back
 *     to the same address and prefix;
 *   - a /32 or /128 entry allows its address and no neighbour;
 *   - the allowlist fails closed: configured with no valid entry it allows
 *     nobody; not configured it allows everybody; otherwise an address is
 *     allowed exactly when a bit-by-bit reference match says so;
 *   - any sequence of options leaves a config within its documented
 *     bounds (paths, namespace, timeout, cache, Redis, the allowlist), a
 *     copy hashes like the original, and the answer without a result
 *     (he_status_unfinished) says fail exactly for what is checked.
 *
 * Input: [0] % 6 picks the mode; the rest is the value (modes 0-3 take it
 * as one NUL-terminated string, mode 4 as "cidr\ncidr\n...\naddress",
 * mode 5 as records "K value\n": a K byte below 0x20 picks a known key from
 * keys[], otherwise the key runs to the first space).
 *
 * Run through fuzz/run.
 */
#include <arpa/inet.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "he.h"
#include "he_status.h"

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "config_fuzz: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                        \
            abort();                                                         \
        }                                                                    \
    } while (0)

static const char *const keys[] = {
    "ping_path", "status_path", "namespace", "timeout", "cache_seconds",
    "allow_from", "db.type", "db.host", "db.port", "db.name", "db.user",
    "db.password", "db.require_table", "db.extra.sslmode", "db.extra.",
    "redis_auto", "check_redis", "redis.server", "redis.sock",
    "redis.username", "redis.password", "redis.database", "redis.sentinel",
    "redis.service", "redis.", "db.", "bogus",
};
#define NKEYS (sizeof keys / sizeof keys[0])

/* RT's top-level directories, written out again as the oracle for
 * he_options.c's rt_dirs: never a namespace. */
static const char *const rt_dirs[] = {
    "Admin", "Approvals", "Articles", "Asset", "Assets", "Crypt",
    "Dashboards", "Download", "Elements", "Errors", "Group", "Helpers",
    "Install", "NoAuth", "Prefs", "REST", "Reports", "Search", "SelfService",
    "Ticket", "Tools", "Transaction", "User", "Views", "Widgets", "l",
    "l_unsafe", "m", "static", "index.html", NULL
};

static size_t warnings;

static void
count_warn(void *ctx, he_level level, const char *msg)
{
    (void)ctx;
    CHECK(level == HE_LOG_ERROR || level == HE_LOG_WARNING
          || level == HE_LOG_INFO);
    CHECK(msg != NULL && strlen(msg) < HE_ERRLEN);
    warnings++;
}

/* Independent of he_cidr_contains: the first bits of both, bit by bit. */
static int
ref_contains(const he_cidr *c, const unsigned char a[16])
{
    int i;

    for (i = 0; i < c->bits; i++)
        if (((c->addr[i / 8] ^ a[i / 8]) >> (7 - i % 8)) & 1)
            return 0;
    return 1;
}

/* The text of a 16-byte address as a client would send it. */
static void
addr_text(const unsigned char a[16], char *buf, size_t len)
{
    static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                0xff, 0xff };

    if (memcmp(a, v4mapped, 12) == 0)
        inet_ntop(AF_INET, a + 12, buf, (socklen_t)len);
    else
        inet_ntop(AF_INET6, a, buf, (socklen_t)len);
}

static void
check_seconds(const char *s)
{
    double v = -1;

    if (he_parse_seconds(s, &v) == 0)
        CHECK(isfinite(v) && v >= 0 && !strpbrk(s, "xXnN"));
    else
        CHECK(v == -1);
}

static void
check_hostport(const char *s, int dflt)
{
    he_hostport hp = { NULL, 0 };
    size_t i;

    if (he_parse_hostport(s, dflt, &hp) != 0) {
        CHECK(hp.host == NULL);
        return;
    }
    CHECK(hp.host != NULL && hp.host[0] != '\0' && strlen(hp.host) <= 255);
    for (i = 0; hp.host[i]; i++)
        CHECK(hp.host[i] > 0x20 && hp.host[i] < 0x7f
              && !strchr("/[]", hp.host[i]));
    CHECK(hp.port >= 1 && hp.port <= 65535);
    if (!strchr(s, ':') && s[0] != '[')
        CHECK(hp.port == dflt && strcmp(hp.host, s) == 0);
    free(hp.host);
}

/* An accepted CIDR contains the address it was written with, survives
 * format + parse unchanged, and as an allowlist of one a /32 or /128
 * allows exactly its address. */
static void
check_cidr(const char *s)
{
    he_cidr cidr, again;
    he_config c;
    const char *slash;
    char text[80], addr[64], *cut;
    unsigned char a[16];
    size_t alen;

    if (he_parse_cidr(s, &cidr) != 0)
        return;
    CHECK(cidr.bits >= 0 && cidr.bits <= 128);
    if (!strchr(s, '/'))
        CHECK(cidr.bits == 128);
    CHECK(he_cidr_contains(&cidr, cidr.addr) == 1);

    /* format, parse back: the same address and prefix */
    memset(text, 'X', sizeof text);
    he_cidr_format(&cidr, text, sizeof text);
    CHECK(memchr(text, '\0', sizeof text) != NULL);
    CHECK(he_parse_cidr(text, &again) == 0);
    CHECK(again.bits == cidr.bits);
    CHECK(memcmp(again.addr, cidr.addr, 16) == 0);

    /* a zone may hold list separators: then it is not one entry */
    if (strpbrk(s, ", \t\r\n") != NULL)
        return;
    he_config_init(&c);
    CHECK(he_config_set(&c, "allow_from", s, count_warn, NULL) == 0);
    he_config_finish(&c, count_warn, NULL);
    CHECK(c.allow_set && c.n_allow == 1);
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    CHECK(he_config_addr_allowed(&c, s, alen) == 1);
    /* the formatted address (without "/bits") is allowed too */
    cut = strchr(text, '/');
    CHECK(cut != NULL);
    CHECK(he_config_addr_allowed(&c, text, (size_t)(cut - text)) == 1);
    if (cidr.bits == 128) {
        /* its neighbour (last bit flipped) is not */
        memcpy(a, cidr.addr, 16);
        a[15] ^= 1;
        addr_text(a, addr, sizeof addr);
        CHECK(he_config_addr_allowed(&c, addr, strlen(addr)) == 0);
        a[15] ^= 1;
        addr_text(a, addr, sizeof addr);
        CHECK(he_config_addr_allowed(&c, addr, strlen(addr)) == 1);
    }
    he_config_free(&c);
}

static void
check_path(const char *s)
{
    size_t i;

    if (he_parse_path(s) != 0)
        return;
    CHECK(s[0] == '/' && strlen(s) <= 2048);
    for (i = 0; s[i]; i++)
        CHECK(s[i] > 0x20 && s[i] < 0x7f && s[i] != '?' && s[i] != '#');
}

/* "cidr\ncidr\n...\naddr": every line before the last is an allow_from
 * value, the last (not terminated) the client address. */
static void
check_allowed(const char *s, size_t len)
{
    he_config c;
    const char *line = s, *nl, *p, *e;
    char *addr;
    unsigned char a[16];
    size_t alen, elen, i, valid = 0;
    int got, want, parsed;

    he_config_init(&c);
    while ((nl = memchr(line, '\n', len - (size_t)(line - s))) != NULL) {
        char *entry = strndup(line, (size_t)(nl - line));

        CHECK(entry != NULL);
        he_config_set(&c, "allow_from", entry, count_warn, NULL);
        /* count the entries that should have been kept */
        p = entry;
        while ((e = he_parse_list_next(&p, &elen)) != NULL) {
            char one[200];
            he_cidr cidr;

            CHECK(elen > 0 && e >= entry && e + elen <= entry + strlen(entry));
            if (elen > 128)
                continue;
            snprintf(one, sizeof one, "%.*s", (int)elen, e);
            valid += he_parse_cidr(one, &cidr) == 0;
        }
        free(entry);
        line = nl + 1;
    }
    he_config_finish(&c, count_warn, NULL);
    CHECK(c.n_allow == valid);
    alen = len - (size_t)(line - s);
    addr = malloc(alen ? alen : 1);     /* exact size: no terminator */
    CHECK(addr != NULL);
    memcpy(addr, line, alen);
    got = he_config_addr_allowed(&c, addr, alen);
    parsed = he_parse_client(addr, alen, a) == 0;
    if (!c.allow_set) {
        want = 1;                       /* no allowlist: everybody */
    } else {
        want = 0;                       /* nobody, unless an entry matches */
        for (i = 0; parsed && i < c.n_allow; i++)
            want |= ref_contains(&c.allow[i], a);
    }
    CHECK(got == want);
    if (c.allow_set && c.n_allow == 0)
        CHECK(got == 0);
    CHECK(he_config_addr_allowed(&c, NULL, alen) == !c.allow_set);
    free(addr);
    he_config_free(&c);
}

static int
is_rt_dir(const char *ns)
{
    size_t flen = strcspn(ns + 1, "/"), i;

    for (i = 0; rt_dirs[i]; i++)
        if (strlen(rt_dirs[i]) == flen
            && strncasecmp(ns + 1, rt_dirs[i], flen) == 0)
            return 1;
    return 0;
}

/* Records "K value\n"; value "\x7f" alone stands for NULL (Perl undef). */
static void
check_sequence(const char *s, size_t len)
{
    he_config c, copy;
    he_status st;
    he_response resp;
    const char *rec = s, *end = s + len;
    unsigned long long h;
    size_t i;

    he_config_init(&c);
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
        CHECK(key != NULL && value != NULL);
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
    CHECK(he_parse_path(c.ping_path) == 0);
    CHECK(he_parse_path(c.status_path) == 0);
    CHECK(strcmp(c.ping_path, c.status_path) != 0);
    if (c.namespace != NULL) {
        CHECK(c.namespace_len == strlen(c.namespace) && c.namespace_len > 1);
        CHECK(he_parse_path(c.namespace) == 0);
        CHECK(c.namespace[c.namespace_len - 1] != '/');
        CHECK(!is_rt_dir(c.namespace));
    } else {
        CHECK(c.namespace_len == 0);
    }
    if (!c.namespace_set && strcmp(c.ping_path, "/healthz/ping") == 0
        && strcmp(c.status_path, "/healthz/status") == 0)
        CHECK(c.namespace && strcmp(c.namespace, "/healthz") == 0);
    if (!c.namespace_set && (strcmp(c.ping_path, "/healthz/ping") != 0
                             || strcmp(c.status_path, "/healthz/status") != 0))
        CHECK(c.namespace == NULL);
    /* the two paths always route to themselves, namespace or not */
    CHECK(he_route_match(&c, c.ping_path, c.ping_len) == HE_ROUTE_PING);
    CHECK(he_route_match(&c, c.status_path, c.status_len) == HE_ROUTE_STATUS);
    CHECK(c.timeout > 0 && c.timeout <= 300);
    CHECK(c.cache_seconds >= 0 && c.cache_seconds <= 3600);
    CHECK(c.redis.server.host != NULL);
    CHECK(c.redis.server.port >= 1 && c.redis.server.port <= 65535);
    CHECK(c.redis.database >= -1 && c.redis.database <= 1000000);
    CHECK(c.redis.enabled == 0 || c.redis.enabled == 1);
    CHECK(c.redis.invalid == 0 || c.redis.invalid == 1);
    CHECK((c.allow == NULL) == (c.n_allow == 0));
    if (c.n_allow > 0)
        CHECK(c.allow_set);
    for (i = 0; i < c.n_allow; i++)
        CHECK(c.allow[i].bits >= 0 && c.allow[i].bits <= 128);
    /* fails closed */
    if (c.allow_set && c.n_allow == 0) {
        CHECK(he_config_addr_allowed(&c, "127.0.0.1", 9) == 0);
        CHECK(he_config_addr_allowed(&c, "::1", 3) == 0);
    }
    if (!c.allow_set)
        CHECK(he_config_addr_allowed(&c, "x", 1) == 1);
    for (i = 0; i < c.redis.n_sentinels; i++)
        CHECK(c.redis.sentinels[i].host != NULL
              && c.redis.sentinels[i].port >= 1
              && c.redis.sentinels[i].port <= 65535);
    for (i = 0; i < c.db.n_extra; i++)
        CHECK(c.db.extra[i].key && c.db.extra[i].value
              && c.db.extra[i].key[0] != '\0');
    CHECK(c.db.type == NULL || c.db.type[0] != '\0');
    if (c.db.type == NULL)
        CHECK(c.db.kind == HE_DB_NONE);

    /* identity: stable, and a copy is the same configuration */
    h = he_config_hash(&c, "fuzz");
    CHECK(h == he_config_hash(&c, "fuzz"));
    he_config_copy(&copy, &c);
    CHECK(he_config_hash(&copy, "fuzz") == h);
    CHECK(copy.allow_set == c.allow_set && copy.n_allow == c.n_allow);
    CHECK(copy.namespace_len == c.namespace_len);
    CHECK(he_route_match(&copy, c.ping_path, c.ping_len) == HE_ROUTE_PING);
    he_config_free(&copy);

    /* no result in time: fail for what is checked, skipped for the rest */
    he_status_unfinished(NULL, &c, &st);
    CHECK(st.db == (c.db.type ? HE_FAIL : HE_SKIPPED));
    CHECK(st.redis == (c.redis.enabled ? HE_FAIL : HE_SKIPPED));
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 0, &st, &resp);
    CHECK(resp.body_len == strlen(resp.body));
    CHECK(resp.status == ((c.db.type || c.redis.enabled) ? 503 : 200));
    he_config_free(&c);
    CHECK(c.ping_path == NULL && c.allow == NULL && c.namespace == NULL);
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
    if (s == NULL)
        return 0;
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
