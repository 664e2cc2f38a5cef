/*
 * he_redis.c - Redis check with hiredis (0.14 or 1.x), non-blocking.
 *
 * Connect (directly, or to the master a Sentinel names), AUTH, SELECT,
 * PING.  The context is made with redisConnect[Unix]NonBlock, which both
 * hiredis generations have, and driven by hand: redisBufferWrite /
 * redisBufferRead / redisGetReplyFromReader around he_time_wait_fd().
 *
 * Not bounded here: redisConnectNonBlock resolves a host name with
 * blocking getaddrinfo(); the checker kills a run that overstays its
 * deadline.  A peer that lies (a huge array or bulk reply) is bounded by
 * the run's memory limit and the same kill.
 *
 * Built only with -DHE_WITH_REDIS.
 */
#ifdef HE_WITH_REDIS

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <hiredis/hiredis.h>

#include "he.h"

#define HE_REDIS_HOSTLEN 256            /* a host name from a Sentinel */
#define HE_REDIS_SUN_PATH sizeof(((struct sockaddr_un *)0)->sun_path)

#if defined(__GNUC__)
#define HE_REDIS_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define HE_REDIS_PRINTF(f, a)
#endif

static void he_redis_error(char *err, size_t errlen, const char *fmt, ...)
    HE_REDIS_PRINTF(3, 4);

static void
he_redis_error(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* 1 if connecting to host starts with a name lookup. */
static int
he_redis_is_name(const char *host)
{
    unsigned char buf[16];

    return inet_pton(AF_INET, host, buf) != 1
        && inet_pton(AF_INET6, host, buf) != 1;
}

/*
 * Open a non-blocking connection to sock (if not NULL) or host:port and
 * wait, within the deadline, until it is established.  On HE_OK *out is
 * the context (caller redisFree()s it); on HE_FAIL *out is NULL and
 * p->err is set.
 */
static he_result
he_redis_connect(const char *host, int port, const char *sock, he_probe *p,
                 redisContext **out)
{
    redisContext *rc;
    char peer[HE_REDIS_HOSTLEN + 16];
    int w, soerr = 0;
    socklen_t len = sizeof(soerr);
    he_result r = HE_FAIL;

    *out = NULL;
    if (sock == NULL && host == NULL) {
        he_redis_error(p->err, p->errlen, "connect: no server configured");
        return HE_FAIL;
    }
    if (sock != NULL && strlen(sock) >= HE_REDIS_SUN_PATH) {  /* cut short */
        he_redis_error(p->err, p->errlen, "connect %s: socket path too long",
                       sock);
        return HE_FAIL;
    }
    if (sock != NULL)
        he_redis_error(peer, sizeof(peer), "connect %s", sock);
    else
        he_redis_error(peer, sizeof(peer), "connect %s:%d", host, port);
    he_probe_phase(p, sock == NULL && he_redis_is_name(host)
                      ? HE_PHASE_RESOLVING : HE_PHASE_CONNECTING);
    rc = sock ? redisConnectUnixNonBlock(sock)
              : redisConnectNonBlock(host, port);
    if (rc == NULL) {
        he_redis_error(p->err, p->errlen, "%s: out of memory", peer);
        return HE_FAIL;
    }
    if (rc->err) {
        he_redis_error(p->err, p->errlen, "%s: %s", peer, rc->errstr);
        goto cleanup;
    }
    he_probe_phase(p, HE_PHASE_CONNECTING);
    w = he_time_wait_fd(rc->fd, 1, p->deadline);
    if (w != 1) {
        he_time_wait_error(w, peer, p->start, p->err, p->errlen);
        goto cleanup;
    }
    if (getsockopt(rc->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
        soerr = errno;
    if (soerr != 0) {
        he_redis_error(p->err, p->errlen, "%s: %s", peer, strerror(soerr));
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
he_redis_flush(redisContext *rc, const char *what, he_probe *p)
{
    int done = 0, w;

    for (;;) {
        if (redisBufferWrite(rc, &done) != REDIS_OK) {
            he_redis_error(p->err, p->errlen, "%s: %s", what, rc->errstr);
            return HE_FAIL;
        }
        if (done)
            return HE_OK;
        w = he_time_wait_fd(rc->fd, 1, p->deadline);
        if (w != 1) {
            he_time_wait_error(w, what, p->start, p->err, p->errlen);
            return HE_FAIL;
        }
    }
}

/* Read until one whole reply is parsed, within the deadline.  Returns the
 * reply (caller freeReplyObject()s it) or NULL with p->err set. */
static redisReply *
he_redis_read_reply(redisContext *rc, const char *what, he_probe *p)
{
    void *reply = NULL;
    int w;

    for (;;) {
        if (redisGetReplyFromReader(rc, &reply) != REDIS_OK) {
            he_redis_error(p->err, p->errlen, "%s: %s", what, rc->errstr);
            return NULL;
        }
        if (reply != NULL)
            return reply;
        w = he_time_wait_fd(rc->fd, 0, p->deadline);
        if (w != 1) {
            he_time_wait_error(w, what, p->start, p->err, p->errlen);
            return NULL;
        }
        if (redisBufferRead(rc) != REDIS_OK) {  /* EOF, I/O or protocol */
            he_redis_error(p->err, p->errlen, "%s: %s", what, rc->errstr);
            return NULL;
        }
    }
}

/*
 * Run one command (argv[0] names it in messages) within the deadline.
 * Returns the reply, never an error reply (caller freeReplyObject()s it),
 * or NULL with p->err set, e.g. "AUTH: WRONGPASS invalid username-password
 * pair" for the server's error, "PING: Server closed the connection".
 */
static redisReply *
he_redis_command(redisContext *rc, int argc, const char **argv, he_probe *p)
{
    redisReply *reply;

    if (redisAppendCommandArgv(rc, argc, argv, NULL) != REDIS_OK) {
        he_redis_error(p->err, p->errlen, "%s: %s", argv[0], rc->errstr);
        return NULL;
    }
    if (he_redis_flush(rc, argv[0], p) != HE_OK)
        return NULL;
    reply = he_redis_read_reply(rc, argv[0], p);
    if (reply != NULL && reply->type == REDIS_REPLY_ERROR) {
        he_redis_error(p->err, p->errlen, "%s: %.*s", argv[0],
                       (int)reply->len, reply->str);
        freeReplyObject(reply);
        return NULL;
    }
    return reply;
}

/* A reply type for messages. */
static const char *
he_redis_type_name(int type)
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
 * HE_OK or HE_FAIL with p->err set. */
static he_result
he_redis_status_command(redisContext *rc, int argc, const char **argv,
                        const char *want, he_probe *p)
{
    redisReply *reply;
    he_result r = HE_OK;

    reply = he_redis_command(rc, argc, argv, p);
    if (reply == NULL)
        return HE_FAIL;
    if (reply->type != REDIS_REPLY_STATUS || strcmp(reply->str, want) != 0) {
        he_redis_error(p->err, p->errlen, "%s: unexpected %s reply, expected "
                       "%s", argv[0], he_redis_type_name(reply->type), want);
        r = HE_FAIL;
    }
    freeReplyObject(reply);
    return r;
}

/* On a connected context: AUTH (if a password is set), SELECT (if a
 * database is set), PING.  HE_OK or HE_FAIL with p->err set. */
static he_result
he_redis_check_server(redisContext *rc, const he_redis_config *c,
                      he_probe *p)
{
    const char *argv[3];
    char db[16];
    he_result r = HE_OK;

    he_probe_phase(p, HE_PHASE_AUTHENTICATING);
    if (c->password != NULL) {
        argv[0] = "AUTH";
        argv[1] = c->username ? c->username : c->password;
        argv[2] = c->password;
        r = he_redis_status_command(rc, c->username ? 3 : 2, argv, "OK", p);
    }
    if (r == HE_OK && c->database >= 0) {
        snprintf(db, sizeof(db), "%d", c->database);
        argv[0] = "SELECT";
        argv[1] = db;
        r = he_redis_status_command(rc, 2, argv, "OK", p);
    }
    if (r == HE_OK) {
        he_probe_phase(p, HE_PHASE_QUERYING);
        argv[0] = "PING";
        r = he_redis_status_command(rc, 1, argv, "PONG", p);
    }
    return r;
}

/* Connect to one server and check it.  HE_OK or HE_FAIL with p->err. */
static he_result
he_redis_check_one(const char *host, int port, const char *sock,
                   const he_redis_config *c, he_probe *p)
{
    redisContext *rc = NULL;
    he_result r;

    r = he_redis_connect(host, port, sock, p, &rc);
    if (r != HE_OK)
        return r;
    r = he_redis_check_server(rc, c, p);
    redisFree(rc);
    return r;
}

/* Take host and port out of a SENTINEL get-master-addr-by-name reply.
 * HE_OK or HE_FAIL with err set. */
static he_result
he_redis_parse_master(const redisReply *reply, const char *service,
                      char *host, size_t hostlen, int *port,
                      char *err, size_t errlen)
{
    const redisReply *h, *pt;
    char *end;
    long v;

    if (reply->type == REDIS_REPLY_NIL) {
        he_redis_error(err, errlen, "unknown service %s", service);
        return HE_FAIL;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2
        || reply->element[0]->type != REDIS_REPLY_STRING
        || reply->element[1]->type != REDIS_REPLY_STRING) {
        he_redis_error(err, errlen, "unexpected %s reply for service %s",
                       he_redis_type_name(reply->type), service);
        return HE_FAIL;
    }
    h = reply->element[0];
    pt = reply->element[1];
    errno = 0;
    v = strtol(pt->str, &end, 10);
    if (h->len == 0 || h->len >= hostlen || errno != 0 || *end != '\0'
        || end == pt->str || v < 1 || v > 65535) {
        he_redis_error(err, errlen, "bad master address for service %s",
                       service);
        return HE_FAIL;
    }
    memcpy(host, h->str, h->len);
    host[h->len] = '\0';
    *port = (int)v;
    return HE_OK;
}

/*
 * Ask one Sentinel for the master of service, within p's deadline.  On
 * HE_OK host/port are set; on HE_FAIL p->err says why, prefixed with the
 * sentinel's address.
 */
static he_result
he_redis_ask_sentinel(const he_hostport *s, const char *service,
                      he_probe *p, char *host, size_t hostlen, int *port)
{
    const char *argv[3] = { "SENTINEL", "get-master-addr-by-name", service };
    char sub[HE_ERRLEN];
    redisContext *rc = NULL;
    redisReply *reply = NULL;
    he_probe q = *p;
    he_result r;

    q.err = sub;
    q.errlen = sizeof(sub);
    r = he_redis_connect(s->host, s->port, NULL, &q, &rc);
    if (r != HE_OK)
        goto cleanup;
    reply = he_redis_command(rc, 3, argv, &q);
    if (reply == NULL) {
        r = HE_FAIL;
        goto cleanup;
    }
    r = he_redis_parse_master(reply, service, host, hostlen, port, sub,
                              sizeof(sub));

cleanup:
    if (r != HE_OK)
        he_redis_error(p->err, p->errlen, "sentinel %s:%d: %s", s->host,
                       s->port, sub);
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
 * HE_OK or HE_FAIL with p->err set.
 */
static he_result
he_redis_check_sentinels(const he_redis_config *c, he_probe *p)
{
    char host[HE_REDIS_HOSTLEN], last[HE_ERRLEN], sub[HE_ERRLEN];
    he_probe q = *p;
    double now;
    int port = 0;
    size_t i;
    he_result r = HE_FAIL;

    snprintf(last, sizeof(last), "no sentinel configured");
    q.err = last;
    q.errlen = sizeof(last);
    for (i = 0; i < c->n_sentinels && r != HE_OK; i++) {
        now = he_time_now();
        q.deadline = now + (p->deadline - now)
                           / (double)(c->n_sentinels - i + 1);
        r = he_redis_ask_sentinel(&c->sentinels[i], c->service, &q, host,
                                  sizeof(host), &port);
    }
    if (r != HE_OK) {
        he_redis_error(p->err, p->errlen, "no sentinel answered for service "
                       "%s: %s", c->service, last);
        return HE_FAIL;
    }
    q = *p;
    q.err = sub;
    q.errlen = sizeof(sub);
    r = he_redis_check_one(host, port, NULL, c, &q);
    if (r != HE_OK)
        he_redis_error(p->err, p->errlen, "master %s:%d of %s: %s", host,
                       port, c->service, sub);
    return r;
}

/*
 * he_redis_check - see he.h.  Every connection is opened and freed here.
 * With sentinels and a service the master they name is checked;
 * otherwise c->sock, or else c->server.
 */
he_result
he_redis_check(const he_redis_config *c, he_probe *p)
{
    if (c->n_sentinels > 0 && c->service != NULL)
        return he_redis_check_sentinels(c, p);
    return he_redis_check_one(c->server.host, c->server.port, c->sock, c, p);
}

#else  /* !HE_WITH_REDIS */

typedef int he_redis_not_built;         /* keeps the unit non-empty (ISO C) */

#endif /* HE_WITH_REDIS */
