/* coil core: sleeping and yielding. A sleeping task is its own timer (the timer node lives in
 * the task), so sleep allocates nothing. */
#include <errno.h>
#include <math.h>

#include "engine/internal.h"

static void sleep_fire(coil__timer *tm)
{
    coil__task_wake(coil__container_of(tm, coil_task, timer), 0);
}

static void sleep_cancel(coil_task *t)
{
    coil__timers_remove(&t->loop->timers, &t->timer);
    coil__task_wake(t, -ECANCELED);
}

static const coil__wait_ops sleep_wait = { "sleep", sleep_cancel, true, NULL };
static const coil__wait_ops yield_wait = { "yield", NULL, true, NULL };

int coil_sleep_ns(uint64_t ns)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    if (ns == 0) {
        /* A bare yield: to the back of the ready queue, behind everything already there. */
        t->tstate = COIL__T_READY;
        t->wake_result = 0;
        coil__rq_push(t->loop, &t->aw.h);
        return coil__task_suspend(&yield_wait, NULL);
    }
    uint64_t now = coil__now_ns();
    uint64_t when = ns > UINT64_MAX - now ? UINT64_MAX : now + ns;
    t->timer.fire = sleep_fire;
    if (coil__timers_add(&t->loop->timers, &t->timer, when) != 0)
        return -ENOMEM;
    return coil__task_suspend(&sleep_wait, NULL);
}

int coil_sleep(double seconds)
{
    if (isnan(seconds))
        return -EINVAL;
    if (seconds <= 0)
        return coil_sleep_ns(0);
    if (seconds >= 1e10)
        return coil_sleep_ns(UINT64_MAX);
    return coil_sleep_ns((uint64_t)ceil(seconds * 1e9));
}
