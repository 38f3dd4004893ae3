/* An HTTP/1.1 "Hello, World!" server: keep-alive, pipelined requests answered in order,
 * Content-Length bodies skipped, 431 past 8 KiB of headers.
 *   example-http_server [--port N] [--host H] [--shards N] [--request-timeout S] [--idle-timeout S]
 * SIGINT or SIGTERM closes it cleanly.
 *
 * Requests that two parsers could read differently are refused, and the connection closed, so
 * that nothing can be smuggled past a proxy in front of it: 400 for a Content-Length that is not
 * plain digits within 64 bits, for two Content-Length fields, for a Transfer-Encoding together
 * with a Content-Length, for whitespace before a field's colon, folded lines and bare CR or LF;
 * 501 for any Transfer-Encoding, chunked included (request bodies are not decoded here, so a
 * chunked one is refused rather than guessed at).
 *
 * Timeouts keep slow clients from holding connections: a request (head and body) must arrive
 * within --request-timeout seconds of its first byte (default 10), and a connection waiting for
 * its next request, or for the client to take a response, is closed after --idle-timeout seconds
 * (default 30). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
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
static const char NOT_IMPLEMENTED[] = "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/* Set from the command line before any shard starts, read-only after. */
static double request_timeout = 10, idle_timeout = 30;

/* "METHOD SP target SP HTTP/1.x": 0 (and the method and minor version) or -1. */
static int parse_request_line(const char *p, size_t n, const char **method, size_t *mlen, int *minor)
{
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1 || sp1 == p)
        return -1;
    for (const char *c = p; c < sp1; c++)
        if (*c < 'A' || *c > 'Z')
            return -1;
    const char *rest = sp1 + 1;
    const char *sp2 = memchr(rest, ' ', n - (size_t)(rest - p));
    if (!sp2 || sp2 == rest)
        return -1;
    for (const char *c = rest; c < sp2; c++)
        if ((unsigned char)*c <= ' ' || *c == 0x7f)
            return -1; /* a control byte (a bare LF, say) in the target */
    size_t vlen = n - (size_t)(sp2 + 1 - p);
    if (vlen != 8 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 || (sp2[8] != '0' && sp2[8] != '1'))
        return -1;
    *method = p;
    *mlen = (size_t)(sp1 - p);
    *minor = sp2[8] - '0';
    return 0;
}

/* What the header fields say about framing and the connection. */
typedef struct request {
    bool has_length, has_transfer_encoding, close, keep_alive;
    uint64_t length;
} request;

/* RFC 9110 tchar: what a field name is made of. Spelled out in ASCII rather than with ctype, which
 * follows the locale and costs a call per byte of every name. */
static bool is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    switch (c) {
    case '!': case '#': case '$': case '%': case '&': case '\'': case '*': case '+':
    case '-': case '.': case '^': case '_': case '`': case '|': case '~':
        return true;
    default:
        return false;
    }
}

static bool name_is(const char *name, size_t n, const char *want)
{
    return n == strlen(want) && strncasecmp(name, want, n) == 0;
}

/* Content-Length: 1*DIGIT that fits in 64 bits (no sign, no list, no spaces inside). */
static int parse_length(const char *v, size_t n, uint64_t *out)
{
    if (n == 0)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -1;
        unsigned d = (unsigned)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return -1;
        x = x * 10 + d;
    }
    *out = x;
    return 0;
}

/* Does the comma-separated list v hold the token `tok`? */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t e = j;
        while (e > i && (v[e - 1] == ' ' || v[e - 1] == '\t'))
            e--;
        if (e - i == tl && strncasecmp(v + i, tok, tl) == 0)
            return true;
        i = j;
    }
    return false;
}

/* The header fields h[0, n), each ending in CRLF, the last one the empty line. Returns 0, or the
 * response to refuse the request with. */
static const char *parse_fields(const char *h, size_t n, request *r)
{
    const char *end = h + n;
    for (const char *line = h; line < end;) {
        const char *lf = memchr(line, '\n', (size_t)(end - line));
        if (!lf || lf == line || lf[-1] != '\r' || memchr(line, '\r', (size_t)(lf - 1 - line)))
            return BAD; /* a bare LF or CR: parsers disagree on where lines end */
        const char *eol = lf - 1;
        if (eol == line)
            return 0; /* the empty line: the head is over */
        if (*line == ' ' || *line == '\t')
            return BAD; /* obsolete line folding */
        const char *colon = line;
        while (colon < eol && is_tchar((unsigned char)*colon))
            colon++;
        if (colon == line || colon == eol || *colon != ':')
            return BAD; /* no name, or whitespace (or anything else) before the colon */
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t nl = (size_t)(colon - line), vl = (size_t)(ve - v);
        if (name_is(line, nl, "Content-Length")) {
            if (r->has_length || parse_length(v, vl, &r->length) != 0)
                return BAD;
            r->has_length = true;
        } else if (name_is(line, nl, "Transfer-Encoding")) {
            r->has_transfer_encoding = true;
        } else if (name_is(line, nl, "Connection")) {
            r->close |= has_token(v, vl, "close");
            r->keep_alive |= has_token(v, vl, "keep-alive");
        }
        line = lf + 1;
    }
    return BAD; /* no empty line: cannot happen after readuntil found one */
}

/* Move the connection's deadline to `s` seconds from now. */
static void deadline_in(coil_timeout_scope *deadline, double s)
{
    coil_timeout_reschedule(deadline, coil_loop_time(coil_get_running_loop()) + s);
}

/* Answer with an error and end the connection. Closing with unread input would make the kernel
 * send a reset that can destroy the answer before the client reads it, so half-close and
 * swallow what the client still sends (bounded in bytes and time) until it closes its side. */
static void fail(coil_stream *s, coil_timeout_scope *deadline, const char *resp)
{
    if (coil_stream_write(s, resp, strlen(resp)) != 0 || coil_stream_write_eof(s) != 0)
        return;
    deadline_in(deadline, request_timeout);
    char junk[4096];
    size_t n, total = 0;
    while (total < (1u << 20) && coil_stream_read(s, junk, sizeof junk, &n) == 0 && n > 0)
        total += n;
}

/* Serve requests until the client is done, a request is refused, or the deadline cancels us. */
static void serve(coil_stream *s, coil_timeout_scope *deadline)
{
    char head[MAX_HEAD];
    for (;;) {
        /* Waiting for a request: idle, since the scope began or the last answer was written. Its
         * first byte starts the clock for the whole of it. */
        size_t n;
        if (coil_stream_read(s, head, 1, &n) != 0 || n == 0)
            return; /* the client went away (EOF between requests is the normal end) */
        deadline_in(deadline, request_timeout);
        int err = coil_stream_readuntil(s, "\r\n\r\n", 4, head + 1, sizeof head - 1, &n);
        if (err == COIL_ELIMITOVERRUN) {
            fail(s, deadline, TOO_BIG);
            return;
        }
        if (err)
            return;
        n += 1;
        const char *eol = memchr(head, '\r', n);
        const char *method;
        size_t mlen;
        int minor;
        if (!eol || eol[1] != '\n' || parse_request_line(head, (size_t)(eol - head), &method, &mlen, &minor) != 0) {
            fail(s, deadline, BAD);
            return;
        }
        request r = { 0 };
        const char *refuse = parse_fields(eol + 2, n - (size_t)(eol + 2 - head), &r);
        if (!refuse && r.has_transfer_encoding)
            refuse = r.has_length ? BAD : NOT_IMPLEMENTED;
        if (refuse) {
            fail(s, deadline, refuse);
            return;
        }
        for (uint64_t body = r.length; body;) { /* skip the request body */
            char junk[4096];
            size_t k;
            if (coil_stream_read(s, junk, body < sizeof junk ? (size_t)body : sizeof junk, &k) != 0 || k == 0)
                return;
            body -= k;
        }
        bool keep = minor == 1 ? !r.close : r.keep_alive && !r.close;
        if (mlen == 3 && !memcmp(method, "GET", 3))
            err = coil_stream_write(s, OK, sizeof OK - 1);
        else if (mlen == 4 && !memcmp(method, "HEAD", 4))
            err = coil_stream_write(s, OK_HEAD, sizeof OK_HEAD - 1);
        else
            err = coil_stream_write(s, NOT_ALLOWED, sizeof NOT_ALLOWED - 1);
        deadline_in(deadline, idle_timeout); /* idle: a client that does not take its answer or send the next request */
        if (err || coil_stream_drain(s) != 0 || !keep)
            return;
    }
}

static void http(coil_stream *s, void *arg)
{
    (void)arg;
    coil_timeout_scope *deadline;
    if (coil_timeout(&deadline, idle_timeout) != 0)
        return;
    if (coil_timeout_enter(deadline) == 0) {
        serve(s, deadline);
        coil_timeout_exit(deadline, 0);
    }
    coil_timeout_free(deadline);
}

static int parse_seconds(const char *v, double *out)
{
    char *end;
    double d = strtod(v, &end);
    if (end == v || *end || !(d > 0) || d > 1e6)
        return -1;
    *out = d;
    return 0;
}

static int option(const char *name, const char *value)
{
    if (!strcmp(name, "--request-timeout"))
        return parse_seconds(value, &request_timeout);
    if (!strcmp(name, "--idle-timeout"))
        return parse_seconds(value, &idle_timeout);
    return -1;
}

int main(int argc, char **argv)
{
    static const coil_stream_opts stream = { .limit = MAX_HEAD };
    static const example_server spec = { .name = "http_server", .handler = http, .default_port = 8080,
                                         .stream = &stream, .option = option,
                                         .usage = "[--request-timeout S] [--idle-timeout S]" };
    return example_server_main(&spec, argc, argv);
}
