/*
 * he_response.c - the fixed responses of the two endpoints.
 *
 * Only constant tokens are ever written into a body: no error text, host
 * name, version or timing can reach the (unauthenticated) client from here.
 */
#include <stdio.h>
#include <string.h>

#include "he.h"

#define TEXT "text/plain"
#define JSON "application/json"

static const char *const result_names[] = { "ok", "fail", "skipped" };
typedef char he_result_names_match[  /* in he_result order */
    sizeof result_names / sizeof result_names[0] == HE_SKIPPED + 1 ? 1 : -1];

const char *
he_result_name(he_result r)
{
    if ((unsigned)r > HE_SKIPPED)
        return "fail";
    return result_names[r];
}

/*
 * The status document: keys sorted, no spaces.  "status" is ok only when
 * every check that ran is ok; a skipped check never degrades it.
 * Returns the length written (always < buflen for buflen >= 96).
 */
static int
all_ok(he_result db, he_result redis)
{
    return (db == HE_OK || db == HE_SKIPPED)
        && (redis == HE_OK || redis == HE_SKIPPED);
}

size_t
he_response_status_json(he_result db, he_result redis, char *buf,
                        size_t buflen)
{
    int n = snprintf(buf, buflen,
                     "{\"checks\":{\"database\":\"%s\",\"redis\":\"%s\"},"
                     "\"status\":\"%s\"}",
                     he_result_name(db), he_result_name(redis),
                     all_ok(db, redis) ? "ok" : "fail");

    if (n < 0 || buflen == 0)
        return 0;
    return (size_t)n < buflen ? (size_t)n : buflen - 1;
}

static void
set_fixed(he_response *r, int status, he_body id, const char *body)
{
    r->status = status;
    r->body_id = id;
    r->content_type = TEXT;
    r->body = body;
    r->body_len = strlen(body);
}

void
he_response_build(he_route route, he_method method, int forbidden,
                  const he_status *st, he_response *resp)
{
    resp->allow_header = 0;
    resp->send_body = (method != HE_METHOD_HEAD);

    if (forbidden) {
        set_fixed(resp, 403, HE_BODY_FORBIDDEN, "forbidden");
        return;
    }
    if (route == HE_ROUTE_NOT_FOUND) {  /* any method: it is not a path */
        set_fixed(resp, 404, HE_BODY_NOT_FOUND, "not found");
        return;
    }
    if (method == HE_METHOD_OTHER) {
        set_fixed(resp, 405, HE_BODY_NOT_ALLOWED, "method not allowed");
        resp->allow_header = 1;
        resp->send_body = 1;
        return;
    }
    if (route == HE_ROUTE_PING) {
        set_fixed(resp, 200, HE_BODY_PONG, "pong");
        return;
    }

    /* HE_ROUTE_STATUS */
    resp->body_len = he_response_status_json(st->db, st->redis, resp->buf,
                                             sizeof resp->buf);
    resp->body = resp->buf;
    resp->body_id = HE_BODY_STATUS;
    resp->content_type = JSON;
    resp->status = all_ok(st->db, st->redis) ? 200 : 503;
}
