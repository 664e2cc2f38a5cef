/*
 * he_parse.h - the pure parsers of option values and addresses.
 *
 * No state, no I/O, no allocation but he_strdup and a parsed host name:
 * what the fuzzer links (fuzz/config_fuzz.c).  0 is success, -1 invalid.
 */
#ifndef HE_PARSE_H
#define HE_PARSE_H

#include <stddef.h>

typedef struct {
    char *host;                         /* never NULL once parsed */
    int port;
} he_hostport;

typedef struct {
    unsigned char addr[16];             /* IPv4 stored as ::ffff:a.b.c.d */
    int bits;                           /* prefix length over the 128 bits */
} he_cidr;

/* A malloc'd copy of s ("" stays ""), or NULL for NULL or out of memory:
 * the one string-copy helper of the C core. */
char *he_strdup(const char *s);

/* A finite decimal number of seconds >= 0, nothing before or after it. */
int he_parse_seconds(const char *s, double *out);

/* An absolute URL path: '/', then printable ASCII without '?' or '#'. */
int he_parse_path(const char *s);

/* "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address.  On
 * success out->host is malloc'd (the caller frees it). */
int he_parse_hostport(const char *s, int default_port, he_hostport *out);

/* An allowlist entry: "a.b.c.d", "a.b.c.d/24", "a.b.c.d/255.255.255.0"
 * (a contiguous mask), "v6", "v6/64"; a zone ("%eth0") only on an IPv6
 * link-local address (fe80::/10), where it names the interface and is
 * otherwise ignored.  Host bits beyond the prefix are allowed. */
int he_parse_cidr(const char *s, he_cidr *out);

/* A client address (REMOTE_ADDR): v4 or v6, any zone ignored.  IPv4 is
 * stored as ::ffff:a.b.c.d, so v4-mapped v6 matches v4 entries. */
int he_parse_client(const char *s, size_t len, unsigned char out[16]);

/* 1 if addr is inside c. */
int he_cidr_contains(const he_cidr *c, const unsigned char addr[16]);

/* c as "10.0.0.0/8" or "2001:db8::/32" (host bits as given). */
void he_cidr_format(const he_cidr *c, char *buf, size_t len);

/* The next entry of a list separated by commas and/or blanks: returns its
 * start and sets *len, and moves *s past it; NULL at the end. */
const char *he_parse_list_next(const char **s, size_t *len);

#endif /* HE_PARSE_H */
