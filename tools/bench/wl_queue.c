/* coil-bench: the queue workload (WORKLOADS.md): one producer task, one consumer task, a queue
 * bounded at 256, N integer items; the consumer checks the sum. Metric: ns per item. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>

#include <coil/coil.h>

#include "bench.h"

struct queue_ctx {
    long n;
    bool loaded;
    coil_queue *q;
    uint64_t sum;
    uint64_t ns;
    uint64_t faults;
};

static void *producer(void *arg)
{
    struct queue_ctx *c = arg;
    for (long i = 1; i <= c->n; i++) {
        int err = coil_queue_put(c->q, (void *)(intptr_t)i);
        if (err)
            return coil_raise(err, "put %ld", i);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    struct queue_ctx *c = arg;
    uint64_t sum = 0;
    for (long i = 0; i < c->n; i++) {
        void *item;
        int err = coil_queue_get(c->q, &item);
        if (err)
            return coil_raise(err, "get %ld", i);
        sum += (uint64_t)(intptr_t)item;
    }
    c->sum = sum;
    return NULL;
}

static void *queue_main(void *arg)
{
    struct queue_ctx *c = arg;
    bench_note_loop();
    int err = coil_queue_new(&c->q, &(coil_queue_opts){ .maxsize = 256 });
    if (err)
        return coil_raise(err, "queue_new");
    coil_task *p, *g;
    bench_load *load = NULL;
    if (c->loaded && (err = bench_load_start(&load))) {
        coil_queue_free(c->q);
        return coil_raise(err, "load");
    }
    /* Warm-up: the same two tasks and queue for a short round, so the measured one starts warm. */
    long n = c->n;
    c->n = n < 10000 ? n : 10000;
    if ((err = coil_create_task(&p, producer, c, NULL)) || (err = coil_create_task(&g, consumer, c, NULL)))
        return coil_raise(err, "create_task");
    int ep = coil_task_await(p, NULL);
    int eg = coil_task_await(g, NULL);
    coil_task_free(p);
    coil_task_free(g);
    if (ep || eg)
        return coil_raise(ep ? ep : eg, "warm-up producer or consumer failed");
    c->n = n;
    uint64_t f0 = bench_faults(), t0 = bench_now_ns();
    if ((err = coil_create_task(&p, producer, c, NULL)) || (err = coil_create_task(&g, consumer, c, NULL)))
        return coil_raise(err, "create_task");
    ep = coil_task_await(p, NULL);
    eg = coil_task_await(g, NULL);
    c->ns = bench_now_ns() - t0;
    c->faults = bench_faults() - f0;
    coil_task_free(p);
    coil_task_free(g);
    coil_queue_free(c->q);
    int el = bench_load_stop(load);
    if (el)
        return coil_raise(el, "load");
    if (ep || eg)
        return coil_raise(ep ? ep : eg, "producer or consumer failed");
    uint64_t want = (uint64_t)c->n * (uint64_t)(c->n + 1) / 2;
    if (c->sum != want)
        return coil_raise(-EIO, "bad sum %llu, want %llu", (unsigned long long)c->sum, (unsigned long long)want);
    return NULL;
}

static int queue_bench(const bench_args *a, long *n, bench_result *out)
{
    struct queue_ctx c = { .n = a->n, .loaded = a->loaded };
    int err = coil_run(queue_main, &c, NULL);
    if (err)
        return err;
    *n = a->n;
    out->metric = "ns_per_item";
    out->unit = "ns";
    out->value = (double)c.ns / (double)a->n;
    bench_faults_per_op(out, 0, c.faults, a->n);
    return 0;
}
COIL_BENCH_WORKLOAD_FORMS(queue, queue_bench, 1000000, BENCH_FORM_LOADED, 0,
                          "producer and consumer tasks, queue maxsize 256 (ns per item)")
