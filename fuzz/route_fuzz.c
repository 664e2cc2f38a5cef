/*
 * route_fuzz.c - libFuzzer target for the per-request C path:
 * he_route_match, he_route_method, he_response_build and
 * he_response_status_json, on arbitrary bytes.
 *
 * Proves: no memory error or undefined behaviour for any PATH_INFO /
 * REQUEST_METHOD bytes (NULs, no terminator, any length) or configured
 * paths and namespace, and that the answers keep the contract: exact byte
 * matching of the two paths; the namespace (the directory itself or
 * anything under it, nothing that merely starts with its name) answers
 * 404 "not found" for any method; everything else passes to RT;
 * case-sensitive methods; 403 before 404 before 405; only 200, 403, 404,
 * 405 and 503; Content-Length equal to the body, also for HEAD; a status
 * body made of constant tokens only.
 *
 * Input layout (all lengths clamped to what is left):
 *   [0] flags: bits 0-1 db result (3 = out of range), bits 2-3 redis
 *       result, bit 4 forbidden, bit 5 custom paths, bit 6 a namespace,
 *       bit 7 he_config_finish (else only he_config_init: no namespace)
 *   [1] method length m, then m method bytes
 *   if bit 5: one length byte + ping path, one length byte + status path
 *   if bit 6: one length byte + namespace
 *       (all set through he_config_set, so they must pass its validation)
 *   [..] the rest: PATH_INFO, also used for a small status_json buffer size
 *
 * Run through fuzz/run.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "he.h"

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "route_fuzz: invariant failed: %s (line %d)\n", \
                    #cond, __LINE__);                                       \
            abort();                                                        \
        }                                                                   \
    } while (0)

/* Take n bytes (clamped) from the input into an exact-size heap copy, so
 * that ASan sees any read past the end.  *p and *left advance. */
static char *
take(const uint8_t **p, size_t *left, size_t n, size_t *outlen)
{
    char *s;

    if (n > *left)
        n = *left;
    s = malloc(n ? n : 1);
    if (s == NULL)
        abort();
    if (n)
        memcpy(s, *p, n);
    *p += n;
    *left -= n;
    *outlen = n;
    return s;
}

/* A length byte, then that many bytes, NUL-terminated (for
 * he_config_set). */
static char *
take_str(const uint8_t **p, size_t *left)
{
    size_t n = 0;
    char *s;

    if (*left) {
        n = **p;
        (*p)++;
        (*left)--;
    }
    if (n > *left)
        n = *left;
    s = malloc(n + 1);
    if (s == NULL)
        abort();
    memcpy(s, *p, n);
    s[n] = '\0';
    *p += n;
    *left -= n;
    return s;
}

static void
no_warn(void *ctx, he_level level, const char *msg)
{
    (void)ctx;
    (void)level;
    CHECK(msg != NULL && strlen(msg) < HE_ERRLEN);
}

static const char *
result_token(he_result r)
{
    return r == HE_OK ? "ok" : r == HE_SKIPPED ? "skipped" : "fail";
}

static int
healthy(he_result r)
{
    return r == HE_OK || r == HE_SKIPPED;
}

static int
is(const char *path, size_t len, const char *want, size_t wlen)
{
    return len == wlen && memcmp(path, want, len) == 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *p = data;
    size_t left = size, mlen, plen, nsl;
    he_config c;
    he_status st;
    he_response r;
    he_route route, want;
    he_method method;
    char *m, *path, expect[128], small[96];
    uint8_t flags;
    size_t n, cut;
    int forbidden, under;

    if (size < 2)
        return 0;
    flags = *p++;
    left--;
    he_config_init(&c);

    n = *p++;
    left--;
    m = take(&p, &left, n, &mlen);

    if (flags & 0x20) {
        char *ping = take_str(&p, &left), *status = take_str(&p, &left);

        he_config_set(&c, "ping_path", ping, no_warn, NULL);
        he_config_set(&c, "status_path", status, no_warn, NULL);
        free(ping);
        free(status);
    }
    if (flags & 0x40) {
        char *ns = take_str(&p, &left);

        he_config_set(&c, "namespace", ns, no_warn, NULL);
        free(ns);
    }
    if (flags & 0x80)
        he_config_finish(&c, no_warn, NULL);
    CHECK(c.ping_path && strlen(c.ping_path) == c.ping_len);
    CHECK(c.status_path && strlen(c.status_path) == c.status_len);
    CHECK(he_parse_path(c.ping_path) == 0);
    CHECK(he_parse_path(c.status_path) == 0);
    if (flags & 0x80)
        CHECK(strcmp(c.ping_path, c.status_path) != 0);
    nsl = c.namespace_len;
    CHECK(c.namespace == NULL ? nsl == 0
                              : nsl == strlen(c.namespace) && nsl > 1);
    if (!(flags & 0xe0))                /* defaults, finished or not */
        CHECK(nsl == 0);

    path = take(&p, &left, left, &plen);

    /* routing: the exact paths, then the namespace, then RT */
    route = he_route_match(&c, path, plen);
    under = nsl > 0 && plen >= nsl && memcmp(path, c.namespace, nsl) == 0
            && (plen == nsl || path[nsl] == '/');
    if (is(path, plen, c.ping_path, c.ping_len))
        want = HE_ROUTE_PING;
    else if (is(path, plen, c.status_path, c.status_len))
        want = HE_ROUTE_STATUS;
    else if (under)
        want = HE_ROUTE_NOT_FOUND;
    else
        want = HE_ROUTE_PASS;
    CHECK(route == want);
    if (plen == 0)
        CHECK(route == HE_ROUTE_PASS);
    CHECK(he_route_match(&c, NULL, plen) == HE_ROUTE_PASS);
    /* the root of the site is never ours (a namespace "/" would take it) */
    if (plen == 1 && path[0] == '/' && !is(path, plen, c.ping_path, c.ping_len)
        && !is(path, plen, c.status_path, c.status_len))
        CHECK(route == HE_ROUTE_PASS);

    method = he_route_method(m, mlen);
    if (mlen == 3 && memcmp(m, "GET", 3) == 0)
        CHECK(method == HE_METHOD_GET);
    else if (mlen == 4 && memcmp(m, "HEAD", 4) == 0)
        CHECK(method == HE_METHOD_HEAD);
    else
        CHECK(method == HE_METHOD_OTHER);
    CHECK(he_route_method(NULL, mlen) == HE_METHOD_OTHER);

    /* the response, for our routes (PASS never builds one) */
    memset(&st, 0xA5, sizeof st);       /* garbage where nothing is read */
    st.db = (he_result)(flags & 3);
    st.redis = (he_result)((flags >> 2) & 3);
    forbidden = (flags >> 4) & 1;
    memset(&r, 0x5A, sizeof r);
    if (route == HE_ROUTE_PASS)
        route = HE_ROUTE_STATUS;
    he_response_build(route, method, forbidden, &st, &r);
    CHECK(r.status == 200 || r.status == 403 || r.status == 404
          || r.status == 405 || r.status == 503);
    CHECK(r.content_type != NULL && r.body != NULL);
    CHECK(r.body_len == strlen(r.body));
    CHECK(r.allow_header == (r.status == 405));
    if (forbidden)
        CHECK(r.status == 403 && r.body_id == HE_BODY_FORBIDDEN
              && strcmp(r.body, "forbidden") == 0);
    else if (route == HE_ROUTE_NOT_FOUND)
        CHECK(r.status == 404 && r.body_id == HE_BODY_NOT_FOUND
              && strcmp(r.body, "not found") == 0
              && strcmp(r.content_type, "text/plain") == 0);
    else if (method == HE_METHOD_OTHER)
        CHECK(r.status == 405 && r.body_id == HE_BODY_NOT_ALLOWED);
    if (method == HE_METHOD_OTHER)
        CHECK(r.send_body);
    else
        CHECK(r.send_body == (method == HE_METHOD_GET));
    if (!forbidden && method != HE_METHOD_OTHER
        && route == HE_ROUTE_STATUS) {
        snprintf(expect, sizeof expect,
                 "{\"checks\":{\"database\":\"%s\",\"redis\":\"%s\"},"
                 "\"status\":\"%s\"}", result_token(st.db),
                 result_token(st.redis),
                 healthy(st.db) && healthy(st.redis) ? "ok" : "fail");
        CHECK(strcmp(r.body, expect) == 0);
        CHECK(r.body != NULL && r.body_len == strlen(r.body) && r.body_len < 96);
        CHECK(r.status == (healthy(st.db) && healthy(st.redis) ? 200 : 503));
        CHECK(strcmp(r.content_type, "application/json") == 0);
    }
    if (!forbidden && method != HE_METHOD_OTHER && route == HE_ROUTE_PING)
        CHECK(r.status == 200 && strcmp(r.body, "pong") == 0);

    /* status_json into a buffer too small: truncated, terminated */
    cut = plen % sizeof small + 1;      /* 1 .. 96 */
    memset(small, 'X', sizeof small);
    n = he_response_status_json(st.db, st.redis, small, cut);
    CHECK(n < cut && small[n] == '\0');

    free(m);
    free(path);
    he_config_free(&c);
    return 0;
}
