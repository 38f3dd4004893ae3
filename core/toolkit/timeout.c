/* coil core: timeout scopes, after CPython's timeouts.py. A scope is a pooled heap object with
 * its own timer node in the loop's heap; on expiry it cancels its task, and exit decides with the
 * task's cancellation count whether the -ECANCELED it sees is its own.
 *
 * A deadline that moves later leaves the timer where it is, armed for the earlier time; when that
 * fires it re-arms for the deadline then in force. Servers move each connection's deadline on
 * every request, nearly always later, so those moves cost a store instead of a remove and an add
 * in the timer queue. */
#include <errno.h>
#include <math.h>

#include "engine/internal.h"

enum { CREATED, ENTERED, EXPIRING, EXPIRED, EXITED };

/* Pool objects carry a kind byte that only has to differ from the pool's free mark. */
enum { SCOPE_KIND = 0x20 };

struct coil_timeout_scope {
    coil__rq h;              /* first, as every pooled object: the pool's link and kind byte */
    coil__timer timer;
    coil_loop *loop;
    coil_task *task;         /* referenced from enter to exit */
    double when;             /* as asyncio's when(): INFINITY for none */
    double armed_when;       /* `when` as the timer was armed for it: never later than when */
    int cancelling;          /* the task's count at enter */
    uint8_t state;
};

static uint64_t to_ns(double when)
{
    if (when <= 0)
        return 0;
    if (when >= 1e10)
        return UINT64_MAX;
    return (uint64_t)ceil(when * 1e9);
}

static int arm(coil_timeout_scope *s)
{
    coil__timerheap *timers = &s->loop->timers;
    if (s->when >= COIL_NO_TIMEOUT) {
        coil__timers_remove(timers, &s->timer);
        return 0;
    }
    if (coil__timer_armed(&s->timer) && s->armed_when <= s->when)
        return 0; /* fires first and re-arms then */
    coil__timers_remove(timers, &s->timer);
    s->armed_when = s->when;
    return coil__timers_add(timers, &s->timer, to_ns(s->when));
}

static void on_timeout(coil__timer *tm)
{
    coil_timeout_scope *s = coil__container_of(tm, coil_timeout_scope, timer);
    if (s->state != ENTERED)
        return;
    /* Moved later since armed: wait for the new deadline. If it has passed as well, the loop
     * pops the timer again at once. Without memory to re-arm, expiring early beats never. */
    if (s->when > s->armed_when && arm(s) == 0)
        return;
    coil_task_cancel(s->task, NULL);
    s->state = EXPIRING;
}

static coil_loop *this_loop(void) { return coil__tls_running ? coil__tls_running : coil__tls_loop; }

static int make(coil_timeout_scope **out, double when)
{
    if (!out || isnan(when))
        return -EINVAL;
    coil_loop *loop = this_loop();
    if (!loop || loop->closed)
        return COIL_ECLOSED;
    if (COIL_UNLIKELY(loop->timeout_pool.objsize == 0))
        coil__pool_init(&loop->timeout_pool, sizeof(coil_timeout_scope));
    coil_timeout_scope *s = coil__pool_get(&loop->timeout_pool);
    if (!s)
        return -ENOMEM;
    s->h = (coil__rq){ .kind = SCOPE_KIND };
    s->timer.idx = 0;
    s->timer.fire = on_timeout;
    s->loop = loop;
    s->task = NULL;
    s->when = when;
    s->cancelling = 0;
    s->state = CREATED;
    *out = s;
    return 0;
}

int coil_timeout(coil_timeout_scope **out, double delay)
{
    if (isnan(delay))
        return -EINVAL;
    if (delay >= COIL_NO_TIMEOUT)
        return make(out, COIL_NO_TIMEOUT);
    return make(out, (double)coil__now_ns() / 1e9 + delay);
}

int coil_timeout_at(coil_timeout_scope **out, double when) { return make(out, when); }

int coil_timeout_enter(coil_timeout_scope *s)
{
    if (!s)
        return -EINVAL;
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (s->state != CREATED)
        return COIL_EINVALSTATE;
    if (t->loop != s->loop)
        return COIL_EWRONGLOOP;
    int err = arm(s);
    if (err)
        return err;
    s->state = ENTERED;
    s->task = t;
    t->aw.h.refs++;
    s->cancelling = t->cancel_requests;
    return 0;
}

static void drop_task(coil_timeout_scope *s)
{
    coil_task *t = s->task;
    s->task = NULL;
    coil__aw_unref(s->loop, &t->aw);
}

int coil_timeout_exit(coil_timeout_scope *s, int err)
{
    if (!s || (s->state != ENTERED && s->state != EXPIRING) || s->task != coil__running_task())
        return COIL_EINVALSTATE;
    coil__timers_remove(&s->loop->timers, &s->timer);
    coil_task *t = s->task;
    if (s->state == EXPIRING) {
        s->state = EXPIRED;
        /* Our own request is the one to take back; if the count then is no higher than at
         * enter, nobody else asked for this cancellation, so it is ours to turn into a timeout. */
        if (coil_task_uncancel(t) <= s->cancelling && err == -ECANCELED)
            err = -ETIMEDOUT;
    } else {
        s->state = EXITED;
    }
    drop_task(s);
    return err;
}

int coil_timeout_reschedule(coil_timeout_scope *s, double when)
{
    if (!s || isnan(when))
        return -EINVAL;
    if (s->state != ENTERED)
        return COIL_EINVALSTATE;
    s->when = when >= COIL_NO_TIMEOUT ? COIL_NO_TIMEOUT : when;
    return arm(s);
}

double coil_timeout_when(const coil_timeout_scope *s) { return s ? s->when : COIL_NO_TIMEOUT; }

bool coil_timeout_expired(const coil_timeout_scope *s)
{
    return s && (s->state == EXPIRING || s->state == EXPIRED);
}

void coil_timeout_free(coil_timeout_scope *s)
{
    if (!s)
        return;
    coil_loop *loop = s->loop;
    coil__timers_remove(&loop->timers, &s->timer);
    if (s->task)
        drop_task(s);
    coil__pool_put(&loop->timeout_pool, s);
}
