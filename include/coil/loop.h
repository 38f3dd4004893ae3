/* coil: the event loop. One loop per OS thread; every function here is for the loop's own
 * thread only unless its name ends in _threadsafe. */
#ifndef COIL_LOOP_H
#define COIL_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api.h"
#include "errors.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_loop coil_loop;
typedef struct coil_task coil_task;
typedef struct coil_future coil_future;

/* How a task gets its stack.
 * DEFAULT:   the loop's mode (coil_loop_opts.stack_mode), which is DEDICATED unless the loop was
 *            created with COMPACT.
 * DEDICATED: its own stack with a guard page, from the loop's pool. A pointer into a suspended
 *            task's stack stays valid, however many tasks are alive: pass &local to another task
 *            and await it, as ordinary C does. Stacks are page-granular: a sleeping task costs
 *            the pages it touched (typically one) plus its share of the page tables. When no more
 *            stacks can be had (the loop's max_stacks, or the process's vm.max_map_count on a
 *            kernel without guard regions), creating or starting the task fails with
 *            COIL_ENOSTACK and a message; it never changes mode behind the caller's back.
 * COMPACT:   UNSAFE FOR POINTERS INTO THE TASK'S STACK; only when asked for by name. Compact tasks
 *            run on the loop's one shared stack; while one is suspended, only the part of the
 *            stack it uses is kept, copied aside (a few hundred bytes for a typical task): the
 *            mode for millions of mostly-sleeping tasks that keep their state to themselves.
 *            The rule: while a compact task is suspended, nothing may point into its stack; its
 *            addresses belong to whichever compact task runs next, so a write through such a
 *            pointer is lost (or lands in another task's frames) and a read sees garbage. coil
 *            keeps the rule itself (results are written to out-parameters only after the task
 *            resumes; an I/O buffer on a compact task's stack is bounced through a runtime-owned
 *            buffer), but user code must keep it too: never hand another task a pointer to a
 *            local of a compact task that outlives the next await. Debug mode runs compact tasks
 *            on stacks of their own, overwritten with 0xA5 bytes while suspended (so a read
 *            through such a pointer sees garbage, as it may without debug mode), and reports,
 *            naming the task, any write into one while it was suspended.
 * AUTO:      the former name of DEFAULT; it never runs a task compact. */
typedef enum coil_stack_mode {
    COIL_STACK_DEFAULT = 0,
    COIL_STACK_AUTO = COIL_STACK_DEFAULT,
    COIL_STACK_DEDICATED = 1,
    COIL_STACK_COMPACT = 2,
} coil_stack_mode;

/* The kernel interface a loop's I/O, timers and wake-ups go through. AUTO takes io_uring where
 * the kernel sets it up and falls back to epoll where it is refused (a container's default
 * seccomp profile, kernel.io_uring_disabled, gVisor), saying so once per process on stderr with
 * the reason. The environment variable COIL_BACKEND=io_uring|epoll|auto decides for loops whose
 * options say AUTO. Every public function works on both, with the same results and error codes;
 * only the speed differs. */
typedef enum coil_backend {
    COIL_BACKEND_AUTO = 0,
    COIL_BACKEND_IO_URING = 1, /* io_uring or nothing: COIL_ENOURING where it is refused */
    COIL_BACKEND_EPOLL = 2,    /* epoll, eventfd, signalfd, pidfd, a thread pool for files */
} coil_backend;

typedef struct coil_loop_opts {
    unsigned ring_entries;        /* io_uring SQ size; 0 = 256 */
    size_t stack_size;            /* default task stack; 0 = 128 KiB (touched pages cost RSS, and
                                   * every 4 KiB of it 8 bytes of page tables) */
    coil_stack_mode stack_mode;   /* for tasks that do not choose: DEFAULT (= DEDICATED) or
                                   * COMPACT (see its rule); anything else is -EINVAL */
    size_t compact_stack_size;    /* the shared stack compact tasks run on; 0 = 256 KiB */
    unsigned max_stacks;          /* dedicated stacks alive at once; 0 = no cap but the process's
                                   * mappings (vm.max_map_count) */
    unsigned pool_keep;           /* free stacks kept warm for reuse whatever the demand; the
                                   * rest stay warm while the loop needed them within the last
                                   * second, and give their pages back when it is idle; 0 = 1024 */
    int debug;                    /* debug mode; -1 = off even if COIL_DEBUG=1, 0 = from env */
    double slow_callback_duration; /* debug: a step longer than this is logged; 0 = 0.1 s */
    coil_backend backend;         /* AUTO (= COIL_BACKEND, else io_uring with epoll as the
                                   * fallback), IO_URING or EPOLL; anything else is -EINVAL */
} coil_loop_opts;

/* Create a loop for the calling thread (it does not become the thread's loop until set or run).
 * Returns 0, -ENOMEM, -EINVAL (an unknown stack_mode or backend, or a COIL_BACKEND value that is
 * not io_uring, epoll or auto, named on stderr), or, where io_uring was asked for by name and the
 * kernel refuses it, COIL_ENOURING with a message on stderr saying why and what to do. */
COIL_API int coil_new_event_loop(coil_loop **out, const coil_loop_opts *opts);
/* The loop running on this thread, or NULL. Thread-safe (reads a thread-local). */
COIL_API coil_loop *coil_get_running_loop(void);
/* The loop set for this thread with coil_set_event_loop (or the running one), or NULL. */
COIL_API coil_loop *coil_get_event_loop(void);
/* Make `loop` this thread's loop (NULL clears). COIL_EWRONGLOOP if it belongs to another thread. */
COIL_API int coil_set_event_loop(coil_loop *loop);

/* Run until coil_loop_stop(). If stop() was called while the loop was not running, this runs
 * exactly one iteration (the callbacks already scheduled, I/O polled without blocking) and
 * returns, as asyncio does: `stop(); run_forever()` runs a loop once. Returns 0, COIL_ERUNNING,
 * COIL_ECLOSED or COIL_EWRONGLOOP; or, if the ring fails (io_uring_enter refused or failing, e.g.
 * -EPERM under a seccomp policy that forbids it), that negative errno at once, after the loop's
 * exception handler has heard of it: a loop that cannot wait for I/O or timers stops instead of
 * spinning. */
COIL_API int coil_loop_run_forever(coil_loop *loop);
/* Run until `fut` (a future, or a task through coil_task_future) is done; returns what awaiting
 * it returns (0 with *result, its error code, or -ECANCELED). COIL_ESTOPPED if coil_loop_stop()
 * ended the run first (asyncio raises RuntimeError('Event loop stopped before Future
 * completed.')); the future stays pending. COIL_ENOTHING if the loop runs out of anything that
 * could complete it (no ready work, no timer, no I/O, no wake-up source; a loop that another
 * thread has reached, e.g. with coil_loop_call_soon_threadsafe, counts as one that thread may
 * wake). A ring failure ends it as it ends coil_loop_run_forever (the future stays pending). */
COIL_API int coil_loop_run_until_complete(coil_loop *loop, coil_future *fut, void **result);
/* Ask a running loop to stop after the current iteration (before running new ready work). On a
 * loop that is not running, the next run stops after its first iteration. Loop thread only. */
COIL_API void coil_loop_stop(coil_loop *loop);
COIL_API bool coil_loop_is_running(const coil_loop *loop);
COIL_API bool coil_loop_is_closed(const coil_loop *loop);
/* Close and free the loop: tasks still pending are destroyed (the exception handler hears of
 * each), their stacks unmapped, the ring torn down. Every handle of the loop is invalid after.
 * COIL_ERUNNING if the loop is running (nothing is freed then). */
COIL_API int coil_loop_close(coil_loop *loop);

/* Monotonic time of the loop's clock (CLOCK_MONOTONIC), in seconds and in nanoseconds. */
COIL_API double coil_loop_time(const coil_loop *loop);
/* The backend the loop runs on: "io_uring" or "epoll" (a static string); NULL for NULL. */
COIL_API const char *coil_loop_backend(const coil_loop *loop);
COIL_API uint64_t coil_loop_time_ns(const coil_loop *loop);

/* A callback returns 0, or a negative code that is reported to the exception handler (the loop
 * goes on). */
typedef int (*coil_callback_fn)(void *arg);

/* A cancellable handle to a scheduled callback. A value, not an allocation: it stays safe to
 * cancel or query after the callback ran (cancelling then does nothing). */
typedef struct coil_handle {
    void *p;
    uint64_t gen;
} coil_handle;

/* Schedule cb(arg) on the next iteration, in FIFO order with other ready work. `h` may be NULL.
 * Returns 0, -ENOMEM, COIL_ECLOSED. Never suspends. */
COIL_API int coil_loop_call_soon(coil_loop *loop, coil_callback_fn cb, void *arg, coil_handle *h);
/* After `delay` seconds (<= 0 behaves as 0), or at loop time `when`. -EINVAL for NaN. Callbacks
 * due at the same time run in the order they were scheduled; a timer never fires early. */
COIL_API int coil_loop_call_later(coil_loop *loop, double delay, coil_callback_fn cb, void *arg, coil_handle *h);
COIL_API int coil_loop_call_at(coil_loop *loop, double when, coil_callback_fn cb, void *arg, coil_handle *h);
/* Cancel a scheduled callback. Returns 1 if it was pending and is now cancelled, 0 otherwise
 * (already run, already cancelled, or running now: called from inside its own callback it does
 * nothing). */
COIL_API int coil_handle_cancel(coil_handle *h);
COIL_API bool coil_handle_cancelled(const coil_handle *h);
/* The loop time a timer handle is scheduled for; -1 for call_soon handles or stale handles. */
COIL_API double coil_handle_when(const coil_handle *h);

/* ---- exception handler (per loop) ---- */
typedef struct coil_exc_context {
    const char *message;
    const coil_exception *exception; /* may be NULL */
    int code;                        /* the error code, 0 if none */
    coil_task *task;                 /* may be NULL */
    coil_future *future;             /* may be NULL */
    const coil_handle *handle;       /* may be NULL */
    coil_loop *loop;
} coil_exc_context;

typedef void (*coil_exception_handler)(coil_loop *loop, const coil_exc_context *ctx, void *arg);

/* NULL restores the default handler. */
COIL_API void coil_loop_set_exception_handler(coil_loop *loop, coil_exception_handler h, void *arg);
COIL_API coil_exception_handler coil_loop_get_exception_handler(const coil_loop *loop, void **arg);
/* The default: one line per context on stderr ("coil: <message>: <code name>: <exception message>
 * (task '<name>')"). */
COIL_API void coil_loop_default_exception_handler(coil_loop *loop, const coil_exc_context *ctx);
/* Route a context to the loop's handler (the default if none is set). A handler is never re-entered
 * from itself: a nested call goes to the default handler. */
COIL_API void coil_loop_call_exception_handler(coil_loop *loop, const coil_exc_context *ctx);

/* Debug mode (asyncio's loop.set_debug). */
COIL_API void coil_loop_set_debug(coil_loop *loop, bool on);
COIL_API bool coil_loop_get_debug(const coil_loop *loop);

#ifdef __cplusplus
}
#endif
#endif
