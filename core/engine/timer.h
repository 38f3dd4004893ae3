/* coil core: the timer queue. Two sorted structures behind one interface:
 *
 * - a FIFO run: timers armed in deadline order (the common case: every timeout of a server uses
 *   the same delay, so later arms have later deadlines) are appended to a ring array. Arm, pop and
 *   cancel are O(1) and a pop reads the next slot in memory instead of sifting a heap.
 * - a 4-ary min-heap for the rest: four children share a cache line, so a pop touches about
 *   log4(n) lines, and cancel is O(log n).
 *
 * The earliest timer is the earlier of the two heads. Equal deadlines fire in arming order
 * (a sequence number breaks ties across both). Each timer remembers where it sits. */
#ifndef COIL_CORE_TIMER_H
#define COIL_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct coil__timer coil__timer;
struct coil__timer {
    void (*fire)(coil__timer *t);
    uint32_t idx;     /* 0 when not armed; heap slot + 1, or COIL__TIMER_IN_RUN | run position */
    uint32_t seq;     /* arming order, for ties */
};

#define COIL__TIMER_IN_RUN 0x80000000u

typedef struct coil__heapent {
    uint64_t when;
    coil__timer *t;   /* NULL in the run: a cancelled timer's slot, skipped when reached */
} coil__heapent;

typedef struct coil__timerheap {
    coil__heapent *e; /* the heap */
    uint32_t n, cap;
    uint32_t seq;
    coil__heapent *run; /* the FIFO run: positions head..tail-1, slot = position & (run_cap-1) */
    uint32_t run_head, run_tail, run_cap, run_live;
    uint64_t run_last;  /* deadline of the last timer appended: the run stays sorted above it */
} coil__timerheap;

void coil__timers_init(coil__timerheap *h);
void coil__timers_free(coil__timerheap *h);
/* Arm t for `when` (ns). 0 or -ENOMEM. t must not be armed. */
int coil__timers_add(coil__timerheap *h, coil__timer *t, uint64_t when);
/* Disarm t if armed. */
void coil__timers_remove(coil__timerheap *h, coil__timer *t);
/* Pop the earliest timer if it is due at `now`, else NULL. */
coil__timer *coil__timers_pop_due(coil__timerheap *h, uint64_t now);
/* Heap slot k sits at e[k + COIL__TIMER_PAD] (timer.c says why). */
#define COIL__TIMER_PAD 3
/* The earliest deadline; UINT64_MAX when the queue is empty. Inline and branch-light: a busy loop
 * with timers armed asks every iteration whether its alarm still covers them. */
static inline uint64_t coil__timers_next(const coil__timerheap *h)
{
    uint64_t when = h->run_live ? h->run[h->run_head & (h->run_cap - 1)].when : UINT64_MAX;
    if (h->n && h->e[COIL__TIMER_PAD].when < when)
        when = h->e[COIL__TIMER_PAD].when;
    return when;
}

static inline bool coil__timer_armed(const coil__timer *t) { return t->idx != 0; }
static inline bool coil__timers_empty(const coil__timerheap *h) { return h->n == 0 && h->run_live == 0; }
static inline uint32_t coil__timers_count(const coil__timerheap *h) { return h->n + h->run_live; }

#endif
