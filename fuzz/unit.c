/*
 * unit.c - known answers of the C core's parsers, router, responses,
 * check dispatch and deadline helpers (no Perl, no network).
 *
 * Proves: the documented behaviour for typical and edge inputs ("0.5",
 * "1e3", "nan", "[::1]:6379", "/run/redis.sock", CIDR prefixes, v4-mapped
 * addresses, paths, option validation, the status cache, poll deadlines).
 * Built with ASan+UBSan by fuzz/run, which runs it; by hand:
 *   clang -g -fsanitize=address,undefined -Ixs fuzz/unit.c xs/he_config.c \
 *     xs/he_route.c xs/he_response.c xs/he_checks.c xs/he_time.c \
 *     -lpthread -lm -o /tmp/unit && /tmp/unit
 * Prints "N passed, M failed"; exit 1 if any failed.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "he.h"

static int passed, failed;

#define T(cond)                                                        \
    do {                                                               \
        if (cond)                                                      \
            passed++;                                                  \
        else {                                                         \
            failed++;                                                  \
            printf("not ok: %s (unit.c line %d)\n", #cond, __LINE__);  \
        }                                                              \
    } while (0)

static int
seconds_is(const char *s, double want)
{
    double v = -42;

    return he_config_parse_seconds(s, &v) == 0 && v == want;
}

static int
seconds_bad(const char *s)
{
    double v = -42;

    return he_config_parse_seconds(s, &v) == -1 && v == -42;
}

static int
hostport_is(const char *s, int dflt, const char *host, int port)
{
    he_hostport hp = { NULL, 0 };
    int ok = he_config_parse_hostport(s, dflt, &hp) == 0
             && strcmp(hp.host, host) == 0 && hp.port == port;

    free(hp.host);
    return ok;
}

static int
hostport_bad(const char *s)
{
    he_hostport hp = { NULL, 0 };

    return he_config_parse_hostport(s, 6379, &hp) == -1 && hp.host == NULL;
}

static int
cidr_bits(const char *s)
{
    he_cidr c;

    return he_config_parse_cidr(s, &c) == 0 ? c.bits : -1;
}

/* Is addr allowed by a config holding the given CIDRs (NULL-terminated)? */
static int
allowed(const char *addr, const char *cidr1, const char *cidr2)
{
    he_config c;
    int r;

    he_config_init(&c);
    if (cidr1)
        he_config_set(&c, "allow_from", cidr1, NULL, NULL);
    if (cidr2)
        he_config_set(&c, "allow_from", cidr2, NULL, NULL);
    r = he_config_addr_allowed(&c, addr, addr ? strlen(addr) : 0);
    he_config_free(&c);
    return r;
}

static char last_warning[HE_ERRLEN];
static int n_warnings;

static void
keep_warn(void *ctx, const char *msg)
{
    (void)ctx;
    snprintf(last_warning, sizeof last_warning, "%s", msg);
    n_warnings++;
}

static void
parsers(void)
{
    char longpath[2100];

    T(seconds_is("0.5", 0.5));
    T(seconds_is("1e3", 1000));
    T(seconds_is("0", 0));
    T(seconds_is("2", 2));
    T(seconds_is(".25", 0.25));
    T(seconds_bad("nan"));
    T(seconds_bad("NaN"));
    T(seconds_bad("inf"));
    T(seconds_bad("infinity"));
    T(seconds_bad("0x10"));
    T(seconds_bad("-1"));
    T(seconds_bad(""));
    T(seconds_bad(NULL));
    T(seconds_bad(" 1"));
    T(seconds_bad("1 "));
    T(seconds_bad("1s"));
    T(seconds_bad("1e999"));
    T(seconds_bad("1,5"));
    /* ' ' and '\t' are refused in front, the other spaces strtod skips
     * are not */
    T(seconds_bad("\n1"));
    T(seconds_bad("\r1"));
    T(seconds_bad("\v1"));

    T(hostport_is("host:6380", 6379, "host", 6380));
    T(hostport_is("redis", 6379, "redis", 6379));
    T(hostport_is("redis", 26379, "redis", 26379));
    T(hostport_is("[::1]:6379", 1, "::1", 6379));
    T(hostport_is("[::1]", 6379, "::1", 6379));
    T(hostport_is("::1", 6379, "::1", 6379));
    T(hostport_is("fe80::1:2", 6379, "fe80::1:2", 6379));
    T(hostport_is("127.0.0.1:65535", 6379, "127.0.0.1", 65535));
    T(hostport_bad("/run/redis.sock"));
    T(hostport_bad("host:0"));
    T(hostport_bad("host:65536"));
    T(hostport_bad("host:"));
    T(hostport_bad("host:+1"));
    T(hostport_bad("host:123456"));
    T(hostport_bad(":6379"));
    T(hostport_bad("[::1"));
    T(hostport_bad("[::1]x"));
    T(hostport_bad("[::1]:"));
    T(hostport_bad("[]:6379"));
    T(hostport_bad("a b:1"));
    T(hostport_bad(""));
    T(hostport_bad(NULL));

    T(cidr_bits("10.0.0.0/8") == 104);
    T(cidr_bits("1.2.3.4") == 128);
    T(cidr_bits("0.0.0.0/0") == 96);
    T(cidr_bits("::1") == 128);
    T(cidr_bits("::/0") == 0);
    T(cidr_bits("2001:db8::/32") == 32);
    T(cidr_bits("fe80::1%eth0/64") == 64);
    T(cidr_bits("10.0.0.0/33") == -1);
    T(cidr_bits("::/129") == -1);
    T(cidr_bits("10.0.0.0/") == -1);
    T(cidr_bits("10.0.0.0/8x") == -1);
    T(cidr_bits("10.0.0.0/-8") == -1);
    T(cidr_bits("10.0.0/8") == -1);
    T(cidr_bits("example.com") == -1);
    T(cidr_bits("") == -1);

    T(allowed("10.1.2.3", "10.0.0.0/8", NULL) == 1);
    T(allowed("11.1.2.3", "10.0.0.0/8", NULL) == 0);
    T(allowed("10.255.255.255", "10.0.0.0/8", NULL) == 1);
    T(allowed("192.168.1.7", "192.168.1.0/29", NULL) == 1);
    T(allowed("192.168.1.8", "192.168.1.0/29", NULL) == 0);
    T(allowed("::ffff:10.1.2.3", "10.0.0.0/8", NULL) == 1);
    T(allowed("::1", "10.0.0.0/8", "::1") == 1);
    T(allowed("::2", "10.0.0.0/8", "::1") == 0);
    T(allowed("fe80::1%lo", "fe80::/10", NULL) == 1);
    T(allowed("1.2.3.4", "0.0.0.0/0", NULL) == 1);
    T(allowed("2001:db8::1", "0.0.0.0/0", NULL) == 0);
    T(allowed("garbage", "0.0.0.0/0", NULL) == 0);
    T(allowed("", "0.0.0.0/0", NULL) == 0);
    T(allowed(NULL, "0.0.0.0/0", NULL) == 0);
    T(allowed("garbage", NULL, NULL) == 1);     /* no list: everyone */

    T(he_config_parse_path("/") == 0);
    T(he_config_parse_path("/healthz/ping") == 0);
    T(he_config_parse_path("/a%20b") == 0);
    T(he_config_parse_path("healthz") == -1);
    T(he_config_parse_path("") == -1);
    T(he_config_parse_path(NULL) == -1);
    T(he_config_parse_path("/a b") == -1);
    T(he_config_parse_path("/a?b") == -1);
    T(he_config_parse_path("/a#b") == -1);
    T(he_config_parse_path("/\x7f") == -1);
    T(he_config_parse_path("/\xc3\xa9") == -1);
    memset(longpath, 'a', sizeof longpath);
    longpath[0] = '/';
    longpath[2048] = '\0';
    T(he_config_parse_path(longpath) == 0);
    longpath[2048] = 'a';
    longpath[2049] = '\0';
    T(he_config_parse_path(longpath) == -1);
}

static void
options(void)
{
    he_config c;

    he_config_init(&c);
    T(strcmp(c.ping_path, "/healthz/ping") == 0);
    T(strcmp(c.status_path, "/healthz/status") == 0);
    T(c.timeout == 2 && c.cache_seconds == 1);
    T(strcmp(c.redis.server.host, "127.0.0.1") == 0
      && c.redis.server.port == 6379 && c.redis.database == -1);

    T(he_config_set(&c, "timeout", "0", keep_warn, NULL) == -1
      && c.timeout == 2);
    T(strstr(last_warning, "HealthEndpoint_Timeout") != NULL);
    T(he_config_set(&c, "timeout", "300.5", keep_warn, NULL) == -1);
    T(he_config_set(&c, "timeout", "0.25", keep_warn, NULL) == 0
      && c.timeout == 0.25);
    T(he_config_set(&c, "cache_seconds", "0", keep_warn, NULL) == 0
      && c.cache_seconds == 0);
    T(he_config_set(&c, "cache_seconds", "nan", keep_warn, NULL) == -1
      && c.cache_seconds == 0);
    T(he_config_set(&c, "redis.enabled", "2", keep_warn, NULL) == -1);
    T(he_config_set(&c, "redis.enabled", NULL, keep_warn, NULL) == -1);
    T(he_config_set(&c, "redis.enabled", "1", keep_warn, NULL) == 0
      && c.redis.enabled == 1);
    T(he_config_set(&c, "redis.database", "3", keep_warn, NULL) == 0
      && c.redis.database == 3);
    T(he_config_set(&c, "redis.database", "-1", keep_warn, NULL) == -1
      && c.redis.database == 3);
    T(he_config_set(&c, "redis.database", "", keep_warn, NULL) == 0
      && c.redis.database == -1);
    T(he_config_set(&c, "redis.server", "[::1]:6380", keep_warn, NULL) == 0
      && strcmp(c.redis.server.host, "::1") == 0
      && c.redis.server.port == 6380);
    T(he_config_set(&c, "redis.server", "/run/redis.sock", keep_warn, NULL)
      == -1 && strcmp(c.redis.server.host, "::1") == 0);
    T(he_config_set(&c, "redis.sock", "/run/redis.sock", keep_warn, NULL)
      == 0 && strcmp(c.redis.sock, "/run/redis.sock") == 0);
    T(he_config_set(&c, "redis.sentinel", "s1", keep_warn, NULL) == 0
      && c.redis.n_sentinels == 1 && c.redis.sentinels[0].port == 26379);
    T(he_config_set(&c, "redis.sentinel", "s2:1:", keep_warn, NULL) == 0);
    T(he_config_set(&c, "redis.sentinel", "[s3", keep_warn, NULL) == -1
      && c.redis.n_sentinels == 2);
    T(he_config_set(&c, "db.type", "Oracle", keep_warn, NULL) == 0
      && c.db.kind == HE_DB_CALLBACK);
    T(he_config_set(&c, "db.type", "DB2", keep_warn, NULL) == -1
      && c.db.kind == HE_DB_NONE);
    T(he_config_set(&c, "db.type", "MariaDB", keep_warn, NULL) == 0
      && c.db.kind == HE_DB_MYSQL);
    T(he_config_set(&c, "db.extra.sslmode", "", keep_warn, NULL) == 0
      && c.db.n_extra == 1 && strcmp(c.db.extra[0].value, "") == 0);
    T(he_config_set(&c, "db.extra.", "x", keep_warn, NULL) == -1);
    T(he_config_set(&c, "db.host", "", keep_warn, NULL) == 0
      && c.db.host == NULL);
    T(he_config_set(&c, "nope", "x", keep_warn, NULL) == -1);
    T(he_config_set(&c, NULL, "x", keep_warn, NULL) == -1);
    T(he_config_set(&c, "allow_from", "10.0.0.0/8", keep_warn, NULL) == 0);
    T(he_config_set(&c, "allow_from", "10.0.0.0/99", keep_warn, NULL) == -1
      && c.n_allow == 1);
    T(he_config_set(&c, "ping_path", "/same", keep_warn, NULL) == 0);
    T(he_config_set(&c, "status_path", "/same", keep_warn, NULL) == 0);
    T(he_config_set(&c, "status_path", "no-slash", keep_warn, NULL) == -1
      && strcmp(c.status_path, "/same") == 0);
    n_warnings = 0;
    he_config_finish(&c, keep_warn, NULL);
    T(strcmp(c.ping_path, "/healthz/ping") == 0
      && strcmp(c.status_path, "/healthz/status") == 0
      && c.ping_len == 13 && c.status_len == 15);
    T(n_warnings >= 2);   /* same paths; no mysql/Redis backend built here */
    he_config_free(&c);
    T(c.ping_path == NULL && c.allow == NULL);
    he_config_free(&c);                 /* twice is harmless */
}

static void
routing(void)
{
    he_config c;
    he_response r;
    he_status st;

    he_config_init(&c);
    T(he_route_match(&c, "/healthz/ping", 13) == HE_ROUTE_PING);
    T(he_route_match(&c, "/healthz/status", 15) == HE_ROUTE_STATUS);
    T(he_route_match(&c, "/healthz/ping/", 14) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/healthz/pin", 12) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/HEALTHZ/PING", 13) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/healthz/ping\0x", 15) == HE_ROUTE_PASS);
    T(he_route_match(&c, "", 0) == HE_ROUTE_PASS);
    T(he_route_match(&c, NULL, 0) == HE_ROUTE_PASS);
    T(he_route_method("GET", 3) == HE_METHOD_GET);
    T(he_route_method("HEAD", 4) == HE_METHOD_HEAD);
    T(he_route_method("get", 3) == HE_METHOD_OTHER);
    T(he_route_method("GETX", 3) == HE_METHOD_GET);     /* length counts */
    T(he_route_method("POST", 4) == HE_METHOD_OTHER);
    T(he_route_method(NULL, 0) == HE_METHOD_OTHER);

    memset(&st, 0, sizeof st);
    he_response_build(HE_ROUTE_PING, HE_METHOD_GET, 0, &st, &r);
    T(r.status == 200 && strcmp(r.body, "pong") == 0 && r.body_len == 4
      && r.send_body && !r.allow_header);
    he_response_build(HE_ROUTE_PING, HE_METHOD_HEAD, 0, &st, &r);
    T(r.status == 200 && r.body_len == 4 && !r.send_body);
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_OTHER, 0, &st, &r);
    T(r.status == 405 && r.allow_header && r.send_body);
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 1, &st, &r);
    T(r.status == 403 && !r.allow_header);
    st.db = HE_OK;
    st.redis = HE_SKIPPED;
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 0, &st, &r);
    T(r.status == 200 && strcmp(r.body, "{\"checks\":{\"database\":\"ok\","
                                "\"redis\":\"skipped\"},\"status\":\"ok\"}")
                         == 0);
    st.redis = HE_FAIL;
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_HEAD, 0, &st, &r);
    T(r.status == 503 && !r.send_body && r.body_len == strlen(r.body)
      && strstr(r.body, "\"status\":\"fail\"") != NULL);
    T(strcmp(he_result_name((he_result)7), "fail") == 0);
    he_config_free(&c);
}

static int cb_calls;

static he_result
cb_ok(void *ctx, char *err, size_t errlen)
{
    (void)ctx;
    (void)err;
    (void)errlen;
    cb_calls++;
    return HE_OK;
}

static void
checks(void)
{
    he_config c;
    he_status_cache cache;
    he_status st;

    memset(&cache, 0, sizeof cache);
    he_config_init(&c);
    he_checks_run(&c, &cache, NULL, NULL, &st);
    T(st.db == HE_SKIPPED && st.redis == HE_SKIPPED && !st.from_cache);
    he_checks_run(&c, &cache, NULL, NULL, &st);
    T(st.from_cache == 1);

    he_config_set(&c, "db.type", "Oracle", NULL, NULL);
    memset(&cache, 0, sizeof cache);
    he_checks_run(&c, &cache, NULL, NULL, &st);
    T(st.db == HE_FAIL && strstr(st.db_err, "DBI") != NULL);
    memset(&cache, 0, sizeof cache);
    he_checks_run(&c, &cache, cb_ok, NULL, &st);
    he_checks_run(&c, &cache, cb_ok, NULL, &st);
    T(st.db == HE_OK && cb_calls == 1 && st.from_cache == 1);
    he_config_set(&c, "cache_seconds", "0", NULL, NULL);
    he_checks_run(&c, &cache, cb_ok, NULL, &st);
    T(cb_calls == 2 && st.from_cache == 0);
    he_config_set(&c, "cache_seconds", "0.05", NULL, NULL);
    he_checks_run(&c, &cache, cb_ok, NULL, &st);  /* result 0 s old */
    T(cb_calls == 2 && st.from_cache == 1);
    usleep(80000);
    he_checks_run(&c, &cache, cb_ok, NULL, &st);
    T(cb_calls == 3 && st.from_cache == 0);

    if (!he_checks_have_db(HE_DB_PG)) {     /* this build: no backends */
        he_config_set(&c, "db.type", "Pg", NULL, NULL);
        he_config_set(&c, "redis.enabled", "1", NULL, NULL);
        he_checks_run(&c, NULL, NULL, NULL, &st);
        T(st.db == HE_FAIL && st.redis == HE_FAIL
          && strstr(st.db_err, "no Pg backend") != NULL);
    }
    T(he_checks_have_db(HE_DB_CALLBACK) == 1);
    T(strstr(he_checks_backends(), "Oracle(DBI)") != NULL);
    he_config_free(&c);
}

static void
timing(void)
{
    int fds[2];
    double t0, late;

    T(he_time_left_ms(he_time_now() - 1) == 0);
    T(he_time_left_ms(NAN) == 0);
    T(he_time_left_ms(he_time_now() + 0.0001) == 1);
    T(he_time_left_ms(he_time_now() + 1) > 990);
    T(he_time_left_ms(1e300) == 2147483647);
    errno = 0;
    T(he_time_wait_fd(-1, 0, he_time_now() + 1) == -1 && errno == EBADF);
    if (pipe(fds) != 0)
        return;
    t0 = he_time_now();
    T(he_time_wait_fd(fds[0], 0, t0 + 0.05) == 0);
    late = he_time_now() - (t0 + 0.05);
    T(late >= 0 && late < 0.02);
    printf("# he_time_wait_fd overshoot past a 50 ms deadline: %.3f ms\n",
           late * 1000);
    T(he_time_wait_fd(fds[1], 1, he_time_now() + 1) == 1);
    T(write(fds[1], "x", 1) == 1);
    T(he_time_wait_fd(fds[0], 0, he_time_now() + 1) == 1);
    close(fds[0]);
    T(he_time_wait_fd(fds[0], 0, he_time_now() + 1) == -1);
    close(fds[1]);
}

int
main(void)
{
    parsers();
    options();
    routing();
    checks();
    timing();
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
