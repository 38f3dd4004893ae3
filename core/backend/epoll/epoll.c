/* coil core: the epoll driver (core/backend/backend.h), for kernels and sandboxes that refuse
 * io_uring.
 *
 * Each operation becomes an `eop` record. Sockets, pipes and other pollable fds: the system call
 * is made non-blocking, tried at once where that is cheap, and otherwise retried when epoll says
 * the fd is ready. Every fd is registered once, edge-triggered, for both directions, and stays
 * registered while operations wait on it. Regular files, fsync, openat and statx go to a thread
 * pool (pool.h), as libuv does. Another thread's wake-up and the pool's finished jobs arrive
 * through one eventfd.
 *
 * Completions are never delivered from inside a submit (the task has not suspended yet): an
 * operation that finishes at once is queued and delivered by the next poll, which therefore
 * never sleeps while anything is queued. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "backend/epoll/driver.h"
#include "backend/epoll/pool.h"
#include "observe/stats.h"

/* A busy loop that never blocks asks epoll for events only now and then, so the system call's
 * cost spreads over many task switches: it reads the clock once every LOOK_EVERY looks (a look is
 * an inline iteration's pending check, counting one, or a scheduler iteration's poll, counting
 * LOOK_POLL), and calls epoll once LOOK_NS have passed since the last call; the loop's alarm is
 * checked at the same moments, since epoll cannot raise it by itself. A busy loop therefore hears
 * of I/O within about LOOK_NS, or LOOK_EVERY looks when its steps are long. */
enum { LOOK_EVERY = 128, LOOK_POLL = 16 };
#define LOOK_NS 32000u
/* Distinct wake-up records a loop can hear (the library uses one). */
enum { WAKE_SLOTS = 4 };
/* The provided-buffer pool: one buffer, filled and handed over inside the poll. */
enum { BUF_SIZE = 16384 };

enum { T_TASK, T_CB };
enum {
    W_NONE,    /* being started */
    W_FD,      /* waiting on its fd's readiness */
    W_DONE,    /* its result is queued for the next poll */
    W_POOL,    /* on the thread pool */
    W_TIMER,   /* a TIMEOUT waiting for its deadline */
    W_CLOSING, /* a CLOSE waiting for the pool's jobs on its fd */
};
/* How an operation uses its fd: which readiness it waits for. */
enum { D_IN = 1, D_OUT = 2 };

typedef struct eop eop;
struct eop {
    coil__pool_job job;         /* first: the pool hands the job back */
    eop *next, *prev;           /* its fd's waiters, the done queue, the timers, the free list */
    eop *hnext;                 /* the target's hash chain */
    coil__op op;                /* what was asked; what it points at stays the caller's */
    void *target;               /* coil_task * or coil__io_cb * */
    uint64_t deadline;          /* TIMEOUT: CLOCK_MONOTONIC ns */
    uint64_t budget;            /* RECV_MULTISHOT: bytes still to deliver, 0 = no limit */
    int res;                    /* the queued result */
    uint8_t kind;               /* T_* */
    uint8_t where;              /* W_* */
    uint8_t dir;                /* D_* */
    unsigned pass;              /* the readiness event that last ran it (fd_ready) */
    bool counted;               /* in inflight (not COIL__OPF_QUIET) */
    bool busy;                  /* being run inside the poll: a cancel only marks it */
    bool cancelled;
    bool forced;                /* made its fd non-blocking (fdstate.forced) */
};

/* What the driver knows of an fd it has operations on. */
typedef struct fdstate {
    eop *head, *tail;           /* operations waiting for readiness, oldest first */
    unsigned forced;            /* operations that need it non-blocking; its flags come back
                                 * when the last ends */
    int saved_flags;            /* the file status flags before that */
    unsigned pooled;            /* operations on the thread pool naming it */
    eop *close_after;           /* a CLOSE waiting for those */
    bool armed;                 /* registered (or re-armed) since its first waiter came */
} fdstate;

/* The cross-thread side: an eventfd and the records it carries. Reference counted, because
 * wake addresses outlive the loop (a producer may still send after the close: the eventfd stays
 * open, so the write lands nowhere harmful). */
typedef struct wakebox {
    atomic_uint refs;
    int efd;
    struct {
        _Atomic(coil__io_cb *) rec;
        atomic_int how;         /* COIL__WAKE_FROM_* bits sent since the loop last looked */
    } slot[WAKE_SLOTS];
    atomic_bool any;            /* a slot has something: the loop must look */
} wakebox;

typedef struct epoll_bufring {
    coil__bufring base;
    struct coil__driver *owner; /* NULL once the driver is gone */
    unsigned char mem[BUF_SIZE];
} epoll_bufring;

struct coil__driver {
    int epfd;
    wakebox *box;
    coil__pool_done pool_done;  /* finished pool jobs; its efd is the box's */
    unsigned pool_inflight;
    bool pool_used;             /* a job was submitted once: exit must wait for the workers */
    unsigned nwaiting;          /* operations waiting for readiness */
    unsigned pass;              /* readiness events handled, to mark what one of them ran */
    fdstate *fds;
    unsigned nfds;
    eop **hash;                 /* in-flight operations by target */
    unsigned hmask, hcount;
    eop *done_head, *done_tail; /* results to deliver at the next poll */
    eop *timers;                /* TIMEOUT operations, earliest first */
    eop *free_ops;
    int look_left;              /* until the next look at the clock (LOOK_EVERY) */
    uint64_t looked_at;         /* when a busy loop last asked epoll */
    bool look_now;              /* pending() said a look is due: the next poll takes it */
    unsigned nevents;
    struct epoll_event *events;
    epoll_bufring *bufring;
    bool have_pwait2;
};
typedef struct coil__driver coil__driver;

static void deliver(coil_loop *loop, eop *e, int res, bool more, const void *buf);

/* ---- small things ---- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void wakebox_unref(wakebox *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        close(b->efd);
        free(b);
    }
}

static fdstate *fd_state(coil__driver *d, int fd)
{
    if (fd < 0)
        return NULL;
    if ((unsigned)fd >= d->nfds) {
        unsigned n = d->nfds ? d->nfds : 64;
        while (n <= (unsigned)fd)
            n *= 2;
        fdstate *nf = realloc(d->fds, n * sizeof *nf);
        if (!nf)
            return NULL;
        memset(nf + d->nfds, 0, (n - d->nfds) * sizeof *nf);
        d->fds = nf;
        d->nfds = n;
    }
    return &d->fds[fd];
}

static unsigned hash_of(const void *p) { return (unsigned)(((uintptr_t)p >> 4) * 0x9E3779B1u); }

static int hash_grow(coil__driver *d)
{
    unsigned n = d->hmask ? (d->hmask + 1) * 2 : 256;
    eop **nh = calloc(n, sizeof *nh);
    if (!nh)
        return -ENOMEM;
    for (unsigned i = 0; d->hash && i <= d->hmask; i++)
        for (eop *e = d->hash[i], *next; e; e = next) {
            next = e->hnext;
            unsigned h = hash_of(e->target) & (n - 1);
            e->hnext = nh[h];
            nh[h] = e;
        }
    free(d->hash);
    d->hash = nh;
    d->hmask = n - 1;
    return 0;
}

static void hash_del(coil__driver *d, eop *e)
{
    for (eop **p = &d->hash[hash_of(e->target) & d->hmask]; *p; p = &(*p)->hnext)
        if (*p == e) {
            *p = e->hnext;
            d->hcount--;
            return;
        }
}

static eop *hash_find(coil__driver *d, const void *target)
{
    if (!d->hash)
        return NULL;
    for (eop *e = d->hash[hash_of(target) & d->hmask]; e; e = e->hnext)
        if (e->target == target)
            return e;
    return NULL;
}

static eop *eop_new(coil_loop *loop, const coil__op *op, void *target, int kind)
{
    coil__driver *d = loop->io.drv;
    if (COIL__FAULT(COIL__FAULT_FAIL_SQE))
        return NULL;
    if (d->hcount >= d->hmask && hash_grow(d) != 0)
        return NULL;
    eop *e = d->free_ops;
    if (e)
        d->free_ops = e->next;
    else if (!(e = malloc(sizeof *e)))
        return NULL;
    memset(e, 0, sizeof *e);
    e->op = *op;
    e->target = target;
    e->kind = (uint8_t)kind;
    e->counted = !(op->flags & COIL__OPF_QUIET);
    unsigned h = hash_of(target) & d->hmask;
    e->hnext = d->hash[h];
    d->hash[h] = e;
    d->hcount++;
    if (e->counted)
        loop->io.inflight++;
    COIL__STAT_ADD(loop, sqes_submitted, 1);
    return e;
}

static void eop_free(coil__driver *d, eop *e)
{
    e->next = d->free_ops;
    d->free_ops = e;
}

/* ---- the fd's waiters ---- */

/* Register fd for both directions, edge-triggered, or re-arm it: either way epoll reports the
 * readiness it has now, so an operation that did not try first cannot miss data that came before
 * it (and a registration left over from a closed file that had the same number is replaced). */
static int fd_arm(coil__driver *d, int fd)
{
    struct epoll_event ev = { .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLPRI | EPOLLET, .data.u64 = (uint64_t)fd };
    if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, fd, &ev) == 0)
        return 0;
    if (errno == ENOENT && epoll_ctl(d->epfd, EPOLL_CTL_ADD, fd, &ev) == 0)
        return 0;
    return -errno;
}

static void fd_unlink(coil__driver *d, eop *e)
{
    fdstate *f = &d->fds[e->op.fd];
    if (e->prev)
        e->prev->next = e->next;
    else
        f->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        f->tail = e->prev;
    e->next = e->prev = NULL;
    if (!f->head)
        f->armed = false; /* the next first waiter registers anew: the file may be another by then */
}

/* Wait for readiness. `rearm`: make epoll report the current state even if the fd is registered
 * (an operation that did not try first). 0 or the registration's error. */
static int fd_wait(coil__driver *d, eop *e, bool rearm)
{
    fdstate *f = &d->fds[e->op.fd];
    if (!f->armed || rearm) {
        int err = fd_arm(d, e->op.fd);
        if (err)
            return err;
        f->armed = true;
    }
    e->where = W_FD;
    e->prev = f->tail;
    e->next = NULL;
    if (f->tail)
        f->tail->next = e;
    else
        f->head = e;
    f->tail = e;
    return 0;
}

/* Make fd non-blocking for op e while it runs (see fdstate.forced). */
static int force_nonblock(coil__driver *d, eop *e)
{
    fdstate *f = &d->fds[e->op.fd];
    if (!f->forced) {
        int fl = fcntl(e->op.fd, F_GETFL);
        if (fl < 0)
            return -errno;
        if (!(fl & O_NONBLOCK)) {
            if (fcntl(e->op.fd, F_SETFL, fl | O_NONBLOCK) < 0)
                return -errno;
            f->saved_flags = fl;
            f->forced = 1;
            e->forced = true;
        }
        return 0;
    }
    f->forced++;
    e->forced = true;
    return 0;
}

static void unforce(coil__driver *d, eop *e)
{
    if (!e->forced)
        return;
    e->forced = false;
    fdstate *f = &d->fds[e->op.fd];
    if (--f->forced == 0)
        (void)fcntl(e->op.fd, F_SETFL, f->saved_flags);
}

/* ---- finishing an operation ---- */

/* Take e out of the driver's books; its result goes to its target now (inside a poll). */
static void finish(coil_loop *loop, eop *e, int res)
{
    coil__driver *d = loop->io.drv;
    unforce(d, e);
    hash_del(d, e);
    if (e->counted)
        loop->io.inflight--;
    void *target = e->target;
    int kind = e->kind;
    eop_free(d, e);
    COIL__STAT_ADD(loop, cqes_reaped, 1);
    if (kind == T_TASK) {
        coil__task_wake(target, res);
    } else {
        coil__io_done dn = { res, false, NULL };
        ((coil__io_cb *)target)->complete(target, &dn);
    }
}

/* Queue e's result for the next poll (a submit or a cancel may not call back). */
static void queue_done(coil__driver *d, eop *e, int res)
{
    e->res = res;
    e->where = W_DONE;
    e->next = NULL;
    if (d->done_tail)
        d->done_tail->next = e;
    else
        d->done_head = e;
    d->done_tail = e;
}

static void deliver(coil_loop *loop, eop *e, int res, bool more, const void *buf)
{
    (void)loop;
    coil__io_done dn = { res, more, buf };
    COIL__STAT_ADD(loop, cqes_reaped, 1);
    ((coil__io_cb *)e->target)->complete(e->target, &dn);
}

/* ---- the system calls ---- */

static int sys_res(ssize_t r) { return r >= 0 ? (int)(r > INT32_MAX ? INT32_MAX : r) : -errno; }

static int connect_result(int fd)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        return -errno;
    return -err;
}

/* One attempt at a readiness operation: its result, or -EAGAIN to wait on. */
static int attempt(eop *e, void *buf, size_t len)
{
    const coil__op *op = &e->op;
    switch (op->code) {
    case COIL__OP_READ:
        return sys_res(read(op->fd, op->buf, op->len));
    case COIL__OP_WRITE:
        return sys_res(write(op->fd, op->buf, op->len));
    case COIL__OP_RECV:
    case COIL__OP_RECV_MULTISHOT:
        return sys_res(recv(op->fd, buf, len, op->arg | MSG_DONTWAIT));
    case COIL__OP_SEND:
        return sys_res(send(op->fd, op->buf, op->len, op->arg | MSG_DONTWAIT));
    case COIL__OP_SENDMSG:
        return sys_res(sendmsg(op->fd, op->buf, op->arg | MSG_DONTWAIT));
    case COIL__OP_RECVMSG:
        return sys_res(recvmsg(op->fd, op->buf, op->arg | MSG_DONTWAIT));
    case COIL__OP_ACCEPT:
        return sys_res(accept4(op->fd, op->buf, op->out, op->arg));
    case COIL__OP_ACCEPT_MULTISHOT:
        return sys_res(accept4(op->fd, NULL, NULL, op->arg));
    case COIL__OP_CONNECT:
        return connect_result(op->fd);
    default:
        return -EINVAL;
    }
}

static bool would_block(int res) { return res == -EAGAIN || res == -EWOULDBLOCK; }

/* ---- the thread pool's side ---- */

static int pool_run(coil__pool_job *job)
{
    eop *e = (eop *)job;
    const coil__op *op = &e->op;
    ssize_t r;
    do {
        switch (op->code) {
        case COIL__OP_READ:
            r = op->off == COIL__OFF_CUR ? read(op->fd, op->buf, op->len) : pread(op->fd, op->buf, op->len, (off_t)op->off);
            break;
        case COIL__OP_WRITE:
            r = op->off == COIL__OFF_CUR ? write(op->fd, op->buf, op->len)
                                         : pwrite(op->fd, op->buf, op->len, (off_t)op->off);
            break;
        case COIL__OP_FSYNC:
            r = op->flags & COIL__OPF_DATASYNC ? fdatasync(op->fd) : fsync(op->fd);
            break;
        case COIL__OP_OPENAT:
            r = openat(op->fd, op->buf, op->arg, (mode_t)op->arg2);
            break;
        case COIL__OP_STATX:
            r = statx(op->fd, op->buf, op->arg, op->arg2, op->out);
            break;
        default:
            errno = EINVAL;
            r = -1;
        }
    } while (r < 0 && errno == EINTR);
    return sys_res(r);
}

/* Operations on fds the pool names hold the fd's CLOSE back until they are done: a close under
 * a running pread would let the number name another file by the time it runs. */
static bool pool_names_fd(const coil__op *op)
{
    return op->code == COIL__OP_READ || op->code == COIL__OP_WRITE || op->code == COIL__OP_FSYNC;
}

static void to_pool(coil_loop *loop, eop *e)
{
    coil__driver *d = loop->io.drv;
    fdstate *f = pool_names_fd(&e->op) ? fd_state(d, e->op.fd) : NULL;
    if (pool_names_fd(&e->op) && !f) {
        queue_done(d, e, -ENOMEM);
        return;
    }
    e->job.run = pool_run;
    e->job.done = &d->pool_done;
    int err = coil__pool_submit(&e->job);
    if (err) {
        queue_done(d, e, err);
        return;
    }
    e->where = W_POOL;
    d->pool_inflight++;
    d->pool_used = true;
    if (f)
        f->pooled++;
}

static void close_now(coil_loop *loop, eop *e);

static void pool_reap(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    for (coil__pool_job *j = coil__pool_take_done(&d->pool_done), *next; j; j = next) {
        next = j->next;
        eop *e = (eop *)j;
        d->pool_inflight--;
        int fd = e->op.fd;
        bool named = pool_names_fd(&e->op);
        finish(loop, e, j->res);
        if (named && fd >= 0 && (unsigned)fd < d->nfds) {
            fdstate *f = &d->fds[fd];
            if (--f->pooled == 0 && f->close_after) {
                eop *c = f->close_after;
                f->close_after = NULL;
                close_now(loop, c);
            }
        }
    }
}

/* ---- starting an operation ---- */

static bool pollable(int fd, int *err)
{
    struct stat st;
    if (fstat(fd, &st) < 0) {
        *err = -errno;
        return false;
    }
    *err = 0;
    return !(S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) || S_ISDIR(st.st_mode));
}

static void close_now(coil_loop *loop, eop *e)
{
    coil__driver *d = loop->io.drv;
    int fd = e->op.fd;
    fdstate *f = fd >= 0 && (unsigned)fd < d->nfds ? &d->fds[fd] : NULL;
    if (f) {
        /* Waiters would never hear from a closed fd again: end them as a cancel would. */
        while (f->head) {
            eop *w = f->head;
            fd_unlink(d, w);
            d->nwaiting--;
            queue_done(d, w, -ECANCELED);
        }
        if (f->forced) {
            (void)fcntl(fd, F_SETFL, f->saved_flags);
            f->forced = 0;
            for (eop *q = d->done_head; q; q = q->next)
                if (q->op.fd == fd)
                    q->forced = false;
        }
        f->armed = false;
    }
    queue_done(d, e, close(fd) == 0 ? 0 : -errno);
}

static int dir_of(const coil__op *op)
{
    switch (op->code) {
    case COIL__OP_WRITE:
    case COIL__OP_SEND:
    case COIL__OP_SENDMSG:
    case COIL__OP_CONNECT:
        return D_OUT;
    case COIL__OP_POLL: {
        int dir = (op->arg & (POLLIN | POLLPRI | POLLRDHUP) ? D_IN : 0) | (op->arg & POLLOUT ? D_OUT : 0);
        return dir ? dir : D_IN | D_OUT; /* errors and hang-ups only */
    }
    default:
        return D_IN;
    }
}

/* Wait for readiness, or queue the error that prevents it. */
static void wait_or_fail(coil__driver *d, eop *e, bool rearm)
{
    fdstate *f = fd_state(d, e->op.fd);
    int err = f ? fd_wait(d, e, rearm) : (e->op.fd < 0 ? -EBADF : -ENOMEM);
    if (err)
        queue_done(d, e, err);
    else
        d->nwaiting++;
}

static void start(coil_loop *loop, eop *e)
{
    coil__driver *d = loop->io.drv;
    coil__op *op = &e->op;
    int err = 0;
    e->dir = (uint8_t)dir_of(op);
    switch (op->code) {
    case COIL__OP_TIMEOUT: {
        const coil__timespec *ts = op->buf;
        e->deadline = now_ns() + (uint64_t)ts->sec * 1000000000u + (uint64_t)ts->nsec;
        eop **p = &d->timers;
        while (*p && (*p)->deadline <= e->deadline)
            p = &(*p)->next;
        e->next = *p;
        *p = e;
        e->where = W_TIMER;
        return;
    }
    case COIL__OP_CLOSE: {
        fdstate *f = op->fd >= 0 && (unsigned)op->fd < d->nfds ? &d->fds[op->fd] : NULL;
        if (f && f->pooled) {
            f->close_after = e;
            e->where = W_CLOSING;
        } else {
            close_now(loop, e);
        }
        return;
    }
    case COIL__OP_SHUTDOWN:
        queue_done(d, e, shutdown(op->fd, op->arg) == 0 ? 0 : -errno);
        return;
    case COIL__OP_FSYNC:
    case COIL__OP_OPENAT:
    case COIL__OP_STATX:
        to_pool(loop, e);
        return;
    case COIL__OP_FUTEX_WAIT:
        queue_done(d, e, -EOPNOTSUPP);
        return;
    case COIL__OP_READ:
    case COIL__OP_WRITE:
        if (!pollable(op->fd, &err)) {
            if (err)
                queue_done(d, e, err);
            else
                to_pool(loop, e);
            return;
        }
        break;
    case COIL__OP_POLL:
        wait_or_fail(d, e, true);
        return;
    default:
        break;
    }
    if (!fd_state(d, op->fd)) {
        queue_done(d, e, op->fd < 0 ? -EBADF : -ENOMEM);
        return;
    }
    /* Calls with no non-blocking flag of their own need the fd non-blocking while they wait. */
    if (op->code == COIL__OP_READ || op->code == COIL__OP_WRITE || op->code == COIL__OP_ACCEPT ||
        op->code == COIL__OP_ACCEPT_MULTISHOT || op->code == COIL__OP_CONNECT) {
        err = force_nonblock(d, e);
        if (err) {
            queue_done(d, e, err);
            return;
        }
    }
    int res;
    switch (op->code) {
    case COIL__OP_RECV_MULTISHOT:
    case COIL__OP_ACCEPT_MULTISHOT:
        /* Every result is handed over inside the poll, where the buffer is valid and the
         * callback may run. */
        e->budget = op->code == COIL__OP_RECV_MULTISHOT ? op->len : 0;
        wait_or_fail(d, e, true);
        return;
    case COIL__OP_RECV:
        if (op->bufs) {
            wait_or_fail(d, e, true); /* the one buffer is filled only where it is handed over */
            return;
        }
        res = attempt(e, op->buf, op->len);
        break;
    case COIL__OP_CONNECT:
        res = connect(op->fd, op->buf, (socklen_t)op->len) == 0 ? 0 : -errno;
        if (res == -EINPROGRESS)
            res = -EAGAIN;
        break;
    default:
        res = attempt(e, op->buf, op->len);
        break;
    }
    if (would_block(res))
        wait_or_fail(d, e, false);
    else
        queue_done(d, e, res);
}

static int submit(coil_loop *loop, const coil__op *op, void *target, int kind)
{
    eop *e = eop_new(loop, op, target, kind);
    if (!e)
        return -EBUSY;
    start(loop, e);
    return 0;
}

static int ep_submit_task(coil_loop *loop, const coil__op *op, coil_task *t) { return submit(loop, op, t, T_TASK); }

static int ep_submit_cb(coil_loop *loop, const coil__op *op, coil__io_cb *cb)
{
    cb->quiet = op->flags & COIL__OPF_QUIET;
    return submit(loop, op, cb, T_CB);
}

/* ---- readiness ---- */

enum { R_WAIT, R_DONE };

/* Finish e with a result that lives in the provided buffer: the callback reads it now. */
static void finish_buf(coil_loop *loop, eop *e, int res, const void *buf)
{
    coil__driver *d = loop->io.drv;
    unforce(d, e);
    hash_del(d, e);
    if (e->counted)
        loop->io.inflight--;
    coil__io_cb *cb = e->target;
    eop_free(d, e);
    coil__io_done dn = { res, false, res > 0 ? buf : NULL };
    COIL__STAT_ADD(loop, cqes_reaped, 1);
    cb->complete(cb, &dn);
}

static void unwait(coil__driver *d, eop *e)
{
    fd_unlink(d, e);
    d->nwaiting--;
}

/* A multishot's results, handed over one by one while the fd has them. */
static int run_multishot(coil_loop *loop, eop *e, uint32_t ev)
{
    coil__driver *d = loop->io.drv;
    bool recv_ = e->op.code == COIL__OP_RECV_MULTISHOT;
    unsigned char *buf = recv_ && e->op.bufs ? ((epoll_bufring *)e->op.bufs)->mem : NULL;
    /* A short read drains the socket (the next arrival raises a new edge) unless the peer's end or
     * an error came with this event: then read on to see it. */
    bool hup = ev & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    for (;;) {
        int res = recv_ && !buf ? -ENOBUFS : attempt(e, buf, BUF_SIZE);
        if (would_block(res))
            return R_WAIT;
        if (res <= 0 || (recv_ && e->budget && (uint64_t)res >= e->budget)) {
            unwait(d, e);
            finish_buf(loop, e, res, buf);
            return R_DONE;
        }
        if (recv_ && e->budget)
            e->budget -= (uint64_t)res;
        e->busy = true;
        deliver(loop, e, res, true, buf);
        e->busy = false;
        if (e->cancelled) {
            unwait(d, e);
            finish(loop, e, -ECANCELED);
            return R_DONE;
        }
        if (recv_ && res < BUF_SIZE && !hup)
            return R_WAIT;
    }
}

static int run_ready(coil_loop *loop, eop *e, uint32_t ev)
{
    coil__driver *d = loop->io.drv;
    int res;
    switch (e->op.code) {
    case COIL__OP_RECV_MULTISHOT:
    case COIL__OP_ACCEPT_MULTISHOT:
        return run_multishot(loop, e, ev);
    case COIL__OP_POLL:
        res = (int)(ev & ((uint32_t)e->op.arg | EPOLLERR | EPOLLHUP));
        if (!res)
            return R_WAIT;
        break;
    case COIL__OP_CONNECT:
        if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return R_WAIT;
        res = connect_result(e->op.fd);
        break;
    case COIL__OP_RECV:
        if (e->op.bufs) {
            epoll_bufring *b = (epoll_bufring *)e->op.bufs;
            res = attempt(e, b->mem, BUF_SIZE);
            if (would_block(res))
                return R_WAIT;
            unwait(d, e);
            finish_buf(loop, e, res, b->mem);
            return R_DONE;
        }
        res = attempt(e, e->op.buf, e->op.len);
        break;
    default:
        res = attempt(e, e->op.buf, e->op.len);
        break;
    }
    if (would_block(res))
        return R_WAIT;
    unwait(d, e);
    finish(loop, e, res);
    return R_DONE;
}

/* epoll reported ev on fd: run its waiters, oldest first per direction, until one would block. A
 * callback may start, cancel or close anything (the fd table may even move), so the walk starts
 * over from the head after each one, skipping what this event already ran. */
static void fd_ready(coil_loop *loop, int fd, uint32_t ev)
{
    coil__driver *d = loop->io.drv;
    if (fd < 0 || (unsigned)fd >= d->nfds || !d->fds[fd].head)
        return;
    unsigned blocked = 0;
    if (!(ev & (EPOLLIN | EPOLLPRI | EPOLLRDHUP | EPOLLERR | EPOLLHUP)))
        blocked |= D_IN;
    if (!(ev & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        blocked |= D_OUT;
    unsigned me = ++d->pass;
    for (;;) {
        eop *e = d->fds[fd].head;
        while (e && (e->busy || e->pass == me || (e->dir & ~blocked) == 0))
            e = e->next;
        if (!e)
            return;
        e->pass = me;
        if (e->op.code == COIL__OP_POLL) {
            run_ready(loop, e, ev);
            continue;
        }
        if (run_ready(loop, e, ev) == R_WAIT)
            blocked |= e->dir;
    }
}

/* ---- cancelling ---- */

static bool cancel_eop(coil_loop *loop, eop *e)
{
    coil__driver *d = loop->io.drv;
    if (!e)
        return true; /* already delivered: nothing left to ask */
    switch (e->where) {
    case W_FD:
        if (e->busy) {
            e->cancelled = true; /* its run ends it after the callback returns */
            break;
        }
        unwait(d, e);
        queue_done(d, e, -ECANCELED);
        break;
    case W_TIMER:
        for (eop **p = &d->timers; *p; p = &(*p)->next)
            if (*p == e) {
                *p = e->next;
                break;
            }
        queue_done(d, e, -ECANCELED);
        break;
    case W_POOL:
        /* Taken off the queue before it ran: the pool hands it back with -ECANCELED. Running:
         * a blocking call cannot be interrupted, so it completes with its result. */
        (void)coil__pool_cancel(&e->job);
        break;
    default:
        break; /* a result already queued, or a close (which is not cancelled) */
    }
    return true;
}

static bool ep_cancel_task(coil_loop *loop, coil_task *t) { return cancel_eop(loop, hash_find(loop->io.drv, t)); }

static bool ep_cancel_cb(coil_loop *loop, coil__io_cb *cb) { return cancel_eop(loop, hash_find(loop->io.drv, cb)); }

static void ep_cancel_all(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    for (unsigned i = 0; d->hash && i <= d->hmask; i++)
        for (eop *e = d->hash[i]; e; e = e->hnext)
            cancel_eop(loop, e);
}

/* ---- waking from another thread ---- */

static void wake_reap(coil_loop *loop)
{
    wakebox *b = loop->io.drv->box;
    if (!atomic_exchange_explicit(&b->any, false, memory_order_acq_rel))
        return;
    for (int i = 0; i < WAKE_SLOTS; i++) {
        int how = atomic_exchange_explicit(&b->slot[i].how, 0, memory_order_acq_rel);
        coil__io_cb *rec = atomic_load_explicit(&b->slot[i].rec, memory_order_acquire);
        for (int bit = COIL__WAKE_FROM_LOOP; rec && bit <= COIL__WAKE_FROM_THREAD; bit <<= 1)
            if (how & bit) {
                coil__io_done dn = { bit, false, NULL };
                rec->complete(rec, &dn);
            }
    }
}

static coil__wake_addr ep_wake_addr(coil_loop *loop)
{
    wakebox *b = loop->io.drv->box;
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    coil__wake_addr a = { &coil__epoll_ops, b->efd, b };
    return a;
}

static void ep_wake_drop(coil__wake_addr addr) { wakebox_unref(addr.obj); }

static int ep_wake(coil_loop *from, coil__wake_addr to, coil__io_cb *rec)
{
    wakebox *b = to.obj;
    int how = from ? COIL__WAKE_FROM_LOOP : COIL__WAKE_FROM_THREAD;
    for (int i = 0; i < WAKE_SLOTS; i++) {
        coil__io_cb *cur = atomic_load_explicit(&b->slot[i].rec, memory_order_acquire);
        if (!cur && atomic_compare_exchange_strong_explicit(&b->slot[i].rec, &cur, rec, memory_order_acq_rel,
                                                            memory_order_acquire))
            cur = rec;
        if (cur != rec)
            continue;
        atomic_fetch_or_explicit(&b->slot[i].how, how, memory_order_release);
        atomic_store_explicit(&b->any, true, memory_order_release);
        uint64_t one = 1;
        /* EAGAIN means the counter is saturated: the loop has a wake-up to read already. */
        (void)!write(b->efd, &one, sizeof one);
        return how;
    }
    return -ENOSPC;
}

/* ---- polling ---- */

/* Returns whether there was anything: then the poll must not sleep (its targets are ready). */
static bool deliver_queued(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    eop *e = d->done_head;
    if (!e)
        return false;
    d->done_head = d->done_tail = NULL;
    /* Results queued by these callbacks wait for the next poll, which then does not sleep. */
    for (eop *next; e; e = next) {
        next = e->next;
        finish(loop, e, e->res);
    }
    return true;
}

static void timers_fire(coil_loop *loop, uint64_t now)
{
    coil__driver *d = loop->io.drv;
    while (d->timers && d->timers->deadline <= now) {
        eop *e = d->timers;
        d->timers = e->next;
        finish(loop, e, -ETIME);
    }
}

static bool queued(coil__driver *d)
{
    return d->done_head || atomic_load_explicit(&d->box->any, memory_order_acquire) ||
           atomic_load_explicit(&d->pool_done.head, memory_order_acquire);
}

/* The look a busy loop takes now and then (LOOK_EVERY): true when epoll should be asked now. */
static bool look_due(coil_loop *loop, int cost)
{
    coil__driver *d = loop->io.drv;
    if (d->look_now)
        return true;
    if ((d->look_left -= cost) > 0)
        return false;
    d->look_left = LOOK_EVERY;
    if (!loop->io.alarm_at && !d->timers && !d->nwaiting)
        return false;
    uint64_t now = now_ns();
    if (loop->io.alarm_at && now >= loop->io.alarm_at) {
        loop->io.alarm_at = 0;
        d->look_now = true;
    }
    if (d->timers && d->timers->deadline <= now)
        d->look_now = true;
    if (d->nwaiting && now - d->looked_at >= LOOK_NS) {
        d->look_now = true;
        d->looked_at = now; /* a blocking wait leaves it be: the next busy spell then looks first thing */
    }
    return d->look_now;
}

/* Between looks only the loop's own queue is checked: another thread's wake-up sends a loop with
 * a way in from outside to the scheduler anyway (whose poll checks everything), and a finished
 * pool job waits for the next look. */
static bool ep_pending(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    if (COIL_LIKELY(d->look_left > 1)) {
        d->look_left--;
        return d->done_head || d->look_now;
    }
    return queued(d) || look_due(loop, 1);
}

static void ep_alarm(coil_loop *loop, uint64_t deadline_ns) { loop->io.alarm_at = deadline_ns; }

static int wait_events(coil__driver *d, uint64_t timeout_ns)
{
    int n = (int)d->nevents;
#ifdef SYS_epoll_pwait2
    if (d->have_pwait2) {
        struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };
        int r = (int)syscall(SYS_epoll_pwait2, d->epfd, d->events, n, timeout_ns == UINT64_MAX ? NULL : &ts, NULL,
                             (size_t)0);
        if (r >= 0 || errno != ENOSYS)
            return r;
        d->have_pwait2 = false;
    }
#endif
    /* Milliseconds, rounded up: a timer must not wake the loop before it is due. */
    int ms = timeout_ns == UINT64_MAX ? -1
             : timeout_ns >= (uint64_t)INT32_MAX * 1000000u ? INT32_MAX
                                                             : (int)((timeout_ns + 999999u) / 1000000u);
    return epoll_wait(d->epfd, d->events, n, ms);
}

static void wait_failed(coil_loop *loop, int err)
{
    if (!loop->io.err)
        loop->io.err = err;
    if (loop->io.broken)
        return;
    loop->io.broken = true;
    coil__loop_report(loop, "epoll_wait failed; the loop cannot wait for I/O or timers and its run ends with this error",
                      err, NULL, NULL, NULL);
}

static unsigned ep_poll(coil_loop *loop, bool wait, uint64_t timeout_ns)
{
    coil__driver *d = loop->io.drv;
    bool look = wait || look_due(loop, LOOK_POLL);
    if (!look && !queued(d))
        return 0;
    unsigned before = d->pass;
    bool delivered = deliver_queued(loop);
    /* Results handed over make work ready, so the loop will not sleep now: ask epoll only when a
     * look is due, as a busy loop does, rather than spend a system call on a zero-timeout peek
     * for every batch of results. */
    if (wait && delivered)
        look = look_due(loop, LOOK_POLL);
    d->look_now = false;
    if (look) {
        uint64_t timeout = wait && !delivered ? timeout_ns : 0;
        if (timeout && queued(d))
            timeout = 0;
        uint64_t now = 0;
        if (timeout && d->timers) {
            now = now_ns();
            uint64_t left = d->timers->deadline > now ? d->timers->deadline - now : 0;
            if (left < timeout)
                timeout = left;
        }
        int n = wait_events(d, timeout);
        if (n < 0 && errno != EINTR)
            wait_failed(loop, -errno);
        for (int i = 0; i < n; i++) {
            uint64_t key = d->events[i].data.u64;
            if (key == UINT64_MAX) {
                uint64_t v;
                (void)!read(d->box->efd, &v, sizeof v);
            } else {
                fd_ready(loop, (int)key, d->events[i].events);
            }
        }
        if (d->timers)
            timers_fire(loop, now_ns());
    }
    wake_reap(loop);
    if (atomic_load_explicit(&d->pool_done.head, memory_order_acquire))
        pool_reap(loop);
    deliver_queued(loop);
    return d->pass - before + delivered;
}

/* ---- provided buffers ---- */

static void ebuf_release(coil__bufring *base)
{
    epoll_bufring *b = (epoll_bufring *)base;
    if (b->owner && b->owner->bufring == b)
        b->owner->bufring = NULL;
    free(b);
}

static int ep_bufring_shared(coil_loop *loop, coil__bufring **out)
{
    coil__driver *d = loop->io.drv;
    if (!d->bufring) {
        epoll_bufring *b = malloc(sizeof *b);
        if (!b)
            return -ENOMEM;
        b->base.refs = 0;
        b->base.size = BUF_SIZE;
        b->base.release = ebuf_release;
        b->owner = d;
        d->bufring = b;
    }
    d->bufring->base.refs++;
    *out = &d->bufring->base;
    return 0;
}

/* ---- the rest of the table ---- */

static bool ep_supports(coil_loop *loop, int cap)
{
    (void)loop;
    (void)cap;
    return false;
}

static int ep_file_add(coil_loop *loop, int fd)
{
    (void)loop;
    (void)fd;
    return -1; /* no table of registered files: operations name the fd */
}

static void ep_file_remove(coil_loop *loop, int slot)
{
    (void)loop;
    (void)slot;
}

static void ep_exit(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    if (!d)
        return;
    /* A blocking call on the pool cannot be taken back, and it writes into its record: take back
     * what has not started (the loop's close asked already, unless it gave up waiting) and wait
     * for the rest, and for every worker still touching the done list after handing a job over. */
    if (d->pool_used) {
        for (unsigned i = 0; i <= d->hmask; i++)
            for (eop *e = d->hash[i]; e; e = e->hnext)
                if (e->where == W_POOL)
                    (void)coil__pool_cancel(&e->job);
        coil__pool_done_wait(&d->pool_done);
        for (coil__pool_job *j = coil__pool_take_done(&d->pool_done), *next; j; j = next) {
            next = j->next;
            eop *e = (eop *)j;
            hash_del(d, e);
            eop_free(d, e);
        }
    }
    for (unsigned i = 0; i < d->nfds; i++)
        if (d->fds[i].forced)
            (void)fcntl((int)i, F_SETFL, d->fds[i].saved_flags);
    for (unsigned i = 0; d->hash && i <= d->hmask; i++)
        for (eop *e = d->hash[i], *next; e; e = next) {
            next = e->hnext;
            free(e);
        }
    for (eop *e = d->free_ops, *next; e; e = next) {
        next = e->next;
        free(e);
    }
    if (d->bufring)
        d->bufring->owner = NULL;
    close(d->epfd);
    wakebox_unref(d->box);
    free(d->fds);
    free(d->hash);
    free(d->events);
    free(d);
    loop->io.drv = NULL;
}

const coil__backend_ops coil__epoll_ops = {
    .name = "epoll",
    .exit = ep_exit,
    .poll = ep_poll,
    .pending = ep_pending,
    .alarm = ep_alarm,
    .submit_task = ep_submit_task,
    .submit_cb = ep_submit_cb,
    .cancel_task = ep_cancel_task,
    .cancel_cb = ep_cancel_cb,
    .cancel_all = ep_cancel_all,
    .supports = ep_supports,
    .file_add = ep_file_add,
    .file_remove = ep_file_remove,
    .bufring_shared = ep_bufring_shared,
    .wake_addr = ep_wake_addr,
    .wake = ep_wake,
    .wake_drop = ep_wake_drop,
};

int coil__epoll_init(coil_loop *loop, unsigned entries)
{
    coil__driver *d = calloc(1, sizeof *d);
    wakebox *b = calloc(1, sizeof *b);
    int err = -ENOMEM;
    if (!d || !b)
        goto fail;
    d->epfd = -1;
    b->efd = -1;
    d->nevents = entries < 64 ? 64 : entries > 1024 ? 1024 : entries;
    d->events = malloc(d->nevents * sizeof *d->events);
    if (!d->events || hash_grow(d) != 0)
        goto fail;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->epfd < 0 || b->efd < 0) {
        err = -errno;
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = UINT64_MAX };
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, b->efd, &ev) < 0) {
        err = -errno;
        goto fail;
    }
    atomic_init(&b->refs, 1);
    d->box = b;
    coil__pool_done_init(&d->pool_done, b->efd);
    d->look_left = LOOK_EVERY;
    d->have_pwait2 = true;
    loop->io.drv = d;
    loop->io.ops = &coil__epoll_ops;
    /* pending() is a couple of loads between the looks it takes now and then. */
    loop->io.peek_cheap = true;
    return 0;
fail:
    if (d) {
        if (d->epfd >= 0)
            close(d->epfd);
        free(d->events);
        free(d->hash);
    }
    if (b && b->efd >= 0)
        close(b->efd);
    free(b);
    free(d);
    return err;
}
