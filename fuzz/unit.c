/*
 * unit.c - known answers of the C core: the parsers, the options, the
 * router and the responses, the configuration's identity, the shared
 * state file, the reader's steps on a private state, and the deadline
 * helpers (no Perl, no network).
 *
 * Proves: the documented behaviour for typical and edge inputs (numbers,
 * paths, host:port, CIDRs with prefix or netmask, zones only on fe80::/10,
 * list splitting, an allowlist that fails closed, the /healthz namespace,
 * 403 before 404 before 405, HEAD bodies, what the configuration hash
 * covers), and the reader's decisions on a state written as the checker
 * writes it (under the change counter): fresh / refresh / wait / none by
 * age and by configuration, a log line claimed exactly once, the
 * "still failing" reminder a minute later (a fake clock: no sleeping).
 * One answer goes through a real checker process on a private state.
 * No timing window shorter than several seconds is asserted: the overshoot
 * of a deadline is printed and only bounded generously (issue 12).
 *
 * Built with ASan+UBSan and -Werror by fuzz/run, which runs it.  Prints
 * "not ok" lines and "unit: N passed, M failed"; exit 1 if any failed.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "he.h"
#include "he_checker.h"
#include "he_proc.h"
#include "he_shared.h"
#include "he_status.h"

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

/* ---- helpers ------------------------------------------------------------ */

static int
seconds_is(const char *s, double want)
{
    double v = -42;

    return he_parse_seconds(s, &v) == 0 && v == want;
}

static int
seconds_bad(const char *s)
{
    double v = -42;

    return he_parse_seconds(s, &v) == -1 && v == -42;
}

static int
hostport_is(const char *s, int dflt, const char *host, int port)
{
    he_hostport hp = { NULL, 0 };
    int ok = he_parse_hostport(s, dflt, &hp) == 0
             && strcmp(hp.host, host) == 0 && hp.port == port;

    free(hp.host);
    return ok;
}

static int
hostport_bad(const char *s)
{
    he_hostport hp = { NULL, 0 };

    return he_parse_hostport(s, 6379, &hp) == -1 && hp.host == NULL;
}

static int
cidr_bits(const char *s)
{
    he_cidr c;

    return he_parse_cidr(s, &c) == 0 ? c.bits : -1;
}

/* he_parse_cidr, then he_cidr_format: the text, or "-" when refused. */
static const char *
cidr_text(const char *s)
{
    static char buf[80];
    he_cidr c;

    if (he_parse_cidr(s, &c) != 0)
        return "-";
    he_cidr_format(&c, buf, sizeof buf);
    return buf;
}

static int
client_is(const char *s, const char *want_v6)
{
    unsigned char a[16], b[16];
    he_cidr c;

    if (he_parse_client(s, strlen(s), a) != 0)
        return 0;
    if (he_parse_cidr(want_v6, &c) != 0)
        return 0;
    memcpy(b, c.addr, 16);
    return memcmp(a, b, 16) == 0;
}

static int
client_bad(const char *s, size_t len)
{
    unsigned char a[16];

    return he_parse_client(s, len, a) == -1;
}

/* The entries of a list joined by '|'. */
static const char *
split(const char *list)
{
    static char out[256];
    const char *p = list, *e;
    size_t len, used = 0;

    out[0] = '\0';
    while ((e = he_parse_list_next(&p, &len)) != NULL && used < 200)
        used += (size_t)snprintf(out + used, sizeof out - used, "%s%.*s",
                                 used ? "|" : "", (int)len, e);
    return out;
}

/* What the warn callback was told. */
static struct {
    int n, n_error, n_warning, n_info;
    he_level level;
    char last[HE_ERRLEN];
    char all[4096];
} w;

static void
keep_warn(void *ctx, he_level level, const char *msg)
{
    size_t used = strlen(w.all);

    (void)ctx;
    w.n++;
    w.n_error += level == HE_LOG_ERROR;
    w.n_warning += level == HE_LOG_WARNING;
    w.n_info += level == HE_LOG_INFO;
    w.level = level;
    snprintf(w.last, sizeof w.last, "%s", msg);
    snprintf(w.all + used, sizeof w.all - used, "%s\n", msg);
}

static void
warn_reset(void)
{
    memset(&w, 0, sizeof w);
}

/* A finished config with up to two allow_from values (NULL: not set). */
static int
allowed(const char *addr, const char *cidr1, const char *cidr2)
{
    he_config c;
    int r;

    he_config_init(&c);
    if (cidr1)
        he_config_set(&c, "allow_from", cidr1, keep_warn, NULL);
    if (cidr2)
        he_config_set(&c, "allow_from", cidr2, keep_warn, NULL);
    he_config_finish(&c, keep_warn, NULL);
    r = he_config_addr_allowed(&c, addr, addr ? strlen(addr) : 0);
    he_config_free(&c);
    return r;
}

/* ---- parsers ------------------------------------------------------------ */

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
    T(seconds_bad("\n1"));
    T(seconds_bad("\r1"));
    T(seconds_bad("\v1"));

    T(he_parse_path("/") == 0);
    T(he_parse_path("/healthz/ping") == 0);
    T(he_parse_path("/a%20b") == 0);
    T(he_parse_path("healthz") == -1);
    T(he_parse_path("") == -1);
    T(he_parse_path(NULL) == -1);
    T(he_parse_path("/a b") == -1);
    T(he_parse_path("/a?b") == -1);
    T(he_parse_path("/a#b") == -1);
    T(he_parse_path("/\x7f") == -1);
    T(he_parse_path("/\xc3\xa9") == -1);
    memset(longpath, 'a', sizeof longpath);
    longpath[0] = '/';
    longpath[2048] = '\0';
    T(he_parse_path(longpath) == 0);
    longpath[2048] = 'a';
    longpath[2049] = '\0';
    T(he_parse_path(longpath) == -1);

    T(hostport_is("host:6380", 6379, "host", 6380));
    T(hostport_is("redis", 6379, "redis", 6379));
    T(hostport_is("redis", 26379, "redis", 26379));
    T(hostport_is("[::1]:6379", 1, "::1", 6379));
    T(hostport_is("[::1]", 6379, "::1", 6379));
    T(hostport_is("::1", 6379, "::1", 6379));
    T(hostport_is("fe80::1:2", 6379, "fe80::1:2", 6379));
    T(hostport_is("127.0.0.1:65535", 6379, "127.0.0.1", 65535));
    T(hostport_is("h:1", 6379, "h", 1));
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

    /* prefixes count over 128 bits; IPv4 is ::ffff:a.b.c.d */
    T(cidr_bits("10.0.0.0/8") == 104);
    T(cidr_bits("1.2.3.4") == 128);
    T(cidr_bits("0.0.0.0/0") == 96);
    T(cidr_bits("::1") == 128);
    T(cidr_bits("::/0") == 0);
    T(cidr_bits("2001:db8::/32") == 32);
    T(cidr_bits("10.0.0.0/33") == -1);
    T(cidr_bits("::/129") == -1);
    T(cidr_bits("10.0.0.0/") == -1);
    T(cidr_bits("10.0.0.0/8x") == -1);
    T(cidr_bits("10.0.0.0/-8") == -1);
    T(cidr_bits("10.0.0.0/0008") == -1);
    T(cidr_bits("10.0.0/8") == -1);
    T(cidr_bits("example.com") == -1);
    T(cidr_bits("") == -1);
    T(cidr_bits(NULL) == -1);
    /* netmasks: contiguous only, IPv4 only */
    T(cidr_bits("192.168.1.0/255.255.255.0") == 120);
    T(cidr_bits("10.0.0.0/255.0.0.0") == 104);
    T(cidr_bits("10.0.0.0/255.255.255.255") == 128);
    T(cidr_bits("10.0.0.0/0.0.0.0") == 96);
    T(cidr_bits("10.0.0.0/255.255.254.0") == 119);
    T(cidr_bits("10.0.0.0/255.0.255.0") == -1);
    T(cidr_bits("10.0.0.0/0.255.255.255") == -1);
    T(cidr_bits("10.0.0.0/255.255.255.1") == -1);
    T(cidr_bits("10.0.0.0/255.255.255") == -1);
    T(cidr_bits("2001:db8::/255.255.0.0") == -1);
    /* a zone only on fe80::/10 */
    T(cidr_bits("fe80::1%eth0/64") == 64);
    T(cidr_bits("fe80::1%eth0") == 128);
    T(cidr_bits("febf::1%eth0") == 128);
    T(cidr_bits("fec0::1%eth0") == -1);
    T(cidr_bits("2001:db8::1%eth0") == -1);
    T(cidr_bits("::1%lo") == -1);
    T(cidr_bits("10.0.0.1%eth0") == -1);
    T(cidr_bits("fe80::1%") == -1);

    T(strcmp(cidr_text("10.0.0.0/8"), "10.0.0.0/8") == 0);
    T(strcmp(cidr_text("10.1.2.3/8"), "10.1.2.3/8") == 0);  /* as given */
    T(strcmp(cidr_text("192.168.1.0/255.255.255.0"), "192.168.1.0/24") == 0);
    T(strcmp(cidr_text("1.2.3.4"), "1.2.3.4/32") == 0);
    T(strcmp(cidr_text("2001:DB8::/32"), "2001:db8::/32") == 0);
    T(strcmp(cidr_text("::ffff:10.0.0.0/104"), "10.0.0.0/8") == 0);
    T(strcmp(cidr_text("::/0"), "::/0") == 0);
    T(strcmp(cidr_text("fe80::1%eth0/64"), "fe80::1/64") == 0);

    T(client_is("10.1.2.3", "::ffff:10.1.2.3"));
    T(client_is("::ffff:10.1.2.3", "10.1.2.3"));
    T(client_is("::1", "::1"));
    T(client_is("fe80::1%lo", "fe80::1"));
    T(client_is("2001:db8::1%eth0", "2001:db8::1"));   /* any zone ignored */
    T(client_bad("1.2.3.4%eth0", 12));
    T(client_bad("", 0));
    T(client_bad("1.2.3.4", 0));
    T(client_bad("1.2.3.4\0", 8));
    T(client_bad("::1%", 4));
    T(client_bad("localhost", 9));
    T(client_bad("1.2.3.4/32", 10));
    T(client_is("1.2.3.4", "1.2.3.4"));
    {
        unsigned char a[16];

        /* the length counts, not a terminator */
        T(he_parse_client("1.2.3.45", 7, a) == 0 && a[15] == 4);
        T(he_parse_client(NULL, 3, a) == -1);
    }

    T(strcmp(split("10.0.0.0/8, 192.168.0.0/16"),
             "10.0.0.0/8|192.168.0.0/16") == 0);
    T(strcmp(split("  a\tb\n,c ,, d\r\n"), "a|b|c|d") == 0);
    T(strcmp(split(""), "") == 0);
    T(strcmp(split(" , \t\n"), "") == 0);
    T(strcmp(split("one"), "one") == 0);
    {
        const char *p = NULL;
        size_t len = 99;

        T(he_parse_list_next(&p, &len) == NULL);
    }
}

/* ---- options ------------------------------------------------------------ */

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
    T(c.namespace == NULL && !c.allow_set && !c.redis.enabled);

    warn_reset();
    T(he_config_set(&c, "timeout", "0", keep_warn, NULL) == -1
      && c.timeout == 2);
    T(w.level == HE_LOG_ERROR
      && strstr(w.last, "HealthEndpoint_Timeout") != NULL
      && strstr(w.last, "'0'") != NULL && strstr(w.last, "using 2") != NULL);
    T(he_config_set(&c, "timeout", "300.5", keep_warn, NULL) == -1);
    T(he_config_set(&c, "timeout", "0.25", keep_warn, NULL) == 0
      && c.timeout == 0.25);
    warn_reset();
    T(he_config_set(&c, "timeout", "0.005", keep_warn, NULL) == 0
      && c.timeout == 0.005);
    T(w.n == 1 && w.level == HE_LOG_WARNING
      && strstr(w.last, "below 10 ms") != NULL);
    warn_reset();
    T(he_config_set(&c, "timeout", "0.01", keep_warn, NULL) == 0 && w.n == 0);
    T(he_config_set(&c, "cache_seconds", "0", keep_warn, NULL) == 0
      && c.cache_seconds == 0);
    T(he_config_set(&c, "cache_seconds", "nan", keep_warn, NULL) == -1
      && c.cache_seconds == 0);
    T(he_config_set(&c, "cache_seconds", "3601", keep_warn, NULL) == -1);

    /* redis_auto says what an unset check_redis means */
    T(he_config_set(&c, "redis_auto", "1", keep_warn, NULL) == 0
      && c.redis.enabled == 1);
    T(he_config_set(&c, "check_redis", NULL, keep_warn, NULL) == 0
      && c.redis.enabled == 1);
    warn_reset();
    T(he_config_set(&c, "check_redis", "2", keep_warn, NULL) == -1
      && c.redis.enabled == 1
      && strstr(w.last, "auto-detection (on)") != NULL);
    T(he_config_set(&c, "check_redis", "0", keep_warn, NULL) == 0
      && c.redis.enabled == 0);
    T(he_config_set(&c, "redis_auto", "0", keep_warn, NULL) == 0
      && c.redis.enabled == 0);
    T(he_config_set(&c, "redis_auto", NULL, keep_warn, NULL) == 0
      && c.redis.enabled == 0);
    T(he_config_set(&c, "check_redis", "1", keep_warn, NULL) == 0
      && c.redis.enabled == 1);

    T(he_config_set(&c, "redis.database", "3", keep_warn, NULL) == 0
      && c.redis.database == 3);
    T(he_config_set(&c, "redis.database", "-1", keep_warn, NULL) == -1
      && c.redis.database == 3);
    T(he_config_set(&c, "redis.database", "3x", keep_warn, NULL) == -1);
    T(he_config_set(&c, "redis.database", "", keep_warn, NULL) == 0
      && c.redis.database == -1);
    T(he_config_set(&c, "redis.server", "[::1]:6380", keep_warn, NULL) == 0
      && strcmp(c.redis.server.host, "::1") == 0
      && c.redis.server.port == 6380 && !c.redis.invalid);
    /* a bad server is checked as failing, never as the default */
    T(he_config_set(&c, "redis.server", "/run/redis.sock", keep_warn, NULL)
      == -1 && c.redis.invalid == 1);
    T(he_config_set(&c, "redis.server", "r:1", keep_warn, NULL) == 0
      && !c.redis.invalid);
    T(he_config_set(&c, "redis.sock", "/run/redis.sock", keep_warn, NULL)
      == 0 && strcmp(c.redis.sock, "/run/redis.sock") == 0);
    T(he_config_set(&c, "redis.sentinel", "s1", keep_warn, NULL) == 0
      && c.redis.n_sentinels == 1 && c.redis.sentinels[0].port == 26379);
    T(he_config_set(&c, "redis.sentinel", "[s3", keep_warn, NULL) == -1
      && c.redis.n_sentinels == 1);

    T(he_config_set(&c, "db.type", "Oracle", keep_warn, NULL) == 0
      && c.db.kind == HE_DB_CALLBACK);
    T(he_config_set(&c, "db.type", "DB2", keep_warn, NULL) == -1
      && c.db.kind == HE_DB_NONE && strcmp(c.db.type, "DB2") == 0);
    T(he_config_set(&c, "db.type", "MariaDB", keep_warn, NULL) == 0
      && c.db.kind == HE_DB_MYSQL);
    T(he_config_set(&c, "db.extra.sslmode", "", keep_warn, NULL) == 0
      && c.db.n_extra == 1 && strcmp(c.db.extra[0].value, "") == 0);
    T(he_config_set(&c, "db.host", "", keep_warn, NULL) == 0
      && c.db.host == NULL);

    /* unknown keys: warned by their RT name, rejected */
    warn_reset();
    T(he_config_set(&c, "nope", "x", keep_warn, NULL) == -1
      && w.level == HE_LOG_WARNING
      && strcmp(w.last, "nope: unknown setting ignored") == 0);
    T(he_config_set(&c, "db.extra.", "x", keep_warn, NULL) == -1
      && strstr(w.last, "DatabaseExtraDSN{}") != NULL);
    T(he_config_set(&c, "db.bogus", "x", keep_warn, NULL) == -1);
    T(he_config_set(&c, "redis.bogus", "x", keep_warn, NULL) == -1
      && strstr(w.last, "WebSessionProperties{bogus}") != NULL);
    T(he_config_set(&c, "redis.", "x", keep_warn, NULL) == -1);
    T(he_config_set(&c, NULL, "x", keep_warn, NULL) == -1);
    T(he_config_set(&c, "nope", "x", NULL, NULL) == -1);   /* no callback */

    T(he_config_set(&c, "ping_path", "/same", keep_warn, NULL) == 0);
    T(he_config_set(&c, "status_path", "/same", keep_warn, NULL) == 0);
    T(he_config_set(&c, "status_path", "no-slash", keep_warn, NULL) == -1
      && strcmp(c.status_path, "/same") == 0);
    warn_reset();
    he_config_finish(&c, keep_warn, NULL);
    T(strcmp(c.ping_path, "/healthz/ping") == 0
      && strcmp(c.status_path, "/healthz/status") == 0
      && c.ping_len == 13 && c.status_len == 15);
    T(strstr(w.all, "are both '/same'") != NULL);
    T(strstr(w.all, "no MariaDB backend") != NULL);  /* none built here */
    T(strstr(w.all, "no Redis backend") != NULL);
    he_config_free(&c);
    T(c.ping_path == NULL && c.allow == NULL);
    he_config_free(&c);                 /* twice is harmless */
}

/* The allowlist fails closed. */
static void
allowlist(void)
{
    he_config c;

    T(allowed("10.1.2.3", "10.0.0.0/8", NULL) == 1);
    T(allowed("11.1.2.3", "10.0.0.0/8", NULL) == 0);
    T(allowed("10.255.255.255", "10.0.0.0/8", NULL) == 1);
    T(allowed("192.168.1.7", "192.168.1.0/29", NULL) == 1);
    T(allowed("192.168.1.8", "192.168.1.0/29", NULL) == 0);
    T(allowed("192.168.1.200", "192.168.1.0/255.255.255.0", NULL) == 1);
    T(allowed("192.168.2.1", "192.168.1.0/255.255.255.0", NULL) == 0);
    T(allowed("::ffff:10.1.2.3", "10.0.0.0/8", NULL) == 1);
    T(allowed("::1", "10.0.0.0/8", "::1") == 1);
    T(allowed("::2", "10.0.0.0/8", "::1") == 0);
    T(allowed("192.168.3.4", "10.0.0.0/8, 192.168.0.0/16", NULL) == 1);
    T(allowed("172.16.0.1", "10.0.0.0/8, 192.168.0.0/16", NULL) == 0);
    T(allowed("fe80::1%lo", "fe80::/10", NULL) == 1);
    T(allowed("fe80::2%eth1", "fe80::2%eth0", NULL) == 1);   /* zone ignored */
    T(allowed("1.2.3.4", "0.0.0.0/0", NULL) == 1);
    T(allowed("2001:db8::1", "0.0.0.0/0", NULL) == 0);
    T(allowed("2001:db8::1", "::/0", NULL) == 1);
    T(allowed("garbage", "0.0.0.0/0", NULL) == 0);
    T(allowed("", "0.0.0.0/0", NULL) == 0);
    T(allowed(NULL, "0.0.0.0/0", NULL) == 0);
    T(allowed("garbage", NULL, NULL) == 1);     /* no list: everyone */
    T(allowed(NULL, NULL, NULL) == 1);

    /* configured, but no valid entry: nobody, said as an error */
    warn_reset();
    T(allowed("127.0.0.1", "10.0.0.0/99", NULL) == 0);
    T(strstr(w.all, "no valid entry; every client gets 403") != NULL);
    T(allowed("127.0.0.1", "", NULL) == 0);
    T(allowed("127.0.0.1", " , ", NULL) == 0);
    T(allowed("10.1.1.1", "x", "10.0.0.0/8") == 1);   /* a bad one dropped */

    he_config_init(&c);
    warn_reset();
    T(he_config_set(&c, "allow_from", NULL, keep_warn, NULL) == -1);
    T(c.allow_set == 1 && c.n_allow == 0 && w.n_error == 1);
    T(he_config_addr_allowed(&c, "127.0.0.1", 9) == 0);
    T(he_config_addr_allowed(&c, "::1", 3) == 0);
    T(he_config_set(&c, "allow_from", "10.0.0.0/8 bad ::1", keep_warn, NULL)
      == -1 && c.n_allow == 2);
    warn_reset();
    he_config_finish(&c, keep_warn, NULL);
    T(w.n_info == 1
      && strstr(w.all, "allowing 10.0.0.0/8, ::1/128") != NULL);
    T(he_config_addr_allowed(&c, "::1", 3) == 1);
    T(he_config_addr_allowed(&c, "::1", 2) == 0);      /* "::" */
    he_config_free(&c);
}

/* The namespace /healthz, RT's directories, the router. */
static void
namespace_routes(void)
{
    he_config c;

    he_config_init(&c);
    he_config_finish(&c, keep_warn, NULL);
    T(c.namespace != NULL && strcmp(c.namespace, "/healthz") == 0
      && c.namespace_len == 8);
    T(he_route_match(&c, "/healthz/ping", 13) == HE_ROUTE_PING);
    T(he_route_match(&c, "/healthz/status", 15) == HE_ROUTE_STATUS);
    T(he_route_match(&c, "/healthz", 8) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/healthz/", 9) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/healthz/pin", 12) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/healthz/ping/", 14) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/healthz/ping\0x", 15) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/healthzz", 9) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/healthz.html", 13) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/HEALTHZ/PING", 13) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/Healthz/status", 15) == HE_ROUTE_PASS);
    T(he_route_match(&c, "//healthz/ping", 14) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/rt/healthz/ping", 16) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/healthz/ping", 12) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/health", 7) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/", 1) == HE_ROUTE_PASS);
    T(he_route_match(&c, "", 0) == HE_ROUTE_PASS);
    T(he_route_match(&c, NULL, 0) == HE_ROUTE_PASS);
    he_config_free(&c);

    /* without he_config_finish nothing is claimed but the two paths */
    he_config_init(&c);
    T(he_route_match(&c, "/healthz/x", 10) == HE_ROUTE_PASS);
    he_config_free(&c);

    /* other paths: no namespace unless one is configured */
    he_config_init(&c);
    he_config_set(&c, "ping_path", "/lb/ping", keep_warn, NULL);
    he_config_finish(&c, keep_warn, NULL);
    T(c.namespace == NULL && c.namespace_len == 0);
    T(he_route_match(&c, "/lb/ping", 8) == HE_ROUTE_PING);
    T(he_route_match(&c, "/healthz/status", 15) == HE_ROUTE_STATUS);
    T(he_route_match(&c, "/healthz/x", 10) == HE_ROUTE_PASS);
    T(he_route_match(&c, "/lb/x", 5) == HE_ROUTE_PASS);
    he_config_free(&c);

    he_config_init(&c);
    he_config_set(&c, "ping_path", "/lb/ping", keep_warn, NULL);
    he_config_set(&c, "status_path", "/lb/status", keep_warn, NULL);
    T(he_config_set(&c, "namespace", "/lb/", keep_warn, NULL) == 0);
    warn_reset();
    he_config_finish(&c, keep_warn, NULL);
    T(c.namespace != NULL && strcmp(c.namespace, "/lb") == 0
      && c.namespace_len == 3 && w.n == 0);
    T(he_route_match(&c, "/lb/x", 5) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/lb/status", 10) == HE_ROUTE_STATUS);
    T(he_route_match(&c, "/lbx", 4) == HE_ROUTE_PASS);
    he_config_free(&c);

    /* explicitly none */
    he_config_init(&c);
    T(he_config_set(&c, "namespace", "", keep_warn, NULL) == 0);
    he_config_finish(&c, keep_warn, NULL);
    T(c.namespace == NULL && he_route_match(&c, "/healthz", 8)
                             == HE_ROUTE_PASS);
    he_config_free(&c);
    he_config_init(&c);
    T(he_config_set(&c, "namespace", NULL, keep_warn, NULL) == 0);
    he_config_finish(&c, keep_warn, NULL);
    T(c.namespace == NULL);
    he_config_free(&c);

    /* RT's own directories are refused, in any case; "/" too */
    he_config_init(&c);
    warn_reset();
    T(he_config_set(&c, "namespace", "/Admin", keep_warn, NULL) == -1
      && c.namespace == NULL && w.level == HE_LOG_ERROR
      && strstr(w.last, "HealthEndpoint_Namespace") != NULL
      && strstr(w.last, "RT's own directories") != NULL);
    T(he_config_set(&c, "namespace", "/admin/health", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/REST", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/NoAuth/x", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/index.html", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/m", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "//", keep_warn, NULL) == -1
      && c.namespace == NULL);          /* trimmed, it would be "/" */
    T(he_config_set(&c, "namespace", "///", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "health", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/a b", keep_warn, NULL) == -1);
    T(he_config_set(&c, "namespace", "/Administrator", keep_warn, NULL) == 0);
    T(he_config_set(&c, "namespace", "/mm", keep_warn, NULL) == 0);
    T(he_config_set(&c, "namespace", "/Admin", keep_warn, NULL) == -1
      && c.namespace == NULL && c.namespace_len == 0);
    /* refused and set: no namespace, not the default */
    he_config_finish(&c, keep_warn, NULL);
    T(c.namespace == NULL);
    he_config_free(&c);

    /* a namespace holding neither path is claimed, with a warning */
    he_config_init(&c);
    he_config_set(&c, "namespace", "/probe", keep_warn, NULL);
    warn_reset();
    he_config_finish(&c, keep_warn, NULL);
    T(w.n == 1 && w.level == HE_LOG_WARNING
      && strstr(w.last, "holds neither") != NULL);
    T(he_route_match(&c, "/probe/x", 8) == HE_ROUTE_NOT_FOUND);
    T(he_route_match(&c, "/healthz/ping", 13) == HE_ROUTE_PING);
    he_config_free(&c);

    T(he_route_method("GET", 3) == HE_METHOD_GET);
    T(he_route_method("HEAD", 4) == HE_METHOD_HEAD);
    T(he_route_method("get", 3) == HE_METHOD_OTHER);
    T(he_route_method("GETX", 3) == HE_METHOD_GET);     /* length counts */
    T(he_route_method("GET", 4) == HE_METHOD_OTHER);
    T(he_route_method("POST", 4) == HE_METHOD_OTHER);
    T(he_route_method(NULL, 0) == HE_METHOD_OTHER);
}

static void
responses(void)
{
    he_response r;
    he_status st;

    memset(&st, 0, sizeof st);
    he_response_build(HE_ROUTE_PING, HE_METHOD_GET, 0, &st, &r);
    T(r.status == 200 && strcmp(r.body, "pong") == 0 && r.body_len == 4
      && r.send_body && !r.allow_header && r.body_id == HE_BODY_PONG
      && strcmp(r.content_type, "text/plain") == 0);
    he_response_build(HE_ROUTE_PING, HE_METHOD_HEAD, 0, &st, &r);
    T(r.status == 200 && r.body_len == 4 && !r.send_body);
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_OTHER, 0, &st, &r);
    T(r.status == 405 && r.allow_header && r.send_body
      && r.body_id == HE_BODY_NOT_ALLOWED
      && strcmp(r.body, "method not allowed") == 0);
    he_response_build(HE_ROUTE_PING, HE_METHOD_OTHER, 0, &st, &r);
    T(r.status == 405 && r.allow_header);

    /* 403 before anything, 404 for any method (only real paths get 405) */
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 1, &st, &r);
    T(r.status == 403 && !r.allow_header && strcmp(r.body, "forbidden") == 0);
    he_response_build(HE_ROUTE_NOT_FOUND, HE_METHOD_GET, 1, &st, &r);
    T(r.status == 403 && r.body_id == HE_BODY_FORBIDDEN);
    he_response_build(HE_ROUTE_NOT_FOUND, HE_METHOD_OTHER, 1, &st, &r);
    T(r.status == 403 && !r.allow_header && r.send_body);
    he_response_build(HE_ROUTE_NOT_FOUND, HE_METHOD_GET, 0, &st, &r);
    T(r.status == 404 && r.body_id == HE_BODY_NOT_FOUND
      && strcmp(r.body, "not found") == 0 && r.body_len == 9 && r.send_body
      && !r.allow_header && strcmp(r.content_type, "text/plain") == 0);
    he_response_build(HE_ROUTE_NOT_FOUND, HE_METHOD_OTHER, 0, &st, &r);
    T(r.status == 404 && !r.allow_header && r.send_body);
    he_response_build(HE_ROUTE_NOT_FOUND, HE_METHOD_HEAD, 0, &st, &r);
    T(r.status == 404 && r.body_len == 9 && !r.send_body);
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_HEAD, 1, &st, &r);
    T(r.status == 403 && r.body_len == 9 && !r.send_body);

    st.db = HE_OK;
    st.redis = HE_SKIPPED;
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 0, &st, &r);
    T(r.status == 200 && r.body != NULL && r.body_id == HE_BODY_STATUS
      && strcmp(r.content_type, "application/json") == 0
      && strcmp(r.body, "{\"checks\":{\"database\":\"ok\","
                "\"redis\":\"skipped\"},\"status\":\"ok\"}") == 0
      && r.body_len == strlen(r.body));
    st.redis = HE_FAIL;
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_HEAD, 0, &st, &r);
    T(r.status == 503 && !r.send_body && r.body_len == strlen(r.body)
      && strstr(r.body, "\"status\":\"fail\"") != NULL);
    st.db = (he_result)7;
    st.redis = HE_OK;
    he_response_build(HE_ROUTE_STATUS, HE_METHOD_GET, 0, &st, &r);
    T(r.status == 503 && strstr(r.body, "\"database\":\"fail\"") != NULL);
    T(strcmp(he_result_name((he_result)7), "fail") == 0);
    T(strcmp(he_result_name(HE_SKIPPED), "skipped") == 0);
    {
        char small[8];

        T(he_response_status_json(HE_OK, HE_OK, small, sizeof small) == 7
          && small[7] == '\0');
        T(he_response_status_json(HE_OK, HE_OK, small, 0) == 0);
    }
}

/* What the hash covers: what the checks run with, not where they answer. */
static void
identity(void)
{
    he_config a, b;
    unsigned long long h0;

    he_config_init(&a);
    h0 = he_config_hash(&a, "0.01");
    T(h0 == he_config_hash(&a, "0.01"));
    T(h0 != he_config_hash(&a, "0.02"));
    T(h0 != he_config_hash(&a, NULL));
    he_config_set(&a, "ping_path", "/p", keep_warn, NULL);
    he_config_set(&a, "status_path", "/s", keep_warn, NULL);
    he_config_set(&a, "namespace", "/n", keep_warn, NULL);
    he_config_set(&a, "allow_from", "10.0.0.0/8", keep_warn, NULL);
    he_config_set(&a, "cache_seconds", "5", keep_warn, NULL);
    he_config_finish(&a, keep_warn, NULL);
    T(he_config_hash(&a, "0.01") == h0);
    he_config_set(&a, "db.password", "secret", keep_warn, NULL);
    T(he_config_hash(&a, "0.01") != h0);
    he_config_copy(&b, &a);
    T(he_config_hash(&b, "0.01") == he_config_hash(&a, "0.01"));
    he_config_set(&b, "db.password", "other", keep_warn, NULL);
    T(he_config_hash(&b, "0.01") != he_config_hash(&a, "0.01"));
    he_config_set(&b, "db.password", "secret", keep_warn, NULL);
    T(he_config_hash(&b, "0.01") == he_config_hash(&a, "0.01"));
    he_config_set(&b, "redis.password", "secret", keep_warn, NULL);
    T(he_config_hash(&b, "0.01") != he_config_hash(&a, "0.01"));
    he_config_free(&b);
    he_config_copy(&b, &a);
    he_config_set(&b, "timeout", "3", keep_warn, NULL);
    T(he_config_hash(&b, "0.01") != he_config_hash(&a, "0.01"));
    he_config_free(&b);
    he_config_copy(&b, &a);
    he_config_set(&b, "db.extra.sslmode", "require", keep_warn, NULL);
    T(he_config_hash(&b, "0.01") != he_config_hash(&a, "0.01"));
    T(b.allow_set && b.n_allow == 1 && strcmp(b.namespace, "/n") == 0);
    he_config_free(&b);
    he_config_free(&a);

    /* a field boundary moved is another configuration */
    he_config_init(&a);
    he_config_init(&b);
    he_config_set(&a, "db.user", "ab", keep_warn, NULL);
    he_config_set(&a, "db.password", "c", keep_warn, NULL);
    he_config_set(&b, "db.user", "a", keep_warn, NULL);
    he_config_set(&b, "db.password", "bc", keep_warn, NULL);
    T(he_config_hash(&a, "v") != he_config_hash(&b, "v"));
    he_config_free(&a);
    he_config_free(&b);
}

/* ---- the state file --------------------------------------------------- */

static char tmpdir[64];

static void
state_file(void)
{
    char path[128], lock[140], lnk[140], err[HE_ERRLEN];
    he_shm m, m2;
    he_shared *sh;
    int fd;

    snprintf(tmpdir, sizeof tmpdir, "/tmp/he-unit-XXXXXX");
    if (mkdtemp(tmpdir) == NULL) {
        T(!"mkdtemp");
        return;
    }
    snprintf(path, sizeof path, "%s/state", tmpdir);
    snprintf(lock, sizeof lock, "%s.lock", path);
    snprintf(lnk, sizeof lnk, "%s/link", tmpdir);

    T(he_shm_attach_file(&m, "relative", "unit", err, sizeof err) == -1
      && strstr(err, "not an absolute path") != NULL && m.sh == NULL);
    T(he_shm_attach_file(&m, NULL, "unit", err, sizeof err) == -1);

    /* created, initialised, mode 0600 */
    err[0] = '\0';
    T(he_shm_attach_file(&m, path, "unit", err, sizeof err) == 0);
    if (m.sh == NULL)
        return;
    sh = m.sh;
    T(sh->magic == HE_SHARED_MAGIC && sh->layout == HE_SHARED_LAYOUT
      && sh->size == HE_SHARED_SIZE && strcmp(sh->version, "unit") == 0);
    T(sh->pub.check[HE_CHECK_DB].result == -1
      && sh->pub.check[HE_CHECK_REDIS].result == -1);
    T(m.is_file && he_shm_usable(&m, 12345) && !he_shm_replaced(&m));
    {
        struct stat st;

        T(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600
          && st.st_size == HE_SHARED_SIZE);
        T(stat(lock, &st) == 0 && (st.st_mode & 0777) == 0600);
    }

    /* attached again, it keeps what was written (same boot) */
    sh->result_seq = 41;
    T(he_shm_attach_file(&m2, path, "other", err, sizeof err) == 0);
    T(m2.sh != NULL && m2.sh->result_seq == 41
      && strcmp(m2.sh->version, "unit") == 0);
    he_shm_detach(&m2);

    /* another boot's file is initialised again */
    sh->boot_id[0] ^= 1;
    T(he_shm_attach_file(&m2, path, "unit2", err, sizeof err) == 0);
    T(m2.sh != NULL && m2.sh->result_seq == 0
      && strcmp(m2.sh->version, "unit2") == 0);
    he_shm_detach(&m2);
    T(sh->result_seq == 0);             /* the same file, seen from m */

    /* garbage: initialised again */
    sh->magic = 0x12345678;
    sh->result_seq = 7;
    T(he_shm_attach_file(&m2, path, "unit", err, sizeof err) == 0
      && m2.sh->magic == HE_SHARED_MAGIC && m2.sh->result_seq == 0);
    he_shm_detach(&m2);

    /* a newer layout: left alone, with a reason */
    sh->layout = HE_SHARED_LAYOUT + 1;
    T(he_shm_attach_file(&m2, path, "unit", err, sizeof err) == -1
      && strstr(err, "newer version") != NULL && m2.sh == NULL
      && m2.path == NULL);
    T(!he_shm_usable(&m, 0));           /* not this layout */
    sh->layout = HE_SHARED_LAYOUT;
    T(he_shm_usable(&m, 0));

    /* writable by others, a symbolic link, not a regular file */
    T(chmod(path, 0620) == 0);
    T(he_shm_attach_file(&m2, path, "unit", err, sizeof err) == -1
      && strstr(err, "writable by group or others") != NULL);
    T(chmod(path, 0600) == 0);
    T(symlink(path, lnk) == 0);
    T(he_shm_attach_file(&m2, lnk, "unit", err, sizeof err) == -1
      && strstr(err, "symbolic link") != NULL);
    T(he_shm_attach_file(&m2, tmpdir, "unit", err, sizeof err) == -1);
    snprintf(lock, sizeof lock, "%s.lock", tmpdir);
    unlink(lock);
    snprintf(lock, sizeof lock, "%s.lock", path);

    /* a short file is grown to the size */
    unlink(lnk);
    fd = open(lnk, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    T(fd >= 0 && write(fd, "HEST", 4) == 4);
    if (fd >= 0)
        close(fd);
    T(he_shm_attach_file(&m2, lnk, "unit", err, sizeof err) == 0
      && m2.sh->magic == HE_SHARED_MAGIC);
    {
        struct stat st;

        T(stat(lnk, &st) == 0 && st.st_size == HE_SHARED_SIZE);
    }
    he_shm_detach(&m2);
    T(m2.sh == NULL && m2.path == NULL && m2.lock_path == NULL);

    /* replaced under our feet */
    T(rename(lnk, path) == 0);
    T(he_shm_replaced(&m));
    unlink(path);
    T(he_shm_replaced(&m));
    he_shm_detach(&m);
    T(!he_shm_usable(&m, 0) && !he_shm_replaced(&m));
    unlink(lock);
    snprintf(lock, sizeof lock, "%s.lock", lnk);
    unlink(lock);
    T(rmdir(tmpdir) == 0);

    /* a private state: this process's alone */
    T(he_shm_attach_private(&m, "unit", err, sizeof err) == 0);
    T(!m.is_file && he_shm_usable(&m, (long)getpid())
      && !he_shm_usable(&m, (long)getpid() + 1) && !he_shm_replaced(&m));
    he_shm_detach(&m);

    T(he_seq_after(1, 0) && !he_seq_after(0, 0) && !he_seq_after(0, 1));
    T(he_seq_after(0, 0xffffffffu) && !he_seq_after(0xffffffffu, 0));
}

/* ---- the reader's steps on a private state ---------------------------- */

#define S(x) ((int64_t)(x) * HE_NS_PER_S)
#define NOW S(1000)                     /* a fake monotonic clock */

/* Publish as the checker does: under the change counter. */
static void
publish(he_shared *sh, const he_checker_ctx *x, int32_t db, int32_t redis,
        int64_t at)
{
    he_shm_write_begin(sh);
    sh->pub.config_hash = x->hash;
    sh->pub.config_stamp = x->stamp;
    snprintf(sh->pub.db_type, sizeof sh->pub.db_type, "Pg");
    sh->pub.check[HE_CHECK_DB].result = db;
    sh->pub.check[HE_CHECK_DB].at_ns = at;
    sh->pub.check[HE_CHECK_REDIS].result = redis;
    sh->pub.check[HE_CHECK_REDIS].at_ns = at;
    sh->result_seq++;
    he_shm_write_end(sh);
}

static he_judgement
judge_at(he_shared *sh, const he_checker_ctx *x, int64_t now)
{
    he_pub p;
    uint32_t seq = 12345;
    he_judgement j;

    memset(&p, 0, sizeof p);
    j = he_status_judge(sh, x, now, &p, &seq);
    if (seq != sh->result_seq)
        return (he_judgement)99;        /* fails the caller's T() */
    if (j != HE_JUDGE_NONE && memcmp(&p, &sh->pub, sizeof p) != 0)
        return (he_judgement)98;
    return j;
}

static void
judging(void)
{
    he_config c;
    he_checker_ctx x;
    he_shm m;
    he_shared *sh;
    char err[HE_ERRLEN];

    he_config_init(&c);                 /* cache 1 s, timeout 2 s */
    memset(&x, 0, sizeof x);
    x.cfg = &c;
    x.version = "unit";
    x.hash = he_config_hash(&c, x.version);
    x.stamp = S(1700000000);
    if (he_shm_attach_private(&m, "unit", err, sizeof err) != 0) {
        T(!"he_shm_attach_private");
        return;
    }
    sh = m.sh;

    T(judge_at(sh, &x, NOW) == HE_JUDGE_NONE);          /* never ran */
    publish(sh, &x, HE_OK, HE_SKIPPED, NOW - S(1) / 2);
    T(sh->changecount == 2 && sh->result_seq == 1);
    T(judge_at(sh, &x, NOW) == HE_JUDGE_FRESH);
    T(judge_at(sh, &x, NOW - S(1) / 2) == HE_JUDGE_FRESH);   /* age 0 */
    T(judge_at(sh, &x, NOW + S(1) / 2) == HE_JUDGE_REFRESH);   /* 1 s */
    T(judge_at(sh, &x, NOW + S(2)) == HE_JUDGE_REFRESH);       /* 2.5 s */
    T(judge_at(sh, &x, NOW + S(5) / 2) == HE_JUDGE_WAIT);      /* 3 s */
    T(judge_at(sh, &x, NOW + S(3600)) == HE_JUDGE_WAIT);
    /* stamped in the future (a corrupt file, another clock): not used */
    T(judge_at(sh, &x, NOW - S(1)) == HE_JUDGE_NONE);
    /* nor before the clock's start: a corrupt file, whose age would wrap
     * to "fresh" for ever */
    sh->pub.check[HE_CHECK_DB].at_ns = INT64_MIN;
    T(judge_at(sh, &x, NOW) == HE_JUDGE_NONE);
    sh->pub.check[HE_CHECK_DB].at_ns = -1;
    T(judge_at(sh, &x, NOW) == HE_JUDGE_NONE);
    sh->pub.check[HE_CHECK_DB].at_ns = 0;
    T(judge_at(sh, &x, NOW) == HE_JUDGE_WAIT);
    sh->pub.check[HE_CHECK_DB].at_ns = NOW - S(1) / 2;

    /* CacheSeconds 0: always wait for a run */
    c.cache_seconds = 0;
    T(judge_at(sh, &x, NOW - S(1) / 2) == HE_JUDGE_WAIT);
    T(judge_at(sh, &x, NOW) == HE_JUDGE_WAIT);
    c.cache_seconds = 1;

    /* another configuration: an older one's result is not used, a newer
     * one's is (it is the checker that serves now) */
    sh->pub.config_hash = x.hash + 1;
    sh->pub.config_stamp = x.stamp - 1;
    T(judge_at(sh, &x, NOW) == HE_JUDGE_NONE);
    sh->pub.config_stamp = x.stamp;
    T(judge_at(sh, &x, NOW) == HE_JUDGE_FRESH);
    sh->pub.config_stamp = x.stamp + S(60);
    T(judge_at(sh, &x, NOW) == HE_JUDGE_FRESH);
    sh->pub.config_hash = x.hash;
    sh->pub.config_stamp = x.stamp - S(60);     /* same hash: ours */
    T(judge_at(sh, &x, NOW) == HE_JUDGE_FRESH);

    /* a writer that died inside the change counter: no copy, none */
    he_shm_write_begin(sh);
    T(judge_at(sh, &x, NOW) == HE_JUDGE_NONE);
    he_shm_write_end(sh);
    T(judge_at(sh, &x, NOW) == HE_JUDGE_FRESH);

    /* a failed database check is a usable result too */
    publish(sh, &x, HE_FAIL, HE_OK, NOW);
    T(judge_at(sh, &x, NOW) == HE_JUDGE_FRESH && sh->result_seq == 2);

    {
        he_pub p;
        he_status st;

        memset(&p, 0, sizeof p);
        p.check[HE_CHECK_DB].result = HE_OK;
        p.check[HE_CHECK_REDIS].result = HE_SKIPPED;
        he_status_of_pub(&p, &st);
        T(st.db == HE_OK && st.redis == HE_SKIPPED);
        p.check[HE_CHECK_DB].result = HE_FAIL;
        p.check[HE_CHECK_REDIS].result = -1;
        he_status_of_pub(&p, &st);
        T(st.db == HE_FAIL && st.redis == HE_FAIL);
        p.check[HE_CHECK_DB].result = 3;
        p.check[HE_CHECK_REDIS].result = (int32_t)0x80000000u;
        he_status_of_pub(&p, &st);
        T(st.db == HE_FAIL && st.redis == HE_FAIL);

        /* unfinished: fail for what is checked, skipped for the rest */
        he_status_unfinished(NULL, &c, &st);
        T(st.db == HE_SKIPPED && st.redis == HE_SKIPPED);
        he_config_set(&c, "db.type", "Pg", keep_warn, NULL);
        he_status_unfinished(NULL, &c, &st);
        T(st.db == HE_FAIL && st.redis == HE_SKIPPED);
        c.redis.enabled = 1;
        he_status_unfinished(sh, &c, &st);
        T(st.db == HE_FAIL && st.redis == HE_FAIL);
        /* what the run in progress finished counts */
        sh->slot[HE_CHECK_DB].result = HE_OK;
        he_store32(&sh->slot[HE_CHECK_DB].done, 1);
        he_status_unfinished(sh, &c, &st);
        T(st.db == HE_FAIL);            /* no run in progress: stale slot */
        he_store32(&sh->running, 1);
        he_status_unfinished(sh, &c, &st);
        T(st.db == HE_OK && st.redis == HE_FAIL);
        sh->slot[HE_CHECK_REDIS].result = 9;
        he_store32(&sh->slot[HE_CHECK_REDIS].done, 1);
        he_status_unfinished(sh, &c, &st);
        T(st.db == HE_OK && st.redis == HE_FAIL);
        sh->slot[HE_CHECK_REDIS].result = HE_SKIPPED;
        he_status_unfinished(sh, &c, &st);
        T(st.redis == HE_SKIPPED);
        he_store32(&sh->running, 0);
    }
    he_shm_detach(&m);
    he_config_free(&c);
}

/* The lines of one he_status_logs call, checked for shape. */
static int
logs_at(he_shared *sh, int64_t now, he_log_batch *log)
{
    he_pub p;
    uint32_t seq;
    int i;

    if (he_shm_read(sh, &p, NULL, &seq) != 0)
        return -1;
    memset(log, 0x5a, sizeof *log);
    log->n = 0;
    log->line[0].level = "none";        /* what T() sees when no line came */
    log->line[0].text[0] = '\0';
    he_status_logs(sh, &p, now, log);
    for (i = 0; i < log->n; i++)
        if (memchr(log->line[i].text, '\0', sizeof log->line[i].text) == NULL)
            return -2;
    return log->n;
}

/* A check's turn as the checker publishes it (he_checker.c settle_check). */
static void
turn(he_shared *sh, int id, int32_t result, int64_t now, const char *reason)
{
    he_pub_check *pc = &sh->pub.check[id];

    he_shm_write_begin(sh);
    if (result == HE_FAIL && pc->result != HE_FAIL) {
        pc->fail_since_ns = now;
        pc->fail_runs = 0;
        pc->event++;
    } else if (result != HE_FAIL && pc->result == HE_FAIL) {
        pc->ended_after_ns = now - pc->fail_since_ns;
        pc->ended_runs = pc->fail_runs;
        pc->fail_since_ns = 0;
        pc->fail_runs = 0;
        pc->event++;
    }
    if (result == HE_FAIL)
        pc->fail_runs++;
    pc->result = result;
    pc->at_ns = now;
    pc->elapsed_ns = S(1) / 4;
    snprintf(sh->reason[id], sizeof sh->reason[id], "%s", reason);
    snprintf(sh->pub.db_type, sizeof sh->pub.db_type, "Pg");
    sh->result_seq++;
    he_shm_write_end(sh);
}

static void
logging(void)
{
    he_shm m;
    he_shared *sh;
    he_log_batch log;
    char err[HE_ERRLEN];

    if (he_shm_attach_private(&m, "unit", err, sizeof err) != 0) {
        T(!"he_shm_attach_private");
        return;
    }
    sh = m.sh;
    turn(sh, HE_CHECK_DB, HE_OK, NOW, "");
    turn(sh, HE_CHECK_REDIS, HE_SKIPPED, NOW, "");
    T(logs_at(sh, NOW, &log) == 0);     /* nothing has turned */

    /* the turn to fail: claimed once */
    turn(sh, HE_CHECK_DB, HE_FAIL, NOW, "connection refused");
    T(logs_at(sh, NOW, &log) == 1);
    T(strcmp(log.line[0].level, "error") == 0
      && strcmp(log.line[0].text, "database check failed (Pg, 0.250 s): "
                "connection refused") == 0);
    T(logs_at(sh, NOW, &log) == 0);     /* another process: nothing */
    T(logs_at(sh, NOW + S(1), &log) == 0);

    /* still failing: a reminder when a minute has passed, once */
    turn(sh, HE_CHECK_DB, HE_FAIL, NOW + S(30), "connection refused");
    T(logs_at(sh, NOW + S(59), &log) == 0);
    T(logs_at(sh, NOW + S(60), &log) == 1);
    T(strcmp(log.line[0].level, "error") == 0
      && strcmp(log.line[0].text, "database check still failing after "
                "60.0 s (2 failed runs): connection refused") == 0);
    T(logs_at(sh, NOW + S(60), &log) == 0);
    T(logs_at(sh, NOW + S(119), &log) == 0);
    T(logs_at(sh, NOW + S(120), &log) == 1
      && strstr(log.line[0].text, "still failing after 120.0 s") != NULL);

    /* both fail at once: two lines; the Redis one has no type */
    turn(sh, HE_CHECK_REDIS, HE_FAIL, NOW + S(130), "NOAUTH");
    T(logs_at(sh, NOW + S(130), &log) == 1
      && strcmp(log.line[0].text, "redis check failed (0.250 s): NOAUTH")
         == 0);
    T(logs_at(sh, NOW + S(190), &log) == 2);

    /* recovery: once, a warning */
    turn(sh, HE_CHECK_DB, HE_OK, NOW + S(200), "");
    T(logs_at(sh, NOW + S(200), &log) == 1);
    T(strcmp(log.line[0].level, "warning") == 0
      && strcmp(log.line[0].text, "database check ok again after 200.0 s "
                "(2 failed runs)") == 0);
    T(logs_at(sh, NOW + S(200), &log) == 0);
    T(logs_at(sh, NOW + S(400), &log) == 1);        /* Redis still fails */
    T(strstr(log.line[0].text, "redis check still failing") != NULL);

    /* corrupt times: a reminder stamped before the clock's start is due
     * (not an overflow), a failure since then is a number of seconds */
    he_store64(&sh->reminded_ns[HE_CHECK_REDIS], INT64_MIN);
    sh->pub.check[HE_CHECK_REDIS].fail_since_ns = INT64_MIN;
    T(logs_at(sh, NOW + S(401), &log) == 1
      && strstr(log.line[0].text, "redis check still failing after 9223") != NULL);
    T(logs_at(sh, NOW + S(401), &log) == 0);

    /* a reason without its NUL (a corrupt file) is cut, not overrun */
    memset(sh->reason[HE_CHECK_DB], 'x', sizeof sh->reason[HE_CHECK_DB]);
    memset(sh->pub.db_type, 'T', sizeof sh->pub.db_type);
    he_shm_write_begin(sh);
    sh->pub.check[HE_CHECK_DB].result = HE_FAIL;
    sh->pub.check[HE_CHECK_DB].event++;
    he_shm_write_end(sh);
    T(logs_at(sh, NOW + S(401), &log) == 1
      && strstr(log.line[0].text, "(TTTTTTTTTTTTTTT, ") != NULL
      && strlen(log.line[0].text) < sizeof log.line[0].text);
    he_shm_detach(&m);
}

/* One answer through a real checker process on a private state. */
static void
answering(void)
{
    he_config c;
    he_instance in;
    he_status st;
    he_log_batch log;
    char err[HE_ERRLEN];
    int i, found = 0;

    he_config_init(&c);
    he_config_set(&c, "timeout", "30", keep_warn, NULL);  /* an upper bound */
    he_config_set(&c, "cache_seconds", "60", keep_warn, NULL);
    he_config_set(&c, "db.type", "DB2", keep_warn, NULL);
    he_config_finish(&c, keep_warn, NULL);
    he_instance_init(&in, &c, NULL, "unit");
    T(he_instance_attach(&in, err, sizeof err) == -1
      && strcmp(err, "no state file") == 0);
    memset(&st, 0x5a, sizeof st);
    he_instance_answer(&in, &st, &log);
    T(st.db == HE_FAIL && st.redis == HE_SKIPPED);
    for (i = 0; i < log.n; i++)
        found += strstr(log.line[i].text, "database check failed (DB2") != NULL
                 && strstr(log.line[i].text, "unknown database type 'DB2'")
                    != NULL;
    T(found == 1);
    if (found != 1)
        for (i = 0; i < log.n; i++)
            printf("# log: [%s] %s\n", log.line[i].level, log.line[i].text);
    T(in.shm.sh != NULL && !in.shm.is_file
      && in.shm.sh->pub.check[HE_CHECK_DB].runs == 1);
    /* cached for 60 s: the same answer, no new run, no new line */
    he_instance_answer(&in, &st, &log);
    T(st.db == HE_FAIL && st.redis == HE_SKIPPED && log.n == 0);
    T(in.shm.sh->pub.check[HE_CHECK_DB].runs == 1);
    T(in.shm.sh->checker_pid > 0
      && he_proc_alive(in.shm.sh->checker_pid, 0));
    he_instance_free(&in);              /* asks the checker to exit */
    he_config_free(&c);
}

/* ---- processes and time ----------------------------------------------- */

static void
processes(void)
{
    uint64_t me = he_proc_starttime((long)getpid());
    pid_t pid;

    T(me > 0);
    T(he_proc_alive((long)getpid(), 0) && he_proc_alive((long)getpid(), me));
    T(!he_proc_alive((long)getpid(), me + 1));      /* a reused pid */
    T(!he_proc_alive(0, 0) && !he_proc_alive(-1, 0));
    T(he_proc_alive(1, 0));             /* init: EPERM or ours, alive */
    pid = fork();
    if (pid == 0)
        _exit(0);
    if (pid > 0) {
        /* a zombie is not alive; a reaped one neither */
        while (he_proc_starttime((long)pid) != 0 && he_proc_alive(pid, 0))
            usleep(10000);
        T(!he_proc_alive(pid, 0));
        waitpid(pid, NULL, 0);
        T(!he_proc_alive(pid, 0) && he_proc_starttime(pid) == 0);
    }
    T(strcmp(he_phase_name(HE_PHASE_CONNECTING), "connecting") == 0);
    T(strcmp(he_phase_name(HE_PHASE_DONE), "done") == 0);
    T(strcmp(he_phase_name(99), "unknown") == 0);
    T(he_checks_have_db(HE_DB_CALLBACK) == 1);
    T(he_checks_have_db(HE_DB_PG) == 0 && he_checks_have_redis() == 0);
    T(strcmp(he_checks_backends(), "Oracle(DBI)") == 0);
}

static void
timing(void)
{
    int fds[2];
    double t0, late;
    char err[128];
    int64_t a, b;

    T(he_time_left_ms(he_time_now() - 1) == 0);
    T(he_time_left_ms(NAN) == 0);
    T(he_time_left_ms(he_time_now() + 0.0001) <= 1);
    T(he_time_left_ms(he_time_now() + 10) > 5000);
    T(he_time_left_ms(he_time_now() + 10) <= 10000);
    T(he_time_left_ms(1e300) == 2147483647);
    a = he_now_ns();
    b = he_now_ns();
    T(b >= a && a > 0 && he_realtime_ns() > S(1500000000));
    T(fabs(he_time_now() - (double)he_now_ns() / 1e9) < 5);

    errno = 0;
    T(he_time_wait_fd(-1, 0, he_time_now() + 1) == -1 && errno == EBADF);
    if (pipe(fds) != 0)
        return;
    t0 = he_time_now();
    T(he_time_wait_fd(fds[0], 0, t0 + 0.1) == 0);
    late = he_time_now() - (t0 + 0.1);
    printf("# he_time_wait_fd overshoot past a 100 ms deadline: %.3f ms\n",
           late * 1000);
    T(late >= 0 && late < 5);           /* generous: a loaded machine */
    T(he_time_wait_fd(fds[0], 0, t0 - 1) == 0);     /* passed: at once */
    T(he_time_wait_fd(fds[1], 1, he_time_now() + 10) == 1);
    T(write(fds[1], "x", 1) == 1);
    T(he_time_wait_fd(fds[0], 0, he_time_now() + 10) == 1);
    close(fds[1]);
    close(fds[0]);
    T(he_time_wait_fd(fds[0], 0, he_time_now() + 10) == -1
      && errno == EBADF);

    he_time_wait_error(0, "connect", he_time_now() - 1.5, err, sizeof err);
    T(strncmp(err, "timed out after 1.5", 19) == 0
      && strstr(err, " s during connect") != NULL);
    errno = ECONNREFUSED;
    he_time_wait_error(-1, "connect", he_time_now(), err, sizeof err);
    T(strcmp(err, "connect: poll: Connection refused") == 0);
    he_time_wait_error(0, "connect", he_time_now(), err, 8);
    T(strlen(err) == 7);
}

int
main(void)
{
    parsers();
    options();
    allowlist();
    namespace_routes();
    responses();
    identity();
    state_file();
    judging();
    logging();
    answering();
    processes();
    timing();
    printf("unit: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
