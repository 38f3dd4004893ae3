/* coil core: the counters every loop publishes, and the shared-memory segment that holds them.
 *
 * One segment per process, POSIX shm "/coil.<pid>" (so /dev/shm/coil.<pid>), mode 0600, created
 * with O_EXCL by the first loop of the process and removed when the last loop closes (and at
 * exit). A name that is taken by anything but this user's leftover regular file is left alone,
 * and the process says so once on stderr and keeps its counters privately. It is a header
 * followed by COIL__STATS_SLOTS fixed-size slots, one per live loop. tools/loopstat maps it
 * read-write (it writes only loopstat's side of the task-dump handshake), after checking that
 * it is a regular file of the process's user.
 *
 * Why counters are plain relaxed loads and stores, not atomic adds: each slot has exactly one
 * writer, its loop's thread, so an update is a load and a store to a line that thread owns (no
 * lock prefix, no contention); readers in other processes see each value whole, perhaps a little
 * stale, which is all a monitor needs.
 *
 * The task-dump handshake, which goes through no file name at all (a name in /tmp or /dev/shm
 * is one another local user can plant a FIFO or a symlink at, and one a private /tmp hides):
 *  - loopstat increments dump_req, then rings the slot's bell (increments the 32-bit `bell` and
 *    FUTEX_WAKEs it; a shared futex, since loopstat is another process);
 *  - every loop keeps a watch on its bell in its ring (IORING_OP_FUTEX_WAIT), so even a loop
 *    blocked with nothing to do wakes for the request, and only for it. A loop also looks at
 *    dump_req once per scheduler iteration, so a busy loop answers without the watch;
 *  - the loop writes its task list and call graph into a fresh memfd (an anonymous file that
 *    only its process holds), publishes the fd number and the file's inode number, stores
 *    dump_resp = dump_req (release) and rings resp_bell;
 *  - loopstat opens /proc/<pid>/fd/<n> (the kernel lets only those who may read the process's
 *    memory do that), checks the inode, reads it, then stores dump_ack = dump_resp and rings the
 *    bell: the loop then closes the memfd. An answer nobody acknowledges is dropped at the next
 *    request or when the loop closes.
 * Where the kernel has no IORING_OP_FUTEX_WAIT (before 6.7), the watch is a one-second timeout
 * instead: an idle loop then wakes once a second to look (`watch` says which one a loop keeps).
 *
 * Built with -DCOIL_STATS=OFF (compile definition COIL_STATS_DISABLED), every update compiles to
 * nothing; the segment still exists but its counters stay at zero. */
#ifndef COIL_CORE_STATS_H
#define COIL_CORE_STATS_H

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COIL__STATS_MAGIC 0x5441545333494f43ull /* "COI3STAT" */
#define COIL__STATS_VERSION 2u
#define COIL__STATS_SLOTS 256u
#define COIL__STATS_HIST 40u /* step-duration buckets: bucket i counts steps of [2^i, 2^(i+1)) ns */

/* One loop's slot. All fields are written by the loop's thread with relaxed stores (except the
 * handshake fields noted), read by anyone. Gauges (alive, ready, in flight, timers, stacks) are
 * refreshed once per scheduler iteration. */
typedef struct coil__loop_stats {
    uint64_t in_use;              /* 0 = free; set with release after the slot is initialised */
    uint64_t shard;               /* the shard id (the slot index unless the runtime sets it) */
    uint64_t tid;                 /* the loop thread's kernel thread id */
    uint64_t tasks_alive;
    uint64_t ready_depth;         /* tasks and callbacks in the last scheduler batch */
    uint64_t tasks_created, tasks_finished;
    uint64_t iterations;
    uint64_t busy_ns, wait_ns;    /* wait: blocked in io_uring_enter; busy: between two waits */
    uint64_t sqes_submitted, cqes_reaped;
    uint64_t ops_inflight;
    uint64_t timers_armed;
    /* cross-thread traffic (shards/): messages this loop popped and posted, and the wake-ups it
     * received while asleep, from another loop's ring or from a foreign thread (both MSG_RING) */
    uint64_t msgs_in, msgs_out;
    uint64_t wakeups_from_loops, wakeups_from_threads;
    uint64_t wakeups_sent;
    uint64_t executor_queue, executor_busy;
    uint64_t longest_step_ns;     /* timing mode only */
    uint64_t stacks_in_use, stack_bytes;
    uint64_t steps_timed;         /* timing mode only: steps counted in step_hist */
    uint64_t steps_ns;            /* timing mode only: their total duration */
    uint64_t step_hist[COIL__STATS_HIST];
    /* timing mode: the step in progress (0 = none) and its task, for the stall watchdog */
    uint64_t step_start_ns;
    uint64_t step_task;
    uint64_t flags;               /* COIL__SLOT_* */
    uint64_t last_wake_ns;        /* when the loop last came back from a wait (busy_ns base) */
    /* task-dump handshake (above) */
    uint64_t dump_req;            /* loopstat: the request it wants answered */
    uint64_t dump_resp;           /* the loop (release): the last request answered */
    uint64_t dump_ack;            /* loopstat: the last answer it has read (the loop then drops it) */
    int64_t dump_fd;              /* the loop: the fd in its process holding the answer, or -errno */
    uint64_t dump_ino;            /* the loop: that file's inode number */
    uint32_t bell;                /* futex word: loopstat rings it after writing dump_req or dump_ack */
    uint32_t resp_bell;           /* futex word: the loop rings it after writing dump_resp */
    uint32_t watch;               /* COIL__WATCH_*: how the loop hears the bell */
    uint32_t spare32;
    uint64_t spare[2];
} coil__loop_stats;

enum { COIL__SLOT_TIMING = 1, COIL__SLOT_DEBUG = 2, COIL__SLOT_STALL = 4 };
/* How a loop hears its bell: no watch (a loop whose slot is private, which loopstat cannot
 * reach), a futex wait in its ring, or the fallback's periodic timeout. */
enum { COIL__WATCH_NONE = 0, COIL__WATCH_FUTEX = 1, COIL__WATCH_TIMER = 2 };

typedef struct coil__stats_seg {
    uint64_t magic;               /* written last, with release, once the header is complete */
    uint32_t version;
    uint32_t slot_size;           /* sizeof(coil__loop_stats), so a reader can check layout */
    uint32_t nslots;
    uint32_t uid;
    uint64_t pid;
    uint64_t start_time;          /* /proc/self/stat field 22 (clock ticks since boot) */
    uint64_t spare[4];
    coil__loop_stats slots[COIL__STATS_SLOTS];
} coil__stats_seg;

#if defined(COIL_STATS_DISABLED)
/* Compiled out, but still a use of the operands, so a variable kept only for counting does not
 * become "unused" in this build. */
#define COIL__STAT_ADD(loop, field, n) ((void)(loop), (void)(n))
#define COIL__STAT_SET(loop, field, v) ((void)(loop), (void)(v))
#define COIL__STATS_ON 0
#else
#define COIL__STAT_ADD(loop, field, n)                                                                 \
    do {                                                                                               \
        uint64_t *p_ = &(loop)->stats->field;                                                          \
        __atomic_store_n(p_, __atomic_load_n(p_, __ATOMIC_RELAXED) + (uint64_t)(n), __ATOMIC_RELAXED); \
    } while (0)
#define COIL__STAT_SET(loop, field, v) __atomic_store_n(&(loop)->stats->field, (uint64_t)(v), __ATOMIC_RELAXED)
#define COIL__STATS_ON 1
#endif

static inline uint64_t coil__stat_get(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

struct coil_loop;
struct coil__loop_hooks;
/* The hooks observability installs on every loop (hooks.c; the engine's coil__loop_hooks):
 * core/assemble.c builds each loop with them. The functions below are what they call. */
extern const struct coil__loop_hooks coil__observe_hooks;
typedef struct coil__stats_watch coil__stats_watch; /* a loop's watch on its bell (stats.c) */
/* Give the loop its slot (or a private fallback when shm is unavailable). Loop creation. */
void coil__stats_attach(struct coil_loop *loop);
/* Give the slot back; the last loop of the process removes the segment. Loop close. */
void coil__stats_detach(struct coil_loop *loop);
/* Once per scheduler iteration: refresh gauges, serve a pending task-dump request, drop an
 * acknowledged answer and re-arm the bell's watch. */
void coil__stats_publish_tasks(struct coil_loop *loop);
void coil__stats_iteration(struct coil_loop *loop, unsigned batch);
/* The loop is about to block / came back: busy and wait accounting. */
void coil__stats_block(struct coil_loop *loop, uint64_t t0, uint64_t t1);
/* Write the loop's task dump to fd, which stays open (stats.c calls it; callgraph.c implements
 * the dump). 0 or a negative errno. */
int coil__stats_dump_tasks(struct coil_loop *loop, int fd);
/* Tests only: make loops created from now on keep this COIL__WATCH_* kind (COIL__WATCH_NONE:
 * the kernel probe decides again, as by default). */
void coil__stats_force_watch(unsigned kind);
/* The segment's shm name for a pid ("/coil.<pid>"). Inline, like the next one, so that
 * loopstat shares them without linking the runtime. */
static inline void coil__stats_shm_name(char *buf, unsigned long len, long pid)
{
    snprintf(buf, len, "/coil.%ld", pid);
}

/* Field 22 of /proc/<pid>/stat (start time in clock ticks since boot), or 0 if unreadable. */
static inline uint64_t coil__proc_start_time(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    /* The command name (field 2) may hold spaces and parentheses: count from the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p)
        return 0;
    for (int field = 2; field < 22; field++) {
        p = strchr(p + 1, ' ');
        if (!p)
            return 0;
    }
    return strtoull(p + 1, NULL, 10);
}

/* ---- timing mode (debug.c): per-step clock reads, slow-step log, stall watchdog ---- */
void coil__step_begin(struct coil_loop *loop, void *task);
void coil__step_end(struct coil_loop *loop, void *task);
/* Decide timing / stall watching for a new loop from its debug flag and the environment. */
void coil__debug_loop_init(struct coil_loop *loop);
void coil__debug_loop_close(struct coil_loop *loop);
/* stall.c */
void coil__stall_watch(struct coil_loop *loop, uint64_t threshold_ns);
void coil__stall_unwatch(struct coil_loop *loop);

#endif
