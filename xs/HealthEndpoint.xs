/*
 * HealthEndpoint.xs - Perl glue: PSGI env in, PSGI triple out.
 *
 * _new() returns an anonymous XSUB (a C closure): the PSGI app RT runs.
 * Its state (parsed config, the instance's health state, the wrapped app
 * and the logger) hangs off the CV and is freed with it through ext
 * magic.  For a request that is not ours the XSUB hands its own argument
 * stack straight to the wrapped app, so pass-through costs one hash
 * lookup and one call.  All logic is in the plain C files; this file only
 * converts, and gives the C core two ways back into Perl: the logger and,
 * in a checker's child, the Oracle DBI check.
 */
#define PERL_NO_GET_CONTEXT
#include "EXTERN.h"
#include "perl.h"
#include "XSUB.h"
#include "ppport.h"

#include "he.h"
#include "he_status.h"

#define LOG_PREFIX "RT::Extension::HealthEndpoint: "

/* The constant strings of our answers, by index. */
enum { C_CTYPE, C_CLEN, C_CACHE, C_NOSTORE, C_ALLOW, C_GETHEAD, C_TEXT,
       C_JSON, C_N };

typedef struct {
    const char *s;
    STRLEN len;
} he_str;

#define HE_STR(s) { s "", sizeof(s) - 1 }
static const he_str str[C_N] = {
    HE_STR("Content-Type"), HE_STR("Content-Length"), HE_STR("Cache-Control"),
    HE_STR("no-store"), HE_STR("Allow"), HE_STR("GET, HEAD"),
    HE_STR("text/plain"), HE_STR("application/json")
};

/* Every answer is one of a small set (he.h): its slot in st->answer[]. */
#define HE_ANSWERS (2 * (HE_BODY_STATUS + HE_STATUS_VARIANTS))
#define HE_ANSWER_SLOT(r) (2 * ((r)->body_id == HE_BODY_STATUS \
                                ? HE_BODY_STATUS + (r)->variant \
                                : (int)(r)->body_id) + (r)->send_body)

/* The env keys looked up on every request, by index. */
enum { K_PATH_INFO, K_METHOD, K_REMOTE_ADDR, K_N };
static const char *const env_keys[K_N] = {
    "PATH_INFO", "REQUEST_METHOD", "REMOTE_ADDR"
};

typedef struct {
    he_config cfg;
    he_instance inst;                   /* the health state, per process */
    SV *app;                            /* the wrapped PSGI app (owned ref) */
    SV *logger;                         /* sub ($level, $message) or NULL */
    SV *db_cb;                          /* Oracle: sub returning true/dying */
    SV *k[K_N];                         /* env keys, shared, hashes below */
    U32 khash[K_N];
    AV *answer[HE_ANSWERS][2];          /* each answer, twice (a server
                                           may still hold the last one) */
} he_state;

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
he_warn_cb(void *ctx, he_level level, const char *msg)
{
    dTHX;
    he_log(aTHX_ (he_state *)ctx, level == HE_LOG_ERROR ? "error"
                  : level == HE_LOG_WARNING ? "warning" : "info", msg);
}

static void
he_log_batch_write(pTHX_ he_state *st, const he_log_batch *log)
{
    int i;

    for (i = 0; i < log->n; i++)
        he_log(aTHX_ st, log->line[i].level, log->line[i].text);
}

/* ---- callbacks the checker makes in its own process ------------------ */

/* The Oracle path, in a run's child process: call the Perl sub with the
 * seconds left before the deadline; true is ok, false or death is fail. */
static he_result
he_db_cb(void *ctx, double seconds_left, char *err, size_t errlen)
{
    dTHX;
    dSP;
    he_state *st = ctx;
    he_result r = HE_FAIL;
    int count;

    ENTER;
    SAVETMPS;
    PUSHMARK(SP);
    mXPUSHn(seconds_left);
    PUTBACK;
    count = call_sv(st->db_cb, G_SCALAR | G_EVAL);
    SPAGAIN;
    if (SvTRUE(ERRSV))
        my_snprintf(err, errlen, "%s", SvPV_nolen(ERRSV));
    else if (count == 1 && SvTRUE(TOPs))
        r = HE_OK;
    else
        my_snprintf(err, errlen, "the DBI check returned false");
    if (count > 0)
        (void)POPs;
    PUTBACK;
    FREETMPS;
    LEAVE;
    return r;
}

/* Name the checker in ps: $0, which perl writes over the argv area. */
static void
he_set_title(void *ctx, const char *title)
{
    dTHX;
    SV *zero = get_sv("0", GV_ADD);

    PERL_UNUSED_ARG(ctx);
    sv_setpv(zero, title);
    SvSETMAGIC(zero);
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
    he_instance_free(&st->inst);
    he_config_free(&st->cfg);
    SvREFCNT_dec(st->app);
    SvREFCNT_dec(st->logger);
    SvREFCNT_dec(st->db_cb);
    for (i = 0; i < K_N; i++)
        SvREFCNT_dec(st->k[i]);
    for (i = 0; i < HE_ANSWERS; i++) {
        SvREFCNT_dec((SV *)st->answer[i][0]);
        SvREFCNT_dec((SV *)st->answer[i][1]);
    }
    Safefree(st);
    mg->mg_ptr = NULL;
    return 0;
}

static void he_consts_init(pTHX_ he_state *st);
static void he_instance_setup(he_state *st, const char *state_path);

#ifdef USE_ITHREADS
/*
 * A new Perl thread clones every CV, this one included: give the clone its
 * own state (config copy, its interpreter's copies of the code refs, its
 * own attachment), or both interpreters would free the same one.
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
    he_instance_setup(st, from->inst.state_path);
    st->app = sv_dup_inc(from->app, param);
    st->logger = from->logger ? sv_dup_inc(from->logger, param) : NULL;
    st->db_cb = from->db_cb ? sv_dup_inc(from->db_cb, param) : NULL;
    he_consts_init(aTHX_ st);
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

static void
he_instance_setup(he_state *st, const char *state_path)
{
    he_instance_init(&st->inst, &st->cfg, state_path, XS_VERSION);
    st->inst.x.db_cb = he_db_cb;
    st->inst.x.db_cb_ctx = st;
    st->inst.x.set_title = he_set_title;
}

/* ---- the request path -------------------------------------------------- */

/* A plain string value of the env, or NULL (missing, undef, a reference).
 * k: one of st->k[], looked up with its precomputed hash. */
static const char *
env_str(pTHX_ he_state *st, HV *env, int k, STRLEN *len)
{
    HE *he = hv_fetch_ent(env, st->k[k], 0, st->khash[k]);
    SV *sv = he ? HeVAL(he) : NULL;

    if (sv == NULL || !SvOK(sv) || SvROK(sv))
        return NULL;
    return SvPV(sv, *len);
}

/* The env keys, as shared-key scalars with their hashes: a lookup then
 * hashes nothing. */
static void
he_consts_init(pTHX_ he_state *st)
{
    int i;

    for (i = 0; i < K_N; i++) {
        st->k[i] = newSVpvn_share(env_keys[i], (I32)strlen(env_keys[i]), 0);
        PERL_HASH(st->khash[i], env_keys[i], strlen(env_keys[i]));
    }
}

/* The header fields of answer r, in order, into h (room for 8);
 * Content-Length is written into clen.  Returns how many. */
static int
he_headers(const he_response *r, he_str *h, char *clen, size_t clen_size)
{
    int n = 0;

    h[n++] = str[C_CTYPE];
    h[n++] = str[r->body_id == HE_BODY_STATUS ? C_JSON : C_TEXT];
    h[n++] = str[C_CLEN];
    h[n].s = clen;
    h[n++].len = (STRLEN)my_snprintf(clen, clen_size, "%lu",
                                     (unsigned long)r->body_len);
    h[n++] = str[C_CACHE];
    h[n++] = str[C_NOSTORE];
    if (r->allow_header) {
        h[n++] = str[C_ALLOW];
        h[n++] = str[C_GETHEAD];
    }
    return n;
}

/* An array of n new strings. */
static AV *
he_av_of_strs(pTHX_ const he_str *s, int n)
{
    AV *av = newAV();
    int i;

    if (n > 0)
        av_extend(av, n - 1);
    for (i = 0; i < n; i++)
        av_push(av, newSVpvn(s[i].s, s[i].len));
    return av;
}

/* [ status, [ headers ], [ body ] ] for r, made anew. */
static AV *
he_build(pTHX_ const he_response *r)
{
    he_str h[8], b;
    char clen[24];
    int n = he_headers(r, h, clen, sizeof clen);
    AV *res = newAV();

    b.s = r->body;
    b.len = r->body_len;
    av_extend(res, 2);
    av_push(res, newSViv(r->status));
    av_push(res, newRV_noinc((SV *)he_av_of_strs(aTHX_ h, n)));
    av_push(res, newRV_noinc((SV *)he_av_of_strs(aTHX_ &b, r->send_body)));
    return res;
}

/* An element nobody else holds and nobody changed: a plain string s. */
static int
he_same_str(SV *sv, const he_str *s)
{
    return sv != NULL && SvREFCNT(sv) == 1 && SvPOK(sv) && !SvROK(sv)
        && !SvMAGICAL(sv) && !SvREADONLY(sv) && !SvOBJECT(sv)
        && SvCUR(sv) == s->len && memcmp(SvPVX(sv), s->s, s->len) == 0;
}

/* The array in reference rv, if nobody else holds either, with n
 * elements; else NULL. */
static AV *
he_own_av(SV *rv, SSize_t n)
{
    AV *av;

    if (rv == NULL || SvREFCNT(rv) != 1 || !SvROK(rv) || SvMAGICAL(rv)
        || SvREADONLY(rv))
        return NULL;
    av = (AV *)SvRV(rv);
    if (SvTYPE(av) != SVt_PVAV || SvREFCNT(av) != 1 || SvMAGICAL(av)
        || SvREADONLY(av) || SvOBJECT(av) || AvFILLp(av) != n - 1)
        return NULL;
    return av;
}

/* 1 if res, handed out before, came back as it was: only this handler
 * holds it or anything in it, and every value is still r's. */
static int
he_intact(pTHX_ AV *res, const he_response *r)
{
    he_str h[8], b;
    char clen[24];
    int n = he_headers(r, h, clen, sizeof clen), i;
    SV **e, *status;
    AV *hv, *bv;

    if (SvREFCNT(res) != 1 || SvMAGICAL(res) || SvREADONLY(res)
        || SvOBJECT(res) || AvFILLp(res) != 2)
        return 0;
    e = AvARRAY(res);
    status = e[0];
    if (status == NULL || SvREFCNT(status) != 1 || !SvIOK(status)
        || SvMAGICAL(status) || SvREADONLY(status) || SvIVX(status) != r->status
        || (hv = he_own_av(e[1], n)) == NULL
        || (bv = he_own_av(e[2], r->send_body)) == NULL)
        return 0;
    for (i = 0; i < n; i++)
        if (!he_same_str(AvARRAY(hv)[i], &h[i]))
            return 0;
    b.s = r->body;
    b.len = r->body_len;
    return !r->send_body || he_same_str(AvARRAY(bv)[0], &b);
}

/*
 * The PSGI triple for r.  Answers come from a small set, so each is made
 * once and handed out again while nobody else holds or has changed any
 * part of it (a server is done with the last one); otherwise this handler
 * lets go of it and makes a new one.  Public API only, on every perl.
 */
static SV *
he_psgi_triple(pTHX_ he_state *st, const he_response *r)
{
    AV **pair = st->answer[HE_ANSWER_SLOT(r)];
    AV *res;

    if (pair[0] != NULL && he_intact(aTHX_ pair[0], r)) {
        res = pair[0];
    } else if (pair[1] != NULL && he_intact(aTHX_ pair[1], r)) {
        res = pair[1];
        pair[1] = pair[0];              /* the one found first next time */
        pair[0] = res;
    } else {
        SvREFCNT_dec((SV *)pair[1]);    /* whoever holds it keeps it */
        pair[1] = pair[0];
        res = pair[0] = he_build(aTHX_ r);
    }
    return newRV_inc((SV *)res);
}

/* Answer one of our paths: no call into the wrapped app. */
static SV *
he_answer(pTHX_ he_state *st, HV *env, he_route route)
{
    STRLEN mlen = 0, alen = 0;
    const char *m = env_str(aTHX_ st, env, K_METHOD, &mlen);
    he_method method = he_route_method(m, mlen);
    he_status status = { HE_SKIPPED, HE_SKIPPED };
    he_response resp;
    int forbidden = 0;

    if (st->cfg.allow_set) {
        const char *addr = env_str(aTHX_ st, env, K_REMOTE_ADDR, &alen);

        forbidden = !he_config_addr_allowed(&st->cfg, addr, alen);
    }
    if (route == HE_ROUTE_STATUS && method != HE_METHOD_OTHER && !forbidden) {
        he_log_batch log;

        he_instance_answer(&st->inst, &status, &log);
        he_log_batch_write(aTHX_ st, &log);
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
    path = env_str(aTHX_ st, env, K_PATH_INFO, &plen);
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
        (void)he_config_set(&st->cfg, key, val, he_warn_cb, st);
    }
    he_config_finish(&st->cfg, he_warn_cb, st);
}

/* Say at startup where the shared state is and whether it works.  A root
 * process (a server that drops privileges later) leaves the file to its
 * first worker: a file made here would belong to root. */
static void
he_report_state(pTHX_ he_state *st)
{
    char err[HE_ERRLEN], msg[HE_ERRLEN + 128];
    const char *path = st->inst.state_path;

    if (path == NULL)
        return;
    if (geteuid() == 0) {
        my_snprintf(msg, sizeof msg, "shared state %s: set up by the first "
                    "worker (this process runs as root)", path);
        he_log(aTHX_ st, "info", msg);
    } else if (he_instance_attach(&st->inst, err, sizeof err) == 0) {
        my_snprintf(msg, sizeof msg, "shared state %s: active", path);
        he_log(aTHX_ st, "info", msg);
    } else {
        my_snprintf(msg, sizeof msg, "the state file cannot be used (%s); "
                    "each process runs its own checker", err);
        he_log(aTHX_ st, "error", msg);
    }
}

MODULE = RT::Extension::HealthEndpoint  PACKAGE = RT::Extension::HealthEndpoint

PROTOTYPES: DISABLE

SV *
_new(class, app, logger, db_cb, pairs, state_file)
    SV *class
    SV *app
    SV *logger
    SV *db_cb
    AV *pairs
    SV *state_file
  PREINIT:
    he_state *st;
    CV *handler;
    SV *rv;
    MAGIC *mg;
    STRLEN plen = 0;
    const char *path = NULL;
  CODE:
    PERL_UNUSED_ARG(class);
    he_check_code(aTHX_ app, "the wrapped app", 0);
    he_check_code(aTHX_ logger, "logger", 1);
    he_check_code(aTHX_ db_cb, "db_check", 1);
    if (SvOK(state_file)) {
        path = SvPV(state_file, plen);
        if (strlen(path) != plen)
            croak("RT::Extension::HealthEndpoint: state_file contains a "
                  "NUL byte");
    }
    Newxz(st, 1, he_state);
    he_config_init(&st->cfg);
    st->app = newSVsv(app);
    st->logger = he_optional_code(aTHX_ logger);
    st->db_cb = he_optional_code(aTHX_ db_cb);
    he_consts_init(aTHX_ st);
    handler = newXS(NULL, he_handler, __FILE__);
    mg = sv_magicext((SV *)handler, NULL, PERL_MAGIC_ext, &he_state_vtbl,
                     (const char *)st, 0);
    mg->mg_flags |= MGf_DUP;
    /* mortal until the end: a value whose stringification dies (tied,
     * overloaded) takes the handler and its state with it */
    rv = sv_2mortal(newRV_noinc((SV *)handler));
    he_apply_pairs(aTHX_ st, pairs);
    he_instance_setup(st, path);
    he_report_state(aTHX_ st);
    RETVAL = SvREFCNT_inc_simple_NN(rv);
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
    (void)hv_stores(h, "allow_set", newSViv(st->cfg.allow_set));
    (void)hv_stores(h, "namespace", st->cfg.namespace
                    ? newSVpv(st->cfg.namespace, 0) : newSV(0));
    (void)hv_stores(h, "state_file", st->inst.state_path
                    ? newSVpv(st->inst.state_path, 0) : newSV(0));
    RETVAL = newRV_noinc((SV *)h);
  OUTPUT:
    RETVAL

SV *
_shared_info(handler)
    SV *handler
  PREINIT:
    he_state *st;
    he_shared *sh;
    HV *h;
  CODE:
    /* For tests and diagnostics: who the checker is, what ran. */
    st = he_state_of(aTHX_ handler);
    sh = st->inst.shm.sh;
    h = newHV();
    if (sh != NULL) {
        (void)hv_stores(h, "file", newSViv(st->inst.shm.is_file));
        (void)hv_stores(h, "checker_pid", newSViv(he_load32((uint32_t *)&sh->checker_pid)));
        (void)hv_stores(h, "checker_gen", newSVuv(he_load32(&sh->checker_gen)));
        (void)hv_stores(h, "heartbeat_age", newSVnv(
            (double)(he_now_ns() - he_load64(&sh->heartbeat_ns)) / 1e9));
        (void)hv_stores(h, "result_seq", newSVuv(he_load32(&sh->result_seq)));
        (void)hv_stores(h, "db_runs", newSVuv((UV)sh->pub.check[HE_CHECK_DB].runs));
        (void)hv_stores(h, "redis_runs", newSVuv((UV)sh->pub.check[HE_CHECK_REDIS].runs));
        (void)hv_stores(h, "running", newSVuv(he_load32(&sh->running)));
    }
    RETVAL = newRV_noinc((SV *)h);
  OUTPUT:
    RETVAL
