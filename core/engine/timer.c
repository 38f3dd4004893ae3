/* coil core: the timer queue: a FIFO run in front of a 4-ary heap (see timer.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "mem/hugemem.h"
#include "engine/timer.h"

/* Logical slot k lives at e[k + PAD]: the four children of k (4k+1 .. 4k+4) then sit at
 * e[4k+4 .. 4k+7], one 64-byte line when e is 64-byte aligned, so each level of a sift
 * touches one line. */
enum { PAD = COIL__TIMER_PAD };
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

static size_t heap_bytes(uint32_t cap) { return ((size_t)cap + 4) * sizeof(coil__heapent); }

void coil__timers_init(coil__timerheap *h) { memset(h, 0, sizeof *h); }

void coil__timers_free(coil__timerheap *h)
{
    coil__huge_free(h->e, heap_bytes(h->cap));
    coil__huge_free(h->run, (size_t)h->run_cap * sizeof *h->run);
    coil__timers_init(h);
}

/* ---- the FIFO run ---- */

enum { RUN_MIN = 64 };

static inline coil__heapent *run_at(const coil__timerheap *h, uint32_t pos) { return &h->run[pos & (h->run_cap - 1)]; }

/* Move the run into a fresh array of `cap` slots. Growing keeps every position (they are
 * absolute, so no timer is touched); compacting drops the cancelled slots and renumbers the live
 * timers from 0, so a run of mostly cancelled timeouts costs memory for its live ones only and
 * positions never run out. */
static int run_move(coil__timerheap *h, uint32_t cap, bool compact)
{
    coil__heapent *r = coil__huge_alloc((size_t)cap * sizeof *r);
    if (!r)
        return -ENOMEM;
    uint32_t k = 0;
    for (uint32_t pos = h->run_head; pos != h->run_tail; pos++) {
        coil__heapent ent = *run_at(h, pos);
        if (!compact) {
            r[pos & (cap - 1)] = ent;
        } else if (ent.t) {
            ent.t->idx = COIL__TIMER_IN_RUN | k;
            r[k++] = ent;
        }
    }
    coil__huge_free(h->run, (size_t)h->run_cap * sizeof *r);
    h->run = r;
    h->run_cap = cap;
    if (compact) {
        h->run_head = 0;
        h->run_tail = k;
    }
    return 0;
}

static int run_append(coil__timerheap *h, coil__timer *t, uint64_t when)
{
    /* Full: grow if over half the slots are live, else reclaim the cancelled ones. */
    if (h->run_tail - h->run_head == h->run_cap) {
        bool grow = h->run_live >= h->run_cap / 2;
        if (run_move(h, grow ? (h->run_cap ? h->run_cap * 2 : RUN_MIN) : h->run_cap, !grow) != 0)
            return -ENOMEM;
    }
    if (h->run_tail == COIL__TIMER_IN_RUN - 1 && run_move(h, h->run_cap, true) != 0)
        return -ENOMEM;
    *run_at(h, h->run_tail) = (coil__heapent){ when, t };
    t->idx = COIL__TIMER_IN_RUN | h->run_tail;
    h->run_tail++;
    h->run_live++;
    h->run_last = when;
    return 0;
}

static void run_remove(coil__timerheap *h, uint32_t pos)
{
    coil__heapent *ent = run_at(h, pos);
    ent->t->idx = 0;
    ent->t = NULL;
    if (--h->run_live == 0) {
        h->run_head = h->run_tail = 0;
        return;
    }
    /* Keep the head live, so the earliest deadline is always at run_head. */
    if (pos == h->run_head)
        while (!run_at(h, ++h->run_head)->t)
            ;
}

/* ---- both ---- */

int coil__timers_add(coil__timerheap *h, coil__timer *t, uint64_t when)
{
    t->seq = h->seq++;
    if (h->run_live == 0 || when >= h->run_last)
        return run_append(h, t, when);
    if (h->n == h->cap) {
        uint32_t cap = h->cap ? h->cap * 2 : 64;
        coil__heapent *e = coil__huge_alloc(heap_bytes(cap));
        if (!e)
            return -ENOMEM;
        if (h->e)
            memcpy(e + PAD, h->e + PAD, (size_t)h->n * sizeof *e);
        coil__huge_free(h->e, heap_bytes(h->cap));
        h->e = e;
        h->cap = cap;
    }
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
    if (t->idx & COIL__TIMER_IN_RUN)
        run_remove(h, t->idx & ~COIL__TIMER_IN_RUN);
    else if (t->idx)
        remove_at(h, t->idx - 1);
}

/* The earliest of the two heads; NULL when nothing is armed. */
static inline const coil__heapent *first(const coil__timerheap *h)
{
    const coil__heapent *r = h->run_live ? run_at(h, h->run_head) : NULL;
    if (!h->n)
        return r;
    return r && before(r, &AT(h, 0)) ? r : &AT(h, 0);
}

coil__timer *coil__timers_pop_due(coil__timerheap *h, uint64_t now)
{
    const coil__heapent *ent = first(h);
    if (!ent || ent->when > now)
        return NULL;
    coil__timer *t = ent->t;
    if (h->n && ent == &AT(h, 0))
        remove_at(h, 0);
    else
        run_remove(h, h->run_head);
    return t;
}
