/* coil core: futures, and what tasks share with them: completion, awaiting, done callbacks,
 * outcomes and reference counts. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

static coil__task_ext *ext_of(coil__aw *aw)
{
    return aw->h.kind == COIL__RQ_TASK ? ((coil_task *)aw)->ext : NULL;
}

coil_exception *coil__aw_exception(coil__aw *aw)
{
    if (aw->h.kind == COIL__RQ_TASK) {
        coil__task_ext *x = ext_of(aw);
        return x ? x->exc : NULL;
    }
    return ((coil_future *)aw)->exc;
}

int coil__aw_outcome(coil__aw *aw, void **result)
{
    switch (aw->h.state) {
    case COIL__PENDING:
        return COIL_EINVALSTATE;
    case COIL__DONE:
        if (result)
            *result = aw->result;
        return 0;
    case COIL__CANCELLED:
        aw->h.flags |= COIL__AW_RETRIEVED;
        return -ECANCELED;
    default: {
        aw->h.flags |= COIL__AW_RETRIEVED;
        coil_exception *e = coil__aw_exception(aw);
        return e ? e->code : -EIO;
    }
    }
}

static void free_aw(coil_loop *loop, coil__aw *aw)
{
    if (aw->h.state == COIL__FAILED && !(aw->h.flags & COIL__AW_RETRIEVED)) {
        coil_exception *e = coil__aw_exception(aw);
        bool task = aw->h.kind == COIL__RQ_TASK;
        coil__loop_report(loop, task ? "Task exception was never retrieved" : "Future exception was never retrieved",
                          e ? e->code : 0, e, task ? (coil_task *)aw : NULL, task ? NULL : (coil_future *)aw);
    }
    if (aw->h.kind == COIL__RQ_TASK)
        coil__task_free_now(loop, (coil_task *)aw);
    else
        coil__future_free_now(loop, (coil_future *)aw);
}

void coil__aw_unref(coil_loop *loop, coil__aw *aw)
{
    if (--aw->h.refs == 0)
        free_aw(loop, aw);
}

/* Wake everyone waiting, in the order they started waiting. Tasks go straight to the ready queue;
 * callbacks are queued there too, so both keep asyncio's call_soon order. */
void coil__aw_complete(coil_loop *loop, coil__aw *aw)
{
    (void)loop;
    coil__wnode *n;
    while ((n = coil__wlist_pop(&aw->waiters)))
        n->wake(n, 0);
}

/* ---- awaiting ---- */

void coil__aw_cancel_waiter(coil_task *t)
{
    coil__aw *aw = t->wait_obj;
    coil__wlist_remove(&aw->waiters, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}

size_t coil__aw_awaits_self(const void *wait_obj, coil__aw **out, size_t max)
{
    if (max)
        out[0] = (coil__aw *)wait_obj;
    return 1;
}

static void cancel_future_wait(coil_task *t)
{
    coil_future_cancel((coil_future *)t->wait_obj, t->ext ? t->ext->cancel_msg : NULL);
}

static void cancel_task_wait(coil_task *t)
{
    /* Forward to the awaited task and keep waiting for it, as asyncio does: its outcome (maybe a
     * value, if it swallows the cancellation) becomes ours. */
    coil_task_cancel((coil_task *)t->wait_obj, t->ext ? t->ext->cancel_msg : NULL);
}

static const coil__wait_ops future_wait = { "future", cancel_future_wait, true, coil__aw_awaits_self };
static const coil__wait_ops task_wait = { "task", cancel_task_wait, true, coil__aw_awaits_self };

int coil__aw_await(coil_loop *loop, coil__aw *aw, void **result)
{
    coil_task *cur = loop->current;
    if (aw->h.state != COIL__PENDING)
        return coil__aw_outcome(aw, result); /* a done awaitable does not suspend (asyncio) */
    int c = coil__task_check_cancel(cur);
    if (c)
        return c;
    cur->wnode.wake = coil__wnode_wake_task;
    coil__wlist_append(&aw->waiters, &cur->wnode);
    aw->h.refs++; /* the outcome is read after we resume */
    int r = coil__task_suspend(aw->h.kind == COIL__RQ_TASK ? &task_wait : &future_wait, aw);
    if (r == 0)
        r = coil__aw_outcome(aw, result);
    if (aw->h.state == COIL__PENDING && cur->wnode.next)
        coil__wlist_remove(&aw->waiters, &cur->wnode);
    coil__aw_unref(loop, aw);
    return r;
}

int coil_future_await(coil_future *f, void **result)
{
    if (!f)
        return -EINVAL;
    coil_loop *loop = coil__tls_running;
    if (!loop || !loop->current)
        return COIL_ENOTASK;
    if (&f->aw == &loop->current->aw)
        return COIL_EAWAITSELF;
    if (coil__aw_loop(&f->aw) != loop)
        return COIL_EWRONGLOOP;
    return coil__aw_await(loop, &f->aw, result);
}

/* ---- done callbacks ---- */

static void donecb_wake(coil__wnode *n, int result)
{
    (void)result;
    coil__donecb *cb = coil__container_of(n, coil__donecb, wnode);
    coil__rq_push(coil__aw_loop(cb->aw), &cb->rq);
}

void coil__donecb_run(coil_loop *loop, coil__donecb *cb)
{
    coil__aw *aw = cb->aw;
    cb->fn((coil_future *)aw, cb->arg);
    coil__pool_put(&loop->donecb_pool, cb);
    coil__aw_unref(loop, aw);
}

int coil__aw_add_done(coil__aw *aw, coil_done_fn fn, void *arg)
{
    if (!fn)
        return -EINVAL;
    coil_loop *loop = coil__aw_loop(aw);
    coil__donecb *cb = coil__pool_get(&loop->donecb_pool);
    if (!cb)
        return -ENOMEM;
    cb->rq = (coil__rq){ .kind = COIL__RQ_DONECB };
    cb->wnode.wake = donecb_wake;
    cb->fn = fn;
    cb->arg = arg;
    cb->aw = aw;
    aw->h.refs++;
    if (aw->h.state != COIL__PENDING)
        coil__rq_push(loop, &cb->rq); /* already done: scheduled at once, as asyncio does */
    else
        coil__wlist_append(&aw->waiters, &cb->wnode);
    return 0;
}

int coil__aw_remove_done(coil__aw *aw, coil_done_fn fn, void *arg)
{
    coil_loop *loop = coil__aw_loop(aw);
    int removed = 0;
    coil__wnode *n = aw->waiters.first;
    if (!n)
        return 0;
    /* Walk once around the ring; removal may change `first`, so count the nodes first. */
    size_t count = 0;
    do {
        count++;
        n = n->next;
    } while (n != aw->waiters.first);
    n = aw->waiters.first;
    for (size_t i = 0; i < count; i++) {
        coil__wnode *next = n->next;
        if (n->wake == donecb_wake) {
            coil__donecb *cb = coil__container_of(n, coil__donecb, wnode);
            if (cb->fn == fn && cb->arg == arg) {
                coil__wlist_remove(&aw->waiters, n);
                coil__pool_put(&loop->donecb_pool, cb);
                aw->h.refs--; /* the future's own handle still holds it */
                removed++;
            }
        }
        n = next;
    }
    return removed;
}

/* ---- plain futures ---- */

int coil_loop_create_future(coil_loop *loop, coil_future **out)
{
    if (!loop || !out)
        return -EINVAL;
    if (loop->closed)
        return COIL_ECLOSED;
    coil_future *f = coil__pool_get(&loop->future_pool);
    if (!f)
        return -ENOMEM;
    f->aw.h = (coil__rq){ .kind = COIL__RQ_FUTURE, .state = COIL__PENDING, .refs = 1 };
    f->aw.waiters.first = NULL;
    f->aw.result = NULL;
    f->loop = loop;
    f->exc = NULL;
    *out = f;
    return 0;
}

int coil_future_new(coil_future **out)
{
    return coil_loop_create_future(coil__tls_running ? coil__tls_running : coil__tls_loop, out);
}

void coil__future_free_now(coil_loop *loop, coil_future *f)
{
    if (f->exc)
        coil__exception_free(f->exc);
    coil__pool_put(&loop->future_pool, f);
}

void coil_future_free(coil_future *f)
{
    if (!f)
        return;
    coil_task *t = coil_future_task(f);
    if (t) {
        coil_task_free(t);
        return;
    }
    f->aw.h.flags |= COIL__AW_HANDLE_FREED;
    coil__aw_unref(f->loop, &f->aw);
}

static int settle(coil_future *f, uint8_t state)
{
    f->aw.h.state = state;
    coil__aw_complete(f->loop, &f->aw);
    return 0;
}

int coil_future_set_result(coil_future *f, void *result)
{
    if (!f || f->aw.h.kind != COIL__RQ_FUTURE)
        return -EINVAL;
    COIL__LOOP_THREAD_CHECK(f->loop, "coil_future_set_result");
    if (f->aw.h.state != COIL__PENDING)
        return COIL_EINVALSTATE;
    f->aw.result = result;
    return settle(f, COIL__DONE);
}

int coil_future_set_exception(coil_future *f, int code, const char *fmt, ...)
{
    if (!f || f->aw.h.kind != COIL__RQ_FUTURE)
        return -EINVAL;
    COIL__LOOP_THREAD_CHECK(f->loop, "coil_future_set_exception");
    if (f->aw.h.state != COIL__PENDING)
        return COIL_EINVALSTATE;
    if (code >= 0)
        return -EINVAL;
    va_list ap;
    va_start(ap, fmt);
    f->exc = coil__exception_newv(code, NULL, fmt, ap);
    va_end(ap);
    if (!f->exc)
        return -ENOMEM;
    /* Setting -ECANCELED as the exception is how asyncio's cancel() ends up, so call it that. */
    return settle(f, code == -ECANCELED ? COIL__CANCELLED : COIL__FAILED);
}

int coil__future_fail(coil_future *f, coil_exception *e)
{
    if (f->aw.h.state != COIL__PENDING) {
        coil__exception_free(e);
        return COIL_EINVALSTATE;
    }
    f->exc = e;
    return settle(f, e->code == -ECANCELED ? COIL__CANCELLED : COIL__FAILED);
}

int coil_future_cancel(coil_future *f, const char *msg)
{
    if (!f)
        return 0;
    coil_task *t = coil_future_task(f);
    if (t)
        return coil_task_cancel(t, msg);
    if (f->aw.h.state != COIL__PENDING)
        return 0;
    f->exc = coil__exception_new(-ECANCELED, NULL, msg);
    settle(f, COIL__CANCELLED);
    return 1;
}

bool coil_future_done(const coil_future *f) { return f->aw.h.state != COIL__PENDING; }
bool coil_future_cancelled(const coil_future *f) { return f->aw.h.state == COIL__CANCELLED; }

int coil_future_result(coil_future *f, void **result) { return coil__aw_outcome(&f->aw, result); }

const coil_exception *coil_future_exception(coil_future *f)
{
    if (f->aw.h.state == COIL__PENDING)
        return NULL;
    f->aw.h.flags |= COIL__AW_RETRIEVED;
    return coil__aw_exception(&f->aw);
}

int coil_future_add_done_callback(coil_future *f, coil_done_fn cb, void *arg)
{
    return f ? coil__aw_add_done(&f->aw, cb, arg) : -EINVAL;
}

int coil_future_remove_done_callback(coil_future *f, coil_done_fn cb, void *arg)
{
    return f ? coil__aw_remove_done(&f->aw, cb, arg) : 0;
}

coil_loop *coil_future_get_loop(const coil_future *f) { return coil__aw_loop(&f->aw); }
