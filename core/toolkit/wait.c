/* coil core: wait (asyncio.wait). Like gather, the waiting task waits on a heap object with one
 * wait node per awaitable, plus a timer of its own; nothing is ever cancelled here. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "engine/internal.h"

typedef struct wait_state wait_state;

typedef struct wait_node {
    coil__wnode wnode;
    wait_state *w;
    coil__aw *aw;
} wait_node;

struct wait_state {
    coil_task *task;
    coil_loop *loop;
    coil__timer timer;
    size_t n, counter;
    coil_return_when when;
    bool woken;
    wait_node nodes[];
};

static void release(wait_state *w, int result)
{
    if (w->woken)
        return;
    w->woken = true;
    coil__timers_remove(&w->loop->timers, &w->timer);
    coil__task_wake(w->task, result);
}

static bool is_failure(const coil__aw *aw) { return aw->h.state == COIL__FAILED; }

static void on_completion(coil__wnode *wn, int result)
{
    (void)result;
    wait_node *wnd = coil__container_of(wn, wait_node, wnode);
    wait_state *w = wnd->w;
    w->counter--;
    if (w->counter == 0 || w->when == COIL_FIRST_COMPLETED ||
        (w->when == COIL_FIRST_EXCEPTION && is_failure(wnd->aw)))
        release(w, 0);
}

static void on_timeout(coil__timer *tm)
{
    release(coil__container_of(tm, wait_state, timer), 0);
}

static void wait_cancel(coil_task *t)
{
    wait_state *w = t->wait_obj;
    if (!w->woken) {
        w->woken = true;
        coil__timers_remove(&w->loop->timers, &w->timer);
        coil__task_wake(t, -ECANCELED);
    }
}

static size_t wait_awaits(const void *wait_obj, coil__aw **out, size_t max);
static const coil__wait_ops wait_wait = { "wait", wait_cancel, true, wait_awaits };

/* Is the condition already met by what is done now? */
static bool satisfied(coil_future **aws, size_t n, coil_return_when when)
{
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        const coil__aw *aw = &aws[i]->aw;
        if (aw->h.state == COIL__PENDING)
            continue;
        done++;
        if (when == COIL_FIRST_COMPLETED || (when == COIL_FIRST_EXCEPTION && is_failure(aw)))
            return true;
    }
    return done == n;
}

static void sort_out(coil_future **aws, size_t n, coil_future **done, size_t *ndone, coil_future **pending,
                     size_t *npending)
{
    size_t d = 0, p = 0;
    for (size_t i = 0; i < n; i++) {
        if (aws[i]->aw.h.state != COIL__PENDING) {
            if (done)
                done[d] = aws[i];
            d++;
        } else {
            if (pending)
                pending[p] = aws[i];
            p++;
        }
    }
    if (ndone)
        *ndone = d;
    if (npending)
        *npending = p;
}

int coil_wait(coil_future **aws, size_t n, double timeout, coil_return_when return_when,
              coil_future **done, size_t *ndone, coil_future **pending, size_t *npending)
{
    coil_loop *loop = coil__tls_running;
    coil_task *t = loop ? loop->current : NULL;
    if (!t)
        return COIL_ENOTASK;
    if (n == 0 || !aws || isnan(timeout))
        return -EINVAL;
    if (return_when != COIL_ALL_COMPLETED && return_when != COIL_FIRST_COMPLETED &&
        return_when != COIL_FIRST_EXCEPTION)
        return -EINVAL;
    for (size_t i = 0; i < n; i++) {
        if (!aws[i])
            return -EINVAL;
        if (&aws[i]->aw == &t->aw)
            return COIL_EAWAITSELF;
        if (coil__aw_loop(&aws[i]->aw) != loop)
            return COIL_EWRONGLOOP;
    }
    if (!satisfied(aws, n, return_when)) {
        int c = coil__task_check_cancel(t);
        if (c)
            return c;
        wait_state *w = malloc(sizeof *w + n * sizeof w->nodes[0]);
        if (!w)
            return -ENOMEM;
        *w = (wait_state){ .task = t, .loop = loop, .n = n, .counter = n, .when = return_when };
        w->timer.fire = on_timeout;
        if (timeout < COIL_NO_TIMEOUT) {
            uint64_t now = coil__now_ns();
            uint64_t d = timeout <= 0 ? 0 : timeout >= 1e10 ? (uint64_t)1e19 : (uint64_t)ceil(timeout * 1e9);
            if (coil__timers_add(&loop->timers, &w->timer, now + d) != 0) {
                free(w);
                return -ENOMEM;
            }
        }
        for (size_t i = 0; i < n; i++) {
            wait_node *wnd = &w->nodes[i];
            wnd->w = w;
            wnd->aw = &aws[i]->aw;
            wnd->aw->h.refs++;
            wnd->wnode.next = NULL;
            if (wnd->aw->h.state == COIL__PENDING) {
                wnd->wnode.wake = on_completion;
                coil__wlist_append(&wnd->aw->waiters, &wnd->wnode);
            } else {
                w->counter--;
            }
        }
        int r = coil__task_suspend(&wait_wait, w);
        coil__timers_remove(&loop->timers, &w->timer);
        for (size_t i = 0; i < n; i++) {
            wait_node *wnd = &w->nodes[i];
            if (wnd->wnode.next)
                coil__wlist_remove(&wnd->aw->waiters, &wnd->wnode);
            coil__aw_unref(loop, wnd->aw);
        }
        free(w);
        if (r)
            return r;
    }
    sort_out(aws, n, done, ndone, pending, npending);
    return 0;
}

/* The awaits hook of its wait (what the call graph follows): the awaitables the waiting task still waits on. */
static size_t wait_awaits(const void *wait_obj, coil__aw **out, size_t max)
{
    const wait_state *w = wait_obj;
    size_t k = 0;
    for (size_t i = 0; i < w->n; i++)
        if (w->nodes[i].wnode.next) {
            if (k < max)
                out[k] = w->nodes[i].aw;
            k++;
        }
    return k;
}
