/*
 * he_mysql.c - MySQL/MariaDB check: connect, SELECT 1, close.
 *
 * With MariaDB Connector/C (Debian's libmariadb-dev) the non-blocking API
 * (mysql_*_start/_cont) is driven with poll() bounded by the deadline.
 * With Oracle's libmysqlclient, which has no such API, the blocking calls
 * run with connect/read/write timeouts of the time left, rounded up to
 * whole seconds: a safety net only, the dispatcher enforces the deadline.
 * -DHE_MYSQL_BLOCKING forces the blocking path (for tests).
 *
 * Not bounded on either path: a host name is resolved with blocking
 * getaddrinfo() inside mysql_real_connect[_start]().
 *
 * Built only with -DHE_WITH_MYSQL; he_mysql_global_init() always exists.
 */
#include "he.h"

#ifdef HE_WITH_MYSQL

#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mysql.h>

#if defined(MARIADB_BASE_VERSION) || defined(MARIADB_PACKAGE_VERSION) \
    || defined(LIBMARIADB)
#define HE_MARIADB 1                    /* options as MariaDB spells them */
#endif
#if defined(HE_MARIADB) && !defined(HE_MYSQL_BLOCKING)
#define HE_MYSQL_ASYNC 1                /* drive the non-blocking API */
#endif
#if !defined(HE_MARIADB) && defined(MYSQL_VERSION_ID) \
    && MYSQL_VERSION_ID >= 50711
#define HE_MYSQL_SSL_MODE 1             /* MYSQL_OPT_SSL_MODE exists */
#endif

/* DBD::mysql DSN attributes from %DatabaseExtraDSN that matter here. */
typedef struct {
    const char *socket;                 /* mysql_socket */
    int ssl;                            /* mysql_ssl: use TLS */
    int ssl_optional;                   /* mysql_ssl_optional: may fall back */
    int verify;                         /* mysql_ssl_verify_server_cert */
    int compress;                       /* mysql_compression */
    const char *key, *cert, *ca, *capath, *cipher;  /* mysql_ssl_* files */
} myc_opts;

/* Perl truth of a DSN value: "", "0" and NULL are false. */
static int
myc_true(const char *v)
{
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/* Pick the attributes we know out of c->extra; the rest (mysql_enable_utf8,
 * mysql_connect_timeout: our deadline wins, ...) are ignored.  DBD::MariaDB
 * (RT's driver for DatabaseType MariaDB) spells them mariadb_*. */
static void
myc_parse_extra(const he_db_config *c, myc_opts *o)
{
    size_t i;

    memset(o, 0, sizeof(*o));
    for (i = 0; i < c->n_extra; i++) {
        const char *k = c->extra[i].key, *v = c->extra[i].value;
        char name[64];

        if (k == NULL || v == NULL)
            continue;
        if (strncmp(k, "mariadb_", 8) == 0) {
            snprintf(name, sizeof name, "mysql_%s", k + 8);
            k = name;
        }
        if (strcmp(k, "mysql_socket") == 0)
            o->socket = *v ? v : NULL;
        else if (strcmp(k, "mysql_ssl") == 0)
            o->ssl = myc_true(v);
        else if (strcmp(k, "mysql_ssl_optional") == 0)
            o->ssl_optional = myc_true(v);
        else if (strcmp(k, "mysql_ssl_verify_server_cert") == 0)
            o->verify = myc_true(v);
        else if (strcmp(k, "mysql_compression") == 0)
            o->compress = myc_true(v);
        else if (strcmp(k, "mysql_ssl_client_key") == 0)
            o->key = v;
        else if (strcmp(k, "mysql_ssl_client_cert") == 0)
            o->cert = v;
        else if (strcmp(k, "mysql_ssl_ca_file") == 0)
            o->ca = v;
        else if (strcmp(k, "mysql_ssl_ca_path") == 0)
            o->capath = v;
        else if (strcmp(k, "mysql_ssl_cipher") == 0)
            o->cipher = v;
    }
}

/*
 * TLS mode for mysql_ssl=1, chosen as DBD::mysql 4.05x does, so that the
 * check connects the way RT does:
 *   MariaDB Connector/C: MYSQL_OPT_SSL_ENFORCE alone falls back to clear
 *     text when the server has no TLS; DBD::mysql (and we) enforce with
 *     MYSQL_OPT_SSL_VERIFY_SERVER_CERT, unless mysql_ssl_optional.
 *   libmysqlclient >= 5.7.11: MYSQL_OPT_SSL_MODE, PREFERRED if optional,
 *     VERIFY_IDENTITY if verify, VERIFY_CA with a CA, else REQUIRED.
 * Returns 0, or -1 when the library refuses or cannot enforce TLS.
 */
static int
myc_set_ssl_mode(MYSQL *m, const myc_opts *o)
{
#if defined(HE_MARIADB)
    my_bool on = 1;

    if (mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &on) != 0)
        return -1;
    if ((o->verify || !o->ssl_optional)
        && mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on) != 0)
        return -1;
    return 0;
#elif defined(HE_MYSQL_SSL_MODE)
    unsigned int mode = SSL_MODE_REQUIRED;

    if (o->ssl_optional)
        mode = SSL_MODE_PREFERRED;
    else if (o->verify)
        mode = SSL_MODE_VERIFY_IDENTITY;
    else if (o->ca || o->capath)
        mode = SSL_MODE_VERIFY_CA;
    return mysql_options(m, MYSQL_OPT_SSL_MODE, &mode) ? -1 : 0;
#else
    (void)m;
    return o->ssl_optional ? 0 : -1;    /* too old to enforce TLS */
#endif
}

/* TLS options.  Without mysql_ssl the mysql_ssl_* keys are ignored and,
 * where the library can say so, TLS is off, as in DBD::mysql.  0 or -1. */
static int
myc_set_ssl(MYSQL *m, const myc_opts *o)
{
    if (!o->ssl) {
#ifdef HE_MYSQL_SSL_MODE
        unsigned int mode = SSL_MODE_DISABLED;

        mysql_options(m, MYSQL_OPT_SSL_MODE, &mode);
#endif
        return 0;
    }
    if ((o->key && mysql_options(m, MYSQL_OPT_SSL_KEY, o->key))
        || (o->cert && mysql_options(m, MYSQL_OPT_SSL_CERT, o->cert))
        || (o->ca && mysql_options(m, MYSQL_OPT_SSL_CA, o->ca))
        || (o->capath && mysql_options(m, MYSQL_OPT_SSL_CAPATH, o->capath))
        || (o->cipher && mysql_options(m, MYSQL_OPT_SSL_CIPHER, o->cipher)))
        return -1;
    return myc_set_ssl_mode(m, o);
}

/*
 * Set every option before connecting: the library's own timeouts (whole
 * seconds left, rounded up, at least 1), compression, TLS, and on the
 * MariaDB path non-blocking mode.  HE_OK or HE_FAIL with err set.
 */
static he_result
myc_set_options(MYSQL *m, const myc_opts *o, double deadline,
                char *err, size_t errlen)
{
    unsigned int secs = (unsigned int)(he_time_left_ms(deadline) + 999) / 1000;

    if (secs < 1)
        secs = 1;
    if (mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &secs)
        || mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &secs)
        || mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &secs)) {
        snprintf(err, errlen, "connect: cannot set timeouts: %s",
                 mysql_error(m));
        return HE_FAIL;
    }
    if (o->compress && mysql_options(m, MYSQL_OPT_COMPRESS, NULL)) {
        snprintf(err, errlen, "connect: mysql_compression: %s",
                 mysql_error(m));
        return HE_FAIL;
    }
    if (myc_set_ssl(m, o) != 0) {
        snprintf(err, errlen, "connect: mysql_ssl: this client library "
                 "refused the TLS options: %s", mysql_error(m));
        return HE_FAIL;
    }
#ifdef HE_MYSQL_ASYNC
    if (mysql_options(m, MYSQL_OPT_NONBLOCK, NULL) != 0) {
        snprintf(err, errlen, "connect: cannot enable non-blocking mode: %s",
                 mysql_error(m));
        return HE_FAIL;
    }
#endif
    return HE_OK;
}

/* 1 if connecting to host starts with a name lookup. */
static int
myc_is_name(const char *host)
{
    unsigned char buf[16];

    return strcmp(host, "localhost") != 0
        && inet_pton(AF_INET, host, buf) != 1
        && inet_pton(AF_INET6, host, buf) != 1;
}

/* c->port as a number; NULL or "" is 0 (library default).  0 or -1. */
static int
myc_port(const char *s, unsigned int *out)
{
    char *end;
    unsigned long v;

    *out = 0;
    if (s == NULL || *s == '\0')
        return 0;
    errno = 0;
    v = strtoul(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > 65535 || *s == '-' || *s == '+')
        return -1;
    *out = (unsigned int)v;
    return 0;
}

/* Fill err for a failed step: "timed out after ..." (w == 0), a poll error
 * (w < 0) or the library's message. */
static void
myc_set_error(MYSQL *m, int w, const char *what, double start,
              char *err, size_t errlen)
{
    if (w != 1)
        he_time_wait_error(w, what, start, err, errlen);
    else
        snprintf(err, errlen, "%s: %s", what, mysql_error(m));
}

#ifdef HE_MYSQL_ASYNC

enum { MYC_OP_CONNECT, MYC_OP_QUERY, MYC_OP_STORE };

/* Map poll()'s revents to MYSQL_WAIT_* for the library.  An error or
 * hang-up is reported as whatever was waited for, so the library's next
 * read or write sees it. */
static int
myc_events(short revents, int status)
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
myc_wait(MYSQL *m, int status, double deadline)
{
    struct pollfd p;
    double until = deadline, lib;
    int lib_first = 0, ms, r;

    if (status & MYSQL_WAIT_TIMEOUT) {
        lib = he_time_now() + mysql_get_timeout_value_ms(m) / 1000.0;
        if (lib < deadline) {
            until = lib;
            lib_first = 1;
        }
    }
    p.events = 0;
    if (status & MYSQL_WAIT_READ)
        p.events |= POLLIN;
    if (status & MYSQL_WAIT_WRITE)
        p.events |= POLLOUT;
    if (status & MYSQL_WAIT_EXCEPT)
        p.events |= POLLPRI;
    p.fd = p.events ? (int)mysql_get_socket(m) : -1;
    for (;;) {
        ms = he_time_left_ms(until);
        if (ms == 0)
            return lib_first ? MYSQL_WAIT_TIMEOUT : 0;
        p.revents = 0;
        r = poll(&p, 1, ms);
        if (r > 0)
            return myc_events(p.revents, status);
        if (r < 0 && errno != EINTR)
            return -1;
    }
}

/* Resume operation op; ret points to its result variable. */
static int
myc_cont(MYSQL *m, int op, void *ret, int ev)
{
    switch (op) {
    case MYC_OP_CONNECT:
        return mysql_real_connect_cont((MYSQL **)ret, m, ev);
    case MYC_OP_QUERY:
        return mysql_real_query_cont((int *)ret, m, ev);
    default:
        return mysql_store_result_cont((MYSQL_RES **)ret, m, ev);
    }
}

/*
 * Drive a started operation (status: what its _start returned) to its end.
 * Returns 1 done (*ret holds the result), 0 deadline passed, -1 poll
 * error.  On 0/-1 the connection is shut down with mariadb_cancel() so
 * that mysql_close() cannot block; the suspended operation is then
 * discarded by mysql_close().
 */
static int
myc_drive(MYSQL *m, int op, void *ret, int status, double deadline)
{
    int ev;

    while (status != 0) {
        ev = myc_wait(m, status, deadline);
        if (ev <= 0) {
#ifdef LIBMARIADB
            mariadb_cancel(m);
#endif
            return ev;
        }
        status = myc_cont(m, op, ret, ev);
    }
    return 1;
}

/* Connect: MYSQL * from the library on success, NULL otherwise.  1, 0 or
 * -1 as myc_drive. */
static int
myc_connect_op(MYSQL *m, const he_db_config *c, const char *host,
               unsigned int port, const char *sock, MYSQL **ret,
               double deadline)
{
    int st = mysql_real_connect_start(ret, m, host, c->user, c->password,
                                      c->name, port, sock, 0);

    return myc_drive(m, MYC_OP_CONNECT, ret, st, deadline);
}

/* Send the query: *ret is mysql_real_query's result.  1, 0 or -1. */
static int
myc_query_op(MYSQL *m, const char *q, int *ret, double deadline)
{
    int st = mysql_real_query_start(ret, m, q, (unsigned long)strlen(q));

    return myc_drive(m, MYC_OP_QUERY, ret, st, deadline);
}

/* Read the result set: *ret as mysql_store_result.  1, 0 or -1. */
static int
myc_store_op(MYSQL *m, MYSQL_RES **ret, double deadline)
{
    int st = mysql_store_result_start(ret, m);

    return myc_drive(m, MYC_OP_STORE, ret, st, deadline);
}

#else /* blocking: the library's timeouts are the only bound */

/* After a blocking call: 0 if the deadline has passed, else 1. */
static int
myc_in_time(double deadline)
{
    return he_time_now() < deadline;
}

static int
myc_connect_op(MYSQL *m, const he_db_config *c, const char *host,
               unsigned int port, const char *sock, MYSQL **ret,
               double deadline)
{
    *ret = mysql_real_connect(m, host, c->user, c->password, c->name, port,
                              sock, 0);
    return *ret == NULL ? myc_in_time(deadline) : 1;
}

static int
myc_query_op(MYSQL *m, const char *q, int *ret, double deadline)
{
    *ret = mysql_real_query(m, q, (unsigned long)strlen(q));
    return *ret != 0 ? myc_in_time(deadline) : 1;
}

static int
myc_store_op(MYSQL *m, MYSQL_RES **ret, double deadline)
{
    *ret = mysql_store_result(m);
    return *ret == NULL ? myc_in_time(deadline) : 1;
}

#endif /* HE_MYSQL_ASYNC */

/* Connect with c and o.  HE_OK or HE_FAIL with err set. */
static he_result
myc_connect(MYSQL *m, const he_db_config *c, const myc_opts *o,
            double deadline, double start, char *err, size_t errlen)
{
    const char *host = (c->host && *c->host) ? c->host : NULL;
    unsigned int port;
    MYSQL *ret = NULL;
    int w;

    if (myc_port(c->port, &port) != 0) {
        snprintf(err, errlen, "connect: invalid port '%s'", c->port);
        return HE_FAIL;
    }
    w = myc_connect_op(m, c, host, port, o->socket, &ret, deadline);
    if (w != 1 || ret == NULL) {
        myc_set_error(m, w, "connect", start, err, errlen);
        return HE_FAIL;
    }
    if (o->ssl && !o->ssl_optional && mysql_get_ssl_cipher(m) == NULL) {
        snprintf(err, errlen, "connect: mysql_ssl=1 but the connection "
                 "is not encrypted");
        return HE_FAIL;
    }
    return HE_OK;
}

/* Run SELECT 1 on the connection and check the answer.  The result set is
 * freed here.  HE_OK or HE_FAIL with err set. */
static he_result
myc_query(MYSQL *m, double deadline, double start, char *err, size_t errlen)
{
    MYSQL_RES *res = NULL;
    MYSQL_ROW row;
    he_result r = HE_FAIL;
    int q = 1, w;

    w = myc_query_op(m, "SELECT 1", &q, deadline);
    if (w != 1 || q != 0) {
        myc_set_error(m, w, "query", start, err, errlen);
        return HE_FAIL;
    }
    w = myc_store_op(m, &res, deadline);
    if (w != 1 || res == NULL) {
        myc_set_error(m, w, "query", start, err, errlen);
        goto cleanup;
    }
    row = mysql_fetch_row(res);         /* stored result: no I/O */
    if (row == NULL || mysql_num_fields(res) != 1 || row[0] == NULL
        || strcmp(row[0], "1") != 0) {
        snprintf(err, errlen, "query: unexpected result from SELECT 1");
        goto cleanup;
    }
    r = HE_OK;

cleanup:
    if (res != NULL)
        mysql_free_result(res);
    return r;
}

/*
 * he_mysql_check - see he.h.  Runs in a run's child process; the library
 * is set up there (he_mysql_global_init) and the connection closed before
 * the child exits.
 */
he_result
he_mysql_check(const he_db_config *c, he_probe *p)
{
    double deadline = p->deadline, start = p->start;
    char *err = p->err;
    size_t errlen = p->errlen;
    MYSQL *m;
    myc_opts o;
    he_result r;

    he_mysql_global_init();
    mysql_thread_init();
    m = mysql_init(NULL);
    if (m == NULL) {
        snprintf(err, errlen, "connect: out of memory");
        r = HE_FAIL;
        goto cleanup;
    }
    myc_parse_extra(c, &o);
    r = myc_set_options(m, &o, deadline, err, errlen);
    he_probe_phase(p, c->host && *c->host && myc_is_name(c->host)
                      ? HE_PHASE_RESOLVING : HE_PHASE_CONNECTING);
    if (r == HE_OK)
        r = myc_connect(m, c, &o, deadline, start, err, errlen);
    he_probe_phase(p, HE_PHASE_QUERYING);
    if (r == HE_OK)
        r = myc_query(m, deadline, start, err, errlen);

cleanup:
    if (m != NULL)
        mysql_close(m);
    mysql_thread_end();
    return r;
}

/* Once per process, before the first connection. */
void
he_mysql_global_init(void)
{
    static int done;

    if (!done) {
        mysql_library_init(0, NULL, NULL);
        done = 1;
    }
}

#else /* !HE_WITH_MYSQL */

void
he_mysql_global_init(void)
{
}

#endif /* HE_WITH_MYSQL */
