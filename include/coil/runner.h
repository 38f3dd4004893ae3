/* coil: Runner and run (asyncio.Runner, asyncio.run). */
#ifndef COIL_RUNNER_H
#define COIL_RUNNER_H

#include <stdbool.h>

#include "api.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_runner coil_runner;

typedef struct coil_runner_opts {
    const coil_loop_opts *loop; /* options for the loop the runner creates */
    int debug;                  /* 1 on, -1 off, 0 from COIL_DEBUG */
    bool no_sigint;             /* leave SIGINT alone */
} coil_runner_opts;

COIL_API int coil_runner_new(coil_runner **out, const coil_runner_opts *opts);
/* Run fn(arg) as the main task until it finishes, on the runner's loop (created on first use;
 * later calls reuse it). While it runs, SIGINT cancels the main task; a second SIGINT before it
 * has finished restores the previous disposition and re-raises (asyncio's KeyboardInterrupt).
 * The previous SIGINT handling is restored on return.
 * Returns 0 with *result, the task's error code, -EINTR if SIGINT cancelled it,
 * COIL_ESTOPPED if coil_loop_stop() ended the run before the main task finished (asyncio's
 * RuntimeError('Event loop stopped before Future completed.')), COIL_ENOTHING if nothing is left
 * that could wake the main task (the main task is then cancelled in either case, with a message
 * saying which), COIL_ERUNNING if called from a running loop, COIL_ECLOSED after close, what
 * coil_new_event_loop returned if the runner's loop could not be made (COIL_ENOURING, -EINVAL,
 * -ENOMEM), or the negative errno of a ring failure (see coil_loop_run_forever), the main task
 * then left pending. */
COIL_API int coil_runner_run(coil_runner *r, coil_task_fn fn, void *arg, void **result);
/* The runner's loop, created if need be (NULL if it could not be). */
COIL_API coil_loop *coil_runner_get_loop(coil_runner *r);
/* Cancel every task still pending, run the loop until they are all done, shut down the
 * executor, close the loop and free the runner. */
COIL_API void coil_runner_close(coil_runner *r);

/* coil_runner_new + run + close. */
COIL_API int coil_run(coil_task_fn fn, void *arg, void **result);

#ifdef __cplusplus
}
#endif
#endif
