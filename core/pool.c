/* coil core: fixed-size object pools (see pool.h). */
#include <stdlib.h>

#include "pool.h"

enum { CHUNK_BYTES = 64 * 1024 };

void coil__pool_init(coil__pool *p, size_t objsize)
{
    p->free = NULL;
    p->chunks = NULL;
    p->objsize = (objsize + 15) & ~(size_t)15;
    p->per_chunk = (CHUNK_BYTES - sizeof(coil__chunk)) / p->objsize;
}

void coil__pool_destroy(coil__pool *p)
{
    coil__chunk *c = p->chunks;
    while (c) {
        coil__chunk *next = c->next;
        free(c);
        c = next;
    }
    p->chunks = NULL;
    p->free = NULL;
}

void *coil__pool_refill(coil__pool *p)
{
    coil__chunk *c = malloc(sizeof *c + p->per_chunk * p->objsize);
    if (!c)
        return NULL;
    c->count = p->per_chunk;
    c->next = p->chunks;
    p->chunks = c;
    /* Thread the free list in address order so consecutive allocations are adjacent. */
    for (size_t i = c->count; i-- > 1;)
        coil__pool_put(p, c->mem + i * p->objsize);
    return c->mem;
}

void coil__pool_each(coil__pool *p, void (*fn)(void *obj, void *ctx), void *ctx)
{
    for (coil__chunk *c = p->chunks; c; c = c->next)
        for (size_t i = 0; i < c->count; i++) {
            unsigned char *o = c->mem + i * p->objsize;
            if (o[sizeof(void *)] != 0xff)
                fn(o, ctx);
        }
}
