/* coil core: Runner and run (asyncio.Runner / asyncio.run). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "engine/internal.h"

struct coil_runner {
    coil_loop *loop;
    coil_loop_opts loop_opts;
    bool have_loop_opts;
    int debug;
    bool no_sigint;
    bool closed;
    coil_task *main;
    int interrupts;
    int loop_err;               /* why the loop could not be made (coil_new_event_loop) */
};

int coil_runner_new(coil_runner **out, const coil_runner_opts *opts)
{
    if (!out)
        return -EINVAL;
    coil_runner *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    if (opts) {
        if (opts->loop) {
            r->loop_opts = *opts->loop;
            r->have_loop_opts = true;
        }
        r->debug = opts->debug;
        r->no_sigint = opts->no_sigint;
    }
    *out = r;
    return 0;
}

coil_loop *coil_runner_get_loop(coil_runner *r)
{
    if (!r || r->closed)
        return NULL;
    if (!r->loop) {
        coil_loop_opts o = r->have_loop_opts ? r->loop_opts : (coil_loop_opts){ 0 };
        if (r->debug)
            o.debug = r->debug;
        if ((r->loop_err = coil_new_event_loop(&r->loop, &o)) != 0)
            return NULL;
        r->loop->runner = r;
    }
    return r->loop;
}

/* First SIGINT: cancel the main task. Second: give the signal back to whoever had it. */
static int on_sigint(void *arg)
{
    coil_runner *r = arg;
    if (++r->interrupts == 1 && r->main && !coil_task_done(r->main)) {
        coil_task_cancel(r->main, "SIGINT");
        return 0;
    }
    coil_loop_remove_signal_handler(r->loop, SIGINT);
    raise(SIGINT);
    return 0;
}

int coil_runner_run(coil_runner *r, coil_task_fn fn, void *arg, void **result)
{
    if (!r || !fn)
        return -EINVAL;
    if (r->closed)
        return COIL_ECLOSED;
    if (coil__tls_running)
        return COIL_ERUNNING;
    coil_loop *loop = coil_runner_get_loop(r);
    if (!loop)
        return r->loop_err ? r->loop_err : COIL_ENOURING;
    coil_loop *prev_set = coil__tls_loop;
    coil__tls_loop = loop;
    int err = coil_loop_create_task(loop, &r->main, fn, arg, &(coil_task_opts){ .name = "main" });
    if (err) {
        coil__tls_loop = prev_set;
        return err;
    }
    bool sigint = !r->no_sigint;
    r->interrupts = 0;
    if (sigint && coil_loop_add_signal_handler(loop, SIGINT, on_sigint, r) != 0)
        sigint = false;
    err = coil_loop_run_until_complete(loop, coil_task_future(r->main), result);
    if (sigint)
        coil_loop_remove_signal_handler(loop, SIGINT);
    if (err == -ECANCELED && r->interrupts > 0)
        err = -EINTR; /* asyncio raises KeyboardInterrupt here */
    /* The main task is still pending: end it rather than leak, saying why. */
    if (err == COIL_ENOTHING)
        coil_task_cancel(r->main, "nothing left that could wake the main task");
    else if (err == COIL_ESTOPPED)
        coil_task_cancel(r->main, "the loop was stopped before the main task finished");
    coil_task_free(r->main);
    r->main = NULL;
    coil__tls_loop = prev_set;
    return err;
}

static void cancel_all_and_wait(coil_loop *loop)
{
    /* Cancelled tasks may start others while unwinding; keep going until none is left. */
    for (int round = 0; round < 100; round++) {
        size_t n = coil_all_tasks(loop, NULL, 0);
        if (n == 0)
            return;
        coil_task **ts = malloc(n * sizeof *ts);
        if (!ts)
            return;
        n = coil_all_tasks(loop, ts, n);
        coil_future *gate;
        for (size_t i = 0; i < n; i++) {
            ts[i]->aw.h.refs++;
            coil_task_cancel(ts[i], NULL);
        }
        for (size_t i = 0; i < n; i++) {
            gate = coil_task_future(ts[i]);
            if (!coil_task_done(ts[i]))
                coil_loop_run_until_complete(loop, gate, NULL);
            if (coil_task_done(ts[i]) && ts[i]->aw.h.state == COIL__FAILED) {
                const coil_exception *e = coil_task_exception(ts[i]);
                coil__loop_report(loop, "unhandled exception during runner close", coil_exception_code(e), e, ts[i],
                                  NULL);
            }
            coil__aw_unref(loop, &ts[i]->aw);
        }
        free(ts);
    }
}

static int stop_loop(void *arg)
{
    coil_loop_stop(arg);
    return 0;
}

/* Done callbacks of tasks that finished at the end of the last run are still queued; asyncio's
 * shutdown steps run the loop, so they run there too (they often free what the task used). */
static void run_scheduled_callbacks(coil_loop *loop)
{
    for (int round = 0; round < 100 && loop->rq_head; round++)
        if (coil_loop_call_soon(loop, stop_loop, loop, NULL) != 0 || coil_loop_run_forever(loop) != 0)
            return;
}

void coil_runner_close(coil_runner *r)
{
    if (!r)
        return;
    if (r->loop) {
        cancel_all_and_wait(r->loop);
        run_scheduled_callbacks(r->loop);
        coil_loop_close(r->loop);
    }
    r->closed = true;
    free(r);
}

int coil_run(coil_task_fn fn, void *arg, void **result)
{
    coil_runner *r;
    int err = coil_runner_new(&r, NULL);
    if (err)
        return err;
    err = coil_runner_run(r, fn, arg, result);
    coil_runner_close(r);
    return err;
}
