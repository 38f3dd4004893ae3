/* coil core: the 4-ary timer heap (see timer.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "timer.h"

/* Logical slot k lives at e[k + PAD]: the four children of k (4k+1 .. 4k+4) then sit at
 * e[4k+4 .. 4k+7], one 64-byte line when e is 64-byte aligned, so each level of a sift
 * touches one line. */
enum { PAD = 3 };
#define AT(h, k) ((h)->e[(k) + PAD])

static inline bool before(const coil__heapent *a, const coil__heapent *b)
{
    if (a->when != b->when)
        return a->when < b->when;
    return (int32_t)(a->t->seq - b->t->seq) < 0;
}

static inline void place(coil__timerheap *h, uint32_t i, coil__heapent ent)
{
    AT(h, i) = ent;
    ent.t->idx = i + 1;
}

static void sift_up(coil__timerheap *h, uint32_t i, coil__heapent ent)
{
    while (i > 0) {
        uint32_t parent = (i - 1) / 4;
        if (!before(&ent, &AT(h, parent)))
            break;
        place(h, i, AT(h, parent));
        i = parent;
    }
    place(h, i, ent);
}

static void sift_down(coil__timerheap *h, uint32_t i, coil__heapent ent)
{
    for (;;) {
        uint32_t first = 4 * i + 1;
        if (first >= h->n)
            break;
        uint32_t last = first + 4 < h->n ? first + 4 : h->n;
        uint32_t best = first;
        for (uint32_t c = first + 1; c < last; c++)
            if (before(&AT(h, c), &AT(h, best)))
                best = c;
        if (!before(&AT(h, best), &ent))
            break;
        place(h, i, AT(h, best));
        i = best;
    }
    place(h, i, ent);
}

void coil__timers_init(coil__timerheap *h)
{
    h->e = NULL;
    h->n = h->cap = 0;
    h->seq = 0;
}

void coil__timers_free(coil__timerheap *h)
{
    free(h->e);
    coil__timers_init(h);
}

int coil__timers_add(coil__timerheap *h, coil__timer *t, uint64_t when)
{
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        coil__heapent *e = aligned_alloc(64, ((size_t)cap + 4) * sizeof *e);
        if (!e)
            return -ENOMEM;
        if (h->e)
            memcpy(e + PAD, h->e + PAD, (size_t)h->n * sizeof *e);
        free(h->e);
        h->e = e;
        h->cap = cap;
    }
    t->seq = h->seq++;
    sift_up(h, h->n++, (coil__heapent){ when, t });
    return 0;
}

static void remove_at(coil__timerheap *h, uint32_t i)
{
    AT(h, i).t->idx = 0;
    coil__heapent last = AT(h, --h->n);
    if (i == h->n)
        return;
    if (i > 0 && before(&last, &AT(h, (i - 1) / 4)))
        sift_up(h, i, last);
    else
        sift_down(h, i, last);
}

void coil__timers_remove(coil__timerheap *h, coil__timer *t)
{
    if (t->idx)
        remove_at(h, t->idx - 1);
}

coil__timer *coil__timers_pop_due(coil__timerheap *h, uint64_t now)
{
    if (h->n == 0 || AT(h, 0).when > now)
        return NULL;
    coil__timer *t = AT(h, 0).t;
    remove_at(h, 0);
    return t;
}
