/* coil core: asyncio.Condition (3.13+). wait() releases the lock, waits for a notification and
 * re-acquires the lock whatever happened, re-raising a cancellation only once the lock is held
 * again. A waiter cancelled after it was notified passes the notification on. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "engine/internal.h"

struct coil_condition {
    coil__wlist waiters;
    coil_lock *lock;
    coil_loop *loop;
    unsigned busy;  /* tasks inside wait() */
    bool own_lock;
};

static void cond_cancel(coil_task *t)
{
    coil_condition *c = t->wait_obj;
    coil__wlist_remove(&c->waiters, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}

static const coil__wait_ops cond_wait = { "condition", cond_cancel, true, NULL };

static void notify_n(coil_condition *c, int n)
{
    coil__wnode *w;
    while (n-- > 0 && (w = coil__wlist_pop(&c->waiters)))
        w->wake(w, 0);
}

int coil_condition_new(coil_condition **out, coil_lock *lock)
{
    if (!out)
        return -EINVAL;
    coil_condition *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    if (!lock) {
        int r = coil_lock_new(&lock);
        if (r) {
            free(c);
            return r;
        }
        c->own_lock = true;
    }
    c->lock = lock;
    c->loop = coil_get_event_loop();
    *out = c;
    return 0;
}

int coil_condition_free(coil_condition *c)
{
    if (!c)
        return 0;
    if (c->busy)
        return -EBUSY;
    if (c->own_lock) {
        int r = coil_lock_free(c->lock);
        if (r)
            return r;
    }
    free(c);
    return 0;
}

coil_lock *coil_condition_lock(coil_condition *c) { return c ? c->lock : NULL; }
int coil_condition_acquire(coil_condition *c) { return c ? coil_lock_acquire(c->lock) : -EINVAL; }
int coil_condition_release(coil_condition *c) { return c ? coil_lock_release(c->lock) : -EINVAL; }
bool coil_condition_locked(const coil_condition *c) { return c && coil_lock_locked(c->lock); }

int coil_condition_wait(coil_condition *c)
{
    if (!c)
        return -EINVAL;
    coil_loop *loop = coil__tls_running;
    if (!loop || !loop->current)
        return COIL_ENOTASK;
    if (!c->loop)
        c->loop = loop;
    else if (c->loop != loop)
        return COIL_EWRONGLOOP;
    if (!coil_lock_locked(c->lock))
        return COIL_EINVALSTATE;
    coil_task *t = loop->current;
    coil_lock_release(c->lock);
    c->busy++;
    int r = coil__task_check_cancel(t);
    if (!r) {
        t->wnode.wake = coil__wnode_wake_task;
        coil__wlist_append(&c->waiters, &t->wnode);
        r = coil__task_suspend(&cond_wait, c);
        if (r && t->wake_result == 0)
            notify_n(c, 1); /* notified, but the cancel won: someone else gets the notification */
    }
    /* The lock must be held again before returning, even when cancelled (asyncio loops on
     * CancelledError the same way and re-raises the last one). */
    for (;;) {
        int a = coil_lock_acquire(c->lock);
        if (a == 0)
            break;
        if (a != -ECANCELED) {
            r = a;
            break;
        }
        r = a;
    }
    c->busy--;
    return r;
}

int coil_condition_wait_for(coil_condition *c, bool (*pred)(void *arg), void *arg)
{
    if (!c || !pred)
        return -EINVAL;
    while (!pred(arg)) {
        int r = coil_condition_wait(c);
        if (r)
            return r;
    }
    return 0;
}

int coil_condition_notify(coil_condition *c, int n)
{
    if (!c)
        return -EINVAL;
    if (coil__foreign_thread(c->loop, "coil_condition_notify"))
        return COIL_EWRONGLOOP;
    if (!coil_lock_locked(c->lock))
        return COIL_EINVALSTATE;
    notify_n(c, n);
    return 0;
}

int coil_condition_notify_all(coil_condition *c) { return coil_condition_notify(c, INT_MAX); }
