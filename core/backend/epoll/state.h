/* coil core: the epoll driver's state, shared by the files of core/backend/epoll/ only: ops.c
 * (operations: starting, readiness, cancelling, the thread pool's side), wake.c (other threads'
 * wake-ups) and epoll.c (polling, the table, set-up and teardown). */
#ifndef COIL_BACKEND_EPOLL_STATE_H
#define COIL_BACKEND_EPOLL_STATE_H

#include <stdatomic.h>
#include <stdint.h>
#include <time.h>

#include "backend/epoll/driver.h"
#include "backend/epoll/pool.h"

/* Distinct wake-up records a loop can hear (the library uses one). */
enum { WAKE_SLOTS = 4 };
/* The provided-buffer pool: one buffer, filled and handed over inside the poll. */
enum { BUF_SIZE = 16384 };

enum { T_TASK, T_CB };
enum {
    W_NONE,    /* being started */
    W_FD,      /* waiting on its fd's readiness */
    W_DONE,    /* its result is queued for the next poll */
    W_POOL,    /* on the thread pool */
    W_TIMER,   /* a TIMEOUT waiting for its deadline */
    W_CLOSING, /* a CLOSE waiting for the pool's jobs on its fd */
};
/* How an operation uses its fd: which readiness it waits for. */
enum { D_IN = 1, D_OUT = 2 };

typedef struct eop eop;
struct eop {
    coil__pool_job job;         /* first: the pool hands the job back */
    eop *next, *prev;           /* its fd's waiters, the done queue, the timers, the free list */
    eop *hnext;                 /* the target's hash chain */
    coil__op op;                /* what was asked; what it points at stays the caller's */
    void *target;               /* coil_task * or coil__io_cb * */
    uint64_t deadline;          /* TIMEOUT: CLOCK_MONOTONIC ns */
    uint64_t budget;            /* RECV_MULTISHOT: bytes still to deliver, 0 = no limit */
    int res;                    /* the queued result */
    uint8_t kind;               /* T_* */
    uint8_t where;              /* W_* */
    uint8_t dir;                /* D_* */
    unsigned pass;              /* the readiness event that last ran it (fd_ready) */
    bool counted;               /* in inflight (not COIL__OPF_QUIET) */
    bool busy;                  /* being run inside the poll: a cancel only marks it */
    bool cancelled;
    bool forced;                /* made its fd non-blocking (fdstate.forced) */
};

/* What the driver knows of an fd it has operations on. */
typedef struct fdstate {
    eop *head, *tail;           /* operations waiting for readiness, oldest first */
    unsigned forced;            /* operations that need it non-blocking; its flags come back
                                 * when the last ends */
    int saved_flags;            /* the file status flags before that */
    unsigned pooled;            /* operations on the thread pool naming it */
    eop *close_after;           /* a CLOSE waiting for those */
    bool armed;                 /* registered (or re-armed) since its first waiter came */
} fdstate;

/* The cross-thread side: an eventfd and the records it carries. Reference counted, because
 * wake addresses outlive the loop (a producer may still send after the close: the eventfd stays
 * open, so the write lands nowhere harmful). */
typedef struct wakebox {
    atomic_uint refs;
    int efd;
    struct {
        _Atomic(coil__io_cb *) rec;
        atomic_int how;         /* COIL__WAKE_FROM_* bits sent since the loop last looked */
    } slot[WAKE_SLOTS];
    atomic_bool any;            /* a slot has something: the loop must look */
} wakebox;

typedef struct epoll_bufring {
    coil__bufring base;
    struct coil__driver *owner; /* NULL once the driver is gone */
    unsigned char mem[BUF_SIZE];
} epoll_bufring;

struct coil__driver {
    int epfd;
    wakebox *box;
    coil__pool_done pool_done;  /* finished pool jobs; its efd is the box's */
    unsigned pool_inflight;
    bool pool_used;             /* a job was submitted once: exit must wait for the workers */
    unsigned nwaiting;          /* operations waiting for readiness */
    unsigned pass;              /* readiness events handled, to mark what one of them ran */
    unsigned handed;            /* results handed to their targets (a poll returns its share) */
    fdstate *fds;
    unsigned nfds;
    eop **hash;                 /* in-flight operations by target */
    unsigned hmask, hcount;
    eop *done_head, *done_tail; /* results to deliver at the next poll */
    eop *timers;                /* TIMEOUT operations, earliest first */
    eop *free_ops;
    int look_left;              /* until the next look at the clock (LOOK_EVERY) */
    uint64_t looked_at;         /* when a busy loop last asked epoll */
    bool look_now;              /* pending() said a look is due: the next poll takes it */
    unsigned nevents;
    struct epoll_event *events;
    epoll_bufring *bufring;
    bool have_pwait2;
    int tfd;                    /* the timerfd a blocking wait's deadline is armed on, -1 = none */
    uint64_t tfd_at;            /* its armed deadline (CLOCK_MONOTONIC ns), 0 = not armed */
};
typedef struct coil__driver coil__driver;

static inline uint64_t coil__ep_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ops.c */
int coil__ep_hash_grow(coil__driver *d);
int coil__ep_submit_task(coil_loop *loop, const coil__op *op, coil_task *t);
int coil__ep_submit_cb(coil_loop *loop, const coil__op *op, coil__io_cb *cb);
/* Run a socket send or receive now if it needs no waiting: its result, or -EAGAIN. */
int coil__ep_try(coil_loop *loop, const coil__op *op);
bool coil__ep_cancel_task(coil_loop *loop, coil_task *t);
bool coil__ep_cancel_cb(coil_loop *loop, coil__io_cb *cb);
void coil__ep_cancel_all(coil_loop *loop);
/* Take e out of the driver's books and hand its result to its target (inside a poll). */
void coil__ep_finish(coil_loop *loop, eop *e, int res);
/* epoll reported ev on fd: run what waits on it. */
void coil__ep_fd_ready(coil_loop *loop, int fd, uint32_t ev);
/* Hand over the pool's finished jobs. */
void coil__ep_pool_reap(coil_loop *loop);
/* Teardown: wait for the pool's work, restore the fds' flags, free every record. */
void coil__ep_ops_free(coil__driver *d);

/* wake.c */
void coil__ep_wakebox_unref(wakebox *b);
/* Run the wake-ups other threads sent since the last look. */
void coil__ep_wake_reap(coil_loop *loop);
coil__wake_addr coil__ep_wake_addr(coil_loop *loop);
int coil__ep_wake(coil_loop *from, coil__wake_addr to, coil__io_cb *rec);
void coil__ep_wake_drop(coil__wake_addr addr);

#endif
