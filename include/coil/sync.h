/* coil: synchronization primitives for tasks of one loop: Event, Lock, Condition, Semaphore,
 * BoundedSemaphore and Barrier, with the semantics of CPython 3.12-3.14 asyncio (locks.py).
 *
 * Common rules:
 * - Objects are heap allocated on a loop (the running loop, or this thread's event loop, at
 *   `_new`; one created with no loop binds to the loop of its first suspending call) and are for
 *   that loop's thread only: none of these functions is thread-safe.
 * - Waiting is FIFO: waiters are woken in the order they started waiting, and a newcomer never
 *   barges past queued waiters (asyncio's fairness).
 * - Every wait is cancellable and returns -ECANCELED when the waiting task is cancelled. A wake-up
 *   is never lost: a task cancelled after it was woken (given the lock, a permit, a notification)
 *   but before it ran returns -ECANCELED and passes what it was given on to the next waiter,
 *   as asyncio does.
 * - A call that has to suspend returns COIL_ENOTASK outside a task and COIL_EWRONGLOOP on an
 *   object of another loop. In debug mode, set, clear, release and notify from a thread that
 *   does not own the object's loop are refused too: COIL_EWRONGLOOP (or nothing done, for the
 *   void ones) and a line on stderr naming the function.
 * - `_free` returns -EBUSY, and frees nothing, while a task is still inside a suspending call
 *   on the object (waiting, or woken and not yet run); freeing NULL is a no-op returning 0.
 */
#ifndef COIL_SYNC_H
#define COIL_SYNC_H

#include <stdbool.h>

#include "api.h"
#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- Event ---- */

typedef struct coil_event coil_event;

/* A new event, initially not set. Returns 0, -ENOMEM, -EINVAL (out is NULL). */
COIL_API int coil_event_new(coil_event **out);
/* Free the event: 0, or -EBUSY (nothing freed) while a task is inside wait() on it. */
COIL_API int coil_event_free(coil_event *e);
/* Wait until the event is set. Returns at once (without suspending, and without seeing a pending
 * cancellation, as asyncio) if it is set; otherwise suspends. Returns 0, -ECANCELED,
 * COIL_ENOTASK, COIL_EWRONGLOOP. A waiter woken by set() returns 0 even if clear() ran before
 * it resumed. */
COIL_API int coil_event_wait(coil_event *e);
/* Set the event and wake every waiter. Never suspends; may be called from callbacks. */
COIL_API void coil_event_set(coil_event *e);
/* Reset the flag; later waits block until the next set(). Never suspends. */
COIL_API void coil_event_clear(coil_event *e);
/* The flag. Never suspends. */
COIL_API bool coil_event_is_set(const coil_event *e);

/* ---- Lock ---- */

typedef struct coil_lock coil_lock;

/* A new, unlocked lock. Returns 0, -ENOMEM, -EINVAL. */
COIL_API int coil_lock_new(coil_lock **out);
/* Free the lock: 0, or -EBUSY (nothing freed) while a task is inside acquire() on it. */
COIL_API int coil_lock_free(coil_lock *l);
/* Acquire the lock. Takes it at once (no suspension) when it is free and nobody is queued;
 * otherwise suspends until it is handed on in FIFO order. Returns 0, -ECANCELED (the lock is
 * then not held; a wake-up that raced with the cancellation goes to the next waiter),
 * COIL_ENOTASK, COIL_EWRONGLOOP. As in asyncio the lock has no owner: any task may release it. */
COIL_API int coil_lock_acquire(coil_lock *l);
/* Release the lock and wake the first waiter. Never suspends. COIL_EINVALSTATE if it is not
 * locked (asyncio's RuntimeError). */
COIL_API int coil_lock_release(coil_lock *l);
/* True while held. As in asyncio, false between a release and the woken waiter running, although
 * a newcomer still has to queue behind that waiter. */
COIL_API bool coil_lock_locked(const coil_lock *l);

/* ---- Condition ---- */

typedef struct coil_condition coil_condition;

/* A condition variable over `lock`, or over a lock of its own when `lock` is NULL. A given lock
 * is borrowed: it must outlive the condition. Returns 0, -ENOMEM, -EINVAL. */
COIL_API int coil_condition_new(coil_condition **out, coil_lock *lock);
/* Free the condition and its own lock (never a borrowed one): 0, or -EBUSY (nothing freed)
 * while a task is inside wait() on it or acquire() on its own lock. */
COIL_API int coil_condition_free(coil_condition *c);
/* The underlying lock. Never suspends. */
COIL_API coil_lock *coil_condition_lock(coil_condition *c);
/* coil_lock_acquire / release / locked on the underlying lock: same suspension and returns. */
COIL_API int coil_condition_acquire(coil_condition *c);
COIL_API int coil_condition_release(coil_condition *c);
COIL_API bool coil_condition_locked(const coil_condition *c);
/* Release the lock, wait to be notified, then re-acquire the lock. Suspends. The lock is held
 * again on every return except COIL_EINVALSTATE (the lock was not held on entry; asyncio's
 * RuntimeError; like asyncio, "held" means locked, by whichever task). Returns 0 once notified,
 * -ECANCELED if cancelled while waiting or while re-acquiring (the lock is re-acquired first, as
 * in asyncio; a notification that raced with the cancellation is passed to the next waiter),
 * COIL_ENOTASK, COIL_EWRONGLOOP. Difference from CPython 3.13+: a waiter cancelled before it
 * was notified does not also wake another waiter (coil can tell the two cases apart, so it
 * avoids that spurious wake-up). */
COIL_API int coil_condition_wait(coil_condition *c);
/* Wait until pred(arg) is true: checks it first, then after every wake-up (with the lock held).
 * Returns 0 once it is true, or what coil_condition_wait returned. */
COIL_API int coil_condition_wait_for(coil_condition *c, bool (*pred)(void *arg), void *arg);
/* Wake up to n waiters (n <= 0 wakes none), FIFO. The lock must be held: COIL_EINVALSTATE
 * otherwise. Never suspends. */
COIL_API int coil_condition_notify(coil_condition *c, int n);
COIL_API int coil_condition_notify_all(coil_condition *c);

/* ---- Semaphore and BoundedSemaphore ---- */

typedef struct coil_semaphore coil_semaphore;

/* A semaphore with `value` permits (>= 0, else -EINVAL). Returns 0, -ENOMEM, -EINVAL. */
COIL_API int coil_semaphore_new(coil_semaphore **out, int value);
/* A bounded semaphore: releasing past the initial value is an error. */
COIL_API int coil_bounded_semaphore_new(coil_semaphore **out, int value);
/* Free: 0, or -EBUSY (nothing freed) while a task is inside acquire() on it. */
COIL_API int coil_semaphore_free(coil_semaphore *s);
/* Take a permit: at once when one is free and nobody is queued, else suspends until a release
 * hands one on (FIFO). Returns 0, -ECANCELED (no permit taken; one that raced with the
 * cancellation goes to the next waiter), COIL_ENOTASK, COIL_EWRONGLOOP. */
COIL_API int coil_semaphore_acquire(coil_semaphore *s);
/* Give a permit back, waking the first waiter. Never suspends. -EINVAL for a bounded semaphore
 * already at its initial value (asyncio's ValueError), -EOVERFLOW past INT_MAX. */
COIL_API int coil_semaphore_release(coil_semaphore *s);
/* True when acquire would suspend: no permit free, or tasks queued or woken and not yet run.
 * Never suspends. */
COIL_API bool coil_semaphore_locked(const coil_semaphore *s);
/* The permits free now (asyncio's _value). Never suspends. */
COIL_API int coil_semaphore_value(const coil_semaphore *s);

/* ---- Barrier ---- */

typedef struct coil_barrier coil_barrier;

/* A barrier for `parties` (>= 1, else -EINVAL) tasks. Returns 0, -ENOMEM, -EINVAL. */
COIL_API int coil_barrier_new(coil_barrier **out, unsigned parties);
/* Free: 0, or -EBUSY (nothing freed) while a task is inside wait/reset/abort on it. */
COIL_API int coil_barrier_free(coil_barrier *b);
/* Wait until `parties` tasks have called wait. Suspends (the last arrival suspends only if it
 * must queue for the barrier's internal lock). On success *index (may be NULL) gets the arrival
 * index, 0 .. parties-1. While the barrier drains (the previous round's tasks are still leaving)
 * or resets, a newcomer waits for that to finish first. Returns 0, COIL_EBROKENBARRIER (the
 * barrier was aborted, or reset while this task waited), -ECANCELED, COIL_ENOTASK,
 * COIL_EWRONGLOOP. */
COIL_API int coil_barrier_wait(coil_barrier *b, unsigned *index);
/* Return the barrier to its empty state; tasks waiting in it get COIL_EBROKENBARRIER. Suspends
 * to take the barrier's internal lock, like asyncio's `await barrier.reset()`. Returns 0,
 * -ECANCELED, COIL_ENOTASK, COIL_EWRONGLOOP. */
COIL_API int coil_barrier_reset(coil_barrier *b);
/* Put the barrier in the broken state: current and future waits get COIL_EBROKENBARRIER until
 * a reset. Suspends as reset does; same returns. */
COIL_API int coil_barrier_abort(coil_barrier *b);
/* Tasks waiting in the barrier while it fills (0 while it drains or resets). Never suspends. */
COIL_API unsigned coil_barrier_n_waiting(const coil_barrier *b);
/* The parties it was created for. Never suspends. */
COIL_API unsigned coil_barrier_parties(const coil_barrier *b);
/* True after abort() until a reset(). Never suspends. */
COIL_API bool coil_barrier_broken(const coil_barrier *b);

#ifdef __cplusplus
}
#endif
#endif
