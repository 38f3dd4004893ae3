/* coil core: the timer heap. A 4-ary min-heap of (deadline, timer) pairs in one array: four
 * children share a cache line, so a pop touches about log4(n) lines. Each timer remembers its
 * slot, so cancel is O(log n). Equal deadlines fire in insertion order. */
#ifndef COIL_CORE_TIMER_H
#define COIL_CORE_TIMER_H

#include <stdbool.h>
#include <stdint.h>

typedef struct coil__timer coil__timer;
struct coil__timer {
    void (*fire)(coil__timer *t);
    uint32_t idx;     /* slot in the heap + 1; 0 when not armed */
    uint32_t seq;     /* insertion order, for ties */
};

typedef struct coil__heapent {
    uint64_t when;
    coil__timer *t;
} coil__heapent;

typedef struct coil__timerheap {
    coil__heapent *e;
    uint32_t n, cap;
    uint32_t seq;
} coil__timerheap;

void coil__timers_init(coil__timerheap *h);
void coil__timers_free(coil__timerheap *h);
/* Arm t for `when` (ns). 0 or -ENOMEM. t must not be armed. */
int coil__timers_add(coil__timerheap *h, coil__timer *t, uint64_t when);
/* Disarm t if armed. */
void coil__timers_remove(coil__timerheap *h, coil__timer *t);
/* Pop the earliest timer if it is due at `now`, else NULL. */
coil__timer *coil__timers_pop_due(coil__timerheap *h, uint64_t now);

static inline bool coil__timer_armed(const coil__timer *t) { return t->idx != 0; }
static inline bool coil__timers_empty(const coil__timerheap *h) { return h->n == 0; }
/* The earliest deadline (slot 0 sits after the alignment padding, see timer.c). */
static inline uint64_t coil__timers_next(const coil__timerheap *h) { return h->e[3].when; }

#endif
