/* coil core: timing mode: per-step clock reads (longest step, the step-duration histogram, the
 * stall watchdog's "step started at") and the slow-step log, which debug mode switches on. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "engine/internal.h"
#include "observe/stats.h"

static COIL__TLS uint64_t my_tid;

static bool env_flag(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* COIL_STALL_MS=<ms>: watch every loop of the process; 0 or unset: only debug-mode loops. */
static uint64_t env_stall_ns(void)
{
    const char *v = getenv("COIL_STALL_MS");
    if (!v || !*v)
        return 0;
    double ms = strtod(v, NULL);
    return ms > 0 ? (uint64_t)(ms * 1e6) : 0;
}

enum { DEFAULT_STALL_NS = 25000000 };

static void update_timing(coil_loop *loop, bool explicit_on)
{
    bool on = explicit_on || loop->debug || loop->stall_ns;
    loop->timing = on;
    uint64_t flags = (on ? COIL__SLOT_TIMING : 0) | (loop->debug ? COIL__SLOT_DEBUG : 0) |
                     (loop->stall_ns ? COIL__SLOT_STALL : 0);
    __atomic_store_n(&loop->stats->flags, flags, __ATOMIC_RELAXED);
}

static bool explicit_timing(const coil_loop *loop)
{
    return (__atomic_load_n(&loop->stats->flags, __ATOMIC_RELAXED) & COIL__SLOT_TIMING) && !loop->debug &&
           !loop->stall_ns;
}

void coil__debug_loop_init(coil_loop *loop)
{
    bool env_timing = env_flag("COIL_STATS_TIMING");
    uint64_t want = env_stall_ns();
    if (!want && loop->debug)
        want = loop->stall_ns ? loop->stall_ns : DEFAULT_STALL_NS;
    if (want && !loop->stall_ns)
        coil__stall_watch(loop, want);
    else if (!want && loop->stall_ns && !loop->debug)
        coil__stall_unwatch(loop);
    update_timing(loop, env_timing || explicit_timing(loop));
}

void coil__debug_loop_close(coil_loop *loop)
{
    if (loop->stall_ns)
        coil__stall_unwatch(loop);
}

void coil_loop_set_stats_timing(coil_loop *loop, bool on)
{
    if (loop)
        update_timing(loop, on);
}

int coil_loop_set_stall_threshold(coil_loop *loop, double seconds)
{
    if (!loop || isnan(seconds))
        return -EINVAL;
    bool explicit_on = explicit_timing(loop);
    if (loop->stall_ns)
        coil__stall_unwatch(loop);
    if (seconds != 0) {
        uint64_t ns = seconds < 0 ? DEFAULT_STALL_NS : (uint64_t)(seconds * 1e9);
        coil__stall_watch(loop, ns ? ns : 1);
        if (!loop->stall_ns)
            return -EAGAIN;
    }
    update_timing(loop, explicit_on);
    return 0;
}

void coil__step_begin(coil_loop *loop, void *task)
{
    if (COIL_UNLIKELY(!my_tid))
        my_tid = (uint64_t)gettid();
    coil__loop_stats *p = loop->stats;
    if (COIL_UNLIKELY(p->tid != my_tid))
        __atomic_store_n(&p->tid, my_tid, __ATOMIC_RELAXED);
    __atomic_store_n(&p->step_task, (uint64_t)(uintptr_t)task, __ATOMIC_RELAXED);
    /* The watchdog reads the start with acquire: step_task is then this step's. */
    __atomic_store_n(&p->step_start_ns, coil__now_ns(), __ATOMIC_RELEASE);
}

static unsigned bucket_of(uint64_t ns)
{
    unsigned b = ns ? 63u - (unsigned)__builtin_clzll(ns) : 0;
    return b < COIL__STATS_HIST ? b : COIL__STATS_HIST - 1;
}

static void log_slow(coil_task *t, uint64_t d)
{
    const char *file = t->ext ? t->ext->file : NULL;
    if (file)
        fprintf(stderr, "coil: Executing task '%s' (created at %s:%d) took %.3f seconds\n", coil__task_name(t), file,
                t->ext->line, (double)d / 1e9);
    else
        fprintf(stderr, "coil: Executing task '%s' took %.3f seconds\n", coil__task_name(t), (double)d / 1e9);
}

void coil__step_end(coil_loop *loop, void *task)
{
    coil__loop_stats *p = loop->stats;
    uint64_t t0 = __atomic_load_n(&p->step_start_ns, __ATOMIC_RELAXED);
    if (!t0)
        return; /* timing was switched on in the middle of this step */
    uint64_t d = coil__now_ns() - t0;
    __atomic_store_n(&p->step_start_ns, 0, __ATOMIC_RELAXED);
    __atomic_store_n(&p->step_task, 0, __ATOMIC_RELAXED);
    /* Written even when COIL_STATS=OFF: timing mode is asked for explicitly. */
    uint64_t *h = &p->step_hist[bucket_of(d)];
    __atomic_store_n(h, __atomic_load_n(h, __ATOMIC_RELAXED) + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p->steps_timed, p->steps_timed + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&p->steps_ns, p->steps_ns + d, __ATOMIC_RELAXED);
    if (d > p->longest_step_ns)
        __atomic_store_n(&p->longest_step_ns, d, __ATOMIC_RELAXED);
    if (loop->debug && task && (double)d > loop->slow_callback_duration * 1e9)
        log_slow(task, d);
}

int coil_loop_get_stats(const coil_loop *loop, coil_loop_stats *out)
{
    if (!loop || !out || !loop->stats)
        return -EINVAL;
    if (coil__tls_running == loop || coil__tls_loop == loop)
        coil__stats_publish_tasks((coil_loop *)loop); /* on its own thread: exact, not last iteration's */
    const coil__loop_stats *p = loop->stats;
#define G(f) coil__stat_get(&p->f)
    *out = (coil_loop_stats){
        .shard = G(shard), .thread_id = G(tid), .tasks_alive = G(tasks_alive), .ready_depth = G(ready_depth),
        .tasks_created = G(tasks_created), .tasks_finished = G(tasks_finished), .iterations = G(iterations),
        .busy_ns = G(busy_ns), .wait_ns = G(wait_ns), .sqes_submitted = G(sqes_submitted),
        .cqes_reaped = G(cqes_reaped), .ops_inflight = G(ops_inflight), .timers_armed = G(timers_armed),
        .msgs_in = G(msgs_in), .msgs_out = G(msgs_out), .wakeups_from_loops = G(wakeups_from_loops),
        .wakeups_from_threads = G(wakeups_from_threads), .wakeups_sent = G(wakeups_sent),
        .executor_queue = G(executor_queue), .executor_busy = G(executor_busy),
        .longest_step_ns = G(longest_step_ns), .stacks_in_use = G(stacks_in_use), .stack_bytes = G(stack_bytes),
        .steps_timed = G(steps_timed), .steps_ns = G(steps_ns),
    };
    for (unsigned i = 0; i < COIL_STATS_HIST_BUCKETS && i < COIL__STATS_HIST; i++)
        out->step_hist[i] = G(step_hist[i]);
#undef G
    return 0;
}
