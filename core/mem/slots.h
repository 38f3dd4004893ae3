/* coil mem: fixed-size slots carved from per-thread chunks, released from any thread.
 *
 * For objects one thread allocates in bulk and others release (a concurrent future: the
 * submitting thread allocates it, whichever thread drops the last reference releases it). A
 * general allocator's thread cache serves that pattern worst: thousands allocated before the
 * first is freed, then freed elsewhere, cost a refill or a remote flush every few hundred
 * calls. Here each thread hands out slots of its own chunk in order, and a chunk goes back when
 * the last of its slots is released, by whichever thread that is.
 *
 * A thread's first chunks are small (a block, from the heap); once it has shown it allocates in
 * bulk, its chunks are huge pages (hugemem.h), so a burst does not pay a first-touch fault
 * every 64 slots. Every block of a chunk starts with a header slot naming the chunk, so
 * releasing a slot finds its chunk with one mask whatever the chunk's size.
 *
 * What it guarantees across threads:
 *  - coil__slot_alloc touches only the calling thread's cache (the caller's thread-local
 *    coil__slot_cache) and slots no other thread holds: plain loads and stores, no lock.
 *  - coil__slot_free may run on any thread, on any number of slots at once: one acq_rel
 *    decrement of the chunk's count. The thread that drops it to zero frees the chunk, after
 *    every other thread's release of a slot in it (the chain of acq_rel decrements orders their
 *    writes to their slots before the free).
 *  - A slot is never handed out twice while held, and is never handed out again at all: a
 *    chunk is only freed, never refilled.
 *  - Slots start on a cache line of their own (their size is a multiple of 64), so threads
 *    writing two slots never share a line.
 *  - A thread that exits gives back the slots it never handed out; its chunk goes once the
 *    slots it did hand out are released.
 * The price: one long-held slot keeps its whole chunk. */
#ifndef COIL_MEM_SLOTS_H
#define COIL_MEM_SLOTS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { COIL__SLOT_BLOCK = 16384 };

typedef struct coil__slot_chunk {
    struct coil__slot_chunk *chunk; /* in every block's header slot: the chunk it belongs to */
    _Atomic uint32_t live;        /* slots not yet released: handed out and still held, or never
                                   * handed out by a thread that is still alive (first block only) */
    uint32_t size;                /* COIL__SLOT_BLOCK, or a huge page (first block only) */
    _Atomic long *count;          /* its owner's count of chunks held (first block only) */
} coil__slot_chunk;

/* One thread's state for one kind of slot: a thread-local variable of the owner, initialised
 * with only `count` set, e.g. static __thread coil__slot_cache c = { .count = &my_chunks }. */
typedef struct coil__slot_cache {
    coil__slot_chunk *chunk;      /* handing out from here; NULL: take a chunk at the next alloc */
    uint32_t next, slots;         /* the next slot to hand out, and how many the chunk has */
    uint32_t made;                /* chunks this thread has taken: the first few are small */
    bool listed;                  /* on this thread's exit list (slots.c) */
    struct coil__slot_cache *next_cache;
    _Atomic long *count;          /* chunks of this kind held, by every thread (for tests) */
} coil__slot_cache;

/* Out of line: a new chunk for c (false: no memory), and the last release of a chunk. */
bool coil__slot_refill(coil__slot_cache *c, size_t slot);
void coil__slot_chunk_free(coil__slot_chunk *ch);

/* A slot of `slot` bytes (a constant multiple of 64, at most a quarter block, the same at every
 * call with this cache), or NULL when no memory. The calling thread's own cache only. */
static inline __attribute__((always_inline)) void *coil__slot_alloc(coil__slot_cache *c, size_t slot)
{
    if (__builtin_expect(!c->chunk, 0) && !coil__slot_refill(c, slot))
        return NULL;
    const uint32_t per_block = (uint32_t)(COIL__SLOT_BLOCK / slot - 1); /* after the header slot */
    uint32_t block = c->next / per_block, i = c->next % per_block;
    char *base = (char *)c->chunk + (size_t)block * COIL__SLOT_BLOCK;
    /* The header slots are written as the allocation reaches their blocks, so a huge chunk is
     * touched in order. */
    if (i == 0)
        ((coil__slot_chunk *)(void *)base)->chunk = c->chunk;
    void *p = base + slot * (1 + i);
    if (++c->next == c->slots)
        c->chunk = NULL; /* all handed out: the slots alone keep the chunk now */
    return p;
}

/* Release a slot from coil__slot_alloc. Any thread. */
static inline void coil__slot_free(void *p)
{
    coil__slot_chunk *block = (coil__slot_chunk *)((uintptr_t)p & ~(uintptr_t)(COIL__SLOT_BLOCK - 1));
    coil__slot_chunk *ch = block->chunk;
    if (atomic_fetch_sub_explicit(&ch->live, 1, memory_order_acq_rel) == 1)
        coil__slot_chunk_free(ch);
}

#endif
