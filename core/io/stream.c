/* coil core: streams (coil/stream.h), both directions of a connected socket in one object.
 *
 * Reading: the reading task receives straight into the stream's heap buffer (so no bounce, and
 * the task is the operation record, as in fdio.c). Writing: write() queues the bytes and, if no
 * send is in flight, prepares one; it reaches the kernel with the loop's next submit, together
 * with every other connection's (one io_uring_enter for all of them, measured cheaper than a
 * send(2) per write). Writes made while a send is in flight join the next one. Two buffers take turns: `sbuf` belongs to the kernel while a send is in flight, `wbuf`
 * collects new writes, so a growing queue never moves memory the kernel is reading.
 *
 * Streams a server accepted read differently: a multishot recv per connection reads ahead of
 * the handler, taking buffers from the loop's provided-buffer ring; each completion is copied
 * into the stream's buffer and the kernel's buffer is handed straight back. Reading ahead stops
 * at twice the stream's limit of unread bytes (asyncio pauses its transport there), so a client
 * that sends faster than the handler reads costs memory that follows the limit the user set.
 * Each multishot is armed with a byte budget (sqe->optlen, which the kernel honours since 6.17):
 * it ends by itself once the budget is delivered, at most one provided buffer past it, and is
 * armed again when the reader drains the buffer back to the limit or needs more. Cancelling an
 * unbudgeted multishot at the bound would not do: before the cancel lands the kernel can fill
 * every buffer of the ring for one connection. So a kernel that refuses the budget gets one-shot
 * recvs instead, each taking one provided buffer, armed again while below the bound. */
#include <errno.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "io/net_internal.h"

#define READ_CHUNK (16 * 1024)

struct coil_stream {
    coil__io_cb send_cb;        /* first: the background send's completion */
    coil__io_cb recv_cb;        /* the multishot recv's completions (server streams) */
    coil_loop *loop;
    int fd;
    int slot;                   /* the fd's registered slot in the loop's driver, or -1 */
    unsigned refs;              /* the handle, a send in flight, a reader inside recv */
    size_t limit, high, low;
    /* read side: data is rbuf[rpos, rlen) */
    char *rbuf;
    size_t rcap, rpos, rlen;
    bool eof;
    int rerr;
    coil_task *reader;
    coil__bufring *br;          /* set: read through multishot recv */
    bool recv_armed, fd_open;
    bool recv_budgeted;         /* armed as a multishot with a byte budget (else one-shot) */
    bool skip_line;             /* readline overran inside a line: drop through its '\n' next */
    coil__wlist rwait;          /* a reader waiting for the multishot to deliver */
    /* write side */
    char *wbuf, *sbuf;
    size_t wlen, wcap, soff, slen, scap;
    bool sending, eof_requested, eof_sent, stream_sock;
    bool send_waits;            /* the socket was full at the last send: the next one waits */
    int werr;
    coil__wlist drainers;
    /* lifecycle */
    bool closing, closed, freed;
    coil__wlist closers;
};

static void start_send(coil_stream *s);
static void finish_close(coil_stream *s);

static void release_fd(coil_stream *s)
{
    /* Never while an operation naming the fd may still be unsubmitted: the number could be
     * reused. */
    if (s->fd_open && !s->recv_armed && !s->reader) {
        s->fd_open = false;
        coil__backend_file_remove(s->loop, s->slot);
        s->slot = -1;
        close(s->fd);
    }
}

/* Name the stream's socket in op: by its registered slot when it has one. */
static void use_file(const coil_stream *s, coil__op *op)
{
    if (s->slot >= 0) {
        op->fd = s->slot;
        op->flags |= COIL__OPF_FIXED;
    } else {
        op->fd = s->fd;
    }
}

static void destroy(coil_stream *s)
{
    release_fd(s); /* freed while a reader held on: nothing else is in flight now */
    coil__bufring_unref(s->br);
    free(s->rbuf);
    free(s->wbuf);
    free(s->sbuf);
    free(s);
}

static bool unref(coil_stream *s)
{
    if (--s->refs)
        return false;
    destroy(s);
    return true;
}

static size_t buffered(const coil_stream *s) { return (s->slen - s->soff) + s->wlen; }

int coil__stream_new(coil_loop *loop, int fd, const coil_stream_opts *opts, coil_stream **out)
{
    coil_stream *s = calloc(1, sizeof *s);
    if (!s) {
        close(fd);
        return -ENOMEM;
    }
    s->loop = loop;
    s->fd = fd;
    s->fd_open = true;
    s->refs = 1;
    s->limit = opts && opts->limit ? opts->limit : 64 * 1024;
    s->high = opts && opts->high_water ? opts->high_water : 64 * 1024;
    s->low = opts && opts->low_water ? opts->low_water : s->high / 4;
    if (s->low > s->high)
        s->low = s->high;
    int type = 0;
    socklen_t tl = sizeof type;
    bool sock = getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &tl) == 0;
    s->stream_sock = sock && type == SOCK_STREAM;
    /* Every recv and send on a socket goes through the driver; a registered slot saves each one
     * the file lookup. Other fds (a pipe a user handed in) keep the plain path. */
    s->slot = sock ? coil__backend_file_add(loop, fd) : -1;
    *out = s;
    return 0;
}

int coil_stream_from_fd(int fd, const coil_stream_opts *opts, coil_stream **out)
{
    coil_loop *loop = coil_get_event_loop();
    if (fd < 0 || !out)
        return -EINVAL;
    if (!loop) {
        close(fd);
        return -EINVAL;
    }
    return coil__stream_new(loop, fd, opts, out);
}

/* ---- reading ---- */

void coil__stream_use_bufring(coil_stream *s, coil__bufring *br)
{
    coil__bufring_ref(br);
    s->br = br;
}

/* Unread bytes past which a server stream stops reading ahead: asyncio's 2 x limit. */
static size_t pause_bytes(const coil_stream *s) { return s->limit > SIZE_MAX / 2 ? SIZE_MAX : 2 * s->limit; }

static size_t avail(const coil_stream *s) { return s->rlen - s->rpos; }

/* Whether the kernel takes a multishot recv's byte budget: -1 unknown, 1 yes, 0 no (it refuses
 * the SQE with -EINVAL). Learnt once per process; any loop thread may store it. */
static atomic_int budget_support = -1;

static void recv_cancel(coil_stream *s) { coil__backend_cancel_cb(s->loop, &s->recv_cb); }

static int reserve(coil_stream *s, size_t more)
{
    if (s->rpos && s->rpos == s->rlen)
        s->rpos = s->rlen = 0;
    if (s->rlen + more <= s->rcap)
        return 0;
    if (s->rpos) {
        memmove(s->rbuf, s->rbuf + s->rpos, s->rlen - s->rpos);
        s->rlen -= s->rpos;
        s->rpos = 0;
        if (s->rlen + more <= s->rcap)
            return 0;
    }
    size_t cap = s->rcap ? s->rcap : READ_CHUNK;
    while (cap < s->rlen + more)
        cap *= 2;
    char *nb = realloc(s->rbuf, cap);
    if (!nb)
        return -ENOMEM;
    s->rbuf = nb;
    s->rcap = cap;
    return 0;
}

static void recv_done(coil__io_cb *cb, const coil__io_done *done);

/* Arm the background recv: a multishot that delivers about `want` more bytes (at least one
 * buffer's worth), or one buffer's worth where the kernel takes no budget. Takes the reference
 * recv_done gives back. false: no room in the driver now. */
static bool arm_recv(coil_stream *s, size_t want)
{
    bool budgeted = atomic_load_explicit(&budget_support, memory_order_relaxed) != 0;
    coil__op op = { .code = COIL__OP_RECV, .bufs = s->br };
    if (budgeted) {
        op.code = COIL__OP_RECV_MULTISHOT;
        op.len = want == 0 ? 1 : want;
    }
    use_file(s, &op);
    s->recv_cb.complete = recv_done;
    if (coil__backend_submit_cb(s->loop, &op, &s->recv_cb) != 0)
        return false;
    s->recv_budgeted = budgeted;
    s->recv_armed = true;
    s->refs++;
    return true;
}

/* What a new multishot should deliver: up to the pause bound, or what the reader asks for. */
static size_t read_ahead(const coil_stream *s, size_t want)
{
    size_t room = pause_bytes(s) > avail(s) ? pause_bytes(s) - avail(s) : 0;
    return room > want ? room : want;
}

static void recv_done(coil__io_cb *cb, const coil__io_done *done)
{
    coil_stream *s = coil__container_of(cb, coil_stream, recv_cb);
    int res = done->res;
    bool more = done->more;
    if (res == -EINVAL && s->recv_budgeted && !more) {
        /* A kernel older than the budget refuses the SQE: arm without one from now on. */
        atomic_store_explicit(&budget_support, 0, memory_order_relaxed);
        res = -ENOBUFS; /* ended without data or error: armed again below or by the reader */
    } else if (res > 0 && s->recv_budgeted) {
        atomic_store_explicit(&budget_support, 1, memory_order_relaxed);
    }
    /* The bytes are in a provided buffer, which goes back to the pool when this returns. */
    if (done->buf && res > 0 && !s->closing) {
        int err = reserve(s, (size_t)res);
        if (err)
            s->rerr = err;
        else {
            memcpy(s->rbuf + s->rlen, done->buf, (size_t)res);
            s->rlen += (size_t)res;
        }
    }
    if (res == 0)
        s->eof = true;
    else if (res < 0 && res != -ECANCELED && res != -ENOBUFS && !s->rerr)
        s->rerr = res;
    coil__wlist_wake_all(&s->rwait, 0);
    if (more)
        return;
    s->recv_armed = false;
    /* Ended with data (a multishot's budget delivered, or a one-shot's buffer): read on while
     * below the bound; a multishot only once the reader is back within its limit, where asyncio
     * resumes its transport, so that each arm brings a worthwhile budget. */
    bool again = s->recv_budgeted ? avail(s) <= s->limit : avail(s) < pause_bytes(s);
    if (res > 0 && !s->closing && !s->eof && !s->rerr && again) {
        s->refs--; /* arm_recv takes the reference again */
        if (arm_recv(s, read_ahead(s, 0)))
            return;
        s->refs++;
    }
    if (s->closed)
        release_fd(s);
    unref(s);
}

static void rwait_cancel(coil_task *t)
{
    coil_stream *s = t->wait_obj;
    coil__wlist_remove(&s->rwait, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}

static const coil__wait_ops rwait_ops = { "stream read", rwait_cancel, true, NULL };

/* fill() for multishot streams: arm the recv if it is not, then wait for a completion. */
static int fill_multishot(coil_stream *s, coil_task *t, size_t want)
{
    if (!s->recv_armed && !arm_recv(s, read_ahead(s, want)))
        return -EBUSY;
    t->wnode.wake = coil__wnode_wake_task;
    coil__wlist_append(&s->rwait, &t->wnode);
    s->reader = t;
    s->refs++;
    int r = coil__task_suspend(&rwait_ops, s);
    s->reader = NULL;
    if (unref(s))
        return COIL_ECLOSED;
    if (s->closing) {
        if (!s->sending && !s->closed)
            finish_close(s); /* close waited for this reader */
        release_fd(s);
        return r ? r : COIL_ECLOSED;
    }
    if (r)
        return r;
    if (s->rerr && s->rlen == s->rpos)
        return s->rerr;
    return 0;
}

/* Receive more into the buffer, up to `want` bytes buffered in all (the buffer grows to fit).
 * Returns 0 (data or EOF arrived; check s->eof), the connection's error, -ECANCELED, or
 * COIL_ECLOSED if the stream was closed meanwhile. */
static int fill(coil_stream *s, coil_task *t, size_t want)
{
    if (s->rerr)
        return s->rerr;
    if (s->closing)
        return COIL_ECLOSED;
    if (s->reader)
        return -EBUSY; /* asyncio: another coroutine is already waiting for incoming data */
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    if (s->br)
        return fill_multishot(s, t, want);
    if (s->rpos) {
        memmove(s->rbuf, s->rbuf + s->rpos, s->rlen - s->rpos);
        s->rlen -= s->rpos;
        s->rpos = 0;
    }
    size_t need = s->rlen + (want > READ_CHUNK ? want : READ_CHUNK);
    if (need > s->rcap) {
        size_t cap = s->rcap ? s->rcap : READ_CHUNK;
        while (cap < need)
            cap *= 2;
        char *nb = realloc(s->rbuf, cap);
        if (!nb)
            return -ENOMEM;
        s->rbuf = nb;
        s->rcap = cap;
    }
    coil__op op = { .code = COIL__OP_RECV, .buf = s->rbuf + s->rlen, .len = s->rcap - s->rlen };
    use_file(s, &op);
    if (coil__backend_submit_task(t->loop, &op, t) != 0)
        return -EBUSY;
    uint16_t cancels = t->cancel_requests;
    s->reader = t;
    s->refs++;
    int res = coil__io_suspend(t);
    if (res > 0)
        coil__kernel_wrote(s->rbuf + s->rlen, (size_t)res);
    s->reader = NULL;
    if (unref(s))
        return COIL_ECLOSED;
    if (s->closing) {
        /* close waited for this recv to let go of the fd (its number must not be reused while
         * an operation naming it may still be unsubmitted). */
        if (!s->sending && !s->closed)
            finish_close(s);
        if (res >= 0 || t->cancel_requests == cancels)
            return COIL_ECLOSED;
    }
    if (res > 0) {
        s->rlen += (size_t)res;
        return 0;
    }
    if (res == 0) {
        s->eof = true;
        return 0;
    }
    if (res == -ECANCELED)
        return -ECANCELED;
    s->rerr = res;
    return res;
}

static size_t take(coil_stream *s, void *buf, size_t n)
{
    size_t k = avail(s) < n ? avail(s) : n;
    if (k)
        memcpy(buf, s->rbuf + s->rpos, k);
    s->rpos += k;
    if (s->rpos == s->rlen)
        s->rpos = s->rlen = 0;
    return k;
}

static coil_task *reading_task(coil_stream *s, int *err)
{
    coil_task *t = coil__running_task();
    *err = !t ? COIL_ENOTASK : !s ? -EINVAL : 0;
    return t;
}

int coil_stream_read(coil_stream *s, void *buf, size_t n, size_t *nread)
{
    int err;
    coil_task *t = reading_task(s, &err);
    if (err)
        return err;
    s->skip_line = false;
    if (n == 0) {
        if (nread)
            *nread = 0;
        return 0;
    }
    while (!avail(s) && !s->eof) {
        err = fill(s, t, 0);
        if (err)
            return err;
    }
    size_t k = take(s, buf, n);
    if (nread)
        *nread = k;
    return 0;
}

int coil_stream_read_all(coil_stream *s, char **data, size_t *len)
{
    int err;
    coil_task *t = reading_task(s, &err);
    if (err)
        return err;
    s->skip_line = false;
    if (!data)
        return -EINVAL;
    while (!s->eof) {
        err = fill(s, t, avail(s));
        if (err)
            return err;
    }
    size_t n = avail(s);
    char *out = malloc(n + 1);
    if (!out)
        return -ENOMEM;
    take(s, out, n);
    out[n] = 0;
    *data = out;
    if (len)
        *len = n;
    return 0;
}

int coil_stream_readexactly(coil_stream *s, void *buf, size_t n, size_t *got)
{
    int err;
    coil_task *t = reading_task(s, &err);
    if (err)
        return err;
    s->skip_line = false;
    while (avail(s) < n && !s->eof) {
        err = fill(s, t, n - avail(s));
        if (err)
            return err;
    }
    if (avail(s) < n) {
        size_t k = take(s, buf, n);
        if (got)
            *got = k;
        return COIL_EINCOMPLETE;
    }
    take(s, buf, n);
    if (got)
        *got = n;
    return 0;
}

/* glibc's memmem builds a shift table on every call, which costs more than the search itself for
 * the short separators and short buffers of a protocol's framing. For those, memchr finds each
 * place the separator could start and memcmp checks it; the length bound keeps the worst case at
 * that many compares per byte. */
enum { SHORT_SEP = 16 };

static const char *search(const char *h, size_t n, const char *sep, size_t seplen)
{
    if (seplen > SHORT_SEP)
        return memmem(h, n, sep, seplen);
    if (n < seplen)
        return NULL;
    const char *last = h + (n - seplen); /* the last place sep could start */
    for (const char *p = h; p <= last; p++) {
        p = memchr(p, sep[0], (size_t)(last - p) + 1);
        if (!p)
            return NULL;
        if (memcmp(p + 1, sep + 1, seplen - 1) == 0)
            return p;
    }
    return NULL;
}

/* Where does sep end in the buffer (offset past it, from rpos), searching from `from`? 0 if absent. */
static size_t find_sep(const coil_stream *s, const void *sep, size_t seplen, size_t from)
{
    const char *base = s->rbuf + s->rpos;
    size_t n = avail(s);
    if (n < seplen)
        return 0;
    const char *p = search(base + from, n - from, (const char *)sep, seplen);
    return p ? (size_t)(p - base) + seplen : 0;
}

/* Drop the first k buffered bytes. */
static void drop(coil_stream *s, size_t k)
{
    s->rpos += k;
    if (s->rpos == s->rlen)
        s->rpos = s->rlen = 0;
}

/* Wait until sep is buffered with at most `limit` bytes before it (asyncio: the limit bounds the
 * data, the separator comes on top) and fits, with what precedes it, in cap bytes. Returns the
 * offset just past it, or 0 with *err: COIL_ELIMITOVERRUN (nothing consumed), COIL_EINCOMPLETE
 * (EOF first), or fill's error. */
static size_t wait_sep(coil_stream *s, coil_task *t, const void *sep, size_t seplen, size_t cap, int *err)
{
    size_t from = 0;
    for (;;) {
        size_t end = find_sep(s, sep, seplen, from);
        if (end) {
            *err = end - seplen > s->limit || end > cap ? COIL_ELIMITOVERRUN : 0;
            return *err ? 0 : end;
        }
        /* Absent: the separator can start no earlier than n - seplen + 1 and end no earlier
         * than n + 1 (asyncio's "separator is not found, and chunk exceed the limit"). */
        size_t n = avail(s);
        if ((n >= seplen && n - seplen + 1 > s->limit) || n >= cap) {
            *err = COIL_ELIMITOVERRUN;
            return 0;
        }
        if (s->eof) {
            *err = COIL_EINCOMPLETE;
            return 0;
        }
        from = n >= seplen ? n - seplen + 1 : 0;
        *err = fill(s, t, 0);
        if (*err)
            return 0;
    }
}

/* Drop everything through the next sep, as it arrives; memory stays at what one fill brings.
 * 0, COIL_EINCOMPLETE (EOF first: all of it dropped), or fill's error. *skipped: bytes dropped. */
static int skip_through(coil_stream *s, coil_task *t, const void *sep, size_t seplen, size_t *skipped)
{
    size_t total = 0;
    int err;
    for (;;) {
        size_t end = find_sep(s, sep, seplen, 0);
        if (end) {
            drop(s, end);
            total += end;
            err = 0;
            break;
        }
        /* Keep what could be the start of a separator split across two arrivals. */
        size_t n = avail(s);
        size_t keep = n < seplen - 1 ? n : seplen - 1;
        drop(s, n - keep);
        total += n - keep;
        if (s->eof) {
            drop(s, keep);
            total += keep;
            err = COIL_EINCOMPLETE;
            break;
        }
        if ((err = fill(s, t, 0)))
            break;
    }
    if (skipped)
        *skipped = total;
    return err;
}

int coil_stream_readuntil(coil_stream *s, const void *sep, size_t seplen, void *buf, size_t cap, size_t *len)
{
    int err;
    coil_task *t = reading_task(s, &err);
    if (err)
        return err;
    if (!sep || seplen == 0 || (!buf && cap))
        return -EINVAL;
    s->skip_line = false;
    size_t end = wait_sep(s, t, sep, seplen, cap, &err);
    if (err == COIL_EINCOMPLETE) {
        size_t k = take(s, buf, cap);
        s->rpos = s->rlen = 0; /* the partial data is handed over; what did not fit is dropped */
        if (len)
            *len = k;
        return err;
    }
    if (err)
        return err;
    take(s, buf, end);
    if (len)
        *len = end;
    return 0;
}

int coil_stream_readline(coil_stream *s, void *buf, size_t cap, size_t *len)
{
    int err;
    coil_task *t = reading_task(s, &err);
    if (err)
        return err;
    if (!buf && cap)
        return -EINVAL;
    if (s->skip_line) {
        /* The rest of a line that overran is not a line of its own. */
        err = skip_through(s, t, "\n", 1, NULL);
        if (err && err != COIL_EINCOMPLETE)
            return err;
        s->skip_line = false;
    }
    size_t end = wait_sep(s, t, "\n", 1, cap, &err);
    if (err == COIL_EINCOMPLETE) {
        size_t k = take(s, buf, cap);
        s->rpos = s->rlen = 0;
        if (len)
            *len = k;
        return 0;
    }
    if (err == COIL_ELIMITOVERRUN) {
        size_t through = find_sep(s, "\n", 1, 0);
        drop(s, through ? through : avail(s));
        s->skip_line = !through;
        return err;
    }
    if (err)
        return err;
    take(s, buf, end);
    if (len)
        *len = end;
    return 0;
}

int coil_stream_skipuntil(coil_stream *s, const void *sep, size_t seplen, size_t *skipped)
{
    int err;
    coil_task *t = reading_task(s, &err);
    if (err)
        return err;
    if (!sep || seplen == 0)
        return -EINVAL;
    s->skip_line = false;
    return skip_through(s, t, sep, seplen, skipped);
}

size_t coil_stream_read_buffer_size(const coil_stream *s) { return s ? avail(s) : 0; }

bool coil__stream_reading_ahead(const coil_stream *s) { return s->recv_armed; }

bool coil_stream_at_eof(const coil_stream *s) { return s->eof && avail(s) == 0; }

/* ---- writing ---- */

static void fail_write(coil_stream *s, int err)
{
    if (!s->werr)
        s->werr = err;
    s->wlen = 0;
    s->soff = s->slen = 0;
    coil__wlist_wake_all(&s->drainers, err);
}

/* Everything handed to the kernel: the deferred write_eof and close can go ahead. */
static void flushed(coil_stream *s)
{
    if (s->eof_requested && !s->eof_sent && !s->closed) {
        s->eof_sent = true;
        shutdown(s->fd, SHUT_WR);
    }
    if (s->closing && !s->closed && !s->reader)
        finish_close(s);
}

/* Something now depends on the send in flight: bytes queued behind it, a drain, an EOF or a
 * close deferred until it is done. If it is a try, whose completion the driver makes only after
 * a submission, that must happen before the loop next sleeps. */
static void send_awaited(coil_stream *s)
{
    if (s->sending)
        coil__backend_settle_soon(s->loop);
}

/* n more bytes of the in-flight buffer went out. Is anything left to send? */
static bool sent(coil_stream *s, size_t n)
{
    s->soff += n;
    if (s->soff == s->slen)
        s->soff = s->slen = 0;
    return s->soff < s->slen || s->wlen;
}

static void send_done(coil__io_cb *cb, const coil__io_done *done)
{
    coil_stream *s = (coil_stream *)cb;
    s->sending = false;
    int res = done->res;
    s->send_waits = res == -EAGAIN || res == -EINTR || (res >= 0 && (size_t)res < s->slen - s->soff);
    if (res < 0 && res != -EAGAIN && res != -EINTR) {
        fail_write(s, res);
    } else {
        if (sent(s, res > 0 ? (size_t)res : 0))
            start_send(s);
        if (buffered(s) <= s->low)
            coil__wlist_wake_all(&s->drainers, 0);
    }
    if (!s->sending)
        flushed(s);
    unref(s);
}

/* Send what is buffered. Where the backend can send at once (epoll), what the socket takes goes
 * out here, with no completion to wait for; the rest becomes a send operation. That operation is
 * a try (COIL__OPF_TRY) unless the socket was full last time (then it waits for room): on
 * io_uring a try that goes out whole posts no CQE, so the enter that carries a turn's answers
 * sleeps on until the next request. The driver completes it after that submission, so whatever
 * comes to depend on it (bytes queued behind it, a drain, a deferred EOF or close) says so with
 * send_awaited, or the loop could sleep with it unfinished. */
static void start_send(coil_stream *s)
{
    coil__op op;
    for (;;) {
        if (s->soff == s->slen) {
            /* Swap: the queue becomes the in-flight buffer, the old one collects new writes. */
            char *b = s->sbuf;
            size_t c = s->scap;
            s->sbuf = s->wbuf;
            s->scap = s->wcap;
            s->slen = s->wlen;
            s->soff = 0;
            s->wbuf = b;
            s->wcap = c;
            s->wlen = 0;
        }
        op = (coil__op){ .code = COIL__OP_SEND, .buf = s->sbuf + s->soff, .len = s->slen - s->soff, .arg = MSG_NOSIGNAL };
        use_file(s, &op);
        int res = coil__backend_try(s->loop, &op);
        if (res == 0 || res == -EAGAIN)
            break;
        if (res < 0) {
            fail_write(s, res);
            return;
        }
        if (!sent(s, (size_t)res))
            return;
    }
    s->send_cb.complete = send_done;
    /* A send that something already waits on (a drain, a close, an EOF after it) is not a try:
     * its own completion wakes the loop. */
    if (!s->send_waits && coil__wlist_empty(&s->drainers) && !s->closing && !s->eof_requested)
        op.flags |= COIL__OPF_TRY;
    if (coil__backend_submit_cb(s->loop, &op, &s->send_cb) != 0) {
        fail_write(s, -EBUSY);
        return;
    }
    s->sending = true;
    s->refs++;
}

static int queue(coil_stream *s, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (!data)
        return -EFAULT;
    if (s->wlen + len > s->wcap) {
        size_t cap = s->wcap ? s->wcap : 4096;
        while (cap < s->wlen + len)
            cap *= 2;
        char *nb = realloc(s->wbuf, cap);
        if (!nb)
            return -ENOMEM;
        s->wbuf = nb;
        s->wcap = cap;
    }
    memcpy(s->wbuf + s->wlen, data, len);
    s->wlen += len;
    return 0;
}

static int write_check(const coil_stream *s)
{
    if (!s)
        return -EINVAL;
    if (s->werr)
        return s->werr;
    if (s->closing || s->eof_requested)
        return COIL_ECLOSED;
    return 0;
}

int coil_stream_write(coil_stream *s, const void *data, size_t len)
{
    return coil_stream_writelines(s, &(struct iovec){ (void *)data, len }, 1);
}

int coil_stream_writelines(coil_stream *s, const struct iovec *iov, size_t n)
{
    int err = write_check(s);
    if (err)
        return err;
    for (size_t i = 0; i < n; i++)
        if ((err = queue(s, iov[i].iov_base, iov[i].iov_len)))
            return err;
    if (s->wlen && !s->sending)
        start_send(s);
    else if (s->wlen)
        send_awaited(s);
    return s->werr;
}

size_t coil_stream_write_buffer_size(const coil_stream *s) { return buffered(s); }

static const coil__wait_ops drain_wait = { "stream drain", coil__wlist_wait_cancel, true, NULL };
static const coil__wait_ops closed_wait = { "stream wait_closed", coil__wlist_wait_cancel, true, NULL };

int coil_stream_drain(coil_stream *s)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!s)
        return -EINVAL;
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    if (s->werr)
        return s->werr;
    if (buffered(s) <= s->high)
        return 0;
    send_awaited(s);
    int r = coil__wlist_wait(t, &s->drainers, &drain_wait, false);
    return r ? r : s->werr;
}

bool coil_stream_can_write_eof(const coil_stream *s) { return s->stream_sock; }

int coil_stream_write_eof(coil_stream *s)
{
    if (!s)
        return -EINVAL;
    if (!s->stream_sock)
        return -ENOTSUP;
    if (s->closing)
        return COIL_ECLOSED;
    if (s->eof_requested)
        return 0;
    s->eof_requested = true;
    if (!s->sending)
        flushed(s);
    else
        send_awaited(s);
    return 0;
}

/* ---- closing ---- */

static void finish_close(coil_stream *s)
{
    s->closed = true;
    if (s->recv_armed)
        recv_cancel(s);
    release_fd(s);
    coil__wlist_wake_all(&s->drainers, s->werr ? s->werr : 0);
    coil__wlist_wake_all(&s->closers, 0);
}

void coil_stream_close(coil_stream *s)
{
    if (!s || s->closing)
        return;
    s->closing = true;
    if (s->reader && s->br) {
        coil__wlist_wake_all(&s->rwait, 0); /* it sees closing and returns COIL_ECLOSED */
    } else if (s->reader) {
        /* Stop the reader's recv; it returns COIL_ECLOSED (see fill). */
        coil__backend_cancel_task(s->loop, s->reader);
    }
    if (!s->sending && !s->reader)
        finish_close(s);
    else
        send_awaited(s);
}

bool coil_stream_is_closing(const coil_stream *s) { return s->closing; }

int coil_stream_wait_closed(coil_stream *s)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!s)
        return -EINVAL;
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    if (s->closed)
        return 0;
    return coil__wlist_wait(t, &s->closers, &closed_wait, false);
}

void coil_stream_free(coil_stream *s)
{
    if (!s || s->freed)
        return;
    s->freed = true;
    coil_stream_close(s);
    unref(s);
}

int coil_stream_get_extra_info(coil_stream *s, const char *name, void *out, size_t outlen)
{
    if (!s || !name || !out)
        return -EINVAL;
    if (strcmp(name, "socket") == 0) {
        if (outlen < sizeof(int))
            return -EINVAL;
        *(int *)out = s->fd;
        return 0;
    }
    bool peer = strcmp(name, "peername") == 0;
    if (!peer && strcmp(name, "sockname") != 0)
        return -ENOENT;
    if (outlen < sizeof(coil_sockaddr))
        return -EINVAL;
    coil_sockaddr *a = out;
    a->len = sizeof a->ss;
    int r = peer ? getpeername(s->fd, (struct sockaddr *)&a->ss, &a->len)
                 : getsockname(s->fd, (struct sockaddr *)&a->ss, &a->len);
    return r ? -errno : 0;
}
