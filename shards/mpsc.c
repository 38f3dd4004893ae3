/* Bounded MPSC ring: producers claim positions with a CAS on `tail`, publish each slot with its
 * own sequence number, and the single consumer walks the published run and returns the space
 * with one store to `head` per batch.
 *
 * Positions are 64-bit and never wrap in practice, so a slot's sequence number can name the
 * exact position it was filled for: slot (p & mask) holds p + 1 once the message for position
 * p is in it. The consumer at position h takes the slot only if it reads h + 1; anything else
 * is an older lap (not yet refilled) or a producer that claimed but has not finished writing.
 *
 * Memory ordering:
 *  - producer: message stores, then release store of seq; consumer: acquire load of seq, then
 *    message loads. So a popped message is always complete.
 *  - consumer: message loads, then release store of head; producer: acquire load of head (or
 *    of head_cache, which only ever holds a value some producer acquired from head and then
 *    released), then message stores. So a slot is never overwritten while still being read.
 *  - tail needs no ordering: the CAS only makes positions unique; head is checked before the
 *    CAS with the same `pos`, and head only grows, so the check still holds when it succeeds.
 */
#include "mpsc.h"

#include <errno.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>

#define CACHELINE 64
#define PREFETCH_SLOTS 8 /* four lines ahead */

_Static_assert(sizeof(coil__msg) == 3 * sizeof(void *), "coil__msg must stay three words");

struct slot {
    _Atomic uint64_t seq;
    coil__msg msg;
};

struct coil__mpsc {
    /* Read-only after init, so this line is shared by everyone for free. */
    uint64_t mask;
    void *mem; /* what calloc returned, before alignment */

    /* Written by producers only. head_cache lets them skip the consumer's line on almost every
     * push: it is a lower bound on head, which is all the fullness check needs. */
    alignas(CACHELINE) _Atomic uint64_t tail;
    _Atomic uint64_t head_cache;

    /* Written by the consumer only, once per batch; producers read it only when they think the
     * ring is full. */
    alignas(CACHELINE) _Atomic uint64_t head;

    alignas(CACHELINE) struct slot slots[];
};

int coil__mpsc_init(coil__mpsc **out, uint32_t capacity)
{
    if (capacity == 0 || capacity > COIL__MPSC_MAX_CAPACITY)
        return -EINVAL;
    uint64_t cap = 2;
    while (cap < capacity)
        cap <<= 1;

    /* calloc rather than aligned_alloc + a loop: every field and slot sequence must start at
     * zero, and a large calloc gets fresh zero pages without touching them, so a big ring
     * costs no memory until it is used. All-zero bytes are a zero atomic integer on every
     * target coil supports. A zero sequence never equals p + 1 for the first position p that
     * maps to its slot, so nothing is taken before it is published. */
    size_t size = sizeof(coil__mpsc) + cap * sizeof(struct slot);
    void *mem = calloc(1, size + CACHELINE - 1);
    if (!mem)
        return -ENOMEM;
    coil__mpsc *q = (coil__mpsc *)(((uintptr_t)mem + CACHELINE - 1) & ~(uintptr_t)(CACHELINE - 1));
    q->mask = cap - 1;
    q->mem = mem;
    *out = q;
    return 0;
}

void coil__mpsc_free(coil__mpsc *q)
{
    if (q)
        free(q->mem);
}

int coil__mpsc_push(coil__mpsc *q, void (*fn)(void *, void *), void *a, void *b)
{
    uint64_t cap = q->mask + 1;
    uint64_t pos = atomic_load_explicit(&q->tail, memory_order_relaxed);
    for (;;) {
        uint64_t head = atomic_load_explicit(&q->head_cache, memory_order_acquire);
        /* Signed: a stale pos can be behind a fresher head_cache; the CAS below then fails. */
        if ((int64_t)(pos - head) >= (int64_t)cap) {
            head = atomic_load_explicit(&q->head, memory_order_acquire);
            /* tail >= pos and head was read after pos, so the ring really held cap claimed
             * slots at that instant: full is a true answer, not an artefact of staleness. */
            if ((int64_t)(pos - head) >= (int64_t)cap)
                return -EAGAIN;
            /* May move the cache backwards if another producer raced us; a lower bound stays
             * correct and costs at most one more read of head. */
            atomic_store_explicit(&q->head_cache, head, memory_order_release);
        }
        if (atomic_compare_exchange_weak_explicit(&q->tail, &pos, pos + 1,
                                                  memory_order_relaxed, memory_order_relaxed))
            break;
    }

    struct slot *s = &q->slots[pos & q->mask];
    /* The consumer read that line a lap ago, so writing it costs a transfer from its cache:
     * ask for it a few pushes early, and the store below finds its own line here already. */
    coil__prefetch_write(&q->slots[(pos + PREFETCH_SLOTS) & q->mask]);
    s->msg = (coil__msg){ fn, a, b };
    atomic_store_explicit(&s->seq, pos + 1, memory_order_release);
    return 0;
}

uint32_t coil__mpsc_pop_batch(coil__mpsc *q, coil__msg *out, uint32_t max)
{
    /* Only this thread writes head, so a relaxed read sees our own last store. */
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    uint32_t n = 0;
    while (n < max) {
        uint64_t pos = head + n;
        struct slot *s = &q->slots[pos & q->mask];
        /* Stops at the first unfinished slot even if later ones are ready: that keeps FIFO
         * per producer and keeps [head, head + n) a contiguous run we can free in one store. */
        if (atomic_load_explicit(&s->seq, memory_order_acquire) != pos + 1)
            break;
        out[n++] = s->msg;
    }
    if (n)
        atomic_store_explicit(&q->head, head + n, memory_order_release);
    return n;
}

int coil__mpsc_empty(const coil__mpsc *q)
{
    uint64_t head = atomic_load_explicit(&q->head, memory_order_relaxed);
    const struct slot *s = &q->slots[head & q->mask];
    return atomic_load_explicit(&s->seq, memory_order_relaxed) != head + 1;
}

uint32_t coil__mpsc_capacity(const coil__mpsc *q)
{
    return (uint32_t)(q->mask + 1);
}
