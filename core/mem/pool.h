/* coil core: per-loop pools of fixed-size objects (tasks, futures, handles). The hot paths take
 * and return objects with two pointer moves and never touch the general heap; memory goes back
 * when the loop closes. Every object starts with a coil__rq whose kind byte is COIL__RQ_FREE while
 * it sits in the pool, which lets the loop walk its live tasks without a list in each task. */
#ifndef COIL_CORE_POOL_H
#define COIL_CORE_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct coil__chunk {
    struct coil__chunk *next;
    size_t count;
    size_t bytes;         /* the mapping's size */
    unsigned char mem[] __attribute__((aligned(16)));
} coil__chunk;

typedef struct coil__pool {
    void *free;           /* singly linked through each object's first word */
    unsigned char *bump, *bump_end; /* the newest chunk's never-used tail */
    coil__chunk *chunks;  /* newest first */
    size_t objsize;
    size_t nchunks;
} coil__pool;

void coil__pool_init(coil__pool *p, size_t objsize);
void coil__pool_destroy(coil__pool *p);
void *coil__pool_refill(coil__pool *p);

/* Freed objects first (warm in cache), then the newest chunk's tail, which nobody has touched:
 * its pages are faulted in by the caller's own first write, not by a pass threading a list. */
static inline void *coil__pool_get(coil__pool *p)
{
    void *o = p->free;
    if (__builtin_expect(o != NULL, 1)) {
        p->free = *(void **)o;
        return o;
    }
    if (__builtin_expect(p->bump != p->bump_end, 1)) {
        o = p->bump;
        p->bump += p->objsize;
        return o;
    }
    return coil__pool_refill(p);
}

/* The kind byte sits right after the link word in every pooled object (see coil__rq). */
static inline void coil__pool_put(coil__pool *p, void *o)
{
    *(void **)o = p->free;
    ((unsigned char *)o)[sizeof(void *)] = 0xff;
    p->free = o;
}

/* Call fn on every object not in the free list. */
void coil__pool_each(coil__pool *p, void (*fn)(void *obj, void *ctx), void *ctx);

#endif
