/* coil core: the event loop. One iteration: run what was ready when it began (tasks and
 * callbacks, FIFO); submit queued operations and reap completions (backend.h), blocking in the
 * driver's poll only when nothing is ready, with the next timer as the timeout; fire due timers;
 * drain other sources. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine/internal.h"

COIL__TLS coil_loop *coil__tls_running;
COIL__TLS coil_loop *coil__tls_loop;

uint64_t coil__now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static bool env_debug(void)
{
    const char *d = getenv("COIL_DEBUG");
    return d && *d && strcmp(d, "0") != 0;
}

int coil__loop_new(coil_loop **out, const coil_loop_opts *opts, const coil__loop_hooks *hooks)
{
    static const coil_loop_opts defaults;
    if (!out || !hooks)
        return -EINVAL;
    if (!opts)
        opts = &defaults;
    coil_loop *loop = calloc(1, sizeof *loop);
    if (!loop)
        return -ENOMEM;
    int err = coil__backend_init(loop, opts->ring_entries ? opts->ring_entries : 256, (int)opts->backend);
    if (err) {
        free(loop);
        return err;
    }
    if ((unsigned)opts->stack_mode > COIL_STACK_COMPACT) {
        coil__backend_exit(loop);
        free(loop);
        return -EINVAL;
    }
    size_t stack = opts->stack_size ? opts->stack_size : COIL__DEFAULT_STACK_SIZE;
    size_t compact = opts->compact_stack_size ? opts->compact_stack_size : 256 * 1024;
    err = coil__stackpool_init(&loop->stacks, stack, compact, opts->max_stacks,
                               opts->pool_keep ? opts->pool_keep : 1024);
    if (err) {
        coil__backend_exit(loop);
        free(loop);
        return err;
    }
    loop->rq_tail = &loop->rq_head;
    coil__timers_init(&loop->timers);
    coil__pool_init(&loop->task_pool, sizeof(coil_task));
    coil__pool_init(&loop->handle_pool, sizeof(coil__handle));
    coil__pool_init(&loop->future_pool, sizeof(coil_future));
    coil__pool_init(&loop->donecb_pool, sizeof(coil__donecb));
    loop->default_mode = opts->stack_mode == COIL_STACK_COMPACT ? COIL_STACK_COMPACT : COIL_STACK_DEDICATED;
    loop->debug = opts->debug > 0 || (opts->debug == 0 && env_debug());
    loop->slow_callback_duration = opts->slow_callback_duration > 0 ? opts->slow_callback_duration : 0.1;
    loop->thread = pthread_self();
    loop->hooks = hooks;
    hooks->open(loop);
    coil__stack_install_guard_handler();
    *out = loop;
    return 0;
}

coil_loop *coil_get_running_loop(void) { return coil__tls_running; }

coil_loop *coil_get_event_loop(void) { return coil__tls_running ? coil__tls_running : coil__tls_loop; }

int coil_set_event_loop(coil_loop *loop)
{
    if (loop && !pthread_equal(loop->thread, pthread_self()))
        return COIL_EWRONGLOOP;
    coil__tls_loop = loop;
    return 0;
}

/* ---- the ready queue ---- */

static void run_handle(coil_loop *loop, coil__handle *h)
{
    if (!(h->rq.flags & COIL__H_CANCELLED)) {
        h->rq.flags |= COIL__H_RUNNING; /* no longer pending: cancelling it now does nothing */
        int r = h->cb(h->arg);
        if (r < 0) {
            coil_handle hv = { h, h->gen };
            coil_exc_context ctx = { .message = "Exception in callback", .code = r, .handle = &hv, .loop = loop };
            coil_loop_call_exception_handler(loop, &ctx);
        }
    }
    h->gen = 0;
    coil__pool_put(&loop->handle_pool, h);
}

void coil__loop_dispatch(coil_loop *loop, coil__rq *n)
{
    switch (n->kind) {
    case COIL__RQ_TASK:
        coil__task_run(loop, (coil_task *)n);
        break;
    case COIL__RQ_HANDLE:
        run_handle(loop, (coil__handle *)n);
        break;
    case COIL__RQ_DONECB:
        coil__donecb_run(loop, (coil__donecb *)n);
        break;
    default:
        break;
    }
}

/* A loop with a way in from other threads (coil__loop_set_outside) can be woken from outside at
 * any time: a thread may post, as asyncio's call_soon_threadsafe idiom does while the loop waits
 * for it. */
bool coil__loop_has_work(const coil_loop *loop)
{
    if (loop->rq_head || !coil__timers_empty(&loop->timers) || loop->io.inflight || loop->io.unsubmitted ||
        coil__loop_outside(loop))
        return true;
    for (const coil__loop_source *s = loop->sources; s; s = s->next)
        if (s->can_wake)
            return true;
    return false;
}

/* Set while run_until_complete drives this thread's loop (it cannot nest). */
static COIL__TLS bool until_running;

void coil__loop_run_once(coil_loop *loop, bool block)
{
    /* Only what was ready when the iteration began: work queued while it runs waits its turn.
     * The batch lives in the loop because a suspending task may take the next task from it. */
    loop->batch = loop->rq_head;
    loop->rq_head = NULL;
    loop->rq_tail = &loop->rq_head;
    coil__rq *n;
    unsigned nbatch = 0;
    while ((n = loop->batch)) {
        loop->batch = n->next;
        coil__loop_dispatch(loop, n);
        nbatch++;
    }

    uint64_t timeout = 0;
    bool wait = block && !loop->rq_head && !loop->stopping;
    bool due = false; /* the clock said a timer is due */
    uint64_t woke_at = 0; /* the clock when a wait ended: the timers below are checked against it */
    if (wait) {
        if (!coil__timers_empty(&loop->timers)) {
            uint64_t now = coil__now_ns(), next = coil__timers_next(&loop->timers);
            timeout = next > now ? next - now : 0;
            wait = timeout > 0;
            due = !wait;
        } else {
            timeout = UINT64_MAX;
            /* run_until_complete must see that nothing could ever wake the loop, not sleep on it. */
            if (until_running && !coil__loop_has_work(loop))
                wait = false;
        }
    }
    /* About to sleep: a good moment for housekeeping nobody is waiting on. */
    if (wait && timeout >= 1000000 && loop->stacks.nfree > loop->stacks.keep)
        coil__stackpool_idle(&loop->stacks, coil__now_ns(), 64);
    for (coil__loop_source *s = loop->sources; wait && s; s = s->next)
        if (s->before_block && s->before_block(loop, s))
            wait = false;
    /* With nothing in flight a completion can still come: another thread's wake-up
     * (coil__backend_wake), which also hooks in the way in (an inbox) that thread registered.
     * Where the driver can tell pending completions cheaply (peek_cheap), looking costs two
     * loads, so a busy loop looks every iteration; where it cannot, a loop with a way in from
     * outside that is not hooked in yet (no source) still looks until its wake-up arrives. */
    if (wait || loop->io.inflight || loop->io.alarm_at || loop->io.unsubmitted || loop->io.peek_cheap ||
        (!loop->sources && __atomic_load_n(&loop->outside, __ATOMIC_RELAXED))) {
        uint64_t t0 = wait ? coil__now_ns() : 0;
        coil__backend_poll(loop, wait, timeout);
        if (wait) {
            woke_at = coil__now_ns();
            loop->hooks->block(loop, t0, woke_at);
        }
    }
    /* Every source hears after_block, even one whose before_block ran before another said no. */
    for (coil__loop_source *s = loop->sources; s; s = s->next)
        if (s->after_block)
            s->after_block(loop, s);

    /* The clock is read only when a timer can be due: after a wait (which ends at the earliest
     * deadline) or when the clock said so, or when the alarm does not guard them (while it has
     * not completed, the earliest deadline has not passed). */
    if (wait || due ? !coil__timers_empty(&loop->timers) : !coil__loop_timers_guarded(loop)) {
        uint64_t now = woke_at ? woke_at : coil__now_ns();
        coil__timer *t;
        while ((t = coil__timers_pop_due(&loop->timers, now)))
            t->fire(t);
    }
    for (coil__loop_source *s = loop->sources; s; s = s->next)
        s->drain(loop, s);
    /* Work is ready, so the next iteration will not block: hand the timers to the alarm, which
     * lets that iteration skip the clock and the tasks' own next iterations run inline. */
    if (loop->rq_head && !coil__loop_timers_guarded(loop))
        coil__backend_alarm(loop, coil__timers_next(&loop->timers));
    loop->iterations++;
    loop->hooks->iteration(loop, nbatch);
}

void coil__loop_on_close(coil_loop *loop, coil__loop_closer *c)
{
    c->next = loop->closers;
    loop->closers = c;
}

coil__loop_closer *coil__loop_set_outside(coil_loop *loop, coil__loop_closer *c)
{
    coil__loop_closer *expected = NULL;
    if (__atomic_compare_exchange_n(&loop->outside, &expected, c, false, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return c;
    return expected;
}

void coil__loop_add_source(coil_loop *loop, coil__loop_source *s)
{
    s->next = loop->sources;
    loop->sources = s;
}

void coil__loop_remove_source(coil_loop *loop, coil__loop_source *s)
{
    for (coil__loop_source **p = &loop->sources; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            return;
        }
}

/* ---- running ---- */

static int enter(coil_loop *loop, coil_loop **prev)
{
    if (loop->closed)
        return COIL_ECLOSED;
    if (loop->running || coil__tls_running)
        return COIL_ERUNNING;
    if (!pthread_equal(loop->thread, pthread_self())) {
        /* A loop not yet run may move to the thread that first runs it. */
        if (loop->has_run || loop->ntasks_alive)
            return COIL_EWRONGLOOP;
        loop->thread = pthread_self();
    }
    int err = coil__stack_thread_altstack();
    if (err)
        return err;
    *prev = coil__tls_running;
    coil__tls_running = loop;
    loop->running = true;
    loop->has_run = true;
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_current(&loop->sched_fiber);
#endif
    return 0;
}

static void leave(coil_loop *loop, coil_loop *prev)
{
    loop->running = false;
    loop->stopping = false;
    coil__tls_running = prev;
}

/* The driver's hard failure that ended this run (see coil__backend_poll), or 0; taken once. */
static int take_ring_error(coil_loop *loop)
{
    int err = loop->io.err;
    loop->io.err = 0;
    return err;
}

int coil_loop_run_forever(coil_loop *loop)
{
    coil_loop *prev;
    int err = enter(loop, &prev);
    if (err)
        return err;
    /* A stop() that came before the run still gets one iteration, as in asyncio: what is ready
     * runs and I/O is polled without blocking (run_once never blocks once stopping is set). */
    do
        coil__loop_run_once(loop, true);
    while (!loop->stopping && !loop->io.err);
    leave(loop, prev);
    return take_ring_error(loop);
}


static void stop_when_done(coil_future *f, void *arg)
{
    (void)f;
    coil_loop_stop(arg);
}

int coil_loop_run_until_complete(coil_loop *loop, coil_future *fut, void **result)
{
    if (!loop || !fut)
        return -EINVAL;
    if (coil__aw_loop(&fut->aw) != loop)
        return COIL_EWRONGLOOP;
    coil_loop *prev;
    int err = enter(loop, &prev);
    if (err)
        return err;
    coil__aw *aw = &fut->aw;
    aw->h.refs++;
    if (aw->h.state == COIL__PENDING && coil__aw_add_done(aw, stop_when_done, loop) == 0) {
        until_running = true;
        /* As run_forever: a stop() from before the run still gets one iteration. */
        do {
            if (!coil__loop_has_work(loop))
                break;
            coil__loop_run_once(loop, true);
        } while (!loop->stopping && !loop->io.err);
        until_running = false;
        if (aw->h.state == COIL__PENDING)
            coil__aw_remove_done(aw, stop_when_done, loop);
    }
    /* Still pending: either someone called stop() (our own stop_when_done only runs once the
     * future is done) or nothing is left that could complete it. */
    bool stopped = loop->stopping;
    /* A stop() that raced with completion must not leak into the next run. */
    leave(loop, prev);
    int ring_err = take_ring_error(loop);
    int r = aw->h.state != COIL__PENDING ? coil__aw_outcome(aw, result)
            : ring_err                  ? ring_err
            : stopped                   ? COIL_ESTOPPED
                                        : COIL_ENOTHING;
    coil__aw_unref(loop, aw);
    return r;
}

void coil_loop_stop(coil_loop *loop)
{
    if (loop)
        loop->stopping = true;
}

bool coil_loop_is_running(const coil_loop *loop) { return loop && loop->running; }
bool coil_loop_is_closed(const coil_loop *loop) { return loop && loop->closed; }

static void destroy_pending_task(void *obj, void *ctx)
{
    coil_task *t = obj;
    if (t->aw.h.state == COIL__PENDING)
        coil__task_destroy_pending(ctx, t);
}

static void free_held_task(void *obj, void *ctx) { coil__task_free_now(ctx, obj); }
static void free_held_future(void *obj, void *ctx) { coil__future_free_now(ctx, obj); }

/* Ask the kernel to drop every operation still in flight and wait (bounded) until it has, so no
 * completion can write into memory we are about to free. */
static void quiesce_ring(coil_loop *loop)
{
    if (!loop->io.inflight)
        return;
    coil__backend_cancel_all(loop);
    uint64_t deadline = coil__now_ns() + 1000000000u;
    while (loop->io.inflight && !loop->io.broken) {
        uint64_t now = coil__now_ns();
        if (now >= deadline)
            break;
        /* Completions may wake tasks; they will not run again, so just drop them from the queue. */
        coil__backend_poll(loop, true, deadline - now);
        loop->rq_head = NULL;
        loop->rq_tail = &loop->rq_head;
        loop->batch = NULL;
    }
}

int coil_loop_close(coil_loop *loop)
{
    if (!loop)
        return -EINVAL;
    if (loop->running)
        return COIL_ERUNNING;
    if (loop->closed)
        return 0;
    /* The way in from outside first: running what other threads sent may still need what the
     * closers hold (a signal handler, the stats watch), and closing it waits, while the driver
     * is up, for the outside work this loop still expects. */
    coil__loop_closer *out = __atomic_exchange_n(&loop->outside, NULL, __ATOMIC_ACQ_REL);
    if (out)
        out->close(loop, out);
    while (loop->closers) {
        coil__loop_closer *c = loop->closers;
        loop->closers = c->next;
        c->close(loop, c);
    }
    loop->closed = true;
    quiesce_ring(loop);
    /* Callbacks and done callbacks that never ran still hold references; drop the queue first. */
    for (coil__rq *n = loop->rq_head; n;) {
        coil__rq *next = n->next;
        if (n->kind == COIL__RQ_HANDLE)
            coil__pool_put(&loop->handle_pool, n);
        n = next;
    }
    loop->rq_head = NULL;
    loop->rq_tail = &loop->rq_head;
    loop->batch = NULL;
    coil__pool_each(&loop->task_pool, destroy_pending_task, loop);
    /* Done tasks and futures whose owners still hold handles: their memory goes with the pools,
     * but what they point to (names, exceptions, messages) must go too. */
    coil__pool_each(&loop->task_pool, free_held_task, loop);
    coil__pool_each(&loop->future_pool, free_held_future, loop);
    coil__timers_free(&loop->timers);
    coil__backend_exit(loop);
    coil__stackpool_destroy(&loop->stacks);
    coil__pool_destroy(&loop->task_pool);
    coil__pool_destroy(&loop->handle_pool);
    coil__pool_destroy(&loop->future_pool);
    coil__pool_destroy(&loop->donecb_pool);
    coil__pool_destroy(&loop->timeout_pool);
    if (coil__tls_loop == loop)
        coil__tls_loop = NULL;
    loop->hooks->close(loop);
    free(loop);
    return 0;
}

/* ---- time ---- */

uint64_t coil_loop_time_ns(const coil_loop *loop)
{
    (void)loop;
    return coil__now_ns();
}

double coil_loop_time(const coil_loop *loop) { return (double)coil_loop_time_ns(loop) / 1e9; }

const char *coil_loop_backend(const coil_loop *loop) { return loop ? loop->io.ops->name : NULL; }

/* ---- callbacks ---- */

coil__handle *coil__handle_new(coil_loop *loop, coil_callback_fn cb, void *arg)
{
    coil__handle *h = coil__pool_get(&loop->handle_pool);
    if (!h)
        return NULL;
    h->rq = (coil__rq){ .kind = COIL__RQ_HANDLE };
    loop->handle_gen += 2; /* even: the low bit of a coil_handle value marks 'cancelled through it' */
    h->gen = loop->handle_gen;
    h->cb = cb;
    h->arg = arg;
    h->loop = loop;
    h->when_ns = 0;
    h->timer.idx = 0;
    return h;
}

int coil_loop_call_soon(coil_loop *loop, coil_callback_fn cb, void *arg, coil_handle *hv)
{
    if (!loop || !cb)
        return -EINVAL;
    COIL__LOOP_THREAD_CHECK(loop, "coil_loop_call_soon");
    if (loop->closed)
        return COIL_ECLOSED;
    coil__handle *h = coil__handle_new(loop, cb, arg);
    if (!h)
        return -ENOMEM;
    coil__rq_push(loop, &h->rq);
    if (hv)
        *hv = (coil_handle){ h, h->gen };
    return 0;
}

static void handle_timer_fire(coil__timer *t)
{
    coil__handle *h = coil__container_of(t, coil__handle, timer);
    h->rq.flags &= ~COIL__H_TIMER;
    coil__rq_push(h->loop, &h->rq);
}

static int schedule_at_ns(coil_loop *loop, uint64_t when, coil_callback_fn cb, void *arg, coil_handle *hv)
{
    if (!loop || !cb)
        return -EINVAL;
    COIL__LOOP_THREAD_CHECK(loop, "coil_loop_call_later");
    if (loop->closed)
        return COIL_ECLOSED;
    coil__handle *h = coil__handle_new(loop, cb, arg);
    if (!h)
        return -ENOMEM;
    h->timer.fire = handle_timer_fire;
    h->when_ns = when ? when : 1;
    if (coil__timers_add(&loop->timers, &h->timer, when) != 0) {
        coil__pool_put(&loop->handle_pool, h);
        return -ENOMEM;
    }
    h->rq.flags |= COIL__H_TIMER;
    if (hv)
        *hv = (coil_handle){ h, h->gen };
    return 0;
}

int coil_loop_call_later(coil_loop *loop, double delay, coil_callback_fn cb, void *arg, coil_handle *hv)
{
    if (isnan(delay))
        return -EINVAL;
    uint64_t now = coil__now_ns();
    uint64_t d = delay <= 0 ? 0 : delay >= 1e10 ? (uint64_t)1e19 : (uint64_t)ceil(delay * 1e9);
    return schedule_at_ns(loop, now + d, cb, arg, hv);
}

int coil_loop_call_at(coil_loop *loop, double when, coil_callback_fn cb, void *arg, coil_handle *hv)
{
    if (isnan(when))
        return -EINVAL;
    uint64_t w = when <= 0 ? 0 : when >= 1e10 ? (uint64_t)1e19 : (uint64_t)ceil(when * 1e9);
    return schedule_at_ns(loop, w, cb, arg, hv);
}

static coil__handle *live_handle(const coil_handle *hv)
{
    if (!hv || !hv->p || !hv->gen)
        return NULL;
    coil__handle *h = hv->p;
    return h->gen == (hv->gen & ~(uint64_t)1) && h->rq.kind == COIL__RQ_HANDLE ? h : NULL;
}

int coil_handle_cancel(coil_handle *hv)
{
    coil__handle *h = live_handle(hv);
    if (!h || (h->rq.flags & (COIL__H_CANCELLED | COIL__H_RUNNING)))
        return 0;
    h->rq.flags |= COIL__H_CANCELLED;
    hv->gen |= 1;
    if (h->rq.flags & COIL__H_TIMER) {
        /* Not queued anywhere else: free it now so a far-off timer does not pin memory. */
        coil__timers_remove(&h->loop->timers, &h->timer);
        h->gen = 0;
        coil__pool_put(&h->loop->handle_pool, h);
    }
    return 1;
}

bool coil_handle_cancelled(const coil_handle *hv)
{
    if (hv && (hv->gen & 1))
        return true;
    coil__handle *h = live_handle(hv);
    return h ? (h->rq.flags & COIL__H_CANCELLED) != 0 : false;
}

double coil_handle_when(const coil_handle *hv)
{
    coil__handle *h = live_handle(hv);
    return h && h->when_ns ? (double)h->when_ns / 1e9 : -1.0;
}

/* ---- exception handler ---- */

void coil_loop_set_exception_handler(coil_loop *loop, coil_exception_handler h, void *arg)
{
    loop->handler = h;
    loop->handler_arg = arg;
}

coil_exception_handler coil_loop_get_exception_handler(const coil_loop *loop, void **arg)
{
    if (arg)
        *arg = loop->handler_arg;
    return loop->handler;
}

void coil_loop_default_exception_handler(coil_loop *loop, const coil_exc_context *ctx)
{
    (void)loop;
    char task[160] = "";
    if (ctx->task) {
        coil_task *t = ctx->task;
        const char *file = t->ext ? t->ext->file : NULL;
        if (file)
            snprintf(task, sizeof task, " (task '%s', created at %s:%d)", coil__task_name(t), file, t->ext->line);
        else
            snprintf(task, sizeof task, " (task '%s')", coil__task_name(t));
    }
    int code = ctx->code ? ctx->code : coil_exception_code(ctx->exception);
    if (code)
        fprintf(stderr, "coil: %s: %s: %s%s\n", ctx->message ? ctx->message : "error", coil_err_name(code),
                ctx->exception ? coil_exception_message(ctx->exception) : coil_strerror(code), task);
    else
        fprintf(stderr, "coil: %s%s\n", ctx->message ? ctx->message : "error", task);
}

void coil_loop_call_exception_handler(coil_loop *loop, const coil_exc_context *ctx)
{
    if (!loop->handler || loop->in_handler) {
        coil_loop_default_exception_handler(loop, ctx);
        return;
    }
    loop->in_handler = true;
    loop->handler(loop, ctx, loop->handler_arg);
    loop->in_handler = false;
}

void coil__loop_report(coil_loop *loop, const char *message, int code, const coil_exception *e, coil_task *t,
                       coil_future *f)
{
    coil_exc_context ctx = { .message = message, .exception = e, .code = code, .task = t, .future = f, .loop = loop };
    coil_loop_call_exception_handler(loop, &ctx);
}

void coil_loop_set_debug(coil_loop *loop, bool on)
{
    loop->debug = on;
    loop->hooks->configure(loop);
}
bool coil_loop_get_debug(const coil_loop *loop) { return loop->debug; }

int coil__wrong_thread(const char *fn)
{
    fprintf(stderr, "coil: %s called from a thread that does not own the loop\n", fn);
    return COIL_EWRONGLOOP;
}
