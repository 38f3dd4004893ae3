/* coil core: the counters every loop publishes, and the shared-memory segment that holds them.
 *
 * The segment's layout, its name rule and the task-dump protocol are public:
 * include/coil/stats_shm.h, plain data any tool can read. tools/loopstat includes that header
 * and no part of the runtime, and links no coil library. This file holds the runtime's side:
 * the update macros and the functions that attach a loop's slot and answer task dumps.
 *
 * Why counters are plain relaxed loads and stores, not atomic adds: each slot has exactly one
 * writer, its loop's thread, so an update is a load and a store to a line that thread owns (no
 * lock prefix, no contention); readers in other processes see each value whole, perhaps a little
 * stale, which is all a monitor needs.
 *
 * A loop keeps a watch on its slot's bell in its ring (IORING_OP_FUTEX_WAIT), so even a loop
 * blocked with nothing to do wakes for a task-dump request, and only for it; it also looks at
 * dump_req once per scheduler iteration, so a busy loop answers without the watch. Where the
 * kernel has no IORING_OP_FUTEX_WAIT (before 6.7), the watch is a one-second timeout instead.
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

#include "coil/stats_shm.h"

/* The runtime's names for the public layout (coil/stats_shm.h). */
#define COIL__STATS_MAGIC COIL_STATS_SHM_MAGIC
#define COIL__STATS_VERSION COIL_STATS_SHM_VERSION
#define COIL__STATS_SLOTS COIL_STATS_SHM_SLOTS
#define COIL__STATS_HIST COIL_STATS_SHM_HIST
typedef coil_stats_shm_slot coil__loop_stats; /* as internal.h names it */
typedef coil_stats_shm_segment coil__stats_seg;
enum {
    COIL__SLOT_TIMING = COIL_STATS_SHM_SLOT_TIMING,
    COIL__SLOT_DEBUG = COIL_STATS_SHM_SLOT_DEBUG,
    COIL__SLOT_STALL = COIL_STATS_SHM_SLOT_STALL,
};
enum {
    COIL__WATCH_NONE = COIL_STATS_SHM_WATCH_NONE,
    COIL__WATCH_FUTEX = COIL_STATS_SHM_WATCH_FUTEX,
    COIL__WATCH_TIMER = COIL_STATS_SHM_WATCH_TIMER,
};
#define coil__stats_shm_name coil_stats_shm_name
#define coil__proc_start_time coil_stats_shm_proc_start_time

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
