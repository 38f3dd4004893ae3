/* coil core: awaitable read/write/pread/pwrite/close on any fd, through the ring.
 *
 * The operation record is the task itself (user_data points at it): a task waits on one thing
 * at a time, and it cannot go away while the kernel holds its operation, because it resumes
 * only on that operation's CQE, even when cancelled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

static void io_cancel(coil_task *t)
{
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe)
        return; /* the request stays pending and is delivered at the next await */
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)t | COIL__UD_TASK, 0);
    io_uring_sqe_set_data64(sqe, COIL__UD_IGNORE);
    /* Further cancels while we wait for the kernel just mark the task. */
    t->wait_ops = NULL;
    /* If the operation completes anyway (a partial send, a read that won the race), the request
     * must survive to the next await; suspend drops the mark when the result is -ECANCELED. */
    t->tflags |= COIL__TF_MUST_CANCEL;
}

static const coil__wait_ops io_wait = { "io", io_cancel, false, NULL };

/* Is [p, p+n) on the shared stack of compact tasks? Such memory belongs to another task while
 * this one is suspended, so the kernel must not be given it. */
bool coil__on_shared_stack(coil_loop *loop, const void *p, size_t n)
{
    /* Debug mode runs a compact task on a stack of its own and holds it to the same rule. */
    const coil_task *t = loop->current;
    const coil__stack *s = t && (t->tflags & COIL__TF_CHECKED) ? t->stack : loop->stacks.shared;
    const unsigned char *lo = coil__stack_bottom(s), *hi = coil__stack_top(s);
    const unsigned char *b = p;
    return b < hi && b + n > lo;
}

/* Prepare, submit on the next poll, and wait for the CQE. Returns the CQE's res. */
int coil__io_submit_wait(coil_task *t, struct io_uring_sqe *sqe)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)t | COIL__UD_TASK);
    return coil__task_suspend(&io_wait, NULL);
}

enum { OP_READ, OP_WRITE, OP_CLOSE };

static int rw(int op, int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (fd < 0)
        return -EBADF;
    if (len > 0x7ffff000u)
        len = 0x7ffff000u; /* the kernel's own cap on one read/write */
    /* A pending cancel stops a read or write before it starts, but never a close: the caller
     * gave the fd away, so it is closed and the cancel waits for the next await. */
    if (op != OP_CLOSE) {
        int c = coil__task_check_cancel(t);
        if (c)
            return c;
    }
    coil_loop *loop = t->loop;
    void *bounce = NULL, *io_buf = buf;
    if (op != OP_CLOSE && len && (t->tflags & COIL__TF_COMPACT) && coil__on_shared_stack(loop, buf, len)) {
        bounce = malloc(len);
        if (!bounce)
            return -ENOMEM;
        if (op == OP_WRITE)
            memcpy(bounce, buf, len);
        io_buf = bounce;
    }
    struct io_uring_sqe *sqe = coil__uring_sqe(loop);
    if (!sqe) {
        free(bounce);
        return -EBUSY;
    }
    if (op == OP_READ)
        io_uring_prep_read(sqe, fd, io_buf, (unsigned)len, off);
    else if (op == OP_WRITE)
        io_uring_prep_write(sqe, fd, io_buf, (unsigned)len, off);
    else
        io_uring_prep_close(sqe, fd);
    int res = coil__io_submit_wait(t, sqe);
    if (op == OP_READ && res > 0)
        coil__kernel_wrote(io_buf, (size_t)res);
    if (bounce) {
        if (op == OP_READ && res > 0)
            memcpy(buf, bounce, (size_t)res);
        free(bounce);
    }
    if (res < 0)
        return res;
    if (done)
        *done = (size_t)res;
    return 0;
}

/* -1 as the offset means "the file position" for read(2)/write(2) semantics on any fd. */
#define CUR_POS ((uint64_t)-1)

int coil_read(int fd, void *buf, size_t len, size_t *nread) { return rw(OP_READ, fd, buf, len, CUR_POS, nread); }

int coil_write(int fd, const void *buf, size_t len, size_t *nwritten)
{
    return rw(OP_WRITE, fd, (void *)buf, len, CUR_POS, nwritten);
}

int coil_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *nread)
{
    if (offset == CUR_POS)
        return -EINVAL;
    return rw(OP_READ, fd, buf, len, offset, nread);
}

int coil_pwrite(int fd, const void *buf, size_t len, uint64_t offset, size_t *nwritten)
{
    if (offset == CUR_POS)
        return -EINVAL;
    return rw(OP_WRITE, fd, (void *)buf, len, offset, nwritten);
}

int coil_write_all(int fd, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len) {
        size_t n = 0;
        int err = coil_write(fd, p, len, &n);
        if (err)
            return err;
        if (n == 0)
            return -EIO;
        p += n;
        len -= n;
    }
    return 0;
}

int coil_close(int fd) { return rw(OP_CLOSE, fd, NULL, 0, 0, NULL); }
