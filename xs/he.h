/*
 * he.h - shared types and prototypes of RT-Extension-HealthEndpoint's C core.
 *
 * Nothing here includes perl.h: the C files compile, test and fuzz on their
 * own.  Public names are he_<area>_<verb>; everything else is static.
 *
 * Conventions
 *   - Deadlines are absolute times on the monotonic clock, in seconds
 *     (he_time_now()).  Every network call is bounded by the deadline.
 *   - Checks return an he_result and, on HE_FAIL, write a NUL-terminated
 *     reason into the caller's buffer (err, errlen >= 1).  The reason is for
 *     the server log only and never reaches an HTTP client.
 *   - Strings in config structs are owned (malloc'd) by the struct and freed
 *     by he_config_free().
 */
#ifndef HE_H
#define HE_H

#include <stddef.h>

#define HE_ERRLEN 512                   /* size of a check's error buffer */

typedef enum {
    HE_OK = 0,
    HE_FAIL = 1,
    HE_SKIPPED = 2
} he_result;

/* ---- time and I/O (he_time.c) ---------------------------------------- */

double he_time_now(void);               /* monotonic clock, seconds */

/* Wait until fd is readable (want_write == 0) or writable (want_write != 0)
 * or the deadline passes.  Returns 1 ready, 0 deadline passed, -1 error
 * (errno set).  Retries on EINTR. */
int he_time_wait_fd(int fd, int want_write, double deadline);

/* Remaining time until deadline in whole milliseconds, >= 0. */
int he_time_left_ms(double deadline);

/* The reason for a failed he_time_wait_fd (w = its result, 0 or -1) while
 * doing what: "timed out after 1.001 s during connect" or "connect: poll:
 * <errno text>".  start: when the check began. */
void he_time_wait_error(int w, const char *what, double start,
                        char *err, size_t errlen);

/* ---- configuration (he_config.c, he_options.c) ------------------------ */

#include "he_parse.h"

#define HE_DEFAULT_PING "/healthz/ping"
#define HE_DEFAULT_STATUS "/healthz/status"
#define HE_DEFAULT_NAMESPACE "/healthz"   /* with the two default paths */
#define HE_DEFAULT_TIMEOUT 2.0
#define HE_DEFAULT_CACHE 1.0
#define HE_REDIS_PORT 6379
#define HE_SENTINEL_PORT 26379

typedef enum {
    HE_DB_NONE = 0,                     /* no/unknown type: check fails */
    HE_DB_PG,
    HE_DB_MYSQL,                        /* mysql and MariaDB */
    HE_DB_SQLITE,
    HE_DB_CALLBACK                      /* Oracle: done in Perl through DBI */
} he_db_kind;

typedef struct {
    char *key;
    char *value;
} he_kv;

typedef struct {
    he_db_kind kind;
    char *type;                         /* as configured, for messages */
    char *host;                         /* NULL: library default (socket) */
    char *port;                         /* NULL: library default */
    char *name;                         /* db name; SQLite: absolute path */
    char *user;                         /* NULL: library default */
    char *password;                     /* NULL: none */
    char *require_table;                /* SQLite: must exist (RT: Tickets) */
    he_kv *extra;                       /* %DatabaseExtraDSN, in order */
    size_t n_extra;
} he_db_config;

typedef struct {
    int enabled;                        /* 0: reported as skipped */
    int invalid;                        /* bad server setting: fail */
    he_hostport server;                 /* default 127.0.0.1:6379 */
    char *sock;                         /* unix socket path; wins over server */
    char *username;                     /* ACL user; NULL: AUTH <password> */
    char *password;                     /* NULL: no AUTH */
    int database;                       /* -1: no SELECT */
    he_hostport *sentinels;             /* ask these for the master */
    size_t n_sentinels;
    char *service;                      /* sentinel master name */
} he_redis_config;

typedef struct {
    char *ping_path;
    size_t ping_len;
    char *status_path;
    size_t status_len;
    char *namespace;                    /* claimed directory, or NULL */
    size_t namespace_len;
    int namespace_set;                  /* configured (else: the default) */
    double timeout;                     /* seconds, > 0 */
    double cache_seconds;               /* >= 0; 0: no caching */
    he_db_config db;
    he_redis_config redis;
    int allow_set;                      /* an allowlist was configured */
    he_cidr *allow;                     /* allow_set and 0 entries: nobody */
    size_t n_allow;
} he_config;

typedef enum {
    HE_LOG_ERROR = 0,
    HE_LOG_WARNING,
    HE_LOG_INFO
} he_level;

/* Called with one complete message per finding. */
typedef void (*he_warn_fn)(void *ctx, he_level level, const char *msg);

void he_config_init(he_config *c);      /* defaults; never fails */
void he_config_free(he_config *c);

/* A whole copy (a Perl thread's clone).  When memory runs out the copy
 * fails closed: an allowlist becomes "nobody", a string NULL. */
void he_config_copy(he_config *to, const he_config *from);

/* Apply one option.  An invalid value is reported through warn (naming the
 * option and the value) and the default is kept.  Keys:
 *   ping_path status_path namespace timeout cache_seconds
 *   db.type db.host db.port db.name db.user db.password db.require_table
 *   db.extra.<key>
 *   redis_auto (0/1: what an unset or invalid check_redis means)
 *   check_redis redis.server redis.sock redis.username redis.password
 *   redis.database redis.sentinel (repeatable) redis.service
 *   allow_from (repeatable; each value a list separated by commas and
 *     blanks; NULL: configured, but not a usable value)
 * Returns 0 when applied, -1 when rejected (and warned). */
int he_config_set(he_config *c, const char *key, const char *value,
                  he_warn_fn warn, void *ctx);

/* Cross-option checks after all he_config_set calls (equal paths, the
 * namespace, an allowlist without a valid entry, a database type whose
 * backend is not built, ...).  Warns; never fails. */
void he_config_finish(he_config *c, he_warn_fn warn, void *ctx);

/* 1 if the client address (text, v4 or v6) may call the endpoints: no
 * allowlist configured, or inside one of its entries. */
int he_config_addr_allowed(const he_config *c, const char *addr, size_t len);

/* ---- one check's run (he_time.c) ----------------------------------- */

/* Where a check is: published in the shared state while it runs, so that
 * a reader past the deadline can say what was under way. */
typedef enum {
    HE_PHASE_IDLE = 0,
    HE_PHASE_STARTING,
    HE_PHASE_RESOLVING,
    HE_PHASE_CONNECTING,
    HE_PHASE_AUTHENTICATING,
    HE_PHASE_QUERYING,
    HE_PHASE_DONE
} he_phase;

const char *he_phase_name(unsigned phase);   /* "connecting", ... */

/* What a backend gets: its deadline, where to say its phase, where to
 * write why it failed. */
typedef struct {
    double deadline;                    /* he_time_now() seconds */
    double start;                       /* when the check began */
    unsigned *phase;                    /* shared; NULL: not published */
    char *err;                          /* the reason on HE_FAIL */
    size_t errlen;                      /* >= 1 */
} he_probe;

void he_probe_phase(he_probe *p, he_phase phase);

/* ---- backends (he_pg.c, he_mysql.c, he_sqlite.c, he_redis.c) --------- */

/* Connect, authenticate and run one trivial query, all before the
 * deadline.  Opens and closes its own connection: nothing survives the
 * call.  They run only in a run's child process of the checker
 * (he_checker.c), which ignores SIGPIPE and is killed when overdue. */
he_result he_pg_check(const he_db_config *c, he_probe *p);
he_result he_mysql_check(const he_db_config *c, he_probe *p);
he_result he_sqlite_check(const he_db_config *c, he_probe *p);
/* Connect (through the sentinels if configured), AUTH, SELECT, PING. */
he_result he_redis_check(const he_redis_config *c, he_probe *p);

/* Library setup for the MySQL client, once per process before a check
 * (the run child calls it). */
void he_mysql_global_init(void);

/* For HE_DB_CALLBACK (Oracle through DBI): runs in the run's child. */
typedef he_result (*he_db_callback)(void *ctx, double seconds_left,
                                    char *err, size_t errlen);

/* The answer to one status request. */
typedef struct {
    he_result db;
    he_result redis;
} he_status;

/* Names of the backends compiled in, e.g. "Pg mysql SQLite Redis". */
const char *he_checks_backends(void);

/* 1 if the backend for kind is compiled in (CALLBACK always is). */
int he_checks_have_db(he_db_kind kind);
int he_checks_have_redis(void);

/* A 64-bit hash of what the checks run with (database, Redis, timeout)
 * and the module version: two processes with the same hash run the same
 * checks. */
unsigned long long he_config_hash(const he_config *c, const char *version);

/* ---- routing and responses (he_route.c, he_response.c) --------------- */

typedef enum {
    HE_ROUTE_PASS = 0,                  /* not ours: call the wrapped app */
    HE_ROUTE_PING,
    HE_ROUTE_STATUS,
    HE_ROUTE_NOT_FOUND                  /* elsewhere in our namespace */
} he_route;

typedef enum {
    HE_METHOD_GET = 0,
    HE_METHOD_HEAD,
    HE_METHOD_OTHER
} he_method;

/* Exact byte comparison of PATH_INFO against the two configured paths,
 * then: is it the namespace or under it ("/healthz", "/healthz/x")? */
he_route he_route_match(const he_config *c, const char *path, size_t len);
he_method he_route_method(const char *m, size_t len);

typedef enum {                          /* which body: the fixed ones are */
    HE_BODY_PONG = 0,                   /* constants the glue can share */
    HE_BODY_FORBIDDEN,
    HE_BODY_NOT_ALLOWED,
    HE_BODY_NOT_FOUND,
    HE_BODY_STATUS                      /* the status JSON in buf */
} he_body;

/* Every answer is one of a small fixed set: the fixed bodies, or one of
 * the 3 x 3 status documents (database, Redis: ok, fail, skipped). */
#define HE_STATUS_VARIANTS 9

typedef struct {
    int status;                         /* 200, 403, 404, 405, 503 */
    he_body body_id;                    /* also says the content type */
    const char *content_type;
    const char *body;                   /* a constant: fixed, or one of the
                                           status documents */
    size_t body_len;                    /* Content-Length, also for HEAD */
    int send_body;                      /* 0 for HEAD */
    int allow_header;                   /* 1: add "Allow: GET, HEAD" */
    int variant;                        /* which of HE_STATUS_VARIANTS
                                           status bodies (else 0) */
} he_response;

/* Fill resp for a request routed to one of our paths.  st is only read for
 * HE_ROUTE_STATUS with GET/HEAD.  forbidden: the allowlist said no. */
void he_response_build(he_route route, he_method method, int forbidden,
                       const he_status *st, he_response *resp);

/* Writes the status JSON for (db, redis) into buf; returns its length. */
size_t he_response_status_json(he_result db, he_result redis,
                               char *buf, size_t buflen);

const char *he_result_name(he_result r); /* "ok" "fail" "skipped" */

#endif /* HE_H */
