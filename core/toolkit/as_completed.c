/* coil core: as_completed. The iterator keeps a wait node per awaitable and a FIFO of the ones
 * that completed, in completion order; next() takes from the FIFO only after the waiting task
 * has resumed, so a cancelled next() consumes nothing. On timeout the nodes still waiting are
 * taken off and each becomes a -ETIMEDOUT for a later next(), as asyncio queues a None per
 * pending future. */
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "engine/internal.h"

typedef struct ac_node {
    coil__wnode wnode;
    coil_as_completed_iter *it;
    coil__aw *aw;
} ac_node;

struct coil_as_completed_iter {
    coil_loop *loop;
    coil__timer timer;
    coil_task *waiter;           /* the task suspended in next(), or NULL */
    size_t n;
    size_t head, tail;           /* ring of completed indices: done[head..tail) */
    size_t timed_out;            /* -ETIMEDOUT results still to hand out */
    unsigned refs;               /* the owner's, plus one while a task waits in next() */
    bool freed;
    size_t *done;
    ac_node nodes[];
};

static void wake_waiter(coil_as_completed_iter *it, int result)
{
    coil_task *t = it->waiter;
    if (t) {
        it->waiter = NULL;
        coil__task_wake(t, result);
    }
}

static void on_completion(coil__wnode *wn, int result)
{
    (void)result;
    ac_node *an = coil__container_of(wn, ac_node, wnode);
    coil_as_completed_iter *it = an->it;
    it->done[it->tail++] = (size_t)(an - it->nodes);
    wake_waiter(it, 0);
}

static void on_timeout(coil__timer *tm)
{
    coil_as_completed_iter *it = coil__container_of(tm, coil_as_completed_iter, timer);
    for (size_t i = 0; i < it->n; i++) {
        ac_node *an = &it->nodes[i];
        if (an->wnode.next) {
            coil__wlist_remove(&an->aw->waiters, &an->wnode);
            it->timed_out++;
        }
    }
    wake_waiter(it, 0);
}

int coil_as_completed(coil_future **aws, size_t n, double timeout, coil_as_completed_iter **out)
{
    if (!out || (n && !aws) || isnan(timeout))
        return -EINVAL;
    coil_loop *loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    for (size_t i = 0; i < n; i++) {
        if (!aws[i])
            return -EINVAL;
        coil_loop *l = coil__aw_loop(&aws[i]->aw);
        if (!loop)
            loop = l;
        if (l != loop)
            return COIL_EWRONGLOOP;
    }
    if (!loop || loop->closed)
        return COIL_ECLOSED;
    coil_as_completed_iter *it = malloc(sizeof *it + n * sizeof it->nodes[0]);
    size_t *done = malloc((n ? n : 1) * sizeof *done);
    if (!it || !done) {
        free(it);
        free(done);
        return -ENOMEM;
    }
    *it = (coil_as_completed_iter){ .loop = loop, .n = n, .refs = 1, .done = done };
    it->timer.fire = on_timeout;
    if (n && timeout < COIL_NO_TIMEOUT) {
        uint64_t now = coil__now_ns();
        uint64_t d = timeout <= 0 ? 0 : timeout >= 1e10 ? (uint64_t)1e19 : (uint64_t)ceil(timeout * 1e9);
        if (coil__timers_add(&loop->timers, &it->timer, now + d) != 0) {
            free(done);
            free(it);
            return -ENOMEM;
        }
    }
    for (size_t i = 0; i < n; i++) {
        ac_node *an = &it->nodes[i];
        an->it = it;
        an->aw = &aws[i]->aw;
        an->aw->h.refs++;
        an->wnode.next = NULL;
        if (an->aw->h.state == COIL__PENDING) {
            an->wnode.wake = on_completion;
            coil__wlist_append(&an->aw->waiters, &an->wnode);
        } else {
            it->done[it->tail++] = i;
        }
    }
    *out = it;
    return 0;
}

static void destroy(coil_as_completed_iter *it)
{
    coil_loop *loop = it->loop;
    coil__timers_remove(&loop->timers, &it->timer);
    for (size_t i = 0; i < it->n; i++) {
        ac_node *an = &it->nodes[i];
        if (an->wnode.next)
            coil__wlist_remove(&an->aw->waiters, &an->wnode);
        coil__aw_unref(loop, an->aw);
    }
    free(it->done);
    free(it);
}

static void unref(coil_as_completed_iter *it)
{
    if (--it->refs == 0)
        destroy(it);
}

static void cancel_next(coil_task *t)
{
    coil_as_completed_iter *it = t->wait_obj;
    it->waiter = NULL;
    coil__task_wake(t, -ECANCELED);
}

static size_t as_completed_awaits(const void *wait_obj, coil__aw **out, size_t max);
static const coil__wait_ops next_wait = { "as_completed", cancel_next, true, as_completed_awaits };

int coil_as_completed_next(coil_as_completed_iter *it, coil_future **fut)
{
    if (!it || !fut)
        return -EINVAL;
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (it->freed)
        return COIL_ECLOSED;
    if (it->head == it->tail && it->timed_out == 0) {
        if (it->head == it->n) {
            *fut = NULL;
            return 0;
        }
        if (it->waiter)
            return COIL_EINVALSTATE;
        int r = coil__task_check_cancel(t);
        if (r)
            return r;
        it->waiter = t;
        it->refs++;
        r = coil__task_suspend(&next_wait, it);
        if (it->waiter == t)
            it->waiter = NULL;
        bool freed = it->freed;
        unref(it);
        if (freed)
            return COIL_ECLOSED;
        if (r)
            return r;
    }
    if (it->head < it->tail) {
        *fut = (coil_future *)(void *)it->nodes[it->done[it->head++]].aw;
        return 0;
    }
    it->timed_out--;
    it->head++; /* the slot of a pending awaitable is spent, so the end is still at n */
    it->tail++;
    return -ETIMEDOUT;
}

void coil_as_completed_free(coil_as_completed_iter *it)
{
    if (!it)
        return;
    it->freed = true;
    wake_waiter(it, COIL_ECLOSED);
    unref(it);
}

/* The awaits hook of its wait (what the call graph follows): the awaitables not yet completed. */
static size_t as_completed_awaits(const void *wait_obj, coil__aw **out, size_t max)
{
    const coil_as_completed_iter *it = wait_obj;
    size_t k = 0;
    for (size_t i = 0; i < it->n; i++)
        if (it->nodes[i].wnode.next) {
            if (k < max)
                out[k] = it->nodes[i].aw;
            k++;
        }
    return k;
}
