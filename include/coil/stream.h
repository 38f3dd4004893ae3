/* coil: streams and servers (asyncio's StreamReader/StreamWriter and start_server).
 *
 * One coil_stream is both directions of a connected socket. Reads suspend until the data is
 * there; writes never suspend: they buffer, and the loop sends in the background, batched with
 * every other send of the iteration into one submit (writes made while a send is in flight go
 * out together in the next). coil_stream_drain suspends while the buffered bytes exceed the high-water mark, until
 * they fall to the low-water mark, so a writer facing a slow reader holds at most about
 * high_water bytes. Read results are copied into the caller's buffer only after the task has
 * resumed, so buffers on a compact task's stack are fine.
 *
 * One task reads a stream at a time: a read call that has to wait while another task is
 * already waiting in one returns -EBUSY (asyncio raises RuntimeError for concurrent reads).
 *
 * Streams a server accepted read ahead of the handler, until twice the stream's limit of unread
 * bytes is buffered (asyncio pauses its transport there), and go on once the handler has read
 * the buffer down to the limit or needs more: a client that sends without the handler reading
 * costs about 2 x limit per connection (and one 16 KiB receive buffer on top). Other streams
 * receive only while a read call waits.
 *
 * Every waiting call is cancellable (-ECANCELED) and returns COIL_ENOTASK outside a task.
 * Errors from the connection (-ECONNRESET, -EPIPE, ...) are returned by the call that meets
 * them and by every later one of the same direction. Loop thread only. Streams and servers
 * belong to their loop: free them before the loop closes (coil_runner_close and runtime
 * shutdown cancel connection tasks, whose streams the server then frees). */
#ifndef COIL_STREAM_H
#define COIL_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/uio.h>

#include "api.h"
#include "net.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_stream coil_stream;

typedef struct coil_stream_opts {
    size_t limit;            /* readline/readuntil: most bytes before the separator; 0 = 64 KiB */
    size_t high_water;       /* drain waits above this; 0 = 64 KiB */
    size_t low_water;        /* ... until the buffer is down to this; 0 = high_water / 4 */
    double connect_timeout;  /* open_connection: per address tried, seconds; 0 = none */
    int family;              /* open_connection: AF_INET, AF_INET6 or 0 = any */
} coil_stream_opts;

/* Resolve host (off the loop unless numeric), try every address in turn, and return a stream
 * for the first that connects. Suspends. Returns 0 with *out; the last connect error
 * (-ECONNREFUSED, -ETIMEDOUT when connect_timeout passes); COIL_ENONAME/COIL_ERESOLVE;
 * -EINVAL for a port outside 0..65535 or no host; -ECANCELED. */
COIL_API int coil_open_connection(const char *host, int port, const coil_stream_opts *opts, coil_stream **out);
/* The same for a Unix stream socket at `path`. -ENAMETOOLONG for a path that does not fit. */
COIL_API int coil_open_unix_connection(const char *path, const coil_stream_opts *opts, coil_stream **out);
/* Wrap a connected stream socket the stream now owns (closed by coil_stream_close/free even on
 * error). Never suspends. 0, -EINVAL, -ENOMEM. */
COIL_API int coil_stream_from_fd(int fd, const coil_stream_opts *opts, coil_stream **out);

/* ---- reading ---- */

/* Up to n bytes into buf (asyncio read(n)); *nread = 0 only at EOF (or n == 0). Suspends while
 * nothing is buffered. */
COIL_API int coil_stream_read(coil_stream *s, void *buf, size_t n, size_t *nread);
/* Everything up to EOF (asyncio read(-1)), in a malloc'd block (NUL-terminated for
 * convenience) the caller frees. -ENOMEM. */
COIL_API int coil_stream_read_all(coil_stream *s, char **data, size_t *len);
/* Exactly n bytes. COIL_EINCOMPLETE if EOF comes first: the partial data is in buf and *got
 * (optional) says how much. */
COIL_API int coil_stream_readexactly(coil_stream *s, void *buf, size_t n, size_t *got);
/* Up to and including the separator, into buf (cap bytes). The limit bounds the data before the
 * separator, as asyncio's: `limit` bytes and then the separator are accepted. COIL_ELIMITOVERRUN
 * when more than `limit` bytes come before the separator, or the data and the separator do not
 * fit in cap: nothing is consumed, the buffer is left as it was (as asyncio; drop the rest with
 * coil_stream_skipuntil if that is what the protocol wants). COIL_EINCOMPLETE at EOF without the
 * separator: the partial data is consumed and copied (up to cap) to buf, *len says how much. */
COIL_API int coil_stream_readuntil(coil_stream *s, const void *sep, size_t seplen, void *buf, size_t cap, size_t *len);
/* A line ending in '\n' (included), bounded as readuntil. At EOF, the partial last line (*len =
 * 0: nothing left). Past the limit, COIL_ELIMITOVERRUN and the whole line is dropped: through its
 * '\n' if that is buffered (as asyncio); if not, what is buffered goes now and the rest of the line
 * is dropped, through its '\n', by the next readline before it reads its line. A difference from
 * asyncio, which returns that rest as a line of its own once it arrives: a line that comes in
 * pieces could then smuggle its tail in as a line. Any other read call in between (read,
 * readexactly, readuntil, read_all, skipuntil) cancels that pending drop: it gets the bytes as
 * they are. */
COIL_API int coil_stream_readline(coil_stream *s, void *buf, size_t cap, size_t *len);
/* Drop everything up to and including the next separator, suspending while it has not arrived
 * (memory stays bounded however long the skipped data is). 0; COIL_EINCOMPLETE at EOF without
 * the separator (everything was dropped); -EINVAL; the connection's error; -ECANCELED (what was
 * dropped stays dropped). *skipped (optional) says how many bytes went, separator included. */
COIL_API int coil_stream_skipuntil(coil_stream *s, const void *sep, size_t seplen, size_t *skipped);
/* Bytes received and not yet read. Never suspends. */
COIL_API size_t coil_stream_read_buffer_size(const coil_stream *s);
/* EOF seen and nothing left buffered. Never suspends. */
COIL_API bool coil_stream_at_eof(const coil_stream *s);

/* ---- writing ---- */

/* Queue data (never suspends). COIL_ECLOSED after close or write_eof; the connection's error if
 * it has failed; -ENOMEM. */
COIL_API int coil_stream_write(coil_stream *s, const void *data, size_t len);
COIL_API int coil_stream_writelines(coil_stream *s, const struct iovec *iov, size_t n);
/* Suspends while the buffered bytes exceed the high-water mark (until at the low-water mark).
 * Returns 0, the connection's error, -ECANCELED. */
COIL_API int coil_stream_drain(coil_stream *s);
/* Bytes written but not yet accepted by the kernel. */
COIL_API size_t coil_stream_write_buffer_size(const coil_stream *s);
/* Close the write side once the buffer is flushed (shutdown SHUT_WR). Never suspends.
 * -ENOTSUP when !can_write_eof. */
COIL_API int coil_stream_write_eof(coil_stream *s);
COIL_API bool coil_stream_can_write_eof(const coil_stream *s);

/* ---- closing ---- */

/* Start closing: buffered data is still sent, then the socket closes; readers waiting on it
 * return COIL_ECLOSED. Never suspends; idempotent. */
COIL_API void coil_stream_close(coil_stream *s);
COIL_API bool coil_stream_is_closing(const coil_stream *s);
/* Suspends until the socket is closed (call close first). 0 or -ECANCELED. */
COIL_API int coil_stream_wait_closed(coil_stream *s);
/* Close (if not yet) and release the handle; the memory goes once pending sends are done. */
COIL_API void coil_stream_free(coil_stream *s);

/* asyncio's get_extra_info: "peername" and "sockname" fill a coil_sockaddr, "socket" an int
 * (the fd, still owned by the stream). 0, -ENOENT for an unknown name, -EINVAL for a short
 * `out`, or getsockname/getpeername's error. Never suspends. */
COIL_API int coil_stream_get_extra_info(coil_stream *s, const char *name, void *out, size_t outlen);

/* ---- servers ---- */

typedef struct coil_server coil_server;

/* Runs in its own task per connection. When it returns, the stream is closed and freed. */
typedef void (*coil_conn_handler)(coil_stream *s, void *arg);

typedef struct coil_server_opts {
    int backlog;               /* listen(2) backlog; 0 = 4096 */
    int reuse_address;         /* SO_REUSEADDR; 0 = on (asyncio's default on Unix), -1 = off */
    int reuse_port;            /* SO_REUSEPORT: start the same server on every shard's loop */
    int family;                /* AF_INET, AF_INET6 or 0 = every address host resolves to */
    const coil_stream_opts *stream; /* for each connection's stream */
    coil_task_opts task;       /* for each connection's task (name ignored) */
} coil_server_opts;

/* Listen on host:port (host NULL = every interface; port 0 = an ephemeral port, the same for
 * all of the server's sockets when possible) and serve each connection with handler(stream, arg)
 * in a new task. Suspends while names resolve. Returns 0 with *out (already serving, as
 * asyncio's start_server), COIL_ENONAME, -EADDRINUSE, -EACCES, -ENOMEM, -EINVAL.
 * When accept runs out of fds (EMFILE/ENFILE/ENOBUFS), the server stops accepting for 100 ms,
 * doubling to 1.6 s while it lasts, and then resumes by itself. */
COIL_API int coil_start_server(coil_conn_handler handler, void *arg, const char *host, int port,
                               const coil_server_opts *opts, coil_server **out);
/* The same on a Unix stream socket at path (a stale socket file is replaced). */
COIL_API int coil_start_unix_server(coil_conn_handler handler, void *arg, const char *path,
                                    const coil_server_opts *opts, coil_server **out);
/* Suspends until the server is closed; returns 0 then. Cancelling it, as asyncio 3.12+, closes
 * the server, waits as coil_server_wait_closed (until every connection's task has finished) and
 * then returns -ECANCELED; a second cancel during that wait ends it at once (-ECANCELED too, the
 * connections still being served). So to stop promptly, end the connections first
 * (coil_server_close_clients), or wait on coil_server_wait_closed instead, whose cancellation
 * returns at once. COIL_ECLOSED if already closed. */
COIL_API int coil_server_serve_forever(coil_server *srv);
/* Stop listening (connections being served go on). Never suspends; idempotent. */
COIL_API void coil_server_close(coil_server *srv);
/* Cancel every connection's task (asyncio 3.13 close_clients/abort_clients). Never suspends. */
COIL_API void coil_server_close_clients(coil_server *srv);
/* Suspends until closed and every connection's task has finished. 0 or -ECANCELED. */
COIL_API int coil_server_wait_closed(coil_server *srv);
COIL_API bool coil_server_is_serving(const coil_server *srv);
COIL_API size_t coil_server_socket_count(const coil_server *srv);
/* The i-th listening fd, or -1. */
COIL_API int coil_server_socket(const coil_server *srv, size_t i);
/* The bound port (of the first socket), or -1 (Unix). */
COIL_API int coil_server_port(const coil_server *srv);
/* Connections being served now. */
COIL_API size_t coil_server_connection_count(const coil_server *srv);
/* Close, cancel what is still served, and free once all of it is done (the memory stays until
 * the last connection task and accept operation finish). Never suspends. */
COIL_API void coil_server_free(coil_server *srv);

#ifdef __cplusplus
}
#endif
#endif
