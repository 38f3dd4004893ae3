/* coil shards: the inbox, what every layer of shards/ above the rings builds on. Private to
 * the library.
 *
 * The layers, each calling only the ones below it:
 *
 *   mpsc.c, lane.c       the rings: many producers into one, and a thread's own lane
 *   fence.c              the asymmetric fence (membarrier)
 *   inbox.c              a loop's inbox: messages in, the sleep/wake handshake, the close
 *   threadsafe.c         call_soon_threadsafe, run_coroutine_threadsafe, concurrent futures
 *   executor.c           thread-pool executors, to_thread
 *   runtime.c, submit.c  the runtime's shards and the calls between them (runtime.h)
 *
 * A layer above the inbox keeps its per-loop state in a record it hangs on the inbox under a
 * key of its own (coil__inbox_ext), which also says what the loop's close does with it.
 *
 * Every loop that talks to other threads has one inbox: a bounded MPSC ring of {fn, a, b}
 * messages that other loops post into, a single-producer lane for each other thread that posts
 * to it (lane.h), both drained every iteration, and the sleep/wake handshake that lets a
 * producer wake the loop only when it is really blocked in its driver's poll:
 *
 *   loop (before blocking):  exchange(asleep, 1); if anything is queued: asleep = 0, don't block
 *   producer (after a push): if exchange(asleep, 0) == 1: send wake-up
 *
 * Both are acq_rel read-modify-writes of one variable, so one reads the other's write: either
 * the loop sees the message or the producer sees the flag, and no wake-up is lost (the same
 * guarantee as a seq_cst fence on each side, in a form ThreadSanitizer can check). Only the
 * producer that reads 1 pays the syscall, and a busy loop (asleep == 0) costs producers the push
 * and one uncontended exchange. A loop flooded by other threads goes further (`asym`, see
 * inbox.c): it fences for all of them with membarrier(2) before it sleeps, and producers only
 * read the flag. The wake-up is the driver's (coil__backend_wake): it runs a static completion
 * record on the loop's thread, sent from another loop (batched with its other submissions) or
 * from the foreign thread itself, and nothing has to stay in flight on the loop's driver
 * (run_until_complete's "nothing can wake me" test still works).
 */
#ifndef COIL_SHARDS_SHARDS_H
#define COIL_SHARDS_SHARDS_H

#include <limits.h>
#include <linux/futex.h>
#include <stdatomic.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"
#include "observe/stats.h"
#include "lane.h"
#include "mpsc.h"

/* ---- waiting between threads: a spin hint and the two futex calls both files use ---- */

static inline void coil__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

static inline void coil__futex_wake_all(_Atomic uint32_t *addr)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAKE_PRIVATE, INT_MAX, NULL, NULL, 0);
}

/* Sleep while *addr == val, at most *timeout (NULL: no limit). */
static inline void coil__futex_wait(_Atomic uint32_t *addr, uint32_t val, const struct timespec *timeout)
{
    syscall(SYS_futex, (uint32_t *)addr, FUTEX_WAIT_PRIVATE, val, timeout, NULL, 0);
}

typedef struct coil__ovf coil__ovf;

/* A circular doubly-linked list link; a list is a link that points at itself when empty. */
typedef struct coil__ilink {
    struct coil__ilink *next, *prev;
} coil__ilink;

static inline void coil__ilink_init(coil__ilink *l) { l->next = l->prev = l; }
static inline void coil__ilink_insert(coil__ilink *head, coil__ilink *l)
{
    l->next = head->next;
    l->prev = head;
    head->next->prev = l;
    head->next = l;
}
/* Safe on a link already removed (or never inserted, if zeroed). */
static inline void coil__ilink_remove(coil__ilink *l)
{
    if (l->next) {
        l->next->prev = l->prev;
        l->prev->next = l->next;
        l->next = l->prev = NULL;
    }
}
typedef struct coil__inbox_ext coil__inbox_ext;

typedef struct coil__inbox {
    coil__loop_closer closer;     /* the loop's way in from outside (coil__loop_set_outside) */
    coil__loop_source src;
    coil_loop *loop;
    coil__mpsc *ring;             /* what loops (and threads without a lane here) post through */
    coil__wake_addr wake;         /* how other threads wake the loop (coil__backend_wake) */
    uint64_t id;                  /* unique for the process's life (lane.c) */
    _Atomic(struct coil__lane *) lanes; /* other threads' own lanes (lane.h); pushed by them */
    _Atomic int asym;             /* the loop fences for producers before it sleeps (inbox.c) */

    /* Shared with producers, each on its own line: producers exchange `asleep` after every push,
     * and the loop touches it only around a sleep, so while the loop is busy the line stays in
     * the producer's cache. */
    _Alignas(64) _Atomic int asleep; /* 1: the loop may be blocked; whoever clears it wakes it */
    _Atomic uint64_t wakes_sent;  /* by producers that cleared it (on the line they just wrote) */
    _Atomic int waker_cpu;        /* the CPU the last of them ran on: one that shares the loop's
                                   * CPU cannot post while the loop spins (inbox.c) */
    _Atomic uint64_t wake_sent_ns; /* when it sent the wake-up: the message's arrival, which a
                                   * busy CPU may take far longer to hand the loop (inbox.c) */
    _Alignas(64) _Atomic uint32_t space_seq; /* bumped (and futex-woken) after a drain when producers wait */
    _Atomic uint32_t space_waiters;
    /* The struct outlives the loop's close while other loops' overflow lists still name it: one
     * reference for the loop, one per such message. `dead` (set at close) tells their flush. */
    _Atomic uint32_t refs;
    _Atomic bool dead;

    /* loop thread only */
    _Alignas(64) bool registered; /* source and closer hooked into the loop */
    bool may_sleep;               /* we set `asleep` and have not cleared it since */
    bool look_now;                /* the loop would have blocked but for messages: drain unpaced */
    bool closing;                 /* the loop is closing: it will never run a task again */
    unsigned expect;              /* outside completions this loop waits for (keeps it wakeable) */
    uint64_t drained;             /* messages run so far: shutdown's "still busy?" test, which must
                                   * not depend on counters that COIL_STATS=OFF compiles out */
    unsigned spin_ns;             /* poll the inbox at most this long before going to sleep */
    unsigned spin_budget_ns;      /* ...and this long now: learnt from the last sleeps (inbox.c) */
    unsigned spin_cooldown;       /* sleeps to go without spinning after a spin hurt */
    uint64_t idle_t0;             /* when the loop last ran out of work and began to spin or sleep */
    unsigned lane_msgs;           /* messages from lanes since the loop last went to sleep */
    unsigned asym_after;          /* ...that switch `asym` on (ASYM_AFTER; tests lower it) */
    uint64_t lane_pace_ns;        /* a lane's stream, once run dry, waits this long for a look */
    uint64_t asym_fences;         /* membarriers run before a sleep */
    coil__ovf *ovf_head, **ovf_tail; /* messages this loop sent that did not fit their target */
    coil__inbox_ext *exts;        /* the layers' records, oldest first (coil__inbox_ext_add) */
} coil__inbox;

/* ---- the layers above: per-loop records ---- */

typedef struct coil__inbox_ext_ops {
    /* The loop is closing and will never run a task again: let go, without waiting, of what only
     * its tasks could finish (settle what other threads wait on, take back waits). NULL:
     * nothing. Every record's `closing` runs, oldest first, before any record's `close`, so no
     * layer waits for work that another layer's abandoned task would have done. */
    void (*closing)(coil__inbox *ib, coil__inbox_ext *self);
    /* Then, oldest first: wait for this layer's work in flight (coil__inbox_wait keeps the inbox
     * running messages meanwhile) and free the record. NULL: nothing to wait for, and the
     * record belongs to someone else. */
    void (*close)(coil__inbox *ib, coil__inbox_ext *self);
} coil__inbox_ext_ops;

/* The head of a layer's record. `ops` is also the key that finds it: one per layer. */
struct coil__inbox_ext {
    coil__inbox_ext *next;
    const coil__inbox_ext_ops *ops;
};

/* The record hung on ib under key, or NULL. Loop thread. */
static inline coil__inbox_ext *coil__inbox_ext_find(const coil__inbox *ib, const coil__inbox_ext_ops *key)
{
    coil__inbox_ext *e = ib->exts;
    while (e && e->ops != key)
        e = e->next;
    return e;
}

/* Hang e (e->ops set, no record under that key yet) on ib; the loop's close runs its ops. Not
 * once the inbox is closing (ib->closing): the close would miss it. Loop thread. */
void coil__inbox_ext_add(coil__inbox *ib, coil__inbox_ext *e);

/* ---- the inbox ---- */

/* The inbox of `loop`, created on first use. Any thread; the loop needs not be running. NULL on
 * -ENOMEM. Created from a foreign thread, it is hooked into the loop when the loop first sees a
 * wake-up, which such an inbox always sends. */
coil__inbox *coil__inbox_of(coil_loop *loop);
/* The inbox of `loop` if it has one, else NULL (none is created). Any thread. */
static inline coil__inbox *coil__inbox_find(const coil_loop *loop)
{
    coil__loop_closer *c = coil__loop_outside(loop);
    return c ? coil__container_of(c, coil__inbox, closer) : NULL;
}
/* The inbox of the loop running on this thread, created if need be; NULL outside a loop. */
coil__inbox *coil__inbox_here(void);

/* Post fn(a, b) to run on the inbox's loop. Any thread. From a loop's thread a full ring never
 * blocks: the message waits in that loop's overflow list, flushed every iteration (so two loops
 * sending to each other cannot deadlock). From a foreign thread a full ring makes the caller
 * wait (spin, yield, then futex) until the loop drains. Returns 0 or -ENOMEM. */
int coil__inbox_post(coil__inbox *ib, void (*fn)(void *, void *), void *a, void *b);
/* As coil__inbox_post, but -EAGAIN instead of waiting or overflowing when the ring is full. */
int coil__inbox_try_post(coil__inbox *ib, void (*fn)(void *, void *), void *a, void *b);
/* An outside completion is (no longer) expected: keeps run_until_complete from giving up. */
void coil__inbox_expect(coil__inbox *ib, int delta);
/* Poll the loop's ring for up to timeout_ns waiting for messages (loop thread, loop not running
 * a task: used while closing). */
void coil__inbox_wait(coil__inbox *ib, uint64_t timeout_ns);

#endif
