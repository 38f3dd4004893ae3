/* coil shards: a loop's inbox. The bounded MPSC ring other threads post {fn, a, b} messages
 * into, drained by the loop every iteration, and the sleep/wake handshake (see shards.h) that
 * wakes the loop through its driver (coil__backend_wake) only when it is really asleep. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fence.h"
#include "inbox_debug.h"
#include "shards.h"

enum { RING_CAPACITY = COIL__LANE_CAPACITY, DRAIN_BATCH = 64 };
/* The spin before a sleep: at most SPIN_MAX_NS (a runtime's spin_us overrides), and only as long as
 * spinning has paid off lately; SPIN_COOLDOWN sleeps without it after a spin that hurt. */
enum { SPIN_MAX_NS = 50 * 1000, SPIN_MIN_NS = 1000, SPIN_COOLDOWN = 64, SPIN_LOOK_NS = 200 };
/* Messages one iteration takes in. Each may start a task, and all of them run before the tasks
 * do: 512 tasks fit the loop's first task chunk and its cache, where a full ring's worth (4096,
 * 460 KB of tasks) made a flooded loop fault in a 2 MiB chunk and run its tasks from memory. */
enum { DRAIN_MAX = 512 };
/* Lane messages between two sleeps that make the loop fence for its producers (see asym). */
enum { ASYM_AFTER = 4096 };
/* When a lane's stream runs dry, a busy loop waits this long before it looks again (see
 * coil__lane_pop_batch). */
enum { LANE_PACE_NS = 500 };
/* How long a foreign producer that found the inbox full polls for room before it yields. */
enum { FULL_SPIN_NS = 20 * 1000 };

struct coil__ovf {
    coil__ovf *next;
    coil__inbox *to;
    coil__msg m;
};

/* ---- sending a wake-up ---- */

static void wake_complete(coil__io_cb *cb, const coil__io_done *done);

/* One static record for every wake-up: it is never freed (a late wake-up cannot point into a
 * closed inbox), and the loop finds its inbox as its way in from outside (coil__inbox_find),
 * whose acquire load also orders the inbox's initialisation by a foreign creator before the
 * loop's first look at it (the kernel orders it too, but ThreadSanitizer cannot see through the
 * driver's wake-up). */
static coil__io_cb wake_record = { .complete = wake_complete, .quiet = true };
/* The loop whose ring this thread polls while no loop is running: set while an inbox waits for
 * completions, and by inbox_close for the rest of coil_loop_close (its final reaping of the
 * ring may still meet a wake-up sent before the close). Outside those two, a ring is polled only
 * by a running loop, so a stale value is never read. */
static __thread coil_loop *tls_polling;

static void send_wake(coil__inbox *ib)
{
    if (COIL__FAULT(COIL__FAULT_DROP_WAKEUP))
        return; /* injected: the wake-up this producer owed is lost */
    coil_loop *me = coil__tls_running;
    if (me == ib->loop)
        me = NULL;
    /* From a loop, the wake-up rides along with its next submission (batched, no extra
     * syscall); from anywhere else it is sent now. */
    int r = coil__backend_wake(me, ib->wake, &wake_record);
    if (r == COIL__WAKE_FROM_LOOP)
        COIL__STAT_ADD(me, wakeups_sent, 1);
    else if (r < 0)
        /* Cannot happen short of ENOMEM; leave the flag set so the next producer tries again. */
        atomic_store_explicit(&ib->asleep, 1, memory_order_relaxed);
}

static void register_inbox(coil__inbox *ib);

/* The wake-up's CQE, on the loop's thread. The message itself is drained later this iteration. */
static void wake_complete(coil__io_cb *cb, const coil__io_done *done)
{
    (void)cb;
    coil_loop *loop = coil__tls_running ? coil__tls_running : tls_polling;
    if (!loop)
        return; /* a stray wake-up reaped while the loop closes: nothing to do */
    coil__inbox *ib = coil__inbox_find(loop);
    if (!ib)
        return;
    if (done->res == COIL__WAKE_FROM_LOOP)
        COIL__STAT_ADD(loop, wakeups_from_loops, 1);
    else
        COIL__STAT_ADD(loop, wakeups_from_threads, 1);
    if (!ib->registered)
        register_inbox(ib);
}

/* ---- the asymmetric handshake ----
 *
 * A producer's exchange of `asleep` is a locked instruction, which waits for all of the
 * producer's earlier stores to reach the cache: with a stream of submissions that is most of a
 * submission's cost. A loop that other threads flood (ASYM_AFTER lane messages without a sleep)
 * sets `asym`: from then on producers only read the flag (and exchange it only when they see 1),
 * and the loop, between setting the flag and its last look at the queues, runs
 * the asymmetric fence (fence.h), which puts a full barrier into every running thread of the
 * process. So a producer either pushed before its barrier (the loop sees the message) or reads
 * the flag after it (and sees 1): no wake-up is lost. The price, a system call that interrupts
 * every other running thread of ours (an IPI, dearer still on a VM), is paid only at a sleep,
 * and only by a flooded loop; one that received fewer since its last sleep drops back to the
 * exchange, fencing once more for producers still reading the old mode. */

/* ---- the loop side ---- */

static void ovf_flush(coil__inbox *self);

/* The loop's reference, or an overflow message's (see ovf_flush): the last frees the struct. */
static void inbox_unref(coil__inbox *ib)
{
    if (atomic_fetch_sub_explicit(&ib->refs, 1, memory_order_acq_rel) == 1) {
        coil__backend_wake_drop(ib->wake);
        free(ib);
    }
}

/* Producers that found no room (in the ring or their lane) sleep on space_seq: after a pop,
 * wake them. As in Dekker's algorithm, our pop (a store of a head) and a producer's "I wait"
 * each come before the other side's check, and both checks are read-modify-writes of
 * space_waiters: whichever comes second in its order sees the first, so either we see the
 * waiter or its retry sees the room. (A plain load here could pass our store of the head.) */
static void space_freed(coil__inbox *ib)
{
    if (atomic_fetch_add_explicit(&ib->space_waiters, 0, memory_order_acq_rel)) {
        atomic_fetch_add_explicit(&ib->space_seq, 1, memory_order_seq_cst);
        coil__futex_wake_all(&ib->space_seq);
    }
}

static unsigned run_batch(coil__inbox *ib, coil__msg *batch, unsigned n)
{
    if (n == DRAIN_BATCH)
        space_freed(ib); /* maybe full: let a waiting producer go on while we run these */
    /* A message's first argument is nearly always the object its callback updates, written
     * last by the sending core: fetch all of the batch's at once, not one miss per call. */
    for (unsigned i = 0; i < n; i++)
        coil__prefetch_write(batch[i].a);
    for (unsigned i = 0; i < n; i++)
        batch[i].fn(batch[i].a, batch[i].b);
    return n;
}

/* Take lane off the inbox's list (loop thread; producers only ever push at its head). */
static void unlink_lane(coil__inbox *ib, coil__lane *prev, coil__lane *lane)
{
    if (!prev) {
        coil__lane *head = lane;
        /* Acquire (C11 wants the success order at least as strong as the failure's): on failure
         * we follow the new head's links, which its producer set before its release CAS. */
        if (atomic_compare_exchange_strong_explicit(&ib->lanes, &head, lane->next, memory_order_acquire,
                                                    memory_order_acquire))
            return;
        for (prev = head; prev->next != lane; prev = prev->next)
            ;
    }
    prev->next = lane->next;
}

/* One pass: a batch from the ring and one from each lane, so no sender starves another. Lanes
 * whose thread has exited go once they are empty. */
static unsigned drain_pass(coil__inbox *ib, uint64_t pace_ns, bool *more)
{
    coil__msg batch[DRAIN_BATCH];
    unsigned n = coil__mpsc_pop_batch(ib->ring, batch, DRAIN_BATCH), total = run_batch(ib, batch, n);
    *more = n == DRAIN_BATCH;
    coil__lane *prev = NULL, *next;
    for (coil__lane *l = atomic_load_explicit(&ib->lanes, memory_order_acquire); l; l = next) {
        next = l->next;
        /* Acquire: its last messages are visible once we see it closed. */
        bool closed = atomic_load_explicit(&l->closed, memory_order_acquire);
        n = coil__lane_pop_batch(l, batch, DRAIN_BATCH, pace_ns);
        ib->lane_msgs += n;
        total += run_batch(ib, batch, n);
        *more |= n == DRAIN_BATCH;
        if (closed && coil__lane_empty(l)) {
            unlink_lane(ib, prev, l);
            coil__lane_unref(l);
        } else {
            prev = l;
        }
    }
    return total;
}

/* Run what is in the ring and the lanes now (loop thread). Returns how many messages ran.
 * pace_ns: see coil__lane_pop_batch. */
static unsigned drain(coil__inbox *ib, uint64_t pace_ns)
{
    unsigned total = 0, n;
    bool more;
    /* Bounded, so a flood from other threads cannot starve the loop's own ready work. */
    do {
        n = drain_pass(ib, pace_ns, &more);
        if (n)
            space_freed(ib);
        total += n;
    } while (more && total < DRAIN_MAX);
    if (total) {
        ib->drained += total;
        COIL__STAT_ADD(ib->loop, msgs_in, total);
        if (COIL_UNLIKELY(ib->lane_msgs >= ib->asym_after) && !atomic_load_explicit(&ib->asym, memory_order_relaxed) &&
            coil__fence_ready())
            atomic_store_explicit(&ib->asym, 1, memory_order_relaxed);
    }
    return total;
}

/* Nothing to drain right now (relaxed looks: the sleep handshake orders them). */
static bool inbox_empty(const coil__inbox *ib)
{
    if (!coil__mpsc_empty(ib->ring))
        return false;
    for (const coil__lane *l = atomic_load_explicit(&ib->lanes, memory_order_acquire); l; l = l->next)
        if (!coil__lane_empty(l))
            return false;
    return true;
}

static bool src_drain(coil_loop *loop, coil__loop_source *s)
{
    (void)loop;
    coil__inbox *ib = coil__container_of(s, coil__inbox, src);
    if (ib->ovf_head)
        ovf_flush(ib);
    /* Pacing keeps a busy loop off its producers' lines; a loop with nothing else to do takes
     * what has come at once. */
    uint64_t pace = ib->look_now ? 0 : ib->lane_pace_ns;
    ib->look_now = false;
    return drain(ib, pace) > 0;
}

/* The spin adapts to what followed it. It paid off when a message came while it ran, or would
 * have when a message ended the sleep within the cap: keep the budget with room above that wait.
 * A longer wait (or a sleep ended by anything else) means spinning is wasted here: halve the
 * budget, down to none. A wake-up sent from the loop's own CPU means the producer could not run
 * while the loop spun: the spin only delayed it, so the loop does not spin for a while. */
static void spin_paid(coil__inbox *ib, uint64_t waited_ns)
{
    uint64_t want = waited_ns + waited_ns / 2 + SPIN_MIN_NS;
    if (want > ib->spin_budget_ns)
        ib->spin_budget_ns = (unsigned)(want < ib->spin_ns ? want : ib->spin_ns);
}

static void spin_learn(coil__inbox *ib, uint64_t waited_ns, bool for_a_message)
{
    if (for_a_message && atomic_load_explicit(&ib->waker_cpu, memory_order_relaxed) == sched_getcpu()) {
        ib->spin_budget_ns = 0;
        ib->spin_cooldown = SPIN_COOLDOWN;
    } else if (ib->spin_cooldown) {
        ib->spin_cooldown--;
    } else if (for_a_message && waited_ns < ib->spin_ns) {
        spin_paid(ib, waited_ns);
    } else {
        ib->spin_budget_ns /= 2;
        if (ib->spin_budget_ns < SPIN_MIN_NS)
            ib->spin_budget_ns = 0;
    }
}

static bool src_before_block(coil_loop *loop, coil__loop_source *s)
{
    (void)loop;
    coil__inbox *ib = coil__container_of(s, coil__inbox, src);
    if (ib->ovf_head || !inbox_empty(ib))
        return ib->look_now = true;
    /* A message is often a few microseconds away: a short spin saves both sides a syscall, and
     * on a virtual machine the wake-up of an idle vCPU can cost tens of microseconds. */
    uint64_t t0 = ib->idle_t0 = ib->spin_ns ? coil__now_ns() : 0;
    if (ib->spin_budget_ns) {
        /* Each look takes a line from a producer that may be streaming into it (lane.h): look
         * every SPIN_LOOK_NS, not as fast as the CPU can. */
        uint64_t now = t0, look = t0;
        do {
            while ((now = coil__now_ns()) - look < SPIN_LOOK_NS)
                coil__cpu_relax();
            look = now;
            if (!inbox_empty(ib)) {
                spin_paid(ib, now - t0);
                return ib->look_now = true;
            }
        } while (now - t0 < ib->spin_budget_ns);
    }
    bool asym = atomic_load_explicit(&ib->asym, memory_order_relaxed);
    if (asym && ib->lane_msgs < ib->asym_after)
        atomic_store_explicit(&ib->asym, 0, memory_order_relaxed); /* the flood is over */
    ib->lane_msgs = 0;
    /* An RMW, not a store: producers exchange the flag after each push, so one of the two
     * exchanges reads the other's write (acquire/release): either we see the message below or
     * that producer sees 1 and wakes us. */
    atomic_exchange_explicit(&ib->asleep, 1, memory_order_acq_rel);
    if (asym) {
        /* Some producers may only read the flag. Should the barrier ever fail, do not sleep
         * this time, and use the exchange alone from now on. */
        if (!coil__fence_heavy()) {
            atomic_store_explicit(&ib->asym, 0, memory_order_relaxed);
            ib->may_sleep = true;
            return true;
        }
        ib->asym_fences++;
    }
    ib->may_sleep = true;
    if (!inbox_empty(ib))
        return ib->look_now = true; /* after_block clears the flag */
    return false;
}

static void src_after_block(coil_loop *loop, coil__loop_source *s)
{
    (void)loop;
    coil__inbox *ib = coil__container_of(s, coil__inbox, src);
    /* Only after a sleep: touching the line every iteration would pull it away from producers. */
    if (ib->may_sleep) {
        ib->may_sleep = false;
        if (ib->spin_ns) {
            /* What a spin would have had to cover is the wait until the message came, not until
             * the loop's thread got the CPU back to see it. */
            uint64_t now = coil__now_ns(), sent = atomic_load_explicit(&ib->wake_sent_ns, memory_order_relaxed);
            bool message = !inbox_empty(ib);
            uint64_t until = message && sent > ib->idle_t0 && sent < now ? sent : now;
            spin_learn(ib, until - ib->idle_t0, message);
        }
        atomic_store_explicit(&ib->asleep, 0, memory_order_relaxed);
    }
}

static void inbox_close(coil_loop *loop, coil__loop_closer *c);
static bool posters_busy(const coil__inbox *ib);

static void register_inbox(coil__inbox *ib)
{
    ib->registered = true;
    coil__loop_add_source(ib->loop, &ib->src);
    atomic_store_explicit(&ib->asleep, 0, memory_order_relaxed);
    ib->may_sleep = false;
}

void coil__inbox_expect(coil__inbox *ib, int delta)
{
    ib->expect = (unsigned)((int)ib->expect + delta);
    ib->src.can_wake = ib->expect > 0;
}

void coil__inbox_wait(coil__inbox *ib, uint64_t timeout_ns)
{
    if (!ib->registered)
        register_inbox(ib);
    if (ib->ovf_head)
        ovf_flush(ib);
    if (drain(ib, 0))
        return;
    bool block = !src_before_block(ib->loop, &ib->src);
    coil_loop *prev = tls_polling;
    tls_polling = ib->loop;
    if (COIL_LIKELY(!ib->loop->io.broken)) {
        coil__backend_poll(ib->loop, block, timeout_ns);
    } else if (block) {
        /* The driver can no longer wait (see coil__backend_poll), but what is expected still arrives
         * through the inbox: look again shortly rather than spin. */
        struct timespec ts = { 0, (long)(timeout_ns < 1000000 ? timeout_ns : 1000000) };
        nanosleep(&ts, NULL);
    }
    tls_polling = prev;
    src_after_block(ib->loop, &ib->src);
    drain(ib, 0);
}

void coil__inbox_ext_add(coil__inbox *ib, coil__inbox_ext *e)
{
    coil__inbox_ext **p = &ib->exts;
    while (*p)
        p = &(*p)->next;
    e->next = NULL;
    *p = e;
}

/* Loop close: the layers above let go of what the loop's tasks will never finish, then wait for
 * their work in flight; then wait for every outside completion this loop still expects (their
 * messages point at objects only this loop frees), run what is left in the ring, then free it
 * all. */
static void inbox_close(coil_loop *loop, coil__loop_closer *c)
{
    coil__inbox *ib = coil__container_of(c, coil__inbox, closer);
    tls_polling = loop;
    ib->closing = true;
    for (coil__inbox_ext *e = ib->exts; e; e = e->next)
        if (e->ops->closing)
            e->ops->closing(ib, e);
    while (ib->exts) {
        coil__inbox_ext *e = ib->exts;
        ib->exts = e->next;
        if (e->ops->close)
            e->ops->close(ib, e);
    }
    while (ib->expect || ib->ovf_head)
        coil__inbox_wait(ib, 10 * 1000 * 1000);
    /* Run what is left, and let every post whose message we saw finish with the inbox: each
     * drain is followed by a look at the posters, and we stop only after a look that found none
     * busy and a drain after it that found nothing new. Draining meanwhile also lets a poster
     * that waits for room in a full ring go on. Other loops' overflow lists are flushed on their
     * own schedule, so those messages are dropped instead (see ovf_flush). */
    atomic_store_explicit(&ib->dead, true, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    for (;;) {
        bool ran = false;
        while (drain(ib, 0))
            ran = true;
        if (posters_busy(ib))
            sched_yield();
        else if (!ran)
            break;
    }
    if (ib->registered)
        coil__loop_remove_source(ib->loop, &ib->src);
    coil__lane *next;
    for (coil__lane *l = atomic_load_explicit(&ib->lanes, memory_order_acquire); l; l = next) {
        next = l->next;
        atomic_store_explicit(&l->orphaned, true, memory_order_release);
        coil__lane_unref(l);
    }
    coil__mpsc_free(ib->ring);
    ib->ring = NULL;
    inbox_unref(ib);
}

static coil__inbox *inbox_new(coil_loop *loop)
{
    size_t size = (sizeof(coil__inbox) + 63) & ~(size_t)63;
    coil__inbox *ib = aligned_alloc(64, size); /* the shared flags want their own lines */
    if (!ib)
        return NULL;
    memset(ib, 0, size);
    if (coil__mpsc_init(&ib->ring, RING_CAPACITY) != 0) {
        free(ib);
        return NULL;
    }
    ib->closer.close = inbox_close;
    ib->src.drain = src_drain;
    ib->src.before_block = src_before_block;
    ib->src.after_block = src_after_block;
    static _Atomic uint64_t last_id;
    ib->loop = loop;
    ib->wake = coil__backend_wake_addr(loop);
    ib->id = atomic_fetch_add_explicit(&last_id, 1, memory_order_relaxed) + 1;
    ib->ovf_tail = &ib->ovf_head;
    ib->asym_after = ASYM_AFTER;
    ib->spin_ns = SPIN_MAX_NS;
    atomic_init(&ib->waker_cpu, -1);
    ib->lane_pace_ns = LANE_PACE_NS;
    /* Not listening yet: the first producer sends a wake-up, whose CQE hooks us in. */
    atomic_init(&ib->asleep, 1);
    atomic_init(&ib->refs, 1);
    atomic_init(&ib->dead, false);
    return ib;
}

coil__inbox *coil__inbox_of(coil_loop *loop)
{
    coil__inbox *ib = coil__inbox_find(loop);
    if (COIL_LIKELY(ib != NULL))
        return ib;
    if (!(ib = inbox_new(loop)))
        return NULL;
    coil__loop_closer *won = coil__loop_set_outside(loop, &ib->closer);
    if (won != &ib->closer) {
        coil__mpsc_free(ib->ring);
        free(ib);
        return coil__container_of(won, coil__inbox, closer);
    }
    if (coil__tls_running == loop || coil__tls_loop == loop)
        register_inbox(ib);
    return ib;
}

coil__inbox *coil__inbox_here(void)
{
    coil_loop *loop = coil__tls_running;
    if (!loop)
        return NULL;
    coil__inbox *ib = coil__inbox_of(loop);
    if (ib && !ib->registered)
        register_inbox(ib);
    return ib;
}

/* ---- posts in flight ----
 *
 * A post publishes its message, then still reads the inbox (after_push, send_wake). By then the
 * loop may have run the message (asyncio's call_soon_threadsafe(loop.stop)), returned and begun
 * to close. So every thread that posts has a record naming the inbox it is posting to, set
 * before the push and cleared (release) once it is done with the inbox; the closer waits until
 * no record names its inbox (acquire) before it frees anything. The record is the thread's own
 * line: two plain stores per post, no locked instruction. Any message the closer has seen was
 * pushed after its poster's record named the inbox (the push's release orders the two), so the
 * closer's look at the records cannot miss a post whose message it ran. */
typedef struct poster {
    _Atomic(coil__inbox *) target; /* the inbox this thread is posting to now, or NULL */
    struct poster *next, **pprev;  /* every thread's record, under posters_mu */
} poster;

static pthread_mutex_t posters_mu = PTHREAD_MUTEX_INITIALIZER;
static poster *posters;
static COIL__TLS poster tls_poster;
static COIL__TLS bool tls_poster_listed;
static pthread_key_t poster_key;
static pthread_once_t poster_once = PTHREAD_ONCE_INIT;

static void poster_thread_exit(void *rec)
{
    poster *p = rec;
    pthread_mutex_lock(&posters_mu);
    *p->pprev = p->next;
    if (p->next)
        p->next->pprev = p->pprev;
    pthread_mutex_unlock(&posters_mu);
    tls_poster_listed = false; /* a post from a later destructor lists it again */
}

static void poster_key_init(void) { pthread_key_create(&poster_key, poster_thread_exit); }

static __attribute__((noinline)) void poster_list(void)
{
    poster *p = &tls_poster;
    pthread_once(&poster_once, poster_key_init);
    pthread_setspecific(poster_key, p); /* its destructor takes the record off the list */
    pthread_mutex_lock(&posters_mu);
    p->next = posters;
    p->pprev = &posters;
    if (posters)
        posters->pprev = &p->next;
    posters = p;
    pthread_mutex_unlock(&posters_mu);
    tls_poster_listed = true;
}

/* This thread is about to post to ib (before it reads anything of ib). Release, like the clear:
 * a closer reading this value must also see the clear of an earlier post to another inbox. */
static inline void posting_to(coil__inbox *ib)
{
    if (COIL_UNLIKELY(!tls_poster_listed))
        poster_list();
    atomic_store_explicit(&tls_poster.target, ib, memory_order_release);
}

/* ...and is done with it: the closer may free it from now on. */
static inline void posted(void) { atomic_store_explicit(&tls_poster.target, NULL, memory_order_release); }

/* Some thread is between posting_to(ib) and posted(). */
static bool posters_busy(const coil__inbox *ib)
{
    bool busy = false;
    pthread_mutex_lock(&posters_mu);
    for (const poster *p = posters; p && !busy; p = p->next)
        busy = atomic_load_explicit(&p->target, memory_order_acquire) == ib;
    pthread_mutex_unlock(&posters_mu);
    return busy;
}

/* ---- posting ---- */

/* The producer's half of the handshake (see src_before_block and asym). The exchange also
 * makes exactly one producer, the one that reads 1, pay for the wake-up. */
static inline void after_push(coil__inbox *ib)
{
    if (atomic_load_explicit(&ib->asym, memory_order_relaxed) && !atomic_load_explicit(&ib->asleep, memory_order_relaxed))
        return;
    if (atomic_exchange_explicit(&ib->asleep, 0, memory_order_acq_rel)) {
        atomic_fetch_add_explicit(&ib->wakes_sent, 1, memory_order_relaxed);
        atomic_store_explicit(&ib->waker_cpu, sched_getcpu(), memory_order_relaxed);
        atomic_store_explicit(&ib->wake_sent_ns, coil__now_ns(), memory_order_relaxed);
        send_wake(ib);
    }
}

/* This thread's way into ib: its own lane, or the ring (lane.h). */
static int push(coil__inbox *ib, void (*fn)(void *, void *), void *a, void *b)
{
    coil__lane *l = coil__lane_for(ib, ib->id, &ib->lanes);
    return l ? coil__lane_push(l, fn, a, b) : coil__mpsc_push(ib->ring, fn, a, b);
}

/* Our loop's messages that found their target full. The target may have closed since (its
 * close cannot wait for our loop to flush): each message holds a reference that keeps the
 * target's struct, and its `dead` flag, readable. */
static void ovf_flush(coil__inbox *self)
{
    coil__ovf *o;
    while ((o = self->ovf_head)) {
        coil__inbox *to = o->to;
        posting_to(to);
        /* Against inbox_close's store of `dead` and its look at the posters (both sides fence):
         * either it sees us posting and waits for us, or we see it dead and drop the message,
         * which a closed loop could never run. */
        atomic_thread_fence(memory_order_seq_cst);
        bool dead = atomic_load_explicit(&to->dead, memory_order_relaxed);
        if (!dead && push(to, o->m.fn, o->m.a, o->m.b) != 0) {
            posted();
            return; /* still full: keep order, try again next iteration */
        }
        self->ovf_head = o->next;
        if (!self->ovf_head)
            self->ovf_tail = &self->ovf_head;
        if (!dead)
            after_push(to);
        posted();
        inbox_unref(to);
        free(o);
    }
}

int coil__inbox_try_post(coil__inbox *ib, void (*fn)(void *, void *), void *a, void *b)
{
    coil_loop *me = coil__tls_running;
    coil__inbox *self = me ? coil__inbox_find(me) : NULL;
    if (self && self->ovf_head)
        return -EAGAIN; /* older messages of ours still wait: keep our order */
    posting_to(ib);
    int err = push(ib, fn, a, b);
    if (!err)
        after_push(ib);
    posted();
    if (!err && me)
        COIL__STAT_ADD(me, msgs_out, 1);
    return err;
}

int coil__inbox_post(coil__inbox *ib, void (*fn)(void *, void *), void *a, void *b)
{
    coil_loop *me = coil__tls_running;
    coil__inbox *self = me ? coil__inbox_find(me) : NULL;
    if (me && !self)
        self = coil__inbox_here();
    posting_to(ib);
    if (COIL_LIKELY(!self || !self->ovf_head) && push(ib, fn, a, b) == 0) {
        after_push(ib);
        posted();
        if (me)
            COIL__STAT_ADD(me, msgs_out, 1);
        return 0;
    }
    if (self) {
        /* A loop must never block on another loop's ring: that is how two loops deadlock. */
        coil__ovf *o = malloc(sizeof *o);
        if (!o) {
            posted();
            return -ENOMEM;
        }
        /* Taken while we still count as posting, so a close that waits for us sees it. */
        atomic_fetch_add_explicit(&ib->refs, 1, memory_order_relaxed);
        posted();
        o->next = NULL;
        o->to = ib;
        o->m = (coil__msg){ fn, a, b };
        *self->ovf_tail = o;
        self->ovf_tail = &o->next;
        COIL__STAT_ADD(me, msgs_out, 1);
        return 0;
    }
    /* A foreign thread waits for space: spin, yield, then sleep on the drain counter. A full ring
     * means the loop is draining it, so room normally comes within the spin; only a loop that
     * does not run (it shares this CPU) gets to the yields, which let it run. Yielding any
     * sooner would hand the CPU to whatever else waits for it here, for that thread's whole
     * slice. */
    uint64_t spin_from = coil__now_ns();
    for (unsigned yields = 0;;) {
        uint32_t seq = atomic_load_explicit(&ib->space_seq, memory_order_seq_cst);
        if (push(ib, fn, a, b) == 0)
            break;
        if (coil__now_ns() - spin_from < FULL_SPIN_NS) {
            for (int k = 0; k < 16; k++)
                coil__cpu_relax();
        } else if (yields < 64) {
            yields++;
            sched_yield();
        } else {
            atomic_fetch_add_explicit(&ib->space_waiters, 1, memory_order_acq_rel); /* see space_freed */
            if (push(ib, fn, a, b) == 0) {
                atomic_fetch_sub_explicit(&ib->space_waiters, 1, memory_order_seq_cst);
                break;
            }
            /* The ring is full, so the loop has work: make sure it is awake to drain it. */
            after_push(ib);
            coil__futex_wait(&ib->space_seq, seq, &(struct timespec){ 0, 1000 * 1000 });
            atomic_fetch_sub_explicit(&ib->space_waiters, 1, memory_order_seq_cst);
        }
    }
    after_push(ib);
    posted();
    return 0;
}

/* ---- a window for tests and tools (inbox_debug.h) ---- */

void coil__loop_xstats(coil_loop *loop, coil__xstats *out)
{
    const coil__loop_stats *s = loop->stats;
    out->msgs_in = coil__stat_get(&s->msgs_in);
    out->msgs_out = coil__stat_get(&s->msgs_out);
    out->wakeups_from_loops = coil__stat_get(&s->wakeups_from_loops);
    out->wakeups_from_threads = coil__stat_get(&s->wakeups_from_threads);
    out->wakeups_sent = coil__stat_get(&s->wakeups_sent);
    coil__inbox *ib = coil__inbox_find(loop);
    out->asym_fences = ib ? ib->asym_fences : 0;
    out->wakes_sent_here = ib ? atomic_load_explicit(&ib->wakes_sent, memory_order_relaxed) : 0;
}

int coil__loop_inbox_asleep(coil_loop *loop)
{
    coil__inbox *ib = coil__inbox_of(loop);
    return ib ? atomic_load_explicit(&ib->asleep, memory_order_acquire) : 0;
}

unsigned coil__loop_inbox_capacity(coil_loop *loop)
{
    coil__inbox *ib = coil__inbox_of(loop);
    return ib ? coil__mpsc_capacity(ib->ring) : 0;
}

unsigned coil__loop_inbox_lanes(coil_loop *loop)
{
    coil__inbox *ib = coil__inbox_of(loop);
    unsigned n = 0;
    for (coil__lane *l = ib ? atomic_load_explicit(&ib->lanes, memory_order_acquire) : NULL; l; l = l->next)
        n++;
    return n;
}

unsigned coil__loop_inbox_spin_budget(coil_loop *loop)
{
    coil__inbox *ib = coil__inbox_of(loop);
    return ib ? ib->spin_budget_ns : 0;
}

int coil__loop_inbox_asym(coil_loop *loop)
{
    coil__inbox *ib = coil__inbox_of(loop);
    return ib ? atomic_load_explicit(&ib->asym, memory_order_relaxed) : 0;
}

void coil__loop_inbox_set_asym_after(coil_loop *loop, unsigned msgs)
{
    coil__inbox *ib = coil__inbox_of(loop);
    if (ib)
        ib->asym_after = msgs;
}

void coil__loop_inbox_set_lane_pace(coil_loop *loop, uint64_t ns)
{
    coil__inbox *ib = coil__inbox_of(loop);
    if (ib)
        ib->lane_pace_ns = ns;
}
