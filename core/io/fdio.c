/* coil core: awaitable read/write/pread/pwrite/close on any fd, through the loop's driver.
 *
 * The operation record is the task itself: a task waits on one thing at a time, and it cannot
 * go away while the kernel holds its operation, because it resumes only on that operation's
 * completion, even when cancelled. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/io_internal.h"

static void io_cancel(coil_task *t)
{
    if (!coil__backend_cancel_task(t->loop, t))
        return; /* the request stays pending and is delivered at the next await */
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

int coil__io_suspend(coil_task *t)
{
    (void)t; /* the running task: coil__task_suspend finds it */
    return coil__task_suspend(&io_wait, NULL);
}

int coil__io_wait(coil_task *t, const coil__op *op)
{
    int err = coil__backend_submit_task(t->loop, op, t);
    if (err)
        return err;
    return coil__task_suspend(&io_wait, NULL);
}

/* A close's wait has no cancel: the close always completes (see coil__io_close). */
static const coil__wait_ops close_wait = { "close", NULL, false, NULL };

int coil__io_close(int fd)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (fd < 0)
        return -EBADF;
    coil__op op = { .code = COIL__OP_CLOSE, .fd = fd };
    if (coil__backend_submit_task(t->loop, &op, t) != 0)
        return close(fd) ? -errno : 0; /* no room in the driver: close it here */
    return coil__task_suspend(&close_wait, NULL);
}

static int rw(bool write, int fd, void *buf, size_t len, uint64_t off, size_t *done)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (fd < 0)
        return -EBADF;
    if (len > 0x7ffff000u)
        len = 0x7ffff000u; /* the kernel's own cap on one read/write */
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    void *bounce = NULL, *io_buf = buf;
    if (coil__io_must_bounce(t, buf, len)) {
        bounce = malloc(len);
        if (!bounce)
            return -ENOMEM;
        if (write)
            memcpy(bounce, buf, len);
        io_buf = bounce;
    }
    coil__op op = { .code = write ? COIL__OP_WRITE : COIL__OP_READ, .fd = fd, .buf = io_buf, .len = len, .off = off };
    int res = coil__io_wait(t, &op);
    if (!write && res > 0)
        coil__kernel_wrote(io_buf, (size_t)res);
    if (bounce) {
        if (!write && res > 0)
            memcpy(buf, bounce, (size_t)res);
        free(bounce);
    }
    if (res < 0)
        return res;
    if (done)
        *done = (size_t)res;
    return 0;
}

/* COIL__OFF_CUR as the offset means "the file position": read(2)/write(2) on any fd. */

int coil_read(int fd, void *buf, size_t len, size_t *nread) { return rw(false, fd, buf, len, COIL__OFF_CUR, nread); }

int coil_write(int fd, const void *buf, size_t len, size_t *nwritten)
{
    return rw(true, fd, (void *)buf, len, COIL__OFF_CUR, nwritten);
}

int coil_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *nread)
{
    if (offset == COIL__OFF_CUR)
        return -EINVAL;
    return rw(false, fd, buf, len, offset, nread);
}

int coil_pwrite(int fd, const void *buf, size_t len, uint64_t offset, size_t *nwritten)
{
    if (offset == COIL__OFF_CUR)
        return -EINVAL;
    return rw(true, fd, (void *)buf, len, offset, nwritten);
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

int coil_close(int fd) { return coil__io_close(fd); }
