/* coil core: fixed-size object pools (see pool.h). */
#include <stdint.h>
#include <stdlib.h>

#include "mem/hugemem.h"
#include "mem/pool.h"

/* The first chunk is small so an idle loop costs little; every later one is a 2 MiB huge page,
 * so a loop that creates a million tasks takes a few dozen 2 MiB faults instead of 30,000 small
 * ones (each fault is a trip into the kernel, which zeroes the page). */
enum { FIRST_CHUNK = 64 * 1024, HUGE_CHUNK = COIL__HUGE_PAGE };

void coil__pool_init(coil__pool *p, size_t objsize)
{
    p->free = NULL;
    p->bump = p->bump_end = NULL;
    p->chunks = NULL;
    p->objsize = (objsize + 15) & ~(size_t)15;
    p->nchunks = 0;
}

void coil__pool_destroy(coil__pool *p)
{
    coil__chunk *c = p->chunks;
    while (c) {
        coil__chunk *next = c->next;
        /* The next loop's pool takes the same chunks warm. */
        coil__huge_free_warm(c, c->bytes);
        c = next;
    }
    coil__pool_init(p, p->objsize);
}

void *coil__pool_refill(coil__pool *p)
{
    size_t bytes = p->nchunks ? HUGE_CHUNK : FIRST_CHUNK;
    coil__chunk *c = coil__huge_alloc(bytes);
    if (!c)
        return NULL;
    p->nchunks++;
    c->bytes = bytes;
    c->count = (bytes - sizeof *c) / p->objsize;
    c->next = p->chunks;
    p->chunks = c;
    p->bump = c->mem + p->objsize;
    p->bump_end = c->mem + c->count * p->objsize;
    return c->mem;
}

void coil__pool_each(coil__pool *p, void (*fn)(void *obj, void *ctx), void *ctx)
{
    for (coil__chunk *c = p->chunks; c; c = c->next) {
        /* The newest chunk is carved up to `bump`; older ones entirely. */
        unsigned char *end = c == p->chunks ? p->bump : c->mem + c->count * p->objsize;
        for (unsigned char *o = c->mem; o < end; o += p->objsize)
            if (o[sizeof(void *)] != 0xff)
                fn(o, ctx);
    }
}
