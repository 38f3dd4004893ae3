/* coil core: asyncio.Queue, LifoQueue and PriorityQueue (3.13+, shutdown included).
 *
 * Storage: a power-of-two ring for FIFO, an array stack for LIFO, a binary heap of
 * (item, insertion sequence) for priority, so equal priorities come out in insertion order.
 * It grows on demand and is kept, so steady state allocates nothing.
 *
 * As in asyncio a woken getter takes its item when it runs, not when it is woken: the item stays
 * in the queue, so a getter cancelled in between loses nothing. Likewise a putter woken for a
 * free slot inserts only once it runs. The hot path when the queue has room or items never
 * switches: a producer runs until the queue is full, then the consumer drains it. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

enum { Q_FIFO, Q_LIFO, Q_PRIO };

typedef struct qent {
    void *item;
    uint64_t seq;
} qent;

struct coil_queue {
    size_t count;
    size_t head;      /* FIFO: index of the oldest item */
    size_t cap;       /* slots allocated (a power of two for FIFO) */
    long maxsize;
    union {
        void **buf;   /* FIFO ring, LIFO stack */
        qent *heap;   /* priority */
    };
    coil__wlist getters, putters, joiners;
    size_t unfinished;
    uint64_t seq;
    coil_loop *loop;
    coil_queue_opts opts;
    unsigned busy;    /* tasks inside put/get/join */
    uint8_t kind;
    bool shutdown;
};

static const coil__wait_ops get_wait = { "queue get", coil__wlist_wait_cancel, true, NULL };
static const coil__wait_ops put_wait = { "queue put", coil__wlist_wait_cancel, true, NULL };
static const coil__wait_ops join_wait = { "queue join", coil__wlist_wait_cancel, true, NULL };

static inline bool is_full(const coil_queue *q) { return q->maxsize > 0 && q->count >= (size_t)q->maxsize; }

static void wake_next(coil__wlist *l)
{
    coil__wnode *n = coil__wlist_pop(l);
    if (n)
        n->wake(n, 0);
}

/* ---- storage ---- */

static int grow(coil_queue *q)
{
    size_t ncap = q->cap ? q->cap * 2 : 16;
    if (q->kind == Q_PRIO) {
        qent *h = realloc(q->heap, ncap * sizeof *h);
        if (!h)
            return -ENOMEM;
        q->heap = h;
    } else {
        void **b = malloc(ncap * sizeof *b);
        if (!b)
            return -ENOMEM;
        if (q->kind == Q_FIFO) {
            for (size_t i = 0; i < q->count; i++)
                b[i] = q->buf[(q->head + i) & (q->cap - 1)];
            q->head = 0;
        } else if (q->count) {
            memcpy(b, q->buf, q->count * sizeof *b);
        }
        free(q->buf);
        q->buf = b;
    }
    q->cap = ncap;
    return 0;
}

static inline bool before(const coil_queue *q, const qent *a, const qent *b)
{
    int c = q->opts.compare(a->item, b->item, q->opts.ctx);
    return c < 0 || (c == 0 && a->seq < b->seq);
}

static void heap_push(coil_queue *q, void *item)
{
    qent e = { item, q->seq++ };
    size_t i = q->count;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!before(q, &e, &q->heap[p]))
            break;
        q->heap[i] = q->heap[p];
        i = p;
    }
    q->heap[i] = e;
}

static void *heap_pop(coil_queue *q)
{
    void *top = q->heap[0].item;
    size_t n = q->count - 1; /* count not yet decremented */
    qent last = q->heap[n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && before(q, &q->heap[c + 1], &q->heap[c]))
            c++;
        if (!before(q, &q->heap[c], &last))
            break;
        q->heap[i] = q->heap[c];
        i = c;
    }
    if (n)
        q->heap[i] = last;
    return top;
}

static inline int push(coil_queue *q, void *item)
{
    if (COIL_UNLIKELY(q->count == q->cap)) {
        int r = grow(q);
        if (r)
            return r;
    }
    switch (q->kind) {
    case Q_FIFO:
        q->buf[(q->head + q->count) & (q->cap - 1)] = item;
        break;
    case Q_LIFO:
        q->buf[q->count] = item;
        break;
    default:
        heap_push(q, item);
        break;
    }
    q->count++;
    return 0;
}

static inline void *pop(coil_queue *q)
{
    void *item;
    switch (q->kind) {
    case Q_FIFO:
        item = q->buf[q->head];
        q->head = (q->head + 1) & (q->cap - 1);
        break;
    case Q_LIFO:
        item = q->buf[q->count - 1];
        break;
    default:
        item = heap_pop(q);
        break;
    }
    q->count--;
    return item;
}

/* ---- lifetime ---- */

static int queue_new(coil_queue **out, const coil_queue_opts *opts, int kind)
{
    if (!out || (kind == Q_PRIO && (!opts || !opts->compare)))
        return -EINVAL;
    coil_queue *q = calloc(1, sizeof *q);
    if (!q)
        return -ENOMEM;
    if (opts)
        q->opts = *opts;
    q->maxsize = q->opts.maxsize > 0 ? q->opts.maxsize : 0;
    q->kind = (uint8_t)kind;
    q->loop = coil_get_event_loop();
    *out = q;
    return 0;
}

int coil_queue_new(coil_queue **out, const coil_queue_opts *opts) { return queue_new(out, opts, Q_FIFO); }
int coil_lifo_queue_new(coil_queue **out, const coil_queue_opts *opts) { return queue_new(out, opts, Q_LIFO); }
int coil_priority_queue_new(coil_queue **out, const coil_queue_opts *opts) { return queue_new(out, opts, Q_PRIO); }

static void drop_all(coil_queue *q, bool count_done)
{
    while (q->count) {
        void *item = pop(q);
        if (q->opts.drop)
            q->opts.drop(item, q->opts.ctx);
        if (count_done && q->unfinished > 0)
            q->unfinished--;
    }
}

int coil_queue_free(coil_queue *q)
{
    if (!q)
        return 0;
    if (q->busy)
        return -EBUSY;
    drop_all(q, false);
    free(q->kind == Q_PRIO ? (void *)q->heap : (void *)q->buf);
    free(q);
    return 0;
}

/* ---- waiting ---- */

/* Suspend the running task on `l` (at the head when it already waited once and lost its item or
 * slot to a caller that did not wait, so it keeps its place). */
static int queue_wait(coil_queue *q, coil__wlist *l, const coil__wait_ops *ops, bool again, bool *woken)
{
    coil_loop *loop = coil__tls_running;
    if (!loop || !loop->current)
        return COIL_ENOTASK;
    if (!q->loop)
        q->loop = loop;
    else if (q->loop != loop)
        return COIL_EWRONGLOOP;
    coil_task *t = loop->current;
    int r = coil__task_check_cancel(t);
    if (r)
        return r;
    q->busy++;
    r = coil__wlist_wait(t, l, ops, again);
    q->busy--;
    *woken = t->wake_result == 0;
    return r;
}

int coil_queue_put_nowait(coil_queue *q, void *item)
{
    if (!q)
        return -EINVAL;
    if (coil__foreign_thread(q->loop, "coil_queue_put_nowait"))
        return COIL_EWRONGLOOP;
    if (COIL_UNLIKELY(q->shutdown))
        return COIL_EQUEUESHUTDOWN;
    if (is_full(q))
        return COIL_EQUEUEFULL;
    int r = push(q, item);
    if (COIL_UNLIKELY(r))
        return r;
    q->unfinished++;
    if (!coil__wlist_empty(&q->getters))
        wake_next(&q->getters);
    return 0;
}

int coil_queue_put(coil_queue *q, void *item)
{
    if (!q)
        return -EINVAL;
    bool again = false;
    while (is_full(q)) {
        if (q->shutdown)
            return COIL_EQUEUESHUTDOWN;
        bool woken = false;
        int r = queue_wait(q, &q->putters, &put_wait, again, &woken);
        if (r) {
            /* Woken for a slot we will not use: the next putter may. */
            if (woken && !is_full(q))
                wake_next(&q->putters);
            return r;
        }
        again = true;
    }
    return coil_queue_put_nowait(q, item);
}

int coil_queue_get_nowait(coil_queue *q, void **item)
{
    if (!q)
        return -EINVAL;
    if (coil__foreign_thread(q->loop, "coil_queue_get_nowait"))
        return COIL_EWRONGLOOP;
    if (COIL_UNLIKELY(q->count == 0))
        return q->shutdown ? COIL_EQUEUESHUTDOWN : COIL_EQUEUEEMPTY;
    void *it = pop(q);
    if (!coil__wlist_empty(&q->putters))
        wake_next(&q->putters);
    if (item)
        *item = it;
    return 0;
}

int coil_queue_get(coil_queue *q, void **item)
{
    if (!q)
        return -EINVAL;
    bool again = false;
    while (q->count == 0) {
        if (q->shutdown)
            return COIL_EQUEUESHUTDOWN;
        bool woken = false;
        int r = queue_wait(q, &q->getters, &get_wait, again, &woken);
        if (r) {
            /* Woken for an item we will not take: it stays queued for the next getter. */
            if (woken && q->count)
                wake_next(&q->getters);
            return r;
        }
        again = true;
    }
    return coil_queue_get_nowait(q, item);
}

/* ---- join and shutdown ---- */

int coil_queue_task_done(coil_queue *q)
{
    if (!q)
        return -EINVAL;
    if (coil__foreign_thread(q->loop, "coil_queue_task_done"))
        return COIL_EWRONGLOOP;
    if (q->unfinished == 0)
        return -EINVAL;
    if (--q->unfinished == 0)
        coil__wlist_wake_all(&q->joiners, 0);
    return 0;
}

int coil_queue_join(coil_queue *q)
{
    if (!q)
        return -EINVAL;
    if (q->unfinished == 0)
        return 0;
    bool woken;
    return queue_wait(q, &q->joiners, &join_wait, false, &woken);
}

void coil_queue_shutdown(coil_queue *q, bool immediate)
{
    if (!q || coil__foreign_thread(q->loop, "coil_queue_shutdown"))
        return;
    q->shutdown = true;
    if (immediate) {
        drop_all(q, true);
        if (q->unfinished == 0)
            coil__wlist_wake_all(&q->joiners, 0);
    }
    coil__wlist_wake_all(&q->getters, 0);
    coil__wlist_wake_all(&q->putters, 0);
}

size_t coil_queue_qsize(const coil_queue *q) { return q ? q->count : 0; }
bool coil_queue_empty(const coil_queue *q) { return !q || q->count == 0; }
bool coil_queue_full(const coil_queue *q) { return q && is_full(q); }
long coil_queue_maxsize(const coil_queue *q) { return q ? q->maxsize : 0; }
