/* coil shards: a thread's own lane into a loop's inbox (see lane.h).
 *
 * Memory ordering, as in any single-producer ring: the producer stores the message, then
 * release-stores tail; the loop acquire-loads tail, then reads the message. The loop reads the
 * messages, then release-stores head; the producer acquire-loads head before it reuses a slot. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "engine/internal.h"
#include "lane.h"

enum { PREFETCH_SLOTS = 16 };

/* ---- the ring ---- */

int coil__lane_push(coil__lane *l, void (*fn)(void *, void *), void *a, void *b)
{
    uint64_t t = atomic_load_explicit(&l->tail, memory_order_relaxed);
    if (t - l->head_seen > l->mask) {
        l->head_seen = atomic_load_explicit(&l->head, memory_order_acquire);
        if (t - l->head_seen > l->mask)
            return -EAGAIN;
    }
    /* The loop read these lines a lap ago: ask for them ahead, in a state we may write. */
    coil__prefetch_write(&l->slots[(t + PREFETCH_SLOTS) & l->mask]);
    l->slots[t & l->mask] = (coil__msg){ fn, a, b };
    atomic_store_explicit(&l->tail, t + 1, memory_order_release);
    return 0;
}

uint32_t coil__lane_pop_batch(coil__lane *l, coil__msg *out, uint32_t max, uint64_t pace_ns)
{
    uint64_t h = atomic_load_explicit(&l->head, memory_order_relaxed);
    /* Read the producer's line only when our last look is used up. */
    if (h == l->tail_seen) {
        if (pace_ns && l->streaming) {
            /* A stream's batch has run out: look again pace_ns from now. */
            uint64_t now = coil__now_ns();
            if (!l->look_after) {
                l->look_after = now + pace_ns;
                return 0;
            }
            if (now < l->look_after)
                return 0;
        }
        l->look_after = 0;
        l->tail_seen = atomic_load_explicit(&l->tail, memory_order_acquire);
        l->streaming = l->tail_seen - h > 1; /* one message is a request, more are a stream */
        if (h == l->tail_seen)
            return 0;
    }
    uint64_t n = l->tail_seen - h;
    if (n > max)
        n = max;
    for (uint64_t i = 0; i < n; i++)
        out[i] = l->slots[(h + i) & l->mask];
    atomic_store_explicit(&l->head, h + n, memory_order_release);
    return (uint32_t)n;
}

bool coil__lane_empty(const coil__lane *l)
{
    return atomic_load_explicit(&l->head, memory_order_relaxed) ==
           atomic_load_explicit(&l->tail, memory_order_relaxed);
}

void coil__lane_unref(coil__lane *l)
{
    if (atomic_fetch_sub_explicit(&l->refs, 1, memory_order_acq_rel) == 1)
        free(l);
}

static coil__lane *lane_new(void)
{
    size_t size = sizeof(coil__lane) + COIL__LANE_CAPACITY * sizeof(coil__msg);
    coil__lane *l = aligned_alloc(64, (size + 63) & ~(size_t)63);
    if (!l)
        return NULL;
    atomic_init(&l->tail, 0);
    l->head_seen = 0;
    atomic_init(&l->head, 0);
    l->tail_seen = 0;
    l->look_after = 0;
    l->streaming = false;
    l->next = NULL;
    atomic_init(&l->refs, 2);
    atomic_init(&l->closed, false);
    atomic_init(&l->orphaned, false);
    l->mask = COIL__LANE_CAPACITY - 1;
    return l;
}

/* ---- this thread's lanes ---- */

struct lane_entry {
    const void *to;
    uint64_t to_id; /* a receiver at a reused address is another receiver */
    coil__lane *lane;
};

static COIL__TLS struct lane_entry tls_lanes[COIL__LANES_PER_THREAD];
static COIL__TLS unsigned tls_nlanes;
/* This thread has sent some inbox a message through the ring: from now on every inbox it has
 * no lane into gets the ring, so no later lane can overtake a message still in a ring. */
static COIL__TLS bool tls_ring_only;
static pthread_key_t lane_key;
static pthread_once_t lane_once = PTHREAD_ONCE_INIT;

static void forget(unsigned i)
{
    coil__lane_unref(tls_lanes[i].lane);
    tls_lanes[i] = tls_lanes[--tls_nlanes];
}

/* Thread exit: the loops drain what we sent, then free the lanes. */
static void lanes_thread_exit(void *unused)
{
    (void)unused;
    while (tls_nlanes) {
        atomic_store_explicit(&tls_lanes[tls_nlanes - 1].lane->closed, true, memory_order_release);
        forget(tls_nlanes - 1);
    }
}

static void lane_key_init(void) { pthread_key_create(&lane_key, lanes_thread_exit); }

coil__lane *coil__lane_for(const void *to, uint64_t to_id, _Atomic(coil__lane *) *lanes)
{
    for (unsigned i = 0; i < tls_nlanes; i++)
        if (tls_lanes[i].to == to) {
            if (COIL_LIKELY(tls_lanes[i].to_id == to_id))
                return tls_lanes[i].lane;
            forget(i); /* that loop closed long ago */
            break;
        }
    if (coil__tls_running || tls_ring_only) {
        tls_ring_only = true;
        return NULL;
    }
    if (tls_nlanes == COIL__LANES_PER_THREAD)
        for (unsigned i = tls_nlanes; i-- > 0;)
            if (atomic_load_explicit(&tls_lanes[i].lane->orphaned, memory_order_acquire))
                forget(i);
    coil__lane *l = tls_nlanes < COIL__LANES_PER_THREAD ? lane_new() : NULL;
    if (!l) {
        tls_ring_only = true;
        return NULL;
    }
    pthread_once(&lane_once, lane_key_init);
    pthread_setspecific(lane_key, l); /* any non-NULL value: it makes the destructor run */
    /* Publish: the release orders the lane's initialisation before the loop's first look. */
    coil__lane *head = atomic_load_explicit(lanes, memory_order_relaxed);
    do
        l->next = head;
    while (!atomic_compare_exchange_weak_explicit(lanes, &head, l, memory_order_release,
                                                  memory_order_relaxed));
    tls_lanes[tls_nlanes++] = (struct lane_entry){ to, to_id, l };
    return l;
}
