/* Bounded lock-free multi-producer single-consumer ring of small messages.
 *
 * Every loop owns one as its inbound queue: any thread may push, only the owning loop's thread
 * pops. The ring is fixed-size and never allocates after init, so a full ring is reported to
 * the producer (-EAGAIN) rather than grown or overwritten; the producer decides whether to
 * retry, wait or fail. Internal to coil; the header compiles as C11 and as C++17.
 */
#ifndef COIL_SHARDS_MPSC_H
#define COIL_SHARDS_MPSC_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* One unit of cross-thread work: the consumer calls fn(a, b). Copied by value, 24 bytes. */
typedef struct coil__msg {
    void (*fn)(void *a, void *b);
    void *a;
    void *b;
} coil__msg;

typedef struct coil__mpsc coil__mpsc;

/* Ask for p's cache line in a state we may write. Lines here travel between cores, and a plain
 * prefetch would fetch a shared copy that the first store must then upgrade with a second trip.
 * (__builtin_prefetch(p, 1) emits PREFETCHW only when the build targets it; every x86-64 core
 * coil runs on has it, and the older ones decode it as a NOP.) */
static inline void coil__prefetch_write(const void *p)
{
#if defined(__x86_64__)
    __asm__ __volatile__("prefetchw %0" : : "m"(*(const char *)p));
#else
    __builtin_prefetch(p, 1);
#endif
}

#define COIL__MPSC_MAX_CAPACITY (UINT32_C(1) << 24)

/* Creates a ring of `capacity` messages, rounded up to a power of two and to at least 2.
 * Returns 0 and sets *out, -EINVAL if capacity is 0 or above COIL__MPSC_MAX_CAPACITY,
 * or -ENOMEM. Not thread-safe with respect to the ring it creates (nobody else has it yet). */
int coil__mpsc_init(coil__mpsc **out, uint32_t capacity);

/* Releases the ring. No push or pop may be running or follow. NULL is allowed. */
void coil__mpsc_free(coil__mpsc *q);

/* Appends the message {fn, a, b}. Thread-safe, lock-free, never blocks or suspends.
 * Returns 0, or -EAGAIN when the ring is full (nothing is written). Messages pushed by one
 * thread are popped in the order that thread pushed them. (Three words, not a coil__msg *: a
 * message the caller has just built is still in its store buffer, and a wide copy of it cannot
 * be forwarded from there; it would wait for every store before it to reach the cache.) */
int coil__mpsc_push(coil__mpsc *q, void (*fn)(void *, void *), void *a, void *b);

/* Moves up to `max` messages, oldest first, into out[]. Consumer thread only. Returns how many
 * were moved; 0 means nothing is ready. A producer that has claimed a slot but not yet filled
 * it holds back the messages behind it until it finishes (a few instructions). */
uint32_t coil__mpsc_pop_batch(coil__mpsc *q, coil__msg *out, uint32_t max);

/* Nonzero when a pop would find nothing ready right now. Consumer thread only; a relaxed read,
 * so a sleep/wake handshake must put a seq_cst fence between its "I am asleep" store and this
 * check (and the producer one between its push and reading that flag). */
int coil__mpsc_empty(const coil__mpsc *q);

/* The rounded capacity. Any thread. */
uint32_t coil__mpsc_capacity(const coil__mpsc *q);

#ifdef __cplusplus
}
#endif

#endif
