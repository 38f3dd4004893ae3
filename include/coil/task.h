/* coil: tasks (stackful coroutines), futures and sleeping.
 *
 * A task runs `void *fn(void *arg)` on its own stack. Every await point suspends it by a context
 * switch back to its loop. Tasks and futures are for their loop's thread only.
 *
 * Ownership: coil_create_task gives the caller a handle (unless `out` is NULL, which starts a
 * detached task). The handle stays valid until coil_task_free, which may be called at any time:
 * a task still running goes on and frees itself when done. An exception nobody retrieved goes
 * to the loop's exception handler when the task is freed.
 *
 * Cancellation follows asyncio 3.11+: coil_task_cancel requests it; the task sees -ECANCELED at
 * its current await (if suspended) or its next one, exactly once per batch of requests made
 * before it ran; coil_task_cancelling counts requests, coil_task_uncancel takes one back.
 * Cancelling a task that awaits a future or another task cancels that too. A task ends
 * cancelled by returning coil_raise(-ECANCELED, ...). One difference from asyncio, forced by
 * C's lack of unwinding: an await on I/O whose operation already completed returns its result,
 * and the cancellation is delivered at the next await instead (no completed read is lost).
 */
#ifndef COIL_TASK_H
#define COIL_TASK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "errors.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef void *(*coil_task_fn)(void *arg);

typedef struct coil_task_opts {
    const char *name;           /* copied; NULL = "Task-<n>" */
    size_t stack_size;          /* 0 = the loop's default */
    coil_stack_mode stack_mode; /* DEFAULT = the loop's mode; COMPACT only if the task keeps its
                                 * rule (see coil_stack_mode) */
    bool eager;                 /* 3.12 eager start: run now, up to the first suspension */
} coil_task_opts;

/* Create a task on the running loop (or, outside one, on this thread's event loop) and
 * schedule it. With opts->eager and a running loop, the task runs synchronously up to its first
 * suspension before this returns; one that finishes never enters the ready queue.
 * Returns 0, -ENOMEM, COIL_ENOSTACK (a dedicated task when no more stacks may be had: the loop's
 * max_stacks, or the process's mappings; the task then fails with COIL_ENOSTACK and a message if
 * the stacks run out between its creation and its first run), -EINVAL (no fn, no loop, an
 * unknown stack_mode), COIL_ECLOSED. Does not suspend the caller (eager start runs the new
 * task in between, as asyncio does). The macro passes the caller's file and line, which debug
 * mode and the call graph show; a wrapper that creates tasks for its callers may pass its
 * caller's with coil_create_task_at. */
COIL_API int coil_create_task_at(coil_task **out, coil_task_fn fn, void *arg, const coil_task_opts *opts,
                                  const char *file, int line);
#define coil_create_task(out, fn, arg, opts) \
    coil_create_task_at((out), (fn), (arg), (opts), __FILE__, __LINE__)
/* The same on a given loop (which must be this thread's). */
COIL_API int coil_loop_create_task_at(coil_loop *loop, coil_task **out, coil_task_fn fn, void *arg,
                                       const coil_task_opts *opts, const char *file, int line);
#define coil_loop_create_task(loop, out, fn, arg, opts) \
    coil_loop_create_task_at((loop), (out), (fn), (arg), (opts), __FILE__, __LINE__)

/* Wait for `t` to finish. Suspends. Returns 0 with *result (may be NULL) set to the value fn
 * returned, or the task's error code, or -ECANCELED if it ended cancelled or the caller was
 * cancelled while waiting (which cancels `t` too). COIL_ENOTASK outside a task,
 * COIL_EAWAITSELF for a task awaiting itself, COIL_EWRONGLOOP for a task of another loop. */
COIL_API int coil_task_await(coil_task *t, void **result);
/* Release the handle. */
COIL_API void coil_task_free(coil_task *t);

COIL_API bool coil_task_done(const coil_task *t);
COIL_API bool coil_task_cancelled(const coil_task *t);
/* Without suspending: 0 with *result, the error code, -ECANCELED, or COIL_EINVALSTATE if not done. */
COIL_API int coil_task_result(coil_task *t, void **result);
/* The exception of a failed or cancelled task (marks it retrieved), or NULL. */
COIL_API const coil_exception *coil_task_exception(coil_task *t);
/* Request cancellation. Returns 1 if requested, 0 if the task is already done. `msg` is copied. */
COIL_API int coil_task_cancel(coil_task *t, const char *msg);
/* Decrement the pending cancellation count; returns what remains. */
COIL_API int coil_task_uncancel(coil_task *t);
COIL_API int coil_task_cancelling(const coil_task *t);

/* Done callbacks run through call_soon when the task finishes (at once if already done). */
typedef void (*coil_done_fn)(coil_future *fut, void *arg);
COIL_API int coil_task_add_done_callback(coil_task *t, coil_done_fn cb, void *arg);
/* Removes every registration of (cb, arg); returns how many. */
COIL_API int coil_task_remove_done_callback(coil_task *t, coil_done_fn cb, void *arg);

/* The name; valid until the task is freed or renamed. */
COIL_API const char *coil_task_get_name(coil_task *t);
COIL_API int coil_task_set_name(coil_task *t, const char *name);
COIL_API coil_loop *coil_task_get_loop(const coil_task *t);
/* A task seen as an awaitable future (for run_until_complete, gather, wait, callbacks). */
COIL_API coil_future *coil_task_future(coil_task *t);
/* The task behind a future view, or NULL if it is a plain future. */
COIL_API coil_task *coil_future_task(coil_future *f);

/* The running task of this thread, or NULL. */
COIL_API coil_task *coil_current_task(void);
/* The loop's tasks not yet done (running loop if NULL). Fills up to `max` borrowed pointers
 * (valid until the caller next suspends) and returns how many there are in all. */
COIL_API size_t coil_all_tasks(coil_loop *loop, coil_task **out, size_t max);

/* Suspend the running task for `seconds` (<= 0: a plain yield: every other ready task runs
 * first). Returns 0, -ECANCELED, -EINVAL (NaN), COIL_ENOTASK outside a task. */
COIL_API int coil_sleep(double seconds);
COIL_API int coil_sleep_ns(uint64_t ns);

/* ---- futures ---- */

/* A future on the running loop (or this thread's loop). Returns 0, -ENOMEM, -EINVAL (no loop). */
COIL_API int coil_future_new(coil_future **out);
COIL_API int coil_loop_create_future(coil_loop *loop, coil_future **out);
/* Free a future. One that is still awaited is freed when its last waiter is done with it. */
COIL_API void coil_future_free(coil_future *f);
/* COIL_EINVALSTATE if already done; -EINVAL on a task's view (tasks set their own result). */
COIL_API int coil_future_set_result(coil_future *f, void *result);
COIL_API int coil_future_set_exception(coil_future *f, int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
/* Returns 1 if cancelled now, 0 if already done. On a task's view, cancels the task. */
COIL_API int coil_future_cancel(coil_future *f, const char *msg);
COIL_API bool coil_future_done(const coil_future *f);
COIL_API bool coil_future_cancelled(const coil_future *f);
COIL_API int coil_future_result(coil_future *f, void **result);
COIL_API const coil_exception *coil_future_exception(coil_future *f);
/* Suspends until done. Returns as coil_task_await. Cancelling the awaiting task cancels f. */
COIL_API int coil_future_await(coil_future *f, void **result);
COIL_API int coil_future_add_done_callback(coil_future *f, coil_done_fn cb, void *arg);
COIL_API int coil_future_remove_done_callback(coil_future *f, coil_done_fn cb, void *arg);
COIL_API coil_loop *coil_future_get_loop(const coil_future *f);

#ifdef __cplusplus
}
#endif
#endif
