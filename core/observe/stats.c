/* coil core: the per-process shared-memory segment of loop counters (see coil/stats_shm.h for
 * the layout and the task-dump handshake, stats.h for the update rule). */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "engine/internal.h"
#include "observe/stats.h"

/* Process-wide: the mapping and how many loops hold a slot. The lock is taken only when a loop
 * is created or closed. */
static pthread_mutex_t seg_lock = PTHREAD_MUTEX_INITIALIZER;
static coil__stats_seg *seg;
static pid_t seg_pid;
static unsigned seg_users;
static bool atexit_done;

static void remove_segment(void)
{
    char name[64];
    coil__stats_shm_name(name, sizeof name, (long)seg_pid);
    shm_unlink(name);
    munmap(seg, sizeof *seg);
    seg = NULL;
}

static void at_exit(void)
{
    pthread_mutex_lock(&seg_lock);
    /* A forked child inherits this handler and the parent's mapping: never remove the parent's. */
    if (seg && seg_pid == getpid())
        remove_segment();
    pthread_mutex_unlock(&seg_lock);
}

/* Is what sits at our segment's name this user's own leftover regular file (a process that died
 * under our pid, which was then reused)? Opened without following a link and without blocking,
 * since it may be anything another user planted there. */
static bool own_leftover(const char *name)
{
    int fd = shm_open(name, O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0)
        return false;
    struct stat st;
    bool ours = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid();
    close(fd);
    return ours;
}

static coil__stats_seg *create_segment(void)
{
    static bool said_taken;
    char name[64];
    pid_t pid = getpid();
    coil__stats_shm_name(name, sizeof name, (long)pid);
    if (own_leftover(name))
        shm_unlink(name);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        /* Someone else holds the name (a FIFO, a link, another user's file): never open theirs.
         * Say it once; every loop keeps counting privately, and loopstat cannot see us. */
        if (errno == EEXIST && !said_taken) {
            said_taken = true;
            fprintf(stderr,
                    "coil: /dev/shm%s already exists and is not this process's: its loops publish no "
                    "counters and loopstat cannot see them (remove it, or look at who created it)\n",
                    name);
        }
        return NULL;
    }
    coil__stats_seg *s = NULL;
    if (ftruncate(fd, sizeof *s) == 0) {
        s = mmap(NULL, sizeof *s, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (s == MAP_FAILED)
            s = NULL;
    }
    close(fd);
    if (!s) {
        shm_unlink(name);
        return NULL;
    }
    s->version = COIL__STATS_VERSION;
    s->slot_size = sizeof(coil__loop_stats);
    s->nslots = COIL__STATS_SLOTS;
    s->uid = (uint32_t)getuid();
    s->pid = (uint64_t)pid;
    s->start_time = coil__proc_start_time((long)pid);
    __atomic_store_n(&s->magic, COIL__STATS_MAGIC, __ATOMIC_RELEASE);
    seg_pid = pid;
    if (!atexit_done)
        atexit_done = atexit(at_exit) == 0;
    return s;
}

/* ---- the bell's watch and the answer (see coil/stats_shm.h for the handshake) ---- */

#ifndef MFD_NOEXEC_SEAL
#define MFD_NOEXEC_SEAL 0x0008u
#endif

struct coil__stats_watch {
    coil__io_cb cb;               /* first: the watch's completion record */
    coil__loop_closer closer;
    coil_loop *loop;
    unsigned kind;                /* COIL__WATCH_FUTEX or COIL__WATCH_TIMER */
    bool armed;                   /* its SQE is queued or in the kernel */
    coil__timespec period;        /* the timer's; read by the kernel when it takes the operation */
    int answer_fd;                /* the memfd of the last answer, -1 when none */
    uint64_t answer_ino;
};

/* Process-wide: which watch the kernel allows (probed once), or what a test forces. */
static unsigned watch_probed, watch_forced;

void coil__stats_force_watch(unsigned kind) { __atomic_store_n(&watch_forced, kind, __ATOMIC_RELAXED); }

/* Wake whoever waits on a futex word of the segment. Not FUTEX_PRIVATE: the waiter may be
 * another process (loopstat) mapping the same segment. */
static void ring(uint32_t *word)
{
    __atomic_fetch_add(word, 1, __ATOMIC_RELEASE);
    syscall(SYS_futex, word, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static unsigned watch_kind(coil_loop *loop)
{
    unsigned k = __atomic_load_n(&watch_forced, __ATOMIC_RELAXED);
    if (k)
        return k;
    k = __atomic_load_n(&watch_probed, __ATOMIC_RELAXED);
    if (k)
        return k;
    /* Without the futex wait (io_uring before Linux 6.7) the fallback is the periodic look: a
     * one-second timeout in the driver, so an idle loop then still answers, within a second. */
    k = coil__backend_supports(loop, COIL__CAP_FUTEX_WAIT) ? COIL__WATCH_FUTEX : COIL__WATCH_TIMER;
    __atomic_store_n(&watch_probed, k, __ATOMIC_RELAXED);
    return k;
}

/* Queue the watch. It is not work: it must not keep run_until_complete from seeing that nothing
 * can happen, nor count as an operation in flight, nor make a busy loop enter the kernel; so it
 * is started QUIET (backend.h). The next submission takes it with the rest, and a loop always
 * submits before it blocks. `seen` is the bell's value already looked at: the futex wait
 * completes at once if the bell has moved since. */
static void watch_arm(coil_loop *loop, coil__stats_watch *w, uint32_t seen)
{
    coil__op op = { .code = COIL__OP_TIMEOUT, .flags = COIL__OPF_QUIET, .buf = &w->period };
    if (w->kind == COIL__WATCH_FUTEX) {
        op.code = COIL__OP_FUTEX_WAIT;
        op.buf = &loop->stats->bell;
        op.off = seen;
    }
    if (coil__backend_submit_cb(loop, &op, &w->cb) != 0)
        return; /* tried again at the end of the next iteration */
    w->armed = true;
}

/* The watch's CQE: the bell rang (0), had moved before it was armed (-EAGAIN), the period
 * passed (-ETIME), or it was cancelled. The request itself is served at the end of this
 * iteration, which also re-arms the watch. */
static void watch_complete(coil__io_cb *cb, const coil__io_done *done)
{
    coil__stats_watch *w = (coil__stats_watch *)cb;
    w->armed = false;
    int res = done->res;
    if (w->kind == COIL__WATCH_FUTEX && res < 0 && res != -EAGAIN && res != -ECANCELED && res != -EINTR) {
        /* The op is refused after all (a kernel that lists it but rejects this use): look
         * periodically rather than re-arm something that fails at once. */
        w->kind = COIL__WATCH_TIMER;
        __atomic_store_n(&watch_probed, COIL__WATCH_TIMER, __ATOMIC_RELAXED);
        __atomic_store_n(&w->loop->stats->watch, COIL__WATCH_TIMER, __ATOMIC_RELAXED);
    }
}

/* Close the memfd of the last answer, unless the fd no longer is that file: a program that
 * closed it and got the number back for a file of its own keeps that file. */
static void drop_answer(coil__stats_watch *w, coil__loop_stats *p)
{
    if (w->answer_fd < 0)
        return;
    struct stat st;
    if (fstat(w->answer_fd, &st) == 0 && (uint64_t)st.st_ino == w->answer_ino)
        close(w->answer_fd);
    w->answer_fd = -1;
    __atomic_store_n(&p->dump_fd, -ENOENT, __ATOMIC_RELAXED);
}

static int new_memfd(void)
{
    int fd = memfd_create("coil-tasks", MFD_CLOEXEC | MFD_NOEXEC_SEAL);
    if (fd < 0 && errno == EINVAL) /* kernels before 6.3 know no MFD_NOEXEC_SEAL */
        fd = memfd_create("coil-tasks", MFD_CLOEXEC);
    return fd;
}

static void serve_dump(coil_loop *loop, coil__stats_watch *w, uint64_t req)
{
    coil__loop_stats *p = loop->stats;
    drop_answer(w, p);
    int64_t answer;
    struct stat st;
    int fd = new_memfd();
    if (fd < 0) {
        answer = -errno;
    } else {
        int err = coil__stats_dump_tasks(loop, fd);
        if (!err && fstat(fd, &st) != 0)
            err = -errno;
        if (err) {
            close(fd);
            answer = err;
        } else {
            w->answer_fd = fd;
            w->answer_ino = (uint64_t)st.st_ino;
            answer = fd;
            __atomic_store_n(&p->dump_ino, w->answer_ino, __ATOMIC_RELAXED);
        }
    }
    __atomic_store_n(&p->dump_fd, answer, __ATOMIC_RELAXED);
    /* Even a failed dump answers, so loopstat reports the error instead of waiting it out. */
    __atomic_store_n(&p->dump_resp, req, __ATOMIC_RELEASE);
    ring(&p->resp_bell);
}

/* Loop close, while the ring is still up: cancel the watch and reap its CQE, so the kernel
 * holds nothing that points into the slot once it is handed to another loop. */
static void watch_close(coil_loop *loop, coil__loop_closer *c)
{
    coil__stats_watch *w = coil__container_of(c, coil__stats_watch, closer);
    if (w->armed) {
        coil__backend_cancel_cb(loop, &w->cb);
        /* The kernel cancels a futex wait or a timeout at once; the bound is for a driver that
         * no longer answers at all, and a broken one (io.broken) is not waited on. */
        uint64_t deadline = coil__now_ns() + 1000000000u;
        for (uint64_t now = coil__now_ns(); w->armed && !loop->io.broken && now < deadline; now = coil__now_ns())
            coil__backend_poll(loop, true, deadline - now);
    }
    drop_answer(w, loop->stats);
}

static void watch_start(coil_loop *loop)
{
    coil__stats_watch *w = calloc(1, sizeof *w);
    if (!w)
        return; /* a loop whose creation could not get these bytes: it answers when busy only */
    w->cb.complete = watch_complete;
    w->closer.close = watch_close;
    w->loop = loop;
    w->kind = watch_kind(loop);
    w->period.sec = 1;
    w->answer_fd = -1;
    loop->stats_watch = w;
    __atomic_store_n(&loop->stats->watch, w->kind, __ATOMIC_RELAXED);
    __atomic_store_n(&loop->stats->dump_fd, -ENOENT, __ATOMIC_RELAXED);
    coil__loop_on_close(loop, &w->closer);
    watch_arm(loop, w, __atomic_load_n(&loop->stats->bell, __ATOMIC_ACQUIRE));
}

static bool in_segment(const coil__loop_stats *p)
{
    return seg && p >= seg->slots && p < seg->slots + COIL__STATS_SLOTS;
}

/* The slot's one text field: written before the slot is published (in_use), never after. */
static void name_backend(coil__loop_stats *slot, const coil_loop *loop)
{
    const char *name = coil_loop_backend(loop);
    strncpy(slot->backend, name ? name : "", sizeof slot->backend - 1);
}

void coil__stats_attach(coil_loop *loop)
{
    coil__loop_stats *slot = NULL;
    pthread_mutex_lock(&seg_lock);
    if (seg && seg_pid != getpid()) {
        /* Forked: the mapping is the parent's. Drop it (without unlinking) and start our own. */
        munmap(seg, sizeof *seg);
        seg = NULL;
        seg_users = 0;
    }
    if (!seg)
        seg = create_segment();
    if (seg) {
        for (unsigned i = 0; i < COIL__STATS_SLOTS; i++)
            if (!__atomic_load_n(&seg->slots[i].in_use, __ATOMIC_RELAXED)) {
                slot = &seg->slots[i];
                memset(slot, 0, sizeof *slot);
                slot->shard = i;
                name_backend(slot, loop);
                /* Claimed before the lock is dropped: another loop starting on another thread
                 * right now must not pick the same slot. */
                __atomic_store_n(&slot->in_use, 1, __ATOMIC_RELEASE);
                break;
            }
        if (slot)
            seg_users++;
    }
    pthread_mutex_unlock(&seg_lock);
    bool private = !slot;
    if (!slot) {
        /* No shm (or 256 loops already): count privately, so updates never need a check. */
        slot = calloc(1, sizeof *slot);
        if (!slot)
            abort(); /* a few hundred bytes at loop creation; the loop itself was just allocated */
        name_backend(slot, loop);
    }
    __atomic_store_n(&slot->tid, (uint64_t)gettid(), __ATOMIC_RELAXED);
    loop->stats = slot;
    if (!private)
        watch_start(loop);
}

void coil__stats_detach(coil_loop *loop)
{
    coil__loop_stats *slot = loop->stats;
    coil__stats_watch *w = loop->stats_watch;
    loop->stats = NULL;
    loop->stats_watch = NULL;
    if (!slot)
        return;
    if (w) {
        /* The closer reaped the watch while the ring was up; the ring is gone now. */
        drop_answer(w, slot);
        free(w);
        /* A loopstat waiting for this loop's answer hears that it is gone now, not at its deadline. */
        ring(&slot->resp_bell);
    }
    pthread_mutex_lock(&seg_lock);
    if (in_segment(slot)) {
        __atomic_store_n(&slot->in_use, 0, __ATOMIC_RELEASE);
        if (--seg_users == 0 && seg_pid == getpid())
            remove_segment();
        slot = NULL;
    }
    pthread_mutex_unlock(&seg_lock);
    free(slot);
}

void coil__stats_block(coil_loop *loop, uint64_t t0, uint64_t t1)
{
    (void)loop;
    (void)t0;
    (void)t1;
#if COIL__STATS_ON
    coil__loop_stats *p = loop->stats;
    uint64_t last = p->last_wake_ns;
    if (last && t0 > last)
        COIL__STAT_ADD(loop, busy_ns, t0 - last);
    COIL__STAT_ADD(loop, wait_ns, t1 - t0);
    COIL__STAT_SET(loop, last_wake_ns, t1);
#endif
}

/* The task and iteration counts live in the loop's hot line and are published here, once an
 * iteration, so creating a task or starting an iteration costs no store to the segment's line. */
void coil__stats_publish_tasks(coil_loop *loop)
{
    COIL__STAT_SET(loop, iterations, loop->iterations);
    COIL__STAT_SET(loop, tasks_alive, loop->ntasks_alive);
    COIL__STAT_SET(loop, tasks_created, loop->tasks_created);
    COIL__STAT_SET(loop, tasks_finished, loop->tasks_created - loop->ntasks_alive);
}

void coil__stats_iteration(coil_loop *loop, unsigned batch)
{
    coil__loop_stats *p = loop->stats;
    (void)batch;
    coil__stats_publish_tasks(loop);
#if COIL__STATS_ON
    COIL__STAT_SET(loop, ready_depth, batch);
    COIL__STAT_SET(loop, ops_inflight, loop->io.inflight);
    COIL__STAT_SET(loop, timers_armed, coil__timers_count(&loop->timers));
    COIL__STAT_SET(loop, stacks_in_use, loop->stacks.live);
    COIL__STAT_SET(loop, stack_bytes, loop->stacks.bytes_mapped);
#endif
    coil__stats_watch *w = loop->stats_watch;
    if (!w)
        return; /* a private slot: nobody can ask */
    /* To re-arm, the bell is read before the requests: a request rung after this load makes the
     * watch armed with this value complete at once, and one rung before it is visible to the
     * loads below. */
    bool rearm = COIL_UNLIKELY(!w->armed);
    uint32_t bell = rearm ? __atomic_load_n(&p->bell, __ATOMIC_ACQUIRE) : 0;
    uint64_t req = __atomic_load_n(&p->dump_req, __ATOMIC_ACQUIRE);
    if (COIL_UNLIKELY(req != p->dump_resp))
        serve_dump(loop, w, req);
    else if (COIL_UNLIKELY(w->answer_fd >= 0) && __atomic_load_n(&p->dump_ack, __ATOMIC_ACQUIRE) == req)
        drop_answer(w, p);
    if (rearm)
        watch_arm(loop, w, bell);
}
