/* coil-bench: one workload per process, one JSON line per run (../shared/bench/WORKLOADS.md).
 * A workload file registers itself with COIL_BENCH_WORKLOAD, so adding one touches no table. */
#ifndef COIL_BENCH_H
#define COIL_BENCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct bench_result {
    const char *metric;   /* e.g. "ns_per_task" */
    double value;
    const char *unit;     /* e.g. "ns" */
    char extra[512];      /* extra JSON members, without braces: "\"wall_s\": 1.01" */
} bench_result;

typedef struct bench_args {
    long n;               /* --n, or the workload's default when 0 */
    int shards;           /* --shards, 0 = default */
    int port;             /* --port, 0 = pick */
    double seconds;       /* --seconds, 0 = default */
    const char *mode;     /* --mode, workload-specific variant */
} bench_args;

typedef int (*bench_fn)(const bench_args *args, long *n_out, bench_result *out);

typedef struct bench_workload {
    const char *name;
    bench_fn fn;
    long default_n;
    const char *summary;
    struct bench_workload *next;
} bench_workload;

void bench_register(bench_workload *w);
uint64_t bench_now_ns(void);
/* Append `"key": value` to out->extra. */
void bench_extra(bench_result *out, const char *key, double value);
void bench_extra_str(bench_result *out, const char *key, const char *value);

#define COIL_BENCH_WORKLOAD(id, fn_, default_n_, summary_)                                   \
    static bench_workload bench_wl_##id = { #id, fn_, default_n_, summary_, NULL };            \
    __attribute__((constructor)) static void bench_register_##id(void) { bench_register(&bench_wl_##id); }

#endif
