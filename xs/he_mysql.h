/*
 * he_mysql.h - what the three files of the MySQL/MariaDB check share.
 *
 *   he_mysql.c           the common part: DSN attributes, options (TLS
 *                        in the client library's own terms), the target,
 *                        error text, the answer to SELECT 1, set-up and
 *                        clean-up, he_mysql_global_init()
 *   he_mysql_async.c     he_mysql_check() with MariaDB Connector/C's
 *                        non-blocking API (mysql_*_start/_cont + poll)
 *   he_mysql_blocking.c  he_mysql_check() with the blocking calls of
 *                        Oracle's libmysqlclient (or of any library with
 *                        -DHE_MYSQL_BLOCKING)
 *
 * Exactly one of the last two defines he_mysql_check(); the other
 * compiles to nothing.  Private to these files: nothing here is in he.h.
 * Used only with -DHE_WITH_MYSQL.
 */
#ifndef HE_MYSQL_H
#define HE_MYSQL_H

#include <mysql.h>

#include "he.h"

/* Which client library.  MariaDB Connector/C defines one of these in
 * mysql.h; Oracle's libmysqlclient defines none.  (MYSQL_VERSION_ID does
 * not tell them apart: MariaDB's is its server version, 101119 for
 * 10.11.19, above MySQL 8's 80027.) */
#if defined(MARIADB_BASE_VERSION) || defined(MARIADB_PACKAGE_VERSION) \
    || defined(LIBMARIADB)
#define HE_MYSQL_MARIADB 1
#endif

/* Only MariaDB Connector/C has the non-blocking API. */
#if defined(HE_MYSQL_MARIADB) && !defined(HE_MYSQL_BLOCKING)
#define HE_MYSQL_ASYNC 1
#endif

/* DBD::mysql DSN attributes from %DatabaseExtraDSN that matter here. */
typedef struct {
    const char *socket;                 /* mysql_socket */
    int ssl;                            /* mysql_ssl: use TLS */
    int ssl_optional;                   /* mysql_ssl_optional: may fall back */
    int verify;                         /* mysql_ssl_verify_server_cert */
    int compress;                       /* mysql_compression */
    const char *key, *cert, *ca, *capath, *cipher;  /* mysql_ssl_* files */
} he_mysql_opts;

/* Where to connect: NULL host/socket and port 0 are the library's
 * defaults. */
typedef struct {
    const char *host;
    unsigned int port;
    const char *socket;
} he_mysql_target;

/*
 * Set up for one check: the library (once per process) and this thread,
 * a handle in *m (NULL when out of memory), c's DSN attributes in *o, the
 * target in *t, and every option (timeouts, compression, TLS).  HE_OK,
 * or HE_FAIL with p->err set.  Whatever it returns, he_mysql_end(*m)
 * cleans up.
 */
he_result he_mysql_begin(MYSQL **m, const he_db_config *c, he_mysql_opts *o,
                         he_mysql_target *t, he_probe *p);

/* Close the handle (NULL is fine) and end the library's thread state. */
void he_mysql_end(MYSQL *m);

/* The phase a connect to c starts in: resolving for a host name,
 * connecting otherwise. */
he_phase he_mysql_connect_phase(const he_db_config *c);

/* After a failed step: w == 1 the library's message ("what: message"),
 * w == 0 "timed out after ... during what", w < 0 the poll error.
 * Returns HE_FAIL. */
he_result he_mysql_fail(MYSQL *m, int w, const char *what, he_probe *p);

/* After a connect that succeeded: HE_FAIL (with p->err) if mysql_ssl=1
 * asked for TLS and the connection is not encrypted, else HE_OK. */
he_result he_mysql_connected(MYSQL *m, const he_mysql_opts *o, he_probe *p);

/* The stored result of SELECT 1 is one field holding "1": HE_OK, or
 * HE_FAIL with p->err set.  Frees res. */
he_result he_mysql_answer(MYSQL_RES *res, he_probe *p);

/* The query the check runs, and its length. */
#define HE_MYSQL_QUERY "SELECT 1"
#define HE_MYSQL_QUERY_LEN ((unsigned long)(sizeof HE_MYSQL_QUERY - 1))

#endif /* HE_MYSQL_H */
