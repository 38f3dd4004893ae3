/* coil: the thread-per-core runtime. N shards, each an OS thread (pinned to its CPU) with its
 * own loop, io_uring, ready queue, timers, exception handler and jemalloc arena. Shards share
 * nothing; they talk through each loop's inbox (a bounded lock-free ring) with coil_submit_to.
 *
 * Shard 0 is the thread that created the runtime: coil_runtime_run runs the main task there.
 * Shards 1..N-1 start in coil_runtime_new and run until coil_runtime_free.
 *
 *   coil_runtime *rt;
 *   coil_runtime_new(&rt, &(coil_runtime_opts){ .shards = 4 });
 *   coil_runtime_run(rt, main_fn, arg, &result);   // main_fn may coil_submit_to(1, ...)
 *   coil_runtime_free(rt);                         // cancels what is left on every shard
 */
#ifndef COIL_RUNTIME_H
#define COIL_RUNTIME_H

#include <stdbool.h>

#include "api.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_runtime coil_runtime;

typedef struct coil_runtime_opts {
    unsigned shards;              /* 0 = one per CPU in the process's affinity mask */
    const int *cpus;              /* shard i is pinned to cpus[i % ncpus]; NULL = the mask's CPUs */
    unsigned ncpus;
    bool no_pin;                  /* leave every thread's affinity alone */
    const coil_loop_opts *loop;   /* options for every shard's loop */
    int spin_us;                  /* poll the inbox up to this long before sleeping, while polling
                                   * has paid off lately: 0 = 50 us, < 0 = never */
} coil_runtime_opts;

/* Start a runtime: create shard 0's loop on the calling thread and start shards 1..N-1 (each
 * pins itself, takes its own jemalloc arena, creates its loop and waits for work). Every shard's
 * loop is made with opts->loop, so its backend (or COIL_BACKEND, when that says AUTO) decides for
 * all of them. Returns 0, -EINVAL (more shards than 1024, a CPU out of range, loop options
 * coil_new_event_loop refuses), -ENOMEM, -EAGAIN (no thread), COIL_ENOURING (io_uring asked for
 * by name where the kernel refuses it), COIL_ERUNNING (called from a running loop). Does not
 * suspend. */
COIL_API int coil_runtime_new(coil_runtime **out, const coil_runtime_opts *opts);
/* Run fn(arg) as the main task on shard 0 (the calling thread, which must be the creator's)
 * until it finishes; other shards keep running meanwhile. Returns 0 with *result, the task's
 * error code, -ECANCELED, COIL_ERUNNING from inside a loop, COIL_EWRONGLOOP from another
 * thread. May be called several times. */
COIL_API int coil_runtime_run(coil_runtime *rt, coil_task_fn fn, void *arg, void **result);
/* Shut down: cancel the tasks left on every shard, keep every loop running until nothing is in
 * flight between them (replies, cancellations, messages, executor jobs), stop and join the
 * threads, close the loops (shutting down their default executors) and free everything. Creator
 * thread only, outside any loop: from anywhere else it prints an error to stderr and does
 * nothing (shard 0 could never be run there). Not thread-safe. */
COIL_API void coil_runtime_free(coil_runtime *rt);

COIL_API unsigned coil_runtime_shard_count(const coil_runtime *rt);
/* The loop of shard i (NULL if out of range), for coil_loop_call_soon_threadsafe and
 * coil_run_coroutine_threadsafe from other threads. */
COIL_API coil_loop *coil_runtime_loop(coil_runtime *rt, unsigned shard);

/* The shard running on this thread: its index, or -1 outside a runtime's loop. Thread-safe. */
COIL_API int coil_shard_id(void);
/* The number of shards of this thread's runtime, or 0 outside one. Thread-safe. */
COIL_API unsigned coil_shard_count(void);

/* Run fn(arg) as a task on `shard` and return, in *out, a future of the calling shard for its
 * outcome: await it (coil_future_await), gather it, add callbacks, then coil_future_free it.
 * It completes on the caller's shard with the task's result, its error (code and message), or
 * -ECANCELED. Cancelling the future (or a task awaiting it) cancels the remote task; a result
 * that arrives after that is dropped. Works for the caller's own shard too. Never suspends.
 * Returns 0, -EINVAL (no fn or out, shard out of range), -ENOMEM, COIL_EWRONGLOOP outside a
 * running shard loop. Shard loop thread only. */
COIL_API int coil_submit_to(unsigned shard, coil_task_fn fn, void *arg, coil_future **out);
/* Run fn(arg) on every shard at once (fn can call coil_shard_id) and wait for all of them.
 * results[i] and errors[i] (either may be NULL; else coil_shard_count() entries) receive each
 * shard's result and code. Suspends. Returns 0 if every call succeeded, else the first failing
 * shard's code; -ECANCELED if the caller was cancelled (the remote tasks are cancelled too).
 * COIL_ENOTASK outside a task. */
COIL_API int coil_submit_to_all(coil_task_fn fn, void *arg, void **results, int *errors);

#ifdef __cplusplus
}
#endif
#endif
