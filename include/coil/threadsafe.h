/* coil: reaching a loop from any thread (asyncio's call_soon_threadsafe and
 * run_coroutine_threadsafe), and the concurrent future those return.
 *
 * Work for a loop travels through the loop's inbox, a bounded lock-free ring the loop drains
 * every iteration. A loop blocked in io_uring_enter is woken (IORING_OP_MSG_RING) only when it
 * is really asleep: a busy loop costs a producer one ring push and no syscall.
 *
 * When the ring is full: the plain calls below make a foreign (non-loop) thread wait for space
 * (spin, yield, then sleep on a futex until the loop drains), and make a loop's thread queue
 * the message in its own loop's overflow list, flushed every iteration (a loop never blocks on
 * another loop). The *_nowait variants return -EAGAIN instead.
 *
 * Lifetime: the target loop must not be closed before the call begins (as in asyncio, the
 * caller keeps the loop alive; a runtime's shards live until coil_runtime_free). Once the call
 * has begun, the loop may run the message, stop and close while the call is still returning:
 * asyncio's `call_soon_threadsafe(loop.stop)` followed by the loop's thread closing the loop is
 * safe (the close waits for posts still touching the inbox). A message a loop's thread queued in
 * its overflow list for a loop that closes before the flush is dropped, as a callback still
 * scheduled on a closing loop is.
 */
#ifndef COIL_THREADSAFE_H
#define COIL_THREADSAFE_H

#include <stdbool.h>

#include "api.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Schedule cb(arg) on `loop` from any thread; it runs on the loop's thread in the order this
 * thread posted it. A negative return from cb goes to the loop's exception handler. Never
 * suspends. Returns 0, -EINVAL, -ENOMEM. Thread-safe. */
COIL_API int coil_loop_call_soon_threadsafe(coil_loop *loop, coil_callback_fn cb, void *arg);
/* As above, but -EAGAIN instead of waiting when the loop's ring is full. Thread-safe. */
COIL_API int coil_loop_call_soon_threadsafe_nowait(coil_loop *loop, coil_callback_fn cb, void *arg);

/* A concurrent future (concurrent.futures.Future): completed on one thread, waited on from any
 * other, or awaited from a task of any loop. */
typedef struct coil_cfuture coil_cfuture;

/* Run fn(arg) as a task on `loop`, from any thread, and return a concurrent future for its
 * outcome. As in asyncio, the loop creates the task when it takes the request from its inbox,
 * and the task's first step comes after the callbacks taken with it. A task cancelled before
 * that step (a runtime shutdown cancels every task) never calls fn, and the future ends
 * cancelled. Never suspends; waits for ring space like coil_loop_call_soon_threadsafe. Returns 0
 * and *out (free it with coil_cfuture_free), -EINVAL, -ENOMEM. Thread-safe. The task's return
 * value is handed over as is: one that comes back after the future was cancelled is dropped. */
COIL_API int coil_run_coroutine_threadsafe(coil_loop *loop, coil_task_fn fn, void *arg, coil_cfuture **out);
/* As above, but -EAGAIN if the loop's ring is full. */
COIL_API int coil_run_coroutine_threadsafe_nowait(coil_loop *loop, coil_task_fn fn, void *arg, coil_cfuture **out);

/* Block the calling thread until cf is done or `timeout` seconds passed (< 0: no limit).
 * Returns 0 with *result (may be NULL), the task's error code, -ECANCELED, -ETIMEDOUT,
 * COIL_ECLOSED if the loop was closed before the task finished, or
 * -EDEADLK when called from the thread of the loop that runs cf's task while cf is pending (that
 * loop could never finish it). Thread-safe. */
COIL_API int coil_cfuture_result(coil_cfuture *cf, double timeout, void **result);
/* Await cf from a task of any loop (cf's own loop too). Suspends. Returns as
 * coil_cfuture_result; cancelling the awaiting task cancels cf (and so its task), as asyncio's
 * wrap_future does. COIL_ENOTASK outside a task. Loop thread of the awaiting task. */
COIL_API int coil_cfuture_await(coil_cfuture *cf, void **result);
/* Cancel: if still pending, cf ends cancelled at once and its task is asked to cancel on its
 * loop. Returns 1 if cancelled now, 0 if already done. Thread-safe. */
COIL_API int coil_cfuture_cancel(coil_cfuture *cf);
COIL_API bool coil_cfuture_done(coil_cfuture *cf);
COIL_API bool coil_cfuture_cancelled(coil_cfuture *cf);

/* cb(cf, arg) runs once cf is done, on the thread that completes it (cf's loop, or the thread
 * that cancels it), or at once on the calling thread if cf is already done. cb must not block
 * for long. Returns 0, -EINVAL, -ENOMEM. Thread-safe. */
typedef void (*coil_cfuture_done_fn)(coil_cfuture *cf, void *arg);
COIL_API int coil_cfuture_add_done_callback(coil_cfuture *cf, coil_cfuture_done_fn cb, void *arg);

/* Release the handle (any thread; cf lives on until its task is done). A failure nobody
 * retrieved through coil_cfuture_result or coil_cfuture_await is reported to the exception
 * handler of the loop that ran the task, which must still be open. */
COIL_API void coil_cfuture_free(coil_cfuture *cf);

#ifdef __cplusplus
}
#endif
#endif
