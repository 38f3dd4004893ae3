/* coil core: asyncio.Event. Waiters are the tasks' own wait nodes, so waiting allocates nothing;
 * set() wakes them all, and a wake-up stays valid even if clear() runs before the waiter does. */
#include <errno.h>
#include <stdlib.h>

#include "engine/internal.h"

struct coil_event {
    coil__wlist waiters;
    coil_loop *loop;
    unsigned busy;  /* tasks inside wait(): waiting, or woken and not yet run */
    bool value;
};

static void event_cancel(coil_task *t)
{
    coil_event *e = t->wait_obj;
    coil__wlist_remove(&e->waiters, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}

/* A cancel landing after set() still wins (asyncio); nothing was consumed, so nothing to pass on. */
static const coil__wait_ops event_wait = { "event", event_cancel, true, NULL };

int coil_event_new(coil_event **out)
{
    if (!out)
        return -EINVAL;
    coil_event *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->loop = coil_get_event_loop();
    *out = e;
    return 0;
}

int coil_event_free(coil_event *e)
{
    if (!e)
        return 0;
    if (e->busy)
        return -EBUSY;
    free(e);
    return 0;
}

int coil_event_wait(coil_event *e)
{
    if (!e)
        return -EINVAL;
    if (e->value)
        return 0;
    coil_loop *loop = coil__tls_running;
    if (!loop || !loop->current)
        return COIL_ENOTASK;
    if (!e->loop)
        e->loop = loop;
    else if (e->loop != loop)
        return COIL_EWRONGLOOP;
    coil_task *t = loop->current;
    int r = coil__task_check_cancel(t);
    if (r)
        return r;
    t->wnode.wake = coil__wnode_wake_task;
    coil__wlist_append(&e->waiters, &t->wnode);
    e->busy++;
    r = coil__task_suspend(&event_wait, e);
    e->busy--;
    return r;
}

void coil_event_set(coil_event *e)
{
    if (!e || e->value || coil__foreign_thread(e->loop, "coil_event_set"))
        return;
    e->value = true;
    coil__wnode *n;
    while ((n = coil__wlist_pop(&e->waiters)))
        n->wake(n, 0);
}

void coil_event_clear(coil_event *e)
{
    if (e && !coil__foreign_thread(e->loop, "coil_event_clear"))
        e->value = false;
}

bool coil_event_is_set(const coil_event *e) { return e && e->value; }
