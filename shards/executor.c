/* coil shards: thread-pool executors, run_in_executor and to_thread.
 *
 * Jobs wait in a mutex-guarded FIFO; workers are started on demand up to the cap. A finished
 * job travels back to the loop of the task that submitted it as an inbox message; the waiting
 * task reads the result from the job record (heap, never its own stack) after it resumes, or the
 * job settles its future. A function that calls coil_raise fails the job: while it runs, the
 * worker points core's coil__tls_worker_exc at the job's exception slot. */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>

#include "coil/executor.h"
#include "shards.h"

typedef struct job {
    struct job *next;
    coil_task_fn fn;
    void *arg;
    void *result;
    coil_exception *exc;          /* what the function raised (coil_raise in the worker), or NULL */
    coil_future *fut;             /* coil_run_in_executor_future: the future to settle (one ref) */
    void (*dtor)(void *);
    coil__inbox *ib;              /* where the completion goes */
    coil_task *waiter;
    bool abandoned;               /* the waiter gave up (cancelled, timed out); loop thread only */
    bool timed;                   /* the waiter's timer is armed */
    coil_executor *ex;            /* a shutdown job: the executor to free once joined */
    pthread_t joiner;             /* a shutdown job: the thread that waited for the workers */
    bool counted;                 /* in the loop's executor_busy counter */
} job;

struct coil_executor {
    pthread_mutex_t mu;
    pthread_cond_t work_cv, idle_cv;
    job *head, **tail;
    unsigned queued;              /* jobs not yet picked up */
    unsigned active;              /* jobs queued or running */
    unsigned max, nthreads, idle;
    unsigned sleeping;            /* idle workers blocked in the condition variable */
    _Atomic unsigned queued_pub;  /* `queued`, readable without the lock by spinning workers */
    bool shutdown;
    pthread_t *threads;
};

enum { SPIN_NS = 20 * 1000 };

static unsigned default_workers(void)
{
    cpu_set_t set;
    unsigned n = 1;
    if (sched_getaffinity(0, sizeof set, &set) == 0)
        n = (unsigned)CPU_COUNT(&set);
    return n + 4 < 32 ? n + 4 : 32;
}

int coil_executor_new(coil_executor **out, unsigned max_workers)
{
    if (!out)
        return -EINVAL;
    coil_executor *ex = calloc(1, sizeof *ex);
    if (!ex)
        return -ENOMEM;
    ex->max = max_workers ? max_workers : default_workers();
    ex->threads = calloc(ex->max, sizeof *ex->threads);
    if (!ex->threads) {
        free(ex);
        return -ENOMEM;
    }
    pthread_mutex_init(&ex->mu, NULL);
    pthread_cond_init(&ex->work_cv, NULL);
    pthread_cond_init(&ex->idle_cv, NULL);
    ex->tail = &ex->head;
    *out = ex;
    return 0;
}

static void job_done(void *a, void *b);

static void *worker(void *arg)
{
    coil_executor *ex = arg;
    pthread_mutex_lock(&ex->mu);
    for (;;) {
        while (!ex->head && !ex->shutdown) {
            ex->idle++;
            /* Offloads tend to come in bursts: look for the next one for a few microseconds
             * before paying for a sleep and a wake-up. */
            pthread_mutex_unlock(&ex->mu);
            uint64_t t0 = coil__now_ns();
            while (!atomic_load_explicit(&ex->queued_pub, memory_order_relaxed) &&
                   coil__now_ns() - t0 < SPIN_NS)
                sched_yield();
            pthread_mutex_lock(&ex->mu);
            if (!ex->head && !ex->shutdown) {
                ex->sleeping++;
                pthread_cond_wait(&ex->work_cv, &ex->mu);
                ex->sleeping--;
            }
            ex->idle--;
        }
        job *j = ex->head;
        if (!j)
            break; /* shut down and nothing left to run */
        ex->head = j->next;
        if (!ex->head)
            ex->tail = &ex->head;
        ex->queued--;
        atomic_store_explicit(&ex->queued_pub, ex->queued, memory_order_relaxed);
        pthread_mutex_unlock(&ex->mu);
        coil__tls_worker_exc = &j->exc;
        j->result = j->fn(j->arg);
        coil__tls_worker_exc = NULL;
        coil__inbox_post(j->ib, job_done, j, NULL);
        pthread_mutex_lock(&ex->mu);
        if (--ex->active == 0)
            pthread_cond_broadcast(&ex->idle_cv);
    }
    pthread_mutex_unlock(&ex->mu);
    return NULL;
}

/* Returns 0 and, in *queued, how many jobs wait for a thread now (for the loop's counters). */
static int submit(coil_executor *ex, job *j, unsigned *queued)
{
    pthread_mutex_lock(&ex->mu);
    if (ex->shutdown) {
        pthread_mutex_unlock(&ex->mu);
        return COIL_ECLOSED;
    }
    if (ex->queued + 1 > ex->idle && ex->nthreads < ex->max) {
        if (pthread_create(&ex->threads[ex->nthreads], NULL, worker, ex) == 0)
            ex->nthreads++;
        else if (ex->nthreads == 0) {
            pthread_mutex_unlock(&ex->mu);
            return -EAGAIN;
        }
    }
    j->next = NULL;
    *ex->tail = j;
    ex->tail = &j->next;
    ex->queued++;
    atomic_store_explicit(&ex->queued_pub, ex->queued, memory_order_relaxed);
    ex->active++;
    if (ex->sleeping)
        pthread_cond_signal(&ex->work_cv);
    *queued = ex->queued;
    pthread_mutex_unlock(&ex->mu);
    return 0;
}

unsigned coil_executor_threads(coil_executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    unsigned n = ex->nthreads;
    pthread_mutex_unlock(&ex->mu);
    return n;
}

static void executor_destroy(coil_executor *ex)
{
    for (unsigned i = 0; i < ex->nthreads; i++)
        pthread_join(ex->threads[i], NULL);
    pthread_mutex_destroy(&ex->mu);
    pthread_cond_destroy(&ex->work_cv);
    pthread_cond_destroy(&ex->idle_cv);
    free(ex->threads);
    free(ex);
}

static void begin_shutdown(coil_executor *ex)
{
    pthread_mutex_lock(&ex->mu);
    ex->shutdown = true;
    pthread_cond_broadcast(&ex->work_cv);
    pthread_mutex_unlock(&ex->mu);
}

/* Wait for every job to finish; a loop thread keeps running its inbox meanwhile, since its own
 * jobs' completions may need room in it. Then join and free. */
static void shutdown_wait(coil_executor *ex, coil__inbox *ib)
{
    begin_shutdown(ex);
    pthread_mutex_lock(&ex->mu);
    while (ex->active) {
        if (ib) {
            pthread_mutex_unlock(&ex->mu);
            coil__inbox_wait(ib, 1000 * 1000);
            pthread_mutex_lock(&ex->mu);
        } else {
            pthread_cond_wait(&ex->idle_cv, &ex->mu);
        }
    }
    pthread_mutex_unlock(&ex->mu);
    executor_destroy(ex);
}

void coil_executor_free(coil_executor *ex)
{
    if (!ex)
        return;
    coil_loop *loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    shutdown_wait(ex, loop ? coil__inbox_find(loop) : NULL);
}

/* ---- a loop's default executor: this layer's per-loop record on the inbox ---- */

typedef struct ex_loop {
    coil__inbox_ext ext;
    coil_executor *default_executor;
    bool shut;                    /* coil_shutdown_default_executor was called */
} ex_loop;

/* Loop close: the default executor's jobs finish (their completions still run), then it goes. */
static void ex_loop_close(coil__inbox *ib, coil__inbox_ext *e)
{
    ex_loop *el = (ex_loop *)e;
    if (el->default_executor)
        shutdown_wait(el->default_executor, ib);
    free(el);
}
static const coil__inbox_ext_ops ex_loop_ops = { NULL, ex_loop_close };

/* The loop's record, made on first need; NULL on -ENOMEM. Loop thread. */
static ex_loop *ex_loop_of(coil__inbox *ib)
{
    coil__inbox_ext *e = coil__inbox_ext_find(ib, &ex_loop_ops);
    if (e)
        return (ex_loop *)e;
    ex_loop *el = calloc(1, sizeof *el);
    if (!el)
        return NULL;
    el->ext.ops = &ex_loop_ops;
    coil__inbox_ext_add(ib, &el->ext);
    return el;
}

/* The loop's default executor, made on first use; NULL with *err set (0: no memory). A message
 * the closing inbox runs gets none: the record would outlive the close. */
static coil_executor *default_executor(coil__inbox *ib, int *err)
{
    if (ib->closing) {
        *err = COIL_ECLOSED;
        return NULL;
    }
    ex_loop *el = ex_loop_of(ib);
    if (!el)
        return NULL;
    if (el->shut) {
        *err = COIL_ECLOSED;
        return NULL;
    }
    if (!el->default_executor)
        *err = coil_executor_new(&el->default_executor, 0);
    return el->default_executor;
}

int coil_loop_set_default_executor(coil_loop *loop, coil_executor *ex)
{
    if (!loop || !ex)
        return -EINVAL;
    coil__inbox *ib = coil__inbox_of(loop);
    if (ib && ib->closing)
        return COIL_ECLOSED;
    ex_loop *el = ib ? ex_loop_of(ib) : NULL;
    if (!el)
        return -ENOMEM;
    if (el->default_executor || el->shut)
        return COIL_EINVALSTATE;
    el->default_executor = ex;
    return 0;
}

/* ---- waiting for a job, in a task ---- */

/* The function's result goes to its destructor, and what it raised is freed. */
static void drop_outcome(job *j)
{
    if (j->dtor)
        j->dtor(j->result);
    coil__exception_free(j->exc);
    j->exc = NULL;
}

/* coil_run_in_executor_future: the job's outcome becomes the future's, unless the future was
 * cancelled (or the loop is closing), which drops it. */
static void settle_future(job *j, coil__inbox *ib)
{
    coil_future *f = j->fut;
    if (ib->closing || f->aw.h.state != COIL__PENDING) {
        drop_outcome(j);
    } else if (j->exc) {
        coil__future_fail(f, j->exc);
        j->exc = NULL;
        if (j->dtor)
            j->dtor(j->result);
    } else {
        coil_future_set_result(f, j->result);
    }
    coil__aw_unref(ib->loop, &f->aw);
    free(j);
}

static void job_done(void *a, void *b)
{
    (void)b;
    job *j = a;
    coil__inbox *ib = j->ib;
    coil__inbox_expect(ib, -1);
    if (j->counted)
        COIL__STAT_SET(ib->loop, executor_busy, coil__stat_get(&ib->loop->stats->executor_busy) - 1);
    if (j->ex) {
        /* A shutdown job: every worker has left its loop, and the joiner has posted this. */
        pthread_join(j->joiner, NULL);
        executor_destroy(j->ex);
        j->ex = NULL;
    }
    if (j->fut) {
        settle_future(j, ib);
        return;
    }
    if (j->abandoned || ib->closing) {
        /* Nobody awaits it (asyncio drops the outcome of a cancelled wrapped future too). */
        drop_outcome(j);
        free(j);
        return;
    }
    coil_task *t = j->waiter;
    if (j->timed)
        coil__timers_remove(&t->loop->timers, &t->timer);
    coil__task_wake(t, 0);
}

static void job_cancel(coil_task *t)
{
    job *j = t->wait_obj;
    if (j->timed)
        coil__timers_remove(&t->loop->timers, &t->timer);
    j->abandoned = true;
    coil__task_wake(t, -ECANCELED);
}

static void job_timeout(coil__timer *tm)
{
    coil_task *t = coil__container_of(tm, coil_task, timer);
    job *j = t->wait_obj;
    j->abandoned = true;
    coil__task_wake(t, -ETIMEDOUT);
}

/* A result that came back must not be lost to a cancel landing after the wake-up. */
static const coil__wait_ops job_ops = { "executor", job_cancel, false, NULL };

/* Suspend t until j completes (or times out after timeout_ns, UINT64_MAX = never). Returns 0
 * with the job freed and its result in *result, or -ECANCELED/-ETIMEDOUT (job_done frees j). */
static int await_job(coil_task *t, job *j, uint64_t timeout_ns, void **result)
{
    coil__inbox_expect(j->ib, +1);
    if (timeout_ns != UINT64_MAX) {
        t->timer.fire = job_timeout;
        uint64_t now = coil__now_ns();
        if (coil__timers_add(&t->loop->timers, &t->timer, now + timeout_ns) == 0)
            j->timed = true;
    }
    int r = coil__task_suspend(&job_ops, j);
    if (r)
        return r;
    if (j->exc) {
        /* The function raised: its code is the call's; the message stays with the future form
         * (coil_run_in_executor_future), where the awaiter can read it. */
        r = j->exc->code;
        drop_outcome(j);
        free(j);
        return r;
    }
    if (result)
        *result = j->result;
    free(j);
    return 0;
}

int coil_run_in_executor(coil_executor *ex, coil_task_fn fn, void *arg, void (*result_dtor)(void *),
                         void **result)
{
    if (!fn)
        return -EINVAL;
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    int err = coil__task_check_cancel(t);
    if (err)
        return err;
    coil__inbox *ib = coil__inbox_here();
    if (!ib)
        return -ENOMEM;
    if (!ex && !(ex = default_executor(ib, &err)))
        return err ? err : -ENOMEM;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->fn = fn;
    j->arg = arg;
    j->dtor = result_dtor;
    j->ib = ib;
    j->waiter = t;
    unsigned queued;
    err = submit(ex, j, &queued);
    if (err) {
        free(j);
        return err;
    }
    coil_loop *loop = t->loop;
    COIL__STAT_SET(loop, executor_queue, queued);
    COIL__STAT_ADD(loop, executor_busy, 1);
    j->counted = true;
    return await_job(t, j, UINT64_MAX, result);
}

int coil_to_thread(coil_task_fn fn, void *arg, void **result)
{
    return coil_run_in_executor(NULL, fn, arg, NULL, result);
}

int coil_run_in_executor_future(coil_executor *ex, coil_task_fn fn, void *arg, void (*result_dtor)(void *),
                                coil_future **out)
{
    if (!fn || !out)
        return -EINVAL;
    coil_loop *loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    if (!loop)
        return -EINVAL;
    COIL__LOOP_THREAD_CHECK(loop, "coil_run_in_executor_future");
    if (loop->closed)
        return COIL_ECLOSED;
    coil__inbox *ib = coil__inbox_of(loop);
    if (!ib)
        return -ENOMEM;
    int err = 0;
    if (!ex && !(ex = default_executor(ib, &err)))
        return err ? err : -ENOMEM;
    coil_future *f;
    if ((err = coil_loop_create_future(loop, &f)))
        return err;
    job *j = calloc(1, sizeof *j);
    if (!j) {
        coil_future_free(f);
        return -ENOMEM;
    }
    j->fn = fn;
    j->arg = arg;
    j->dtor = result_dtor;
    j->ib = ib;
    j->fut = f;
    f->aw.h.refs++; /* the job's: the future outlives a handle freed before the job is done */
    unsigned queued;
    if ((err = submit(ex, j, &queued))) {
        f->aw.h.refs--;
        coil_future_free(f);
        free(j);
        return err;
    }
    COIL__STAT_SET(loop, executor_queue, queued);
    COIL__STAT_ADD(loop, executor_busy, 1);
    j->counted = true;
    coil__inbox_expect(ib, +1); /* job_done takes it back */
    *out = f;
    return 0;
}

/* ---- shutting the default executor down from a task ---- */

static void *join_workers(void *arg)
{
    job *j = arg;
    begin_shutdown(j->ex);
    pthread_mutex_lock(&j->ex->mu);
    while (j->ex->active)
        pthread_cond_wait(&j->ex->idle_cv, &j->ex->mu);
    pthread_mutex_unlock(&j->ex->mu);
    /* The threads themselves are joined on the loop, in job_done, once they have all left. */
    coil__inbox_post(j->ib, job_done, j, NULL);
    return NULL;
}

int coil_shutdown_default_executor(double timeout)
{
    if (isnan(timeout))
        return -EINVAL;
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    int err = coil__task_check_cancel(t);
    if (err)
        return err;
    coil__inbox *ib = coil__inbox_here();
    ex_loop *el = ib ? ex_loop_of(ib) : NULL;
    if (!el)
        return -ENOMEM;
    el->shut = true;
    coil_executor *ex = el->default_executor;
    if (!ex)
        return 0;
    job *j = calloc(1, sizeof *j);
    if (!j)
        return -ENOMEM;
    j->ib = ib;
    j->waiter = t;
    j->ex = ex;
    if (pthread_create(&j->joiner, NULL, join_workers, j) != 0) {
        free(j);
        return -EAGAIN;
    }
    el->default_executor = NULL;
    uint64_t ns = timeout < 0 ? UINT64_MAX : timeout >= 1e9 ? (uint64_t)1e18 : (uint64_t)ceil(timeout * 1e9);
    return await_job(t, j, ns, NULL);
}
