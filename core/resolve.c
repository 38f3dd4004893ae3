/* coil core: getaddrinfo without blocking the loop.
 *
 * A numeric address resolves at once. A name goes to a short-lived helper thread (core may not
 * use the shards executor); the task waits on an eventfd read through the ring, so waiting costs
 * nothing and cancels like any read. The request is shared by the task and the thread and freed
 * by whichever lets go last, so a cancelled lookup finishes in the background and is dropped. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "net_internal.h"

typedef struct gai_req {
    atomic_int refs;
    atomic_int done;
    int efd;
    int rc, sys_errno;
    char *host, *port;
    struct addrinfo hints;
    struct addrinfo *res;
    uint64_t counter;    /* the eventfd read lands here */
} gai_req;

int coil__gai_error(int rc)
{
    switch (rc) {
    case 0:
        return 0;
    case EAI_NONAME:
    case EAI_SERVICE:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return COIL_ENONAME;
    case EAI_MEMORY:
        return -ENOMEM;
    default:
        return COIL_ERESOLVE;
    }
}

static void req_put(gai_req *r)
{
    if (atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    if (r->res)
        freeaddrinfo(r->res);
    close(r->efd);
    free(r->host);
    free(r->port);
    free(r);
}

static void *resolver(void *arg)
{
    gai_req *r = arg;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(r->host, r->port, &r->hints, &res);
    r->rc = rc;
    r->sys_errno = rc == EAI_SYSTEM ? errno : 0;
    r->res = res;
    atomic_store_explicit(&r->done, 1, memory_order_release);
    uint64_t one = 1;
    ssize_t w = write(r->efd, &one, sizeof one);
    (void)w; /* an eventfd write of 1 cannot fail short of overflow */
    req_put(r);
    return NULL;
}

static int finish(int rc, int sys_errno, struct addrinfo *res, struct addrinfo **out)
{
    if (rc == EAI_SYSTEM)
        return sys_errno ? -sys_errno : COIL_ERESOLVE;
    if (rc)
        return coil__gai_error(rc);
    *out = res;
    return 0;
}

static int on_thread(coil_task *t, const char *host, const char *port, const struct addrinfo *hints,
                     struct addrinfo **out)
{
    gai_req *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    r->hints = *hints;
    r->host = host ? strdup(host) : NULL;
    r->port = port ? strdup(port) : NULL;
    r->efd = eventfd(0, EFD_CLOEXEC);
    if ((host && !r->host) || (port && !r->port) || r->efd < 0) {
        int err = r->efd < 0 ? -errno : -ENOMEM;
        if (r->efd >= 0)
            close(r->efd);
        free(r->host);
        free(r->port);
        free(r);
        return err;
    }
    atomic_init(&r->refs, 2);
    atomic_init(&r->done, 0);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t th;
    int e = pthread_create(&th, &attr, resolver, r);
    pthread_attr_destroy(&attr);
    if (e) {
        atomic_store(&r->refs, 1);
        req_put(r);
        return -e;
    }
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    int res;
    if (!sqe) {
        res = -EBUSY;
    } else {
        io_uring_prep_read(sqe, r->efd, &r->counter, sizeof r->counter, (uint64_t)-1);
        res = coil__io_submit_wait(t, sqe);
    }
    int err;
    if (res == -ECANCELED || res < 0)
        err = res; /* a finished lookup nobody waits for is freed with the request */
    else if (atomic_load_explicit(&r->done, memory_order_acquire)) {
        err = finish(r->rc, r->sys_errno, r->res, out);
        if (err == 0)
            r->res = NULL;
    } else
        err = COIL_ERESOLVE;
    req_put(r);
    return err;
}

int coil_getaddrinfo(const char *host, const char *port, const struct addrinfo *hints, struct addrinfo **res)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!res || (!host && !port))
        return -EINVAL;
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    struct addrinfo h = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
    if (hints)
        h = *hints;
    /* A numeric host (or none, for a passive lookup) never touches DNS or files: do it here. */
    struct addrinfo nh = h;
    nh.ai_flags |= AI_NUMERICHOST;
    if (port) {
        char *end;
        strtol(port, &end, 10);
        if (*port && !*end)
            nh.ai_flags |= AI_NUMERICSERV;
        else
            return on_thread(t, host, port, &h, res);
    }
    struct addrinfo *out = NULL;
    int rc = getaddrinfo(host, port, &nh, &out);
    if (rc == 0) {
        *res = out;
        return 0;
    }
    if (rc != EAI_NONAME || !host)
        return finish(rc, errno, NULL, res);
    return on_thread(t, host, port, &h, res);
}
