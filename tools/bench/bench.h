/* coil-bench: one workload per process, one JSON line per run (../shared/bench/WORKLOADS.md).
 * A workload file registers itself with COIL_BENCH_WORKLOAD, so adding one touches no table. */
#ifndef COIL_BENCH_H
#define COIL_BENCH_H

#include <stdbool.h>
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
    bool loaded;          /* --loaded: the workload's loop has a timer armed and a read in flight */
    bool hog;             /* --hog: a nice-19 busy thread on every CPU (run_one starts them) */
    const char *backend;  /* --backend io_uring|epoll|auto (main puts it in COIL_BACKEND), or NULL */
} bench_args;

/* The forms a workload has besides the quiet one (WORKLOADS.md, "as servers run it"). */
enum { BENCH_FORM_LOADED = 1, BENCH_FORM_HOG = 2 };

typedef int (*bench_fn)(const bench_args *args, long *n_out, bench_result *out);

typedef struct bench_workload {
    const char *name;
    bench_fn fn;
    long default_n;
    const char *summary;
    unsigned forms;       /* BENCH_FORM_* it accepts; `summary` runs each beside the quiet form */
    long form_n;          /* default N in the loaded and hog forms, when smaller; 0 = default_n */
    struct bench_workload *next;
} bench_workload;

void bench_register(bench_workload *w);
uint64_t bench_now_ns(void);
/* Append `"key": value` to out->extra. */
void bench_extra(bench_result *out, const char *key, double value);
void bench_extra_str(bench_result *out, const char *key, const char *value);
/* The process's page faults so far (minor + major, getrusage). Read before and after a measured
 * phase, bench_faults_per_op adds "faults_per_op": the difference over the phase's n ops. A
 * steady phase that runs from warm memory shows about zero; every fault is a trip to the
 * kernel, and much more in a spell where the host takes free memory back. */
uint64_t bench_faults(void);
void bench_faults_per_op(bench_result *out, uint64_t before, uint64_t after, long n);

/* The backend the workload ran on, printed in its JSON line ("backend"), as coil_loop_backend
 * names it: "unknown" until noted, "mixed" if two loops disagreed. A workload notes it from a
 * task of its own loop (bench_note_loop), or, for a server it started, from the counters that
 * process publishes (bench_note_server: 0, or -ENOENT when it publishes none). */
void bench_note_loop(void);
int bench_note_server(int pid);

/* --loaded: from a task of the workload's loop, before the measured phase, start one task asleep
 * for 100 s and one waiting in a stream read on a socketpair that never receives; returns once
 * the loop's counters show the timer armed and the receive in flight. 0, or a negative error.
 * bench_load_stop, after the measured phase, cancels and awaits both and frees everything: 0, or
 * -EIO if either had stopped waiting before the cancel. NULL is accepted (no load). */
typedef struct bench_load bench_load;
int bench_load_start(bench_load **out);
int bench_load_stop(bench_load *l);

/* --hog: one busy thread at nice 19 pinned on each CPU of the caller's affinity mask, running
 * when bench_hog_start returns; bench_hog_stop stops and joins them (NULL accepted). */
typedef struct bench_hog bench_hog;
int bench_hog_start(bench_hog **out);
void bench_hog_stop(bench_hog *h);

#define COIL_BENCH_WORKLOAD_FORMS(id, fn_, default_n_, forms_, form_n_, summary_)                  \
    static bench_workload bench_wl_##id = { #id, fn_, default_n_, summary_, forms_, form_n_, NULL }; \
    __attribute__((constructor)) static void bench_register_##id(void) { bench_register(&bench_wl_##id); }
#define COIL_BENCH_WORKLOAD(id, fn_, default_n_, summary_)                                         \
    COIL_BENCH_WORKLOAD_FORMS(id, fn_, default_n_, 0, 0, summary_)

#endif
