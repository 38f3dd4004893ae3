/* coil: timeout scopes (asyncio.timeout, asyncio.timeout_at, asyncio.Timeout).
 *
 *     coil_timeout_scope *s;
 *     int err = coil_timeout(&s, 0.5);
 *     if (err) return err;
 *     err = coil_timeout_enter(s);
 *     if (!err) {
 *         err = do_work();               // any await in here may see -ECANCELED on expiry
 *         err = coil_timeout_exit(s, err); // the scope's own cancellation becomes -ETIMEDOUT
 *     }
 *     coil_timeout_free(s);
 *
 * On expiry the scope cancels the task that entered it (coil_task_cancel), exactly as CPython's
 * timeouts.py does; exit takes one request back (coil_task_uncancel) and turns -ECANCELED into
 * -ETIMEDOUT only if no other cancellation arrived since enter. So a cancel from elsewhere stays
 * -ECANCELED, nested scopes on one deadline report the timeout from the outermost one only, and
 * a scope works inside cleanup code that runs after an earlier cancellation.
 *
 * Scopes are heap objects (from a per-loop pool), never on a task's stack: a compact task's
 * stack is not addressable while it is suspended, and the loop's timer points at the scope.
 * A scope belongs to one loop and must be freed before that loop is closed. Not thread-safe.
 *
 * Differences from asyncio: exit is an explicit call with the body's error code; an exception
 * group passing through an expired scope is returned unchanged (CPython adds a TimeoutError
 * note); a deadline already past fires at the loop's next timer pass rather than via call_soon.
 */
#ifndef COIL_TIMEOUT_H
#define COIL_TIMEOUT_H

#include <stdbool.h>

#include "api.h"
#include "combinators.h"
#include "errors.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_timeout_scope coil_timeout_scope;

/* A scope whose deadline is `delay` seconds from now (fixed at creation, as asyncio.timeout
 * computes loop.time() + delay, not counted from enter). COIL_NO_TIMEOUT
 * never expires; delay <= 0 expires at the first chance after enter. Uses the running loop (or
 * this thread's). Returns 0, -EINVAL (out NULL, NaN), -ENOMEM, COIL_ECLOSED (no usable loop).
 * Does not suspend. */
COIL_API int coil_timeout(coil_timeout_scope **out, double delay);
/* The same with an absolute deadline on the loop's clock (coil_loop_time). */
COIL_API int coil_timeout_at(coil_timeout_scope **out, double when);

/* Enter the scope in the running task and arm its timer. Returns 0, COIL_ENOTASK (not in a
 * task), COIL_EINVALSTATE (already entered), COIL_EWRONGLOOP, -ENOMEM. Does not suspend. */
COIL_API int coil_timeout_enter(coil_timeout_scope *s);

/* Leave the scope. `err` is what the body produced (0 or a negative code); returns the
 * translated code: -ETIMEDOUT if err is -ECANCELED because this scope expired and no other
 * cancellation is pending, otherwise err unchanged. Returns COIL_EINVALSTATE if the scope is not
 * entered (or was already exited) or is called from another task. Does not suspend. */
COIL_API int coil_timeout_exit(coil_timeout_scope *s, int err);

/* Move the deadline to `when` (loop time, seconds); COIL_NO_TIMEOUT disarms it. Only while
 * entered and not yet expired: COIL_EINVALSTATE otherwise, -EINVAL for NaN, -ENOMEM. Does not
 * suspend. */
COIL_API int coil_timeout_reschedule(coil_timeout_scope *s, double when);

/* The deadline in loop time (seconds), or COIL_NO_TIMEOUT. */
COIL_API double coil_timeout_when(const coil_timeout_scope *s);
/* True once the deadline passed and the scope cancelled its task (asyncio's expired()). */
COIL_API bool coil_timeout_expired(const coil_timeout_scope *s);
/* Disarm and free (NULL is ignored). Freeing an entered scope without exit leaves the task's
 * cancellation count as it is. */
COIL_API void coil_timeout_free(coil_timeout_scope *s);

#ifdef __cplusplus
}
#endif
#endif
