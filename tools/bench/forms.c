/* coil-bench: the forms that run a workload as a server runs it (WORKLOADS.md, "The same work,
 * as servers run it"): --loaded keeps one timer armed and one receive in flight on the loop;
 * --hog keeps a nice-19 busy thread on every CPU. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <coil/coil.h>
#include <coil/introspect.h>

#include "bench.h"

/* ---- --loaded ---- */

struct bench_load {
    coil_task *sleeper, *reader;
    coil_stream *stream;
    int peer; /* the socketpair's other end, held open so the read never sees EOF */
};

/* Both tasks end with their error code as a value: a raise would allocate an exception for an
 * outcome that is expected. */
static void *load_sleeper(void *arg)
{
    (void)arg;
    return (void *)(intptr_t)coil_sleep(100);
}

static void *load_reader(void *arg)
{
    char byte;
    size_t got = 0;
    int err = coil_stream_read(arg, &byte, 1, &got);
    return (void *)(intptr_t)(err ? err : -EIO); /* data or EOF: nothing should ever arrive */
}

static void load_free(bench_load *l)
{
    if (l->sleeper)
        coil_task_free(l->sleeper);
    if (l->reader)
        coil_task_free(l->reader);
    if (l->stream)
        coil_stream_free(l->stream);
    if (l->peer >= 0)
        close(l->peer);
    free(l);
}

int bench_load_start(bench_load **out)
{
    coil_loop *loop = coil_get_running_loop();
    bench_load *l = calloc(1, sizeof *l);
    if (!loop || !l) {
        free(l);
        return loop ? -ENOMEM : -EINVAL;
    }
    l->peer = -1;
    coil_loop_stats before, now;
    int err = coil_loop_get_stats(loop, &before);
    int sv[2];
    if (!err && socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        err = -errno;
    if (!err) {
        l->peer = sv[1];
        err = coil_stream_from_fd(sv[0], NULL, &l->stream);
    }
    if (!err)
        err = coil_create_task(&l->sleeper, load_sleeper, NULL, NULL);
    if (!err)
        err = coil_create_task(&l->reader, load_reader, l->stream, NULL);
    /* Yield until the loop's own counters show the timer armed and the receive submitted, so the
     * measured phase starts with both in place, not with them being set up. */
    for (int i = 0; !err; i++) {
        if ((err = coil_sleep(0)) || (err = coil_loop_get_stats(loop, &now)))
            break;
        if (coil_task_done(l->sleeper) || coil_task_done(l->reader))
            err = -EIO;
        else if (now.timers_armed > before.timers_armed && now.ops_inflight > before.ops_inflight)
            break;
        else if (i == 1000)
            err = -ETIMEDOUT;
    }
    if (err) {
        if (l->sleeper)
            coil_task_cancel(l->sleeper, NULL);
        if (l->reader)
            coil_task_cancel(l->reader, NULL);
        if (l->sleeper)
            coil_task_await(l->sleeper, NULL);
        if (l->reader)
            coil_task_await(l->reader, NULL);
        load_free(l);
        return err;
    }
    *out = l;
    return 0;
}

int bench_load_stop(bench_load *l)
{
    if (!l)
        return 0;
    coil_task_cancel(l->sleeper, NULL);
    coil_task_cancel(l->reader, NULL);
    void *rs = NULL, *rr = NULL;
    int es = coil_task_await(l->sleeper, &rs);
    int er = coil_task_await(l->reader, &rr);
    load_free(l);
    if (es || er)
        return es ? es : er;
    /* Each must have been waiting all along, and so ended by the cancel. */
    if ((intptr_t)rs != -ECANCELED || (intptr_t)rr != -ECANCELED)
        return -EIO;
    return 0;
}

/* ---- --hog ---- */

struct bench_hog {
    int n;
    atomic_int stop;
    atomic_int running;
    pthread_t th[];
};

static void *hog_spin(void *arg)
{
    bench_hog *h = arg;
    /* The lowest priority a user can give: the hog takes only what the workload leaves. */
    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), 19);
    atomic_fetch_add(&h->running, 1);
    while (!atomic_load_explicit(&h->stop, memory_order_relaxed))
        ;
    return NULL;
}

int bench_hog_start(bench_hog **out)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return -errno;
    bench_hog *h = calloc(1, sizeof *h + (size_t)CPU_COUNT(&allowed) * sizeof h->th[0]);
    if (!h)
        return -ENOMEM;
    int err = 0;
    for (int cpu = 0; cpu < CPU_SETSIZE && !err; cpu++) {
        if (!CPU_ISSET(cpu, &allowed))
            continue;
        /* Pinned before it first runs: one hog per CPU, never two sharing one. */
        pthread_attr_t attr;
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(cpu, &one);
        pthread_attr_init(&attr);
        pthread_attr_setaffinity_np(&attr, sizeof one, &one);
        err = -pthread_create(&h->th[h->n], &attr, hog_spin, h);
        pthread_attr_destroy(&attr);
        h->n += !err;
    }
    while (!err && atomic_load(&h->running) < h->n)
        sched_yield();
    if (err) {
        bench_hog_stop(h);
        return err;
    }
    *out = h;
    return 0;
}

void bench_hog_stop(bench_hog *h)
{
    if (!h)
        return;
    atomic_store(&h->stop, 1);
    for (int i = 0; i < h->n; i++)
        pthread_join(h->th[i], NULL);
    free(h);
}
