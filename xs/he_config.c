/*
 * he_config.c - the extension's options: defaults, parsing, validation.
 *
 * Options arrive as (key, string) pairs from the Perl side, once, when the
 * wrapper is built.  A bad value never stops RT: it is reported through the
 * warn callback, naming the RT option and the value, and the default stays.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "he.h"

#define DEFAULT_PING "/healthz/ping"
#define DEFAULT_STATUS "/healthz/status"
#define DEFAULT_TIMEOUT 2.0
#define DEFAULT_CACHE 1.0
#define MAX_TIMEOUT 300.0
#define MAX_CACHE 3600.0
#define MAX_PATH_LEN 2048
#define MAX_HOST_LEN 255
#define REDIS_PORT 6379
#define SENTINEL_PORT 26379

/* Option keys and the RT setting an admin would recognise in a message. */
static const struct {
    const char *key;
    const char *rt_name;
} option_names[] = {
    { "ping_path", "HealthEndpoint_PingPath" },
    { "status_path", "HealthEndpoint_StatusPath" },
    { "timeout", "HealthEndpoint_Timeout" },
    { "cache_seconds", "HealthEndpoint_CacheSeconds" },
    { "allow_from", "HealthEndpoint_AllowFrom" },
    { "redis.enabled", "HealthEndpoint_CheckRedis" },
    { "db.type", "DatabaseType" },
    { "db.host", "DatabaseHost" },
    { "db.port", "DatabasePort" },
    { "db.name", "DatabaseName" },
    { "db.user", "DatabaseUser" },
    { "db.password", "DatabasePassword" },
    { NULL, NULL }
};

/* The RT name of an option, e.g. "WebSessionProperties{server}". */
static const char *
option_name(const char *key, char *buf, size_t len)
{
    size_t i;

    for (i = 0; option_names[i].key; i++)
        if (strcmp(option_names[i].key, key) == 0)
            return option_names[i].rt_name;
    if (strncmp(key, "db.extra.", 9) == 0)
        snprintf(buf, len, "DatabaseExtraDSN{%.64s}", key + 9);
    else if (strcmp(key, "redis.sentinel") == 0)
        snprintf(buf, len, "WebSessionProperties{sentinels}");
    else if (strncmp(key, "redis.", 6) == 0)
        snprintf(buf, len, "WebSessionProperties{%.64s}", key + 6);
    else
        snprintf(buf, len, "%.64s", key);
    return buf;
}

/*
 * Report a rejected value.  The value is quoted with anything unprintable
 * replaced, and cut short, so a hostile config cannot garble the log.
 */
static void
reject(he_warn_fn warn, void *ctx, const char *key, const char *value,
       const char *why, const char *keeping)
{
    char shown[81], name[96], msg[HE_ERRLEN];
    size_t i;

    if (warn == NULL)
        return;
    for (i = 0; value && value[i] && i < sizeof shown - 1; i++)
        shown[i] = (value[i] >= 0x20 && value[i] < 0x7f) ? value[i] : '?';
    shown[i] = '\0';
    snprintf(msg, sizeof msg, "%s: invalid value '%s%s' (%s); %s",
             option_name(key, name, sizeof name), shown, (value && value[i]) ? "..." : "",
             why, keeping);
    warn(ctx, msg);
}

static char *
dup_or_null(const char *s)
{
    char *d;
    size_t n;

    if (s == NULL || *s == '\0')
        return NULL;
    n = strlen(s) + 1;
    d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* Replace *slot with a copy of s (NULL or "" clears it). */
static void
set_string(char **slot, const char *s)
{
    free(*slot);
    *slot = dup_or_null(s);
}

/* Grow an array by one element; returns the new element or NULL. */
static void *
append(void **array, size_t *n, size_t size)
{
    char *grown = realloc(*array, (*n + 1) * size);

    if (grown == NULL)
        return NULL;
    *array = grown;
    memset(grown + *n * size, 0, size);
    return grown + (*n)++ * size;
}

/* ---- parsers --------------------------------------------------------- */

/* A positive-or-zero finite decimal number of seconds, nothing after it. */
int
he_config_parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    /* strtod would skip any leading white space; the value must not have it */
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
        return -1;
    /* strtod accepts hex floats and "inf"; only plain decimals are wanted */
    if (strpbrk(s, "xXnN") != NULL)
        return -1;
    *out = v;
    return 0;
}

/* An absolute URL path: '/', then printable ASCII without '?' or '#'. */
int
he_config_parse_path(const char *s)
{
    size_t i;

    if (s == NULL || s[0] != '/')
        return -1;
    for (i = 0; s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#')
            return -1;
        if (i >= MAX_PATH_LEN)
            return -1;
    }
    return 0;
}

static int
parse_port(const char *s, size_t len, int *out)
{
    int port = 0;
    size_t i;

    if (len == 0 || len > 5)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    if (port < 1 || port > 65535)
        return -1;
    *out = port;
    return 0;
}

static int
valid_host(const char *h, size_t len)
{
    size_t i;

    if (len == 0 || len > MAX_HOST_LEN)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];

        if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '[' || ch == ']')
            return 0;
    }
    return 1;
}

/*
 * "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address (more
 * than one ':' and no brackets: all of it is the host).  On success
 * out->host is malloc'd (the caller frees it).
 */
int
he_config_parse_hostport(const char *s, int default_port, he_hostport *out)
{
    const char *host, *colon;
    size_t hlen;
    int port = default_port;

    if (s == NULL || *s == '\0')
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL)
            return -1;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close[1] == ':') {
            if (parse_port(close + 2, strlen(close + 2), &port) != 0)
                return -1;
        } else if (close[1] != '\0') {
            return -1;
        }
    } else {
        host = s;
        colon = strchr(s, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            hlen = (size_t)(colon - s);
            if (parse_port(colon + 1, strlen(colon + 1), &port) != 0)
                return -1;
        } else {
            hlen = strlen(s);
        }
    }
    if (!valid_host(host, hlen))
        return -1;
    out->host = malloc(hlen + 1);
    if (out->host == NULL)
        return -1;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = port;
    return 0;
}

/* Text address (v4 or v6, optional %zone) to 16 bytes, v4 as ::ffff:v4. */
static int
parse_addr(const char *s, size_t len, unsigned char addr[16], int *is_v4)
{
    char buf[64];
    char *zone;
    unsigned char v4[4];

    if (len == 0 || len >= sizeof buf || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    zone = strchr(buf, '%');
    if (zone)
        *zone = '\0';
    if (inet_pton(AF_INET, buf, v4) == 1) {
        memset(addr, 0, 10);
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, v4, 4);
        *is_v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *is_v4 = 0;
        return 0;
    }
    return -1;
}

/* "a.b.c.d[/n]" or "v6[/n]"; a bare address is a single host. */
int
he_config_parse_cidr(const char *s, he_cidr *out)
{
    const char *slash;
    size_t alen;
    int is_v4, bits = -1;

    if (s == NULL)
        return -1;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (parse_addr(s, alen, out->addr, &is_v4) != 0)
        return -1;
    if (slash) {
        const char *p = slash + 1;

        if (*p == '\0' || strlen(p) > 3)
            return -1;
        bits = 0;
        for (; *p; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            bits = bits * 10 + (*p - '0');
        }
        if (bits > (is_v4 ? 32 : 128))
            return -1;
    } else {
        bits = is_v4 ? 32 : 128;
    }
    out->bits = is_v4 ? bits + 96 : bits;
    return 0;
}

static int
cidr_contains(const he_cidr *c, const unsigned char addr[16])
{
    int full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

int
he_config_addr_allowed(const he_config *c, const char *addr, size_t len)
{
    unsigned char a[16];
    int is_v4;
    size_t i;

    if (c->n_allow == 0)
        return 1;
    if (addr == NULL || parse_addr(addr, len, a, &is_v4) != 0)
        return 0;
    for (i = 0; i < c->n_allow; i++)
        if (cidr_contains(&c->allow[i], a))
            return 1;
    return 0;
}

/* ---- lifecycle --------------------------------------------------------- */

void
he_config_init(he_config *c)
{
    memset(c, 0, sizeof *c);
    c->ping_path = dup_or_null(DEFAULT_PING);
    c->ping_len = c->ping_path ? strlen(c->ping_path) : 0;
    c->status_path = dup_or_null(DEFAULT_STATUS);
    c->status_len = c->status_path ? strlen(c->status_path) : 0;
    c->timeout = DEFAULT_TIMEOUT;
    c->cache_seconds = DEFAULT_CACHE;
    c->db.kind = HE_DB_NONE;
    c->redis.server.host = dup_or_null("127.0.0.1");
    c->redis.server.port = REDIS_PORT;
    c->redis.database = -1;
}

void
he_config_free_db(he_db_config *d)
{
    size_t i;

    free(d->type);
    free(d->host);
    free(d->port);
    free(d->name);
    free(d->user);
    free(d->password);
    for (i = 0; i < d->n_extra; i++) {
        free(d->extra[i].key);
        free(d->extra[i].value);
    }
    free(d->extra);
    memset(d, 0, sizeof *d);
}

void
he_config_free_redis(he_redis_config *r)
{
    size_t i;

    free(r->server.host);
    free(r->sock);
    free(r->username);
    free(r->password);
    for (i = 0; i < r->n_sentinels; i++)
        free(r->sentinels[i].host);
    free(r->sentinels);
    free(r->service);
    memset(r, 0, sizeof *r);
}

void
he_config_free(he_config *c)
{
    free(c->ping_path);
    free(c->status_path);
    he_config_free_db(&c->db);
    he_config_free_redis(&c->redis);
    free(c->allow);
    memset(c, 0, sizeof *c);
}

/* Like dup_or_null, but "" stays "" (an empty libpq value is a value). */
static char *
copy_str(const char *s)
{
    char *d;
    size_t n;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    if ((d = malloc(n)) != NULL)
        memcpy(d, s, n);
    return d;
}

/* A whole copy, for a Perl thread's clone of a wrapper. */
void
he_config_copy(he_config *to, const he_config *from)
{
    *to = *from;
    to->ping_path = copy_str(from->ping_path);
    to->status_path = copy_str(from->status_path);
    he_config_copy_db(&to->db, &from->db);
    he_config_copy_redis(&to->redis, &from->redis);
    to->allow = NULL;
    to->n_allow = 0;
    if (from->n_allow
        && (to->allow = malloc(from->n_allow * sizeof *to->allow)) != NULL) {
        memcpy(to->allow, from->allow, from->n_allow * sizeof *to->allow);
        to->n_allow = from->n_allow;
    }
    if (to->ping_path == NULL || to->status_path == NULL) {
        to->ping_len = to->status_len = 0;  /* matches nothing */
    }
}

/* Deep copies, for a check thread that may outlive the caller's config.
 * On allocation failure a string is left NULL: the check then fails. */
void
he_config_copy_db(he_db_config *to, const he_db_config *from)
{
    size_t i;

    memset(to, 0, sizeof *to);
    to->kind = from->kind;
    to->type = copy_str(from->type);
    to->host = copy_str(from->host);
    to->port = copy_str(from->port);
    to->name = copy_str(from->name);
    to->user = copy_str(from->user);
    to->password = copy_str(from->password);
    if (from->n_extra
        && (to->extra = calloc(from->n_extra, sizeof *to->extra)) != NULL) {
        to->n_extra = from->n_extra;
        for (i = 0; i < from->n_extra; i++) {
            to->extra[i].key = copy_str(from->extra[i].key);
            to->extra[i].value = copy_str(from->extra[i].value);
        }
    }
}

void
he_config_copy_redis(he_redis_config *to, const he_redis_config *from)
{
    size_t i;

    *to = *from;
    to->server.host = copy_str(from->server.host);
    to->sock = copy_str(from->sock);
    to->username = copy_str(from->username);
    to->password = copy_str(from->password);
    to->service = copy_str(from->service);
    to->sentinels = NULL;
    to->n_sentinels = 0;
    if (from->n_sentinels
        && (to->sentinels = calloc(from->n_sentinels,
                                   sizeof *to->sentinels)) != NULL) {
        to->n_sentinels = from->n_sentinels;
        for (i = 0; i < from->n_sentinels; i++) {
            to->sentinels[i].host = copy_str(from->sentinels[i].host);
            to->sentinels[i].port = from->sentinels[i].port;
        }
    }
}

/* ---- setting one option ---------------------------------------------- */

static int
set_path(char **path, size_t *len, const char *key, const char *value,
         he_warn_fn warn, void *ctx)
{
    char keeping[MAX_PATH_LEN + 16];

    if (he_config_parse_path(value) != 0) {
        snprintf(keeping, sizeof keeping, "using %s", *path);
        reject(warn, ctx, key, value,
               "must start with '/' and hold no spaces, '?' or '#'",
               keeping);
        return -1;
    }
    set_string(path, value);
    *len = *path ? strlen(*path) : 0;
    return 0;
}

static int
set_seconds(double *slot, double min_exclusive, double max, const char *key,
            const char *value, he_warn_fn warn, void *ctx)
{
    double v;
    char why[64], keeping[48];

    if (he_config_parse_seconds(value, &v) != 0 || v <= min_exclusive
        || v > max) {
        snprintf(why, sizeof why, "must be a number of seconds%s, at most %g",
                 min_exclusive < 0 ? "" : " above 0", max);
        snprintf(keeping, sizeof keeping, "using %g", *slot);
        reject(warn, ctx, key, value, why, keeping);
        return -1;
    }
    *slot = v;
    return 0;
}

static he_db_kind
db_kind_of(const char *type)
{
    if (type == NULL)
        return HE_DB_NONE;
    if (strcmp(type, "Pg") == 0)
        return HE_DB_PG;
    if (strcmp(type, "mysql") == 0 || strcmp(type, "MariaDB") == 0)
        return HE_DB_MYSQL;
    if (strcmp(type, "SQLite") == 0)
        return HE_DB_SQLITE;
    if (strcmp(type, "Oracle") == 0)
        return HE_DB_CALLBACK;
    return HE_DB_NONE;
}

static int
set_db(he_db_config *db, const char *key, const char *value,
       he_warn_fn warn, void *ctx)
{
    if (strcmp(key, "type") == 0) {
        set_string(&db->type, value);
        db->kind = db_kind_of(db->type);
        if (db->type != NULL && db->kind == HE_DB_NONE) {
            reject(warn, ctx, "db.type", value,
                   "known types: Pg, mysql, MariaDB, SQLite, Oracle",
                   "the database check will report fail");
            return -1;
        }
        return 0;
    }
    if (strcmp(key, "host") == 0)
        set_string(&db->host, value);
    else if (strcmp(key, "port") == 0)
        set_string(&db->port, value);
    else if (strcmp(key, "name") == 0)
        set_string(&db->name, value);
    else if (strcmp(key, "user") == 0)
        set_string(&db->user, value);
    else if (strcmp(key, "password") == 0)
        set_string(&db->password, value);
    else if (strncmp(key, "extra.", 6) == 0 && key[6] != '\0') {
        he_kv *kv = append((void **)&db->extra, &db->n_extra, sizeof *kv);

        if (kv == NULL)
            return -1;
        kv->key = dup_or_null(key + 6);
        kv->value = dup_or_null(value ? value : "");
        if (kv->value == NULL)          /* "" is a value for libpq */
            kv->value = calloc(1, 1);
    } else
        return 1;                       /* unknown key */
    return 0;
}

static int
set_int(int *slot, const char *key, const char *value, he_warn_fn warn,
        void *ctx)
{
    char *end;
    long v;

    errno = 0;
    v = value ? strtol(value, &end, 10) : -1;
    if (value == NULL || *value == '\0' || errno || *end != '\0' || v < 0
        || v > 1000000) {
        reject(warn, ctx, key, value, "must be a whole number >= 0",
               "not selecting a database");
        return -1;
    }
    *slot = (int)v;
    return 0;
}

static int
set_hostport(he_hostport *slot, int default_port, const char *key,
             const char *value, he_warn_fn warn, void *ctx)
{
    he_hostport hp;

    if (he_config_parse_hostport(value, default_port, &hp) != 0) {
        reject(warn, ctx, key, value,
               "expected host:port, [IPv6]:port or a host name",
               strcmp(key, "redis.server") == 0
                   ? "the Redis check will report fail" : "ignoring it");
        return -1;
    }
    free(slot->host);
    *slot = hp;
    return 0;
}

static int
set_redis(he_redis_config *r, const char *key, const char *value,
          he_warn_fn warn, void *ctx)
{
    if (strcmp(key, "enabled") == 0) {
        if (value == NULL || (strcmp(value, "0") && strcmp(value, "1"))) {
            reject(warn, ctx, "redis.enabled", value,
                   "must be undef, 0 or 1", "using auto-detection");
            return -1;
        }
        r->enabled = value[0] == '1';
    } else if (strcmp(key, "server") == 0) {
        /* never fall back to the default: that could be another Redis */
        r->invalid = set_hostport(&r->server, REDIS_PORT, "redis.server",
                                  value, warn, ctx) != 0;
        return r->invalid ? -1 : 0;
    } else if (strcmp(key, "sock") == 0) {
        set_string(&r->sock, value);
    } else if (strcmp(key, "username") == 0) {
        set_string(&r->username, value);
    } else if (strcmp(key, "password") == 0) {
        set_string(&r->password, value);
    } else if (strcmp(key, "database") == 0) {
        if (value == NULL || *value == '\0') {
            r->database = -1;
            return 0;
        }
        return set_int(&r->database, "redis.database", value, warn, ctx);
    } else if (strcmp(key, "sentinel") == 0) {
        he_hostport *hp;
        size_t before = r->n_sentinels;

        hp = append((void **)&r->sentinels, &r->n_sentinels, sizeof *hp);
        if (hp == NULL)
            return -1;
        if (set_hostport(hp, SENTINEL_PORT, "redis.sentinel", value, warn,
                         ctx) != 0) {
            r->n_sentinels = before;
            return -1;
        }
    } else if (strcmp(key, "service") == 0) {
        set_string(&r->service, value);
    } else {
        return 1;
    }
    return 0;
}

int
he_config_set(he_config *c, const char *key, const char *value,
              he_warn_fn warn, void *ctx)
{
    int rc = 1;

    if (key == NULL)
        return -1;
    if (strcmp(key, "ping_path") == 0)
        return set_path(&c->ping_path, &c->ping_len, key, value, warn, ctx);
    if (strcmp(key, "status_path") == 0)
        return set_path(&c->status_path, &c->status_len, key, value, warn,
                        ctx);
    if (strcmp(key, "timeout") == 0)
        return set_seconds(&c->timeout, 0, MAX_TIMEOUT, key, value, warn,
                           ctx);
    if (strcmp(key, "cache_seconds") == 0)
        return set_seconds(&c->cache_seconds, -1, MAX_CACHE, key, value,
                           warn, ctx);
    if (strcmp(key, "allow_from") == 0) {
        he_cidr cidr;
        he_cidr *slot;

        if (he_config_parse_cidr(value, &cidr) != 0) {
            reject(warn, ctx, key, value,
                   "expected an IPv4 or IPv6 address with optional /bits",
                   "ignoring this entry");
            return -1;
        }
        slot = append((void **)&c->allow, &c->n_allow, sizeof *slot);
        if (slot == NULL)
            return -1;
        *slot = cidr;
        return 0;
    }
    if (strncmp(key, "db.", 3) == 0)
        rc = set_db(&c->db, key + 3, value, warn, ctx);
    else if (strncmp(key, "redis.", 6) == 0)
        rc = set_redis(&c->redis, key + 6, value, warn, ctx);
    if (rc == 1) {
        char msg[HE_ERRLEN];

        snprintf(msg, sizeof msg, "unknown option '%.100s' ignored", key);
        if (warn)
            warn(ctx, msg);
        return -1;
    }
    return rc;
}

void
he_config_finish(he_config *c, he_warn_fn warn, void *ctx)
{
    char msg[HE_ERRLEN];

    if (c->ping_len == c->status_len
        && memcmp(c->ping_path, c->status_path, c->ping_len) == 0) {
        snprintf(msg, sizeof msg,
                 "HealthEndpoint_PingPath and HealthEndpoint_StatusPath are "
                 "both '%.200s'; using %s and %s", c->ping_path,
                 DEFAULT_PING, DEFAULT_STATUS);
        set_string(&c->ping_path, DEFAULT_PING);
        c->ping_len = strlen(DEFAULT_PING);
        set_string(&c->status_path, DEFAULT_STATUS);
        c->status_len = strlen(DEFAULT_STATUS);
        if (warn)
            warn(ctx, msg);
    }
    if (c->db.kind != HE_DB_NONE && !he_checks_have_db(c->db.kind)) {
        snprintf(msg, sizeof msg,
                 "DatabaseType '%.64s': this build has no %s backend "
                 "(built: %s); the database check will report fail. "
                 "Install the client library and rebuild.",
                 c->db.type, c->db.type, he_checks_backends());
        if (warn)
            warn(ctx, msg);
    }
    if (c->db.kind == HE_DB_SQLITE
        && (c->db.name == NULL || c->db.name[0] != '/')) {
        snprintf(msg, sizeof msg,
                 "DatabaseName '%.200s' for SQLite is not an absolute path; "
                 "the database check will report fail",
                 c->db.name ? c->db.name : "");
        if (warn)
            warn(ctx, msg);
    }
    if (c->redis.enabled && !he_checks_have_redis()) {
        snprintf(msg, sizeof msg,
                 "the Redis check is on but this build has no Redis backend "
                 "(built: %s); it will report fail. Install libhiredis-dev "
                 "and rebuild.", he_checks_backends());
        if (warn)
            warn(ctx, msg);
    }
    if (c->redis.n_sentinels > 0 && c->redis.service == NULL && warn)
        warn(ctx, "WebSessionProperties: 'sentinels' given without "
                  "'service'; the sentinels are ignored");
}

/* ---- the configuration's identity ------------------------------------- */

/* FNV-1a over one field, then a separator that no string contains, so
 * that ("ab", "c") and ("a", "bc") differ; NULL differs from "". */
static unsigned long long
hash_str(unsigned long long h, const char *s)
{
    const unsigned char *p = (const unsigned char *)s;

    if (s != NULL)
        for (; *p; p++)
            h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ (s ? 0xffu : 0xfeu)) * 1099511628211ULL;
    return h;
}

static unsigned long long
hash_num(unsigned long long h, double v)
{
    char buf[64];

    snprintf(buf, sizeof buf, "%.9g", v);
    return hash_str(h, buf);
}

unsigned long long
he_config_hash(const he_config *c, const char *version)
{
    unsigned long long h = 14695981039346656037ULL;
    const he_db_config *d = &c->db;
    const he_redis_config *r = &c->redis;
    size_t i;

    h = hash_str(h, version);
    h = hash_num(h, c->timeout);
    h = hash_num(h, (double)d->kind);
    h = hash_str(h, d->type);
    h = hash_str(h, d->host);
    h = hash_str(h, d->port);
    h = hash_str(h, d->name);
    h = hash_str(h, d->user);
    h = hash_str(h, d->password);
    for (i = 0; i < d->n_extra; i++) {
        h = hash_str(h, d->extra[i].key);
        h = hash_str(h, d->extra[i].value);
    }
    h = hash_num(h, r->enabled * 2 + r->invalid);
    h = hash_str(h, r->server.host);
    h = hash_num(h, r->server.port);
    h = hash_str(h, r->sock);
    h = hash_str(h, r->username);
    h = hash_str(h, r->password);
    h = hash_num(h, r->database);
    for (i = 0; i < r->n_sentinels; i++) {
        h = hash_str(h, r->sentinels[i].host);
        h = hash_num(h, r->sentinels[i].port);
    }
    return hash_str(h, r->service);
}
