/* coil core: exception objects and error names. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

static const struct {
    int code;
    const char *name, *text;
} coil_codes[] = {
    { COIL_EINVALSTATE, "COIL_EINVALSTATE", "invalid state (already done, or not done yet)" },
    { COIL_ENOTASK, "COIL_ENOTASK", "not called from a task (await points need a running task)" },
    { COIL_EAWAITSELF, "COIL_EAWAITSELF", "a task cannot await itself" },
    { COIL_EWRONGLOOP, "COIL_EWRONGLOOP", "object belongs to another loop or thread" },
    { COIL_ECLOSED, "COIL_ECLOSED", "closed" },
    { COIL_ERUNNING, "COIL_ERUNNING", "the loop is already running" },
    { COIL_ENOTHING, "COIL_ENOTHING", "nothing left that could complete the awaited future" },
    { COIL_ESTOPPED, "COIL_ESTOPPED", "the loop was stopped before the awaited future completed" },
    { COIL_EQUEUEFULL, "COIL_EQUEUEFULL", "queue full" },
    { COIL_EQUEUEEMPTY, "COIL_EQUEUEEMPTY", "queue empty" },
    { COIL_EQUEUESHUTDOWN, "COIL_EQUEUESHUTDOWN", "queue shut down" },
    { COIL_EINCOMPLETE, "COIL_EINCOMPLETE", "incomplete read: EOF before the expected bytes" },
    { COIL_ELIMITOVERRUN, "COIL_ELIMITOVERRUN", "separator not found within the limit" },
    { COIL_EBROKENBARRIER, "COIL_EBROKENBARRIER", "barrier broken" },
    { COIL_EGROUP, "COIL_EGROUP", "several failures (an exception group)" },
    { COIL_ENOURING, "COIL_ENOURING", "io_uring could not be set up" },
    { COIL_ENOSTACK, "COIL_ENOSTACK", "no stack could be mapped for a task" },
    { COIL_ENONAME, "COIL_ENONAME", "name or service not known" },
    { COIL_ERESOLVE, "COIL_ERESOLVE", "name resolution failed" },
};

static const struct {
    int err;
    const char *name;
} errno_names[] = {
    { ECANCELED, "ECANCELED" }, { ETIMEDOUT, "ETIMEDOUT" }, { EINVAL, "EINVAL" }, { ENOMEM, "ENOMEM" },
    { EIO, "EIO" }, { EAGAIN, "EAGAIN" }, { EBADF, "EBADF" }, { EPIPE, "EPIPE" },
    { ECONNRESET, "ECONNRESET" }, { ECONNREFUSED, "ECONNREFUSED" }, { ENOENT, "ENOENT" },
    { EINTR, "EINTR" }, { EPERM, "EPERM" }, { ENOSYS, "ENOSYS" }, { EEXIST, "EEXIST" },
    { EMFILE, "EMFILE" }, { ENOTCONN, "ENOTCONN" }, { EADDRINUSE, "EADDRINUSE" }, { EDEADLK, "EDEADLK" },
    { ESRCH, "ESRCH" }, { ECHILD, "ECHILD" }, { EACCES, "EACCES" }, { ENOSPC, "ENOSPC" },
};

const char *coil_strerror(int code)
{
    for (size_t i = 0; i < sizeof coil_codes / sizeof coil_codes[0]; i++)
        if (coil_codes[i].code == code)
            return coil_codes[i].text;
    if (code == 0)
        return "success";
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

const char *coil_err_name(int code)
{
    for (size_t i = 0; i < sizeof coil_codes / sizeof coil_codes[0]; i++)
        if (coil_codes[i].code == code)
            return coil_codes[i].name;
    for (size_t i = 0; i < sizeof errno_names / sizeof errno_names[0]; i++)
        if (-errno_names[i].err == code)
            return errno_names[i].name;
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
    /* The table above is only the common few; glibc knows every errno's name. */
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        if (n)
            return n;
    }
#endif
    return "UNKNOWN";
}

static coil_exception *alloc_exc(int code, const char *task_name, char *message)
{
    coil_exception *e = calloc(1, sizeof *e);
    if (!e) {
        free(message);
        return NULL;
    }
    e->code = code;
    e->message = message;
    e->task_name = task_name ? strdup(task_name) : NULL;
    return e;
}

coil_exception *coil__exception_new(int code, const char *task_name, const char *msg)
{
    return alloc_exc(code, task_name, msg ? strdup(msg) : NULL);
}

coil_exception *coil__exception_newv(int code, const char *task_name, const char *fmt, va_list ap)
{
    char *msg = NULL;
    if (fmt && vasprintf(&msg, fmt, ap) < 0)
        msg = NULL;
    return alloc_exc(code, task_name, msg);
}

coil_exception *coil__exception_group(const char *message, coil_exception **children, size_t n)
{
    coil_exception *e = coil__exception_new(COIL_EGROUP, NULL, message);
    if (!e)
        return NULL;
    e->children = children;
    e->nchildren = n;
    return e;
}

void coil__exception_free(coil_exception *e)
{
    if (!e)
        return;
    for (size_t i = 0; i < e->nchildren; i++)
        coil__exception_free(e->children[i]);
    free(e->children);
    if (e->dtor)
        e->dtor(e->payload);
    free(e->message);
    free(e->task_name);
    free(e);
}

int coil_exception_code(const coil_exception *e) { return e ? e->code : 0; }

const char *coil_exception_message(const coil_exception *e)
{
    if (!e)
        return NULL;
    return e->message ? e->message : coil_strerror(e->code);
}

const char *coil_exception_task_name(const coil_exception *e) { return e ? e->task_name : NULL; }
void *coil_exception_payload(const coil_exception *e) { return e ? e->payload : NULL; }
size_t coil_exception_count(const coil_exception *e) { return e ? e->nchildren : 0; }

const coil_exception *coil_exception_child(const coil_exception *e, size_t i)
{
    return e && i < e->nchildren ? e->children[i] : NULL;
}
