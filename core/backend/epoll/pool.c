#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include "backend/epoll/pool.h"

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static coil__pool_job *qhead, **qtail = &qhead;
static bool started;

static void push_done(coil__pool_job *j)
{
    coil__pool_done *d = j->done;
    coil__pool_job *old = atomic_load(&d->head);
    do
        j->next = old;
    while (!atomic_compare_exchange_weak(&d->head, &old, j));
    uint64_t one = 1;
    (void)!write(d->efd, &one, sizeof one);
}

static void *worker(void *arg)
{
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&mu);
        while (!qhead)
            pthread_cond_wait(&cv, &mu);
        coil__pool_job *j = qhead;
        qhead = j->next;
        if (!qhead)
            qtail = &qhead;
        atomic_store(&j->state, 1);
        pthread_mutex_unlock(&mu);
        j->res = j->run(j);
        atomic_store(&j->state, 2);
        push_done(j);
    }
    return NULL;
}

int coil__pool_submit(coil__pool_job *job)
{
    pthread_mutex_lock(&mu);
    if (!started) {
        pthread_t t;
        if (pthread_create(&t, NULL, worker, NULL) != 0) {
            pthread_mutex_unlock(&mu);
            return -EAGAIN;
        }
        pthread_detach(t);
        started = true;
    }
    job->next = NULL;
    atomic_store(&job->state, 0);
    *qtail = job;
    qtail = &job->next;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&mu);
    return 0;
}

bool coil__pool_cancel(coil__pool_job *job)
{
    pthread_mutex_lock(&mu);
    for (coil__pool_job **p = &qhead; *p; p = &(*p)->next)
        if (*p == job) {
            *p = job->next;
            if (!qhead || qtail == &job->next)
                qtail = p;
            pthread_mutex_unlock(&mu);
            job->res = -ECANCELED;
            push_done(job);
            return true;
        }
    pthread_mutex_unlock(&mu);
    return false;
}

coil__pool_job *coil__pool_take_done(coil__pool_done *d)
{
    coil__pool_job *j = atomic_exchange(&d->head, NULL), *rev = NULL;
    while (j) {
        coil__pool_job *next = j->next;
        j->next = rev;
        rev = j;
        j = next;
    }
    return rev;
}
