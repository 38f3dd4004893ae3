/* An HTTP/1.1 "Hello, World!" server: keep-alive, pipelined requests answered in order,
 * Content-Length bodies skipped, 400 for a malformed request line, 431 past 8 KiB of headers.
 *   example-http_server [--port N] [--host H] [--shards N]
 * SIGINT or SIGTERM closes it cleanly. */
#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <coil/coil.h>

#include "common/example_server.h"

#define MAX_HEAD 8192

static const char OK[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";
static const char OK_HEAD[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n";
static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char TOO_BIG[] = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
static const char NOT_ALLOWED[] = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET, HEAD\r\nContent-Length: 0\r\n\r\n";

/* "METHOD SP target SP HTTP/1.x": 0 (and the method and minor version) or -1. */
static int parse_request_line(const char *p, size_t n, const char **method, size_t *mlen, int *minor)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p)
        return -1;
    for (const char *c = p; c < sp1; c++)
        if (!isupper((unsigned char)*c))
            return -1;
    const char *rest = sp1 + 1;
    const char *sp2 = memchr(rest, ' ', n - (size_t)(rest - p));
    if (!sp2 || sp2 == rest)
        return -1;
    size_t vlen = n - (size_t)(sp2 + 1 - p);
    if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
        return -1;
    *method = p;
    *mlen = (size_t)(sp1 - p);
    *minor = sp2[8] - '0';
    return 0;
}

/* The value of header `name` in the header block, or NULL; *vlen its length. */
static const char *header(const char *h, size_t n, const char *name, size_t *vlen)
{
    size_t nl = strlen(name);
    const char *end = h + n;
    for (const char *line = h; line < end;) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        if (!eol)
            break;
        if ((size_t)(eol - line) > nl && line[nl] == ':' && strncasecmp(line, name, nl) == 0) {
            const char *v = line + nl + 1;
            while (v < eol && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = eol;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
                ve--;
            *vlen = (size_t)(ve - v);
            return v;
        }
        line = eol + 1;
    }
    return NULL;
}

/* Answer with an error and end the connection. Closing with unread input would make the kernel
 * send a reset that can destroy the answer before the client reads it, so half-close and
 * swallow what the client still sends (bounded) until it closes its side. */
static void fail(coil_stream *s, const char *resp, size_t len)
{
    if (coil_stream_write(s, resp, len) != 0 || coil_stream_write_eof(s) != 0)
        return;
    char junk[4096];
    size_t n, total = 0;
    while (total < (1u << 20) && coil_stream_read(s, junk, sizeof junk, &n) == 0 && n > 0)
        total += n;
}

static void http(coil_stream *s, void *arg)
{
    (void)arg;
    char head[MAX_HEAD];
    for (;;) {
        size_t n;
        int err = coil_stream_readuntil(s, "\r\n\r\n", 4, head, sizeof head, &n);
        if (err == COIL_ELIMITOVERRUN) {
            fail(s, TOO_BIG, sizeof TOO_BIG - 1);
            return;
        }
        if (err)
            return; /* the client went away (EOF between requests is the normal end) */
        const char *eol = memchr(head, '\r', n);
        const char *method;
        size_t mlen;
        int minor;
        if (!eol || eol[1] != '\n' || parse_request_line(head, (size_t)(eol - head), &method, &mlen, &minor) != 0) {
            fail(s, BAD, sizeof BAD - 1);
            return;
        }
        const char *hdrs = eol + 2;
        size_t hlen = n - (size_t)(hdrs - head);
        size_t vl;
        const char *v = header(hdrs, hlen, "Content-Length", &vl);
        if (v) {
            char num[24];
            if (vl == 0 || vl >= sizeof num) {
                fail(s, BAD, sizeof BAD - 1);
                return;
            }
            memcpy(num, v, vl);
            num[vl] = 0;
            char *end;
            unsigned long long body = strtoull(num, &end, 10);
            if (*end) {
                fail(s, BAD, sizeof BAD - 1);
                return;
            }
            while (body) { /* skip the request body */
                char junk[4096];
                size_t k;
                if (coil_stream_read(s, junk, body < sizeof junk ? body : sizeof junk, &k) != 0 || k == 0)
                    return;
                body -= k;
            }
        }
        v = header(hdrs, hlen, "Connection", &vl);
        bool keep = minor == 1 ? !(v && vl == 5 && !strncasecmp(v, "close", 5))
                               : (v && vl == 10 && !strncasecmp(v, "keep-alive", 10));
        if (mlen == 3 && !memcmp(method, "GET", 3))
            err = coil_stream_write(s, OK, sizeof OK - 1);
        else if (mlen == 4 && !memcmp(method, "HEAD", 4))
            err = coil_stream_write(s, OK_HEAD, sizeof OK_HEAD - 1);
        else
            err = coil_stream_write(s, NOT_ALLOWED, sizeof NOT_ALLOWED - 1);
        if (err || coil_stream_drain(s) != 0 || !keep)
            return;
    }
}

int main(int argc, char **argv)
{
    static const coil_stream_opts stream = { .limit = MAX_HEAD };
    static const example_server spec = { "http_server", http, 8080, &stream };
    return example_server_main(&spec, argc, argv);
}
