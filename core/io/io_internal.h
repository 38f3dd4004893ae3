/* coil core: what the I/O files share on top of the driver interface (backend/backend.h).
 * Private to the library. */
#ifndef COIL_CORE_IO_INTERNAL_H
#define COIL_CORE_IO_INTERNAL_H

#include "engine/internal.h"

/* Start op for the running task t and wait for its completion: returns its result. The task is
 * the operation's record: it resumes only on that completion, even when cancelled (a cancel
 * asks the driver to end the operation early), so whatever op names stays valid for as long as
 * the kernel uses it. -EBUSY without waiting when the driver can take no operation now. */
int coil__io_wait(coil_task *t, const coil__op *op);
/* The waiting half of coil__io_wait, for a caller that started the operation itself
 * (coil__backend_submit_task) and had bookkeeping to do in between. */
int coil__io_suspend(coil_task *t);

/* Must [p, p+n) be copied to the heap before t waits on an operation that names it? Yes when it
 * lies on the shared stack of compact tasks, which belongs to another task while t is
 * suspended (debug mode holds a checked compact task on its own stack to the same rule). */
static inline bool coil__io_must_bounce(const coil_task *t, const void *p, size_t n)
{
    return p && n && (t->tflags & COIL__TF_COMPACT) && coil__on_shared_stack(t->loop, p, n);
}

/* The one close of coil_close, coil_file_close and coil_sock_close (see their headers): from a
 * task, when it returns the fd is closed whatever the result. Through the driver when it takes
 * the operation, else synchronously; the wait for it cannot be cut short, so a cancel pending at
 * the call or arriving during the close is delivered at the task's next await. -EBADF for a
 * negative fd; COIL_ENOTASK outside a task (the fd is left alone then). */
int coil__io_close(int fd);

#endif
