/* coil: the shared-memory counters every event loop publishes, as plain data that any tool in
 * any language can read (tools/loopstat is one such tool; it includes this header and links no
 * part of the coil runtime). Nothing here needs the runtime: the layout, its constants, and two
 * small inline helpers that name the segment and check whose it is.
 *
 * The segment. One per process, the POSIX shared-memory object "/coil.<pid>" (<pid> in decimal;
 * on Linux the file /dev/shm/coil.<pid>), mode 0600, created by the process's first loop with
 * O_EXCL and removed when its last loop closes (and at exit). A process that finds the name
 * taken by anything but its user's own leftover regular file leaves it alone and keeps its
 * counters privately. A segment may be left behind by a process that crashed.
 *
 * Reading it. Open the name without following links and without blocking, check that it is a
 * regular file of the process's user and at least sizeof(coil_stats_shm_segment) bytes, map it,
 * then check, in this order: magic (loaded with acquire: it is written last, once the header is
 * complete), version, slot_size and nslots (a mismatch means another layout: refuse it), pid,
 * and start_time against the live process (coil_stats_shm_proc_start_time), which tells a live
 * segment from a stale one whose pid has been reused. A slot is live while its in_use is
 * non-zero (loaded with acquire).
 *
 * Counters and gauges are plain 64-bit words, each written by one thread only (its loop's) with
 * relaxed atomic stores: load them with relaxed atomic loads (a naturally aligned 64-bit load
 * on the platforms coil runs on) and each value is whole, perhaps a little stale. Counters only
 * grow while a slot is live; gauges are refreshed once per scheduler iteration. Durations are
 * nanoseconds of CLOCK_MONOTONIC. The one text field, backend, is written once, before the slot's
 * in_use, so a reader that saw in_use (with acquire) reads it whole.
 *
 * The task-dump protocol: ask a loop for its task list and call graph, through no file name at
 * all (a name in /tmp or /dev/shm is one another local user could plant a FIFO or a symbolic
 * link at). The reader maps the segment read-write for this, and writes only dump_req, dump_ack
 * and bell:
 *  1. store dump_req + 1 into dump_req with release (the loop never writes it), then ring the
 *     slot's bell: increment `bell` and FUTEX_WAKE it. The futex is a shared one (no
 *     FUTEX_PRIVATE_FLAG), since the reader is another process.
 *  2. The loop hears the bell (`watch` says how) or sees dump_req at its next iteration, writes
 *     its dump as text into a fresh memfd, stores dump_fd (the fd number in its own process,
 *     or -errno when it could not answer) and dump_ino (that file's inode number), then stores
 *     dump_resp = dump_req with release, then increments resp_bell and FUTEX_WAKEs it.
 *  3. The reader waits on resp_bell (FUTEX_WAIT with a timeout) until dump_resp, loaded with
 *     acquire, reaches its request, opens /proc/<pid>/fd/<dump_fd> (the kernel allows that only
 *     to those who may read the process's memory), checks that it is a regular file whose inode
 *     is dump_ino, reads it, then stores dump_ack = dump_resp and rings the bell again: the
 *     loop closes the memfd. An answer nobody acknowledges is dropped at the next request or
 *     when the loop closes; dump_fd is then -ENOENT, and a reader that found it gone (or the
 *     inode changed) asks again.
 *
 * Versioning: any change of the bytes below changes COIL_STATS_SHM_VERSION (and slot_size says
 * the slot's size), so a reader of another version refuses the segment instead of misreading
 * it. New fields take the spare words, and the version changes then too.
 *
 * Thread safety: the helpers below touch no shared state; they may be called from any thread. */
#ifndef COIL_STATS_SHM_H
#define COIL_STATS_SHM_H

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifdef __cplusplus
extern "C" {
#endif

#define COIL_STATS_SHM_MAGIC 0x5441545333494f43ull /* the bytes "COI3STAT" on a little-endian CPU */
#define COIL_STATS_SHM_VERSION 3u
#define COIL_STATS_SHM_SLOTS 256u /* slots in a segment: at most this many loops publish at once */
#define COIL_STATS_SHM_HIST 40u   /* step-duration buckets: bucket i counts steps of [2^i, 2^(i+1)) ns */

/* Bits of coil_stats_shm_slot.flags: the modes the loop runs in. */
enum {
    COIL_STATS_SHM_SLOT_TIMING = 1, /* timing mode: steps are timed (longest_step_ns, step_hist...) */
    COIL_STATS_SHM_SLOT_DEBUG = 2,  /* debug mode (COIL_DEBUG=1 or the loop's option) */
    COIL_STATS_SHM_SLOT_STALL = 4,  /* the stall detector watches this loop */
};

/* Values of coil_stats_shm_slot.watch: how a loop hears its bell. */
enum {
    COIL_STATS_SHM_WATCH_NONE = 0,  /* not at all: the slot is private (no segment), or not yet */
    COIL_STATS_SHM_WATCH_FUTEX = 1, /* a futex wait in its ring: even an idle loop wakes at once */
    COIL_STATS_SHM_WATCH_TIMER = 2, /* kernels without a futex wait in io_uring: it looks once a second */
};

/* One loop's slot: 64-bit words unless said otherwise, written by the loop's thread. */
typedef struct coil_stats_shm_slot {
    uint64_t in_use;               /* 0 = free; set with release once the slot is initialised */
    uint64_t shard;                /* the shard id (the slot index unless a runtime sets it) */
    uint64_t tid;                  /* the loop thread's kernel thread id */
    uint64_t tasks_alive;          /* gauge: tasks created and not yet finished */
    uint64_t ready_depth;          /* gauge: tasks and callbacks in the last scheduler batch */
    uint64_t tasks_created;        /* counter: tasks created */
    uint64_t tasks_finished;       /* counter: tasks finished */
    uint64_t iterations;           /* counter: loop iterations */
    uint64_t busy_ns;              /* counter: time running between two waits */
    uint64_t wait_ns;              /* counter: time blocked waiting for I/O, timers or messages */
    uint64_t sqes_submitted;       /* counter: io_uring submission entries submitted */
    uint64_t cqes_reaped;          /* counter: io_uring completion entries reaped */
    uint64_t ops_inflight;         /* gauge: operations whose completion has not arrived */
    uint64_t timers_armed;         /* gauge: timers armed on the loop */
    uint64_t msgs_in;              /* counter: cross-thread messages this loop received */
    uint64_t msgs_out;             /* counter: cross-thread messages this loop sent */
    uint64_t wakeups_from_loops;   /* counter: wake-ups received asleep, from another loop */
    uint64_t wakeups_from_threads; /* counter: wake-ups received asleep, from a foreign thread */
    uint64_t wakeups_sent;         /* counter: wake-ups this loop sent to sleeping loops */
    uint64_t executor_queue;       /* gauge: calls queued on the loop's default executor */
    uint64_t executor_busy;        /* gauge: executor workers running a call */
    uint64_t longest_step_ns;      /* timing mode: the longest single task step */
    uint64_t stacks_in_use;        /* gauge: dedicated task stacks in use */
    uint64_t stack_bytes;          /* gauge: bytes mapped for task stacks */
    uint64_t steps_timed;          /* timing mode, counter: steps counted in step_hist */
    uint64_t steps_ns;             /* timing mode, counter: their total duration */
    uint64_t step_hist[COIL_STATS_SHM_HIST]; /* timing mode, counters: steps by duration */
    uint64_t step_start_ns;        /* timing mode: when the step in progress began (release), 0 = none */
    uint64_t step_task;            /* timing mode: an opaque id of that step's task, 0 = none */
    uint64_t flags;                /* COIL_STATS_SHM_SLOT_* */
    uint64_t last_wake_ns;         /* when the loop last came back from a wait */
    /* the task-dump protocol (above) */
    uint64_t dump_req;             /* the reader: the request it wants answered */
    uint64_t dump_resp;            /* the loop (release): the last request answered */
    uint64_t dump_ack;             /* the reader: the last answer it has read */
    int64_t dump_fd;               /* the loop: the memfd in its process holding the answer, or -errno */
    uint64_t dump_ino;             /* the loop: that memfd's inode number */
    uint32_t bell;                 /* futex word: the reader rings it after writing dump_req or dump_ack */
    uint32_t resp_bell;            /* futex word: the loop rings it after writing dump_resp */
    uint32_t watch;                /* COIL_STATS_SHM_WATCH_*: how the loop hears the bell */
    uint32_t spare32;              /* zero */
    char backend[16];              /* the loop's backend, "io_uring" or "epoll" (as coil_loop_backend
                                    * names it), NUL-padded; written before in_use, never after */
} coil_stats_shm_slot;

/* The segment: this header, then the slots. */
typedef struct coil_stats_shm_segment {
    uint64_t magic;                /* COIL_STATS_SHM_MAGIC, written last with release */
    uint32_t version;              /* COIL_STATS_SHM_VERSION */
    uint32_t slot_size;            /* sizeof(coil_stats_shm_slot) */
    uint32_t nslots;               /* COIL_STATS_SHM_SLOTS */
    uint32_t uid;                  /* the real uid of the publishing process */
    uint64_t pid;                  /* the publishing process */
    uint64_t start_time;           /* field 22 of /proc/<pid>/stat (ticks since boot), 0 = unknown */
    uint64_t spare[4];             /* zero */
    coil_stats_shm_slot slots[COIL_STATS_SHM_SLOTS];
} coil_stats_shm_segment;

/* The bytes a reader in another language must match. */
#ifdef __cplusplus
static_assert(sizeof(coil_stats_shm_slot) == 632, "the slot layout changed: bump COIL_STATS_SHM_VERSION");
static_assert(sizeof(coil_stats_shm_segment) == 72 + 632 * COIL_STATS_SHM_SLOTS,
              "the segment layout changed: bump COIL_STATS_SHM_VERSION");
#else
_Static_assert(sizeof(coil_stats_shm_slot) == 632, "the slot layout changed: bump COIL_STATS_SHM_VERSION");
_Static_assert(sizeof(coil_stats_shm_segment) == 72 + 632 * COIL_STATS_SHM_SLOTS,
               "the segment layout changed: bump COIL_STATS_SHM_VERSION");
#endif

/* Write the segment's shm name for process pid ("/coil.<pid>") into buf (len bytes, truncated
 * to fit). Does not suspend; never fails; thread-safe. */
static inline void coil_stats_shm_name(char *buf, unsigned long len, long pid)
{
    snprintf(buf, len, "/coil.%ld", pid);
}

/* Process pid's start time: field 22 of /proc/<pid>/stat (clock ticks since boot), what a
 * segment's start_time must equal for the segment to be that process's. Returns 0 when it
 * cannot be read (no such process, no /proc). Does not suspend; thread-safe. */
static inline uint64_t coil_stats_shm_proc_start_time(long pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
#ifdef O_CLOEXEC /* hidden by a strict -std=c11 without POSIX feature macros */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
#else
    int fd = open(path, O_RDONLY);
#endif
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

#ifdef __cplusplus
}
#endif

#endif
