/* coil core: waking an epoll loop from another thread. The loop's eventfd and the records it
 * carries live in a reference-counted box, since a wake address outlives the loop: a late
 * producer's write then lands in an eventfd nobody reads, never in a reused fd number. */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend/epoll/state.h"

void coil__ep_wakebox_unref(wakebox *b)
{
    if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) {
        close(b->efd);
        free(b);
    }
}

/* ---- waking from another thread ---- */

void coil__ep_wake_reap(coil_loop *loop)
{
    wakebox *b = loop->io.drv->box;
    /* Looked at on every poll: a plain load first, the locked exchange only when there is news. */
    if (!atomic_load_explicit(&b->any, memory_order_relaxed) ||
        !atomic_exchange_explicit(&b->any, false, memory_order_acq_rel))
        return;
    for (int i = 0; i < WAKE_SLOTS; i++) {
        int how = atomic_exchange_explicit(&b->slot[i].how, 0, memory_order_acq_rel);
        coil__io_cb *rec = atomic_load_explicit(&b->slot[i].rec, memory_order_acquire);
        for (int bit = COIL__WAKE_FROM_LOOP; rec && bit <= COIL__WAKE_FROM_THREAD; bit <<= 1)
            if (how & bit) {
                coil__io_done dn = { bit, false, NULL };
                rec->complete(rec, &dn);
            }
    }
}

coil__wake_addr coil__ep_wake_addr(coil_loop *loop)
{
    wakebox *b = loop->io.drv->box;
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    coil__wake_addr a = { &coil__epoll_ops, b->efd, b };
    return a;
}

void coil__ep_wake_drop(coil__wake_addr addr) { coil__ep_wakebox_unref(addr.obj); }

int coil__ep_wake(coil_loop *from, coil__wake_addr to, coil__io_cb *rec)
{
    wakebox *b = to.obj;
    int how = from ? COIL__WAKE_FROM_LOOP : COIL__WAKE_FROM_THREAD;
    for (int i = 0; i < WAKE_SLOTS; i++) {
        coil__io_cb *cur = atomic_load_explicit(&b->slot[i].rec, memory_order_acquire);
        if (!cur && atomic_compare_exchange_strong_explicit(&b->slot[i].rec, &cur, rec, memory_order_acq_rel,
                                                            memory_order_acquire))
            cur = rec;
        if (cur != rec)
            continue;
        atomic_fetch_or_explicit(&b->slot[i].how, how, memory_order_release);
        atomic_store_explicit(&b->any, true, memory_order_release);
        uint64_t one = 1;
        /* EAGAIN means the counter is saturated: the loop has a wake-up to read already. */
        (void)!write(b->efd, &one, sizeof one);
        return how;
    }
    return -ENOSPC;
}
