/* coil shards: call_soon_threadsafe, run_coroutine_threadsafe and the concurrent future.
 *
 * The concurrent future's state is guarded by a spinlock held for a few stores; a foreign thread
 * that blocks for the outcome sleeps on a futex word that settling flips (and wakes only if
 * someone sleeps), so the common case costs no syscall and no pthread object setup. Its task lives on the target loop and is touched only there. Tasks of
 * other loops awaiting it leave a heap-allocated waiter record (never a pointer into their
 * stack) that completion posts back to the waiter's own loop. */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "coil/threadsafe.h"
#include "shards.h"

/* ---- call_soon_threadsafe ---- */

static void run_callback(void *fnp, void *arg)
{
    coil_callback_fn fn = (coil_callback_fn)fnp;
    int r = fn(arg);
    if (r < 0)
        coil__loop_report(coil__tls_running ? coil__tls_running : coil__tls_loop, "Exception in callback", r,
                          NULL, NULL, NULL);
}

static int call_soon_ts(coil_loop *loop, coil_callback_fn cb, void *arg, bool nowait)
{
    if (!loop || !cb)
        return -EINVAL;
    coil__inbox *ib = coil__inbox_of(loop);
    if (!ib)
        return -ENOMEM;
    return nowait ? coil__inbox_try_post(ib, run_callback, (void *)cb, arg)
                  : coil__inbox_post(ib, run_callback, (void *)cb, arg);
}

int coil_loop_call_soon_threadsafe(coil_loop *loop, coil_callback_fn cb, void *arg)
{
    return call_soon_ts(loop, cb, arg, false);
}

int coil_loop_call_soon_threadsafe_nowait(coil_loop *loop, coil_callback_fn cb, void *arg)
{
    return call_soon_ts(loop, cb, arg, true);
}

/* ---- the concurrent future ---- */

enum { CF_PENDING = 0, CF_DONE, CF_FAILED, CF_CANCELLED };

struct cf_cb {
    struct cf_cb *next;
    coil_cfuture_done_fn fn;
    void *arg;
};

struct cf_waiter {
    struct cf_waiter *next;
    coil__ilink link;             /* on its inbox's list, so a closing loop can find it */
    coil__inbox *ib;              /* the awaiting task's loop */
    coil_task *task;
    coil_cfuture *cf;
    bool abandoned;               /* the task was cancelled after completion had posted us */
};

struct coil_cfuture {
    _Atomic int lock;             /* a spinlock over everything below: held for a few stores */
    _Atomic uint32_t fword;       /* FW_DONE once settled; FW_WAITERS while a thread sleeps on it */
    _Atomic unsigned refs;        /* the handle, the loop side, each waiter, each message */
    int state;
    bool retrieved;
    void *result;
    int code;
    char *message;
    struct cf_cb *cbs;
    struct cf_waiter *waiters;
    /* the loop side: touched on the target loop's thread only */
    coil_loop *loop;
    coil__inbox *ib;
    coil_task *task;
    coil__ilink task_link;        /* on the inbox's list while the task is alive */
    coil_task_fn fn;
    void *arg;
};

enum { FW_DONE = 1, FW_WAITERS = 2 };
enum { RESULT_SPIN_NS = 50 * 1000 };

static void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static void lock(coil_cfuture *cf)
{
    for (unsigned i = 0; atomic_exchange_explicit(&cf->lock, 1, memory_order_acquire); i++)
        while (atomic_load_explicit(&cf->lock, memory_order_relaxed))
            if (++i > 100)
                sched_yield(); /* the holder was preempted */
}

static void unlock(coil_cfuture *cf) { atomic_store_explicit(&cf->lock, 0, memory_order_release); }

static void futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

static void cf_unref(coil_cfuture *cf)
{
    if (atomic_fetch_sub_explicit(&cf->refs, 1, memory_order_acq_rel) != 1)
        return;
    struct cf_cb *c = cf->cbs;
    while (c) {
        struct cf_cb *n = c->next;
        free(c);
        c = n;
    }
    free(cf->message);
    free(cf);
}

static void waiter_wake(void *a, void *b);

/* Settle cf once. Callbacks and waiter wake-ups run outside the lock. Returns false if cf was
 * already done (the outcome given is dropped then). */
static bool cf_settle(coil_cfuture *cf, int state, void *result, int code, char *message)
{
    lock(cf);
    if (cf->state != CF_PENDING) {
        unlock(cf);
        free(message);
        return false;
    }
    cf->state = state;
    cf->result = result;
    cf->code = code;
    cf->message = message;
    struct cf_cb *cbs = cf->cbs;
    struct cf_waiter *ws = cf->waiters;
    cf->cbs = NULL;
    cf->waiters = NULL;
    unlock(cf);
    if (atomic_exchange_explicit(&cf->fword, FW_DONE, memory_order_release) & FW_WAITERS)
        futex_wake_all(&cf->fword);
    /* Registration order, as concurrent.futures does: the lists were built by prepending. */
    struct cf_cb *rev = NULL;
    while (cbs) {
        struct cf_cb *n = cbs->next;
        cbs->next = rev;
        rev = cbs;
        cbs = n;
    }
    while (rev) {
        struct cf_cb *n = rev->next;
        rev->fn(cf, rev->arg);
        free(rev);
        rev = n;
    }
    while (ws) {
        struct cf_waiter *n = ws->next;
        coil__inbox_post(ws->ib, waiter_wake, ws, NULL);
        ws = n;
    }
    return true;
}

static void cf_task_done(coil_future *f, void *arg)
{
    (void)f;
    coil_cfuture *cf = arg;
    coil_task *t = cf->task;
    void *res = NULL;
    int code = coil_task_result(t, &res);
    char *msg = NULL;
    if (code && code != -ECANCELED) {
        const coil_exception *e = coil_task_exception(t);
        if (e)
            msg = strdup(coil_exception_message(e));
    }
    cf_settle(cf, code == 0 ? CF_DONE : code == -ECANCELED ? CF_CANCELLED : CF_FAILED, res, code, msg);
    cf->task = NULL;
    coil__ilink_remove(&cf->task_link);
    coil_task_free(t);
    cf_unref(cf);
}

static void cf_start(void *a, void *b)
{
    (void)b;
    coil_cfuture *cf = a;
    lock(cf);
    bool pending = cf->state == CF_PENDING;
    unlock(cf);
    if (!pending) {
        cf_unref(cf); /* cancelled before it could start: asyncio never enters the coroutine */
        return;
    }
    int err = coil_loop_create_task(cf->loop, &cf->task, cf->fn, cf->arg, NULL);
    if (err == 0)
        err = coil_task_add_done_callback(cf->task, cf_task_done, cf);
    if (err) {
        if (cf->task) {
            coil_task_cancel(cf->task, NULL);
            coil_task_free(cf->task);
            cf->task = NULL;
        }
        cf_settle(cf, CF_FAILED, NULL, err, NULL);
        cf_unref(cf);
        return;
    }
    coil__ilink_insert(&cf->ib->cf_tasks, &cf->task_link);
}

static void cf_cancel_task(void *a, void *b)
{
    (void)b;
    coil_cfuture *cf = a;
    if (cf->task)
        coil_task_cancel(cf->task, "coil_cfuture_cancel");
    cf_unref(cf);
}

static int run_ts(coil_loop *loop, coil_task_fn fn, void *arg, coil_cfuture **out, bool nowait)
{
    if (!loop || !fn || !out)
        return -EINVAL;
    coil__inbox *ib = coil__inbox_of(loop);
    if (!ib)
        return -ENOMEM;
    coil_cfuture *cf = calloc(1, sizeof *cf);
    if (!cf)
        return -ENOMEM;
    atomic_init(&cf->refs, 2);
    cf->loop = loop;
    cf->ib = ib;
    cf->fn = fn;
    cf->arg = arg;
    int err = nowait ? coil__inbox_try_post(ib, cf_start, cf, NULL) : coil__inbox_post(ib, cf_start, cf, NULL);
    if (err) {
        atomic_store(&cf->refs, 1);
        cf_unref(cf);
        return err;
    }
    *out = cf;
    return 0;
}

int coil_run_coroutine_threadsafe(coil_loop *loop, coil_task_fn fn, void *arg, coil_cfuture **out)
{
    return run_ts(loop, fn, arg, out, false);
}

int coil_run_coroutine_threadsafe_nowait(coil_loop *loop, coil_task_fn fn, void *arg, coil_cfuture **out)
{
    return run_ts(loop, fn, arg, out, true);
}

/* Under cf->mu, cf done. */
static int outcome_locked(coil_cfuture *cf, void **result)
{
    cf->retrieved = true;
    if (cf->state == CF_DONE) {
        if (result)
            *result = cf->result;
        return 0;
    }
    return cf->code ? cf->code : -ECANCELED;
}

int coil_cfuture_result(coil_cfuture *cf, double timeout, void **result)
{
    if (!cf)
        return -EINVAL;
    uint64_t deadline = 0;
    if (!(atomic_load_explicit(&cf->fword, memory_order_acquire) & FW_DONE)) {
        if (coil__tls_running == cf->loop || coil__tls_loop == cf->loop)
            return -EDEADLK;
        if (timeout >= 0)
            deadline = coil__now_ns() + (timeout > 1e9 ? (uint64_t)1e18 : (uint64_t)(timeout * 1e9));
    }
    /* Results are often microseconds away, and waking a sleeping thread (an idle vCPU above
     * all) can cost more than that: poll a little before sleeping. */
    if (!(atomic_load_explicit(&cf->fword, memory_order_acquire) & FW_DONE) && timeout != 0) {
        uint64_t t0 = coil__now_ns();
        while (!(atomic_load_explicit(&cf->fword, memory_order_acquire) & FW_DONE) &&
               coil__now_ns() - t0 < RESULT_SPIN_NS)
            for (int i = 0; i < 16; i++)
                cpu_relax();
    }
    for (;;) {
        uint32_t w = atomic_load_explicit(&cf->fword, memory_order_acquire);
        if (w & FW_DONE)
            break;
        struct timespec ts, *tsp = NULL;
        if (timeout >= 0) {
            uint64_t now = coil__now_ns();
            if (now >= deadline)
                return -ETIMEDOUT;
            ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
            ts.tv_nsec = (long)((deadline - now) % 1000000000u);
            tsp = &ts;
        }
        if (!(w & FW_WAITERS) &&
            !atomic_compare_exchange_weak_explicit(&cf->fword, &w, FW_WAITERS, memory_order_acq_rel,
                                                   memory_order_acquire))
            continue;
        syscall(SYS_futex, (uint32_t *)&cf->fword, FUTEX_WAIT_PRIVATE, FW_WAITERS, tsp, NULL, 0);
    }
    lock(cf);
    int r = outcome_locked(cf, result);
    unlock(cf);
    return r;
}

int coil_cfuture_cancel(coil_cfuture *cf)
{
    if (!cf)
        return 0;
    atomic_fetch_add_explicit(&cf->refs, 1, memory_order_relaxed);
    if (!cf_settle(cf, CF_CANCELLED, NULL, -ECANCELED, NULL)) {
        cf_unref(cf);
        return 0;
    }
    /* The message keeps cf alive until the loop has handled it. */
    if (coil__inbox_post(cf->ib, cf_cancel_task, cf, NULL) != 0)
        cf_unref(cf);
    return 1;
}

bool coil_cfuture_done(coil_cfuture *cf)
{
    return (atomic_load_explicit(&cf->fword, memory_order_acquire) & FW_DONE) != 0;
}

bool coil_cfuture_cancelled(coil_cfuture *cf)
{
    lock(cf);
    bool c = cf->state == CF_CANCELLED;
    unlock(cf);
    return c;
}

int coil_cfuture_add_done_callback(coil_cfuture *cf, coil_cfuture_done_fn fn, void *arg)
{
    if (!cf || !fn)
        return -EINVAL;
    struct cf_cb *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->fn = fn;
    c->arg = arg;
    lock(cf);
    if (cf->state == CF_PENDING) {
        c->next = cf->cbs;
        cf->cbs = c;
        unlock(cf);
        return 0;
    }
    unlock(cf);
    free(c);
    fn(cf, arg);
    return 0;
}

/* ---- awaiting from a task ---- */

static void waiter_wake(void *a, void *b)
{
    (void)b;
    struct cf_waiter *w = a;
    coil__inbox_expect(w->ib, -1);
    if (w->abandoned || w->ib->closing) {
        coil__ilink_remove(&w->link);
        cf_unref(w->cf);
        free(w);
        return;
    }
    coil__task_wake(w->task, 0);
}

static void cfwait_cancel(coil_task *t)
{
    struct cf_waiter *w = t->wait_obj;
    coil_cfuture *cf = w->cf;
    lock(cf);
    bool found = false;
    for (struct cf_waiter **p = &cf->waiters; *p; p = &(*p)->next)
        if (*p == w) {
            *p = w->next;
            found = true;
            break;
        }
    unlock(cf);
    if (found) {
        coil_cfuture_cancel(cf); /* asyncio's wrap_future: the await's cancel cancels the source */
        coil__inbox_expect(w->ib, -1);
        coil__ilink_remove(&w->link);
        cf_unref(cf);
        free(w);
    } else {
        w->abandoned = true; /* completion already posted it; waiter_wake frees it */
    }
    coil__task_wake(t, -ECANCELED);
}

/* A completed result must not be lost to a cancel that lands after the wake-up. */
static const coil__wait_ops cfwait_ops = { "cfuture", cfwait_cancel, false };

int coil_cfuture_await(coil_cfuture *cf, void **result)
{
    if (!cf)
        return -EINVAL;
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    coil__inbox *ib = coil__inbox_here();
    struct cf_waiter *w = malloc(sizeof *w);
    if (!ib || !w) {
        free(w);
        return -ENOMEM;
    }
    lock(cf);
    if (cf->state != CF_PENDING) {
        int r = outcome_locked(cf, result);
        unlock(cf);
        free(w);
        return r;
    }
    *w = (struct cf_waiter){ .next = cf->waiters, .ib = ib, .task = t, .cf = cf };
    cf->waiters = w;
    atomic_fetch_add_explicit(&cf->refs, 1, memory_order_relaxed);
    unlock(cf);
    coil__inbox_expect(ib, +1);
    coil__ilink_insert(&ib->cf_waiters, &w->link);
    int r = coil__task_suspend(&cfwait_ops, w);
    if (r == -ECANCELED)
        return r; /* the cancel path owns w */
    lock(cf);
    r = outcome_locked(cf, result);
    unlock(cf);
    coil__ilink_remove(&w->link);
    cf_unref(cf);
    free(w);
    return r;
}

/* The loop of these waiters is closing: their tasks will never run again. Take back every
 * waiter still registered with its future; one whose wake-up is already on its way is freed
 * when it arrives (the closing inbox still drains). */
void coil__cfuture_inbox_closing(coil__inbox *ib)
{
    /* Tasks of this loop still running a concurrent future will be destroyed, never finish:
     * settle their futures so no thread waits forever, and drop the loop's reference. */
    while (ib->cf_tasks.next != &ib->cf_tasks) {
        coil_cfuture *cf = coil__container_of(ib->cf_tasks.next, coil_cfuture, task_link);
        coil__ilink_remove(&cf->task_link);
        coil_task_remove_done_callback(cf->task, cf_task_done, cf);
        coil_task_free(cf->task);
        cf->task = NULL;
        cf->retrieved = true; /* not the task's failure: nothing to report later */
        cf_settle(cf, CF_FAILED, NULL, COIL_ECLOSED, strdup("the loop was closed before the task finished"));
        cf_unref(cf);
    }
    coil__ilink *l = ib->cf_waiters.next;
    while (l && l != &ib->cf_waiters) {
        coil__ilink *next = l->next;
        struct cf_waiter *w = coil__container_of(l, struct cf_waiter, link);
        coil_cfuture *cf = w->cf;
        bool found = false;
        lock(cf);
        for (struct cf_waiter **p = &cf->waiters; *p; p = &(*p)->next)
            if (*p == w) {
                *p = w->next;
                found = true;
                break;
            }
        unlock(cf);
        if (found) {
            coil__inbox_expect(ib, -1);
            coil__ilink_remove(&w->link);
            cf_unref(cf);
            free(w);
        } else {
            w->abandoned = true;
        }
        l = next;
    }
}

/* ---- freeing ---- */

struct unretrieved {
    int code;
    char *message;
};

static void report_unretrieved(void *a, void *b)
{
    (void)b;
    struct unretrieved *u = a;
    coil_loop *loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    coil__loop_report(loop, u->message ? u->message : "Concurrent future exception was never retrieved", u->code,
                      NULL, NULL, NULL);
    free(u->message);
    free(u);
}

void coil_cfuture_free(coil_cfuture *cf)
{
    if (!cf)
        return;
    lock(cf);
    bool report = cf->state == CF_FAILED && !cf->retrieved;
    struct unretrieved *u = NULL;
    if (report && (u = malloc(sizeof *u))) {
        u->code = cf->code;
        u->message = NULL;
        size_t need = (cf->message ? strlen(cf->message) : 0) + 64;
        if ((u->message = malloc(need)))
            snprintf(u->message, need, "Concurrent future exception was never retrieved: %s",
                     cf->message ? cf->message : coil_strerror(cf->code));
    }
    unlock(cf);
    if (u && coil__inbox_post(cf->ib, report_unretrieved, u, NULL) != 0) {
        free(u->message);
        free(u);
    }
    cf_unref(cf);
}
