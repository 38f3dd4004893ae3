/* coil core: tasks. Creation, the first run on a fresh stack, suspension and wake-up,
 * cancellation, completion and freeing. The scheduler's fast paths are here too: a task that
 * suspends or finishes hands over straight to the next ready task, even starting the next
 * iteration inline, without going back to the scheduler's stack. loop.c runs the iterations
 * themselves (the ready batch, I/O, timers), for whatever those fast paths leave to it. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

/* ---- the ext block: rarely used fields, allocated on first need ---- */

coil__task_ext *coil__task_ext_get(coil_task *t)
{
    if (!t->ext)
        t->ext = calloc(1, sizeof *t->ext);
    return t->ext;
}

const char *coil__task_name(coil_task *t)
{
    if (t->ext && t->ext->name)
        return t->ext->name;
    coil__task_ext *x = coil__task_ext_get(t);
    if (!x)
        return "Task";
    /* Numbered when first asked for, not at creation: a counter in every task would cost
     * 4 bytes a task for a name most tasks never show. */
    char buf[32];
    snprintf(buf, sizeof buf, "Task-%u", ++t->loop->next_task_id);
    x->name = strdup(buf);
    return x->name ? x->name : "Task";
}

/* ---- creation ---- */

static void run_eagerly(coil_loop *loop, coil_task *t);

/* No stack could be had: say why once on stderr when it is the process's limit (the user did not
 * set it and may not know of it), and return the reason for the task's exception. */
static const char *no_stack_reason(coil_loop *loop, char *buf, size_t n)
{
    coil__stack_explain(&loop->stacks, buf, n);
    if (loop->stacks.why == COIL__STACK_MAPS && !loop->stacks.told) {
        loop->stacks.told = true;
        fprintf(stderr, "coil: no stack for a new task: %s\n", buf);
    }
    return buf;
}

static inline __attribute__((always_inline)) int create_task(coil_loop *loop, coil_task **out, coil_task_fn fn,
                                                             void *arg, const coil_task_opts *opts,
                                                             const char *file, int line)
{
    if (!loop || !fn)
        return -EINVAL;
    COIL__LOOP_THREAD_CHECK(loop, "coil_create_task");
    if (loop->closed)
        return COIL_ECLOSED;
    coil_stack_mode mode = opts && opts->stack_mode ? opts->stack_mode : loop->default_mode;
    if (COIL_UNLIKELY((unsigned)mode > COIL_STACK_COMPACT))
        return -EINVAL;
    if (mode != COIL_STACK_COMPACT && !coil__stack_available(&loop->stacks)) {
        char why[384];
        no_stack_reason(loop, why, sizeof why);
        return COIL_ENOSTACK;
    }
    coil_task *t = coil__pool_get(&loop->task_pool);
    if (!t)
        return -ENOMEM;
    t->aw.h = (coil__rq){ .kind = COIL__RQ_TASK, .state = COIL__PENDING, .refs = out ? 2 : 1 };
    t->aw.waiters.first = NULL;
    t->aw.result = arg;
    t->fn = fn;
    t->loop = loop;
    t->stack = NULL;
    t->wait_ops = NULL;
    t->wait_obj = NULL;
    t->ext = NULL;
    t->wake_result = 0;
    t->cancel_requests = 0;
    t->tstate = COIL__T_NEW;
    t->tflags = mode == COIL_STACK_COMPACT ? COIL__TF_COMPACT : 0;
    if ((opts && (opts->name || opts->stack_size)) || loop->debug) {
        coil__task_ext *x = coil__task_ext_get(t);
        if (!x || (opts && opts->name && !(x->name = strdup(opts->name)))) {
            coil__task_free_now(loop, t);
            return -ENOMEM;
        }
        x->file = file;
        x->line = line;
        x->stack_size = opts ? opts->stack_size : 0;
    }
    loop->ntasks_alive++;
    loop->tasks_created++;
    if (out)
        *out = t;
    if (opts && opts->eager && loop->running) {
        run_eagerly(loop, t);
    } else {
        t->tstate = COIL__T_READY;
        coil__rq_push(loop, &t->aw.h);
    }
    return 0;
}

int coil_loop_create_task_at(coil_loop *loop, coil_task **out, coil_task_fn fn, void *arg,
                              const coil_task_opts *opts, const char *file, int line)
{
    return create_task(loop, out, fn, arg, opts, file, line);
}

int coil_create_task_at(coil_task **out, coil_task_fn fn, void *arg, const coil_task_opts *opts,
                         const char *file, int line)
{
    coil_loop *loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    return create_task(loop, out, fn, arg, opts, file, line);
}

/* ---- running ---- */

static _Noreturn void task_main(void *task, void *fn);

/* Give a task that never ran its stack and first frame. False if it ended without running. */
static bool start(coil_loop *loop, coil_task *t)
{
    coil_task_fn fn = t->fn;
    if ((t->tflags & (COIL__TF_MUST_CANCEL | COIL__TF_OWN_CANCEL)) == COIL__TF_MUST_CANCEL) {
        /* Cancelled before it started: asyncio never enters the coroutine. */
        t->tflags &= ~COIL__TF_MUST_CANCEL;
        coil__task_ext *x = coil__task_ext_get(t);
        if (x)
            x->exc = coil__exception_new(-ECANCELED, coil__task_name(t), x->cancel_msg);
        t->aw.result = NULL;
        t->tstate = COIL__T_FINISHED;
        return false;
    }
    void *top;
    if (!(t->tflags & COIL__TF_COMPACT)) {
        t->stack = coil__stack_get(&loop->stacks, t->ext ? t->ext->stack_size : 0);
        if (!t->stack) {
            /* Never a silent switch to compact mode: the task may share pointers to its locals. */
            coil__task_ext *x = coil__task_ext_get(t);
            if (x) {
                char why[384], msg[448];
                snprintf(msg, sizeof msg, "no stack for the task: %s", no_stack_reason(loop, why, sizeof why));
                x->exc = coil__exception_new(COIL_ENOSTACK, coil__task_name(t), msg);
            }
            t->aw.result = NULL;
            t->tstate = COIL__T_FINISHED;
            return false;
        }
    } else if (COIL_UNLIKELY(loop->debug)) {
        /* Debug mode checks the compact rule: the task runs on a stack of its own, as big as the
         * shared one, and every suspension is checked (see resume). Without one it runs compact. */
        coil__task_ext *x = coil__task_ext_get(t);
        coil__stack *own = x ? coil__stack_get_unmetered(&loop->stacks, loop->stacks.shared->size) : NULL;
        if (own) {
            t->stack = own;
            x->check_copy = NULL;
            t->tflags |= COIL__TF_CHECKED;
        }
    }
    coil__stack *s;
    if ((t->tflags & (COIL__TF_COMPACT | COIL__TF_CHECKED)) == COIL__TF_COMPACT) {
        s = loop->stacks.shared;
        t->save = NULL;
        coil_task *owner = loop->stacks.shared_owner;
        if (owner && owner != t)
            coil__stack_save(&loop->stacks, &owner->save, owner->sp, coil__stack_top(s));
        loop->stacks.shared_owner = t;
    } else {
        s = t->stack;
    }
    top = coil__stack_top(s);
    t->sp = coil__ctx_make(top, task_main, t, (void *)fn);
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_create(&t->fiber, coil__stack_bottom(s), s->size);
#endif
    t->tflags |= COIL__TF_STARTED;
    return true;
}

/* Bring a compact task's frames back onto the shared stack if another compact task used it. */
static void swap_in(coil_loop *loop, coil_task *t)
{
    coil_task *owner = loop->stacks.shared_owner;
    if (owner == t || (t->tflags & COIL__TF_CHECKED))
        return;
    void *top = coil__stack_top(loop->stacks.shared);
    if (owner)
        coil__stack_save(&loop->stacks, &owner->save, owner->sp, top);
    coil__stack_restore(t->save, top);
    loop->stacks.shared_owner = t;
}

static void finish(coil_loop *loop, coil_task *t);

/* Debug mode, before a checked compact task runs again: had anything written into its stack while
 * it was suspended? Compact mode would have lost that write (and let it land in another task's
 * frames): report it, naming the task, and put the frames back as compact mode would. */
static void check_resume(coil_loop *loop, coil_task *t)
{
    size_t off = coil__stack_check_resume(t->ext->check_copy, coil__stack_top(t->stack));
    if (!off)
        return;
    char msg[320];
    snprintf(msg, sizeof msg,
             "something wrote into the stack of a suspended COIL_STACK_COMPACT task (%zu bytes below its "
             "top): nothing may point into a suspended compact task's stack, and without debug mode the "
             "write would be lost; give the task a dedicated stack (the default)",
             off);
    coil__loop_report(loop, msg, 0, NULL, t, NULL);
}

/* Switch from the scheduler into t. Tasks may hand over to each other directly (switch_out), so
 * the one that switches back to the scheduler need not be t: return that one, or NULL if it
 * finished (its completion is handled here, on the scheduler's stack, which can free its stack). */
static coil_task *resume(coil_loop *loop, coil_task *t)
{
    if (COIL_UNLIKELY(t->tflags & COIL__TF_CHECKED) && t->ext->check_copy)
        check_resume(loop, t);
    t->tstate = COIL__T_RUNNING;
    loop->current = t;
    if (COIL_UNLIKELY(loop->timing))
        loop->hooks->step_begin(loop, t);
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_switch(&loop->sched_sp, t->sp, &loop->sched_fiber, &t->fiber, 0);
#else
    coil__ctx_switch(&loop->sched_sp, t->sp);
#endif
    coil_task *back = loop->current;
    if (COIL_UNLIKELY(loop->timing))
        loop->hooks->step_end(loop, back);
    loop->current = NULL;
    if (back->tstate == COIL__T_FINISHED) {
        finish(loop, back);
        return NULL;
    }
    /* A checked compact task never hands over directly (next_direct), so it comes back here. */
    if (COIL_UNLIKELY(back->tflags & COIL__TF_CHECKED))
        coil__stack_check_suspend(&loop->stacks, &back->ext->check_copy, back->sp, coil__stack_top(back->stack));
    return back;
}

void coil__task_run(coil_loop *loop, coil_task *t)
{
    if (t->tstate == COIL__T_NEW || !(t->tflags & COIL__TF_STARTED)) {
        if (!start(loop, t)) {
            finish(loop, t);
            return;
        }
    } else if (t->tflags & COIL__TF_COMPACT) {
        swap_in(loop, t);
    }
    coil_task *back = resume(loop, t);
    /* An eager create from inside a task: the creator came back to have the new task run now;
     * run it up to its first suspension, then resume the creator where it left off. */
    while (back && loop->eager_task) {
        coil_task *e = loop->eager_task;
        loop->eager_task = NULL;
        coil__task_run(loop, e);
        if (back->tflags & COIL__TF_COMPACT)
            swap_in(loop, back);
        back = resume(loop, back);
    }
}

static void run_eagerly(coil_loop *loop, coil_task *t)
{
    coil_task *creator = loop->current;
    if (!creator) {
        /* On the scheduler's own stack (a callback): just run it. */
        coil__task_run(loop, t);
        return;
    }
    /* From a task: hand the new task to the scheduler and come back right after its first step. */
    loop->eager_task = t;
    creator->tstate = COIL__T_READY;
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_switch(&creator->sp, loop->sched_sp, &creator->fiber, &loop->sched_fiber, 0);
#else
    coil__ctx_switch(&creator->sp, loop->sched_sp);
#endif
}

static coil_task *batch_head_task(coil_loop *loop);

/* Can finishing t run here, on t's own stack, instead of on the scheduler's? Only if it cannot
 * call back into user code: no exception to report, and nobody waiting but tasks (woken by a
 * push on the ready queue). */
static bool finishes_quietly(const coil_task *t)
{
    if (t->ext && t->ext->exc)
        return false;
    const coil__wnode *first = t->aw.waiters.first, *n = first;
    if (n)
        do {
            if (n->wake != coil__wnode_wake_task)
                return false;
            n = n->next;
        } while (n != first);
    return true;
}

/* A task that has just returned leaves a stack nobody needs. If the next thing in the batch is a
 * task that has never run and would take a default dedicated stack, it starts right here on that
 * stack: no switch to the scheduler and back, no stack pool round trip, no new first frame. A
 * loop that spawns many short tasks runs them back to back. */
static coil_task *next_on_this_stack(coil_loop *loop, coil_task *done)
{
    /* A compact task's union holds its save buffer, not a stack: it has none to hand over. */
    if ((done->tflags & COIL__TF_COMPACT) || !done->stack || !done->stack->in_slab || loop->timing ||
        loop->eager_task || !finishes_quietly(done))
        return NULL;
    coil_task *next = batch_head_task(loop);
    if (!next || (next->tflags & (COIL__TF_STARTED | COIL__TF_COMPACT | COIL__TF_MUST_CANCEL)) ||
        (next->ext && next->ext->stack_size))
        return NULL;
    loop->batch = next->aw.h.next;
    return next;
}

static _Noreturn void task_main(void *task, void *fn)
{
    coil_task *t = task;
    coil_loop *loop = t->loop;
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_started();
#endif
    for (;;) {
        void *result = ((coil_task_fn)fn)(t->aw.result);
        t->aw.result = result;
        t->tstate = COIL__T_FINISHED;
        coil_task *next = next_on_this_stack(loop, t);
        if (!next)
            break;
        next->stack = t->stack;
        t->stack = NULL;
        loop->stacks.handovers++;
#if defined(COIL_SANITIZE_BUILD)
        /* No switch: the next task goes on in this context, so it takes over its fiber (and
         * the finished one no longer has one to destroy). */
        next->fiber = t->fiber;
        t->fiber.tsan = NULL;
#endif
        loop->current = NULL; /* as on the scheduler: finishing is not part of any task's step */
        finish(loop, t);
        t = next;
        fn = (void *)t->fn;
        t->tflags |= COIL__TF_STARTED;
        t->tstate = COIL__T_RUNNING;
        loop->current = t;
    }
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_switch(&t->sp, loop->sched_sp, &t->fiber, &loop->sched_fiber, 1);
#else
    coil__ctx_switch(&t->sp, loop->sched_sp);
#endif
    __builtin_unreachable();
}

uint64_t coil__loop_stack_handovers(const struct coil_loop *loop) { return loop->stacks.handovers; }

static void release_stack(coil_loop *loop, coil_task *t)
{
    if (t->tflags & COIL__TF_CHECKED) {
        coil__savebuf_free(&loop->stacks, t->ext->check_copy);
        t->ext->check_copy = NULL;
        coil__stack_put_unmetered(&loop->stacks, t->stack);
        t->stack = NULL;
    } else if (t->tflags & COIL__TF_COMPACT) {
        coil__savebuf_free(&loop->stacks, t->save);
        t->save = NULL;
        if (loop->stacks.shared_owner == t)
            loop->stacks.shared_owner = NULL;
    } else if (t->stack) {
        coil__stack_put(&loop->stacks, t->stack);
        t->stack = NULL;
    }
#if defined(COIL_SANITIZE_BUILD)
    if (t->tflags & COIL__TF_STARTED)
        coil__fiber_destroy(&t->fiber);
#endif
}

static void finish(coil_loop *loop, coil_task *t)
{
    release_stack(loop, t);
    coil_exception *e = t->ext ? t->ext->exc : NULL;
    t->aw.h.state = !e ? COIL__DONE : e->code == -ECANCELED ? COIL__CANCELLED : COIL__FAILED;
    if (e)
        t->aw.result = NULL;
    t->tstate = COIL__T_DONE;
    loop->ntasks_alive--;
    coil__aw_complete(loop, &t->aw);
    coil__aw_unref(loop, &t->aw); /* the loop's reference */
}

/* ---- suspension ---- */

/* Start the next iteration right here, on a task's stack, when the scheduler would have nothing
 * to do but take the ready queue: no stop request, no operation to submit, no completion waiting, no
 * timer that can be due (the loop's alarm guards them: its expiry is a completion), no other
 * source. A loop of tasks that only yield to each other then never leaves task context, timers
 * armed or not. Anything else goes back to the scheduler.
 *
 * Another thread's first message registers the loop's way in from outside (loop->outside, the
 * inbox) and wakes the loop with a completion, which the scheduler must reap to hook the inbox in
 * as a source: a loop with no I/O of its own would never look at its driver here, so a way in, hooked
 * in or not, sends it back to the scheduler. One relaxed load of a word the poster sets once. */
static bool next_iteration_inline(coil_loop *loop)
{
    if (!loop->rq_head || loop->stopping || loop->sources || loop->eager_task || loop->io.unsubmitted ||
        !coil__loop_timers_guarded(loop) || __atomic_load_n(&loop->outside, __ATOMIC_RELAXED))
        return false;
    if ((loop->io.inflight || loop->io.alarm_at) && coil__backend_pending(loop))
        return false;
    loop->batch = loop->rq_head;
    loop->rq_head = NULL;
    loop->rq_tail = &loop->rq_head;
    /* Counted on the loop's own line; published every 256 so loopstat still sees a busy loop. */
    if (COIL_UNLIKELY((++loop->iterations & 255) == 0))
        loop->hooks->publish(loop);
    return true;
}

/* The task at the head of this iteration's batch (the next iteration started inline if this one's
 * is used up), or NULL if there is none or the head is not a task. Taking it is up to the caller. */
static coil_task *batch_head_task(coil_loop *loop)
{
    if (!loop->batch && !next_iteration_inline(loop))
        return NULL;
    coil__rq *n = loop->batch;
    return n->kind == COIL__RQ_TASK ? (coil_task *)n : NULL;
}

/* The task to hand over to directly, or NULL to go through the scheduler. Direct hand-over needs
 * both tasks on dedicated stacks (compact stacks are swapped on the scheduler's stack) and the
 * next one already started. */
static coil_task *next_direct(coil_loop *loop, coil_task *cur)
{
    if (cur->tflags & COIL__TF_COMPACT)
        return NULL;
    coil_task *next = batch_head_task(loop);
    if (!next || (next->tflags & (COIL__TF_COMPACT | COIL__TF_STARTED)) != COIL__TF_STARTED)
        return NULL;
    loop->batch = next->aw.h.next;
    return next;
}

static void switch_out(coil_loop *loop, coil_task *t)
{
    coil_task *next = next_direct(loop, t);
    if (COIL_UNLIKELY(loop->timing) && next) {
        /* A direct hand-over ends one step and starts the next without the scheduler. */
        loop->hooks->step_end(loop, t);
        loop->hooks->step_begin(loop, next);
    }
    if (next == t) {
        t->tstate = COIL__T_RUNNING; /* it yielded and is the only one ready: carry on */
        return;
    }
    if (next) {
        next->tstate = COIL__T_RUNNING;
        loop->current = next;
#if defined(COIL_SANITIZE_BUILD)
        coil__fiber_switch(&t->sp, next->sp, &t->fiber, &next->fiber, 0);
#else
        coil__ctx_switch(&t->sp, next->sp);
#endif
        return;
    }
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber_switch(&t->sp, loop->sched_sp, &t->fiber, &loop->sched_fiber, 0);
#else
    coil__ctx_switch(&t->sp, loop->sched_sp);
#endif
}

int coil__task_suspend(const coil__wait_ops *ops, void *obj)
{
    coil_loop *loop = coil__tls_running;
    coil_task *t = loop->current;
    t->wait_ops = ops;
    t->wait_obj = obj;
    if (t->tstate == COIL__T_RUNNING)
        t->tstate = COIL__T_SUSPENDED;
    switch_out(loop, t);
    int r = t->wake_result;
    t->wait_obj = NULL;
    if (COIL_UNLIKELY(t->tflags & COIL__TF_MUST_CANCEL)) {
        if (r == -ECANCELED) {
            t->tflags &= ~COIL__TF_MUST_CANCEL; /* several requests, one delivery */
        } else if (ops && ops->late_cancel_wins) {
            t->tflags &= ~COIL__TF_MUST_CANCEL;
            r = -ECANCELED;
        }
    }
    return r;
}

void coil__task_wake(coil_task *t, int result)
{
    t->wake_result = result;
    t->wait_ops = NULL;
    t->tstate = COIL__T_READY;
    coil__rq_push(t->loop, &t->aw.h);
}

/* The wake function of a task's own wait node: every wait list that holds tasks uses it. */
void coil__wnode_wake_task(coil__wnode *n, int result)
{
    coil__task_wake(coil__container_of(n, coil_task, wnode), result);
}

/* ---- cancellation ---- */

int coil_task_cancel(coil_task *t, const char *msg)
{
    if (!t || t->aw.h.state != COIL__PENDING || t->tstate == COIL__T_FINISHED)
        return 0;
    if (t->cancel_requests < UINT16_MAX)
        t->cancel_requests++;
    if (msg) {
        coil__task_ext *x = coil__task_ext_get(t);
        if (x) {
            free(x->cancel_msg);
            x->cancel_msg = strdup(msg);
        }
    }
    /* Forwarding the cancel to what t awaits can come back to t (A awaits B awaits A): the
     * second arrival just marks it, as asyncio does once the chain is in motion. */
    if (t->tstate == COIL__T_SUSPENDED && t->wait_ops && t->wait_ops->cancel && !(t->tflags & COIL__TF_CANCELLING)) {
        t->tflags |= COIL__TF_CANCELLING;
        t->wait_ops->cancel(t);
        t->tflags &= ~COIL__TF_CANCELLING;
        return 1;
    }
    t->tflags |= COIL__TF_MUST_CANCEL;
    return 1;
}

int coil_task_uncancel(coil_task *t)
{
    if (t->cancel_requests > 0)
        t->cancel_requests--;
    /* asyncio 3.13: back at zero, a request not yet delivered is forgotten too. */
    if (t->cancel_requests == 0)
        t->tflags &= ~COIL__TF_MUST_CANCEL;
    return t->cancel_requests;
}

int coil_task_cancelling(const coil_task *t) { return t->cancel_requests; }

/* ---- completion, results, freeing ---- */

void coil__task_free_now(coil_loop *loop, coil_task *t)
{
    coil__task_ext *x = t->ext;
    if (x) {
        if (x->exc)
            coil__exception_free(x->exc);
        free(x->name);
        free(x->cancel_msg);
        free(x);
    }
    coil__pool_put(&loop->task_pool, t);
}

void coil_task_free(coil_task *t)
{
    if (!t)
        return;
    t->aw.h.flags |= COIL__AW_HANDLE_FREED;
    coil__aw_unref(t->loop, &t->aw);
}

bool coil_task_done(const coil_task *t) { return t->aw.h.state != COIL__PENDING; }
bool coil_task_cancelled(const coil_task *t) { return t->aw.h.state == COIL__CANCELLED; }

int coil_task_result(coil_task *t, void **result) { return coil__aw_outcome(&t->aw, result); }

const coil_exception *coil_task_exception(coil_task *t)
{
    if (t->aw.h.state == COIL__PENDING)
        return NULL;
    t->aw.h.flags |= COIL__AW_RETRIEVED;
    return coil__aw_exception(&t->aw);
}

int coil_task_await(coil_task *t, void **result)
{
    if (!t)
        return -EINVAL;
    /* Awaiting a task that already returned a value is the common case in fan-out/fan-in code:
     * answer it without the general path's checks (which it passes anyway). */
    coil_loop *loop = coil__tls_running;
    if (COIL_LIKELY(loop && loop->current && t->loop == loop && t->aw.h.state == COIL__DONE)) {
        if (result)
            *result = t->aw.result;
        return 0;
    }
    return coil_future_await(coil_task_future(t), result);
}

int coil_task_add_done_callback(coil_task *t, coil_done_fn cb, void *arg)
{
    return coil__aw_add_done(&t->aw, cb, arg);
}

int coil_task_remove_done_callback(coil_task *t, coil_done_fn cb, void *arg)
{
    return coil__aw_remove_done(&t->aw, cb, arg);
}

const char *coil_task_get_name(coil_task *t) { return coil__task_name(t); }

int coil_task_set_name(coil_task *t, const char *name)
{
    if (!name)
        return -EINVAL;
    coil__task_ext *x = coil__task_ext_get(t);
    char *copy = strdup(name);
    if (!x || !copy) {
        free(copy);
        return -ENOMEM;
    }
    free(x->name);
    x->name = copy;
    return 0;
}

coil_loop *coil_task_get_loop(const coil_task *t) { return t->loop; }
coil_future *coil_task_future(coil_task *t) { return (coil_future *)(void *)&t->aw; }

coil_task *coil_future_task(coil_future *f)
{
    return f && f->aw.h.kind == COIL__RQ_TASK ? (coil_task *)(void *)f : NULL;
}

coil_task *coil_current_task(void) { return coil__running_task(); }

struct collect {
    coil_task **out;
    size_t max, n;
};

static void collect_one(void *obj, void *ctx)
{
    coil_task *t = obj;
    struct collect *c = ctx;
    if (t->aw.h.state != COIL__PENDING)
        return;
    if (c->n < c->max)
        c->out[c->n] = t;
    c->n++;
}

size_t coil_all_tasks(coil_loop *loop, coil_task **out, size_t max)
{
    if (!loop)
        loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    if (!loop)
        return 0;
    struct collect c = { out, out ? max : 0, 0 };
    coil__pool_each(&loop->task_pool, collect_one, &c);
    return c.n;
}

/* A pending task destroyed by loop close: its stack goes, its frames are never resumed. */
void coil__task_destroy_pending(coil_loop *loop, coil_task *t)
{
    coil__loop_report(loop, "Task was destroyed but it is pending!", 0, NULL, t, NULL);
    release_stack(loop, t);
    coil__task_free_now(loop, t);
}

/* ---- raising ---- */

COIL__TLS coil_exception **coil__tls_worker_exc;

/* Put e (NULL if it could not be made) in *slot with its payload, replacing what was there; the
 * payload is destroyed if e is NULL, so it never leaks. */
static void *store_exception(coil_exception **slot, coil_exception *e, void *payload, void (*dtor)(void *))
{
    if (!e) {
        if (dtor)
            dtor(payload);
        return NULL;
    }
    e->payload = payload;
    e->dtor = dtor;
    if (*slot)
        coil__exception_free(*slot);
    *slot = e;
    return NULL;
}

static void *raise_v(int code, void *payload, void (*dtor)(void *), const char *fmt, va_list ap)
{
    if (code >= 0)
        code = -EINVAL;
    coil_task *t = coil__running_task();
    if (!t) {
        if (coil__tls_worker_exc) /* coil_raise in an executor's worker: the job takes it */
            return store_exception(coil__tls_worker_exc, coil__exception_newv(code, NULL, fmt, ap), payload, dtor);
        if (dtor)
            dtor(payload);
        return NULL;
    }
    coil__task_ext *x = coil__task_ext_get(t);
    if (!x) {
        if (dtor)
            dtor(payload);
        return NULL;
    }
    coil_exception *e;
    if (!fmt && code == -ECANCELED && x->cancel_msg)
        e = coil__exception_new(code, coil__task_name(t), x->cancel_msg);
    else
        e = coil__exception_newv(code, coil__task_name(t), fmt, ap);
    return store_exception(&x->exc, e, payload, dtor);
}

void *coil_raise(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    void *r = raise_v(code, NULL, NULL, fmt, ap);
    va_end(ap);
    return r;
}

void *coil_raise_payload(int code, void *payload, void (*dtor)(void *), const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    void *r = raise_v(code, payload, dtor, fmt, ap);
    va_end(ap);
    return r;
}
