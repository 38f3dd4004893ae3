/* coil core: the structures every core file shares. Private to the library. */
#ifndef COIL_CORE_INTERNAL_H
#define COIL_CORE_INTERNAL_H

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "backend/backend.h"
#include "coil/coil.h"
#include "engine/ctx.h"
#include "engine/faults.h"
#include "mem/pool.h"
#include "engine/stack.h"
#include "engine/timer.h"

#define COIL_LIKELY(x) __builtin_expect(!!(x), 1)
#define COIL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#define coil__container_of(p, type, member) ((type *)((char *)(p) - offsetof(type, member)))

/* Double a growable array's capacity (`first` if it has none yet). Returns the new array and
 * updates *cap, or returns NULL and leaves both as they were. (grow.c: out of line, since every
 * caller is on a cold path.) */
void *coil__grow_array(void *a, size_t *cap, size_t elem, size_t first);

/* ---- ready queue ----
 * Tasks and callback handles share one FIFO so call_soon order holds across both. Every queued
 * object starts with this node. */
enum { COIL__RQ_TASK = 1, COIL__RQ_HANDLE = 2, COIL__RQ_FUTURE = 3, COIL__RQ_FREE = 0xff };

typedef struct coil__rq {
    struct coil__rq *next;
    uint8_t kind;
    uint8_t state;      /* awaitables: COIL__PENDING .. COIL__CANCELLED */
    uint8_t flags;
    uint8_t spare;
    uint32_t refs;      /* awaitables: the handle, the loop's (while a task runs), each waiter */
} coil__rq;

/* ---- wait lists ----
 * Whoever waits on something (a task awaiting a future, a done callback, a lock waiter) is a node
 * on a circular doubly-linked list: O(1) append and O(1) removal on cancel, with one pointer in the
 * owner. A task's node lives inside the task, so waiting allocates nothing and nothing points into
 * a (possibly compact) task's stack. */
typedef struct coil__wnode coil__wnode;
typedef void (*coil__wake_fn)(coil__wnode *n, int result);
struct coil__wnode {
    coil__wnode *next, *prev;
    coil__wake_fn wake;
};
typedef struct coil__wlist {
    coil__wnode *first;
} coil__wlist;

static inline bool coil__wlist_empty(const coil__wlist *l) { return l->first == NULL; }

static inline void coil__wlist_append(coil__wlist *l, coil__wnode *n)
{
    coil__wnode *f = l->first;
    if (!f) {
        n->next = n->prev = n;
        l->first = n;
    } else {
        n->prev = f->prev;
        n->next = f;
        f->prev->next = n;
        f->prev = n;
    }
}

static inline void coil__wlist_remove(coil__wlist *l, coil__wnode *n)
{
    if (n->next == n) {
        l->first = NULL;
    } else {
        n->prev->next = n->next;
        n->next->prev = n->prev;
        if (l->first == n)
            l->first = n->next;
    }
    n->next = n->prev = NULL;
}

static inline coil__wnode *coil__wlist_pop(coil__wlist *l)
{
    coil__wnode *n = l->first;
    if (n)
        coil__wlist_remove(l, n);
    return n;
}

/* Wake every node on l with `result`, in list order, leaving l empty. */
static inline void coil__wlist_wake_all(coil__wlist *l, int result)
{
    coil__wnode *n;
    while ((n = coil__wlist_pop(l)))
        n->wake(n, result);
}

/* ---- awaitables ----
 * A task is a future with a body: both start with this header, so awaiting, callbacks, gather and
 * wait treat them alike (asyncio's Task subclasses Future for the same reason). */
enum { COIL__PENDING = 0, COIL__DONE = 1, COIL__FAILED = 2, COIL__CANCELLED = 3 };

typedef struct coil__aw {
    coil__rq h;          /* kind says task or future; state, flags, refs */
    coil__wlist waiters; /* awaiting tasks and done callbacks, FIFO */
    void *result;        /* tasks keep their arg here until they start */
} coil__aw;

enum { COIL__AW_RETRIEVED = 1 << 0, COIL__AW_HANDLE_FREED = 1 << 1 };

struct coil_future {
    coil__aw aw;
    coil_loop *loop;
    coil_exception *exc;
};

/* ---- tasks ---- */
enum {
    COIL__T_NEW = 0,    /* created, never run */
    COIL__T_READY,      /* in the ready queue */
    COIL__T_RUNNING,
    COIL__T_SUSPENDED,  /* waiting on wait_obj */
    COIL__T_FINISHED,   /* fn returned; completion not yet processed */
    COIL__T_DONE,
};

enum {
    COIL__TF_MUST_CANCEL = 1 << 0, /* deliver -ECANCELED at the current or next await */
    COIL__TF_COMPACT = 1 << 1,     /* runs on the loop's shared stack */
    COIL__TF_EAGER = 1 << 2,
    COIL__TF_CANCELLING = 1 << 3,  /* inside coil_task_cancel: an await cycle must not recurse */
    COIL__TF_CHECKED = 1 << 4,     /* debug mode: a compact task on a stack of its own, checked */
    COIL__TF_STARTED = 1 << 5,
    /* Its body settles its own cancellation: it is entered even when cancelled before its first
     * step (and takes the request itself), since only the body can tell whoever waits on it.
     * The layer that sets it (shards/threadsafe.c) finds its tasks still pending at loop close
     * by this flag: aw.result keeps the body's argument until the task ends. */
    COIL__TF_OWN_CANCEL = 1 << 6,
};

/* What a suspended task waits on, so cancel can undo it and the call graph can show it. */
typedef struct coil__wait_ops {
    const char *what;                  /* "sleep", "future", "io", "lock", ... */
    /* Undo the wait and wake t with -ECANCELED, now or once it is safe; NULL if the wait cannot
     * be interrupted (the request is then delivered at the next await). */
    void (*cancel)(coil_task *t);
    /* asyncio delivers a cancel that lands after the wake-up but before the task ran at this same
     * await. True for futures and primitives (which then pass the wake-up on); false for I/O,
     * whose completed result must not be lost. */
    bool late_cancel_wins;
    /* What the wait is on, for the call graph: fills up to `max` awaitables and returns how many
     * there are. NULL: nothing the call graph can follow (a sleep, I/O, a lock...). */
    size_t (*awaits)(const void *wait_obj, coil__aw **out, size_t max);
} coil__wait_ops;

typedef struct coil__task_ext coil__task_ext;

/* 112 bytes on x86-64: a million tasks created before any runs must fit in ~128 MiB. Rarely
 * used fields live in `ext`, allocated on first need (a name, a custom stack size, an
 * exception, a cancel message, a compact task's saved stack). */
struct coil_task {
    coil__aw aw;                  /* 32 */
    union {
        coil_task_fn fn;          /* until first run */
        void *sp;                 /* saved stack pointer while switched out */
    };
    coil_loop *loop;
    union {
        coil__stack *stack;       /* dedicated stack, or NULL */
        coil__savebuf *save;      /* compact tasks: the frames copied aside while evicted */
    };
    union {
        coil__wnode wnode;        /* on a wait list while awaiting */
        coil__timer timer;        /* in the timer heap while sleeping */
    };
    const coil__wait_ops *wait_ops; /* NULL when not suspended on anything cancellable */
    void *wait_obj;
    coil__task_ext *ext;
    int32_t wake_result;
    uint16_t cancel_requests;
    uint8_t tstate;
    uint8_t tflags;
#if defined(COIL_SANITIZE_BUILD)
    coil__fiber fiber;
#endif
};

#if !defined(COIL_SANITIZE_BUILD) && defined(__x86_64__)
_Static_assert(sizeof(struct coil_task) == 112, "a task must stay 112 bytes: see the comment above");
#endif

struct coil__task_ext {
    char *name;
    coil_exception *exc;
    char *cancel_msg;
    const char *file;             /* where it was created */
    int line;
    size_t stack_size;            /* requested at creation; 0 = the loop's default */
    coil__savebuf *check_copy;    /* debug mode: a checked compact task's frames while suspended */
};

/* ---- exceptions ---- */
struct coil_exception {
    int code;
    char *message;
    char *task_name;
    void *payload;
    void (*dtor)(void *);
    size_t nchildren;
    coil_exception **children;
};

/* msg may be NULL (the code's description is used then). */
coil_exception *coil__exception_new(int code, const char *task_name, const char *msg);
coil_exception *coil__exception_newv(int code, const char *task_name, const char *fmt, va_list ap);
coil_exception *coil__exception_group(const char *message, coil_exception **children, size_t n);
/* Complete a pending plain future with e (taken over; -ECANCELED ends it cancelled). Loop
 * thread. Returns 0, or COIL_EINVALSTATE if f is already done (e is then freed). */
int coil__future_fail(coil_future *f, coil_exception *e);
void coil__exception_free(coil_exception *e);

/* ---- callback handles ---- */
enum { COIL__H_CANCELLED = 1, COIL__H_TIMER = 2, COIL__H_RUNNING = 4 };
typedef struct coil__handle {
    coil__rq rq;                  /* flags: COIL__H_* */
    uint64_t gen;                 /* changes on reuse; coil_handle values compare it */
    coil_callback_fn cb;
    void *arg;
    coil_loop *loop;
    coil__timer timer;
    uint64_t when_ns;             /* 0 for call_soon */
} coil__handle;

/* A done callback: waits on an awaitable's list, then is queued to run like a handle. */
typedef struct coil__donecb {
    coil__rq rq;
    coil__wnode wnode;
    coil_done_fn fn;
    void *arg;
    coil__aw *aw;
} coil__donecb;
enum { COIL__RQ_DONECB = 4 };

/* ---- the driver ----
 * The loop reaches the kernel through backend/backend.h only (loop->io). */

/* The kernel filled [p, p+n) behind the program's back. Memcheck cannot see such writes, so under
 * valgrind this marks the bytes defined; elsewhere it is nothing. */
#if defined(__has_include)
#if __has_include(<valgrind/memcheck.h>)
#include <valgrind/memcheck.h>
#define coil__kernel_wrote(p, n) ((void)VALGRIND_MAKE_MEM_DEFINED((p), (n)))
#endif
#endif
#ifndef coil__kernel_wrote
#define coil__kernel_wrote(p, n) ((void)(p), (void)(n))
#endif

/* Does [p, p+n) overlap the loop's shared compact stack? (Such buffers must be bounced.) */
bool coil__on_shared_stack(coil_loop *loop, const void *p, size_t n);

/* ---- observability hooks ----
 * The engine never calls observability by name. Whoever builds a loop (core/assemble.c, the one
 * place that knows every layer) hands coil__loop_new a table of hooks, and the engine calls them
 * where a loop has something to report, behind the same gates as the work itself: the step hooks
 * only while loop->timing is on, so a loop that is not timed pays nothing per task switch. Every
 * member must be set (the engine calls them without a NULL check). All run on the loop's thread. */
typedef struct coil__loop_hooks {
    /* The loop is built (not yet running) / its debug flag changed / it is being freed (its driver,
     * tasks and pools are gone). */
    void (*open)(coil_loop *loop);
    void (*configure)(coil_loop *loop);
    void (*close)(coil_loop *loop);
    /* Once per scheduler iteration, after `batch` ready tasks and callbacks ran. */
    void (*iteration)(coil_loop *loop, unsigned batch);
    /* The loop was blocked waiting for completions from t0 to t1 (coil__now_ns). */
    void (*block)(coil_loop *loop, uint64_t t0, uint64_t t1);
    /* Publish the task and iteration counts the loop keeps on its own line; iterations started
     * inline, without the scheduler, call it now and then. */
    void (*publish)(coil_loop *loop);
    /* While loop->timing: a step of `task` starts / ends on the loop's thread. */
    void (*step_begin)(coil_loop *loop, void *task);
    void (*step_end)(coil_loop *loop, void *task);
} coil__loop_hooks;

/* The loop's published counters and the state of their publisher, owned by the hooks above
 * (observability's stats.h); the engine only carries the pointers. */
typedef struct coil_stats_shm_slot coil__loop_stats; /* the public layout, coil/stats_shm.h */
typedef struct coil__stats_watch coil__stats_watch;

/* ---- the loop ---- */

/* An extra source of work the loop drains every iteration (the shards layer's inbound ring). */
typedef struct coil__loop_source {
    struct coil__loop_source *next;
    /* Drain pending work; return true if anything was queued. */
    bool (*drain)(coil_loop *loop, struct coil__loop_source *self);
    /* Can this source wake a loop blocked with nothing else to do? */
    bool can_wake;
    /* Optional. Called just before the loop blocks in its driver's poll: return true if work is
     * pending (the loop then polls without blocking). after_block runs once the poll returns. */
    bool (*before_block)(coil_loop *loop, struct coil__loop_source *self);
    void (*after_block)(coil_loop *loop, struct coil__loop_source *self);
} coil__loop_source;

/* A close step another layer hangs on a loop (signals, the stats watch, the shards layer's
 * inbox). coil_loop_close runs them first thing, while the driver is still up, so a step may
 * still poll it to wait for its own operations or for outside work to finish; the loop
 * is not yet marked closed then. A step unhooks and frees what it hung on the loop. */
typedef struct coil__loop_closer {
    struct coil__loop_closer *next;
    void (*close)(coil_loop *loop, struct coil__loop_closer *self);
} coil__loop_closer;
/* Loop thread only. After the outside way in (below), closers run newest first; one that a
 * closer adds while they run runs too. */
void coil__loop_on_close(coil_loop *loop, coil__loop_closer *c);
/* The loop's way in from other threads (the shards layer's inbox): registered once, from any
 * thread, with a CAS. While there is one, another thread may make work for the loop at any
 * time, so the loop counts as wakeable (coil__loop_has_work) and looks at its driver even with
 * nothing in flight (a wake-up can arrive unasked). Its close runs before every closer:
 * its work may still need theirs. Returns the registered one: c, or the one that won. */
coil__loop_closer *coil__loop_set_outside(coil_loop *loop, coil__loop_closer *c);

struct coil_loop {
    /* First, so backend.h's calls find it without this header (coil__backend_of). */
    coil__backend io;             /* the driver (backend.h) */
    /* hot: the scheduler */
    coil__rq *rq_head;            /* ready for the next iteration */
    coil__rq **rq_tail;
    coil__rq *batch;              /* what is left of this iteration's ready work */
    coil_task *current;
    void *sched_sp;               /* the scheduler context while a task runs */
    coil__timerheap timers;
    unsigned ntasks_alive;
    uint64_t tasks_created;       /* published with the gauges, once an iteration (stats.c) */
    uint64_t iterations;          /* likewise */
    bool stopping, running, closed, debug;
    bool in_handler;
    bool timing;                  /* per-step clock reads (stats timing, debug, stall watch) */
    bool has_run;                 /* entered once: the loop is bound to its thread */

    /* tasks and stacks */
    coil__pool task_pool, handle_pool, future_pool, donecb_pool;
    coil__pool timeout_pool;       /* timeout scopes (timeout.c); set up on first use */
    coil__fiber sched_fiber;       /* the scheduler's own stack, for sanitizers */
    coil_task *eager_task;         /* set by an eager create from a task: run it, then resume the creator */
    coil__stackpool stacks;
    coil_stack_mode default_mode;
    uint32_t next_task_id;
    uint64_t handle_gen;

    coil__loop_source *sources;
    coil_exception_handler handler;
    void *handler_arg;
    pthread_t thread;
    double slow_callback_duration;
    const coil__loop_hooks *hooks; /* what observes the loop (see coil__loop_hooks) */
    coil__loop_stats *stats;      /* its slot in the process's segment (stats.h), or a private copy */
    coil__stats_watch *stats_watch; /* how it hears loopstat (stats.c); NULL for a private slot */
    uint64_t stall_ns;            /* stall watchdog threshold; 0 = not watched */
    void *runner;                 /* set while a runner owns this loop */
    struct coil__signals *signals; /* signal handlers (signal.c), NULL until the first */
    coil__loop_closer *closers;
    /* The way in from other threads (coil__loop_set_outside): set once from any thread with an
     * __atomic CAS, read with __atomic loads. */
    coil__loop_closer *outside;
};
_Static_assert(offsetof(struct coil_loop, io) == 0, "backend.h reaches the driver at the loop's start");

/* The loop's way in from other threads, or NULL. Any thread: the acquire pairs with the
 * registering CAS, so the registered record's initialisation is visible. */
static inline coil__loop_closer *coil__loop_outside(const coil_loop *loop)
{
    return __atomic_load_n(&loop->outside, __ATOMIC_ACQUIRE);
}

/* initial-exec: the library is built position-independent, and the default TLS model would
 * make every "which loop is running" a call to __tls_get_addr on the hot path. */
#define COIL__TLS __thread __attribute__((tls_model("initial-exec")))
extern COIL__TLS coil_loop *coil__tls_running;
extern COIL__TLS coil_loop *coil__tls_loop;
/* Set by an executor's worker while it runs a job's function: where coil_raise outside a task
 * records the exception (the job's slot), so the awaiting task receives it. */
extern COIL__TLS coil_exception **coil__tls_worker_exc;

/* Build a loop as coil_new_event_loop does, observed through `hooks` (required, every member
 * set; it must outlive the loop). */
int coil__loop_new(coil_loop **out, const coil_loop_opts *opts, const coil__loop_hooks *hooks);
uint64_t coil__now_ns(void);
/* Does the alarm stand guard over the timers: armed no later than the earliest deadline, so no
 * timer can be due before its completion shows up? Loops with no timer need none. */
static inline bool coil__loop_timers_guarded(coil_loop *loop)
{
    return coil__timers_empty(&loop->timers) ||
           (loop->io.alarm_at && loop->io.alarm_at <= coil__timers_next(&loop->timers));
}
void coil__loop_add_source(coil_loop *loop, coil__loop_source *s);
void coil__loop_remove_source(coil_loop *loop, coil__loop_source *s);
/* Run one iteration: the ready batch, I/O, timers, sources. `block` allows waiting in the driver. */
void coil__loop_run_once(coil_loop *loop, bool block);
/* True if anything could still make progress without outside help. */
bool coil__loop_has_work(const coil_loop *loop);
void coil__loop_report(coil_loop *loop, const char *message, int code, const coil_exception *e,
                       coil_task *t, coil_future *f);
void coil__loop_dispatch(coil_loop *loop, coil__rq *n);

static inline void coil__rq_push(coil_loop *loop, coil__rq *n)
{
    n->next = NULL;
    *loop->rq_tail = n;
    loop->rq_tail = &n->next;
}

/* ---- task internals ---- */
/* Suspend the running task until coil__task_wake. `ops` says what it waits on (NULL = not
 * cancellable). Returns the wake result, or -ECANCELED when a cancel lands and the wait allows
 * it. Must be called from a task. */
int coil__task_suspend(const coil__wait_ops *ops, void *obj);
/* Make a suspended task ready with `result` as what its suspend returns. */
void coil__task_wake(coil_task *t, int result);
/* The wake function for a task's own wait node (t->wnode.wake): wakes the task. */
void coil__wnode_wake_task(coil__wnode *n, int result);
/* A wait_ops cancel for a task waiting on an awaitable's list (t->wait_obj): leave the list and
 * wake with -ECANCELED, leaving the awaitable itself alone. */
void coil__aw_cancel_waiter(coil_task *t);
/* A wait_ops awaits hook for a wait whose wait_obj is the awaited awaitable itself (a plain await,
 * shield, wait_for): that one awaitable. */
size_t coil__aw_awaits_self(const void *wait_obj, coil__aw **out, size_t max);
/* Suspend the running task t on wait list l until a wake-up (coil__wlist_wake_all or a pop and
 * wake): at the tail, or at the head for a waiter that keeps the place it had. The list itself
 * is the wait object, so ops->cancel may be coil__wlist_wait_cancel. Returns the wake result,
 * or -ECANCELED as coil__task_suspend does. */
static inline int coil__wlist_wait(coil_task *t, coil__wlist *l, const coil__wait_ops *ops, bool at_head)
{
    t->wnode.wake = coil__wnode_wake_task;
    coil__wlist_append(l, &t->wnode);
    if (at_head)
        l->first = &t->wnode; /* the list is circular: the tail becomes the head */
    return coil__task_suspend(ops, l);
}
/* A wait_ops cancel for a task suspended by coil__wlist_wait: leave the list (t->wait_obj) and
 * wake with -ECANCELED. */
static inline void coil__wlist_wait_cancel(coil_task *t)
{
    coil__wlist_remove((coil__wlist *)t->wait_obj, &t->wnode);
    coil__task_wake(t, -ECANCELED);
}
/* Consume a pending cancellation at an await point: -ECANCELED if there was one, else 0. */
static inline int coil__task_check_cancel(coil_task *t)
{
    if (COIL_UNLIKELY(t->tflags & COIL__TF_MUST_CANCEL)) {
        t->tflags &= ~COIL__TF_MUST_CANCEL;
        return -ECANCELED;
    }
    return 0;
}
/* The running task of this thread, or NULL. */
static inline coil_task *coil__running_task(void)
{
    coil_loop *loop = coil__tls_running;
    return loop ? loop->current : NULL;
}
void coil__task_run(coil_loop *loop, coil_task *t);
void coil__task_destroy_pending(coil_loop *loop, coil_task *t);
coil__task_ext *coil__task_ext_get(coil_task *t);
const char *coil__task_name(coil_task *t);

/* ---- awaitable internals (future.c) ---- */
void coil__aw_complete(coil_loop *loop, coil__aw *aw);
int coil__aw_await(coil_loop *loop, coil__aw *aw, void **result);
int coil__aw_outcome(coil__aw *aw, void **result);
coil_exception *coil__aw_exception(coil__aw *aw);
void coil__aw_unref(coil_loop *loop, coil__aw *aw);
void coil__future_free_now(coil_loop *loop, coil_future *f);

/* ---- handles ---- */
coil__handle *coil__handle_new(coil_loop *loop, coil_callback_fn cb, void *arg);
void coil__handle_run(coil_loop *loop, coil__handle *h);

static inline coil_loop *coil__aw_loop(const coil__aw *aw)
{
    return aw->h.kind == COIL__RQ_TASK ? ((const coil_task *)aw)->loop : ((const coil_future *)aw)->loop;
}
void coil__donecb_run(coil_loop *loop, coil__donecb *cb);
int coil__aw_add_done(coil__aw *aw, coil_done_fn fn, void *arg);
int coil__aw_remove_done(coil__aw *aw, coil_done_fn fn, void *arg);
void coil__task_free_now(coil_loop *loop, coil_task *t);

/* ---- debug mode: the wrong-thread checks (loop.c; the timing debug mode turns on is a hook) ---- */
/* Prints "coil: <fn> called from a thread that does not own the loop"; returns COIL_EWRONGLOOP. */
int coil__wrong_thread(const char *fn);
/* At the top of loop-only public functions: a foreign-thread call fails loudly in debug mode. */
#define COIL__LOOP_THREAD_CHECK(loop, fn)                                                    \
    do {                                                                                     \
        if (COIL_UNLIKELY((loop)->debug) && !pthread_equal((loop)->thread, pthread_self())) \
            return coil__wrong_thread(fn);                                                   \
    } while (0)

/* The same for a primitive (event, lock, queue, ...) bound to `loop` (NULL: not bound yet): true,
 * after saying so, when it is touched from a thread that does not own the loop, in debug mode. */
static inline bool coil__foreign_thread(const coil_loop *loop, const char *fn)
{
    if (COIL_LIKELY(!loop || !loop->debug) || pthread_equal(loop->thread, pthread_self()))
        return false;
    coil__wrong_thread(fn);
    return true;
}

#endif
