/*
 * he_config.c - the extension's configuration: defaults, deep copies and
 * release, who may call the endpoints, and the configuration's identity.
 * Applying the options and checking them across is he_options.c.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "he.h"

/* ---- lifecycle --------------------------------------------------------- */

void
he_config_init(he_config *c)
{
    memset(c, 0, sizeof *c);
    c->ping_path = he_strdup(HE_DEFAULT_PING);
    c->ping_len = c->ping_path ? strlen(c->ping_path) : 0;
    c->status_path = he_strdup(HE_DEFAULT_STATUS);
    c->status_len = c->status_path ? strlen(c->status_path) : 0;
    c->timeout = HE_DEFAULT_TIMEOUT;
    c->cache_seconds = HE_DEFAULT_CACHE;
    c->db.kind = HE_DB_NONE;
    c->redis.server.host = he_strdup("127.0.0.1");
    c->redis.server.port = HE_REDIS_PORT;
    c->redis.database = -1;
}

static void
free_db(he_db_config *d)
{
    size_t i;

    free(d->type);
    free(d->host);
    free(d->port);
    free(d->name);
    free(d->user);
    free(d->password);
    free(d->require_table);
    for (i = 0; i < d->n_extra; i++) {
        free(d->extra[i].key);
        free(d->extra[i].value);
    }
    free(d->extra);
    memset(d, 0, sizeof *d);
}

static void
free_redis(he_redis_config *r)
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
    free(c->namespace);
    free_db(&c->db);
    free_redis(&c->redis);
    free(c->allow);
    memset(c, 0, sizeof *c);
}

static void
copy_db(he_db_config *to, const he_db_config *from)
{
    size_t i;

    *to = *from;
    to->type = he_strdup(from->type);
    to->host = he_strdup(from->host);
    to->port = he_strdup(from->port);
    to->name = he_strdup(from->name);
    to->user = he_strdup(from->user);
    to->password = he_strdup(from->password);
    to->require_table = he_strdup(from->require_table);
    to->extra = NULL;
    to->n_extra = 0;
    if (from->n_extra
        && (to->extra = calloc(from->n_extra, sizeof *to->extra)) != NULL) {
        to->n_extra = from->n_extra;
        for (i = 0; i < from->n_extra; i++) {
            to->extra[i].key = he_strdup(from->extra[i].key);
            to->extra[i].value = he_strdup(from->extra[i].value);
        }
    }
}

static void
copy_redis(he_redis_config *to, const he_redis_config *from)
{
    size_t i;

    *to = *from;
    to->server.host = he_strdup(from->server.host);
    to->sock = he_strdup(from->sock);
    to->username = he_strdup(from->username);
    to->password = he_strdup(from->password);
    to->service = he_strdup(from->service);
    to->sentinels = NULL;
    to->n_sentinels = 0;
    if (from->n_sentinels
        && (to->sentinels = calloc(from->n_sentinels,
                                   sizeof *to->sentinels)) != NULL) {
        to->n_sentinels = from->n_sentinels;
        for (i = 0; i < from->n_sentinels; i++) {
            to->sentinels[i].host = he_strdup(from->sentinels[i].host);
            to->sentinels[i].port = from->sentinels[i].port;
        }
    }
}

void
he_config_copy(he_config *to, const he_config *from)
{
    *to = *from;
    to->ping_path = he_strdup(from->ping_path);
    to->status_path = he_strdup(from->status_path);
    to->namespace = he_strdup(from->namespace);
    copy_db(&to->db, &from->db);
    copy_redis(&to->redis, &from->redis);
    to->allow = NULL;
    to->n_allow = 0;                    /* allow_set stays: fails closed */
    if (from->n_allow
        && (to->allow = malloc(from->n_allow * sizeof *to->allow)) != NULL) {
        memcpy(to->allow, from->allow, from->n_allow * sizeof *to->allow);
        to->n_allow = from->n_allow;
    }
    if (to->ping_path == NULL || to->status_path == NULL)
        to->ping_len = to->status_len = 0;      /* matches nothing */
    if (to->namespace == NULL)
        to->namespace_len = 0;
}

int
he_config_addr_allowed(const he_config *c, const char *addr, size_t len)
{
    unsigned char a[16];
    size_t i;

    if (!c->allow_set)
        return 1;
    if (addr == NULL || he_parse_client(addr, len, a) != 0)
        return 0;
    for (i = 0; i < c->n_allow; i++)
        if (he_cidr_contains(&c->allow[i], a))
            return 1;
    return 0;
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
    h = hash_str(h, d->require_table);
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
