/* coil-bench: the shards workloads: threadsafe (run_coroutine_threadsafe from a foreign thread)
 * and threadsafe_idle (the same to a loop that sleeps whenever its inbox is empty), to_thread
 * (offloads to the default executor), shard_pingpong (cross-shard round trips) and
 * shard_scaling (the spawn workload on 1..N shards at once). */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil/coil.h>

#include "bench.h"

static void *ret_arg(void *arg) { return arg; }

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* ---- threadsafe ---- */

struct ts_ctx {
    coil_loop *loop;
    long n, rounds;
    bool idle;                    /* threadsafe_idle: nothing spins on the loop */
    uint64_t pause_ns;            /* the producer's pause before each round trip */
    uint64_t submit_ns;           /* submit all, then wait for all */
    uint64_t submit_only_ns;      /* the submitting loop alone */
    uint64_t faults;              /* page faults while submitting and waiting */
    double median_rt_us, p99_rt_us;
    int err;
    coil_future *done;            /* set on the loop when the producer has finished */
};

static int producer_done(void *arg)
{
    struct ts_ctx *c = arg;
    coil_future_set_result(c->done, NULL);
    return 0;
}

/* Submit n coroutines, then wait for all of them; the time at which the last submission went
 * out is *t_submitted. */
static int submit_all(coil_loop *loop, long n, coil_cfuture **cfs, uint64_t *t_submitted)
{
    long submitted = 0, sum = 0;
    int err = 0;
    while (!err && submitted < n) {
        err = coil_run_coroutine_threadsafe(loop, ret_arg, (void *)(intptr_t)submitted, &cfs[submitted]);
        submitted += !err;
    }
    *t_submitted = bench_now_ns();
    for (long i = 0; i < submitted; i++) {
        void *r = NULL;
        if (!err)
            err = coil_cfuture_result(cfs[i], -1, &r);
        sum += (long)(intptr_t)r;
        coil_cfuture_free(cfs[i]);
    }
    return !err && sum != n * (n - 1) / 2 ? -EIO : err;
}

/* The producer works on locals and writes its figures into the context only at the end: the
 * context sits on the loop thread's stack, on the line of the future the loop's waiter polls
 * every iteration, and a store there per submission made both threads trade that line. */
static void *ts_producer(void *arg)
{
    struct ts_ctx *c = arg;
    coil_loop *loop = c->loop;
    const long n = c->n, rounds = c->rounds;
    const uint64_t pause_ns = c->pause_ns;
    coil_cfuture **cfs = malloc((size_t)n * sizeof *cfs);
    uint64_t *rt = malloc((size_t)rounds * sizeof *rt);
    int err = cfs && rt ? 0 : -ENOMEM;
    uint64_t t0 = 0, t_submitted = 0, t_done = 0, faults = 0;
    /* Warm-up: one round of the same N, so the measured round runs from memory the process has
     * already touched (the futures, the loop's task pool, the array of handles) rather than
     * timing first-touch faults. */
    if (!err)
        err = submit_all(loop, n, cfs, &t_submitted);
    if (!err) {
        uint64_t f0 = bench_faults();
        t0 = bench_now_ns();
        err = submit_all(loop, n, cfs, &t_submitted);
        t_done = bench_now_ns();
        faults = bench_faults() - f0;
    }
    for (long i = 0; i < rounds && !err; i++) {
        coil_cfuture *cf;
        uint64_t a = bench_now_ns();
        /* A pause on the clock, not a sleep: it lets the loop go to sleep while the producer
         * keeps its CPU, so the round trip times the loop's wake-up and not the producer's. */
        for (uint64_t until = a + pause_ns; pause_ns && (a = bench_now_ns()) < until;) {
        }
        if ((err = coil_run_coroutine_threadsafe(loop, ret_arg, NULL, &cf)))
            break;
        err = coil_cfuture_result(cf, -1, NULL);
        rt[i] = bench_now_ns() - a;
        coil_cfuture_free(cf);
    }
    if (!err) {
        qsort(rt, (size_t)rounds, sizeof *rt, cmp_u64);
        c->median_rt_us = (double)rt[rounds / 2] / 1e3;
        c->p99_rt_us = (double)rt[rounds * 99 / 100] / 1e3;
        c->submit_only_ns = t_submitted - t0;
        c->submit_ns = t_done - t0;
        c->faults = faults;
    }
    c->err = err;
    free(cfs);
    free(rt);
    coil_loop_call_soon_threadsafe(loop, producer_done, c);
    return NULL;
}

/* Thread-per-core placement: the loop keeps the CPU it is on and the producer gets another one
 * of the process's. Left to the scheduler, a new thread sometimes starts on its creator's CPU
 * and stays there for tens of milliseconds, which is the whole measurement. */
static void place_threads(pthread_t producer)
{
    cpu_set_t allowed, one;
    int here = sched_getcpu();
    if (here < 0 || sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < 2)
        return;
    for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
        if (cpu != here && CPU_ISSET(cpu, &allowed)) {
            CPU_ZERO(&one);
            CPU_SET(cpu, &one);
            pthread_setaffinity_np(producer, sizeof one, &one);
            CPU_ZERO(&one);
            CPU_SET(here, &one);
            pthread_setaffinity_np(pthread_self(), sizeof one, &one);
            return;
        }
}

static void *ts_main(void *arg)
{
    struct ts_ctx *c = arg;
    bench_note_loop();
    c->loop = coil_get_running_loop();
    coil_future_new(&c->done);
    pthread_t th;
    if (pthread_create(&th, NULL, ts_producer, c) != 0)
        return coil_raise(-EAGAIN, "thread");
    place_threads(th);
    int err = 0;
    if (c->idle) /* the loop sleeps whenever its inbox is empty, as an idle server's does */
        err = coil_future_await(c->done, NULL);
    else /* a spinning waiter keeps the loop awake, as a busy server loop would be */
        while (!coil_future_done(c->done))
            coil_sleep(0);
    pthread_join(th, NULL);
    coil_future_free(c->done);
    return err ? coil_raise(err, "waiting for the producer") : NULL;
}

static int threadsafe_run(const bench_args *a, long *n, bench_result *out, bool idle)
{
    struct ts_ctx c = { .n = a->n, .rounds = 10000, .idle = idle, .pause_ns = idle ? 20000 : 0 };
    int err;
    if (a->mode && strcmp(a->mode, "nospin") == 0) {
        /* The loop sleeps as soon as its inbox is empty, without the adaptive spin first: the
         * round trip then times a real wake-up of a sleeping loop. */
        coil_runtime *rt;
        if ((err = coil_runtime_new(&rt, &(coil_runtime_opts){ .shards = 1, .spin_us = -1 })))
            return err;
        err = coil_runtime_run(rt, ts_main, &c, NULL);
        coil_runtime_free(rt);
    } else {
        err = coil_run(ts_main, &c, NULL);
    }
    if (!err)
        err = c.err;
    if (err)
        return err;
    *n = a->n;
    out->metric = "ns_per_submission";
    out->unit = "ns";
    out->value = (double)c.submit_ns / (double)a->n;
    bench_extra(out, "round_trip_median_us", c.median_rt_us);
    bench_extra(out, "round_trip_p99_us", c.p99_rt_us);
    bench_extra(out, "submit_only_ns", (double)c.submit_only_ns / (double)a->n);
    bench_faults_per_op(out, 0, c.faults, a->n);
    return 0;
}

static int threadsafe(const bench_args *a, long *n, bench_result *out)
{
    return threadsafe_run(a, n, out, false);
}
COIL_BENCH_WORKLOAD_FORMS(threadsafe, threadsafe, 100000, BENCH_FORM_HOG, 0,
                          "a foreign thread submits N coroutines with run_coroutine_threadsafe, waits all (ns each)")

static int threadsafe_idle(const bench_args *a, long *n, bench_result *out)
{
    return threadsafe_run(a, n, out, true);
}
COIL_BENCH_WORKLOAD_FORMS(threadsafe_idle, threadsafe_idle, 100000, BENCH_FORM_HOG, 0,
                          "threadsafe to a loop asleep when its inbox is empty; round trips 20 us apart (ns each);\n"
                          "                   --mode nospin: the loop sleeps without spinning first")

/* ---- to_thread ---- */

struct tt_ctx {
    long n;
    long next;
    uint64_t ns;
};

static void *trivial(void *arg) { return arg; }

static void *tt_worker(void *arg)
{
    struct tt_ctx *c = arg;
    while (c->next < c->n) {
        long i = c->next++;
        void *r;
        int err = coil_to_thread(trivial, (void *)(intptr_t)i, &r);
        if (err || (intptr_t)r != i)
            return coil_raise(err ? err : -EIO, "to_thread %ld", i);
    }
    return NULL;
}

static void *tt_main(void *arg)
{
    struct tt_ctx *c = arg;
    bench_note_loop();
    enum { INFLIGHT = 64 };
    coil_task *ts[INFLIGHT];
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < INFLIGHT; i++)
        coil_create_task(&ts[i], tt_worker, c, NULL);
    int failed = 0;
    for (int i = 0; i < INFLIGHT; i++) {
        failed |= coil_task_await(ts[i], NULL) != 0;
        coil_task_free(ts[i]);
    }
    c->ns = bench_now_ns() - t0;
    return failed ? coil_raise(-EIO, "an offload failed") : NULL;
}

static int to_thread(const bench_args *a, long *n, bench_result *out)
{
    struct tt_ctx c = { .n = a->n };
    int err = coil_run(tt_main, &c, NULL);
    if (err)
        return err;
    *n = a->n;
    out->metric = "us_per_offload";
    out->unit = "us";
    out->value = (double)c.ns / 1e3 / (double)a->n;
    return 0;
}
COIL_BENCH_WORKLOAD_FORMS(to_thread, to_thread, 20000, BENCH_FORM_HOG, 0,
                          "N offloads of a trivial function, 64 in flight (us each)")

/* ---- shard_pingpong ---- */

struct pp_ctx {
    long n;
    uint64_t ns;
};

static void *pp_main(void *arg)
{
    struct pp_ctx *c = arg;
    bench_note_loop();
    if (coil_shard_count() < 2)
        return coil_raise(-EINVAL, "shard_pingpong needs 2 shards");
    uint64_t t0 = bench_now_ns();
    for (long i = 0; i < c->n; i++) {
        coil_future *f;
        void *r;
        int err = coil_submit_to(1, ret_arg, (void *)(intptr_t)i, &f);
        if (!err)
            err = coil_future_await(f, &r);
        coil_future_free(f);
        if (err || (intptr_t)r != i)
            return coil_raise(err ? err : -EIO, "round trip %ld", i);
    }
    c->ns = bench_now_ns() - t0;
    return NULL;
}

static int shard_pingpong(const bench_args *a, long *n, bench_result *out)
{
    coil_runtime *rt;
    /* --mode nospin: shards sleep at once instead of polling their inbox for 20 us first. */
    bool nospin = a->mode && strcmp(a->mode, "nospin") == 0;
    int err = coil_runtime_new(&rt, &(coil_runtime_opts){ .shards = 2, .spin_us = nospin ? -1 : 0 });
    if (err)
        return err;
    struct pp_ctx c = { .n = a->n };
    err = coil_runtime_run(rt, pp_main, &c, NULL);
    coil_runtime_free(rt);
    if (err)
        return err;
    *n = a->n;
    out->metric = "ns_per_round_trip";
    out->unit = "ns";
    out->value = (double)c.ns / (double)a->n;
    return 0;
}
COIL_BENCH_WORKLOAD_FORMS(shard_pingpong, shard_pingpong, 1000000, BENCH_FORM_HOG, 200000,
                          "a task on shard 0 awaits N coil_submit_to(1) calls in a row (ns per round trip)")

/* ---- shard_scaling ---- */

static void *spawn_on_shard(void *arg)
{
    long n = (long)(intptr_t)arg;
    coil_task **ts = malloc((size_t)n * sizeof *ts);
    if (!ts)
        return coil_raise(-ENOMEM, "task array");
    for (long i = 0; i < n; i++)
        if (coil_create_task(&ts[i], ret_arg, (void *)(intptr_t)i, NULL) != 0)
            return coil_raise(-ENOMEM, "create_task");
    long sum = 0;
    for (long i = 0; i < n; i++) {
        void *r;
        coil_task_await(ts[i], &r);
        sum += (long)(intptr_t)r;
        coil_task_free(ts[i]);
    }
    free(ts);
    return sum == n * (n - 1) / 2 ? NULL : coil_raise(-EIO, "bad sum");
}

struct sc_ctx {
    long n;
    uint64_t ns;
};

static void *sc_main(void *arg)
{
    struct sc_ctx *c = arg;
    bench_note_loop();
    uint64_t t0 = bench_now_ns();
    int err = coil_submit_to_all(spawn_on_shard, (void *)(intptr_t)c->n, NULL, NULL);
    c->ns = bench_now_ns() - t0;
    return err ? coil_raise(err, "spawn on every shard") : NULL;
}

static int shard_scaling(const bench_args *a, long *n, bench_result *out)
{
    coil_runtime *probe;
    int err = coil_runtime_new(&probe, NULL);
    if (err)
        return err;
    unsigned max = a->shards > 0 ? (unsigned)a->shards : coil_runtime_shard_count(probe);
    coil_runtime_free(probe);
    double best = 0;
    for (unsigned s = 1; s <= max; s++) {
        coil_runtime *rt;
        if ((err = coil_runtime_new(&rt, &(coil_runtime_opts){ .shards = s })))
            return err;
        struct sc_ctx c = { .n = a->n };
        err = coil_runtime_run(rt, sc_main, &c, NULL);
        coil_runtime_free(rt);
        if (err)
            return err;
        double tps = (double)a->n * s / ((double)c.ns / 1e9);
        char key[32];
        snprintf(key, sizeof key, "tasks_per_s_%u_shards", s);
        bench_extra(out, key, tps);
        best = tps;
    }
    *n = a->n;
    out->metric = "tasks_per_s";
    out->unit = "tasks/s";
    out->value = best; /* at the largest shard count */
    return 0;
}
COIL_BENCH_WORKLOAD(shard_scaling, shard_scaling, 1000000,
                    "the spawn workload on 1..N shards at once (aggregate tasks/s per shard count)")
