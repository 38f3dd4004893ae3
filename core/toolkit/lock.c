/* coil core: asyncio.Lock, fair as in CPython 3.12. A release wakes the first waiter but does not
 * hand it the lock: the lock reads unlocked until the waiter runs and takes it (asyncio's
 * observable state), while `woken` keeps newcomers from barging past it. A waiter cancelled after
 * its wake-up passes the wake-up on, so a release is never lost. */
#include <errno.h>
#include <stdlib.h>

#include "engine/internal.h"

struct coil_lock {
    coil__wlist waiters;
    coil_loop *loop;
    unsigned busy;   /* tasks inside acquire(): waiting, or woken and not yet run */
    bool woken;      /* the first waiter was woken and has not run yet */
    bool locked;
};

static void lock_cancel(coil_task *t)
{
    coil_lock *l = t->wait_obj;
    coil__wlist_remove(&l->waiters, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}

static const coil__wait_ops lock_wait = { "lock", lock_cancel, true, NULL };

/* asyncio's _wake_up_first: only the head of the line is ever woken, and only once. */
static void wake_up_first(coil_lock *l)
{
    if (l->woken)
        return;
    coil__wnode *n = coil__wlist_pop(&l->waiters);
    if (n) {
        l->woken = true;
        n->wake(n, 0);
    }
}

int coil_lock_new(coil_lock **out)
{
    if (!out)
        return -EINVAL;
    coil_lock *l = calloc(1, sizeof *l);
    if (!l)
        return -ENOMEM;
    l->loop = coil_get_event_loop();
    *out = l;
    return 0;
}

int coil_lock_free(coil_lock *l)
{
    if (!l)
        return 0;
    if (l->busy)
        return -EBUSY;
    free(l);
    return 0;
}

int coil_lock_acquire(coil_lock *l)
{
    if (!l)
        return -EINVAL;
    coil_loop *loop = coil__tls_running;
    if (!loop || !loop->current)
        return COIL_ENOTASK;
    if (!l->loop)
        l->loop = loop;
    else if (l->loop != loop)
        return COIL_EWRONGLOOP;
    if (!l->locked && !l->woken && coil__wlist_empty(&l->waiters)) {
        l->locked = true;
        return 0;
    }
    coil_task *t = loop->current;
    int r = coil__task_check_cancel(t);
    if (r)
        return r;
    t->wnode.wake = coil__wnode_wake_task;
    coil__wlist_append(&l->waiters, &t->wnode);
    l->busy++;
    r = coil__task_suspend(&lock_wait, l);
    l->busy--;
    if (t->wake_result == 0)
        l->woken = false; /* we were the woken one, whether or not a late cancel won */
    if (r == 0) {
        l->locked = true;
        return 0;
    }
    if (!l->locked)
        wake_up_first(l);
    return r;
}

int coil_lock_release(coil_lock *l)
{
    if (!l)
        return -EINVAL;
    if (coil__foreign_thread(l->loop, "coil_lock_release"))
        return COIL_EWRONGLOOP;
    if (!l->locked)
        return COIL_EINVALSTATE;
    l->locked = false;
    wake_up_first(l);
    return 0;
}

bool coil_lock_locked(const coil_lock *l) { return l && l->locked; }
