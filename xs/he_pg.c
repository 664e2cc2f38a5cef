/*
 * he_pg.c - PostgreSQL check through libpq's non-blocking API.
 *
 * PQconnectStartParams + PQconnectPoll, then PQsendQuery("SELECT 1") and
 * PQconsumeInput/PQisBusy, every wait bounded by the deadline with
 * he_time_wait_fd().  Built only with -DHE_WITH_PG.
 *
 * Not bounded: a host name is resolved inside libpq with blocking
 * getaddrinfo() (PQconnectStartParams/PQconnectPoll); the dispatcher
 * covers that case.
 */
#ifdef HE_WITH_PG

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "he.h"

#define PGC_APP_NAME "rt-healthendpoint"
#define PGC_BASE_KEYS 6                 /* host port dbname user password
                                         * application_name */

/* "what: msg" into err as one log line: libpq's messages end in a newline
 * and may hold more lines ("\n\tIs the server running ..."); each line
 * break with the blanks after it becomes one space, a trailing one goes. */
static void
pgc_format_error(const char *what, const char *m, char *err, size_t errlen)
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
pgc_set_error(PGconn *conn, const char *what, char *err, size_t errlen)
{
    pgc_format_error(what, conn ? PQerrorMessage(conn) : NULL, err, errlen);
}

/* Append key=value to the parameter arrays unless value is NULL. */
static void
pgc_param(const char **keys, const char **vals, size_t *n,
         const char *key, const char *value)
{
    if (key == NULL || value == NULL)
        return;
    keys[*n] = key;
    vals[*n] = value;
    (*n)++;
}

/*
 * Start a connection with the configured parameters; NULL ones are left
 * out so libpq uses its defaults (the Unix socket, as RT does).  The
 * extra keys come after ours (later keys win in libpq).  No
 * connect_timeout: libpq ignores it while the caller drives PQconnectPoll,
 * and our deadline bounds every wait.  Returns the PGconn (caller PQfinish()es it, even when it is
 * BAD), or NULL when out of memory.
 */
static PGconn *
pgc_start(const he_db_config *c)
{
    const char **keys, **vals;
    size_t i, n = 0;
    PGconn *conn;

    keys = calloc(PGC_BASE_KEYS + c->n_extra + 1, sizeof(*keys));
    vals = calloc(PGC_BASE_KEYS + c->n_extra + 1, sizeof(*vals));
    if (keys == NULL || vals == NULL) {
        free(keys);
        free(vals);
        return NULL;
    }
    pgc_param(keys, vals, &n, "host", c->host);
    pgc_param(keys, vals, &n, "port", c->port);
    pgc_param(keys, vals, &n, "dbname", c->name);
    pgc_param(keys, vals, &n, "user", c->user);
    pgc_param(keys, vals, &n, "password", c->password);
    pgc_param(keys, vals, &n, "application_name", PGC_APP_NAME);
    for (i = 0; i < c->n_extra; i++)
        pgc_param(keys, vals, &n, c->extra[i].key, c->extra[i].value);
    conn = PQconnectStartParams(keys, vals, 0);     /* copies the strings */
    free(keys);
    free(vals);
    return conn;
}

/*
 * Drive PQconnectPoll until the connection is up or has failed.  The
 * socket may change between calls (several hosts, SSL retry), so it is
 * fetched every time.  Returns HE_OK or HE_FAIL with err set.
 */
static he_result
pgc_connect_poll(PGconn *conn, double deadline, double start,
                char *err, size_t errlen)
{
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    int w;

    if (PQstatus(conn) == CONNECTION_BAD) {
        pgc_set_error(conn, "connect", err, errlen);
        return HE_FAIL;
    }
    for (;;) {
        if (st == PGRES_POLLING_OK)
            return HE_OK;
        if (st == PGRES_POLLING_FAILED) {
            pgc_set_error(conn, "connect", err, errlen);
            return HE_FAIL;
        }
        w = he_time_wait_fd(PQsocket(conn), st == PGRES_POLLING_WRITING,
                            deadline);
        if (w != 1) {
            he_time_wait_error(w, "connect", start, err, errlen);
            return HE_FAIL;
        }
        st = PQconnectPoll(conn);
    }
}

/* Send the whole query buffer (non-blocking mode).  HE_OK or HE_FAIL. */
static he_result
pgc_flush(PGconn *conn, double deadline, double start,
          char *err, size_t errlen)
{
    int r, w;

    while ((r = PQflush(conn)) == 1) {
        w = he_time_wait_fd(PQsocket(conn), 1, deadline);
        if (w != 1) {
            he_time_wait_error(w, "query", start, err, errlen);
            return HE_FAIL;
        }
    }
    if (r < 0) {
        pgc_set_error(conn, "query", err, errlen);
        return HE_FAIL;
    }
    return HE_OK;
}

/*
 * Wait, within the deadline, until PQgetResult will not block, then fetch
 * the next result into *res (NULL: no more results).  The caller
 * PQclear()s *res.  Returns HE_OK or HE_FAIL with err set.
 */
static he_result
pgc_next_result(PGconn *conn, PGresult **res, double deadline, double start,
               char *err, size_t errlen)
{
    int w;

    *res = NULL;
    while (PQisBusy(conn)) {
        w = he_time_wait_fd(PQsocket(conn), 0, deadline);
        if (w != 1) {
            he_time_wait_error(w, "query", start, err, errlen);
            return HE_FAIL;
        }
        if (!PQconsumeInput(conn)) {
            pgc_set_error(conn, "query", err, errlen);
            return HE_FAIL;
        }
    }
    *res = PQgetResult(conn);
    return HE_OK;
}

/* Check the result of SELECT 1.  HE_OK or HE_FAIL with err set. */
static he_result
pgc_check_result(const PGresult *res, char *err, size_t errlen)
{
    if (res == NULL) {
        snprintf(err, errlen, "query: no result");
        return HE_FAIL;
    }
    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        pgc_format_error("query", PQresultErrorMessage(res), err, errlen);
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
 * connection must be up.  HE_OK or HE_FAIL with err set. */
static he_result
pgc_query(PGconn *conn, double deadline, double start,
          char *err, size_t errlen)
{
    PGresult *res = NULL;
    he_result r;

    if (PQsetnonblocking(conn, 1) != 0 || !PQsendQuery(conn, "SELECT 1")) {
        pgc_set_error(conn, "query", err, errlen);
        return HE_FAIL;
    }
    r = pgc_flush(conn, deadline, start, err, errlen);
    if (r == HE_OK)
        r = pgc_next_result(conn, &res, deadline, start, err, errlen);
    if (r == HE_OK)
        r = pgc_check_result(res, err, errlen);
    while (r == HE_OK && res != NULL) {     /* until PQgetResult says NULL */
        PQclear(res);
        r = pgc_next_result(conn, &res, deadline, start, err, errlen);
    }
    PQclear(res);                           /* NULL-safe */
    return r;
}

/*
 * he_pg_check - see he.h.  Opens one connection, runs SELECT 1, closes
 * it.  On HE_FAIL err holds e.g. "connect: connection to server at
 * "127.0.0.1", port 5432 failed: FATAL:  password authentication failed
 * for user "rt"" or "timed out after 1.001 s during query".
 */
he_result
he_pg_check(const he_db_config *c, double deadline, char *err, size_t errlen)
{
    double start = he_time_now();
    PGconn *conn;
    he_result r;

    conn = pgc_start(c);
    if (conn == NULL) {
        snprintf(err, errlen, "connect: out of memory");
        return HE_FAIL;
    }
    r = pgc_connect_poll(conn, deadline, start, err, errlen);
    if (r != HE_OK)
        goto cleanup;
    r = pgc_query(conn, deadline, start, err, errlen);

cleanup:
    PQfinish(conn);
    return r;
}

#else  /* !HE_WITH_PG */

typedef int he_pg_not_built;            /* keeps the unit non-empty (ISO C) */

#endif /* HE_WITH_PG */
