/* coil-bench: the core workloads: spawn, switch, sleepers (WORKLOADS.md, in the default stack
 * mode), and sleepers_compact (a million sleeping tasks in compact mode). Both report the memory a
 * suspended task costs: resident pages plus page tables. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil/coil.h>

#include "bench.h"

/* ---- spawn: create N tasks, each returns its index; await each in creation order ---- */

static void *ret_index(void *arg) { return arg; }

struct spawn_ctx {
    long n;
    bool loaded;
    uint64_t ns;
    uint64_t faults;
};

/* One round: create N tasks, then await and free each in order; the sum of their indexes. */
static long spawn_round(coil_task **ts, long n)
{
    for (long i = 0; i < n; i++)
        if (coil_create_task(&ts[i], ret_index, (void *)(intptr_t)i, NULL) != 0)
            return -1;
    long sum = 0;
    for (long i = 0; i < n; i++) {
        void *r;
        if (coil_task_await(ts[i], &r) != 0)
            return -1;
        sum += (long)(intptr_t)r;
        coil_task_free(ts[i]);
    }
    return sum;
}

static void *spawn_main(void *arg)
{
    struct spawn_ctx *c = arg;
    bench_note_loop();
    coil_task **ts = malloc((size_t)c->n * sizeof *ts);
    if (!ts)
        return coil_raise(-ENOMEM, "task array");
    bench_load *load = NULL;
    int err = c->loaded ? bench_load_start(&load) : 0;
    if (err) {
        free(ts);
        return coil_raise(err, "load");
    }
    /* Warm-up: one round of the same N, so the measured round runs from memory the process has
     * already touched (task pool chunks, the array) rather than timing first-touch faults. */
    long want = c->n * (c->n - 1) / 2, sum = spawn_round(ts, c->n);
    uint64_t f0 = bench_faults(), t0 = bench_now_ns();
    if (sum == want)
        sum = spawn_round(ts, c->n);
    c->ns = bench_now_ns() - t0;
    c->faults = bench_faults() - f0;
    free(ts);
    if ((err = bench_load_stop(load)))
        return coil_raise(err, "load");
    if (sum != want)
        return coil_raise(-EIO, "bad sum %ld", sum);
    return NULL;
}

static int spawn(const bench_args *a, long *n, bench_result *out)
{
    struct spawn_ctx c = { a->n, a->loaded, 0, 0 };
    int err = coil_run(spawn_main, &c, NULL);
    if (err)
        return err;
    *n = a->n;
    out->metric = "ns_per_task";
    out->unit = "ns";
    out->value = (double)c.ns / (double)a->n;
    bench_faults_per_op(out, 0, c.faults, a->n);
    return 0;
}
COIL_BENCH_WORKLOAD_FORMS(spawn, spawn, 1000000, BENCH_FORM_LOADED, 0,
                          "create N tasks, await each in order (ns per task)")

/* ---- switch: two tasks each yield N times ---- */

static void *yielder(void *arg)
{
    long n = (long)(intptr_t)arg;
    for (long i = 0; i < n; i++)
        coil_sleep(0);
    return NULL;
}

struct switch_ctx {
    long n;
    bool loaded;
    uint64_t ns;
    uint64_t faults;
};

static void *switch_main(void *arg)
{
    struct switch_ctx *c = arg;
    bench_note_loop();
    coil_task *a, *b;
    bench_load *load = NULL;
    int err = c->loaded ? bench_load_start(&load) : 0;
    if (err)
        return coil_raise(err, "load");
    /* Warm-up: the same two tasks for a short round, so the measured one starts warm. */
    coil_create_task(&a, yielder, (void *)(intptr_t)(c->n < 10000 ? c->n : 10000), NULL);
    coil_create_task(&b, yielder, (void *)(intptr_t)(c->n < 10000 ? c->n : 10000), NULL);
    coil_task_await(a, NULL);
    coil_task_await(b, NULL);
    coil_task_free(a);
    coil_task_free(b);
    uint64_t f0 = bench_faults(), t0 = bench_now_ns();
    coil_create_task(&a, yielder, (void *)(intptr_t)c->n, NULL);
    coil_create_task(&b, yielder, (void *)(intptr_t)c->n, NULL);
    coil_task_await(a, NULL);
    coil_task_await(b, NULL);
    c->ns = bench_now_ns() - t0;
    c->faults = bench_faults() - f0;
    coil_task_free(a);
    coil_task_free(b);
    err = bench_load_stop(load);
    return err ? coil_raise(err, "load") : NULL;
}

static int switch_(const bench_args *a, long *n, bench_result *out)
{
    struct switch_ctx c = { a->n, a->loaded, 0, 0 };
    int err = coil_run(switch_main, &c, NULL);
    if (err)
        return err;
    *n = a->n;
    out->metric = "ns_per_yield";
    out->unit = "ns";
    out->value = (double)c.ns / (2.0 * (double)a->n);
    bench_faults_per_op(out, 0, c.faults, 2 * a->n);
    return 0;
}
COIL_BENCH_WORKLOAD_FORMS(switch, switch_, 1000000, BENCH_FORM_LOADED, 0,
                          "two tasks yield N times each (ns per yield)")

/* ---- sleepers: N tasks sleep uniform random 0..1 s (seed 42); gather them all ---- */

static uint64_t rng_state;
static double rng_uniform(void)
{
    /* splitmix64: a fixed, portable sequence for the fixed seed */
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    return (double)(z >> 11) / 9007199254740992.0;
}

static void *sleeper(void *arg)
{
    double *d = arg;
    int err = coil_sleep(*d);
    return err ? coil_raise(err, "sleep") : NULL;
}

struct sleepers_ctx {
    long n;
    coil_stack_mode mode;
    uint64_t ns;
    uint64_t faults;
    long rss_mid_kb, pte_mid_kb;
};

/* Resident memory and page tables (which a stack per task adds to), in KiB. */
static void mem_now_kb(long *rss, long *pte)
{
    *rss = *pte = 0;
    FILE *f = fopen("/proc/self/status", "re");
    if (!f)
        return;
    char line[256];
    while (fgets(line, sizeof line, f)) {
        long v;
        if (sscanf(line, "VmRSS: %ld kB", &v) == 1)
            *rss = v;
        else if (sscanf(line, "VmPTE: %ld kB", &v) == 1)
            *pte = v;
    }
    fclose(f);
}

static void *sleepers_main(void *arg)
{
    struct sleepers_ctx *c = arg;
    bench_note_loop();
    coil_task **ts = malloc((size_t)c->n * sizeof *ts);
    double *delays = malloc((size_t)c->n * sizeof *delays);
    if (!ts || !delays)
        return coil_raise(-ENOMEM, "arrays");
    rng_state = 42;
    for (long i = 0; i < c->n; i++)
        delays[i] = rng_uniform();
    coil_task_opts o = { .stack_mode = c->mode };
    uint64_t f0 = bench_faults(), t0 = bench_now_ns();
    for (long i = 0; i < c->n; i++)
        if (coil_create_task(&ts[i], sleeper, &delays[i], &o) != 0)
            return coil_raise(-ENOMEM, "create_task %ld", i);
    coil_sleep(0.25); /* everyone is asleep by now: measure what a suspended task costs */
    mem_now_kb(&c->rss_mid_kb, &c->pte_mid_kb);
    int failed = 0;
    for (long i = 0; i < c->n; i++) {
        failed |= coil_task_await(ts[i], NULL) != 0;
        coil_task_free(ts[i]);
    }
    c->ns = bench_now_ns() - t0;
    c->faults = bench_faults() - f0;
    free(ts);
    free(delays);
    return failed ? coil_raise(-EIO, "a sleeper failed") : NULL;
}

static int sleepers_run(const bench_args *a, long *n, bench_result *out, coil_stack_mode mode)
{
    long base_rss, base_pte;
    mem_now_kb(&base_rss, &base_pte);
    struct sleepers_ctx c = { a->n, mode, 0, 0, 0, 0 };
    if (a->mode && strcmp(a->mode, "compact") == 0)
        c.mode = COIL_STACK_COMPACT;
    int err = coil_run(sleepers_main, &c, NULL);
    if (err)
        return err;
    *n = a->n;
    out->metric = "wall_s";
    out->unit = "s";
    out->value = (double)c.ns / 1e9;
    double rss = (double)(c.rss_mid_kb - base_rss) * 1024.0 / (double)a->n;
    double pte = (double)(c.pte_mid_kb - base_pte) * 1024.0 / (double)a->n;
    bench_extra(out, "rss_bytes_per_task", rss + pte);
    bench_extra(out, "pte_bytes_per_task", pte);
    bench_extra_str(out, "stack_mode", c.mode == COIL_STACK_COMPACT ? "compact" : "default");
    bench_faults_per_op(out, 0, c.faults, a->n);
    return 0;
}

static int sleepers(const bench_args *a, long *n, bench_result *out)
{
    return sleepers_run(a, n, out, COIL_STACK_DEFAULT);
}
COIL_BENCH_WORKLOAD(sleepers, sleepers, 100000,
                    "N tasks (default stacks) sleep random 0..1 s, gathered (wall s, RSS+page tables per task)")

static int sleepers_compact(const bench_args *a, long *n, bench_result *out)
{
    return sleepers_run(a, n, out, COIL_STACK_COMPACT);
}
COIL_BENCH_WORKLOAD(sleepers_compact, sleepers_compact, 1000000,
                    "sleepers with 1,000,000 compact-mode tasks (wall s, RSS+page tables per task)")
