/* coil: introspection and debug mode. Counters, the call graph (which task awaits what), the
 * slow-step log and the stall detector.
 *
 * Counters: every loop publishes its counters into a shared-memory segment of its process,
 * POSIX shm "/coil.<pid>" (mode 0600, removed when the last loop closes and at exit), which
 * `loopstat PID` reads live. An update is a relaxed load and store on the loop's own thread;
 * building with -DCOIL_STATS=OFF compiles every update out (the counters then stay 0).
 *
 * Timing mode: the step counters (longest step, the step-duration histogram, slow-step log,
 * stall watch) need a clock read at the start and end of every task step, so they are off
 * unless asked for: COIL_STATS_TIMING=1 in the environment, debug mode, a stall threshold, or
 * coil_loop_set_stats_timing.
 *
 * Debug mode (asyncio's): COIL_DEBUG=1 in the environment, coil_loop_opts.debug, the runner's
 * debug option, or coil_loop_set_debug. In debug mode:
 *  - a task step longer than coil_loop_opts.slow_callback_duration (default 0.1 s) is logged on
 *    stderr with the task's name and where it was created;
 *  - an exception never retrieved is reported with where its task was created;
 *  - loop-only functions (coil_create_task / coil_loop_create_task, coil_loop_call_soon,
 *    coil_loop_call_later / call_at, coil_future_set_result / set_exception) called from a
 *    thread that does not own the loop print
 *    "coil: <function> called from a thread that does not own the loop" and return
 *    COIL_EWRONGLOOP;
 *  - the stall detector watches the loop (threshold 25 ms unless set).
 *
 * Stall detector: one watchdog thread per process polls every watched loop every few ms; a loop
 * that has not come back to its scheduler for longer than the threshold (a task step that runs
 * without awaiting) is reported on stderr: the shard, the running task's name and a backtrace of
 * the loop's thread (taken in a handler of signal SIGURG on that thread). At most 5 reports a
 * minute per process. Outside debug mode it is enabled with COIL_STALL_MS=<ms> in the
 * environment or coil_loop_set_stall_threshold.
 */
#ifndef COIL_INTROSPECT_H
#define COIL_INTROSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "api.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

#define COIL_STATS_HIST_BUCKETS 40

/* A snapshot of one loop's counters (see loopstat's documentation for each). */
typedef struct coil_loop_stats {
    uint64_t shard, thread_id;
    uint64_t tasks_alive, ready_depth;
    uint64_t tasks_created, tasks_finished;
    uint64_t iterations;
    uint64_t busy_ns, wait_ns;
    uint64_t sqes_submitted, cqes_reaped, ops_inflight;
    uint64_t timers_armed;
    uint64_t msgs_in, msgs_out, wakeups_from_loops, wakeups_from_threads, wakeups_sent;
    uint64_t executor_queue, executor_busy;
    uint64_t longest_step_ns;
    uint64_t stacks_in_use, stack_bytes;
    uint64_t steps_timed, steps_ns; /* timing mode: steps timed and their total duration */
    /* step_hist[i]: steps that took [2^i, 2^(i+1)) ns (timing mode only) */
    uint64_t step_hist[COIL_STATS_HIST_BUCKETS];
} coil_loop_stats;

/* Copy the loop's counters into *out. Gauges (alive, ready, in flight, timers, stacks) are as of
 * the loop's last scheduler iteration. Never suspends. Thread-safe (each value is read whole,
 * possibly a little stale). -EINVAL for NULL arguments. */
COIL_API int coil_loop_get_stats(const coil_loop *loop, coil_loop_stats *out);

/* Turn timing mode (per-step clock reads) on or off for the loop. Loop thread only. Never
 * suspends. Debug mode and a stall threshold keep it on regardless. */
COIL_API void coil_loop_set_stats_timing(coil_loop *loop, bool on);

/* Watch the loop for stalls longer than `seconds` (0 = stop watching; < 0 = the default, 25 ms).
 * Loop thread only; never suspends. Returns 0, -EINVAL (NaN), -EAGAIN (the watchdog thread could
 * not be started). */
COIL_API int coil_loop_set_stall_threshold(coil_loop *loop, double seconds);

/* ---- the call graph ---- */

/* One awaitable in a captured call graph. */
typedef struct coil_call_graph_entry {
    coil_future *future;        /* the awaitable: a plain future, or a task's view */
    coil_task *task;            /* the task, or NULL for a plain future */
    const char *name;           /* the task's name, or "Future"; valid while the task lives */
    const char *state;          /* "new", "ready", "running", "suspended", "pending", "done" */
    const char *awaiting;       /* what the task waits on ("sleep", "gather", "io", ...), or NULL */
    const char *file;           /* where the task was created (debug mode), or NULL */
    int line;
    int depth;                  /* 0 for the task asked about, 1 for who awaits it, ... */
    int parent;                 /* the index of the entry this one awaits, -1 for entry 0 */
    bool cycle;                 /* already shown above: an await cycle, not followed further */
} coil_call_graph_entry;

/* Capture `t` and, recursively, who awaits it (asyncio.capture_call_graph's awaited_by): entry 0
 * is t itself; each later entry awaits the entry at its `parent` index, through a plain await,
 * gather, wait, as_completed, shield, wait_for or a TaskGroup's exit. Fills up to `max` entries
 * and sets *n to the number there are (so a too-small array can be retried). An await cycle is
 * shown once, with `cycle` set, and not followed. Never suspends; loop thread only.
 * Returns 0, -EINVAL, -ENOMEM. */
COIL_API int coil_task_capture_call_graph(coil_task *t, coil_call_graph_entry *out, size_t max, size_t *n);

/* Print t, what it awaits, and the chain of who awaits it, indented, to `f`. Loop thread only.
 * Returns 0, -EINVAL, -ENOMEM. */
COIL_API int coil_task_print_call_graph(coil_task *t, FILE *f);

/* Print every task of the loop as a tree, like `python -m asyncio pstree`: a task nobody awaits
 * at the top, under it what it awaits (tasks, futures, with the kind of wait), recursively; an
 * await cycle is marked and not followed. Loop thread only. Returns 0, -EINVAL, -ENOMEM. */
COIL_API int coil_loop_print_call_graph(coil_loop *loop, FILE *f);

#ifdef __cplusplus
}
#endif
#endif
