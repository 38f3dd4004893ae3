/* coil core: the per-process shared-memory segment of loop counters (see stats.h for the layout,
 * the update rule and the task-dump handshake). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

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

static coil__stats_seg *create_segment(void)
{
    char name[64];
    pid_t pid = getpid();
    coil__stats_shm_name(name, sizeof name, (long)pid);
    /* A segment under our pid can only be a dead process's leftover (pids are reused). */
    shm_unlink(name);
    int fd = shm_open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0)
        return NULL;
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

static bool in_segment(const coil__loop_stats *p)
{
    return seg && p >= seg->slots && p < seg->slots + COIL__STATS_SLOTS;
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
                /* Claimed before the lock is dropped: another loop starting on another thread
                 * right now must not pick the same slot. */
                __atomic_store_n(&slot->in_use, 1, __ATOMIC_RELEASE);
                break;
            }
        if (slot)
            seg_users++;
    }
    pthread_mutex_unlock(&seg_lock);
    if (!slot) {
        /* No shm (or 256 loops already): count privately, so updates never need a check. */
        slot = calloc(1, sizeof *slot);
        if (!slot)
            abort(); /* a few hundred bytes at loop creation; the loop itself was just allocated */
    }
    __atomic_store_n(&slot->tid, (uint64_t)gettid(), __ATOMIC_RELAXED);
    loop->stats = slot;
}

void coil__stats_detach(coil_loop *loop)
{
    coil__loop_stats *slot = loop->stats;
    loop->stats = NULL;
    if (!slot)
        return;
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

static void serve_dump(coil_loop *loop, uint64_t req)
{
    char path[96];
    snprintf(path, sizeof path, "/tmp/coil.%ld.%llu.tasks", (long)getpid(),
             (unsigned long long)coil__stat_get(&loop->stats->shard));
    coil__stats_dump_tasks(loop, path);
    /* Even a failed dump answers, so loopstat reports "no dump" instead of waiting it out. */
    __atomic_store_n(&loop->stats->dump_resp, req, __ATOMIC_RELEASE);
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
    uint64_t req = __atomic_load_n(&p->dump_req, __ATOMIC_ACQUIRE);
    if (COIL_UNLIKELY(req != p->dump_resp))
        serve_dump(loop, req);
}
