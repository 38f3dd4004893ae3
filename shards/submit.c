/* coil shards: cross-shard calls. A request travels to the target shard's inbox, runs there as
 * a task, and its outcome travels back to the caller's inbox, where it settles a plain future of
 * the caller's loop. Each side touches only its own half of the record; the ring's
 * release/acquire ordering hands the reply fields over. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

typedef struct xcall {
    _Atomic unsigned refs;        /* the caller's done callback, the target side, each cancel */
    _Atomic int cancelled;        /* the caller's future finished first */
    coil_runtime *rt;
    coil__inbox *caller, *target;
    coil_task_fn fn;
    void *arg;
    /* caller's thread */
    coil_future *fut;             /* until its done callback has run */
    bool replied;
    /* target's thread, then handed over with the reply */
    coil_task *task;
    void *result;
    int code;
    char *message;
} xcall;

static void xunref(xcall *x)
{
    if (atomic_fetch_sub_explicit(&x->refs, 1, memory_order_acq_rel) != 1)
        return;
    coil_runtime *rt = x->rt;
    free(x->message);
    free(x);
    coil__runtime_xcall_add(rt, -1);
}

/* Caller side: the reply. */
static void x_finish(void *a, void *b)
{
    (void)b;
    xcall *x = a;
    coil__inbox_expect(x->caller, -1);
    x->replied = true;
    coil_future *f = x->fut; /* NULL once done: the done callback may have freed it */
    if (f && !coil_future_done(f)) {
        if (x->code == 0)
            coil_future_set_result(f, x->result);
        else if (x->code == -ECANCELED)
            coil_future_cancel(f, x->message);
        else if (x->message)
            coil_future_set_exception(f, x->code, "%s", x->message);
        else
            coil_future_set_exception(f, x->code, NULL);
    } else if (x->code && x->code != -ECANCELED) {
        /* The caller gave up before the failure arrived: nobody will retrieve it. */
        coil__loop_report(x->caller->loop, "cross-shard call failed after its caller stopped waiting", x->code,
                          NULL, NULL, NULL);
    }
    xunref(x);
}

static void reply(xcall *x, void *result, int code, char *message)
{
    x->result = result;
    x->code = code;
    x->message = message;
    coil__inbox_post(x->caller, x_finish, x, NULL);
}

/* Target side. */
static void x_task_done(coil_future *f, void *arg)
{
    (void)f;
    xcall *x = arg;
    coil_task *t = x->task;
    void *res = NULL;
    int code = coil_task_result(t, &res);
    char *msg = NULL;
    const coil_exception *e = code ? coil_task_exception(t) : NULL;
    if (e)
        msg = strdup(coil_exception_message(e));
    x->task = NULL;
    coil_task_free(t);
    reply(x, res, code, msg);
}

static void x_start(void *a, void *b)
{
    (void)b;
    xcall *x = a;
    if (atomic_load_explicit(&x->cancelled, memory_order_acquire)) {
        reply(x, NULL, -ECANCELED, NULL); /* asyncio: a task cancelled before it starts never runs */
        return;
    }
    int err = coil_loop_create_task(x->target->loop, &x->task, x->fn, x->arg, NULL);
    if (err == 0)
        err = coil_task_add_done_callback(x->task, x_task_done, x);
    if (err) {
        if (x->task) {
            coil_task_cancel(x->task, NULL);
            coil_task_free(x->task);
            x->task = NULL;
        }
        reply(x, NULL, err, NULL);
    }
}

static void x_cancel(void *a, void *b)
{
    (void)b;
    xcall *x = a;
    if (x->task)
        coil_task_cancel(x->task, "the caller of coil_submit_to cancelled");
    xunref(x);
}

/* Caller side: the future is done (settled by the reply, or cancelled by the caller). */
static void on_caller_done(coil_future *f, void *arg)
{
    (void)f;
    xcall *x = arg;
    x->fut = NULL;
    if (!x->replied) {
        atomic_store_explicit(&x->cancelled, 1, memory_order_release);
        atomic_fetch_add_explicit(&x->refs, 1, memory_order_relaxed);
        if (coil__inbox_post(x->target, x_cancel, x, NULL) != 0)
            xunref(x);
    }
    xunref(x);
}

int coil_submit_to(unsigned shard, coil_task_fn fn, void *arg, coil_future **out)
{
    if (!fn || !out)
        return -EINVAL;
    unsigned me;
    coil_runtime *rt = coil__runtime_here(&me);
    coil_loop *loop = coil__tls_running;
    if (!rt || !loop)
        return COIL_EWRONGLOOP;
    if (shard >= coil__runtime_count(rt))
        return -EINVAL;
    coil_future *f;
    int err = coil_loop_create_future(loop, &f);
    if (err)
        return err;
    xcall *x = calloc(1, sizeof *x);
    if (!x) {
        coil_future_free(f);
        return -ENOMEM;
    }
    atomic_init(&x->refs, 2);
    x->rt = rt;
    x->caller = coil__runtime_inbox(rt, me);
    x->target = coil__runtime_inbox(rt, shard);
    x->fn = fn;
    x->arg = arg;
    x->fut = f;
    err = coil_future_add_done_callback(f, on_caller_done, x);
    if (err) {
        free(x);
        coil_future_free(f);
        return err;
    }
    coil__runtime_xcall_add(rt, +1);
    coil__inbox_expect(x->caller, +1);
    err = coil__inbox_post(x->target, x_start, x, NULL);
    if (err) {
        /* Never sent: settle it here; the done callback drops the caller's reference. */
        coil__inbox_expect(x->caller, -1);
        x->replied = true;
        atomic_store(&x->refs, 1);
        coil_future_set_exception(f, err, NULL);
        coil_future_free(f);
        return err;
    }
    *out = f;
    return 0;
}

int coil_submit_to_all(coil_task_fn fn, void *arg, void **results, int *errors)
{
    if (!fn)
        return -EINVAL;
    if (!coil__running_task())
        return COIL_ENOTASK;
    unsigned me;
    coil_runtime *rt = coil__runtime_here(&me);
    if (!rt)
        return COIL_EWRONGLOOP;
    unsigned n = coil__runtime_count(rt);
    coil_future **fs = calloc(n, sizeof *fs);
    if (!fs)
        return -ENOMEM;
    int first = 0;
    for (unsigned i = 0; i < n; i++) {
        int err = coil_submit_to(i, fn, arg, &fs[i]);
        if (err) {
            fs[i] = NULL;
            if (errors)
                errors[i] = err;
            if (!first)
                first = err;
        }
    }
    bool cancelled = false;
    for (unsigned i = 0; i < n; i++) {
        if (!fs[i])
            continue;
        void *r = NULL;
        int err;
        if (cancelled) {
            coil_future_cancel(fs[i], NULL);
            err = -ECANCELED;
        } else {
            err = coil_future_await(fs[i], &r);
            /* Our own cancellation (not the remote's failure) stops the wait for the rest. */
            if (err == -ECANCELED && coil_task_cancelling(coil__running_task()) > 0)
                cancelled = true;
        }
        if (results)
            results[i] = err ? NULL : r;
        if (errors)
            errors[i] = err;
        if (err && !first)
            first = err;
        coil_future_free(fs[i]);
    }
    free(fs);
    return cancelled ? -ECANCELED : first;
}
