/*
 * he_options.c - applying the options, and the checks across them.
 *
 * Options arrive as (key, string) pairs from the Perl side, once, when the
 * wrapper is built; the values are parsed by he_parse.c.  A bad value
 * never stops RT: it is reported through the warn callback, naming the RT
 * option and the value, and the default stays - except where a default
 * would be unsafe: an allowlist without a valid entry denies everyone,
 * and a bad Redis server is checked as failing, never as 127.0.0.1.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "he.h"

#define MIN_USEFUL_TIMEOUT 0.01         /* below: no network check can pass */
#define MAX_TIMEOUT 300.0
#define MAX_CACHE 3600.0
#define MAX_ENTRY_LEN 128               /* one allowlist entry */

/* Option keys and the RT setting an admin would recognise in a message. */
static const struct {
    const char *key;
    const char *rt_name;
} option_names[] = {
    { "ping_path", "HealthEndpoint_PingPath" },
    { "status_path", "HealthEndpoint_StatusPath" },
    { "namespace", "HealthEndpoint_Namespace" },
    { "timeout", "HealthEndpoint_Timeout" },
    { "cache_seconds", "HealthEndpoint_CacheSeconds" },
    { "allow_from", "HealthEndpoint_AllowFrom" },
    { "check_redis", "HealthEndpoint_CheckRedis" },
    { "db.type", "DatabaseType" },
    { "db.host", "DatabaseHost" },
    { "db.port", "DatabasePort" },
    { "db.name", "DatabaseName" },
    { "db.user", "DatabaseUser" },
    { "db.password", "DatabasePassword" },
    { NULL, NULL }
};

/* RT's own top-level directories: a namespace there would hide RT's pages
 * (compared without regard to case, as a URL typed by a human may be). */
static const char *const rt_dirs[] = {
    "Admin", "Approvals", "Articles", "Asset", "Assets", "Crypt",
    "Dashboards", "Download", "Elements", "Errors", "Group", "Helpers",
    "Install", "NoAuth", "Prefs", "REST", "Reports", "Search", "SelfService",
    "Ticket", "Tools", "Transaction", "User", "Views", "Widgets", "l",
    "l_unsafe", "m", "static", "index.html", NULL
};

static void
say(he_warn_fn warn, void *ctx, he_level level, const char *msg)
{
    if (warn != NULL)
        warn(ctx, level, msg);
}

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

/* value as it may be shown: unprintable bytes replaced, cut short, so a
 * hostile config cannot garble the log. */
static void
shown(const char *value, size_t len, char *out, size_t outlen)
{
    size_t i;

    for (i = 0; value && i < len && value[i] && i + 4 < outlen; i++)
        out[i] = (value[i] >= 0x20 && value[i] < 0x7f) ? value[i] : '?';
    out[i] = '\0';
    if (value && i < len && value[i])
        snprintf(out + i, outlen - i, "...");
}

/* Report a rejected value, and what happens instead. */
static void
reject(he_warn_fn warn, void *ctx, const char *key, const char *value,
       const char *why, const char *instead)
{
    char v[96], name[96], msg[HE_ERRLEN];

    shown(value, value ? strlen(value) : 0, v, sizeof v);
    snprintf(msg, sizeof msg, "%s: invalid value '%s' (%s); %s",
             option_name(key, name, sizeof name), v, why, instead);
    say(warn, ctx, HE_LOG_ERROR, msg);
}

/* Replace *slot with a copy of s (NULL or "" clears it). */
static void
set_string(char **slot, const char *s)
{
    free(*slot);
    *slot = (s && *s) ? he_strdup(s) : NULL;
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

/* ---- setting one option ---------------------------------------------- */

static int
set_path(char **path, size_t *len, const char *key, const char *value,
         he_warn_fn warn, void *ctx)
{
    char instead[256];

    if (he_parse_path(value) != 0) {
        snprintf(instead, sizeof instead, "using %.200s", *path);
        reject(warn, ctx, key, value,
               "must start with '/' and hold no spaces, '?' or '#'", instead);
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
    char why[64], instead[48], name[96], msg[HE_ERRLEN];

    if (he_parse_seconds(value, &v) != 0 || v <= min_exclusive || v > max) {
        snprintf(why, sizeof why, "must be a number of seconds%s, at most %g",
                 min_exclusive < 0 ? "" : " above 0", max);
        snprintf(instead, sizeof instead, "using %g", *slot);
        reject(warn, ctx, key, value, why, instead);
        return -1;
    }
    if (strcmp(key, "timeout") == 0 && v < MIN_USEFUL_TIMEOUT) {
        snprintf(msg, sizeof msg, "%s: %g s is below 10 ms; no check over a "
                 "network can finish in that time, so every status check "
                 "will report fail", option_name(key, name, sizeof name), v);
        say(warn, ctx, HE_LOG_WARNING, msg);
    }
    *slot = v;
    return 0;
}

/* The directory the module claims: a path of its own, not RT's. */
static int
set_namespace(he_config *c, const char *value, he_warn_fn warn, void *ctx)
{
    const char *first;
    size_t flen, i;

    c->namespace_set = 1;
    if (value == NULL || *value == '\0') {      /* explicitly none */
        set_string(&c->namespace, NULL);
        c->namespace_len = 0;
        return 0;
    }
    /* "/" would claim the whole site; so would "//" once trimmed */
    if (he_parse_path(value) != 0 || value[strspn(value, "/")] == '\0') {
        reject(warn, ctx, "namespace", value, "must be a directory such as "
               "/healthz: '/' and a name without spaces, '?' or '#'",
               "no namespace is claimed");
        set_string(&c->namespace, NULL);
        c->namespace_len = 0;
        return -1;
    }
    first = value + 1;
    flen = strcspn(first, "/");
    for (i = 0; rt_dirs[i]; i++) {
        if (strlen(rt_dirs[i]) == flen
            && strncasecmp(first, rt_dirs[i], flen) == 0) {
            reject(warn, ctx, "namespace", value, "that is one of RT's own "
                   "directories", "no namespace is claimed");
            set_string(&c->namespace, NULL);
            c->namespace_len = 0;
            return -1;
        }
    }
    set_string(&c->namespace, value);
    c->namespace_len = strlen(value);
    while (c->namespace_len > 1 && c->namespace[c->namespace_len - 1] == '/')
        c->namespace[--c->namespace_len] = '\0';    /* "/x/" is "/x" */
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

/* One db.* key (without the prefix).  0, -1 rejected, 1 unknown key. */
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
    else if (strcmp(key, "require_table") == 0)
        set_string(&db->require_table, value);
    else if (strncmp(key, "extra.", 6) == 0 && key[6] != '\0') {
        he_kv *kv = append((void **)&db->extra, &db->n_extra, sizeof *kv);

        if (kv == NULL)
            return -1;
        kv->key = he_strdup(key + 6);
        kv->value = he_strdup(value ? value : "");  /* "" is a libpq value */
    } else
        return 1;
    return 0;
}

static int
set_hostport(he_hostport *slot, int default_port, const char *key,
             const char *value, he_warn_fn warn, void *ctx)
{
    he_hostport hp;

    if (he_parse_hostport(value, default_port, &hp) != 0) {
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
set_database(he_redis_config *r, const char *value, he_warn_fn warn,
             void *ctx)
{
    char *end;
    long v;

    if (value == NULL || *value == '\0') {
        r->database = -1;
        return 0;
    }
    v = strtol(value, &end, 10);
    if (*end != '\0' || v < 0 || v > 1000000 || end == value) {
        reject(warn, ctx, "redis.database", value,
               "must be a whole number >= 0", "not selecting a database");
        return -1;
    }
    r->database = (int)v;
    return 0;
}

/* check_redis: undef leaves what redis_auto said.  Outside the redis.*
 * keys, so that no key of the admin's Redis hash can reach it. */
static int
set_check_redis(he_redis_config *r, const char *value, he_warn_fn warn,
                void *ctx)
{
    if (value == NULL)
        return 0;                       /* undef: auto-detection stands */
    if (strcmp(value, "0") && strcmp(value, "1")) {
        reject(warn, ctx, "check_redis", value, "must be undef, 0 or 1",
               r->enabled ? "using auto-detection (on)"
                          : "using auto-detection (off)");
        return -1;
    }
    r->enabled = value[0] == '1';
    return 0;
}

/* One redis.* key (without the prefix).  0, -1 rejected, 1 unknown. */
static int
set_redis(he_redis_config *r, const char *key, const char *value,
          he_warn_fn warn, void *ctx)
{
    if (strcmp(key, "server") == 0) {
        /* never fall back to the default: that could be another Redis */
        r->invalid = set_hostport(&r->server, HE_REDIS_PORT, "redis.server",
                                  value, warn, ctx) != 0;
        return r->invalid ? -1 : 0;
    } else if (strcmp(key, "sock") == 0) {
        set_string(&r->sock, value);
    } else if (strcmp(key, "username") == 0) {
        set_string(&r->username, value);
    } else if (strcmp(key, "password") == 0) {
        set_string(&r->password, value);
    } else if (strcmp(key, "database") == 0) {
        return set_database(r, value, warn, ctx);
    } else if (strcmp(key, "sentinel") == 0) {
        he_hostport *hp;
        size_t before = r->n_sentinels;

        hp = append((void **)&r->sentinels, &r->n_sentinels, sizeof *hp);
        if (hp == NULL)
            return -1;
        if (set_hostport(hp, HE_SENTINEL_PORT, "redis.sentinel", value, warn,
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

/* allow_from: each entry of the list is parsed on its own; a bad one is
 * dropped with a message, and the list stays configured either way. */
static int
set_allow(he_config *c, const char *value, he_warn_fn warn, void *ctx)
{
    const char *p = value, *e;
    char entry[MAX_ENTRY_LEN + 1];
    he_cidr cidr, *slot;
    size_t len;
    int rc = 0;

    c->allow_set = 1;
    if (value == NULL) {
        reject(warn, ctx, "allow_from", "", "expected a list of addresses or "
               "one string of them", "it has no valid entry");
        return -1;
    }
    while ((e = he_parse_list_next(&p, &len)) != NULL) {
        snprintf(entry, sizeof entry, "%.*s", (int)len, e);
        if (len > MAX_ENTRY_LEN || he_parse_cidr(entry, &cidr) != 0) {
            reject(warn, ctx, "allow_from", len > MAX_ENTRY_LEN ? e : entry,
                   "expected an IPv4 or IPv6 address, with /bits or "
                   "/netmask, a %zone only on fe80::/10",
                   "dropping this entry");
            rc = -1;
            continue;
        }
        if ((slot = append((void **)&c->allow, &c->n_allow, sizeof *slot))
            == NULL)
            return -1;
        *slot = cidr;
    }
    return rc;
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
    if (strcmp(key, "namespace") == 0)
        return set_namespace(c, value, warn, ctx);
    if (strcmp(key, "timeout") == 0)
        return set_seconds(&c->timeout, 0, MAX_TIMEOUT, key, value, warn,
                           ctx);
    if (strcmp(key, "cache_seconds") == 0)
        return set_seconds(&c->cache_seconds, -1, MAX_CACHE, key, value,
                           warn, ctx);
    if (strcmp(key, "allow_from") == 0)
        return set_allow(c, value, warn, ctx);
    if (strcmp(key, "redis_auto") == 0) {
        c->redis.enabled = value != NULL && value[0] == '1';
        return 0;
    }
    if (strcmp(key, "check_redis") == 0)
        return set_check_redis(&c->redis, value, warn, ctx);
    if (strncmp(key, "db.", 3) == 0)
        rc = set_db(&c->db, key + 3, value, warn, ctx);
    else if (strncmp(key, "redis.", 6) == 0)
        rc = set_redis(&c->redis, key + 6, value, warn, ctx);
    if (rc == 1) {
        char msg[HE_ERRLEN], name[96];

        snprintf(msg, sizeof msg, "%s: unknown setting ignored",
                 option_name(key, name, sizeof name));
        say(warn, ctx, HE_LOG_WARNING, msg);
        return -1;
    }
    return rc;
}

/* ---- across options ------------------------------------------------------ */

static int
same_path(const char *a, size_t alen, const char *b, size_t blen)
{
    return alen == blen && memcmp(a, b, alen) == 0;
}

/* The namespace: by default /healthz when both paths are the default ones;
 * with other paths only the one configured.  It must hold both paths, or
 * it would shadow one of them with 404s. */
static void
finish_namespace(he_config *c, he_warn_fn warn, void *ctx)
{
    char msg[HE_ERRLEN];
    size_t n = c->namespace_len;

    if (!c->namespace_set
        && same_path(c->ping_path, c->ping_len, HE_DEFAULT_PING,
                     strlen(HE_DEFAULT_PING))
        && same_path(c->status_path, c->status_len, HE_DEFAULT_STATUS,
                     strlen(HE_DEFAULT_STATUS))) {
        set_string(&c->namespace, HE_DEFAULT_NAMESPACE);
        c->namespace_len = c->namespace ? strlen(c->namespace) : 0;
        return;
    }
    if (c->namespace == NULL)
        return;
    if ((c->ping_len > n && memcmp(c->ping_path, c->namespace, n) == 0
         && c->ping_path[n] == '/')
        || (c->status_len > n && memcmp(c->status_path, c->namespace, n) == 0
            && c->status_path[n] == '/'))
        return;                         /* holds at least one of them */
    snprintf(msg, sizeof msg, "HealthEndpoint_Namespace: '%.200s' holds "
             "neither the ping nor the status path; it is claimed anyway "
             "(requests under it get 404)", c->namespace);
    say(warn, ctx, HE_LOG_WARNING, msg);
}

/* The allowlist as it will be used: said once; none valid: nobody. */
static void
finish_allow(he_config *c, he_warn_fn warn, void *ctx)
{
    char msg[HE_ERRLEN], one[64];
    size_t i, used;

    if (!c->allow_set)
        return;
    if (c->n_allow == 0) {
        say(warn, ctx, HE_LOG_ERROR, "HealthEndpoint_AllowFrom: no valid "
            "entry; every client gets 403 until it is fixed");
        return;
    }
    used = (size_t)snprintf(msg, sizeof msg, "HealthEndpoint_AllowFrom: "
                            "allowing");
    for (i = 0; i < c->n_allow && used + 1 < sizeof msg; i++) {
        he_cidr_format(&c->allow[i], one, sizeof one);
        used += (size_t)snprintf(msg + used, sizeof msg - used, "%s %s",
                                 i ? "," : "", one);
    }
    say(warn, ctx, HE_LOG_INFO, msg);
}

void
he_config_finish(he_config *c, he_warn_fn warn, void *ctx)
{
    char msg[HE_ERRLEN];

    if (same_path(c->ping_path, c->ping_len, c->status_path, c->status_len)) {
        snprintf(msg, sizeof msg,
                 "HealthEndpoint_PingPath and HealthEndpoint_StatusPath are "
                 "both '%.200s'; using %s and %s", c->ping_path,
                 HE_DEFAULT_PING, HE_DEFAULT_STATUS);
        set_string(&c->ping_path, HE_DEFAULT_PING);
        c->ping_len = c->ping_path ? strlen(c->ping_path) : 0;
        set_string(&c->status_path, HE_DEFAULT_STATUS);
        c->status_len = c->status_path ? strlen(c->status_path) : 0;
        say(warn, ctx, HE_LOG_ERROR, msg);
    }
    finish_namespace(c, warn, ctx);
    finish_allow(c, warn, ctx);
    if (c->db.kind != HE_DB_NONE && !he_checks_have_db(c->db.kind)) {
        snprintf(msg, sizeof msg,
                 "DatabaseType '%.64s': this build has no %s backend "
                 "(built: %s); the database check will report fail. "
                 "Install the client library and rebuild.",
                 c->db.type, c->db.type, he_checks_backends());
        say(warn, ctx, HE_LOG_ERROR, msg);
    }
    if (c->db.kind == HE_DB_SQLITE
        && (c->db.name == NULL || c->db.name[0] != '/')) {
        snprintf(msg, sizeof msg,
                 "DatabaseName '%.200s' for SQLite is not an absolute path; "
                 "the database check will report fail",
                 c->db.name ? c->db.name : "");
        say(warn, ctx, HE_LOG_ERROR, msg);
    }
    if (c->redis.enabled && !he_checks_have_redis()) {
        snprintf(msg, sizeof msg,
                 "the Redis check is on but this build has no Redis backend "
                 "(built: %s); it will report fail. Install libhiredis-dev "
                 "and rebuild.", he_checks_backends());
        say(warn, ctx, HE_LOG_ERROR, msg);
    }
    if (c->redis.n_sentinels > 0 && c->redis.service == NULL)
        say(warn, ctx, HE_LOG_WARNING, "WebSessionProperties: 'sentinels' "
            "given without 'service'; the sentinels are ignored");
}

