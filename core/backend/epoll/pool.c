/* coil core: the epoll backend's thread pool (pool.h).
 *
 * One mutex guards the queue and the counts; idle workers sleep on a condition variable, so an
 * idle pool costs nothing. File I/O is not the hot path, so a lock per job is cheap enough; what
 * the loop touches on every poll, the done list, is lock-free. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "backend/epoll/pool.h"

enum { DEFAULT_THREADS = 4, MAX_THREADS = 128 };

static struct {
    pthread_mutex_t mu;
    pthread_cond_t work;  /* a job was queued */
    pthread_cond_t quiet; /* some done list's busy count fell to 0 */
    coil__pool_job *head, *tail;
    unsigned queued;      /* jobs in the queue */
    unsigned idle;        /* workers not running a job: each will take one queued job */
    unsigned nthreads;    /* workers started */
    unsigned waiting;     /* threads in coil__pool_done_wait */
    unsigned cap;
    /* The done list each worker runs a job for (or NULL): a fork's child has no workers, so it
     * takes their jobs out of those lists' busy counts. Static rather than on the workers'
     * stacks, which the child may no longer have mapped. */
    coil__pool_done *running_for[MAX_THREADS];
} pool = {
    .mu = PTHREAD_MUTEX_INITIALIZER,
    .work = PTHREAD_COND_INITIALIZER,
    .quiet = PTHREAD_COND_INITIALIZER,
};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

/* ---- fork ----
 * The parent's workers do not exist in the child. Holding the lock across the fork means the
 * child's copy of the queue and counts is whole, not half-updated; the child then starts from an
 * empty pool, and its first submit starts workers of its own. */

static void fork_prepare(void) { pthread_mutex_lock(&pool.mu); }
static void fork_parent(void) { pthread_mutex_unlock(&pool.mu); }

static void fork_child(void)
{
    for (unsigned i = 0; i < pool.nthreads; i++) {
        if (pool.running_for[i])
            pool.running_for[i]->busy--;
        pool.running_for[i] = NULL;
    }
    /* The parent's queued jobs are its own: running them here would do their I/O twice. */
    pool.head = pool.tail = NULL;
    pool.queued = pool.idle = pool.nthreads = pool.waiting = 0;
    /* The condition variables may record waiters that do not exist here. */
    pthread_cond_init(&pool.work, NULL);
    pthread_cond_init(&pool.quiet, NULL);
    pthread_mutex_unlock(&pool.mu);
}

static unsigned size_from_env(void)
{
    const char *v = getenv("COIL_THREADPOOL_SIZE");
    if (!v || !*v)
        return DEFAULT_THREADS;
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < 1 || n > MAX_THREADS) {
        fprintf(stderr, "coil: COIL_THREADPOOL_SIZE=%s is not a number in 1..%d; using %d threads\n", v,
                MAX_THREADS, DEFAULT_THREADS);
        return DEFAULT_THREADS;
    }
    return (unsigned)n;
}

static void pool_init(void)
{
    pool.cap = size_from_env();
    /* Without the handlers a child could inherit a held lock or workers it does not have; the
     * pool then still serves the parent, which is all that can be done. */
    (void)pthread_atfork(fork_prepare, fork_parent, fork_child);
}

unsigned coil__pool_size(void)
{
    pthread_once(&pool_once, pool_init);
    return pool.cap;
}

unsigned coil__pool_threads(void)
{
    pthread_mutex_lock(&pool.mu);
    unsigned n = pool.nthreads;
    pthread_mutex_unlock(&pool.mu);
    return n;
}

void coil__pool_done_init(coil__pool_done *d, int efd)
{
    atomic_init(&d->head, NULL);
    d->efd = efd;
    d->busy = 0;
}

/* ---- the done list ---- */

/* Hand job to its list; the job is not touched after the push (its owner may take and free it
 * at once), but d is: its busy count keeps it alive until the caller drops it. The eventfd is
 * written after the push, so a loop woken by it finds the job. */
static void push_done(coil__pool_job *job, coil__pool_done *d)
{
    int efd = d->efd;
    atomic_store_explicit(&job->state, COIL__POOL_FINISHED, memory_order_relaxed);
    coil__pool_job *old = atomic_load_explicit(&d->head, memory_order_relaxed);
    do
        job->next = old;
    while (!atomic_compare_exchange_weak_explicit(&d->head, &old, job, memory_order_release, memory_order_relaxed));
    /* Only the push onto an empty list wakes: the loop empties the whole list per wake-up. A
     * counter already at its ceiling (EAGAIN) is a loop already due to wake. */
    if (!old && efd >= 0) {
        uint64_t one = 1;
        ssize_t n;
        do
            n = write(efd, &one, sizeof one);
        while (n < 0 && errno == EINTR);
    }
}

/* Drop the hold push_done's caller had on d; with the pool's lock held. */
static void release_done(coil__pool_done *d)
{
    if (--d->busy == 0 && pool.waiting)
        pthread_cond_broadcast(&pool.quiet);
}

coil__pool_job *coil__pool_take_done(coil__pool_done *d)
{
    if (!d)
        return NULL;
    coil__pool_job *j = atomic_exchange_explicit(&d->head, NULL, memory_order_acquire);
    coil__pool_job *oldest_first = NULL;
    while (j) {
        coil__pool_job *next = j->next;
        j->next = oldest_first;
        oldest_first = j;
        atomic_store_explicit(&j->state, COIL__POOL_IDLE, memory_order_relaxed);
        j = next;
    }
    return oldest_first;
}

void coil__pool_done_wait(coil__pool_done *d)
{
    pthread_mutex_lock(&pool.mu);
    pool.waiting++;
    while (d->busy)
        pthread_cond_wait(&pool.quiet, &pool.mu);
    pool.waiting--;
    pthread_mutex_unlock(&pool.mu);
}

/* ---- the queue ---- */

static void unlink_job(coil__pool_job *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        pool.head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        pool.tail = job->prev;
    job->next = job->prev = NULL;
    pool.queued--;
}

static void *worker_main(void *arg)
{
    unsigned self = (unsigned)(uintptr_t)arg;
    pthread_mutex_lock(&pool.mu);
    for (;;) {
        while (!pool.head)
            pthread_cond_wait(&pool.work, &pool.mu);
        coil__pool_job *job = pool.head;
        unlink_job(job);
        pool.idle--;
        coil__pool_done *d = job->done;
        d->busy++;
        pool.running_for[self] = d;
        atomic_store_explicit(&job->state, COIL__POOL_RUNNING, memory_order_relaxed);
        pthread_mutex_unlock(&pool.mu);

        job->res = job->run(job);
        push_done(job, d);

        pthread_mutex_lock(&pool.mu);
        pool.running_for[self] = NULL;
        release_done(d);
        pool.idle++;
    }
    return NULL;
}

/* With the pool's lock held. 0, or pthread_create's error. */
static int start_worker(void)
{
    pthread_attr_t attr;
    int err = pthread_attr_init(&attr);
    if (err)
        return err;
    /* Detached: nobody joins a worker, and one blocked in a system call at exit must not keep
     * the process from ending. */
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* A thread starts with its creator's signal mask; starting it with every signal blocked
     * leaves no moment in which a signal meant for the process lands on a worker. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t th;
    err = pthread_create(&th, &attr, worker_main, (void *)(uintptr_t)pool.nthreads);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (err)
        return err;
    pthread_setname_np(th, "coil-pool");
    pool.nthreads++;
    pool.idle++;
    return 0;
}

int coil__pool_submit(coil__pool_job *job)
{
    if (!job || !job->run || !job->done)
        return -EINVAL;
    pthread_once(&pool_once, pool_init);
    pthread_mutex_lock(&pool.mu);
    if (atomic_load_explicit(&job->state, memory_order_relaxed) != COIL__POOL_IDLE) {
        pthread_mutex_unlock(&pool.mu);
        return -EBUSY;
    }
    if (pool.queued + 1 > pool.idle && pool.nthreads < pool.cap) {
        int err = start_worker();
        /* With a worker already started the job waits for it instead of failing. */
        if (err && pool.nthreads == 0) {
            pthread_mutex_unlock(&pool.mu);
            return err == ENOMEM ? -ENOMEM : -EAGAIN;
        }
    }
    job->next = NULL;
    job->prev = pool.tail;
    if (pool.tail)
        pool.tail->next = job;
    else
        pool.head = job;
    pool.tail = job;
    pool.queued++;
    atomic_store_explicit(&job->state, COIL__POOL_QUEUED, memory_order_relaxed);
    pthread_cond_signal(&pool.work);
    pthread_mutex_unlock(&pool.mu);
    return 0;
}

bool coil__pool_cancel(coil__pool_job *job)
{
    if (!job)
        return false;
    pthread_mutex_lock(&pool.mu);
    if (atomic_load_explicit(&job->state, memory_order_relaxed) != COIL__POOL_QUEUED) {
        pthread_mutex_unlock(&pool.mu);
        return false;
    }
    unlink_job(job);
    coil__pool_done *d = job->done;
    d->busy++;
    /* Finished from here on, so no second cancel or submit touches it before it is pushed. */
    atomic_store_explicit(&job->state, COIL__POOL_FINISHED, memory_order_relaxed);
    job->res = -ECANCELED;
    pthread_mutex_unlock(&pool.mu);

    push_done(job, d);

    pthread_mutex_lock(&pool.mu);
    release_done(d);
    pthread_mutex_unlock(&pool.mu);
    return true;
}
