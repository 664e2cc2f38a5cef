/*
 * he_mysql.c - MySQL/MariaDB check, the common part: DBD::mysql's DSN
 * attributes, the client options (TLS in the library's own terms), the
 * target, error text, the answer to SELECT 1, set-up and clean-up.
 *
 * he_mysql_check() itself, which connects, queries and closes, is in
 * he_mysql_async.c (MariaDB Connector/C's non-blocking API, every wait
 * bounded by the deadline) or he_mysql_blocking.c (Oracle's
 * libmysqlclient, whose blocking calls get the library's own timeouts);
 * he_mysql.h says which is built.
 *
 * Built only with -DHE_WITH_MYSQL; he_mysql_global_init() always exists.
 */
#include "he.h"

#ifdef HE_WITH_MYSQL

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "he_mysql.h"

/* ---- DSN attributes ----------------------------------------------------- */

/* Perl truth of a DSN value: "", "0" and NULL are false. */
static int
he_mysql_true(const char *v)
{
    return v != NULL && *v != '\0' && strcmp(v, "0") != 0;
}

/* One attribute, named as DBD::mysql does (mysql_...). */
static void
he_mysql_attribute(he_mysql_opts *o, const char *k, const char *v)
{
    if (strcmp(k, "mysql_socket") == 0)
        o->socket = *v ? v : NULL;
    else if (strcmp(k, "mysql_ssl") == 0)
        o->ssl = he_mysql_true(v);
    else if (strcmp(k, "mysql_ssl_optional") == 0)
        o->ssl_optional = he_mysql_true(v);
    else if (strcmp(k, "mysql_ssl_verify_server_cert") == 0)
        o->verify = he_mysql_true(v);
    else if (strcmp(k, "mysql_compression") == 0)
        o->compress = he_mysql_true(v);
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

/* Pick the attributes we know out of c->extra; the rest (mysql_enable_utf8,
 * mysql_connect_timeout: our deadline wins, ...) are ignored.  DBD::MariaDB
 * (RT's driver for DatabaseType MariaDB) spells them mariadb_*. */
static void
he_mysql_parse_extra(const he_db_config *c, he_mysql_opts *o)
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
        he_mysql_attribute(o, k, v);
    }
}

/* ---- TLS, in the client library's terms ------------------------------- */

/*
 * mysql_ssl=1 is enforced as DBD::mysql 4.05x does, so that the check
 * connects the way RT does.  Each client library has its own options;
 * one pair of functions per library:
 *   he_mysql_tls_off()      without mysql_ssl: TLS off where the library
 *                           can say so
 *   he_mysql_tls_enforce()  with mysql_ssl: 0, or -1 when the library
 *                           refuses or cannot enforce TLS
 * The option names are enum constants, not macros, in both libraries: the
 * choice goes by library and version.
 */
#if defined(HE_MYSQL_MARIADB)

/* MariaDB Connector/C: TLS only when asked for.  MYSQL_OPT_SSL_ENFORCE
 * alone falls back to clear text when the server has no TLS; DBD::mysql
 * (and we) enforce with MYSQL_OPT_SSL_VERIFY_SERVER_CERT, unless
 * mysql_ssl_optional. */
static void
he_mysql_tls_off(MYSQL *m)
{
    (void)m;
}

static int
he_mysql_tls_enforce(MYSQL *m, const he_mysql_opts *o)
{
    my_bool on = 1;

    if (mysql_options(m, MYSQL_OPT_SSL_ENFORCE, &on) != 0)
        return -1;
    if ((o->verify || !o->ssl_optional)
        && mysql_options(m, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &on) != 0)
        return -1;
    return 0;
}

#elif defined(MYSQL_VERSION_ID) && MYSQL_VERSION_ID >= 50711

/* libmysqlclient 5.7.11 and later, 8.x included (where MYSQL_OPT_SSL_MODE
 * is the only way: SSL_ENFORCE, SSL_VERIFY_SERVER_CERT and my_bool are
 * gone): PREFERRED if optional, VERIFY_IDENTITY if verify, VERIFY_CA with
 * a CA, else REQUIRED.  It negotiates TLS by itself unless told not to. */
static void
he_mysql_tls_off(MYSQL *m)
{
    unsigned int mode = SSL_MODE_DISABLED;

    mysql_options(m, MYSQL_OPT_SSL_MODE, &mode);
}

static int
he_mysql_tls_enforce(MYSQL *m, const he_mysql_opts *o)
{
    unsigned int mode = SSL_MODE_REQUIRED;

    if (o->ssl_optional)
        mode = SSL_MODE_PREFERRED;
    else if (o->verify)
        mode = SSL_MODE_VERIFY_IDENTITY;
    else if (o->ca || o->capath)
        mode = SSL_MODE_VERIFY_CA;
    return mysql_options(m, MYSQL_OPT_SSL_MODE, &mode) ? -1 : 0;
}

#else

/* Older libmysqlclient: no way to enforce TLS; only mysql_ssl_optional
 * can be honoured. */
static void
he_mysql_tls_off(MYSQL *m)
{
    (void)m;
}

static int
he_mysql_tls_enforce(MYSQL *m, const he_mysql_opts *o)
{
    (void)m;
    return o->ssl_optional ? 0 : -1;
}

#endif

/* The TLS options: the mysql_ssl_* files, then the mode.  Without
 * mysql_ssl the mysql_ssl_* keys are ignored, as in DBD::mysql.  0 or
 * -1. */
static int
he_mysql_set_tls(MYSQL *m, const he_mysql_opts *o)
{
    if (!o->ssl) {
        he_mysql_tls_off(m);
        return 0;
    }
    if ((o->key && mysql_options(m, MYSQL_OPT_SSL_KEY, o->key))
        || (o->cert && mysql_options(m, MYSQL_OPT_SSL_CERT, o->cert))
        || (o->ca && mysql_options(m, MYSQL_OPT_SSL_CA, o->ca))
        || (o->capath && mysql_options(m, MYSQL_OPT_SSL_CAPATH, o->capath))
        || (o->cipher && mysql_options(m, MYSQL_OPT_SSL_CIPHER, o->cipher)))
        return -1;
    return he_mysql_tls_enforce(m, o);
}

/* ---- options, target ---------------------------------------------------- */

/* The library's reason, or a word for its silence (mysql_options() and
 * an old library that cannot enforce TLS set none). */
static const char *
he_mysql_reason(MYSQL *m)
{
    const char *e = mysql_error(m);

    return *e ? e : "the library gives no reason";
}

/*
 * Every option before connecting: the library's own timeouts (whole
 * seconds left, rounded up, at least 1: on the blocking path the only
 * bound), compression, TLS.  HE_OK or HE_FAIL with p->err set.
 */
static he_result
he_mysql_set_options(MYSQL *m, const he_mysql_opts *o, he_probe *p)
{
    unsigned int secs =
        (unsigned int)(he_time_left_ms(p->deadline) + 999) / 1000;

    if (secs < 1)
        secs = 1;
    if (mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &secs)
        || mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &secs)
        || mysql_options(m, MYSQL_OPT_WRITE_TIMEOUT, &secs)) {
        snprintf(p->err, p->errlen, "connect: cannot set timeouts: %s",
                 he_mysql_reason(m));
        return HE_FAIL;
    }
    if (o->compress && mysql_options(m, MYSQL_OPT_COMPRESS, NULL)) {
        snprintf(p->err, p->errlen, "connect: mysql_compression: %s",
                 he_mysql_reason(m));
        return HE_FAIL;
    }
    if (he_mysql_set_tls(m, o) != 0) {
        snprintf(p->err, p->errlen, "connect: mysql_ssl: this client library "
                 "refused the TLS options: %s", he_mysql_reason(m));
        return HE_FAIL;
    }
    return HE_OK;
}

/* c->port as a number; NULL or "" is 0 (library default).  0 or -1. */
static int
he_mysql_port(const char *s, unsigned int *out)
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

/* Where c and o say to connect.  HE_OK, or HE_FAIL for a bad port. */
static he_result
he_mysql_set_target(const he_db_config *c, const he_mysql_opts *o,
                    he_mysql_target *t, he_probe *p)
{
    t->host = (c->host && *c->host) ? c->host : NULL;
    t->socket = o->socket;
    if (he_mysql_port(c->port, &t->port) != 0) {
        snprintf(p->err, p->errlen, "connect: invalid port '%s'", c->port);
        return HE_FAIL;
    }
    return HE_OK;
}

/* ---- set-up and clean-up ------------------------------------------------ */

he_result
he_mysql_begin(MYSQL **m, const he_db_config *c, he_mysql_opts *o,
               he_mysql_target *t, he_probe *p)
{
    he_mysql_global_init();
    mysql_thread_init();
    he_mysql_parse_extra(c, o);
    *m = mysql_init(NULL);
    if (*m == NULL) {
        snprintf(p->err, p->errlen, "connect: out of memory");
        return HE_FAIL;
    }
    if (he_mysql_set_target(c, o, t, p) != HE_OK)
        return HE_FAIL;
    return he_mysql_set_options(*m, o, p);
}

void
he_mysql_end(MYSQL *m)
{
    if (m != NULL)
        mysql_close(m);
    mysql_thread_end();
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

/* ---- the steps' outcomes ------------------------------------------------ */

he_phase
he_mysql_connect_phase(const he_db_config *c)
{
    unsigned char buf[16];
    const char *h = c->host;

    if (h == NULL || *h == '\0' || strcmp(h, "localhost") == 0
        || inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1)
        return HE_PHASE_CONNECTING;
    return HE_PHASE_RESOLVING;
}

he_result
he_mysql_fail(MYSQL *m, int w, const char *what, he_probe *p)
{
    if (w != 1)
        he_time_wait_error(w, what, p->start, p->err, p->errlen);
    else
        snprintf(p->err, p->errlen, "%s: %s", what, mysql_error(m));
    return HE_FAIL;
}

he_result
he_mysql_connected(MYSQL *m, const he_mysql_opts *o, he_probe *p)
{
    if (o->ssl && !o->ssl_optional && mysql_get_ssl_cipher(m) == NULL) {
        snprintf(p->err, p->errlen, "connect: mysql_ssl=1 but the "
                 "connection is not encrypted");
        return HE_FAIL;
    }
    return HE_OK;
}

he_result
he_mysql_answer(MYSQL_RES *res, he_probe *p)
{
    MYSQL_ROW row;
    he_result r = HE_OK;

    if (res == NULL) {
        snprintf(p->err, p->errlen, "query: no result set");
        return HE_FAIL;
    }
    row = mysql_fetch_row(res);         /* a stored result: no I/O */
    if (row == NULL || mysql_num_fields(res) != 1 || row[0] == NULL
        || strcmp(row[0], "1") != 0) {
        snprintf(p->err, p->errlen, "query: unexpected result from "
                 HE_MYSQL_QUERY);
        r = HE_FAIL;
    }
    mysql_free_result(res);
    return r;
}

#else /* !HE_WITH_MYSQL */

void
he_mysql_global_init(void)
{
}

#endif /* HE_WITH_MYSQL */
