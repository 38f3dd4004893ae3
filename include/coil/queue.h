/* coil: queues for tasks of one loop: Queue (FIFO), LifoQueue and PriorityQueue, with the
 * semantics of CPython 3.13+ asyncio (queues.py), shutdown included.
 *
 * Items are `void *` that the queue stores, never dereferences and never frees (except through
 * opts->drop, below). A queue is for its loop's thread only: none of these functions is
 * thread-safe. Storage grows on demand up to maxsize (bounded) or without limit (maxsize <= 0)
 * and is reused, so a queue in steady state allocates nothing.
 *
 * Waiting is FIFO and cancellable: a cancelled get never loses an item (items stay in the queue
 * until the getter runs), a cancelled put never inserts one, and a wake-up that raced with the
 * cancellation is passed to the next waiter. As in asyncio, a woken getter (putter) takes its
 * item (slot) when it runs; a call that finds an item (a slot) without waiting takes it. A woken
 * task that then finds none waits again at the head of the line (asyncio re-queues it at the
 * back; coil keeps its place).
 *
 * A call that has to suspend returns COIL_ENOTASK outside a task and COIL_EWRONGLOOP on a queue
 * of another loop; a put or get that does not need to wait never suspends. In debug mode the
 * non-suspending calls (put_nowait, get_nowait, task_done, shutdown) from a thread that does not
 * own the queue's loop are refused: COIL_EWRONGLOOP (shutdown does nothing) and a line on stderr.
 */
#ifndef COIL_QUEUE_H
#define COIL_QUEUE_H

#include <stdbool.h>
#include <stddef.h>

#include "api.h"
#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_queue coil_queue;

/* Priority order: negative when a comes out before b. Equal items come out in insertion order. */
typedef int (*coil_queue_cmp)(const void *a, const void *b, void *ctx);

typedef struct coil_queue_opts {
    long maxsize;           /* <= 0: unbounded */
    coil_queue_cmp compare; /* required for a priority queue, ignored otherwise */
    /* Called for each item the queue discards: by coil_queue_shutdown(q, true) and by
     * coil_queue_free on items still queued. NULL: items are just forgotten. */
    void (*drop)(void *item, void *ctx);
    void *ctx;              /* passed to compare and drop */
} coil_queue_opts;

/* New queues (NULL opts: unbounded, no drop). Return 0, -ENOMEM, -EINVAL (out NULL; a priority
 * queue without compare). */
COIL_API int coil_queue_new(coil_queue **out, const coil_queue_opts *opts);
COIL_API int coil_lifo_queue_new(coil_queue **out, const coil_queue_opts *opts);
COIL_API int coil_priority_queue_new(coil_queue **out, const coil_queue_opts *opts);
/* Free the queue, dropping items still in it. -EBUSY (nothing freed) while a task is inside
 * put/get/join on it; NULL is a no-op. Returns 0. */
COIL_API int coil_queue_free(coil_queue *q);

/* Put an item, suspending while the queue is full. Returns 0, COIL_EQUEUESHUTDOWN (shut down,
 * before or while waiting), -ECANCELED (nothing was inserted), -ENOMEM (storage could not
 * grow), COIL_ENOTASK, COIL_EWRONGLOOP. */
COIL_API int coil_queue_put(coil_queue *q, void *item);
/* Put without waiting: 0, COIL_EQUEUEFULL, COIL_EQUEUESHUTDOWN, -ENOMEM. Never suspends. */
COIL_API int coil_queue_put_nowait(coil_queue *q, void *item);
/* Remove and return an item into *item (may be NULL), suspending while the queue is empty.
 * After shutdown, items still queued are returned first (unless the shutdown was immediate),
 * then COIL_EQUEUESHUTDOWN. Returns 0, COIL_EQUEUESHUTDOWN, -ECANCELED (no item was taken),
 * COIL_ENOTASK, COIL_EWRONGLOOP. */
COIL_API int coil_queue_get(coil_queue *q, void **item);
/* Get without waiting: 0, COIL_EQUEUEEMPTY, COIL_EQUEUESHUTDOWN (shut down and empty). */
COIL_API int coil_queue_get_nowait(coil_queue *q, void **item);

/* Mark one item taken by get as processed. -EINVAL if called more times than items were put
 * (asyncio's ValueError). When the count of unfinished items reaches zero, join() returns.
 * Never suspends. */
COIL_API int coil_queue_task_done(coil_queue *q);
/* Wait until every item put has been marked done (or discarded by an immediate shutdown).
 * Returns at once if none is unfinished; otherwise suspends. Returns 0, -ECANCELED,
 * COIL_ENOTASK, COIL_EWRONGLOOP. */
COIL_API int coil_queue_join(coil_queue *q);

/* Shut the queue down (3.13): later puts fail with COIL_EQUEUESHUTDOWN and blocked putters are
 * woken to fail so; blocked getters are woken and, once the queue is empty, fail so too. With
 * `immediate`, the items left are discarded (through opts->drop), each counted as done for
 * join(), so gets fail at once. Never suspends. Calling it again is allowed (immediate then
 * still discards). */
COIL_API void coil_queue_shutdown(coil_queue *q, bool immediate);

/* The state, as asyncio's qsize/empty/full/maxsize. Never suspend. */
COIL_API size_t coil_queue_qsize(const coil_queue *q);
COIL_API bool coil_queue_empty(const coil_queue *q);
/* True when bounded and holding maxsize items. */
COIL_API bool coil_queue_full(const coil_queue *q);
COIL_API long coil_queue_maxsize(const coil_queue *q);

#ifdef __cplusplus
}
#endif
#endif
