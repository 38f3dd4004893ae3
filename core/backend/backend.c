/* coil core: which backend a loop gets (backend.h). io_uring where the kernel sets it up, epoll
 * where it is refused or asked for; the choice is per loop, so one process may run both. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backend/epoll/driver.h"
#include "engine/internal.h"
#include "backend/uring/driver.h"
#include "coil/loop.h"

_Static_assert(COIL__BACKEND_AUTO == (int)COIL_BACKEND_AUTO && COIL__BACKEND_IO_URING == (int)COIL_BACKEND_IO_URING &&
                   COIL__BACKEND_EPOLL == (int)COIL_BACKEND_EPOLL,
               "backend.h names the public coil_backend values");

/* Set once the kernel has refused io_uring for good (no such system call, or a policy forbids
 * it): later loops go straight to epoll instead of asking again, and the fallback is announced
 * once. A refusal for want of memory is not remembered: the next loop may get its rings. */
static atomic_bool uring_refused;
static atomic_bool fallback_said;

static int from_env(void)
{
    const char *v = getenv("COIL_BACKEND");
    if (!v || !*v || strcmp(v, "auto") == 0)
        return COIL__BACKEND_AUTO;
    if (strcmp(v, "io_uring") == 0 || strcmp(v, "uring") == 0)
        return COIL__BACKEND_IO_URING;
    if (strcmp(v, "epoll") == 0)
        return COIL__BACKEND_EPOLL;
    fprintf(stderr, "coil: COIL_BACKEND=%s is not one of io_uring, epoll, auto\n", v);
    return -EINVAL;
}

int coil__backend_init(coil_loop *loop, unsigned entries, int which)
{
    memset(&loop->io, 0, sizeof loop->io);
    if (which == COIL__BACKEND_AUTO)
        which = from_env();
    switch (which) {
    case COIL__BACKEND_EPOLL:
        return coil__epoll_init(loop, entries);
    case COIL__BACKEND_IO_URING:
    case COIL__BACKEND_AUTO:
        break;
    default:
        return -EINVAL;
    }
    if (which == COIL__BACKEND_AUTO && atomic_load_explicit(&uring_refused, memory_order_relaxed))
        return coil__epoll_init(loop, entries);
    int err = coil__uring_init(loop, entries);
    if (err == 0)
        return 0;
    if (which == COIL__BACKEND_IO_URING) {
        coil__uring_explain(err, NULL);
        return COIL_ENOURING;
    }
    if (err == -ENOSYS || err == -EPERM || err == -EACCES)
        atomic_store_explicit(&uring_refused, true, memory_order_relaxed);
    if (!atomic_exchange_explicit(&fallback_said, true, memory_order_relaxed))
        coil__uring_explain(err, ". Using the epoll backend instead (COIL_BACKEND=epoll chooses it without trying "
                                 "io_uring first)");
    return coil__epoll_init(loop, entries);
}

void coil__backend_broken(coil_loop *loop, int err, const char *why)
{
    if (!loop->io.err)
        loop->io.err = err;
    if (loop->io.broken)
        return;
    loop->io.broken = true;
    coil__loop_report(loop, why, err, NULL, NULL, NULL);
}
