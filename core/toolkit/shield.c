/* coil core: shield. The waiting task's node sits on the awaitable's wait list as in a plain
 * await, but cancelling the task only takes the node off: the awaitable is never told, so its
 * work goes on and its outcome stays on it for whoever reads it next. */
#include <errno.h>

#include "engine/internal.h"

static const coil__wait_ops shield_wait = { "shield", coil__aw_cancel_waiter, true, coil__aw_awaits_self };

int coil_shield(coil_future *f, void **result)
{
    if (!f)
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
    int r = coil__task_check_cancel(t);
    if (r)
        return r;
    t->wnode.wake = coil__wnode_wake_task;
    coil__wlist_append(&aw->waiters, &t->wnode);
    aw->h.refs++;
    r = coil__task_suspend(&shield_wait, aw);
    if (t->wnode.next)
        coil__wlist_remove(&aw->waiters, &t->wnode);
    if (r == 0)
        r = coil__aw_outcome(aw, result);
    coil__aw_unref(loop, aw);
    return r;
}
