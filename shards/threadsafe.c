/* coil shards: call_soon_threadsafe, run_coroutine_threadsafe and the concurrent future.
 *
 * A foreign thread that blocks for a future's outcome sleeps on the future's state word (and is
 * woken only if it sleeps), so the common case costs no syscall and no pthread object setup. The
 * future's task lives on the target loop and is touched only there. Tasks of other loops
 * awaiting it leave a heap-allocated waiter record (never a pointer into their stack) that
 * completion posts back to the waiter's own loop. */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "coil/threadsafe.h"
#include "mem/hugemem.h"
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

/* ---- the concurrent future ----
 *
 * One atomic word carries the state, a bit lock and a "a thread sleeps on me" bit:
 *
 *   bits 0-1  CF_PENDING, CF_DONE, CF_FAILED, CF_CANCELLED
 *   W_LOCK    held for a few stores while callbacks or waiters are added or removed, and while
 *             the outcome is written; every change of the word is a CAS that expects it clear
 *   W_SLEEPERS a foreign thread sleeps on the word (futex): settling wakes it, and only then
 *
 * Settling is one CAS (take the lock on a pending future) and one release store (the final
 * state, lock clear); readers need only an acquire load of the word, after which the outcome
 * fields never change again. The future is one 64-byte line: the submitting thread writes
 * it, the loop writes the outcome into it, and the two threads exchange that line and nothing
 * else.
 *
 * The coroutine runs in a task of its own whose body (cf_body) calls it and settles the future
 * in place as it returns (no done callback queued after it), and a burst of
 * coroutines that return without suspending runs back to back on one stack (task.c). Such a
 * task is flagged COIL__TF_CFUTURE_BODY: it is entered even if cancelled before its first step
 * (only its body can settle the future), and a closing loop finds the ones still pending. */

enum { CF_PENDING = 0, CF_DONE, CF_FAILED, CF_CANCELLED, CF_STATE = 3 };
enum { W_LOCK = 1u << 2, W_SLEEPERS = 1u << 3, W_NOT_PENDING = UINT32_MAX };
enum { RESULT_SPIN_NS = 50 * 1000 };

/* What settling runs, in registration order: a done callback, or the wake-up of a task of some
 * loop awaiting the future. `run` owns the record from then on. */
struct cf_cb {
    struct cf_cb *next;
    void (*run)(coil_cfuture *cf, struct cf_cb *self);
};

struct cf_user_cb {
    struct cf_cb cb;
    coil_cfuture_done_fn fn;
    void *arg;
};

struct cf_waiter {
    struct cf_cb cb;              /* first: on the future's list while it is pending */
    coil__ilink link;             /* on its inbox's list, so a closing loop can find it */
    coil__inbox *ib;              /* the awaiting task's loop */
    coil_task *task;
    coil_cfuture *cf;
    bool abandoned;               /* the task was cancelled after completion had posted us */
};

struct coil_cfuture {
    _Atomic uint32_t word;
    _Atomic uint32_t refs;        /* the handle, the loop side, each waiter, each message */
    void *result;
    int code;
    atomic_bool retrieved;        /* a failure was handed to someone: nothing to report */
    bool entered;                 /* the loop's thread: cf_body is inside the coroutine */
    char *message;
    coil__inbox *ib;
    struct cf_cb *cbs;            /* under W_LOCK while pending, newest first */
    /* Written by the submitter before the start message, then the loop's thread only. */
    coil_task_fn fn;              /* the coroutine */
    union {
        void *arg;                /* its argument, until cf_body has read it */
        coil_task *task;          /* then the task running it, while `entered` */
    };
};

#if defined(__x86_64__) || defined(__aarch64__)
/* Every future is one line of fresh memory for the submitter (a burst of them is mostly page
 * faults), and a line of its own, so the two threads never write one another's. */
_Static_assert(sizeof(struct coil_cfuture) == 64, "a future must stay one cache line");
#endif

/* Lock a pending future. Returns the word as it was (lock clear), or W_NOT_PENDING when it is
 * already settled: then its lists are gone and its outcome is final, so no lock is needed. */
static uint32_t lock_pending(coil_cfuture *cf)
{
    /* Acquire: a settled answer lets the caller read the outcome. */
    uint32_t w = atomic_load_explicit(&cf->word, memory_order_acquire);
    for (unsigned spins = 0;;) {
        if ((w & CF_STATE) != CF_PENDING)
            return W_NOT_PENDING;
        if (w & W_LOCK) {
            if (++spins > 100)
                sched_yield(); /* the holder was preempted */
            else
                coil__cpu_relax();
            w = atomic_load_explicit(&cf->word, memory_order_acquire);
            continue;
        }
        if (atomic_compare_exchange_weak_explicit(&cf->word, &w, w | W_LOCK, memory_order_acquire,
                                                  memory_order_acquire))
            return w;
    }
}

/* Nobody else changes a locked word, so the value from lock_pending is still the right one. */
static void unlock(coil_cfuture *cf, uint32_t w)
{
    atomic_store_explicit(&cf->word, w, memory_order_release);
}

static int state_of(coil_cfuture *cf)
{
    return (int)(atomic_load_explicit(&cf->word, memory_order_acquire) & CF_STATE);
}

/* ---- where futures come from ----
 *
 * A submitting thread often allocates thousands of futures before it frees the first, the
 * pattern a general allocator's thread cache serves worst (a refill or a flush every hundred
 * calls, and ~100 instructions a call on average). So each thread carves its futures out of its
 * own chunk, one cache line each, and a chunk goes back when the last of its futures is
 * released, by whichever thread that is.
 *
 * A thread's first chunks are 16 KiB from the heap; once it has shown it submits in bulk, its
 * chunks are 2 MiB huge pages (core/mem/hugemem.c): in 4 KiB pages, a first-touch fault every
 * few dozen futures would be a cost every bulk submission shares. Every 16 KiB block of a
 * chunk starts with a header slot naming the chunk, so releasing a future finds its chunk with
 * one mask whatever the chunk's size. The price: one long-lived future keeps its chunk alive. */
enum { CF_SLOT = (sizeof(struct coil_cfuture) + 63) & ~(size_t)63, CF_BLOCK = 16384,
       CF_BLOCK_SLOTS = CF_BLOCK / CF_SLOT, CF_SMALL_CHUNKS = 4 };

struct cf_chunk {
    struct cf_chunk *chunk;       /* in every block's header slot: the chunk it belongs to */
    _Atomic uint32_t live;        /* slots not yet released: handed out and still held, or never
                                   * handed out by a thread that is still alive (first block only) */
    uint32_t size;                /* CF_BLOCK, or COIL__HUGE_PAGE (first block only) */
};

static COIL__TLS struct cf_chunk *tls_chunk;
static COIL__TLS uint32_t tls_chunk_next, tls_chunk_slots, tls_chunks_made;
static pthread_key_t chunk_key;
static pthread_once_t chunk_once = PTHREAD_ONCE_INIT;

static _Atomic long chunks_live; /* for tests: coil__cfuture_chunks_live */

long coil__cfuture_chunks_live(void) { return atomic_load_explicit(&chunks_live, memory_order_relaxed); }

static void chunk_release(struct cf_chunk *c, uint32_t slots)
{
    if (atomic_fetch_sub_explicit(&c->live, slots, memory_order_acq_rel) != slots)
        return;
    atomic_fetch_sub_explicit(&chunks_live, 1, memory_order_relaxed);
    if (c->size == CF_BLOCK)
        free(c);
    else
        coil__huge_free(c, c->size);
}

/* Thread exit: the slots this thread will never hand out. */
static void chunk_thread_exit(void *c)
{
    tls_chunk = NULL;
    chunk_release(c, tls_chunk_slots - tls_chunk_next);
}

static void chunk_key_init(void) { pthread_key_create(&chunk_key, chunk_thread_exit); }

static struct cf_chunk *chunk_new(void)
{
    pthread_once(&chunk_once, chunk_key_init);
    uint32_t size = tls_chunks_made < CF_SMALL_CHUNKS ? CF_BLOCK : COIL__HUGE_PAGE;
    struct cf_chunk *c = size == CF_BLOCK ? aligned_alloc(CF_BLOCK, CF_BLOCK) : coil__huge_alloc(size);
    if (!c)
        return NULL;
    /* The header slots are written as the allocation reaches their blocks, so a huge chunk is
     * touched in order. */
    tls_chunks_made++;
    atomic_fetch_add_explicit(&chunks_live, 1, memory_order_relaxed);
    c->chunk = c;
    c->size = size;
    tls_chunk_slots = (size / CF_BLOCK) * (CF_BLOCK_SLOTS - 1);
    atomic_init(&c->live, tls_chunk_slots);
    tls_chunk = c;
    tls_chunk_next = 0;
    pthread_setspecific(chunk_key, c);
    return c;
}

static coil_cfuture *cf_alloc(void)
{
    struct cf_chunk *c = tls_chunk;
    if (COIL_UNLIKELY(!c) && !(c = chunk_new()))
        return NULL;
    uint32_t block = tls_chunk_next / (CF_BLOCK_SLOTS - 1), slot = tls_chunk_next % (CF_BLOCK_SLOTS - 1);
    char *base = (char *)c + (size_t)block * CF_BLOCK;
    if (slot == 0)
        ((struct cf_chunk *)(void *)base)->chunk = c;
    coil_cfuture *cf = (coil_cfuture *)(void *)(base + CF_SLOT * (1 + slot));
    if (++tls_chunk_next == tls_chunk_slots) {
        /* All handed out: the futures alone keep the chunk now, and may free it any time. */
        tls_chunk = NULL;
        pthread_setspecific(chunk_key, NULL);
    }
    return cf;
}

static void cf_release(coil_cfuture *cf)
{
    struct cf_chunk *block = (struct cf_chunk *)((uintptr_t)cf & ~(uintptr_t)(CF_BLOCK - 1));
    chunk_release(block->chunk, 1);
}

/* The last reference goes only after settling (every path that drops the loop's reference
 * settles first), and settling took the callback list: only the message is left to free. */
static void cf_unref(coil_cfuture *cf)
{
    /* Ours is the only reference left (nobody can take one without holding one): no need for a
     * locked instruction, which would also have to win the line back from the settling core. */
    if (atomic_load_explicit(&cf->refs, memory_order_acquire) != 1 &&
        atomic_fetch_sub_explicit(&cf->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (COIL_UNLIKELY(cf->message))
        free(cf->message);
    cf_release(cf);
}

static void waiter_wake(void *a, void *b);

/* A waiter's part of settling: its task resumes on its own loop. */
static void waiter_post(coil_cfuture *cf, struct cf_cb *self)
{
    (void)cf;
    struct cf_waiter *w = (struct cf_waiter *)self;
    coil__inbox_post(w->ib, waiter_wake, w, NULL);
}

/* Settle cf once. Callbacks and waiter wake-ups run outside the lock. Returns false if cf was
 * already done (the outcome given is dropped then). */
static bool cf_settle(coil_cfuture *cf, int state, void *result, int code, char *message)
{
    uint32_t w = lock_pending(cf);
    if (w == W_NOT_PENDING) {
        free(message);
        return false;
    }
    cf->result = result;
    cf->code = code;
    cf->message = message;
    struct cf_cb *cbs = cf->cbs;
    cf->cbs = NULL;
    atomic_store_explicit(&cf->word, (uint32_t)state | (w & W_SLEEPERS), memory_order_release);
    if (w & W_SLEEPERS)
        coil__futex_wake_all(&cf->word);
    if (COIL_LIKELY(!cbs))
        return true;
    /* Registration order, as concurrent.futures does: the list was built by prepending. */
    struct cf_cb *rev = NULL;
    while (cbs) {
        struct cf_cb *n = cbs->next;
        cbs->next = rev;
        rev = cbs;
        cbs = n;
    }
    while (rev) {
        struct cf_cb *n = rev->next;
        rev->run(cf, rev);
        rev = n;
    }
    return true;
}

/* Settled by the loop itself, not by the task: a failure of the loop, nothing the caller must
 * be told about twice. */
static void settle_closed(coil_cfuture *cf, int code, const char *why)
{
    atomic_store_explicit(&cf->retrieved, true, memory_order_relaxed);
    cf_settle(cf, CF_FAILED, NULL, code, why ? strdup(why) : NULL);
}

/* The body of a coroutine's task: run it, then settle cf with its outcome. */
static void *cf_body(void *a)
{
    coil_cfuture *cf = a;
    coil_task *self = coil__running_task();
    if (COIL_UNLIKELY(self->tflags & COIL__TF_MUST_CANCEL)) {
        /* Cancelled before its first step (a shutdown cancelling every task): asyncio never
         * enters the coroutine, and the future says so. */
        self->tflags &= ~COIL__TF_MUST_CANCEL;
        cf_settle(cf, CF_CANCELLED, NULL, -ECANCELED, NULL);
        cf_unref(cf);
        return NULL;
    }
    if (state_of(cf) != CF_PENDING) {
        cf_unref(cf); /* cancelled by its caller before it started: never entered either */
        return NULL;
    }
    void *arg = cf->arg;
    cf->task = self;
    cf->entered = true;
    void *result = cf->fn(arg);
    cf->entered = false;
    coil_exception *e = self->ext ? self->ext->exc : NULL;
    if (COIL_LIKELY(!e)) {
        cf_settle(cf, CF_DONE, result, 0, NULL);
    } else {
        /* The future carries the failure from here: the task's copy is not "never retrieved". */
        self->aw.h.flags |= COIL__AW_RETRIEVED;
        bool cancelled = e->code == -ECANCELED;
        cf_settle(cf, cancelled ? CF_CANCELLED : CF_FAILED, NULL, e->code,
                  !cancelled && e->message ? strdup(e->message) : NULL);
    }
    cf_unref(cf);
    return result;
}

/* The start message, on cf's loop: the coroutine's task joins the ready queue, as asyncio's
 * run_coroutine_threadsafe schedules a task from a call_soon_threadsafe callback. */
static void cf_start(void *a, void *b)
{
    (void)b;
    coil_cfuture *cf = a;
    coil__inbox *ib = cf->ib;
    if (state_of(cf) != CF_PENDING) {
        cf_unref(cf); /* cancelled before it could start: asyncio never enters the coroutine */
        return;
    }
    if (COIL_UNLIKELY(ib->closing)) {
        settle_closed(cf, COIL_ECLOSED, "the loop was closed before the task started");
        cf_unref(cf);
        return;
    }
    coil_task *t = NULL;
    int err = coil_loop_create_task(ib->loop, &t, cf_body, cf, NULL);
    if (err) {
        cf_settle(cf, CF_FAILED, NULL, err, NULL);
        cf_unref(cf);
        return;
    }
    t->tflags |= COIL__TF_CFUTURE_BODY;
    coil_task_free(t); /* the loop's reference keeps it until it is done */
}

static void cf_cancel_task(void *a, void *b)
{
    (void)b;
    coil_cfuture *cf = a;
    /* Not entered yet: cf_body sees the cancelled state and never calls the coroutine. */
    if (cf->entered)
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
    coil_cfuture *cf = cf_alloc();
    if (!cf)
        return -ENOMEM;
    atomic_init(&cf->word, CF_PENDING);
    atomic_init(&cf->refs, 2);
    cf->result = NULL;
    cf->code = 0;
    atomic_init(&cf->retrieved, false);
    cf->entered = false;
    cf->message = NULL;
    cf->ib = ib;
    cf->cbs = NULL;
    cf->fn = fn;
    cf->arg = arg;
    int err = nowait ? coil__inbox_try_post(ib, cf_start, cf, NULL) : coil__inbox_post(ib, cf_start, cf, NULL);
    if (err) {
        cf_release(cf);
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

/* cf is settled (an acquire load of its word said so). */
static int outcome(coil_cfuture *cf, int state, void **result)
{
    if (state == CF_DONE) {
        if (result)
            *result = cf->result;
        return 0;
    }
    if (state == CF_FAILED)
        atomic_store_explicit(&cf->retrieved, true, memory_order_relaxed);
    return cf->code ? cf->code : -ECANCELED;
}

int coil_cfuture_result(coil_cfuture *cf, double timeout, void **result)
{
    if (!cf)
        return -EINVAL;
    uint32_t w = atomic_load_explicit(&cf->word, memory_order_acquire);
    if (COIL_LIKELY((w & CF_STATE) != CF_PENDING))
        return outcome(cf, (int)(w & CF_STATE), result);
    coil_loop *loop = cf->ib->loop;
    if (coil__tls_running == loop || coil__tls_loop == loop)
        return -EDEADLK;
    uint64_t deadline = 0;
    if (timeout >= 0)
        deadline = coil__now_ns() + (timeout > 1e9 ? (uint64_t)1e18 : (uint64_t)(timeout * 1e9));
    /* Results are often microseconds away, and waking a sleeping thread (an idle vCPU above
     * all) can cost more than that: poll a little before sleeping. */
    if (timeout != 0) {
        uint64_t t0 = coil__now_ns();
        while (((w = atomic_load_explicit(&cf->word, memory_order_acquire)) & CF_STATE) == CF_PENDING &&
               coil__now_ns() - t0 < RESULT_SPIN_NS)
            for (int i = 0; i < 16; i++)
                coil__cpu_relax();
    }
    for (;;) {
        w = atomic_load_explicit(&cf->word, memory_order_acquire);
        if ((w & CF_STATE) != CF_PENDING)
            return outcome(cf, (int)(w & CF_STATE), result);
        struct timespec ts, *tsp = NULL;
        if (timeout >= 0) {
            uint64_t now = coil__now_ns();
            if (now >= deadline)
                return -ETIMEDOUT;
            ts.tv_sec = (time_t)((deadline - now) / 1000000000u);
            ts.tv_nsec = (long)((deadline - now) % 1000000000u);
            tsp = &ts;
        }
        if (w & W_LOCK) {
            sched_yield(); /* settling or registering: a few stores away */
            continue;
        }
        if (!(w & W_SLEEPERS) &&
            !atomic_compare_exchange_weak_explicit(&cf->word, &w, w | W_SLEEPERS, memory_order_relaxed,
                                                   memory_order_relaxed))
            continue;
        coil__futex_wait(&cf->word, w | W_SLEEPERS, tsp);
    }
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

bool coil_cfuture_done(coil_cfuture *cf) { return state_of(cf) != CF_PENDING; }

bool coil_cfuture_cancelled(coil_cfuture *cf) { return state_of(cf) == CF_CANCELLED; }

static void run_user_cb(coil_cfuture *cf, struct cf_cb *self)
{
    struct cf_user_cb *c = (struct cf_user_cb *)self;
    c->fn(cf, c->arg);
    free(c);
}

int coil_cfuture_add_done_callback(coil_cfuture *cf, coil_cfuture_done_fn fn, void *arg)
{
    if (!cf || !fn)
        return -EINVAL;
    struct cf_user_cb *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    c->cb.run = run_user_cb;
    c->fn = fn;
    c->arg = arg;
    uint32_t w = lock_pending(cf);
    if (w != W_NOT_PENDING) {
        c->cb.next = cf->cbs;
        cf->cbs = &c->cb;
        unlock(cf, w);
        return 0;
    }
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

/* Take w back from cf's list. False if settling already took the list (and posted w). */
static bool waiter_unlink(coil_cfuture *cf, struct cf_waiter *w)
{
    uint32_t lw = lock_pending(cf);
    if (lw == W_NOT_PENDING)
        return false;
    bool found = false;
    for (struct cf_cb **p = &cf->cbs; *p; p = &(*p)->next)
        if (*p == &w->cb) {
            *p = w->cb.next;
            found = true;
            break;
        }
    unlock(cf, lw);
    return found;
}

static void cfwait_cancel(coil_task *t)
{
    struct cf_waiter *w = t->wait_obj;
    coil_cfuture *cf = w->cf;
    if (waiter_unlink(cf, w)) {
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
    int state = state_of(cf);
    if (state != CF_PENDING)
        return outcome(cf, state, result);
    coil__inbox *ib = coil__inbox_here();
    struct cf_waiter *w = malloc(sizeof *w);
    if (!ib || !w) {
        free(w);
        return -ENOMEM;
    }
    uint32_t lw = lock_pending(cf);
    if (lw == W_NOT_PENDING) {
        free(w);
        return outcome(cf, state_of(cf), result);
    }
    *w = (struct cf_waiter){ .cb = { cf->cbs, waiter_post }, .ib = ib, .task = t, .cf = cf };
    cf->cbs = &w->cb;
    atomic_fetch_add_explicit(&cf->refs, 1, memory_order_relaxed);
    unlock(cf, lw);
    coil__inbox_expect(ib, +1);
    coil__ilink_insert(&ib->cf_waiters, &w->link);
    int r = coil__task_suspend(&cfwait_ops, w);
    if (r == -ECANCELED)
        return r; /* the cancel path owns w */
    r = outcome(cf, state_of(cf), result);
    coil__ilink_remove(&w->link);
    cf_unref(cf);
    free(w);
    return r;
}

/* A coroutine's task the closing loop will destroy, never finish: settle its future so no
 * thread waits forever, and drop the loop's reference that cf_body would have dropped. */
static void settle_abandoned(void *obj, void *ctx)
{
    (void)ctx;
    coil_task *t = obj;
    if (!(t->tflags & COIL__TF_CFUTURE_BODY) || t->aw.h.state != COIL__PENDING)
        return;
    t->tflags &= ~COIL__TF_CFUTURE_BODY;
    coil_cfuture *cf = t->aw.result; /* cf_body's argument, kept there until the task ends */
    settle_closed(cf, COIL_ECLOSED, "the loop was closed before the task finished");
    cf_unref(cf);
}

/* The loop is closing: settle the futures of its abandoned coroutine tasks. Its tasks awaiting
 * futures will never run again either: take back every waiter still registered with its
 * future; one whose wake-up is already on its way is freed when it arrives (the closing inbox
 * still drains). */
void coil__cfuture_inbox_closing(coil__inbox *ib)
{
    coil__pool_each(&ib->loop->task_pool, settle_abandoned, NULL);
    coil__ilink *l = ib->cf_waiters.next;
    while (l && l != &ib->cf_waiters) {
        coil__ilink *next = l->next;
        struct cf_waiter *w = coil__container_of(l, struct cf_waiter, link);
        coil_cfuture *cf = w->cf;
        if (waiter_unlink(cf, w)) {
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
    struct unretrieved *u = NULL;
    if (COIL_UNLIKELY(state_of(cf) == CF_FAILED) && !atomic_load_explicit(&cf->retrieved, memory_order_relaxed) &&
        (u = malloc(sizeof *u))) {
        u->code = cf->code;
        u->message = NULL;
        size_t need = (cf->message ? strlen(cf->message) : 0) + 64;
        if ((u->message = malloc(need)))
            snprintf(u->message, need, "Concurrent future exception was never retrieved: %s",
                     cf->message ? cf->message : coil_strerror(cf->code));
    }
    if (u && coil__inbox_post(cf->ib, report_unretrieved, u, NULL) != 0) {
        free(u->message);
        free(u);
    }
    cf_unref(cf);
}
