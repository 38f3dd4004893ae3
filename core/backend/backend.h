/* coil core: the driver interface. Everything above the driver (the engine, I/O, observe,
 * shards) starts operations, cancels them, polls, wakes loops and registers files through this
 * header only, and never names the kernel interface underneath. Private to the library.
 *
 * The model: an operation (coil__op) is described neutrally and started with a completion
 * target, either a task (which the completion wakes with the result) or a callback record
 * (coil__io_cb, which the completion calls on the loop's thread). Nothing an operation names
 * (buffer, address, msghdr, path) may move or be freed until its completion arrives: a cancel
 * only asks, and the completion still comes (with -ECANCELED, or with the result if the
 * operation won the race).
 *
 * Two backends implement it, each in its own folder with its own struct coil__driver: io_uring
 * (core/backend/uring/) and epoll (core/backend/epoll/: readiness plus non-blocking system calls,
 * an eventfd for wake-ups, a thread pool for regular files). Each fills a table of its functions
 * (coil__backend_ops); coil__backend_init picks one per loop (backend.c) and the functions below
 * call through the loop's table. The hot path reads only the common fields of coil__backend,
 * which every backend keeps up to date, so it stays the same whatever the backend. */
#ifndef COIL_CORE_BACKEND_H
#define COIL_CORE_BACKEND_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct coil_loop coil_loop;
typedef struct coil_task coil_task;

/* ---- operations ---- */

enum {
    COIL__OP_READ,            /* read(2)/pread(2): fd, buf, len, off */
    COIL__OP_WRITE,           /* write(2)/pwrite(2): fd, buf, len, off */
    COIL__OP_RECV,            /* recv(2): fd, buf, len, arg = msg flags; or, with bufs, into a
                               * provided buffer (buf NULL, len 0: a whole buffer) */
    COIL__OP_RECV_MULTISHOT,  /* recv into provided buffers (bufs), one completion per arrival,
                               * until about len bytes were delivered (len 0: no budget) */
    COIL__OP_SEND,            /* send(2): fd, buf, len, arg = msg flags */
    COIL__OP_SENDMSG,         /* sendmsg(2): fd, buf = struct msghdr *, arg = msg flags */
    COIL__OP_RECVMSG,         /* recvmsg(2): fd, buf = struct msghdr *, arg = msg flags */
    COIL__OP_ACCEPT,          /* accept4(2): fd, buf = address or NULL, out = socklen_t *, arg =
                               * SOCK_* flags */
    COIL__OP_ACCEPT_MULTISHOT,/* accept4(2) for every connection until cancelled: fd, arg */
    COIL__OP_CONNECT,         /* connect(2): fd, buf = address, len = its length */
    COIL__OP_SHUTDOWN,        /* shutdown(2): fd, arg = how */
    COIL__OP_CLOSE,           /* close(2): fd */
    COIL__OP_FSYNC,           /* fsync(2), or fdatasync(2) with COIL__OPF_DATASYNC: fd */
    COIL__OP_OPENAT,          /* openat(2): fd = dirfd, buf = path, arg = O_* flags, arg2 = mode;
                               * the result is the new fd */
    COIL__OP_STATX,           /* statx(2): fd = dirfd, buf = path, arg = AT_* flags, arg2 = mask,
                               * out = struct statx * */
    COIL__OP_POLL,            /* one readiness event: fd, arg = POLL* mask; the result is the
                               * revents */
    COIL__OP_FUTEX_WAIT,      /* futex wait on a shared (not private) 32-bit word: buf = word,
                               * off = the value seen; only where COIL__CAP_FUTEX_WAIT */
    COIL__OP_TIMEOUT,         /* completes with -ETIME after buf = const coil__timespec * */
};

enum {
    COIL__OPF_FIXED = 1 << 0,    /* fd is a slot from coil__backend_file_add, not an fd */
    COIL__OPF_DATASYNC = 1 << 1, /* FSYNC: data only */
    /* Not work: the operation does not count in inflight or unsubmitted (so it neither keeps
     * run_until_complete from seeing that nothing can happen nor makes a busy loop enter the
     * kernel for it); it reaches the kernel with the next submission. Callback targets only. */
    COIL__OPF_QUIET = 1 << 2,
    /* SEND on a callback target: send now or not at all. What the socket takes goes out during
     * the submission that carries it; the completion then reports the whole length, or -EAGAIN
     * (nothing fit), or the bytes that did fit, and a send of the rest must then wait as usual
     * (without this flag). A backend may ignore the flag and send as usual. Where it does not
     * (io_uring), a success costs no kernel completion: the driver completes the send itself
     * after the submission, and a blocking wait can go to sleep at once. */
    COIL__OPF_TRY = 1 << 3,
};

/* READ/WRITE at the file position (read(2)/write(2)) rather than at an offset. */
#define COIL__OFF_CUR ((uint64_t)-1)

typedef struct coil__timespec {
    int64_t sec, nsec;
} coil__timespec;

struct coil__bufring;

typedef struct coil__op {
    uint8_t code;               /* COIL__OP_* */
    uint8_t flags;              /* COIL__OPF_* */
    int fd;
    void *buf;
    void *out;
    uint64_t len;
    uint64_t off;
    int arg;
    unsigned arg2;
    struct coil__bufring *bufs; /* RECV, RECV_MULTISHOT: the provided buffers to receive into */
} coil__op;

/* ---- completion targets ---- */

/* What a callback record hears for each completion. */
typedef struct coil__io_done {
    int res;                    /* the result: >= 0, or a negative errno */
    bool more;                  /* a multishot operation goes on: more completions follow */
    const void *buf;            /* provided-buffer receives: the res bytes received, valid only
                                 * during the call (the buffer then goes back to the pool) */
} coil__io_done;

/* A callback target. It must stay where it is until its operation's last completion (more ==
 * false). Embed it in the object it completes. */
typedef struct coil__io_cb {
    void (*complete)(struct coil__io_cb *self, const coil__io_done *done);
    bool quiet;                 /* the driver's: its operation was started COIL__OPF_QUIET */
    /* The driver's, for a COIL__OPF_TRY send that it completes itself: */
    bool listed;                /* on its list of such sends, not completed yet */
    unsigned settle_len;        /* what it completes with */
    struct coil__io_cb *settle_next; /* that list */
} coil__io_cb;

struct coil__backend_ops;

/* ---- the loop's handle on its driver ----
 * Embedded in the loop, so the scheduler's checks read these at a fixed offset from the loop
 * with no call and no pointer to follow. The driver's own state lives behind `drv`. */
typedef struct coil__backend {
    unsigned unsubmitted;       /* operations started since the last poll */
    unsigned inflight;          /* operations whose (last) completion has not arrived */
    int err;                    /* a hard failure of the driver not yet returned by a run */
    bool broken;                /* the driver has failed hard once: waiting on it is futile */
    bool peek_cheap;            /* coil__backend_pending costs a couple of loads, so a busy
                                 * loop may look for completions every iteration */
    uint64_t alarm_at;          /* the armed alarm's deadline (coil__backend_alarm), 0 = none */
    bool settle_soon;           /* something depends on a COIL__OPF_TRY send's completion: the
                                 * next poll completes the driver's tries before it sleeps */
    const struct coil__backend_ops *ops; /* the backend's functions */
    struct coil__driver *drv;   /* the backend's private state */
} coil__backend;

/* Which backend a loop asks for: the public coil_backend values (coil/loop.h). */
enum { COIL__BACKEND_AUTO = 0, COIL__BACKEND_IO_URING = 1, COIL__BACKEND_EPOLL = 2 };

/* The driver cannot wait any more (its wait or submit system call failed for good): remember err
 * for the run to return (loop.c ends it), mark the driver broken, and tell the loop's exception
 * handler `why`, once per loop. For the drivers; loop thread only. */
void coil__backend_broken(coil_loop *loop, int err, const char *why);

/* Set up loop->io with the backend `which` asks for; AUTO (and the environment's COIL_BACKEND,
 * which AUTO defers to) takes io_uring where the kernel sets it up and epoll where it is refused,
 * saying so once per process on stderr with the reason. 0; COIL_ENOURING after saying on stderr
 * why the kernel refused io_uring (with what to change) when io_uring was asked for by name;
 * -EINVAL for an unknown `which` or COIL_BACKEND; -ENOMEM. */
int coil__backend_init(coil_loop *loop, unsigned entries, int which);

/* ---- provided buffers ----
 * A pool of buffers the driver fills on its own for RECV / RECV_MULTISHOT with `bufs`: each
 * completion hands its bytes to the callback (coil__io_done.buf) and the buffer goes straight
 * back to the pool after the call, so a few dozen buffers serve any number of connections.
 * Each backend embeds this head in its own pool. */
typedef struct coil__bufring {
    unsigned refs;
    unsigned size;                            /* bytes per buffer */
    void (*release)(struct coil__bufring *b); /* the backend's, called by the last unref */
} coil__bufring;

static inline void coil__bufring_ref(coil__bufring *b) { b->refs++; }
/* Drop a reference; the last one unregisters and frees the pool. */
static inline void coil__bufring_unref(coil__bufring *b)
{
    if (b && !--b->refs)
        b->release(b);
}

/* ---- waking a loop from another thread ---- */

/* How another thread names a loop to wake. Taken once the loop exists, on any thread; it stays
 * valid after the loop closes (a wake-up then reaches nobody) until coil__backend_wake_drop. */
typedef struct coil__wake_addr {
    const struct coil__backend_ops *ops;
    int handle;
    void *obj;
} coil__wake_addr;
enum { COIL__WAKE_FROM_LOOP = 1, COIL__WAKE_FROM_THREAD = 2 };

/* ---- the table each backend fills ---- */
typedef struct coil__backend_ops {
    const char *name; /* "io_uring", "epoll" */
    void (*exit)(coil_loop *loop);
    unsigned (*poll)(coil_loop *loop, bool wait, uint64_t timeout_ns);
    bool (*pending)(coil_loop *loop);
    void (*alarm)(coil_loop *loop, uint64_t deadline_ns);
    int (*submit_task)(coil_loop *loop, const coil__op *op, coil_task *t);
    int (*submit_cb)(coil_loop *loop, const coil__op *op, coil__io_cb *cb);
    int (*try_now)(coil_loop *loop, const coil__op *op); /* NULL: never cheaper than a submit */
    bool (*cancel_task)(coil_loop *loop, coil_task *t);
    bool (*cancel_cb)(coil_loop *loop, coil__io_cb *cb);
    void (*cancel_all)(coil_loop *loop);
    bool (*supports)(coil_loop *loop, int cap);
    int (*file_add)(coil_loop *loop, int fd);
    void (*file_remove)(coil_loop *loop, int slot);
    int (*bufring_shared)(coil_loop *loop, coil__bufring **out);
    coil__wake_addr (*wake_addr)(coil_loop *loop);
    int (*wake)(coil_loop *from, coil__wake_addr to, coil__io_cb *rec);
    void (*wake_drop)(coil__wake_addr addr);
} coil__backend_ops;

/* A loop's driver handle: the loop's first member (engine/internal.h asserts it), so the calls
 * below reach the table with one load and no engine header. */
static inline coil__backend *coil__backend_of(coil_loop *loop) { return (coil__backend *)(void *)loop; }

/* ---- the driver's functions, through the loop's table ---- */

#define COIL__BACKEND_CALL(loop, fn, ...) (coil__backend_of(loop)->ops->fn((loop), __VA_ARGS__))

/* Tear the driver down (registered files and buffers go with it). */
static inline void coil__backend_exit(coil_loop *loop)
{
    if (coil__backend_of(loop)->ops)
        coil__backend_of(loop)->ops->exit(loop);
}
/* Submit what is queued and run the completions that arrived; when `wait`, wait up to
 * timeout_ns (UINT64_MAX: no limit) for at least one. Returns the number handled. A hard
 * failure sets io.err and io.broken, which ends the run (loop.c). Loop thread only. */
static inline unsigned coil__backend_poll(coil_loop *loop, bool wait, uint64_t timeout_ns)
{
    return COIL__BACKEND_CALL(loop, poll, wait, timeout_ns);
}
/* Might a poll find completions (or need to enter the kernel to post them)? Cheap when
 * io.peek_cheap; true when the driver cannot tell. */
static inline bool coil__backend_pending(coil_loop *loop) { return coil__backend_of(loop)->ops->pending(loop); }

/* Arm (or move) the loop's alarm: a completion at deadline_ns (CLOCK_MONOTONIC) that makes
 * coil__backend_pending true, and clears alarm_at, once it is due. A loop that keeps running
 * without blocking then learns that a timer may be due from the look it already takes for
 * completions instead of reading the clock every iteration. The alarm is not work: it is counted
 * in unsubmitted (the next poll must take it to the kernel) but not in inflight (it stands for
 * the timers, which count already). Without room for it nothing is armed and alarm_at stays as
 * it was. Useful only where io.peek_cheap; loop thread only. */
static inline void coil__backend_alarm(coil_loop *loop, uint64_t deadline_ns)
{
    COIL__BACKEND_CALL(loop, alarm, deadline_ns);
}

/* Start op for task t: its completion wakes t (coil__task_wake) with the result. Does not
 * suspend: the caller does (coil__io_wait in io/io_internal.h). 0, or -EBUSY when the driver can
 * take no operation now (nothing was started then). Loop thread only. */
static inline int coil__backend_submit_task(coil_loop *loop, const coil__op *op, coil_task *t)
{
    return COIL__BACKEND_CALL(loop, submit_task, op, t);
}
/* Start op for a callback record. 0, or -EBUSY as above. Loop thread only. */
static inline int coil__backend_submit_cb(coil_loop *loop, const coil__op *op, coil__io_cb *cb)
{
    return COIL__BACKEND_CALL(loop, submit_cb, op, cb);
}
/* Run op to its end now, on the calling thread, if it can end without waiting: a SEND, SENDMSG,
 * RECV (not into provided buffers) or RECVMSG on a socket that has room or data. Returns its
 * result (what its completion would have said), or -EAGAIN when it must be submitted instead:
 * it would wait, operations already waiting on the fd in that direction go first, or the
 * backend gains nothing by it (io_uring carries the operation in the enter it makes anyway).
 * Nothing is counted and no completion follows. Loop thread only. */
static inline int coil__backend_try(coil_loop *loop, const coil__op *op)
{
    const coil__backend_ops *ops = coil__backend_of(loop)->ops;
    return ops->try_now ? ops->try_now(loop, op) : -EAGAIN;
}
/* Something now depends on the completion of a COIL__OPF_TRY send in flight (bytes queued behind
 * it, a drain, a close or an EOF deferred until it is done): a backend that completes tries after
 * the submission that carried them must do so before its next sleep, not after it. Loop thread
 * only. */
static inline void coil__backend_settle_soon(coil_loop *loop) { coil__backend_of(loop)->settle_soon = true; }
/* Ask that the operation started for t / for cb end early: its completion still comes
 * (-ECANCELED, or its result if it won the race). False when the request could not be queued
 * (the caller's cancel is then only a mark on the task). Loop thread only. */
static inline bool coil__backend_cancel_task(coil_loop *loop, coil_task *t)
{
    return COIL__BACKEND_CALL(loop, cancel_task, t);
}
static inline bool coil__backend_cancel_cb(coil_loop *loop, coil__io_cb *cb)
{
    return COIL__BACKEND_CALL(loop, cancel_cb, cb);
}
/* Ask that every operation in flight end (loop close); their completions still come. */
static inline void coil__backend_cancel_all(coil_loop *loop) { coil__backend_of(loop)->ops->cancel_all(loop); }


/* ---- capabilities ---- */
enum { COIL__CAP_FUTEX_WAIT = 1 };
/* Does this loop's driver support the capability? May ask the kernel once. Loop thread only. */
static inline bool coil__backend_supports(coil_loop *loop, int cap) { return COIL__BACKEND_CALL(loop, supports, cap); }
/* "io_uring" or "epoll". */
static inline const char *coil__backend_name(coil_loop *loop) { return coil__backend_of(loop)->ops->name; }

/* ---- registered files ----
 * Install fd in a slot of the driver's file table, so operations naming the slot
 * (COIL__OPF_FIXED) skip the kernel's file lookup. Returns the slot, or -1 (no slot free, or no
 * table here): use the fd then. The fd must stay open until the loop's next poll; the file
 * stays open until the slot is removed. No operation may name the slot after
 * coil__backend_file_remove. Loop thread only. */
static inline int coil__backend_file_add(coil_loop *loop, int fd) { return COIL__BACKEND_CALL(loop, file_add, fd); }
static inline void coil__backend_file_remove(coil_loop *loop, int slot)
{
    if (coil__backend_of(loop)->ops)
        COIL__BACKEND_CALL(loop, file_remove, slot);
}

/* A reference to the loop's shared pool of provided buffers, made on first use. 0, -ENOMEM, or
 * -EOPNOTSUPP / the kernel's error where the driver has none (receive the plain way then). */
static inline int coil__bufring_shared(coil_loop *loop, coil__bufring **out)
{
    return COIL__BACKEND_CALL(loop, bufring_shared, out);
}

/* How other threads wake this loop (below). */
static inline coil__wake_addr coil__backend_wake_addr(coil_loop *loop) { return coil__backend_of(loop)->ops->wake_addr(loop); }
/* Wake the loop at `to` if it waits in its poll: on its thread, its driver calls rec->complete,
 * counted as no operation of that loop's, with res saying how it was sent (COIL__WAKE_FROM_*).
 * rec must outlive every loop (a static record). `from` is the calling thread's running loop
 * (the wake-up may then ride along with that loop's next submission, no extra syscall) or NULL
 * (sent now). Returns how it was sent (COIL__WAKE_FROM_*), or a negative errno when nothing
 * could be sent (no memory for the thread's waker). Thread-safe. */
static inline int coil__backend_wake(coil_loop *from, coil__wake_addr to, coil__io_cb *rec)
{
    return to.ops->wake(from, to, rec);
}
/* The holder of `addr` is done with it (after the loop's close, or before). Any thread. */
static inline void coil__backend_wake_drop(coil__wake_addr addr)
{
    if (addr.ops && addr.ops->wake_drop)
        addr.ops->wake_drop(addr);
}

#endif
