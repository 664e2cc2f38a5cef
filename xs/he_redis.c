/*
 * he_redis.c - Redis check with hiredis (0.14 or later), non-blocking.
 *
 * Connect (directly, or to the master a Sentinel names), AUTH, SELECT,
 * PING.  hiredis 0.14 has no redisOptions, so the context is made with
 * redisConnect[Unix]NonBlock and driven by hand: redisBufferWrite /
 * redisBufferRead / redisGetReplyFromReader around he_time_wait_fd().
 *
 * Not bounded: redisConnectNonBlock resolves a host name with blocking
 * getaddrinfo().  hiredis 0.14 writes with write(2): a server that drops
 * the connection raises SIGPIPE, which he_checks.c keeps blocked on the
 * check threads (the only place this runs).
 *
 * Built only with -DHE_WITH_REDIS.
 */
#ifdef HE_WITH_REDIS

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <hiredis/hiredis.h>

#include "he.h"

#define RD_HOSTLEN 256                  /* a host name from a Sentinel */
#define RD_SUN_PATH sizeof(((struct sockaddr_un *)0)->sun_path)

#if defined(__GNUC__)
#define RD_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define RD_PRINTF(f, a)
#endif

static void rd_error(char *err, size_t errlen, const char *fmt, ...)
    RD_PRINTF(3, 4);

static void
rd_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/*
 * Open a non-blocking connection to sock (if not NULL) or host:port and
 * wait, within the deadline, until it is established.  On HE_OK *out is
 * the context (caller redisFree()s it); on HE_FAIL *out is NULL and err
 * is set.
 */
static he_result
rd_connect(const char *host, int port, const char *sock, double deadline,
           double start, redisContext **out, char *err, size_t errlen)
{
    redisContext *rc;
    char peer[RD_HOSTLEN + 16];
    int w, soerr = 0;
    socklen_t len = sizeof(soerr);
    he_result r = HE_FAIL;

    *out = NULL;
    if (sock == NULL && host == NULL) {
        rd_error(err, errlen, "connect: no server configured");
        return HE_FAIL;
    }
    if (sock != NULL && strlen(sock) >= RD_SUN_PATH) {  /* hiredis cuts it */
        rd_error(err, errlen, "connect %s: socket path too long", sock);
        return HE_FAIL;
    }
    if (sock != NULL)
        rd_error(peer, sizeof(peer), "connect %s", sock);
    else
        rd_error(peer, sizeof(peer), "connect %s:%d", host, port);
    rc = sock ? redisConnectUnixNonBlock(sock)
              : redisConnectNonBlock(host, port);
    if (rc == NULL) {
        rd_error(err, errlen, "%s: out of memory", peer);
        return HE_FAIL;
    }
    if (rc->err) {
        rd_error(err, errlen, "%s: %s", peer, rc->errstr);
        goto cleanup;
    }
    w = he_time_wait_fd(rc->fd, 1, deadline);
    if (w != 1) {
        he_time_wait_error(w, peer, start, err, errlen);
        goto cleanup;
    }
    if (getsockopt(rc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    if (soerr != 0) {
        rd_error(err, errlen, "%s: %s", peer, strerror(soerr));
        goto cleanup;
    }
    *out = rc;
    rc = NULL;
    r = HE_OK;

cleanup:
    if (rc != NULL)
        redisFree(rc);
    return r;
}

/* Write the output buffer out, within the deadline.  HE_OK or HE_FAIL. */
static he_result
rd_flush(redisContext *rc, const char *what, double deadline, double start,
         char *err, size_t errlen)
{
    int done = 0, w;

    for (;;) {
        if (redisBufferWrite(rc, &done) != REDIS_OK) {
            rd_error(err, errlen, "%s: %s", what, rc->errstr);
            return HE_FAIL;
        }
        if (done)
            return HE_OK;
        w = he_time_wait_fd(rc->fd, 1, deadline);
        if (w != 1) {
            he_time_wait_error(w, what, start, err, errlen);
            return HE_FAIL;
        }
    }
}

/* Read until one whole reply is parsed, within the deadline.  Returns the
 * reply (caller freeReplyObject()s it) or NULL with err set. */
static redisReply *
rd_read_reply(redisContext *rc, const char *what, double deadline,
              double start, char *err, size_t errlen)
{
    void *reply = NULL;
    int w;

    for (;;) {
        if (redisGetReplyFromReader(rc, &reply) != REDIS_OK) {
            rd_error(err, errlen, "%s: %s", what, rc->errstr);
            return NULL;
        }
        if (reply != NULL)
            return reply;
        w = he_time_wait_fd(rc->fd, 0, deadline);
        if (w != 1) {
            he_time_wait_error(w, what, start, err, errlen);
            return NULL;
        }
        if (redisBufferRead(rc) != REDIS_OK) {  /* EOF, I/O or protocol */
            rd_error(err, errlen, "%s: %s", what, rc->errstr);
            return NULL;
        }
    }
}

/*
 * Run one command (argv[0] names it in messages) within the deadline.
 * Returns the reply, never an error reply (caller freeReplyObject()s it),
 * or NULL with err set, e.g. "AUTH: WRONGPASS invalid username-password
 * pair" for the server's error, "PING: Server closed the connection".
 */
static redisReply *
rd_command(redisContext *rc, int argc, const char **argv, double deadline,
           double start, char *err, size_t errlen)
{
    redisReply *reply;

    if (redisAppendCommandArgv(rc, argc, argv, NULL) != REDIS_OK) {
        rd_error(err, errlen, "%s: %s", argv[0], rc->errstr);
        return NULL;
    }
    if (rd_flush(rc, argv[0], deadline, start, err, errlen) != HE_OK)
        return NULL;
    reply = rd_read_reply(rc, argv[0], deadline, start, err, errlen);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        rd_error(err, errlen, "%s: %.*s", argv[0], (int)reply->len,
                 reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* A reply type for messages. */
static const char *
rd_type_name(int type)
{
    switch (type) {
    case REDIS_REPLY_STRING:
        return "string";
    case REDIS_REPLY_ARRAY:
        return "array";
    case REDIS_REPLY_INTEGER:
        return "integer";
    case REDIS_REPLY_NIL:
        return "nil";
    case REDIS_REPLY_STATUS:
        return "status";
    case REDIS_REPLY_ERROR:
        return "error";
    default:
        return "unknown";
    }
}

/* Run a command that must answer with the status reply want (OK, PONG).
 * HE_OK or HE_FAIL with err set. */
static he_result
rd_status_command(redisContext *rc, int argc, const char **argv,
                  const char *want, double deadline, double start,
                  char *err, size_t errlen)
{
    redisReply *reply;
    he_result r = HE_OK;

    reply = rd_command(rc, argc, argv, deadline, start, err, errlen);
    if (reply == NULL)
        return HE_FAIL;
    if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, want) != 0) {
        rd_error(err, errlen, "%s: unexpected %s reply, expected %s",
                 argv[0], rd_type_name(reply->type), want);
        r = HE_FAIL;
    }
    freeReplyObject(reply);
    return r;
}

/* On a connected context: AUTH (if a password is set), SELECT (if a
 * database is set), PING.  HE_OK or HE_FAIL with err set. */
static he_result
rd_check_server(redisContext *rc, const he_redis_config *c, double deadline,
                double start, char *err, size_t errlen)
{
    const char *argv[3];
    char db[16];
    he_result r = HE_OK;

    if (c->password != NULL) {
        argv[0] = "AUTH";
        argv[1] = c->username ? c->username : c->password;
        argv[2] = c->password;
        r = rd_status_command(rc, c->username ? 3 : 2, argv, "OK", deadline,
                              start, err, errlen);
    }
    if (r == HE_OK && c->database >= 0) {
        snprintf(db, sizeof(db), "%d", c->database);
        argv[0] = "SELECT";
        argv[1] = db;
        r = rd_status_command(rc, 2, argv, "OK", deadline, start, err, errlen);
    }
    if (r == HE_OK) {
        argv[0] = "PING";
        r = rd_status_command(rc, 1, argv, "PONG", deadline, start, err,
                              errlen);
    }
    return r;
}

/* Connect to one server and check it.  HE_OK or HE_FAIL with err set. */
static he_result
rd_check_one(const char *host, int port, const char *sock,
             const he_redis_config *c, double deadline, double start,
             char *err, size_t errlen)
{
    redisContext *rc = NULL;
    he_result r;

    r = rd_connect(host, port, sock, deadline, start, &rc, err, errlen);
    if (r != HE_OK)
        return r;
    r = rd_check_server(rc, c, deadline, start, err, errlen);
    redisFree(rc);
    return r;
}

/* Take host and port out of a SENTINEL get-master-addr-by-name reply.
 * HE_OK or HE_FAIL with err set. */
static he_result
rd_parse_master(const redisReply *reply, const char *service,
                char *host, size_t hostlen, int *port,
                char *err, size_t errlen)
{
    const redisReply *h, *p;
    char *end;
    long v;

    if (reply->type == REDIS_REPLY_NIL) {
        rd_error(err, errlen, "unknown service %s", service);
        return HE_FAIL;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING) {
        rd_error(err, errlen, "unexpected %s reply for service %s",
                 rd_type_name(reply->type), service);
        return HE_FAIL;
    }
    h = reply->element[0];
    p = reply->element[1];
    errno = 0;
    v = strtol(p->str, &end, 10);
    if (h->len == 0 || h->len >= hostlen || errno != 0 || *end != '\0'
        || end == p->str || v < 1 || v > 65535) {
        rd_error(err, errlen, "bad master address for service %s", service);
        return HE_FAIL;
    }
    memcpy(host, h->str, h->len);
    host[h->len] = '\0';
    *port = (int)v;
    return HE_OK;
}

/*
 * Ask one Sentinel for the master of c->service.  On HE_OK host/port are
 * set; on HE_FAIL err says why, prefixed with the sentinel's address.
 */
static he_result
rd_ask_sentinel(const he_hostport *s, const char *service, double deadline,
                double start, char *host, size_t hostlen, int *port,
                char *err, size_t errlen)
{
    const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", service };
    char sub[HE_ERRLEN];
    redisContext *rc = NULL;
    redisReply *reply = NULL;
    he_result r;

    r = rd_connect(s->host, s->port, NULL, deadline, start, &rc,
                   sub, sizeof(sub));
    if (r != HE_OK)
        goto cleanup;
    reply = rd_command(rc, 3, argv, deadline, start, sub, sizeof(sub));
    if (reply == NULL) {
        r = HE_FAIL;
        goto cleanup;
    }
    r = rd_parse_master(reply, service, host, hostlen, port, sub, sizeof(sub));

cleanup:
    if (r != HE_OK)
        rd_error(err, errlen, "sentinel %s:%d: %s", s->host, s->port, sub);
    if (reply != NULL)
        freeReplyObject(reply);
    if (rc != NULL)
        redisFree(rc);
    return r;
}

/*
 * Find the master through the Sentinels, first answer wins, and check it.
 * A Sentinel that does not answer must not use up the whole deadline, so
 * each try gets an equal share of the time left, with one share kept back
 * for the master: 3 sentinels and 1 s give 0.25 s each at most.
 * HE_OK or HE_FAIL with err set.
 */
static he_result
rd_check_sentinels(const he_redis_config *c, double deadline, double start,
                   char *err, size_t errlen)
{
    char host[RD_HOSTLEN], last[HE_ERRLEN], sub[HE_ERRLEN];
    double now, share;
    int port = 0;
    size_t i;
    he_result r = HE_FAIL;

    snprintf(last, sizeof(last), "no sentinel configured");
    for (i = 0; i < c->n_sentinels && r != HE_OK; i++) {
        now = he_time_now();
        share = (deadline - now) / (double)(c->n_sentinels - i + 1);
        r = rd_ask_sentinel(&c->sentinels[i], c->service, now + share, start,
                            host, sizeof(host), &port, last, sizeof(last));
    }
    if (r != HE_OK) {
        rd_error(err, errlen, "no sentinel answered for service %s: %s",
                 c->service, last);
        return HE_FAIL;
    }
    r = rd_check_one(host, port, NULL, c, deadline, start, sub, sizeof(sub));
    if (r != HE_OK)
        rd_error(err, errlen, "master %s:%d of %s: %s", host, port,
                 c->service, sub);
    return r;
}

/*
 * he_redis_check - see he.h.  Every connection is opened and freed here.
 * With sentinels and a service the master they name is checked;
 * otherwise c->sock, or else c->server.
 */
he_result
he_redis_check(const he_redis_config *c, double deadline,
               char *err, size_t errlen)
{
    double start = he_time_now();

    if (c->n_sentinels > 0 && c->service != NULL)
        return rd_check_sentinels(c, deadline, start, err, errlen);
    return rd_check_one(c->server.host, c->server.port, c->sock, c,
                        deadline, start, err, errlen);
}

#else  /* !HE_WITH_REDIS */

typedef int he_redis_not_built;         /* keeps the unit non-empty (ISO C) */

#endif /* HE_WITH_REDIS */
