/*
 * he_mysql_async.c - the MySQL/MariaDB check with MariaDB Connector/C's
 * non-blocking API: mysql_real_connect_start(), mysql_real_query_start()
 * and mysql_store_result_start(), each resumed with its _cont() function
 * once poll() says the socket is ready, and never waiting past the
 * deadline.  The common part (options, TLS, errors, the answer) is in
 * he_mysql.c.
 *
 * When the deadline passes (or poll fails) in the middle of a step,
 * mariadb_cancel() shuts the socket, so that mysql_close() cannot block;
 * mysql_close() then discards the suspended step.
 *
 * Not bounded here: a host name is resolved with blocking getaddrinfo()
 * inside mysql_real_connect_start(); the checker kills a run that
 * overstays its deadline.
 *
 * Built with -DHE_WITH_MYSQL against MariaDB Connector/C, unless
 * -DHE_MYSQL_BLOCKING (he_mysql.h).
 */
#include "he.h"

#ifdef HE_WITH_MYSQL
#include "he_mysql.h"
#endif

#ifdef HE_MYSQL_ASYNC

#include <errno.h>
#include <poll.h>

/* Map poll()'s revents to MYSQL_WAIT_* for the library.  An error or
 * hang-up is reported as whatever was waited for, so that the library's
 * next read or write sees it. */
static int
he_mysql_async_events(short revents, int status)
{
    int ev = 0;

    if (revents & POLLIN)
        ev |= MYSQL_WAIT_READ;
    if (revents & POLLOUT)
        ev |= MYSQL_WAIT_WRITE;
    if (revents & POLLPRI)
        ev |= MYSQL_WAIT_EXCEPT;
    if (revents & (POLLERR | POLLHUP | POLLNVAL))
        ev |= status & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE
                        | MYSQL_WAIT_EXCEPT);
    return ev ? ev : status;
}

/*
 * Wait for what the library asked for (status: MYSQL_WAIT_* bits), never
 * past the deadline.  The library's own timeout (MYSQL_WAIT_TIMEOUT) is
 * honoured when it comes first.  Returns the MYSQL_WAIT_* bits that
 * happened (> 0), 0 when the deadline passed, -1 on a poll error.
 */
static int
he_mysql_async_wait(MYSQL *m, int status, double deadline)
{
    struct pollfd pfd;
    double until = deadline, lib;
    int lib_first = 0, ms, r;

    if (status & MYSQL_WAIT_TIMEOUT) {
        lib = he_time_now() + mysql_get_timeout_value_ms(m) / 1000.0;
        if (lib < deadline) {
            until = lib;
            lib_first = 1;
        }
    }
    pfd.events = 0;
    if (status & MYSQL_WAIT_READ)
        pfd.events |= POLLIN;
    if (status & MYSQL_WAIT_WRITE)
        pfd.events |= POLLOUT;
    if (status & MYSQL_WAIT_EXCEPT)
        pfd.events |= POLLPRI;
    pfd.fd = pfd.events ? (int)mysql_get_socket(m) : -1;
    for (;;) {
        ms = he_time_left_ms(until);
        if (ms == 0)
            return lib_first ? MYSQL_WAIT_TIMEOUT : 0;
        pfd.revents = 0;
        r = poll(&pfd, 1, ms);
        if (r > 0)
            return he_mysql_async_events(pfd.revents, status);
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* A step left unfinished (w: 0 deadline, -1 poll error): shut the
 * connection so that mysql_close() cannot block, say why.  HE_FAIL. */
static he_result
he_mysql_async_abandon(MYSQL *m, int w, const char *what, he_probe *p)
{
    /* the reason first: cancelling may overwrite poll()'s errno */
    he_result r = he_mysql_fail(m, w, what, p);

#ifdef LIBMARIADB                       /* Connector/C; not in MariaDB's */
    mariadb_cancel(m);                  /* older libmysqlclient */
#endif
    return r;
}

static he_result
he_mysql_async_connect(MYSQL *m, const he_db_config *c,
                       const he_mysql_target *t, he_probe *p)
{
    MYSQL *ret = NULL;
    int ev, st;

    st = mysql_real_connect_start(&ret, m, t->host, c->user, c->password,
                                  c->name, t->port, t->socket, 0);
    while (st != 0) {
        ev = he_mysql_async_wait(m, st, p->deadline);
        if (ev <= 0)
            return he_mysql_async_abandon(m, ev, "connect", p);
        st = mysql_real_connect_cont(&ret, m, ev);
    }
    return ret != NULL ? HE_OK : he_mysql_fail(m, 1, "connect", p);
}

/* Send the query. */
static he_result
he_mysql_async_send(MYSQL *m, he_probe *p)
{
    int ret = 1, ev, st;

    st = mysql_real_query_start(&ret, m, HE_MYSQL_QUERY, HE_MYSQL_QUERY_LEN);
    while (st != 0) {
        ev = he_mysql_async_wait(m, st, p->deadline);
        if (ev <= 0)
            return he_mysql_async_abandon(m, ev, "query", p);
        st = mysql_real_query_cont(&ret, m, ev);
    }
    return ret == 0 ? HE_OK : he_mysql_fail(m, 1, "query", p);
}

/* Read its result and check it. */
static he_result
he_mysql_async_store(MYSQL *m, he_probe *p)
{
    MYSQL_RES *res = NULL;
    int ev, st;

    st = mysql_store_result_start(&res, m);
    while (st != 0) {
        ev = he_mysql_async_wait(m, st, p->deadline);
        if (ev <= 0)
            return he_mysql_async_abandon(m, ev, "query", p);
        st = mysql_store_result_cont(&res, m, ev);
    }
    return res != NULL ? he_mysql_answer(res, p)
                       : he_mysql_fail(m, 1, "query", p);
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
    if (r == HE_OK && mysql_options(m, MYSQL_OPT_NONBLOCK, NULL) != 0)
        r = he_mysql_fail(m, 1, "connect: cannot enable non-blocking mode",
                          p);
    if (r == HE_OK) {
        he_probe_phase(p, he_mysql_connect_phase(c));
        r = he_mysql_async_connect(m, c, &t, p);
    }
    if (r == HE_OK)
        r = he_mysql_connected(m, &o, p);
    if (r == HE_OK) {
        he_probe_phase(p, HE_PHASE_QUERYING);
        r = he_mysql_async_send(m, p);
    }
    if (r == HE_OK)
        r = he_mysql_async_store(m, p);
    he_mysql_end(m);
    return r;
}

#endif /* HE_MYSQL_ASYNC */
