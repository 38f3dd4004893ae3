/* coil-bench: timeouts (WORKLOADS.md): N tasks each wait on a never-set event under a 10 ms
 * timeout scope; main gathers them all and checks that every one timed out. The metric is wall
 * time / N, the 10 ms included. */
#include <errno.h>
#include <stdint.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <coil/coil.h>

#include "bench.h"

static void *wait_under_timeout(void *arg)
{
    coil_event *ev = arg;
    coil_timeout_scope *s;
    int err = coil_timeout(&s, 0.010);
    if (err)
        return coil_raise(err, "timeout scope");
    err = coil_timeout_enter(s);
    if (!err)
        err = coil_timeout_exit(s, coil_event_wait(ev));
    coil_timeout_free(s);
    /* A value, not a raise: a raise allocates an exception, which is not what is measured. */
    return (void *)(intptr_t)(err == -ETIMEDOUT);
}

struct timeouts_ctx {
    long n;
    bool compact;
    bool loaded;
    uint64_t ns;
    uint64_t faults;
};

/* One round's measured part: N waiters under their timeouts, gathered. Sets *made to the tasks
 * created. 0, or a negative error. */
static int timeouts_round(struct timeouts_ctx *c, coil_event *ev, coil_task **ts, coil_gather_result *res,
                          const coil_task_opts *opts, long *made)
{
    for (*made = 0; *made < c->n; ++*made)
        if (coil_create_task(&ts[*made], wait_under_timeout, ev, opts) != 0)
            return -ENOMEM;
    return coil_gather((coil_future **)ts, (size_t)c->n, false, res);
}

/* After a round: each must have timed out (-EIO if not); the tasks are freed. */
static int timeouts_finish(int err, coil_task **ts, const coil_gather_result *res, long made)
{
    long timed_out = 0;
    for (long i = 0; i < made; i++) {
        if (err)
            coil_task_cancel(ts[i], NULL);
        else
            timed_out += res[i].value == (void *)1;
    }
    for (long i = 0; i < made; i++) {
        if (err)
            coil_task_await(ts[i], NULL);
        coil_task_free(ts[i]);
    }
    return err ? err : timed_out == made ? 0 : -EIO;
}

static void *timeouts_main(void *arg)
{
    struct timeouts_ctx *c = arg;
    bench_note_loop();
    coil_event *ev;
    if (coil_event_new(&ev) != 0)
        return coil_raise(-ENOMEM, "event");
    coil_task **ts = malloc((size_t)c->n * sizeof *ts);
    coil_gather_result *res = malloc((size_t)c->n * sizeof *res);
    if (!ts || !res) {
        free(ts);
        free(res);
        coil_event_free(ev);
        return coil_raise(-ENOMEM, "arrays");
    }
    coil_task_opts opts = { .stack_mode = c->compact ? COIL_STACK_COMPACT : COIL_STACK_DEFAULT };
    bench_load *load = NULL;
    int err = c->loaded ? bench_load_start(&load) : 0;
    if (err) {
        free(ts);
        free(res);
        coil_event_free(ev);
        return coil_raise(err, "load");
    }
    /* Warm-up: one round of the same N tasks alive at once, so the measured round runs on warm
     * stacks, task objects and timer tables rather than timing first-touch faults. */
    long made = 0;
    err = timeouts_round(c, ev, ts, res, &opts, &made);
    err = timeouts_finish(err, ts, res, made);
    made = 0;
    uint64_t f0 = bench_faults(), t0 = bench_now_ns();
    if (!err)
        err = timeouts_round(c, ev, ts, res, &opts, &made);
    c->ns = bench_now_ns() - t0;
    c->faults = bench_faults() - f0;
    if (made)
        err = timeouts_finish(err, ts, res, made);
    int el = bench_load_stop(load);
    free(ts);
    free(res);
    coil_event_free(ev);
    if (err)
        return coil_raise(err, "a round failed, or a wait did not time out");
    if (el)
        return coil_raise(el, "load");
    return NULL;
}

static int timeouts(const bench_args *a, long *n, bench_result *out)
{
    /* Default (AUTO) stacks, as a user gets them; --mode compact forces compact stacks. */
    bool compact = a->mode && strcmp(a->mode, "compact") == 0;
    struct timeouts_ctx c = { a->n, compact, a->loaded, 0, 0 };
    int err = coil_run(timeouts_main, &c, NULL);
    if (err)
        return err;
    *n = a->n;
    out->metric = "ns_per_timeout";
    out->unit = "ns";
    out->value = (double)c.ns / (double)a->n;
    bench_extra(out, "wall_s", (double)c.ns / 1e9);
    bench_extra_str(out, "stacks", compact ? "compact" : "auto");
    bench_faults_per_op(out, 0, c.faults, a->n);
    return 0;
}
COIL_BENCH_WORKLOAD_FORMS(timeouts, timeouts, 100000, BENCH_FORM_LOADED, 0,
                          "N tasks wait on a never-set event under a 10 ms timeout scope; main gathers "
                          "(ns per timed-out wait)")
