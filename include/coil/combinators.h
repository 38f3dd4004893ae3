/* coil: waiting on several awaitables at once: gather, wait, wait_for, as_completed, shield.
 *
 * An awaitable is a coil_future * (a task is passed as coil_task_future(t)). These functions
 * never take ownership of the awaitables: the caller keeps its handles and frees them when it
 * likes (a combinator holds its own reference while it needs one). Everything here is for the
 * loop's own thread only (not thread-safe); the await points must be called from a task.
 *
 * Timeouts are in seconds (double). COIL_NO_TIMEOUT (+infinity) waits forever (asyncio's None);
 * zero or a negative value is already expired (asyncio's meaning of timeout <= 0); NaN is
 * -EINVAL.
 *
 * Differences from asyncio that C forces:
 * - Results are written into caller-provided arrays, in input order, and only after the awaiting
 *   task has resumed (so the arrays may live on a compact task's stack).
 * - asyncio's gather and wait accept coroutines and wrap them in tasks; here the caller creates
 *   the tasks.
 * - wait's done and pending "sets" are arrays in input order.
 * - A combinator that returns early (gather's first failure) detaches from the children still
 *   running; an exception such a child raises later stays on the child for whoever awaits it.
 */
#ifndef COIL_COMBINATORS_H
#define COIL_COMBINATORS_H

#include <math.h>
#include <stdbool.h>
#include <stddef.h>

#include "api.h"
#include "errors.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Wait forever (asyncio's timeout=None). */
#define COIL_NO_TIMEOUT ((double)INFINITY)

/* ---- gather ---- */

/* One child's outcome. */
typedef struct coil_gather_result {
    void *value;                /* what the child returned, when err == 0 */
    int err;                    /* 0, the child's error code, or -ECANCELED */
    /* The child's exception (code, message, task name), or NULL when err == 0. Borrowed from
     * the child: valid until the child is freed. Reading it through gather marks it retrieved. */
    const coil_exception *exc;
} coil_gather_result;

/* Wait for every awaitable in aws[0..n) and fill results[i] (may be NULL) for aws[i].
 *
 * Without return_exceptions, the first child to fail (including one cancelled on its own, which
 * counts as a -ECANCELED failure) makes gather return that child's code at once; the other
 * children keep running and `results` is not written. With return_exceptions, gather waits for
 * every child and each slot holds a value or an error; gather then returns 0.
 *
 * Cancelling the task that awaits gather cancels every child not yet done, with the same cancel
 * message, and gather returns -ECANCELED: at the first child that ends (cancelled or failed)
 * without return_exceptions, once all children are done with it. A cancel that lands when every
 * child is already done (gather's wake-up is queued) also returns -ECANCELED; the children keep
 * their results. A cancellation pending when gather is called cancels the children the same
 * way. An empty set (n == 0) returns 0 at once; when every child is already done, gather returns
 * without suspending.
 *
 * Returns 0, a child's error code, -ECANCELED, -EINVAL (aws NULL with n > 0, a NULL entry),
 * -ENOMEM, COIL_ENOTASK (not in a task), COIL_EAWAITSELF (the awaiting task is among aws),
 * COIL_EWRONGLOOP (an awaitable of another loop). Suspends. Not thread-safe. */
COIL_API int coil_gather(coil_future **aws, size_t n, bool return_exceptions, coil_gather_result *results);

/* ---- wait ---- */

typedef enum coil_return_when {
    COIL_ALL_COMPLETED = 0,   /* asyncio's default */
    COIL_FIRST_COMPLETED = 1,
    COIL_FIRST_EXCEPTION = 2, /* the first failure (not a cancellation), else all completed */
} coil_return_when;

/* Wait until `return_when` holds for aws[0..n) or `timeout` seconds pass; never cancels
 * anything (on timeout, too). Then sorts the awaitables: done[] receives those done and
 * pending[] the rest, each in input order, with the counts in *ndone and *npending. done and
 * pending, when not NULL, must have room for n entries. A condition already met returns at once
 * without suspending.
 *
 * Returns 0 (also on timeout: look at *npending), -ECANCELED if the waiting task is cancelled
 * (the awaitables are left alone and the arrays not written), -EINVAL (n == 0, aws NULL, a NULL
 * entry, a bad return_when, a NaN timeout), -ENOMEM, COIL_ENOTASK, COIL_EAWAITSELF,
 * COIL_EWRONGLOOP. Suspends. Not thread-safe. */
COIL_API int coil_wait(coil_future **aws, size_t n, double timeout, coil_return_when return_when,
                       coil_future **done, size_t *ndone, coil_future **pending, size_t *npending);

/* ---- wait_for ---- */

/* Await `aw` for at most `timeout` seconds (asyncio 3.12+ semantics). On timeout, cancel `aw`,
 * wait until its cancellation is done, and return -ETIMEDOUT; if `aw` (a task) swallows the
 * cancellation and returns a value, that value is returned with 0. A timeout <= 0 with `aw` not
 * done cancels it at once and waits for it the same way; a done `aw` returns its outcome without
 * suspending. Cancelling the waiting task cancels `aw` too and returns -ECANCELED (once `aw`
 * has finished, as awaiting it directly does).
 *
 * Returns 0 with *result (may be NULL), aw's error code, -ETIMEDOUT, -ECANCELED, -EINVAL (NULL
 * aw, NaN timeout), -ENOMEM, COIL_ENOTASK, COIL_EAWAITSELF, COIL_EWRONGLOOP. Suspends. Not
 * thread-safe. */
COIL_API int coil_wait_for(coil_future *aw, double timeout, void **result);

/* ---- as_completed ---- */

typedef struct coil_as_completed_iter coil_as_completed_iter;

/* An iterator over aws[0..n) in completion order, with a total `timeout` (seconds, counted from
 * now). Does not suspend; call it on the loop's thread. n may be 0 (the iterator is exhausted).
 * Returns 0, -EINVAL (out NULL, aws NULL with n > 0, a NULL entry, NaN timeout), -ENOMEM,
 * COIL_EWRONGLOOP (awaitables of different loops, or not this thread's loop), COIL_ECLOSED. */
COIL_API int coil_as_completed(coil_future **aws, size_t n, double timeout, coil_as_completed_iter **out);

/* Await the next completion: 0 with *fut set to that awaitable (one of aws; read its outcome
 * with coil_future_result), or 0 with *fut = NULL once every awaitable was returned. After the
 * timeout, completions that arrived before it are still returned first, then every call that
 * would have returned a pending awaitable returns -ETIMEDOUT (nothing is cancelled). Cancelling
 * the waiting task returns -ECANCELED and consumes nothing. Returns COIL_EINVALSTATE if another
 * task is already waiting on this iterator, COIL_ECLOSED if the iterator was freed while this
 * task waited, COIL_ENOTASK, -EINVAL. Suspends. Not thread-safe. */
COIL_API int coil_as_completed_next(coil_as_completed_iter *it, coil_future **fut);

/* Free the iterator (NULL is ignored). Nothing is cancelled. A task still waiting in next()
 * returns COIL_ECLOSED. Not thread-safe. */
COIL_API void coil_as_completed_free(coil_as_completed_iter *it);

/* ---- shield ---- */

/* Await `aw` but shield it from cancellation: cancelling the waiting task makes this return
 * -ECANCELED at once while `aw` goes on running; its outcome is not lost (await it, or read it,
 * directly). The caller must keep its handle on `aw` to read it later (a freed task still runs
 * to the end). A done `aw` returns its outcome without suspending.
 *
 * Returns 0 with *result, aw's error code, -ECANCELED, -EINVAL (NULL aw), COIL_ENOTASK,
 * COIL_EAWAITSELF, COIL_EWRONGLOOP. Suspends. Not thread-safe. */
COIL_API int coil_shield(coil_future *aw, void **result);

#ifdef __cplusplus
}
#endif
#endif
