/* coil: thread-pool executors and to_thread (asyncio's run_in_executor and to_thread).
 *
 * A blocking function runs on a pool thread while the calling task is suspended; the loop goes
 * on running other tasks. If the awaiting task is cancelled, the call returns -ECANCELED at
 * once but the function still runs to its end on its thread (a thread cannot be interrupted);
 * its result is then discarded, through the destructor given, if any. Nothing leaks: a loop
 * that closes first waits for such functions to return.
 *
 * A function fails the way a task does: `return coil_raise(code, fmt, ...)` (or
 * coil_raise_payload) on the worker thread records an exception on the call, and the function's
 * return value is then discarded (through the destructor given, if any). The awaiting task
 * receives the code from coil_run_in_executor / coil_to_thread, and the code, message and
 * payload through the future of coil_run_in_executor_future (asyncio re-raises the function's
 * exception in the awaiting task). A failure nobody retrieves from that future goes to the loop's
 * exception handler when the future is freed ("Future exception was never retrieved"), and a
 * task that passes it on (`return coil_raise(rc, "%s", coil_exception_message(e))`) hands code
 * and message to whoever awaits that task, a coil_cfuture of coil_run_coroutine_threadsafe
 * included. Raising -ECANCELED ends the call (or its future) cancelled. The outcome of a call
 * whose awaiter gave up (cancelled) is dropped, as asyncio drops it.
 *
 * Every loop has a default executor, created on first use with min(32, CPUs + 4) threads
 * (threads are started on demand), and shut down when the loop closes (so coil_runner_close and
 * coil_runtime_free shut it down too).
 */
#ifndef COIL_EXECUTOR_H
#define COIL_EXECUTOR_H

#include "api.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_executor coil_executor;

/* A pool of up to `max_workers` threads (0 = min(32, CPUs + 4)), started on demand.
 * Returns 0, -ENOMEM. Thread-safe. */
COIL_API int coil_executor_new(coil_executor **out, unsigned max_workers);
/* Shut down: no new work is accepted; work already queued still runs; blocks until every worker
 * has finished and exited, then frees the executor. From a loop's thread, that loop keeps
 * receiving completions while it waits. Do not call it from one of its own workers. */
COIL_API void coil_executor_free(coil_executor *ex);
/* How many worker threads are running now. Thread-safe. */
COIL_API unsigned coil_executor_threads(coil_executor *ex);

/* Run fn(arg) on a thread of `ex` (NULL: the running loop's default executor) and suspend the
 * calling task until it returns. Returns 0 with *result (may be NULL) set to what fn returned,
 * the code fn raised with coil_raise (*result untouched; see above), -ECANCELED if the task was
 * cancelled (fn still completes; its result goes to result_dtor, if not NULL), COIL_ECLOSED if
 * the executor was shut down, -ENOMEM, -EAGAIN if no thread could be started, COIL_ENOTASK
 * outside a task. Loop thread only. */
COIL_API int coil_run_in_executor(coil_executor *ex, coil_task_fn fn, void *arg, void (*result_dtor)(void *),
                                  void **result);
/* coil_run_in_executor on the default executor, with no destructor (asyncio.to_thread). */
COIL_API int coil_to_thread(coil_task_fn fn, void *arg, void **result);
/* asyncio's loop.run_in_executor proper: start fn(arg) on `ex` (NULL: the default executor of
 * the running loop, or of this thread's loop) and return at once, with *out a future of that
 * loop that completes with fn's result, or fails with what fn raised (coil_future_exception
 * gives code, message and payload). Awaiting it from a task that is then cancelled cancels it;
 * fn still runs to its end, and its outcome is dropped (result through result_dtor). Free it with
 * coil_future_free. Never suspends. Returns 0, -EINVAL (no fn, no out, no loop), COIL_ECLOSED,
 * -ENOMEM, -EAGAIN. Loop thread only. */
COIL_API int coil_run_in_executor_future(coil_executor *ex, coil_task_fn fn, void *arg, void (*result_dtor)(void *),
                                         coil_future **out);

/* Make `ex` the running (or this thread's) loop's default executor; the loop owns it from then
 * on (it is shut down and freed with the loop). Fails with COIL_EINVALSTATE if a default
 * executor is already in use. Loop thread only. */
COIL_API int coil_loop_set_default_executor(coil_loop *loop, coil_executor *ex);
/* Shut down the running loop's default executor and wait, suspended, up to `timeout` seconds
 * (< 0: no limit) for its threads to finish. Returns 0, -ETIMEDOUT (the threads go on finishing
 * in the background; the loop still waits for them when it closes), -ECANCELED, COIL_ENOTASK.
 * Later coil_to_thread calls on this loop return COIL_ECLOSED. */
COIL_API int coil_shutdown_default_executor(double timeout);

#ifdef __cplusplus
}
#endif
#endif
