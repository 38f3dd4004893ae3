/* coil core: the epoll backend's thread pool, for the system calls epoll cannot wait on (reads
 * and writes of regular files and block devices, fsync, openat, statx, a write to a blocking
 * pipe). Private to core/backend/epoll/.
 *
 * One pool per process, shared by every loop, as libuv's: workers start on the first submit and
 * whenever every started one is busy, up to a cap (4 by default; COIL_THREADPOOL_SIZE, 1..128,
 * overrides it). Jobs wait in a FIFO. A finished job goes onto its loop's done list, a lock-free
 * stack the loop empties from its own thread, and the worker writes to the loop's eventfd when
 * the list was empty, so one epoll_wait wake-up stands for any number of completions.
 *
 * The protocol on the loop's side:
 *   - Embed a coil__pool_job in the operation record, zeroed (or as take_done returned it), fill
 *     run and done, submit. Nothing run reads may move or be freed until take_done returns the job.
 *   - When the eventfd is readable: read it (which resets it) first, then take_done. In the other
 *     order a push landing between the two would find the list non-empty, write nothing, and
 *     wait until some later completion's wake-up.
 *   - Before freeing a done list or closing its eventfd: cancel the jobs still queued for it,
 *     coil__pool_done_wait (which waits out the running ones), then take_done the rest.
 *
 * Workers block every signal, so a process's signal handling (coil's signalfd included) is not
 * disturbed by them; a write to a closed pipe therefore returns -EPIPE instead of killing the
 * process. Workers are detached and hold nothing of their own on the heap: a process may exit
 * while they wait for work.
 *
 * After fork, the child's pool has no workers and an empty queue: it starts workers of its own
 * on its first submit. Jobs queued or running in the parent at the fork never complete in the
 * child (their records there are copies of the parent's). */
#ifndef COIL_BACKEND_EPOLL_POOL_H
#define COIL_BACKEND_EPOLL_POOL_H

#include <stdbool.h>

/* The records are embedded by C callers and by the C++ tests, so their atomics are spelled in
 * each language's own way (the same layout with gcc and clang). */
#ifdef __cplusplus
#include <atomic>
#define COIL__POOL_ATOMIC(T) std::atomic<T>
extern "C" {
#else
#include <stdatomic.h>
#define COIL__POOL_ATOMIC(T) _Atomic(T)
#endif

typedef struct coil__pool_done coil__pool_done; /* a loop's finished-job list */

/* A job's state (coil__pool_job.state), kept by the pool. */
enum {
    COIL__POOL_IDLE = 0,  /* not submitted, or taken back by take_done: may be submitted */
    COIL__POOL_QUEUED,    /* waiting for a worker: cancel takes it back */
    COIL__POOL_RUNNING,   /* a worker runs it: it completes with run's result */
    COIL__POOL_FINISHED,  /* on its done list (or about to be), not yet taken */
};

typedef struct coil__pool_job {
    struct coil__pool_job *next;            /* the queue's and the done list's link */
    struct coil__pool_job *prev;            /* the queue's link backwards: a cancel unlinks in
                                             * constant time however long the queue */
    int (*run)(struct coil__pool_job *job); /* on a worker thread: the blocking call; its result
                                             * (>= 0 or a negative errno) */
    int res;                                /* run's result, or -ECANCELED */
    coil__pool_done *done;                  /* where the finished job goes (set by the caller) */
    COIL__POOL_ATOMIC(int) state;           /* the pool's: COIL__POOL_* */
} coil__pool_job; /* the caller embeds this in its own op record and fills run/done */

struct coil__pool_done {
    COIL__POOL_ATOMIC(coil__pool_job *) head; /* finished jobs, newest first, pushed by workers
                                               * (a Treiber stack with one consumer that takes
                                               * them all, so no ABA) */
    int efd;       /* an eventfd the caller owns: a worker writes 1 to it when it pushes onto an
                    * empty list, so an epoll_wait wakes; < 0: no wake-ups (the caller looks at
                    * the list on its own) */
    unsigned busy; /* the pool's, under its lock: workers running a job for this list or still
                    * pushing one onto it (coil__pool_done_wait) */
};

/* Make an empty done list that wakes through `efd`. Does not suspend; cannot fail. */
void coil__pool_done_init(coil__pool_done *d, int efd);

/* Queue job to run on a worker thread, starting a worker when every started one is busy and the
 * cap allows. Any thread; does not block beyond the pool's lock (and a thread's start). Returns 0;
 * -EINVAL when job, its run or its done is NULL; -EBUSY when the job is queued, running, or
 * finished and not yet taken back; -EAGAIN / -ENOMEM when no worker could be started and none
 * runs. Nothing is queued on error. Thread-safe. */
int coil__pool_submit(coil__pool_job *job);

/* Take job back if no worker has started it: it then goes to its done list now (with the eventfd
 * written as for any completion), res = -ECANCELED, and true is returned. False when it runs or
 * has finished (it completes normally, exactly once) or was never submitted. Thread-safe. */
bool coil__pool_cancel(coil__pool_job *job);

/* Every job finished on d since the last take, oldest first, linked through next; NULL when
 * none. Each returned job is COIL__POOL_IDLE again (it may be submitted anew). The list's owner
 * only (its loop's thread); the jobs' res and everything run wrote are visible to it. */
coil__pool_job *coil__pool_take_done(coil__pool_done *d);

/* Block until no worker runs a job for d or is still touching d (pushing onto it, writing its
 * eventfd): for as long as the running jobs' system calls take. Jobs still queued are not waited
 * for: cancel them first. After it, once take_done has returned every job submitted for d, d may
 * be freed and its eventfd closed. Any thread but a worker's. */
void coil__pool_done_wait(coil__pool_done *d);

/* The cap on workers: COIL_THREADPOOL_SIZE when it is a number in 1..128 (other values are
 * ignored, said once on stderr), else 4. Read once per process, at the first call of this or of
 * coil__pool_submit. Thread-safe. */
unsigned coil__pool_size(void);

/* How many workers this process has started (and not lost to a fork). Thread-safe. */
unsigned coil__pool_threads(void);

#ifdef __cplusplus
}
#endif

#endif
