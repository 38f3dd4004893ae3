/* coil core: getaddrinfo without blocking the loop.
 *
 * A numeric address resolves at once. A name goes to the resolver's own pool: at most
 * COIL_RESOLVE_THREADS threads for the whole process, started as lookups queue up and gone after
 * a while without work, so a burst of lookups cannot start a thread each. The pool is core's
 * own rather than a loop's executor (shards/): a lookup may outlive the loop that started it by
 * a DNS timeout, and no loop's close should wait for it. The task waits on an eventfd read
 * through the ring, so waiting costs nothing and cancels like any read. The request is shared by
 * the task and the pool and freed by whichever lets go last: a cancelled lookup still queued is
 * skipped, one already running finishes in the background and is dropped. */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "io/net_internal.h"

typedef struct gai_req {
    struct gai_req *next; /* in the pool's queue */
    atomic_int refs;
    atomic_int done;
    atomic_int abandoned; /* the task let go: skip the lookup if it has not started */
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

static void resolve_one(gai_req *r)
{
    if (atomic_load_explicit(&r->abandoned, memory_order_acquire)) {
        req_put(r);
        return;
    }
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
}

/* ---- the pool ---- */

/* How long an idle pool thread waits for more work before it exits. */
enum { IDLE_EXIT_S = 5 };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    gai_req *head, **tail;
    unsigned threads, idle;
    bool held; /* coil__resolve_hold: lookups stay queued */
} pool = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, &pool.head, 0, 0, false };

static void *pool_thread(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        gai_req *r = pool.held ? NULL : pool.head;
        if (!r) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += IDLE_EXIT_S;
            pool.idle++;
            int e = 0;
            while ((!pool.head || pool.held) && e != ETIMEDOUT)
                e = pthread_cond_timedwait(&pool.cv, &pool.mu, &until);
            pool.idle--;
            if (!pool.head)
                break;
            continue;
        }
        pool.head = r->next;
        if (!pool.head)
            pool.tail = &pool.head;
        pthread_mutex_unlock(&pool.mu);
        resolve_one(r);
        pthread_mutex_lock(&pool.mu);
    }
    pool.threads--;
    pthread_mutex_unlock(&pool.mu);
    return NULL;
}

/* A child of fork() has none of the pool's threads: start from an empty pool there (what was
 * queued belonged to the parent's tasks). */
static void pool_after_fork(void)
{
    pthread_mutex_init(&pool.mu, NULL);
    pthread_cond_init(&pool.cv, NULL);
    pool.head = NULL;
    pool.tail = &pool.head;
    pool.threads = pool.idle = 0;
}

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static void pool_init(void) { pthread_atfork(NULL, NULL, pool_after_fork); }

void coil__resolve_hold(bool hold)
{
    pthread_mutex_lock(&pool.mu);
    pool.held = hold;
    if (!hold)
        pthread_cond_broadcast(&pool.cv);
    pthread_mutex_unlock(&pool.mu);
}

/* Queue r; start a thread if none is idle and the bound allows. 0, or a negated errno when no
 * thread runs to take it (r is then not queued). */
static int pool_submit(gai_req *r)
{
    int err = 0;
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.mu);
    r->next = NULL;
    *pool.tail = r;
    pool.tail = &r->next;
    if (pool.idle) {
        pthread_cond_signal(&pool.cv);
    } else if (pool.threads < COIL_RESOLVE_THREADS) {
        pthread_attr_t attr;
        pthread_t th;
        err = pthread_attr_init(&attr);
        if (!err) {
            pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
            err = pthread_create(&th, &attr, pool_thread, NULL);
            pthread_attr_destroy(&attr);
        }
        if (!err)
            pool.threads++;
        else if (pool.threads)
            err = 0; /* a running thread will take it */
    }
    if (err) {
        /* r is the only entry: nothing runs, so nothing else can be queued. */
        pool.head = NULL;
        pool.tail = &pool.head;
    }
    pthread_mutex_unlock(&pool.mu);
    return -err;
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
    atomic_init(&r->abandoned, 0);
    int e = pool_submit(r);
    if (e) {
        atomic_store(&r->refs, 1);
        req_put(r);
        return e;
    }
    coil__op op = { .code = COIL__OP_READ, .fd = r->efd, .buf = &r->counter, .len = sizeof r->counter, .off = COIL__OFF_CUR };
    int res = coil__io_wait(t, &op);
    int err;
    if (res < 0) {
        err = res; /* a finished lookup nobody waits for is freed with the request */
        atomic_store_explicit(&r->abandoned, 1, memory_order_release);
    }
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
