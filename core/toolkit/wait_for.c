/* coil core: wait_for, as CPython 3.12+ writes it: a timeout scope around a plain await. The
 * await forwards the scope's cancellation to the awaitable and waits for it to finish, so a
 * task that swallows the cancellation and returns a value gives that value, and the scope turns
 * its own -ECANCELED into -ETIMEDOUT. */
#include <errno.h>
#include <math.h>

#include "engine/internal.h"

/* Wait for aw's end without forwarding a cancel of the waiting task to it (asyncio's
 * _cancel_and_wait awaits a separate waiter future for the same reason). */
static const coil__wait_ops cancel_and_wait_ops = { "wait_for", coil__aw_cancel_waiter, true, coil__aw_awaits_self };

static int cancel_and_wait(coil_loop *loop, coil_task *t, coil__aw *aw, void **result)
{
    coil_future_cancel((coil_future *)aw, NULL);
    int r = 0;
    if (aw->h.state == COIL__PENDING) {
        r = coil__task_check_cancel(t);
        if (r)
            return r;
        t->wnode.wake = coil__wnode_wake_task;
        coil__wlist_append(&aw->waiters, &t->wnode);
        aw->h.refs++;
        r = coil__task_suspend(&cancel_and_wait_ops, aw);
        if (t->wnode.next)
            coil__wlist_remove(&aw->waiters, &t->wnode);
        if (r == 0) {
            r = coil__aw_outcome(aw, result);
            if (r == -ECANCELED)
                r = -ETIMEDOUT;
        }
        coil__aw_unref(loop, aw);
        return r;
    }
    r = coil__aw_outcome(aw, result);
    return r == -ECANCELED ? -ETIMEDOUT : r;
}

int coil_wait_for(coil_future *f, double timeout, void **result)
{
    if (!f || isnan(timeout))
        return -EINVAL;
    coil_loop *loop = coil__tls_running;
    coil_task *t = loop ? loop->current : NULL;
    if (!t)
        return COIL_ENOTASK;
    coil__aw *aw = &f->aw;
    if (aw == &t->aw)
        return COIL_EAWAITSELF;
    if (coil__aw_loop(aw) != loop)
        return COIL_EWRONGLOOP;
    if (aw->h.state != COIL__PENDING)
        return coil__aw_outcome(aw, result);
    if (timeout <= 0)
        return cancel_and_wait(loop, t, aw, result);
    if (timeout >= COIL_NO_TIMEOUT)
        return coil__aw_await(loop, aw, result);
    coil_timeout_scope *s;
    int r = coil_timeout(&s, timeout);
    if (r)
        return r;
    r = coil_timeout_enter(s);
    if (r == 0)
        r = coil_timeout_exit(s, coil__aw_await(loop, aw, result));
    coil_timeout_free(s);
    return r;
}
