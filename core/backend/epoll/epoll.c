/* coil core: the epoll driver (core/backend/backend.h), for kernels and sandboxes that refuse
 * io_uring.
 *
 * Each operation becomes an `eop` record. Sockets, pipes and other pollable fds: the system call
 * is made non-blocking, tried at once where that is cheap, and otherwise retried when epoll says
 * the fd is ready. Every fd is registered once, edge-triggered, for both directions, and stays
 * registered while operations wait on it. Regular files, fsync, openat and statx go to a thread
 * pool (pool.h), as libuv does. Another thread's wake-up and the pool's finished jobs arrive
 * through one eventfd.
 *
 * Completions are never delivered from inside a submit (the task has not suspended yet): an
 * operation that finishes at once is queued and delivered by the next poll, which therefore
 * never sleeps while anything is queued.
 *
 * This file: polling, the table, set-up and teardown; ops.c: the operations; wake.c: other
 * threads' wake-ups; pool.c: the thread pool; state.h: what they share. */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "backend/epoll/state.h"
#include "observe/stats.h"

/* A busy loop that never blocks asks epoll for events only now and then, so the system call's
 * cost spreads over many task switches: it reads the clock once every LOOK_EVERY looks (a look is
 * an inline iteration's pending check, counting one, or a scheduler iteration's poll, counting
 * LOOK_POLL), and calls epoll once LOOK_NS have passed since the last call; the loop's alarm is
 * checked at the same moments, since epoll cannot raise it by itself. A busy loop therefore hears
 * of I/O within about LOOK_NS, or LOOK_EVERY looks when its steps are long. */
enum { LOOK_EVERY = 128, LOOK_POLL = 16 };
#define LOOK_NS 32000u

/* epoll keys of the driver's own fds (an fd's key is its number). */
#define KEY_WAKE UINT64_MAX
#define KEY_TIMER (UINT64_MAX - 1)

/* ---- polling ---- */

/* Returns whether there was anything: then the poll must not sleep (its targets are ready). */
static bool deliver_queued(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    eop *e = d->done_head;
    if (!e)
        return false;
    d->done_head = d->done_tail = NULL;
    /* Results queued by these callbacks wait for the next poll, which then does not sleep. */
    for (eop *next; e; e = next) {
        next = e->next;
        coil__ep_finish(loop, e, e->res);
    }
    return true;
}

static void timers_fire(coil_loop *loop, uint64_t now)
{
    coil__driver *d = loop->io.drv;
    while (d->timers && d->timers->deadline <= now) {
        eop *e = d->timers;
        d->timers = e->next;
        coil__ep_finish(loop, e, -ETIME);
    }
}

static bool queued(coil__driver *d)
{
    return d->done_head || atomic_load_explicit(&d->box->any, memory_order_acquire) ||
           atomic_load_explicit(&d->pool_done.head, memory_order_acquire);
}

/* The look a busy loop takes now and then (LOOK_EVERY): true when epoll should be asked now. */
static bool look_due(coil_loop *loop, int cost)
{
    coil__driver *d = loop->io.drv;
    if (d->look_now)
        return true;
    if ((d->look_left -= cost) > 0)
        return false;
    d->look_left = LOOK_EVERY;
    if (!loop->io.alarm_at && !d->timers && !d->nwaiting)
        return false;
    uint64_t now = coil__ep_now_ns();
    if (loop->io.alarm_at && now >= loop->io.alarm_at) {
        loop->io.alarm_at = 0;
        d->look_now = true;
    }
    if (d->timers && d->timers->deadline <= now)
        d->look_now = true;
    if (d->nwaiting && now - d->looked_at >= LOOK_NS) {
        d->look_now = true;
        d->looked_at = now; /* a blocking wait leaves it be: the next busy spell then looks first thing */
    }
    return d->look_now;
}

/* Between looks only the loop's own queue is checked: another thread's wake-up sends a loop with
 * a way in from outside to the scheduler anyway (whose poll checks everything), and a finished
 * pool job waits for the next look. */
static bool ep_pending(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    if (COIL_LIKELY(d->look_left > 1)) {
        d->look_left--;
        return d->done_head || d->look_now;
    }
    return queued(d) || look_due(loop, 1);
}

static void ep_alarm(coil_loop *loop, uint64_t deadline_ns) { loop->io.alarm_at = deadline_ns; }

static int wait_events(coil__driver *d, uint64_t timeout_ns)
{
    int n = (int)d->nevents;
#ifdef SYS_epoll_pwait2
    if (d->have_pwait2) {
        struct timespec ts = { (time_t)(timeout_ns / 1000000000u), (long)(timeout_ns % 1000000000u) };
        int r = (int)syscall(SYS_epoll_pwait2, d->epfd, d->events, n, timeout_ns == UINT64_MAX ? NULL : &ts, NULL,
                             (size_t)0);
        if (r >= 0 || errno != ENOSYS)
            return r;
        d->have_pwait2 = false;
    }
#endif
    /* Milliseconds, rounded up: a timer must not wake the loop before it is due. */
    int ms = timeout_ns == UINT64_MAX ? -1
             : timeout_ns >= (uint64_t)INT32_MAX * 1000000u ? INT32_MAX
                                                             : (int)((timeout_ns + 999999u) / 1000000u);
    return epoll_wait(d->epfd, d->events, n, ms);
}

/* A blocking wait with a deadline. Handing epoll the timeout would arm and cancel a kernel timer
 * on every wait (most of a server's waits end with I/O long before a request's deadline); the
 * timerfd is instead armed only when the deadline is earlier than the one it holds. A later one
 * leaves it be: it fires early, the loop finds nothing due and waits again, re-arming then. Returns
 * the timeout to hand epoll: none, or the original where the timerfd cannot be used. */
static uint64_t arm_deadline(coil__driver *d, uint64_t timeout_ns)
{
    if (d->tfd < 0 || timeout_ns == 0 || timeout_ns == UINT64_MAX || timeout_ns > (UINT64_MAX >> 2))
        return timeout_ns;
    uint64_t at = coil__ep_now_ns() + timeout_ns;
    if (d->tfd_at && d->tfd_at <= at)
        return UINT64_MAX;
    struct itimerspec its = { { 0, 0 }, { (time_t)(at / 1000000000u), (long)(at % 1000000000u) } };
    if (timerfd_settime(d->tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        return timeout_ns;
    d->tfd_at = at;
    return UINT64_MAX;
}

static unsigned ep_poll(coil_loop *loop, bool wait, uint64_t timeout_ns)
{
    coil__driver *d = loop->io.drv;
    bool look = wait || look_due(loop, LOOK_POLL);
    if (!look && !queued(d))
        return 0;
    unsigned before = d->handed;
    bool delivered = deliver_queued(loop);
    /* Results handed over make work ready, so the loop will not sleep now: ask epoll only when a
     * look is due, as a busy loop does, rather than spend a system call on a zero-timeout peek
     * for every batch of results. */
    if (wait && delivered)
        look = look_due(loop, LOOK_POLL);
    d->look_now = false;
    if (look) {
        uint64_t timeout = wait && !delivered ? timeout_ns : 0;
        if (timeout && queued(d))
            timeout = 0;
        uint64_t now = 0;
        if (timeout && d->timers) {
            now = coil__ep_now_ns();
            uint64_t left = d->timers->deadline > now ? d->timers->deadline - now : 0;
            if (left < timeout)
                timeout = left;
        }
        int n = wait_events(d, arm_deadline(d, timeout));
        if (n < 0 && errno != EINTR)
            coil__backend_broken(loop, -errno,
                                 "epoll_wait failed; the loop cannot wait for I/O or timers and its run ends with "
                                 "this error");
        for (int i = 0; i < n; i++) {
            uint64_t key = d->events[i].data.u64;
            if (key == KEY_WAKE) {
                uint64_t v;
                (void)!read(d->box->efd, &v, sizeof v);
            } else if (key == KEY_TIMER) {
                d->tfd_at = 0; /* fired (edge-triggered: arming it again resets it) */
            } else {
                coil__ep_fd_ready(loop, (int)key, d->events[i].events);
            }
        }
        if (d->timers)
            timers_fire(loop, coil__ep_now_ns());
    }
    coil__ep_wake_reap(loop);
    if (atomic_load_explicit(&d->pool_done.head, memory_order_acquire))
        coil__ep_pool_reap(loop);
    deliver_queued(loop);
    return d->handed - before;
}

/* ---- provided buffers ---- */

static void ebuf_release(coil__bufring *base)
{
    epoll_bufring *b = (epoll_bufring *)base;
    if (b->owner && b->owner->bufring == b)
        b->owner->bufring = NULL;
    free(b);
}

static int ep_bufring_shared(coil_loop *loop, coil__bufring **out)
{
    coil__driver *d = loop->io.drv;
    if (!d->bufring) {
        epoll_bufring *b = malloc(sizeof *b);
        if (!b)
            return -ENOMEM;
        b->base.refs = 0;
        b->base.size = BUF_SIZE;
        b->base.release = ebuf_release;
        b->owner = d;
        d->bufring = b;
    }
    d->bufring->base.refs++;
    *out = &d->bufring->base;
    return 0;
}

/* ---- the rest of the table ---- */

static bool ep_supports(coil_loop *loop, int cap)
{
    (void)loop;
    (void)cap;
    return false;
}

static int ep_file_add(coil_loop *loop, int fd)
{
    (void)loop;
    (void)fd;
    return -1; /* no table of registered files: operations name the fd */
}

static void ep_file_remove(coil_loop *loop, int slot)
{
    (void)loop;
    (void)slot;
}

static void ep_exit(coil_loop *loop)
{
    coil__driver *d = loop->io.drv;
    if (!d)
        return;
    coil__ep_ops_free(d);
    if (d->bufring)
        d->bufring->owner = NULL;
    close(d->epfd);
    if (d->tfd >= 0)
        close(d->tfd);
    coil__ep_wakebox_unref(d->box);
    free(d->fds);
    free(d->hash);
    free(d->events);
    free(d);
    loop->io.drv = NULL;
}

const coil__backend_ops coil__epoll_ops = {
    .name = "epoll",
    .exit = ep_exit,
    .poll = ep_poll,
    .pending = ep_pending,
    .alarm = ep_alarm,
    .submit_task = coil__ep_submit_task,
    .submit_cb = coil__ep_submit_cb,
    .try_now = coil__ep_try,
    .cancel_task = coil__ep_cancel_task,
    .cancel_cb = coil__ep_cancel_cb,
    .cancel_all = coil__ep_cancel_all,
    .supports = ep_supports,
    .file_add = ep_file_add,
    .file_remove = ep_file_remove,
    .bufring_shared = ep_bufring_shared,
    .wake_addr = coil__ep_wake_addr,
    .wake = coil__ep_wake,
    .wake_drop = coil__ep_wake_drop,
};

int coil__epoll_init(coil_loop *loop, unsigned entries)
{
    coil__driver *d = calloc(1, sizeof *d);
    wakebox *b = calloc(1, sizeof *b);
    int err = -ENOMEM;
    if (!d || !b)
        goto fail;
    d->epfd = -1;
    d->tfd = -1;
    b->efd = -1;
    d->nevents = entries < 64 ? 64 : entries > 1024 ? 1024 : entries;
    d->events = malloc(d->nevents * sizeof *d->events);
    if (!d->events || coil__ep_hash_grow(d) != 0)
        goto fail;
    d->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (d->epfd < 0 || b->efd < 0) {
        err = -errno;
        goto fail;
    }
    struct epoll_event ev = { .events = EPOLLIN, .data.u64 = KEY_WAKE };
    if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, b->efd, &ev) < 0) {
        err = -errno;
        goto fail;
    }
    /* Without a timerfd, waits take their timeout the plain way. */
    d->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    struct epoll_event tev = { .events = EPOLLIN | EPOLLET, .data.u64 = KEY_TIMER };
    if (d->tfd >= 0 && epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->tfd, &tev) < 0) {
        close(d->tfd);
        d->tfd = -1;
    }
    atomic_init(&b->refs, 1);
    d->box = b;
    coil__pool_done_init(&d->pool_done, b->efd);
    d->look_left = LOOK_EVERY;
    d->have_pwait2 = true;
    loop->io.drv = d;
    loop->io.ops = &coil__epoll_ops;
    /* pending() is a couple of loads between the looks it takes now and then. */
    loop->io.peek_cheap = true;
    return 0;
fail:
    if (d) {
        if (d->epfd >= 0)
            close(d->epfd);
        if (d->tfd >= 0)
            close(d->tfd);
        free(d->events);
        free(d->hash);
    }
    if (b && b->efd >= 0)
        close(b->efd);
    free(b);
    free(d);
    return err;
}
