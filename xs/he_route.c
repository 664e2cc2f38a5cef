/*
 * he_route.c - which of our endpoints, if any, a request is for.
 *
 * This runs for every request RT serves, so it only compares lengths and
 * bytes: no allocation, no normalisation.  PATH_INFO is compared exactly,
 * as the contract says (no trailing-slash or case folding): "/HEALTHZ"
 * and "//healthz/ping" stay RT's.
 */
#include <string.h>

#include "he.h"

he_route
he_route_match(const he_config *c, const char *path, size_t len)
{
    size_t n = c->namespace_len;

    if (path == NULL || len == 0)       /* our paths are never empty */
        return HE_ROUTE_PASS;
    if (len == c->ping_len && memcmp(path, c->ping_path, len) == 0)
        return HE_ROUTE_PING;
    if (len == c->status_len && memcmp(path, c->status_path, len) == 0)
        return HE_ROUTE_STATUS;
    /* a probe with a typo must not reach RT: a 302 to the login page
     * counts as success for Kubernetes, and makes a session */
    if (n != 0 && len >= n && memcmp(path, c->namespace, n) == 0
        && (len == n || path[n] == '/'))
        return HE_ROUTE_NOT_FOUND;
    return HE_ROUTE_PASS;
}

/* Methods are case-sensitive (RFC 9110 9.1): "get" is not GET. */
he_method
he_route_method(const char *m, size_t len)
{
    if (m == NULL)
        return HE_METHOD_OTHER;
    if (len == 3 && memcmp(m, "GET", 3) == 0)
        return HE_METHOD_GET;
    if (len == 4 && memcmp(m, "HEAD", 4) == 0)
        return HE_METHOD_HEAD;
    return HE_METHOD_OTHER;
}
