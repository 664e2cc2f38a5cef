/*
 * HealthEndpoint.xs - Perl glue: PSGI env in, PSGI triple out.
 *
 * _new() returns an anonymous XSUB (a C closure): the PSGI app RT runs.
 * Its state (parsed config, result cache, the wrapped app and the logger)
 * hangs off the CV and is freed with it through ext magic.  For a request
 * that is not ours the XSUB hands its own argument stack straight to the
 * wrapped app, so pass-through costs one hash lookup and one call.
 * All logic is in the plain C files; this file only converts.
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"
#include "ppport.h"

#include "he.h"

#define LOG_PREFIX "RT::Extension::HealthEndpoint: "

typedef struct {
    he_config cfg;
    he_status_cache cache;
    SV *app;                            /* the wrapped PSGI app (owned ref) */
    SV *logger;                         /* sub ($level, $message) or NULL */
    SV *db_cb;                          /* Oracle: sub returning true/dying */
    SV *c[11];                          /* constant strings of our answers */
    U32 path_info_hash;                 /* of "PATH_INFO": every request
                                           looks it up */
} he_state;

enum { C_CTYPE, C_CLEN, C_CACHE, C_NOSTORE, C_ALLOW, C_GETHEAD, C_TEXT,
       C_JSON, C_PONG, C_FORBIDDEN, C_NOT_ALLOWED,  /* in he_body order */
       C_N };                                         /* indexes into c[] */

/* ---- logging ---------------------------------------------------------- */

/*
 * Hand one message to the Perl logger.  Runs in an eval so that a broken
 * logger cannot throw into RT, and keeps $@ as the caller had it.
 */
static void
he_log(pTHX_ he_state *st, const char *level, const char *msg)
{
    dSP;
    SV *saved_err;

    if (st->logger == NULL) {
        PerlIO_printf(PerlIO_stderr(), "[%s] %s%s\n", level, LOG_PREFIX, msg);
        return;
    }
    ENTER;
    SAVETMPS;
    saved_err = sv_mortalcopy(ERRSV);
    PUSHMARK(SP);
    EXTEND(SP, 2);
    mPUSHp(level, strlen(level));
    PUSHs(sv_2mortal(newSVpvf("%s%s", LOG_PREFIX, msg)));
    PUTBACK;
    call_sv(st->logger, G_DISCARD | G_EVAL);
    if (SvTRUE(ERRSV)) {
        STRLEN elen;
        const char *e = SvPV(ERRSV, elen);

        while (elen > 0 && (e[elen - 1] == '\n' || e[elen - 1] == '\r'))
            elen--;
        PerlIO_printf(PerlIO_stderr(), "[%s] %s%s (logger failed: %.*s)\n",
                      level, LOG_PREFIX, msg, (int)elen, e);
    }
    sv_setsv(ERRSV, saved_err);
    FREETMPS;
    LEAVE;
}

static void
he_warn_cb(void *ctx, const char *msg)
{
    dTHX;
    he_log(aTHX_ (he_state *)ctx, "error", msg);
}

/* The Oracle path: call the Perl sub with the seconds left before the
 * deadline; true is ok, false or death is fail. */
static he_result
he_db_cb(void *ctx, double seconds_left, char *err, size_t errlen)
{
    dTHX;
    dSP;
    he_state *st = ctx;
    he_result r = HE_FAIL;
    SV *saved_err;
    int count;

    ENTER;
    SAVETMPS;
    saved_err = sv_mortalcopy(ERRSV);
    PUSHMARK(SP);
    mXPUSHn(seconds_left);
    PUTBACK;
    count = call_sv(st->db_cb, G_SCALAR | G_EVAL);
    SPAGAIN;
    if (SvTRUE(ERRSV)) {
        my_snprintf(err, errlen, "%s", SvPV_nolen(ERRSV));
    } else if (count == 1 && SvTRUE(TOPs)) {
        r = HE_OK;
    } else {
        my_snprintf(err, errlen, "the DBI check returned false");
    }
    if (count > 0)
        (void)POPs;
    PUTBACK;
    sv_setsv(ERRSV, saved_err);
    FREETMPS;
    LEAVE;
    return r;
}

static void
he_log_failures(pTHX_ he_state *st, const he_status *s)
{
    char msg[HE_ERRLEN + 128];

    if (s->from_cache)
        return;
    if (s->db == HE_FAIL) {
        my_snprintf(msg, sizeof msg, "database check failed (%s, %.3f s): %s",
                    st->cfg.db.type ? st->cfg.db.type : "none",
                    s->db_elapsed, s->db_err);
        he_log(aTHX_ st, "error", msg);
    }
    if (s->redis == HE_FAIL) {
        my_snprintf(msg, sizeof msg, "redis check failed (%.3f s): %s",
                    s->redis_elapsed, s->redis_err);
        he_log(aTHX_ st, "error", msg);
    }
}

/* ---- state lifetime ---------------------------------------------------- */

static int
he_state_free(pTHX_ SV *sv, MAGIC *mg)
{
    he_state *st = (he_state *)mg->mg_ptr;
    int i;

    PERL_UNUSED_ARG(sv);
    if (st == NULL)
        return 0;
    he_config_free(&st->cfg);
    SvREFCNT_dec(st->app);
    SvREFCNT_dec(st->logger);
    SvREFCNT_dec(st->db_cb);
    for (i = 0; i < C_N; i++)
        SvREFCNT_dec(st->c[i]);
    Safefree(st);
    mg->mg_ptr = NULL;
    return 0;
}

static void he_consts_init(pTHX_ he_state *st);

#ifdef USE_ITHREADS
/*
 * A new Perl thread clones every CV, this one included: give the clone its
 * own state (config copy, fresh cache, its interpreter's copies of the
 * code refs), or both interpreters would free the same one.
 */
static int
he_state_dup(pTHX_ MAGIC *mg, CLONE_PARAMS *param)
{
    he_state *from = (he_state *)mg->mg_ptr;
    he_state *st;

    if (from == NULL)
        return 0;
    Newxz(st, 1, he_state);
    he_config_copy(&st->cfg, &from->cfg);
    st->path_info_hash = from->path_info_hash;  /* one hash seed per process */
    st->app = sv_dup_inc(from->app, param);
    st->logger = from->logger ? sv_dup_inc(from->logger, param) : NULL;
    st->db_cb = from->db_cb ? sv_dup_inc(from->db_cb, param) : NULL;
    he_consts_init(aTHX_ st);           /* its own: COW refcounts are not
                                         * atomic */
    mg->mg_ptr = (char *)st;
    return 0;
}
#define HE_STATE_DUP he_state_dup
#else
#define HE_STATE_DUP 0
#endif

static MGVTBL he_state_vtbl = { 0, 0, 0, 0, he_state_free, 0, HE_STATE_DUP, 0 };

/* The state of a handler CV, or NULL.  Found through the magic (not
 * CvXSUBANY, which a thread clone copies as it is). */
static he_state *
he_state_of_cv(pTHX_ CV *cv)
{
    MAGIC *mg = mg_findext((SV *)cv, PERL_MAGIC_ext, &he_state_vtbl);

    return mg ? (he_state *)mg->mg_ptr : NULL;
}

static he_state *
he_state_of(pTHX_ SV *handler)
{
    he_state *st = NULL;

    if (SvROK(handler) && SvTYPE(SvRV(handler)) == SVt_PVCV)
        st = he_state_of_cv(aTHX_ (CV *)SvRV(handler));
    if (st == NULL)
        croak("RT::Extension::HealthEndpoint: not a handler");
    return st;
}

/* ---- the request path -------------------------------------------------- */

/* A plain string value of the env, or NULL (missing, undef, a reference).
 * hash: the key's precomputed hash, or 0 to compute it. */
static const char *
env_str(pTHX_ HV *env, const char *key, I32 klen, U32 hash, STRLEN *len)
{
    SV **svp = (SV **)hv_common_key_len(env, key, klen, HV_FETCH_JUST_SV,
                                        NULL, hash);

    if (svp == NULL || !SvOK(*svp) || SvROK(*svp))
        return NULL;
    return SvPV(*svp, *len);
}

/*
 * The constant strings of our answers are made once per handler, with a
 * spare byte after the NUL for perl's copy-on-write refcount; every answer
 * gets copies that share their buffer (he_cow_copy), as perl's own
 * [ 'constant', ... ] does: no malloc, no memcpy per string.
 */
static SV *
he_cow_const(pTHX_ const char *s, STRLEN len)
{
    SV *sv = newSV_type(SVt_PV);
    char *buf;

    Newx(buf, len + 2, char);
    Copy(s, buf, len, char);
    buf[len] = '\0';
    SvPV_set(sv, buf);
    SvCUR_set(sv, len);
    SvLEN_set(sv, len + 2);
    SvPOK_only(sv);
    return sv;
}
#define HE_MK(s) he_cow_const(aTHX_ s "", sizeof(s) - 1)

static void
he_consts_init(pTHX_ he_state *st)
{
    st->c[C_CTYPE] = HE_MK("Content-Type");
    st->c[C_CLEN] = HE_MK("Content-Length");
    st->c[C_CACHE] = HE_MK("Cache-Control");
    st->c[C_NOSTORE] = HE_MK("no-store");
    st->c[C_ALLOW] = HE_MK("Allow");
    st->c[C_GETHEAD] = HE_MK("GET, HEAD");
    st->c[C_TEXT] = HE_MK("text/plain");
    st->c[C_JSON] = HE_MK("application/json");
    st->c[C_PONG] = HE_MK("pong");
    st->c[C_FORBIDDEN] = HE_MK("forbidden");
    st->c[C_NOT_ALLOWED] = HE_MK("method not allowed");
}

/* A copy of a constant from he_cow_const() (and only of those: they have
 * the spare byte) that shares its buffer: what sv_setsv_flags() does for
 * copy-on-write, without the rest of it. */
static SV *
he_cow_copy(pTHX_ SV *src)
{
    SV *sv;

    if (!SvIsCOW(src)) {
        SvIsCOW_on(src);
        CowREFCNT(src) = 0;
    }
    if (CowREFCNT(src) == SV_COW_REFCNT_MAX)
        return newSVpvn(SvPVX(src), SvCUR(src));
    CowREFCNT(src)++;
    sv = newSV_type(SVt_PV);
    SvPV_set(sv, SvPVX(src));
    SvCUR_set(sv, SvCUR(src));
    SvLEN_set(sv, SvLEN(src));
    SvFLAGS(sv) |= SVf_POK | SVp_POK | SVf_IsCOW;
    return sv;
}

static SV *
he_psgi_triple(pTHX_ he_state *st, const he_response *r)
{
    AV *res, *headers, *body;
    SV **h;
    int n = 0;

    headers = newAV_alloc_x(r->allow_header ? 8 : 6);
    h = AvARRAY(headers);
    h[n++] = he_cow_copy(aTHX_ st->c[C_CTYPE]);
    h[n++] = he_cow_copy(aTHX_ st->c[r->body_id == HE_BODY_STATUS
                                     ? C_JSON : C_TEXT]);
    h[n++] = he_cow_copy(aTHX_ st->c[C_CLEN]);
    h[n++] = newSVuv((UV)r->body_len);
    h[n++] = he_cow_copy(aTHX_ st->c[C_CACHE]);
    h[n++] = he_cow_copy(aTHX_ st->c[C_NOSTORE]);
    if (r->allow_header) {
        h[n++] = he_cow_copy(aTHX_ st->c[C_ALLOW]);
        h[n++] = he_cow_copy(aTHX_ st->c[C_GETHEAD]);
    }
    AvFILLp(headers) = n - 1;

    if (r->send_body) {
        body = newAV_alloc_x(1);
        AvARRAY(body)[0] = r->body_id == HE_BODY_STATUS
                           ? newSVpvn(r->body, r->body_len)
                           : he_cow_copy(aTHX_ st->c[C_PONG + r->body_id]);
        AvFILLp(body) = 0;
    } else {
        body = newAV();
    }

    res = newAV_alloc_x(3);
    AvARRAY(res)[0] = newSViv(r->status);
    AvARRAY(res)[1] = newRV_noinc((SV *)headers);
    AvARRAY(res)[2] = newRV_noinc((SV *)body);
    AvFILLp(res) = 2;
    return newRV_noinc((SV *)res);
}

/* Answer one of our paths: no call into the wrapped app. */
static SV *
he_answer(pTHX_ he_state *st, HV *env, he_route route)
{
    STRLEN mlen = 0, alen = 0;
    const char *m = env_str(aTHX_ env, "REQUEST_METHOD", 14, 0, &mlen);
    he_method method = he_route_method(m, mlen);
    he_status status;
    he_response resp;
    int forbidden = 0;

    if (st->cfg.n_allow > 0) {
        const char *addr = env_str(aTHX_ env, "REMOTE_ADDR", 11, 0, &alen);

        forbidden = !he_config_addr_allowed(&st->cfg, addr, alen);
    }
    if (route == HE_ROUTE_STATUS && method != HE_METHOD_OTHER && !forbidden) {
        he_checks_run(&st->cfg, &st->cache, st->db_cb ? he_db_cb : NULL, st,
                      &status);
        he_log_failures(aTHX_ st, &status);
    }
    he_response_build(route, method, forbidden, &status, &resp);
    return he_psgi_triple(aTHX_ st, &resp);
}

/* The PSGI app itself: $handler->($env). */
XS_INTERNAL(he_handler)
{
    dXSARGS;
    he_state *st = he_state_of_cv(aTHX_ cv);
    const char *path;
    STRLEN plen = 0;
    he_route route;
    HV *env;

    if (st == NULL)
        croak("RT::Extension::HealthEndpoint: handler without state");
    if (items < 1 || !SvROK(ST(0)) || SvTYPE(SvRV(ST(0))) != SVt_PVHV)
        croak("RT::Extension::HealthEndpoint: the PSGI env must be a "
              "hash reference");
    env = (HV *)SvRV(ST(0));
    path = env_str(aTHX_ env, "PATH_INFO", 9, st->path_info_hash, &plen);
    route = he_route_match(&st->cfg, path, plen);

    if (route == HE_ROUTE_PASS) {
        /* Re-use our own argument list, untouched, for the wrapped app. */
        I32 count;

        PUSHMARK(MARK);
        PUTBACK;
        count = call_sv(st->app, GIMME_V);
        XSRETURN(count);
    }
    ST(0) = sv_2mortal(he_answer(aTHX_ st, env, route));
    XSRETURN(1);
}

/* ---- building a handler ------------------------------------------------ */

static int
he_is_code(SV *sv)
{
    return SvROK(sv) && SvTYPE(SvRV(sv)) == SVt_PVCV;
}

/* Croaks before anything is allocated, so a caller's mistake leaks nothing. */
static void
he_check_code(pTHX_ SV *sv, const char *what, int optional)
{
    if (optional && !SvOK(sv))
        return;
    if (!he_is_code(sv))
        croak("RT::Extension::HealthEndpoint: %s must be a code reference",
              what);
}

static SV *
he_optional_code(pTHX_ SV *sv)
{
    return SvOK(sv) ? newSVsv(sv) : NULL;
}

/* Apply the (key, value, ...) option list; undef values mean "unset". */
static void
he_apply_pairs(pTHX_ he_state *st, AV *pairs)
{
    SSize_t i, n = av_len(pairs) + 1;

    for (i = 0; i + 1 < n; i += 2) {
        SV **k = av_fetch(pairs, i, 0);
        SV **v = av_fetch(pairs, i + 1, 0);
        STRLEN klen, vlen = 0;
        const char *key, *val = NULL;

        if (k == NULL || !SvOK(*k))
            continue;
        key = SvPV(*k, klen);
        if (v != NULL && SvOK(*v))
            val = SvPV(*v, vlen);
        if (strlen(key) != klen || (val != NULL && strlen(val) != vlen)) {
            char msg[256];

            my_snprintf(msg, sizeof msg, "option '%.100s': value contains a "
                        "NUL byte; ignored", key);
            he_log(aTHX_ st, "error", msg);
            continue;
        }
        he_config_set(&st->cfg, key, val, he_warn_cb, st);
    }
    he_config_finish(&st->cfg, he_warn_cb, st);
}

MODULE = RT::Extension::HealthEndpoint  PACKAGE = RT::Extension::HealthEndpoint

PROTOTYPES: DISABLE

SV *
_new(class, app, logger, db_cb, pairs)
    SV *class
    SV *app
    SV *logger
    SV *db_cb
    AV *pairs
  PREINIT:
    he_state *st;
    CV *handler;
    MAGIC *mg;
  CODE:
    PERL_UNUSED_ARG(class);
    he_check_code(aTHX_ app, "the wrapped app", 0);
    he_check_code(aTHX_ logger, "logger", 1);
    he_check_code(aTHX_ db_cb, "db_check", 1);
    Newxz(st, 1, he_state);
    he_config_init(&st->cfg);
    st->app = newSVsv(app);
    st->logger = he_optional_code(aTHX_ logger);
    st->db_cb = he_optional_code(aTHX_ db_cb);
    he_consts_init(aTHX_ st);
    PERL_HASH(st->path_info_hash, "PATH_INFO", 9);
    handler = newXS(NULL, he_handler, __FILE__);
    mg = sv_magicext((SV *)handler, NULL, PERL_MAGIC_ext, &he_state_vtbl,
                     (const char *)st, 0);
    mg->mg_flags |= MGf_DUP;
    RETVAL = newRV_noinc((SV *)handler);
    he_apply_pairs(aTHX_ st, pairs);
    /* Library-wide setup, here on the Perl thread before any check thread
     * exists; only for MySQL, as it also sets SIGPIPE to ignored. */
    if (st->cfg.db.kind == HE_DB_MYSQL)
        he_mysql_global_init();
  OUTPUT:
    RETVAL

void
backends()
  PREINIT:
    const char *s, *e;
  PPCODE:
    for (s = he_checks_backends(); *s; s = *e ? e + 1 : e) {
        e = strchr(s, ' ');
        if (e == NULL)
            e = s + strlen(s);
        mXPUSHp(s, (STRLEN)(e - s));
    }

SV *
_effective_config(handler)
    SV *handler
  PREINIT:
    he_state *st;
    HV *h;
  CODE:
    st = he_state_of(aTHX_ handler);
    h = newHV();
    (void)hv_stores(h, "ping_path", newSVpvn(st->cfg.ping_path, st->cfg.ping_len));
    (void)hv_stores(h, "status_path",
                    newSVpvn(st->cfg.status_path, st->cfg.status_len));
    (void)hv_stores(h, "timeout", newSVnv(st->cfg.timeout));
    (void)hv_stores(h, "cache_seconds", newSVnv(st->cfg.cache_seconds));
    (void)hv_stores(h, "db_type",
                    st->cfg.db.type ? newSVpv(st->cfg.db.type, 0) : newSV(0));
    (void)hv_stores(h, "redis_enabled", newSViv(st->cfg.redis.enabled));
    (void)hv_stores(h, "redis_server",
                    newSVpvf("%s:%d", st->cfg.redis.server.host,
                             st->cfg.redis.server.port));
    (void)hv_stores(h, "redis_database", newSViv(st->cfg.redis.database));
    (void)hv_stores(h, "redis_sentinels", newSVuv(st->cfg.redis.n_sentinels));
    (void)hv_stores(h, "allow_from", newSVuv(st->cfg.n_allow));
    RETVAL = newRV_noinc((SV *)h);
  OUTPUT:
    RETVAL
