/* coil core: the epoll driver's operations (see epoll.c for the model): each becomes an `eop`
 * record, found by its target in a hash; pollable fds are driven by non-blocking calls retried on
 * readiness, the rest goes to the thread pool. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backend/epoll/state.h"
#include "observe/stats.h"

static void deliver(coil_loop *loop, eop *e, int res, bool more, const void *buf);

/* A result handed to its target: counted for the poll's return and the loop's stats. */
static inline void reaped(coil_loop *loop)
{
    loop->io.drv->handed++;
    COIL__STAT_ADD(loop, cqes_reaped, 1);
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

int coil__ep_hash_grow(coil__driver *d)
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
    if (d->hcount >= d->hmask && coil__ep_hash_grow(d) != 0)
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
void coil__ep_finish(coil_loop *loop, eop *e, int res)
{
    coil__driver *d = loop->io.drv;
    unforce(d, e);
    hash_del(d, e);
    if (e->counted)
        loop->io.inflight--;
    void *target = e->target;
    int kind = e->kind;
    eop_free(d, e);
    reaped(loop);
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
    reaped(loop);
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
static int attempt(const coil__op *op, void *buf, size_t len)
{
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

/* Do operations that move data wait on fd in direction dir? A new one then queues behind them
 * rather than try first and overtake them (io_uring keeps that order too). A POLL moves nothing,
 * so nothing queues behind it. */
static bool waited_on(const coil__driver *d, int fd, unsigned dir)
{
    if (fd < 0 || (unsigned)fd >= d->nfds)
        return false;
    for (const eop *e = d->fds[fd].head; e; e = e->next)
        if ((e->dir & dir) && e->op.code != COIL__OP_POLL)
            return true;
    return false;
}

/* A socket call that can finish now, made on the caller's thread instead of becoming an operation
 * whose result waits for the next poll: a server's answer then costs its system call and nothing
 * else. Operations already waiting in the same direction keep their turn. */
int coil__ep_try(coil_loop *loop, const coil__op *op)
{
    coil__driver *d = loop->io.drv;
    unsigned dir;
    switch (op->code) {
    case COIL__OP_SEND:
    case COIL__OP_SENDMSG:
        dir = D_OUT;
        break;
    case COIL__OP_RECV:
    case COIL__OP_RECVMSG:
        if (op->bufs)
            return -EAGAIN; /* the provided buffer is filled only where it is handed over */
        dir = D_IN;
        break;
    default:
        return -EAGAIN;
    }
    if ((op->flags & COIL__OPF_FIXED) || waited_on(d, op->fd, dir))
        return -EAGAIN;
    int res = attempt(op, op->buf, op->len);
    if (would_block(res) || res == -EINTR)
        return -EAGAIN;
    /* Still one operation in the loop's stats: started and finished. */
    COIL__STAT_ADD(loop, sqes_submitted, 1);
    COIL__STAT_ADD(loop, cqes_reaped, 1);
    return res;
}

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

void coil__ep_pool_reap(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    for (coil__pool_job *j = coil__pool_take_done(&d->pool_done), *next; j; j = next) {
        next = j->next;
        eop *e = (eop *)j;
        d->pool_inflight--;
        int fd = e->op.fd;
        bool named = pool_names_fd(&e->op);
        coil__ep_finish(loop, e, j->res);
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
        e->deadline = coil__ep_now_ns() + (uint64_t)ts->sec * 1000000000u + (uint64_t)ts->nsec;
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
    case COIL__OP_CONNECT:
        res = connect(op->fd, op->buf, (socklen_t)op->len) == 0 ? 0 : -errno;
        if (res == -EINPROGRESS)
            res = -EAGAIN;
        break;
    case COIL__OP_RECV:
        if (op->bufs) {
            wait_or_fail(d, e, true); /* the one buffer is filled only where it is handed over */
            return;
        }
        /* fall through */
    default:
        if (waited_on(d, op->fd, e->dir)) {
            /* Behind them: epoll reports the fd's readiness again, so an edge the ones ahead
             * already took cannot leave this one waiting. */
            wait_or_fail(d, e, true);
            return;
        }
        res = attempt(&e->op, op->buf, op->len);
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

int coil__ep_submit_task(coil_loop *loop, const coil__op *op, coil_task *t) { return submit(loop, op, t, T_TASK); }

int coil__ep_submit_cb(coil_loop *loop, const coil__op *op, coil__io_cb *cb)
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
    reaped(loop);
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
        int res = recv_ && !buf ? -ENOBUFS : attempt(&e->op, buf, BUF_SIZE);
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
            coil__ep_finish(loop, e, -ECANCELED);
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
            res = attempt(&e->op, b->mem, BUF_SIZE);
            if (would_block(res))
                return R_WAIT;
            unwait(d, e);
            finish_buf(loop, e, res, b->mem);
            return R_DONE;
        }
        res = attempt(&e->op, e->op.buf, e->op.len);
        break;
    default:
        res = attempt(&e->op, e->op.buf, e->op.len);
        break;
    }
    if (would_block(res))
        return R_WAIT;
    unwait(d, e);
    coil__ep_finish(loop, e, res);
    return R_DONE;
}

/* epoll reported ev on fd: run its waiters, oldest first per direction, until one would block. A
 * callback may start, cancel or close anything (the fd table may even move), so the walk starts
 * over from the head after each one, skipping what this event already ran. */
void coil__ep_fd_ready(coil_loop *loop, int fd, uint32_t ev)
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

bool coil__ep_cancel_task(coil_loop *loop, coil_task *t) { return cancel_eop(loop, hash_find(loop->io.drv, t)); }

bool coil__ep_cancel_cb(coil_loop *loop, coil__io_cb *cb) { return cancel_eop(loop, hash_find(loop->io.drv, cb)); }

void coil__ep_cancel_all(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    for (unsigned i = 0; d->hash && i <= d->hmask; i++)
        for (eop *e = d->hash[i]; e; e = e->hnext)
            cancel_eop(loop, e);
}

/* ---- at exit ---- */

void coil__ep_ops_free(coil__driver *d)
{
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
}
