/* coil shards: a thread's own lane into a loop's inbox.
 *
 * Claiming a slot of the inbox's MPSC ring is a locked instruction, and on x86 a locked
 * instruction waits for every store before it to reach the cache: each submission would wait
 * out its own cache misses (the future's fresh line, a ring slot the loop read a lap ago). A
 * thread posting from outside a running loop therefore gets a single-producer ring of its own
 * per inbox it posts to: plain stores, published by a release store of the tail, so a burst of
 * submissions streams. Loops keep posting through the MPSC ring.
 *
 * A thread sends everything for one inbox the same way for as long as that inbox lives (its
 * lane once it has one, else the ring), so the order of one thread's messages holds. It keeps
 * lanes for up to COIL__LANES_PER_THREAD inboxes; past that it uses the ring for new ones.
 *
 * A lane has two references: its thread's, dropped when the thread exits (the lane is then
 * `closed`, and the loop frees it once drained), and its inbox's, dropped when the loop closes
 * (the lane is then `orphaned`, and the thread forgets it the next time it looks). */
#ifndef COIL_SHARDS_LANE_H
#define COIL_SHARDS_LANE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "mpsc.h"

/* A lane holds as many messages as the inbox's ring, so a thread can have as many in flight
 * whichever way it posts. */
enum { COIL__LANES_PER_THREAD = 8, COIL__LANE_CAPACITY = 4096 };

typedef struct coil__lane {
    /* The producing thread's line. */
    _Alignas(64) _Atomic uint64_t tail; /* next position to fill */
    uint64_t head_seen;                 /* a lower bound on head: the fullness check reads this */

    /* The loop's line. */
    _Alignas(64) _Atomic uint64_t head; /* next position to take */
    uint64_t tail_seen;                 /* the loop's last look at tail */
    uint64_t look_after;                /* a stream ran dry: no look at tail before this (ns) */
    struct coil__lane *next;            /* on the inbox's list: set before publication, then the loop's */
    bool streaming;                     /* the last look at tail found more than one message */

    _Alignas(64) _Atomic uint32_t refs;
    _Atomic bool closed;                /* its thread has exited: no more pushes */
    _Atomic bool orphaned;              /* its inbox is gone: no more pops */
    uint32_t mask;
    coil__msg slots[];
} coil__lane;

/* This thread's lane into the receiver `to` (an inbox), whose lanes hang on *lanes, created on
 * first use from a thread not running a loop and pushed on *lanes (release). `to_id` must be
 * unique for the process's life: a receiver at a reused address is another receiver. NULL:
 * post through the receiver's ring (a running loop without a lane here, a full table, or no
 * memory). */
coil__lane *coil__lane_for(const void *to, uint64_t to_id, _Atomic(coil__lane *) *lanes);

/* Producer: append the message {fn, a, b} (see coil__mpsc_push). 0, or -EAGAIN when full. */
int coil__lane_push(coil__lane *l, void (*fn)(void *, void *), void *a, void *b);

/* Loop: move up to max messages, oldest first, into out[]. Returns how many.
 *
 * Each look at the tail takes the producer's line away from it, and the producer's next push
 * then waits to get it back. A loop that keeps up with a stream would look after every message
 * or two, and the stream would go at the speed of that exchange, not of the pushes. So
 * once the messages of a look that found more than one have run out, the next look waits
 * pace_ns: the stream arrives in batches. A single message (a request awaiting its reply) or
 * none leaves the lane looked at every time. pace_ns 0 never waits: for a loop about to sleep,
 * or closing. */
uint32_t coil__lane_pop_batch(coil__lane *l, coil__msg *out, uint32_t max, uint64_t pace_ns);

/* Loop: nothing ready right now (a relaxed look, as coil__mpsc_empty). */
bool coil__lane_empty(const coil__lane *l);

/* Drop a reference; the last one frees the lane. */
void coil__lane_unref(coil__lane *l);

#endif
