/*
 * he_mysql_blocking.c - the MySQL/MariaDB check with the blocking calls
 * of Oracle's libmysqlclient, which has no non-blocking API:
 * mysql_real_connect(), mysql_real_query(), mysql_store_result().  The
 * common part (options, TLS, errors, the answer) is in he_mysql.c.
 *
 * The only bound inside this process is the library's connect, read and
 * write timeouts, set to the time left rounded up to whole seconds
 * (he_mysql.c); the deadline itself is enforced by the checker, which
 * kills a run that overstays it.  A call that fails after the deadline is
 * reported as a timeout.
 *
 * Built with -DHE_WITH_MYSQL against libmysqlclient, or against any
 * client library with -DHE_MYSQL_BLOCKING (he_mysql.h).
 */
#include "he.h"

#ifdef HE_WITH_MYSQL
#include "he_mysql.h"
#endif

#if defined(HE_WITH_MYSQL) && !defined(HE_MYSQL_ASYNC)

/* A call failed: past the deadline that is a timeout, else the library
 * says why.  HE_FAIL. */
static he_result
he_mysql_blocking_fail(MYSQL *m, const char *what, he_probe *p)
{
    return he_mysql_fail(m, he_time_now() < p->deadline ? 1 : 0, what, p);
}

static he_result
he_mysql_blocking_connect(MYSQL *m, const he_db_config *c,
                          const he_mysql_target *t, he_probe *p)
{
    if (mysql_real_connect(m, t->host, c->user, c->password, c->name,
                           t->port, t->socket, 0) == NULL)
        return he_mysql_blocking_fail(m, "connect", p);
    return HE_OK;
}

/* Send the query, read its result and check it. */
static he_result
he_mysql_blocking_query(MYSQL *m, he_probe *p)
{
    MYSQL_RES *res;

    if (mysql_real_query(m, HE_MYSQL_QUERY, HE_MYSQL_QUERY_LEN) != 0)
        return he_mysql_blocking_fail(m, "query", p);
    res = mysql_store_result(m);
    if (res == NULL)
        return he_mysql_blocking_fail(m, "query", p);
    return he_mysql_answer(res, p);
}

/* he_mysql_check - see he.h.  Runs in a run's child process. */
he_result
he_mysql_check(const he_db_config *c, he_probe *p)
{
    MYSQL *m = NULL;
    he_mysql_opts o;
    he_mysql_target t;
    he_result r;

    r = he_mysql_begin(&m, c, &o, &t, p);
    if (r == HE_OK) {
        he_probe_phase(p, he_mysql_connect_phase(c));
        r = he_mysql_blocking_connect(m, c, &t, p);
    }
    if (r == HE_OK)
        r = he_mysql_connected(m, &o, p);
    if (r == HE_OK) {
        he_probe_phase(p, HE_PHASE_QUERYING);
        r = he_mysql_blocking_query(m, p);
    }
    he_mysql_end(m);
    return r;
}

#endif /* HE_WITH_MYSQL && !HE_MYSQL_ASYNC */
