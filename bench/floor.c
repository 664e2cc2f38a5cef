/*
 * floor.c - the latency floor for the status checks of
 * RT-Extension-HealthEndpoint: the least a status check can cost with the
 * same client libraries against the same servers.
 *
 *   floor --pg-host H --pg-port P --pg-dbname D --pg-user U --pg-password W
 *         --redis-host H --redis-port P [--redis-password W] [-n N] [--raw]
 *
 * For each backend, N times: connect, one round trip (SELECT 1 through
 * libpq's blocking API; PING through hiredis' blocking API), disconnect.
 * No threads, no deadlines, no non-blocking state machines, no error
 * text: only what any check has to do.  Prints per backend
 *
 *   pg    n=200 p50_us=... p99_us=... min_us=... max_us=...
 *   redis n=200 p50_us=... p99_us=... min_us=... max_us=...
 *
 * or, with --raw, one "pg <microseconds>" / "redis <microseconds>" line per
 * sample (bench/run merges several runs).  The backends alternate (pg,
 * redis, pg, ...) so that both see the same machine state.  Exits 1 if any
 * check fails: a floor made of errors means nothing.
 *
 * Build: cc -O2 -o floor floor.c $(pkg-config --cflags --libs libpq hiredis)
 */
#define _POSIX_C_SOURCE 200809L

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <libpq-fe.h>
#include <hiredis/hiredis.h>

static double
now_us(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static int
cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of a sorted array (p in 0..100). */
static double
percentile(const double *v, int n, double p)
{
    int rank = (int)(p / 100.0 * n + 0.999999);

    if (rank < 1)
        rank = 1;
    if (rank > n)
        rank = n;
    return v[rank - 1];
}

static const char *pg_host = "127.0.0.1", *pg_port = "5432",
    *pg_dbname = "postgres", *pg_user = NULL, *pg_password = NULL,
    *redis_host = "127.0.0.1", *redis_password = NULL;
static int redis_port = 6379;

/* connect, SELECT 1, disconnect; 0 on success */
static int
pg_once(void)
{
    const char *keys[] = { "host", "port", "dbname", "user", "password", NULL };
    const char *vals[] = { pg_host, pg_port, pg_dbname, pg_user, pg_password,
                           NULL };
    PGconn *c = PQconnectdbParams(keys, vals, 0);
    PGresult *r;
    int ok;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "floor: pg connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    r = PQexec(c, "SELECT 1");
    ok = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1
         && strcmp(PQgetvalue(r, 0, 0), "1") == 0;
    if (!ok)
        fprintf(stderr, "floor: pg SELECT 1: %s", PQerrorMessage(c));
    PQclear(r);
    PQfinish(c);
    return ok ? 0 : -1;
}

/* connect, [AUTH], PING, disconnect; 0 on success */
static int
redis_once(void)
{
    redisContext *c = redisConnect(redis_host, redis_port);
    redisReply *r;
    int ok;

    if (c == NULL || c->err) {
        fprintf(stderr, "floor: redis connect: %s\n",
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return -1;
    }
    if (redis_password) {
        r = redisCommand(c, "AUTH %s", redis_password);
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok) {
            fprintf(stderr, "floor: redis AUTH failed\n");
            redisFree(c);
            return -1;
        }
    }
    r = redisCommand(c, "PING");
    ok = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (!ok)
        fprintf(stderr, "floor: redis PING: %s\n", r ? "unexpected reply"
                                                    : c->errstr);
    if (r)
        freeReplyObject(r);
    redisFree(c);
    return ok ? 0 : -1;
}

static void
report(const char *name, double *v, int n, int raw)
{
    int i;

    if (raw) {
        for (i = 0; i < n; i++)
            printf("%s %.1f\n", name, v[i]);
        return;
    }
    qsort(v, n, sizeof *v, cmp_double);
    printf("%-5s n=%d p50_us=%.1f p99_us=%.1f min_us=%.1f max_us=%.1f\n",
           name, n, percentile(v, n, 50), percentile(v, n, 99), v[0],
           v[n - 1]);
}

static void
usage(void)
{
    fprintf(stderr, "usage: floor [--pg-host H] [--pg-port P] [--pg-dbname D]"
            " [--pg-user U] [--pg-password W]\n             [--redis-host H]"
            " [--redis-port P] [--redis-password W] [-n N] [--raw]\n");
    exit(2);
}

int
main(int argc, char **argv)
{
    int n = 200, raw = 0, i, warm = 5;
    double *pg, *rd, t;

    for (i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

        if (strcmp(a, "--raw") == 0) {
            raw = 1;
            continue;
        }
        if (v == NULL)
            usage();
        i++;
        if (strcmp(a, "--pg-host") == 0) pg_host = v;
        else if (strcmp(a, "--pg-port") == 0) pg_port = v;
        else if (strcmp(a, "--pg-dbname") == 0) pg_dbname = v;
        else if (strcmp(a, "--pg-user") == 0) pg_user = v;
        else if (strcmp(a, "--pg-password") == 0) pg_password = v;
        else if (strcmp(a, "--redis-host") == 0) redis_host = v;
        else if (strcmp(a, "--redis-port") == 0) redis_port = atoi(v);
        else if (strcmp(a, "--redis-password") == 0) redis_password = v;
        else if (strcmp(a, "-n") == 0) n = atoi(v);
        else if (strcmp(a, "--warmup") == 0) warm = atoi(v);
        else usage();
    }
    if (n < 1)
        usage();
    pg = calloc(n, sizeof *pg);
    rd = calloc(n, sizeof *rd);
    if (pg == NULL || rd == NULL)
        return 1;

    for (i = 0; i < warm; i++)          /* page in libraries, warm caches */
        if (pg_once() != 0 || redis_once() != 0)
            return 1;
    for (i = 0; i < n; i++) {
        t = now_us();
        if (pg_once() != 0)
            return 1;
        pg[i] = now_us() - t;
        t = now_us();
        if (redis_once() != 0)
            return 1;
        rd[i] = now_us() - t;
    }
    report("pg", pg, n, raw);
    report("redis", rd, n, raw);
    return 0;
}
