/* coil core: fault injection (see faults.h). */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/faults.h"

#if defined(COIL_FAULTS)

enum { WHEN_NEVER, WHEN_NTH, WHEN_FROM, WHEN_EVERY };

struct fault {
    _Atomic int when;
    _Atomic unsigned long n;
    _Atomic int err;
    _Atomic unsigned long count;
};

struct choice {
    int when;
    unsigned long n;
    int err;
};

static struct fault faults[COIL__FAULT_KINDS];
static const char *const names[COIL__FAULT_KINDS] = { "drop_wakeup", "fail_sqe", "enter_error" };

static int errno_named(const char *s, char **end)
{
    static const struct {
        const char *name;
        int err;
    } known[] = { { "EPERM", EPERM },   { "EBADF", EBADF },   { "ENOMEM", ENOMEM }, { "EINTR", EINTR },
                  { "EAGAIN", EAGAIN }, { "EBUSY", EBUSY },   { "ETIME", ETIME },   { "EFAULT", EFAULT },
                  { "EINVAL", EINVAL } };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        size_t len = strlen(known[i].name);
        if (strncmp(s, known[i].name, len) == 0) {
            *end = (char *)s + len;
            return known[i].err;
        }
    }
    long v = strtol(s, end, 10);
    return *end != s && v > 0 && v < 4096 ? (int)v : -1;
}

/* Parse spec into out; false if any part does not parse. */
static bool parse(const char *spec, struct choice out[COIL__FAULT_KINDS])
{
    for (int k = 0; k < COIL__FAULT_KINDS; k++)
        out[k].when = WHEN_NEVER, out[k].n = 0, out[k].err = EPERM;
    const char *p = spec;
    while (p && *p) {
        int kind = -1;
        for (int k = 0; k < COIL__FAULT_KINDS; k++) {
            size_t len = strlen(names[k]);
            if (strncmp(p, names[k], len) == 0 && p[len] == ':') {
                kind = k;
                p += len + 1;
                break;
            }
        }
        if (kind < 0)
            return false;
        int when = WHEN_NTH;
        if (*p == '%') {
            when = WHEN_EVERY;
            p++;
        }
        char *end;
        unsigned long n = strtoul(p, &end, 10);
        if (end == p || n == 0)
            return false;
        p = end;
        if (*p == '+' && when == WHEN_NTH) {
            when = WHEN_FROM;
            p++;
        }
        if (*p == ':') {
            int err = errno_named(p + 1, &end);
            if (err < 0)
                return false;
            out[kind].err = err;
            p = end;
        }
        out[kind].when = when;
        out[kind].n = n;
        if (*p == ',')
            p++;
        else if (*p)
            return false;
    }
    return true;
}

static int install(const char *spec)
{
    struct choice sel[COIL__FAULT_KINDS];
    if (!parse(spec, sel))
        return -EINVAL;
    for (int k = 0; k < COIL__FAULT_KINDS; k++) {
        atomic_store(&faults[k].when, WHEN_NEVER); /* off while the rest changes */
        atomic_store(&faults[k].count, 0);
        atomic_store(&faults[k].n, sel[k].n);
        atomic_store(&faults[k].err, sel[k].err);
        atomic_store(&faults[k].when, sel[k].when);
    }
    return 0;
}

static pthread_once_t from_env_once = PTHREAD_ONCE_INIT;

static void from_env(void)
{
    const char *spec = getenv("COIL_FAULT");
    if (spec && install(spec) != 0)
        fprintf(stderr, "coil: COIL_FAULT=%s does not parse (see core/faults.h); no fault injected\n", spec);
}

bool coil__fault_hit(int kind)
{
    pthread_once(&from_env_once, from_env);
    struct fault *f = &faults[kind];
    int when = atomic_load_explicit(&f->when, memory_order_relaxed);
    if (when == WHEN_NEVER)
        return false;
    unsigned long c = atomic_fetch_add_explicit(&f->count, 1, memory_order_relaxed) + 1;
    unsigned long n = atomic_load_explicit(&f->n, memory_order_relaxed);
    switch (when) {
    case WHEN_NTH:
        return c == n;
    case WHEN_FROM:
        return c >= n;
    default:
        return c % n == 0;
    }
}

int coil__fault_errno(int kind) { return atomic_load_explicit(&faults[kind].err, memory_order_relaxed); }

int coil__fault_set(const char *spec)
{
    pthread_once(&from_env_once, from_env); /* so a later first hook does not replace this */
    return install(spec ? spec : "");
}

#else

int coil__fault_errno(int kind)
{
    (void)kind;
    return EPERM;
}

int coil__fault_set(const char *spec)
{
    (void)spec;
    return -ENOSYS;
}

#endif
