/* loopstat: watch a coil process's event loops live, from the counters each loop publishes in
 * the process's shared-memory segment (/dev/shm/coil.<pid>; the layout is <coil/stats_shm.h>,
 * the only coil header this tool includes: it links no part of the runtime).
 *
 *   loopstat                       list the processes that publish counters (live or stale)
 *   loopstat PID                   a live table, one row per shard (with the backend it runs on:
 *                                  io_uring or epoll), refreshed every second
 *   loopstat --once PID            one table of totals, then exit
 *   loopstat --json PID            one JSON object per shard, one object per line (JSON Lines)
 *   loopstat --prometheus PID      the Prometheus text exposition format (labels pid, shard;
 *                                  coil_loop_info names each loop's backend in a label)
 *   loopstat --tasks PID           ask every loop for its tasks and call graph, print the trees
 *   loopstat --clean               remove this user's stale segments (left by crashed processes)
 *   --interval SECONDS             the live refresh period (default 1)
 *   --timeout SECONDS              how long --tasks waits for each loop (default 5)
 *
 * Exit status 0, or 1 with a one-line message on stderr: no such process, no segment, a segment
 * of another user, something else planted at the segment's name (a FIFO, a device, a symbolic
 * link: opened without blocking and without following, then refused), a stale segment (left by
 * a process that died), a version mismatch.
 *
 * --tasks rings each loop's bell in the segment (a shared futex the loop watches from its ring,
 * so an idle loop wakes for it at once) and reads the answer from the memfd the loop publishes,
 * through /proc/<pid>/fd/<n>: no file name in /tmp or anywhere else (see <coil/stats_shm.h>). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <coil/stats_shm.h>

typedef struct metric {
    const char *name;
    size_t off;
    bool counter;
    const char *help;
    const char *prom;           /* the Prometheus name when it differs: base units (seconds) */
} metric;

#define M(f, c, h) { #f, offsetof(coil_stats_shm_slot, f), c, h, NULL }
#define MS(f, c, h, p) { #f, offsetof(coil_stats_shm_slot, f), c, h, p }
static const metric metrics[] = {
    M(tasks_alive, false, "Tasks created and not yet finished."),
    M(ready_depth, false, "Tasks and callbacks run in the last scheduler batch."),
    M(tasks_created, true, "Tasks created."),
    M(tasks_finished, true, "Tasks finished."),
    M(iterations, true, "Loop iterations."),
    MS(busy_ns, true, "Seconds spent running between two waits in io_uring.", "busy_seconds"),
    MS(wait_ns, true, "Seconds spent blocked in io_uring_enter.", "wait_seconds"),
    M(sqes_submitted, true, "io_uring submission queue entries submitted."),
    M(cqes_reaped, true, "io_uring completion queue entries reaped."),
    M(ops_inflight, false, "io_uring operations whose completion has not arrived."),
    M(timers_armed, false, "Timers in the loop's timer heap."),
    M(msgs_in, true, "Cross-thread messages this loop received."),
    M(msgs_out, true, "Cross-thread messages this loop sent."),
    M(wakeups_from_loops, true, "Wake-ups received from other loops."),
    M(wakeups_from_threads, true, "Wake-ups received from foreign threads."),
    M(wakeups_sent, true, "Wake-ups this loop sent."),
    M(executor_queue, false, "Calls queued on the loop's default executor."),
    M(executor_busy, false, "Executor workers running a call."),
    MS(longest_step_ns, false, "The longest single task step (timing mode).", "longest_step_seconds"),
    M(stacks_in_use, false, "Dedicated task stacks in use."),
    M(stack_bytes, false, "Bytes mapped for task stacks."),
    M(steps_timed, true, "Task steps timed (timing mode)."),
};
#undef M
#undef MS

static uint64_t get(const coil_stats_shm_slot *s, size_t off)
{
    return __atomic_load_n((const uint64_t *)(const void *)((const char *)s + off), __ATOMIC_RELAXED);
}
#define GET(s, f) __atomic_load_n(&(s)->f, __ATOMIC_RELAXED)

_Static_assert(offsetof(coil_stats_shm_slot, backend) % 8 == 0 && sizeof(((coil_stats_shm_slot *)0)->backend) == 16,
               "backend is read as two 64-bit words");

/* The slot's backend name in out (16 bytes), loaded as the words the rest of the slot is; "?"
 * unless it is a plain word, since it is printed inside JSON strings and Prometheus labels. */
static const char *backend_of(const coil_stats_shm_slot *s, char *out)
{
    uint64_t w[2];
    for (int i = 0; i < 2; i++)
        w[i] = __atomic_load_n((const uint64_t *)(const void *)s->backend + i, __ATOMIC_RELAXED);
    memcpy(out, w, 16);
    out[15] = '\0';
    for (const char *p = out; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return "?";
    return *out ? out : "?";
}

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig)
{
    (void)sig;
    interrupted = 1;
}

static int fail(const char *fmt, long pid)
{
    fputs("loopstat: ", stderr);
    fprintf(stderr, fmt, pid);
    fputc('\n', stderr);
    return 1;
}

static bool pid_alive(long pid) { return kill((pid_t)pid, 0) == 0 || errno == EPERM; }

/* Why a segment is not usable (stale, foreign), or NULL if it is fine. */
static const char *segment_problem(const coil_stats_shm_segment *s, long pid)
{
    if (__atomic_load_n(&s->magic, __ATOMIC_ACQUIRE) != COIL_STATS_SHM_MAGIC)
        return "is not a coil counter segment (bad magic)";
    if (s->version != COIL_STATS_SHM_VERSION || s->slot_size != sizeof(coil_stats_shm_slot) ||
        s->nslots != COIL_STATS_SHM_SLOTS)
        return "has another layout version than this loopstat: use the loopstat of the same coil version";
    if ((long)s->pid != pid)
        return "names another pid than its own";
    if (!pid_alive(pid) || (s->start_time && coil_stats_shm_proc_start_time(pid) != s->start_time))
        return "is stale: the process that published it is gone (crashed without removing it)";
    return NULL;
}

typedef struct seg_map {
    coil_stats_shm_segment *s;
} seg_map;

/* The uid a segment of process pid must belong to: the process's filesystem uid, which the
 * kernel gives the files it creates (the Uid: line of /proc/<pid>/status, readable even for a
 * process that is not dumpable), or ours when that cannot be told. */
static uid_t expected_owner(long pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "re");
    uid_t uid = getuid();
    unsigned long r, e, s, fs;
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "Uid: %lu %lu %lu %lu", &r, &e, &s, &fs) == 4) {
            uid = (uid_t)fs;
            break;
        }
    if (f)
        fclose(f);
    return uid;
}

/* Open a segment name without following a link and without blocking (a FIFO planted there would
 * block a plain open for ever), and check it is a regular file of `owner`. Returns the fd, or -1
 * with *why saying what is wrong with what is there, or NULL when nothing could be opened (errno
 * says why then). */
static int open_checked(const char *name, bool writable, uid_t owner, struct stat *st, const char **why)
{
    *why = NULL;
    int fd = shm_open(name, (writable ? O_RDWR : O_RDONLY) | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC, 0);
    if (fd < 0) {
        if (errno == ELOOP)
            *why = "is a symbolic link, not a coil counter segment: refusing it";
        return -1;
    }
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode))
        *why = "is not a regular file (a FIFO or device someone planted?): refusing it";
    else if (st->st_uid != owner)
        *why = "belongs to another user";
    if (*why) {
        close(fd);
        return -1;
    }
    return fd;
}

static int open_segment(long pid, bool writable, seg_map *m)
{
    char name[64];
    coil_stats_shm_name(name, sizeof name, pid);
    struct stat st;
    const char *bad;
    int fd = open_checked(name, writable, expected_owner(pid), &st, &bad);
    if (fd < 0) {
        int e = errno;
        if (bad) {
            fprintf(stderr, "loopstat: /dev/shm/coil.%ld %s\n", pid, bad);
            return 1;
        }
        if (e == EACCES)
            return fail("/dev/shm/coil.%ld belongs to another user", pid);
        if (!pid_alive(pid))
            return fail("no process with pid %ld", pid);
        return fail("process %ld publishes no coil counters (no /dev/shm/coil.<pid>: no loop open?)", pid);
    }
    if ((size_t)st.st_size < sizeof(coil_stats_shm_segment)) {
        close(fd);
        return fail("/dev/shm/coil.%ld has another layout version than this loopstat", pid);
    }
    void *p = mmap(NULL, sizeof(coil_stats_shm_segment), PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return fail("cannot map /dev/shm/coil.%ld", pid);
    m->s = p;
    const char *why = segment_problem(m->s, pid);
    if (why) {
        fprintf(stderr, "loopstat: /dev/shm/coil.%ld %s\n", pid, why);
        munmap(p, sizeof(coil_stats_shm_segment));
        return 1;
    }
    return 0;
}

static void close_segment(seg_map *m) { munmap(m->s, sizeof(coil_stats_shm_segment)); }

static bool slot_live(const coil_stats_shm_slot *s) { return __atomic_load_n(&s->in_use, __ATOMIC_ACQUIRE) != 0; }

/* ---- list ---- */

/* List the segments in /dev/shm, or with `clean`, remove the stale ones of this user. */
static int list_processes(bool clean)
{
    DIR *d = opendir("/dev/shm");
    if (!d)
    {
        fprintf(stderr, "loopstat: cannot read /dev/shm: %s\n", strerror(errno));
        return 1;
    }
    if (!clean)
        printf("%-8s %-6s %-6s %s\n", "PID", "LOOPS", "STATE", "COMMAND");
    struct dirent *e;
    int found = 0;
    while ((e = readdir(d))) {
        char *end;
        if (strncmp(e->d_name, "coil.", 5) != 0)
            continue;
        long pid = strtol(e->d_name + 5, &end, 10);
        if (*end || pid <= 0)
            continue;
        char name[64];
        coil_stats_shm_name(name, sizeof name, pid);
        struct stat st;
        const char *bad;
        int fd = open_checked(name, false, getuid(), &st, &bad);
        if (fd < 0)
            continue;
        void *p = MAP_FAILED;
        if ((size_t)st.st_size >= sizeof(coil_stats_shm_segment))
            p = mmap(NULL, sizeof(coil_stats_shm_segment), PROT_READ, MAP_SHARED, fd, 0);
        close(fd);
        if (p == MAP_FAILED)
            continue;
        coil_stats_shm_segment *s = p;
        const char *why = segment_problem(s, pid);
        unsigned loops = 0;
        if (!why || strstr(why, "stale"))
            for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++)
                loops += slot_live(&s->slots[i]);
        char comm[64] = "?", path[64];
        snprintf(path, sizeof path, "/proc/%ld/comm", pid);
        FILE *f = fopen(path, "r");
        if (f) {
            if (fgets(comm, sizeof comm, f))
                comm[strcspn(comm, "\n")] = '\0';
            fclose(f);
        }
        bool stale = why && strstr(why, "stale");
        if (clean && stale) {
            if (shm_unlink(name) == 0)
                printf("removed %s (pid %ld is gone)\n", name, pid);
        } else if (!clean) {
            printf("%-8ld %-6u %-6s %s\n", pid, loops, !why ? "live" : stale ? "stale" : "bad", stale ? "(gone)" : comm);
            found++;
        }
        munmap(p, sizeof(coil_stats_shm_segment));
    }
    closedir(d);
    if (!found && !clean)
        printf("(no process publishes coil counters)\n");
    return 0;
}

/* ---- snapshots ---- */

static void print_json(const coil_stats_shm_segment *s, long pid)
{
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        const coil_stats_shm_slot *l = &s->slots[i];
        if (!slot_live(l))
            continue;
        char b[16];
        printf("{\"pid\":%ld,\"shard\":%llu,\"tid\":%llu,\"backend\":\"%s\"", pid, (unsigned long long)GET(l, shard),
               (unsigned long long)GET(l, tid), backend_of(l, b));
        for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++)
            printf(",\"%s\":%llu", metrics[m].name, (unsigned long long)get(l, metrics[m].off));
        printf(",\"steps_ns\":%llu,\"step_hist_log2_ns\":[", (unsigned long long)GET(l, steps_ns));
        for (unsigned b = 0; b < COIL_STATS_SHM_HIST; b++)
            printf("%s%llu", b ? "," : "", (unsigned long long)GET(l, step_hist[b]));
        printf("]}\n");
    }
}

static void print_prometheus(const coil_stats_shm_segment *s, long pid)
{
    printf("# HELP coil_loop_info The loop's backend, in the backend label (the value is always 1).\n"
           "# TYPE coil_loop_info gauge\n");
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        const coil_stats_shm_slot *l = &s->slots[i];
        char b[16];
        if (slot_live(l))
            printf("coil_loop_info{pid=\"%ld\",shard=\"%llu\",backend=\"%s\"} 1\n", pid,
                   (unsigned long long)GET(l, shard), backend_of(l, b));
    }
    for (size_t m = 0; m < sizeof metrics / sizeof metrics[0]; m++) {
        const metric *mt = &metrics[m];
        const char *name = mt->prom ? mt->prom : mt->name, *suffix = mt->counter ? "_total" : "";
        printf("# HELP coil_%s%s %s\n# TYPE coil_%s%s %s\n", name, suffix, mt->help, name, suffix,
               mt->counter ? "counter" : "gauge");
        for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
            const coil_stats_shm_slot *l = &s->slots[i];
            if (!slot_live(l))
                continue;
            printf("coil_%s%s{pid=\"%ld\",shard=\"%llu\"} ", name, suffix, pid, (unsigned long long)GET(l, shard));
            if (mt->prom)
                printf("%.9f\n", (double)get(l, mt->off) / 1e9);
            else
                printf("%llu\n", (unsigned long long)get(l, mt->off));
        }
    }
    printf("# HELP coil_step_duration_seconds Task step durations (timing mode).\n"
           "# TYPE coil_step_duration_seconds histogram\n");
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        const coil_stats_shm_slot *l = &s->slots[i];
        if (!slot_live(l))
            continue;
        unsigned long long shard = (unsigned long long)GET(l, shard), cum = 0;
        for (unsigned b = 0; b + 1 < COIL_STATS_SHM_HIST; b++) {
            cum += GET(l, step_hist[b]);
            /* bucket b holds [2^b, 2^(b+1)) ns: its upper bound is the le of the cumulative count */
            printf("coil_step_duration_seconds_bucket{pid=\"%ld\",shard=\"%llu\",le=\"%.9g\"} %llu\n", pid, shard,
                   (double)(1ull << (b + 1)) / 1e9, cum);
        }
        cum += GET(l, step_hist[COIL_STATS_SHM_HIST - 1]);
        printf("coil_step_duration_seconds_bucket{pid=\"%ld\",shard=\"%llu\",le=\"+Inf\"} %llu\n", pid, shard, cum);
        printf("coil_step_duration_seconds_sum{pid=\"%ld\",shard=\"%llu\"} %.9f\n", pid, shard,
               (double)GET(l, steps_ns) / 1e9);
        printf("coil_step_duration_seconds_count{pid=\"%ld\",shard=\"%llu\"} %llu\n", pid, shard, cum);
    }
}

/* ---- the table ---- */

typedef struct snap {
    coil_stats_shm_slot s[COIL_STATS_SHM_SLOTS];
    bool live[COIL_STATS_SHM_SLOTS];
    uint64_t at_ns;
} snap;

static uint64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void take(const coil_stats_shm_segment *seg, snap *sn)
{
    sn->at_ns = mono_ns();
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        sn->live[i] = slot_live(&seg->slots[i]);
        if (sn->live[i])
            for (size_t f = 0; f < sizeof(coil_stats_shm_slot) / 8; f++)
                ((uint64_t *)&sn->s[i])[f] = __atomic_load_n((const uint64_t *)&seg->slots[i] + f, __ATOMIC_RELAXED);
    }
}

static void human_bytes(char *buf, size_t n, uint64_t v)
{
    const char *u[] = { "B", "K", "M", "G", "T" };
    double d = (double)v;
    int i = 0;
    while (d >= 1024 && i < 4) {
        d /= 1024;
        i++;
    }
    snprintf(buf, n, i ? "%.1f%s" : "%.0f%s", d, u[i]);
}

/* With prev: rates over the interval; without: totals since the loop started. */
static void print_table(const snap *cur, const snap *prev, long pid)
{
    double dt = prev ? (double)(cur->at_ns - prev->at_ns) / 1e9 : 0;
    printf("coil pid %ld  %s\n", pid, prev ? "(rates per second over the last interval)" : "(totals)");
    printf("%5s %8s %6s %6s %11s %10s %10s %10s %10s %6s %6s %10s %9s %s\n", "SHARD", "TID", "TASKS", "READY",
           prev ? "ITER/s" : "ITER", prev ? "TASKS/s" : "TASKS", prev ? "OPS/s" : "OPS", prev ? "MSGS/s" : "MSGS",
           "INFLIGHT", "TIMERS", "BUSY%", "STACKS", "MAXSTEP", "BACKEND");
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        if (!cur->live[i])
            continue;
        const coil_stats_shm_slot *c = &cur->s[i];
        const coil_stats_shm_slot *p = prev && prev->live[i] && prev->s[i].tid == c->tid ? &prev->s[i] : NULL;
        double it = (double)c->iterations, tk = (double)c->tasks_finished, ops = (double)c->cqes_reaped,
               msgs = (double)(c->msgs_in + c->msgs_out), busy;
        if (p && dt > 0) {
            it = (double)(c->iterations - p->iterations) / dt;
            tk = (double)(c->tasks_finished - p->tasks_finished) / dt;
            ops = (double)(c->cqes_reaped - p->cqes_reaped) / dt;
            msgs = (double)(c->msgs_in + c->msgs_out - p->msgs_in - p->msgs_out) / dt;
            /* Busy is what was not spent blocked: it counts a loop that never blocks as busy. */
            double waited = (double)(c->wait_ns - p->wait_ns) / 1e9;
            busy = 100.0 * (1.0 - waited / dt);
        } else {
            uint64_t tot = c->busy_ns + c->wait_ns;
            busy = tot ? 100.0 * (double)c->busy_ns / (double)tot : 0;
        }
        if (busy < 0)
            busy = 0;
        char stacks[16], maxstep[16], backend[16];
        human_bytes(stacks, sizeof stacks, c->stack_bytes);
        if (c->flags & COIL_STATS_SHM_SLOT_TIMING)
            snprintf(maxstep, sizeof maxstep, "%.2fms", (double)c->longest_step_ns / 1e6);
        else
            snprintf(maxstep, sizeof maxstep, "-");
        printf("%5llu %8llu %6llu %6llu %11.0f %10.0f %10.0f %10.0f %10llu %6llu %6.1f %10s %9s %s\n",
               (unsigned long long)c->shard, (unsigned long long)c->tid, (unsigned long long)c->tasks_alive,
               (unsigned long long)c->ready_depth, it, tk, ops, msgs, (unsigned long long)c->ops_inflight,
               (unsigned long long)c->timers_armed, busy, stacks, maxstep, backend_of(c, backend));
    }
}

static int live_view(const coil_stats_shm_segment *seg, long pid, double interval)
{
    snap *a = calloc(1, sizeof *a), *b = calloc(1, sizeof *b);
    if (!a || !b) {
        free(a);
        free(b);
        fprintf(stderr, "loopstat: out of memory\n");
        return 1;
    }
    signal(SIGINT, on_sigint);
    take(seg, a);
    int rc = 0;
    while (!interrupted) {
        struct timespec ts = { (time_t)interval, (long)((interval - (double)(time_t)interval) * 1e9) };
        nanosleep(&ts, NULL);
        if (interrupted)
            break;
        if (!pid_alive(pid)) {
            fprintf(stderr, "loopstat: process %ld exited\n", pid);
            rc = 1;
            break;
        }
        take(seg, b);
        printf("\033[H\033[2J");
        print_table(b, a, pid);
        fflush(stdout);
        snap *t = a;
        a = b;
        b = t;
    }
    free(a);
    free(b);
    return rc;
}

/* ---- tasks ---- */

static long futex(uint32_t *word, int op, uint32_t val, const struct timespec *ts)
{
    return syscall(SYS_futex, word, op, val, ts, NULL, 0);
}

/* Wake the loop's watch on its bell (a shared futex: the loop is another process). */
static void ring(coil_stats_shm_slot *l)
{
    __atomic_fetch_add(&l->bell, 1, __ATOMIC_RELEASE);
    futex(&l->bell, FUTEX_WAKE, INT_MAX, NULL);
}

static void ask(coil_stats_shm_slot *l, uint64_t *want)
{
    /* The loop is the only other writer of this slot, and it never writes dump_req. */
    *want = __atomic_load_n(&l->dump_req, __ATOMIC_RELAXED) + 1;
    __atomic_store_n(&l->dump_req, *want, __ATOMIC_RELEASE);
    ring(l);
}

/* Wait until the loop has answered request `want` (or closed, or the deadline passed), asleep on
 * its resp_bell. */
static bool wait_answer(coil_stats_shm_slot *l, uint64_t want, uint64_t deadline)
{
    for (;;) {
        uint32_t rb = __atomic_load_n(&l->resp_bell, __ATOMIC_ACQUIRE);
        if (!slot_live(l))
            return false;
        if (__atomic_load_n(&l->dump_resp, __ATOMIC_ACQUIRE) >= want)
            return true;
        uint64_t now = mono_ns();
        if (now >= deadline)
            return false;
        struct timespec ts = { (time_t)((deadline - now) / 1000000000u), (long)((deadline - now) % 1000000000u) };
        futex(&l->resp_bell, FUTEX_WAIT, rb, &ts);
    }
}

/* Copy the loop's answer (its memfd, reached through /proc/<pid>/fd/<n>) to stdout. 0 when
 * printed; 1 when the answer is gone (another loopstat's acknowledgement closed it, or the fd
 * number now names another file): ask again; -1 with a message on a real failure. */
static int print_answer(coil_stats_shm_slot *l, long pid, unsigned long long shard)
{
    uint64_t resp = __atomic_load_n(&l->dump_resp, __ATOMIC_ACQUIRE);
    int64_t answer = __atomic_load_n(&l->dump_fd, __ATOMIC_RELAXED);
    uint64_t ino = __atomic_load_n(&l->dump_ino, __ATOMIC_RELAXED);
    if (answer == -ENOENT)
        return 1;
    if (answer < 0) {
        fprintf(stderr, "loopstat: shard %llu could not write its task dump: %s\n", shard, strerror((int)-answer));
        return -1;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/fd/%lld", pid, (long long)answer);
    int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return 1;
        fprintf(stderr, "loopstat: cannot open shard %llu's task dump (%s): %s\n", shard, path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_ino != ino) {
        close(fd);
        return 1;
    }
    char buf[8192];
    ssize_t n;
    off_t off = 0;
    while ((n = pread(fd, buf, sizeof buf, off)) > 0) {
        fwrite(buf, 1, (size_t)n, stdout);
        off += n;
    }
    close(fd);
    /* Read: the loop may close it now. */
    __atomic_store_n(&l->dump_ack, resp, __ATOMIC_RELEASE);
    ring(l);
    return 0;
}

static int dump_tasks(coil_stats_shm_segment *seg, long pid, double timeout)
{
    int asked = 0, rc = 0;
    uint64_t want[COIL_STATS_SHM_SLOTS] = { 0 };
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        coil_stats_shm_slot *l = &seg->slots[i];
        if (!slot_live(l))
            continue;
        ask(l, &want[i]);
        asked++;
    }
    if (!asked) {
        printf("(no loop is open in process %ld)\n", pid);
        return 0;
    }
    uint64_t deadline = mono_ns() + (uint64_t)(timeout * 1e9);
    for (unsigned i = 0; i < COIL_STATS_SHM_SLOTS; i++) {
        if (!want[i])
            continue;
        coil_stats_shm_slot *l = &seg->slots[i];
        unsigned long long shard = (unsigned long long)GET(l, shard);
        int got = 1;
        while (got == 1) {
            if (!wait_answer(l, want[i], deadline))
                break;
            got = print_answer(l, pid, shard);
            if (got == 1)
                ask(l, &want[i]); /* the answer went away before we read it: a fresh one */
        }
        if (!slot_live(l))
            continue; /* the loop closed meanwhile */
        if (got < 0) {
            rc = 1;
        } else if (got == 1) {
            fprintf(stderr, "loopstat: shard %llu of process %ld did not answer within %.1f s (blocked in a step?)\n",
                    shard, pid, timeout);
            rc = 1;
        }
    }
    return rc;
}

static void usage(FILE *f)
{
    fputs("usage: loopstat [--once | --json | --prometheus | --tasks] [--interval S] [--timeout S] [PID]\n"
          "       loopstat --clean\n"
          "  no PID: list the processes that publish coil counters\n"
          "  --clean removes this user's stale segments (left by processes that died)\n"
          "  --json prints one JSON object per shard, one per line (JSON Lines)\n",
          f);
}

int main(int argc, char **argv)
{
    enum { LIVE, ONCE, JSON, PROM, TASKS, CLEAN } mode = LIVE;
    double interval = 1.0, timeout = 5.0;
    long pid = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--once"))
            mode = ONCE;
        else if (!strcmp(a, "--json"))
            mode = JSON;
        else if (!strcmp(a, "--prometheus"))
            mode = PROM;
        else if (!strcmp(a, "--tasks"))
            mode = TASKS;
        else if (!strcmp(a, "--clean"))
            mode = CLEAN;
        else if ((!strcmp(a, "--interval") || !strcmp(a, "--timeout")) && i + 1 < argc) {
            double v = strtod(argv[++i], NULL);
            if (!(v > 0)) {
                fprintf(stderr, "loopstat: %s needs a positive number of seconds\n", a);
                return 1;
            }
            *(a[2] == 'i' ? &interval : &timeout) = v;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else {
            char *end;
            long v = strtol(a, &end, 10);
            if (*a == '-' || *end || v <= 0 || pid) {
                usage(stderr);
                return 1;
            }
            pid = v;
        }
    }
    if (!pid) {
        if (mode != LIVE && mode != CLEAN) {
            usage(stderr);
            return 1;
        }
        return list_processes(mode == CLEAN);
    }
    if (mode == CLEAN) {
        usage(stderr);
        return 1;
    }
    seg_map m = { NULL };
    if (open_segment(pid, mode == TASKS, &m))
        return 1;
    int rc = 0;
    switch (mode) {
    case JSON:
        print_json(m.s, pid);
        break;
    case PROM:
        print_prometheus(m.s, pid);
        break;
    case TASKS:
        rc = dump_tasks(m.s, pid, timeout);
        break;
    case ONCE: {
        snap *sn = calloc(1, sizeof *sn);
        if (!sn) {
            rc = 1;
            break;
        }
        take(m.s, sn);
        print_table(sn, NULL, pid);
        free(sn);
        break;
    }
    case LIVE:
        rc = live_view(m.s, pid, interval);
        break;
    case CLEAN:
        break;
    }
    close_segment(&m);
    fflush(stdout);
    return rc;
}
