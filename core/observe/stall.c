/* coil core: the stall detector. One watchdog thread per process polls the watched loops' slots
 * every few milliseconds; a step that started longer ago than the loop's threshold is a stall.
 * The report names the shard and the task, and comes with a backtrace of the stalled thread,
 * which only that thread can take: the watchdog sends it SIGURG, whose handler prints the
 * report and the backtrace with async-signal-safe calls only (write, backtrace_symbols_fd). */
#include <errno.h>
#include <execinfo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"
#include "observe/stats.h"

enum { POLL_NS = 2000000, MAX_WATCHED = 256, REPORTS_PER_MINUTE = 5, MAX_FRAMES = 64 };

typedef struct watched {
    coil__loop_stats *slot;
    uint64_t threshold_ns;
    uint64_t reported_start;    /* the step already reported, so one stall gives one report */
} watched;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static watched list[MAX_WATCHED];
static unsigned nwatched;
static bool running, stopping;
static pthread_t thread;
static uint64_t window_start, window_reports;
static struct sigaction old_action;

static void put(const char *s) { (void)!write(STDERR_FILENO, s, strlen(s)); }

/* Async-signal-safe unsigned to text. */
static void put_u64(uint64_t v)
{
    char buf[24];
    int i = (int)sizeof buf;
    buf[--i] = '\0';
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v && i > 0);
    put(buf + i);
}

/* Runs on the stalled loop's thread. Only reads what that thread itself owns. */
static void on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    coil_loop *loop = coil__tls_running;
    if (loop && loop->stats) {
        uint64_t start = __atomic_load_n(&loop->stats->step_start_ns, __ATOMIC_ACQUIRE);
        coil_task *t = loop->current;
        if (start) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            uint64_t now = (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
            put("coil: stall: shard ");
            put_u64(__atomic_load_n(&loop->stats->shard, __ATOMIC_RELAXED));
            put(": task '");
            put(t && t->ext && t->ext->name ? t->ext->name : "(unnamed)");
            put("'");
            if (t && t->ext && t->ext->file) {
                put(" (created at ");
                put(t->ext->file);
                put(":");
                put_u64((uint64_t)t->ext->line);
                put(")");
            }
            put(" has run for ");
            put_u64(now > start ? (now - start) / 1000000u : 0);
            put(" ms without returning to the loop; backtrace:\n");
            void *frames[MAX_FRAMES];
            int n = backtrace(frames, MAX_FRAMES);
            backtrace_symbols_fd(frames, n, STDERR_FILENO);
        }
    }
    errno = saved;
}

static bool rate_ok(uint64_t now)
{
    if (now - window_start > 60000000000ull) {
        window_start = now;
        window_reports = 0;
    }
    return window_reports++ < REPORTS_PER_MINUTE;
}

static void *watchdog(void *arg)
{
    (void)arg;
    pid_t pid = getpid();
    pthread_mutex_lock(&lock);
    while (!stopping) {
        uint64_t now = coil__now_ns();
        for (unsigned i = 0; i < nwatched; i++) {
            watched *w = &list[i];
            uint64_t start = __atomic_load_n(&w->slot->step_start_ns, __ATOMIC_ACQUIRE);
            if (!start || start == w->reported_start || now < start || now - start <= w->threshold_ns)
                continue;
            w->reported_start = start;
            if (!rate_ok(now))
                continue;
            pid_t tid = (pid_t)__atomic_load_n(&w->slot->tid, __ATOMIC_RELAXED);
            syscall(SYS_tgkill, pid, tid, SIGURG);
        }
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += POLL_NS;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        pthread_cond_timedwait(&cond, &lock, &ts);
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static bool start_locked(void)
{
    if (running)
        return true;
    /* backtrace() loads libgcc on first use, which is not async-signal-safe: do it here. */
    void *frame[2];
    backtrace(frame, 2);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, &old_action) != 0)
        return false;
    stopping = false;
    /* The watchdog must not take the signals meant for loop threads. */
    sigset_t all, prev;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &prev);
    int err = pthread_create(&thread, NULL, watchdog, NULL);
    pthread_sigmask(SIG_SETMASK, &prev, NULL);
    if (err) {
        sigaction(SIGURG, &old_action, NULL);
        return false;
    }
    running = true;
    return true;
}

void coil__stall_watch(coil_loop *loop, uint64_t threshold_ns)
{
    pthread_mutex_lock(&lock);
    if (nwatched < MAX_WATCHED && start_locked()) {
        list[nwatched++] = (watched){ .slot = loop->stats, .threshold_ns = threshold_ns };
        loop->stall_ns = threshold_ns;
    }
    pthread_mutex_unlock(&lock);
}

void coil__stall_unwatch(coil_loop *loop)
{
    bool join = false;
    pthread_t th;
    pthread_mutex_lock(&lock);
    for (unsigned i = 0; i < nwatched; i++)
        if (list[i].slot == loop->stats) {
            list[i] = list[--nwatched];
            break;
        }
    loop->stall_ns = 0;
    if (!nwatched && running) {
        stopping = true;
        running = false;
        join = true;
        th = thread;
        pthread_cond_signal(&cond);
    }
    pthread_mutex_unlock(&lock);
    if (join) {
        pthread_join(th, NULL);
        sigaction(SIGURG, &old_action, NULL);
    }
}
