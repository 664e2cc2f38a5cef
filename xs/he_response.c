/*
 * he_response.c - the fixed responses of the two endpoints.
 *
 * Only constant tokens are ever written into a body: no error text, host
 * name, version or timing can reach the (unauthenticated) client from here.
 */
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
 * The status documents: keys sorted, no spaces.  "status" is ok only when
 * every check that ran is ok; a skipped check never degrades it.  Nine of
 * them, by database * 3 + redis (he_result order): a table, not printf.
 */
#define HE_DOC_S(d, r, s) \
    "{\"checks\":{\"database\":\"" d "\",\"redis\":\"" r "\"},\"status\":\"" s "\"}"
#define HE_DOC(d, r, s) { HE_DOC_S(d, r, s), sizeof(HE_DOC_S(d, r, s)) - 1 }
static const struct {
    const char *s;
    size_t len;
} docs[HE_STATUS_VARIANTS] = {
    HE_DOC("ok", "ok", "ok"), HE_DOC("ok", "fail", "fail"),
    HE_DOC("ok", "skipped", "ok"), HE_DOC("fail", "ok", "fail"),
    HE_DOC("fail", "fail", "fail"), HE_DOC("fail", "skipped", "fail"),
    HE_DOC("skipped", "ok", "ok"), HE_DOC("skipped", "fail", "fail"),
    HE_DOC("skipped", "skipped", "ok")
};

static int
all_ok(he_result db, he_result redis)
{
    return (db == HE_OK || db == HE_SKIPPED)
        && (redis == HE_OK || redis == HE_SKIPPED);
}

/* The table's index for (db, redis): anything unknown counts as fail. */
static int
variant(he_result db, he_result redis)
{
    return (int)((unsigned)db > HE_SKIPPED ? HE_FAIL : db) * 3
        + (int)((unsigned)redis > HE_SKIPPED ? HE_FAIL : redis);
}

size_t
he_response_status_json(he_result db, he_result redis, char *buf,
                        size_t buflen)
{
    int v = variant(db, redis);
    size_t n = docs[v].len;

    if (buflen == 0)
        return 0;
    if (n >= buflen)
        n = buflen - 1;                 /* cut, as snprintf would */
    memcpy(buf, docs[v].s, n);
    buf[n] = '\0';
    return n;
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
    resp->variant = 0;
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
    resp->variant = variant(st->db, st->redis);
    resp->body = docs[resp->variant].s;
    resp->body_len = docs[resp->variant].len;
    resp->body_id = HE_BODY_STATUS;
    resp->content_type = JSON;
    resp->status = all_ok(st->db, st->redis) ? 200 : 503;
}
