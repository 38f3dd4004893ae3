/* coil: error codes and exception objects.
 *
 * Every coil function that can fail or suspend returns int: 0 on success, or a negative code.
 * A negative code is either a negated errno (-ECANCELED for cancellation, -ETIMEDOUT for a
 * timeout, -EINVAL for bad arguments, ...) or one of the coil-specific codes below, which live
 * in [-1099, -1000] so they can never collide with an errno. coil_strerror() names either kind.
 */
#ifndef COIL_ERRORS_H
#define COIL_ERRORS_H

#include <stddef.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

enum {
    COIL_EINVALSTATE   = -1000, /* asyncio's InvalidStateError: set twice, result before done... */
    COIL_ENOTASK       = -1001, /* an await point was called outside a task */
    COIL_EAWAITSELF    = -1002, /* a task awaited itself */
    COIL_EWRONGLOOP    = -1003, /* an object of one loop used from another loop or thread */
    COIL_ECLOSED       = -1004, /* the loop (or object) is closed */
    COIL_ERUNNING      = -1005, /* the loop is already running */
    COIL_ENOTHING      = -1006, /* run_until_complete with nothing that could ever wake the loop */
    COIL_ESTOPPED      = -1007, /* the loop was stopped before the awaited future completed */
    COIL_EQUEUEFULL    = -1010, /* asyncio.QueueFull */
    COIL_EQUEUEEMPTY   = -1011, /* asyncio.QueueEmpty */
    COIL_EQUEUESHUTDOWN = -1012, /* asyncio.QueueShutDown (3.13) */
    COIL_EINCOMPLETE   = -1013, /* asyncio.IncompleteReadError */
    COIL_ELIMITOVERRUN = -1014, /* asyncio.LimitOverrunError */
    COIL_EBROKENBARRIER = -1015, /* asyncio.BrokenBarrierError */
    COIL_EGROUP        = -1016, /* an exception group: several failures, see coil_exception_child */
    COIL_ENOURING      = -1020, /* io_uring could not be set up; the message says why */
    COIL_ENOSTACK      = -1021, /* no stack could be mapped for a task */
    COIL_ENONAME       = -1030, /* name resolution: host or service not known (EAI_NONAME) */
    COIL_ERESOLVE      = -1031, /* name resolution failed for another reason (EAI_*) */
};

/* A static, human-readable description of a code (errno or coil code). Never NULL. */
COIL_API const char *coil_strerror(int code);
/* The symbolic name of a code ("ECANCELED", "COIL_EQUEUEFULL"), or "UNKNOWN". */
COIL_API const char *coil_err_name(int code);

/* An exception: what a failed task or future carries. Owned by the task or future that holds
 * it; a pointer returned by coil_task_exception() stays valid until that task is freed. */
typedef struct coil_exception coil_exception;

COIL_API int coil_exception_code(const coil_exception *e);
/* The message given to coil_raise(), or the description of the code when none was given. */
COIL_API const char *coil_exception_message(const coil_exception *e);
/* The name of the task that raised it, or NULL if it was set on a plain future. */
COIL_API const char *coil_exception_task_name(const coil_exception *e);
COIL_API void *coil_exception_payload(const coil_exception *e);
/* An exception group (code COIL_EGROUP, from a TaskGroup or gather) holds child exceptions. */
COIL_API size_t coil_exception_count(const coil_exception *e);
COIL_API const coil_exception *coil_exception_child(const coil_exception *e, size_t i);

/* Raise from a task: records an exception (code, printf-style message, the task's name) on the
 * running task and returns NULL, so a task ends with `return coil_raise(-EIO, "read %s", path);`.
 * A task that returns with an exception recorded has failed; awaiting it returns `code`. Raising
 * -ECANCELED ends the task cancelled (the message defaults to the cancel request's message).
 * Raising again replaces the earlier exception. In a function run by an executor
 * (coil_to_thread, coil_run_in_executor, coil_run_in_executor_future) on its worker thread, it
 * records the exception on that call instead, for the awaiting task (see executor.h). Anywhere
 * else outside a task it does nothing and returns NULL. `code` must be negative; 0 or a positive
 * value is recorded as -EINVAL. */
COIL_API void *coil_raise(int code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* As coil_raise, with a payload the exception owns: `dtor(payload)` runs when it is freed. */
COIL_API void *coil_raise_payload(int code, void *payload, void (*dtor)(void *), const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#ifdef __cplusplus
}
#endif
#endif
