/* coil core: asyncio.Semaphore and BoundedSemaphore (3.12+). A release hands its permit straight
 * to the first waiter (value is decremented on its behalf); a waiter cancelled after that gives
 * the permit back, and every acquire that ends wakes as many waiters as permits allow. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>

#include "engine/internal.h"

struct coil_semaphore {
    coil__wlist waiters;
    coil_loop *loop;
    int value;
    int bound;       /* the initial value, enforced when bounded */
    unsigned busy;   /* tasks inside acquire() */
    unsigned woken;  /* handed a permit, not yet run */
    bool bounded;
};

static void sem_cancel(coil_task *t)
{
    coil_semaphore *s = t->wait_obj;
    coil__wlist_remove(&s->waiters, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}

static const coil__wait_ops sem_wait = { "semaphore", sem_cancel, true, NULL };

static bool wake_up_next(coil_semaphore *s)
{
    coil__wnode *n = coil__wlist_pop(&s->waiters);
    if (!n)
        return false;
    s->value--;
    s->woken++;
    n->wake(n, 0);
    return true;
}

static int sem_new(coil_semaphore **out, int value, bool bounded)
{
    if (!out || value < 0)
        return -EINVAL;
    coil_semaphore *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->loop = coil_get_event_loop();
    s->value = s->bound = value;
    s->bounded = bounded;
    *out = s;
    return 0;
}

int coil_semaphore_new(coil_semaphore **out, int value) { return sem_new(out, value, false); }
int coil_bounded_semaphore_new(coil_semaphore **out, int value) { return sem_new(out, value, true); }

int coil_semaphore_free(coil_semaphore *s)
{
    if (!s)
        return 0;
    if (s->busy)
        return -EBUSY;
    free(s);
    return 0;
}

bool coil_semaphore_locked(const coil_semaphore *s)
{
    return !s || s->value == 0 || !coil__wlist_empty(&s->waiters) || s->woken;
}

int coil_semaphore_value(const coil_semaphore *s) { return s ? s->value : 0; }

int coil_semaphore_acquire(coil_semaphore *s)
{
    if (!s)
        return -EINVAL;
    coil_loop *loop = coil__tls_running;
    if (!loop || !loop->current)
        return COIL_ENOTASK;
    if (!s->loop)
        s->loop = loop;
    else if (s->loop != loop)
        return COIL_EWRONGLOOP;
    if (!coil_semaphore_locked(s)) {
        s->value--;
        return 0;
    }
    coil_task *t = loop->current;
    int r = coil__task_check_cancel(t);
    if (!r) {
        t->wnode.wake = coil__wnode_wake_task;
        coil__wlist_append(&s->waiters, &t->wnode);
        s->busy++;
        r = coil__task_suspend(&sem_wait, s);
        s->busy--;
        if (t->wake_result == 0) {
            s->woken--;
            if (r)
                s->value++; /* handed a permit, but the cancel won: give it back */
        }
    }
    /* Newcomers may have queued behind us while permits were free (FIFO): wake what fits. */
    while (s->value > 0 && wake_up_next(s))
        ;
    return r;
}

int coil_semaphore_release(coil_semaphore *s)
{
    if (!s)
        return -EINVAL;
    if (coil__foreign_thread(s->loop, "coil_semaphore_release"))
        return COIL_EWRONGLOOP;
    if (s->bounded && s->value >= s->bound)
        return -EINVAL;
    if (s->value == INT_MAX)
        return -EOVERFLOW;
    s->value++;
    wake_up_next(s);
    return 0;
}
