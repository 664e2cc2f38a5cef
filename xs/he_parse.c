/*
 * he_parse.c - parsing option values and addresses; see he_parse.h.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "he_parse.h"

#define MAX_PATH_LEN 2048
#define MAX_HOST_LEN 255
#define MAX_ADDR_LEN 63                 /* an IPv6 address with a zone */

char *
he_strdup(const char *s)
{
    size_t n;
    char *d;

    if (s == NULL)
        return NULL;
    n = strlen(s) + 1;
    if ((d = malloc(n)) != NULL)
        memcpy(d, s, n);
    return d;
}

int
he_parse_seconds(const char *s, double *out)
{
    char *end;
    double v;

    /* strtod would skip leading white space; the value must not have it */
    if (s == NULL || *s == '\0' || isspace((unsigned char)*s))
        return -1;
    errno = 0;
    v = strtod(s, &end);
    if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
        return -1;
    /* strtod accepts hex floats and "inf"; only plain decimals are wanted */
    if (strpbrk(s, "xXnN") != NULL)
        return -1;
    *out = v;
    return 0;
}

int
he_parse_path(const char *s)
{
    size_t i;

    if (s == NULL || s[0] != '/')
        return -1;
    for (i = 0; s[i]; i++) {
        unsigned char ch = (unsigned char)s[i];

        if (ch <= 0x20 || ch >= 0x7f || ch == '?' || ch == '#')
            return -1;
        if (i >= MAX_PATH_LEN)
            return -1;
    }
    return 0;
}

/* 1..65535 from exactly len digits. */
static int
parse_port(const char *s, size_t len, int *out)
{
    int port = 0;
    size_t i;

    if (len == 0 || len > 5)
        return -1;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        port = port * 10 + (s[i] - '0');
    }
    if (port < 1 || port > 65535)
        return -1;
    *out = port;
    return 0;
}

static int
valid_host(const char *h, size_t len)
{
    size_t i;

    if (len == 0 || len > MAX_HOST_LEN)
        return 0;
    for (i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)h[i];

        if (ch <= 0x20 || ch >= 0x7f || ch == '/' || ch == '[' || ch == ']')
            return 0;
    }
    return 1;
}

int
he_parse_hostport(const char *s, int default_port, he_hostport *out)
{
    const char *host, *colon;
    size_t hlen;
    int port = default_port;

    if (s == NULL || *s == '\0')
        return -1;
    if (s[0] == '[') {
        const char *close = strchr(s, ']');

        if (close == NULL)
            return -1;
        host = s + 1;
        hlen = (size_t)(close - host);
        if (close[1] == ':') {
            if (parse_port(close + 2, strlen(close + 2), &port) != 0)
                return -1;
        } else if (close[1] != '\0') {
            return -1;
        }
    } else {
        host = s;
        colon = strchr(s, ':');
        if (colon != NULL && strchr(colon + 1, ':') == NULL) {
            hlen = (size_t)(colon - s);
            if (parse_port(colon + 1, strlen(colon + 1), &port) != 0)
                return -1;
        } else {
            hlen = strlen(s);           /* a host, or a bare IPv6 address */
        }
    }
    if (!valid_host(host, hlen))
        return -1;
    out->host = malloc(hlen + 1);
    if (out->host == NULL)
        return -1;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = port;
    return 0;
}

/* ---- addresses ---------------------------------------------------------- */

static int
is_link_local(const unsigned char a[16])
{
    return a[0] == 0xfe && (a[1] & 0xc0) == 0x80;
}

/*
 * Text address of len bytes (v4, or v6 with an optional "%zone") into 16
 * bytes, v4 as ::ffff:v4.  zones: 0 none allowed, 1 any, 2 only on a
 * link-local address.  0 or -1.
 */
static int
parse_addr(const char *s, size_t len, unsigned char addr[16], int *is_v4,
           int zones)
{
    char buf[MAX_ADDR_LEN + 1];
    char *zone;
    unsigned char v4[4];

    if (len == 0 || len > MAX_ADDR_LEN || memchr(s, '\0', len) != NULL)
        return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    zone = strchr(buf, '%');
    if (zone != NULL) {
        if (zones == 0 || zone[1] == '\0')
            return -1;
        *zone = '\0';
    }
    if (inet_pton(AF_INET, buf, v4) == 1) {
        if (zone != NULL)
            return -1;                  /* "127.0.0.1%eth0" is not an address */
        memset(addr, 0, 10);
        addr[10] = addr[11] = 0xff;
        memcpy(addr + 12, v4, 4);
        *is_v4 = 1;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) != 1)
        return -1;
    if (zone != NULL && zones == 2 && !is_link_local(addr))
        return -1;
    *is_v4 = 0;
    return 0;
}

/* The prefix length of a contiguous IPv4 netmask, or -1. */
static int
mask_bits(const char *s)
{
    unsigned char m[4];
    unsigned long v;
    int bits = 0;

    if (inet_pton(AF_INET, s, m) != 1)
        return -1;
    v = ((unsigned long)m[0] << 24) | ((unsigned long)m[1] << 16)
        | ((unsigned long)m[2] << 8) | m[3];
    while (bits < 32 && (v & (0x80000000UL >> bits)))
        bits++;
    if (bits < 32 && (v & (0xffffffffUL >> bits)) != 0)
        return -1;                      /* ones after a zero */
    return bits;
}

int
he_parse_cidr(const char *s, he_cidr *out)
{
    const char *slash, *p;
    size_t alen;
    int is_v4, bits;

    if (s == NULL)
        return -1;
    slash = strchr(s, '/');
    alen = slash ? (size_t)(slash - s) : strlen(s);
    if (parse_addr(s, alen, out->addr, &is_v4, 2) != 0)
        return -1;
    if (slash == NULL) {
        bits = is_v4 ? 32 : 128;
    } else if (is_v4 && strchr(slash + 1, '.') != NULL) {
        if ((bits = mask_bits(slash + 1)) < 0)
            return -1;
    } else {
        p = slash + 1;
        if (*p == '\0' || strlen(p) > 3)
            return -1;
        for (bits = 0; *p; p++) {
            if (*p < '0' || *p > '9')
                return -1;
            bits = bits * 10 + (*p - '0');
        }
        if (bits > (is_v4 ? 32 : 128))
            return -1;
    }
    out->bits = is_v4 ? bits + 96 : bits;
    return 0;
}

int
he_parse_client(const char *s, size_t len, unsigned char out[16])
{
    int is_v4;

    if (s == NULL)
        return -1;
    return parse_addr(s, len, out, &is_v4, 1);
}

int
he_cidr_contains(const he_cidr *c, const unsigned char addr[16])
{
    int full = c->bits / 8, rest = c->bits % 8;

    if (memcmp(c->addr, addr, (size_t)full) != 0)
        return 0;
    if (rest == 0)
        return 1;
    return ((c->addr[full] ^ addr[full]) & (0xff << (8 - rest)) & 0xff) == 0;
}

void
he_cidr_format(const he_cidr *c, char *buf, size_t len)
{
    static const unsigned char v4mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                                0xff, 0xff };
    char a[INET6_ADDRSTRLEN];

    if (c->bits >= 96 && memcmp(c->addr, v4mapped, 12) == 0) {
        inet_ntop(AF_INET, c->addr + 12, a, sizeof a);
        snprintf(buf, len, "%s/%d", a, c->bits - 96);
    } else {
        inet_ntop(AF_INET6, c->addr, a, sizeof a);
        snprintf(buf, len, "%s/%d", a, c->bits);
    }
}

/* ---- lists ---------------------------------------------------------------- */

static int
is_sep(char ch)
{
    return ch == ',' || ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

const char *
he_parse_list_next(const char **s, size_t *len)
{
    const char *p = *s, *start;

    if (p == NULL)
        return NULL;
    while (*p && is_sep(*p))
        p++;
    if (*p == '\0') {
        *s = p;
        return NULL;
    }
    start = p;
    while (*p && !is_sep(*p))
        p++;
    *len = (size_t)(p - start);
    *s = p;
    return start;
}
