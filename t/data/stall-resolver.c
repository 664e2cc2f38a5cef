/*
 * stall-resolver.c - an LD_PRELOAD shim for t/41-dns.t: getaddrinfo() of
 * any name under .he-stall.test sleeps 20 s (a resolver that hangs), then
 * fails; every other name goes to the real resolver.
 *
 *   cc -shared -fPIC -o stall-resolver.so stall-resolver.c -ldl
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *,
                      struct addrinfo **);

int
getaddrinfo(const char *node, const char *service,
            const struct addrinfo *hints, struct addrinfo **res)
{
    static const char suffix[] = ".he-stall.test";
    size_t n = node ? strlen(node) : 0, s = sizeof suffix - 1;
    gai_fn real;

    if (n > s && strcmp(node + n - s, suffix) == 0) {
        sleep(20);
        return EAI_AGAIN;
    }
    real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    return real ? real(node, service, hints, res) : EAI_FAIL;
}
