/*
 * he_pg.c - PostgreSQL check through libpq's non-blocking API.
 *
 * PQconnectStartParams + PQconnectPoll, then PQsendQuery("SELECT 1") and
 * PQconsumeInput/PQisBusy, every wait bounded by the deadline with
 * he_time_wait_fd().  Built only with -DHE_WITH_PG.
 *
 * Several hosts (host=pg1,pg2 as RT passes $DatabaseHost, or in
 * %DatabaseExtraDSN) are tried one at a time, in order, each for
 * min(connect_timeout, time left) - libpq ignores connect_timeout when
 * the caller drives PQconnectPoll, and would let a stalled first host eat
 * the whole deadline - with target_session_attrs applied per host, so
 * that the check finds the server RT's blocking connect would find.
 *
 * Not bounded here: a host name is resolved inside libpq with blocking
 * getaddrinfo(); the checker kills a run that overstays its deadline.
 */
#ifdef HE_WITH_PG

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "he.h"

#define HE_PG_APP_NAME "rt-healthendpoint"
#define HE_PG_MAX_HOSTS 32
#define HE_PG_MIN_TIMEOUT 2             /* libpq treats 1 as 2 seconds */

/* The connection parameters, with the host list taken apart. */
typedef struct {
    const char **keys;                  /* for one host at a time */
    const char **vals;
    size_t n;                           /* parameters other than per-host */
    char *hostbuf, *addrbuf, *portbuf;  /* the lists, split in place */
    const char *host[HE_PG_MAX_HOSTS];  /* "" where the list had none */
    const char *addr[HE_PG_MAX_HOSTS];
    const char *port[HE_PG_MAX_HOSTS];
    size_t nhosts;
    double connect_timeout;             /* per host; 0: none */
    const char *target;                 /* target_session_attrs or NULL */
    int random_order;                   /* load_balance_hosts=random */
} he_pg_params;

/* "what: msg" into err as one log line: libpq's messages end in a newline
 * and may hold more lines ("\n\tIs the server running ..."); each line
 * break with the blanks after it becomes one space, a trailing one goes. */
static void
he_pg_format_error(const char *what, const char *m, char *err, size_t errlen)
{
    size_t i;
    int n;

    if (m == NULL || *m == '\0')
        m = "unknown error";
    n = snprintf(err, errlen, "%s: ", what);
    i = n < 0 ? 0 : (size_t)n;
    for (; *m != '\0' && i + 1 < errlen; m++) {
        if (*m == '\n' || *m == '\r') {
            while (m[1] == '\n' || m[1] == '\r' || m[1] == '\t' || m[1] == ' ')
                m++;
            if (m[1] == '\0')
                break;
            err[i++] = ' ';
        } else {
            err[i++] = *m;
        }
    }
    if (i < errlen)
        err[i] = '\0';
}

/* The connection's last error into err, prefixed with what. */
static void
he_pg_set_error(PGconn *conn, const char *what, char *err, size_t errlen)
{
    he_pg_format_error(what, conn ? PQerrorMessage(conn) : NULL, err, errlen);
}

/* ---- parameters ------------------------------------------------------- */

/* Split a comma list in place into out[] (at most HE_PG_MAX_HOSTS);
 * returns the count, 0 for NULL. */
static size_t
he_pg_split(char *list, const char **out)
{
    size_t n = 0;
    char *p = list;

    if (list == NULL)
        return 0;
    for (;;) {
        char *comma = strchr(p, ',');

        if (n == HE_PG_MAX_HOSTS)
            break;
        out[n++] = p;
        if (comma == NULL)
            break;
        *comma = '\0';
        p = comma + 1;
    }
    return n;
}

static void
he_pg_params_free(he_pg_params *pp)
{
    free(pp->keys);
    free(pp->vals);
    free(pp->hostbuf);
    free(pp->addrbuf);
    free(pp->portbuf);
}

/* Keys that the host loop handles itself instead of passing them on. */
static int
he_pg_is_host_key(const char *k)
{
    return strcmp(k, "host") == 0 || strcmp(k, "hostaddr") == 0
        || strcmp(k, "port") == 0 || strcmp(k, "connect_timeout") == 0
        || strcmp(k, "target_session_attrs") == 0
        || strcmp(k, "load_balance_hosts") == 0;
}

/*
 * Collect the parameters: ours first, then %DatabaseExtraDSN (a later key
 * wins, as in a libpq conninfo string).  NULL values are left out so libpq
 * uses its defaults (the Unix socket, as RT does).  0, or -1 with err.
 */
static int
he_pg_params_make(const he_db_config *c, he_pg_params *pp, char *err,
                  size_t errlen)
{
    const char *host = c->host, *addr = NULL, *port = c->port, *ct = NULL;
    const char *lb = NULL;
    size_t i, nh, na, np, max = 5 + c->n_extra + 4;

    memset(pp, 0, sizeof *pp);
    pp->keys = calloc(max, sizeof *pp->keys);
    pp->vals = calloc(max, sizeof *pp->vals);
    if (pp->keys == NULL || pp->vals == NULL)
        goto oom;
#define HE_PG_ADD(k, v) \
    do { if ((v) != NULL) { pp->keys[pp->n] = (k); pp->vals[pp->n++] = (v); } } while (0)
    HE_PG_ADD("dbname", c->name);
    HE_PG_ADD("user", c->user);
    HE_PG_ADD("password", c->password);
    HE_PG_ADD("application_name", HE_PG_APP_NAME);
    for (i = 0; i < c->n_extra; i++) {
        const char *k = c->extra[i].key, *v = c->extra[i].value;

        if (k == NULL || v == NULL)
            continue;
        if (strcmp(k, "host") == 0)
            host = v;
        else if (strcmp(k, "hostaddr") == 0)
            addr = v;
        else if (strcmp(k, "port") == 0)
            port = v;
        else if (strcmp(k, "connect_timeout") == 0)
            ct = v;
        else if (strcmp(k, "target_session_attrs") == 0)
            pp->target = v;
        else if (strcmp(k, "load_balance_hosts") == 0)
            lb = v;
        if (!he_pg_is_host_key(k))
            HE_PG_ADD(k, v);
    }
#undef HE_PG_ADD
    if (ct != NULL && *ct != '\0') {
        pp->connect_timeout = atof(ct);
        if (pp->connect_timeout > 0 && pp->connect_timeout < HE_PG_MIN_TIMEOUT)
            pp->connect_timeout = HE_PG_MIN_TIMEOUT;
    }
    pp->random_order = lb != NULL && strcmp(lb, "random") == 0
        && PQlibVersion() >= 160000;
    if ((host && !(pp->hostbuf = he_strdup(host)))
        || (addr && !(pp->addrbuf = he_strdup(addr)))
        || (port && !(pp->portbuf = he_strdup(port))))
        goto oom;
    nh = he_pg_split(pp->hostbuf, pp->host);
    na = he_pg_split(pp->addrbuf, pp->addr);
    np = he_pg_split(pp->portbuf, pp->port);
    pp->nhosts = nh > na ? nh : na;
    if (pp->nhosts == 0)
        pp->nhosts = 1;                 /* libpq's default host */
    if ((nh && na && nh != na) || (np > 1 && np != pp->nhosts)) {
        snprintf(err, errlen, "connect: the host, hostaddr and port lists "
                 "have different lengths");
        return -1;
    }
    for (i = 0; i < pp->nhosts; i++) {
        if (i >= nh)
            pp->host[i] = NULL;
        if (i >= na)
            pp->addr[i] = NULL;
        pp->port[i] = np == 0 ? NULL : pp->port[np == 1 ? 0 : i];
    }
    return 0;

oom:
    snprintf(err, errlen, "connect: out of memory");
    return -1;
}

/* "pg1:5432", "/run/postgresql", "10.0.0.2" for messages. */
static void
he_pg_host_name(const he_pg_params *pp, size_t i, char *buf, size_t len)
{
    const char *h = pp->host[i] && *pp->host[i] ? pp->host[i]
                  : pp->addr[i] && *pp->addr[i] ? pp->addr[i] : "default";

    if (pp->port[i] && *pp->port[i])
        snprintf(buf, len, "%s:%s", h, pp->port[i]);
    else
        snprintf(buf, len, "%s", h);
}

/* 1 if connecting to host i starts with a name lookup. */
static int
he_pg_needs_lookup(const he_pg_params *pp, size_t i)
{
    const char *h = pp->host[i];
    unsigned char buf[16];

    if (pp->addr[i] && *pp->addr[i])
        return 0;
    if (h == NULL || *h == '\0' || *h == '/' || *h == '@')
        return 0;
    return inet_pton(AF_INET, h, buf) != 1 && inet_pton(AF_INET6, h, buf) != 1;
}

/* ---- one host ----------------------------------------------------------- */

/* Start a connection to host i with target_session_attrs target.  Returns
 * the PGconn (caller PQfinish()es it, even when BAD), or NULL when out of
 * memory. */
static PGconn *
he_pg_start(he_pg_params *pp, size_t i, const char *target)
{
    size_t n = pp->n;

#define HE_PG_PUT(k, v) \
    do { if ((v) != NULL && *(v) != '\0') { pp->keys[n] = (k); pp->vals[n++] = (v); } } while (0)
    HE_PG_PUT("host", pp->host[i]);
    HE_PG_PUT("hostaddr", pp->addr[i]);
    HE_PG_PUT("port", pp->port[i]);
    HE_PG_PUT("target_session_attrs", target);
#undef HE_PG_PUT
    pp->keys[n] = NULL;
    pp->vals[n] = NULL;
    return PQconnectStartParams(pp->keys, pp->vals, 0);  /* copies them */
}

/*
 * Drive PQconnectPoll until the connection is up or has failed, at most
 * until until.  The socket may change between calls (SSL retry), so it is
 * fetched every time.  Returns HE_OK or HE_FAIL with p->err set.
 */
static he_result
he_pg_connect_poll(PGconn *conn, double until, he_probe *p)
{
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    int w;

    if (PQstatus(conn) == CONNECTION_BAD) {
        he_pg_set_error(conn, "connect", p->err, p->errlen);
        return HE_FAIL;
    }
    for (;;) {
        he_probe_phase(p, PQstatus(conn) == CONNECTION_STARTED
                          ? HE_PHASE_CONNECTING : HE_PHASE_AUTHENTICATING);
        if (st == PGRES_POLLING_OK)
            return HE_OK;
        if (st == PGRES_POLLING_FAILED) {
            he_pg_set_error(conn, "connect", p->err, p->errlen);
            return HE_FAIL;
        }
        w = he_time_wait_fd(PQsocket(conn), st == PGRES_POLLING_WRITING,
                            until);
        if (w != 1) {
            he_time_wait_error(w, "connect", p->start, p->err, p->errlen);
            return HE_FAIL;
        }
        st = PQconnectPoll(conn);
    }
}

/* Connect to host i.  On HE_OK *out is the connection (caller
 * PQfinish()es it); on HE_FAIL p->err says why. */
static he_result
he_pg_connect_one(he_pg_params *pp, size_t i, const char *target,
                  he_probe *p, PGconn **out)
{
    double until = p->deadline;
    PGconn *conn;
    he_result r;

    *out = NULL;
    if (pp->connect_timeout > 0 && he_time_now() + pp->connect_timeout < until)
        until = he_time_now() + pp->connect_timeout;
    he_probe_phase(p, he_pg_needs_lookup(pp, i) ? HE_PHASE_RESOLVING
                                                : HE_PHASE_CONNECTING);
    conn = he_pg_start(pp, i, target);
    if (conn == NULL) {
        snprintf(p->err, p->errlen, "connect: out of memory");
        return HE_FAIL;
    }
    r = he_pg_connect_poll(conn, until, p);
    if (r == HE_OK)
        *out = conn;
    else
        PQfinish(conn);
    return r;
}

/* Append "; host X: reason" (or the first "host X: reason") to all. */
static void
he_pg_note(char *all, size_t len, const char *host, const char *why)
{
    size_t used = strlen(all);

    if (used + 1 < len)
        snprintf(all + used, len - used, "%shost %s: %s", used ? "; " : "",
                 host, why);
}

/*
 * Try the hosts in order (or in a random order for load_balance_hosts=
 * random, libpq 16 and later) until one accepts; prefer-standby makes a
 * second pass with "any" when no standby answered, as libpq does.  On
 * HE_OK *out is the connection; on HE_FAIL p->err names each host and
 * why it failed.
 */
static he_result
he_pg_connect(he_pg_params *pp, he_probe *p, PGconn **out)
{
    size_t order[HE_PG_MAX_HOSTS], i, k;
    const char *target = pp->target;
    char *all = p->err, one[HE_ERRLEN], name[128];
    int pass, passes = 1;
    he_probe sub = *p;

    for (i = 0; i < pp->nhosts; i++)
        order[i] = i;
    if (pp->random_order)               /* a run's child: its own seed */
        srand((unsigned)getpid() ^ (unsigned)(he_time_now() * 1e6));
    for (i = pp->nhosts; pp->random_order && i > 1; i--) {
        size_t j = (size_t)rand() % i, t = order[i - 1];

        order[i - 1] = order[j];
        order[j] = t;
    }
    if (target != NULL && strcmp(target, "prefer-standby") == 0) {
        target = "standby";
        passes = 2;
    }
    sub.err = one;
    sub.errlen = sizeof one;
    all[0] = '\0';
    for (pass = 0; pass < passes; pass++, target = "any") {
        for (k = 0; k < pp->nhosts; k++) {
            i = order[k];
            if (he_pg_connect_one(pp, i, target, &sub, out) == HE_OK)
                return HE_OK;
            he_pg_host_name(pp, i, name, sizeof name);
            if (pp->nhosts == 1 && passes == 1)
                snprintf(all, p->errlen, "%s", one);
            else
                he_pg_note(all, p->errlen, name, one);
            if (he_time_now() >= p->deadline)
                return HE_FAIL;
        }
    }
    return HE_FAIL;
}

/* ---- the query ---------------------------------------------------------- */

/* Send the whole query buffer (non-blocking mode).  HE_OK or HE_FAIL. */
static he_result
he_pg_flush(PGconn *conn, he_probe *p)
{
    int r, w;

    while ((r = PQflush(conn)) == 1) {
        w = he_time_wait_fd(PQsocket(conn), 1, p->deadline);
        if (w != 1) {
            he_time_wait_error(w, "query", p->start, p->err, p->errlen);
            return HE_FAIL;
        }
    }
    if (r < 0) {
        he_pg_set_error(conn, "query", p->err, p->errlen);
        return HE_FAIL;
    }
    return HE_OK;
}

/*
 * Wait, within the deadline, until PQgetResult will not block, then fetch
 * the next result into *res (NULL: no more results).  The caller
 * PQclear()s *res.  Returns HE_OK or HE_FAIL with p->err set.
 */
static he_result
he_pg_next_result(PGconn *conn, PGresult **res, he_probe *p)
{
    int w;

    *res = NULL;
    while (PQisBusy(conn)) {
        w = he_time_wait_fd(PQsocket(conn), 0, p->deadline);
        if (w != 1) {
            he_time_wait_error(w, "query", p->start, p->err, p->errlen);
            return HE_FAIL;
        }
        if (!PQconsumeInput(conn)) {
            he_pg_set_error(conn, "query", p->err, p->errlen);
            return HE_FAIL;
        }
    }
    *res = PQgetResult(conn);
    return HE_OK;
}

/* Check the result of SELECT 1.  HE_OK or HE_FAIL with err set. */
static he_result
he_pg_check_result(const PGresult *res, char *err, size_t errlen)
{
    if (res == NULL) {
        snprintf(err, errlen, "query: no result");
        return HE_FAIL;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        he_pg_format_error("query", PQresultErrorMessage(res), err, errlen);
        return HE_FAIL;
    }
    if (PQntuples(res) != 1 || PQnfields(res) != 1
        || strcmp(PQgetvalue(res, 0, 0), "1") != 0) {
        snprintf(err, errlen, "query: unexpected result from SELECT 1");
        return HE_FAIL;
    }
    return HE_OK;
}

/* Send SELECT 1, check its result, and read the connection dry.  The
 * connection must be up.  HE_OK or HE_FAIL with p->err set. */
static he_result
he_pg_query(PGconn *conn, he_probe *p)
{
    PGresult *res = NULL;
    he_result r;

    he_probe_phase(p, HE_PHASE_QUERYING);
    if (PQsetnonblocking(conn, 1) != 0 || !PQsendQuery(conn, "SELECT 1")) {
        he_pg_set_error(conn, "query", p->err, p->errlen);
        return HE_FAIL;
    }
    r = he_pg_flush(conn, p);
    if (r == HE_OK)
        r = he_pg_next_result(conn, &res, p);
    if (r == HE_OK)
        r = he_pg_check_result(res, p->err, p->errlen);
    while (r == HE_OK && res != NULL) {     /* until PQgetResult says NULL */
        PQclear(res);
        r = he_pg_next_result(conn, &res, p);
    }
    PQclear(res);                           /* NULL-safe */
    return r;
}

/*
 * he_pg_check - see he.h.  Opens one connection, runs SELECT 1, closes
 * it.  On HE_FAIL p->err holds e.g. "connect: connection to server at
 * "127.0.0.1", port 5432 failed: FATAL:  password authentication failed
 * for user "rt"", "timed out after 1.001 s during query", or for several
 * hosts "host pg1:5432: timed out after 2.000 s during connect; host
 * pg2:5432: connect: ... is in recovery ...".
 */
he_result
he_pg_check(const he_db_config *c, he_probe *p)
{
    he_pg_params pp;
    PGconn *conn = NULL;
    he_result r = HE_FAIL;

    if (he_pg_params_make(c, &pp, p->err, p->errlen) != 0)
        goto cleanup;
    r = he_pg_connect(&pp, p, &conn);
    if (r == HE_OK)
        r = he_pg_query(conn, p);

cleanup:
    if (conn != NULL)
        PQfinish(conn);
    he_pg_params_free(&pp);
    return r;
}

#else  /* !HE_WITH_PG */

typedef int he_pg_not_built;            /* keeps the unit non-empty (ISO C) */

#endif /* HE_WITH_PG */
