/* coil shards: the runtime. Starts the shard threads (pinned, each with its own jemalloc arena
 * and loop), runs the main task on shard 0, and shuts everything down without losing or leaking
 * anything in flight between shards.
 *
 * Shutdown needs every shard's loop running until the whole runtime is quiet: a cancelled task
 * on one shard may still be waiting for a reply from another. Each shard runs a periodic check
 * that cancels its remaining tasks and publishes (generation, last generation it was active).
 * Shard 0 declares the runtime quiet once every shard was idle in one snapshot and has run two
 * more checks with no activity since: two, because a message pushed just before a sender went
 * idle is only certain to be seen by the receiver's second check after the snapshot. */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "runtime.h"

#if defined(COIL_HAVE_JEMALLOC)
#include <jemalloc/jemalloc.h>
#endif

enum { MAX_SHARDS = 1024 };
#define CHECK_PERIOD 0.0002 /* seconds between shutdown checks */

typedef struct shard {
    coil__inbox_ext ext;          /* this layer's record on the shard's inbox: finds the shard */
    coil_runtime *rt;
    unsigned id;
    int cpu;                      /* -1: not pinned */
    coil_loop *loop;
    coil__inbox *ib;
    pthread_t thread;
    bool started;
    /* shutdown bookkeeping, written by the shard, read by shard 0 */
    _Atomic uint64_t gen, last_active;
    uint64_t seen_msgs;           /* shard's own */
} shard;

struct coil_runtime {
    unsigned n;
    shard *shards;
    pthread_t creator;
    coil_loop_opts loop_opts;
    bool have_loop_opts;
    unsigned spin_ns;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned ready;               /* shard threads up (or failed) */
    int start_err;
    _Atomic long xpending;        /* cross-shard calls alive */
    _Atomic int quiet;            /* shutdown: everyone may stop */
    uint64_t *snap;               /* shard 0's snapshot of generations, or NULL */
    coil_task *main;
};

/* ---- jemalloc arenas: one per shard index, created once per process and reused ---- */

#if defined(COIL_HAVE_JEMALLOC)
static pthread_mutex_t arenas_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned arenas[MAX_SHARDS];
static bool arena_made[MAX_SHARDS];

static int arena_for(unsigned shard, unsigned *out)
{
    pthread_mutex_lock(&arenas_mu);
    if (!arena_made[shard]) {
        size_t sz = sizeof arenas[shard];
        if (mallctl("arenas.create", &arenas[shard], &sz, NULL, 0) == 0)
            arena_made[shard] = true;
    }
    bool ok = arena_made[shard];
    *out = arenas[shard];
    pthread_mutex_unlock(&arenas_mu);
    return ok ? 0 : -ENOMEM;
}

/* Make this thread allocate from shard's arena; *prev gets the arena it used before. */
static void arena_enter(unsigned shard, unsigned *prev)
{
    unsigned a, old = 0;
    size_t sz = sizeof old;
    if (arena_for(shard, &a) == 0)
        mallctl("thread.arena", &old, &sz, &a, sizeof a);
    if (prev)
        *prev = old;
}

static void arena_leave(unsigned prev) { mallctl("thread.arena", NULL, NULL, &prev, sizeof prev); }
#else
static void arena_enter(unsigned shard, unsigned *prev)
{
    (void)shard;
    if (prev)
        *prev = 0;
}
static void arena_leave(unsigned prev) { (void)prev; }
#endif

/* ---- lookups ---- */

/* The shard records belong to the runtime, which outlives its loops: the close leaves them. */
static const coil__inbox_ext_ops shard_ops = { NULL, NULL };

coil_runtime *coil__runtime_here(unsigned *id)
{
    coil_loop *loop = coil__tls_running ? coil__tls_running : coil__tls_loop;
    coil__inbox *ib = loop ? coil__inbox_find(loop) : NULL;
    coil__inbox_ext *e = ib ? coil__inbox_ext_find(ib, &shard_ops) : NULL;
    if (!e)
        return NULL;
    shard *s = coil__container_of(e, shard, ext);
    if (id)
        *id = s->id;
    return s->rt;
}

coil__inbox *coil__runtime_inbox(coil_runtime *rt, unsigned shard) { return rt->shards[shard].ib; }
unsigned coil__runtime_count(coil_runtime *rt) { return rt->n; }
void coil__runtime_xcall_add(coil_runtime *rt, int delta)
{
    atomic_fetch_add_explicit(&rt->xpending, delta, memory_order_seq_cst);
}

int coil_shard_id(void)
{
    unsigned id;
    return coil__runtime_here(&id) ? (int)id : -1;
}

unsigned coil_shard_count(void)
{
    coil_runtime *rt = coil__runtime_here(NULL);
    return rt ? rt->n : 0;
}

unsigned coil_runtime_shard_count(const coil_runtime *rt) { return rt ? rt->n : 0; }

coil_loop *coil_runtime_loop(coil_runtime *rt, unsigned shard)
{
    return rt && shard < rt->n ? rt->shards[shard].loop : NULL;
}

/* ---- starting ---- */

static void pin(int cpu)
{
    if (cpu < 0)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Create the shard's loop on this thread and hook its inbox in. */
static int shard_setup(shard *s)
{
    coil_runtime *rt = s->rt;
    coil_loop_opts o = rt->have_loop_opts ? rt->loop_opts : (coil_loop_opts){ 0 };
    int err = coil_new_event_loop(&s->loop, &o);
    if (err)
        return err;
    coil_loop *prev = coil__tls_loop;
    coil__tls_loop = s->loop;
    s->ib = coil__inbox_of(s->loop);
    coil__tls_loop = prev;
    if (!s->ib) {
        coil_loop_close(s->loop);
        s->loop = NULL;
        return -ENOMEM;
    }
    s->ext.ops = &shard_ops;
    coil__inbox_ext_add(s->ib, &s->ext);
    s->ib->spin_ns = rt->spin_ns;
    COIL__STAT_SET(s->loop, shard, s->id);
    return 0;
}

static void *shard_main(void *arg)
{
    shard *s = arg;
    coil_runtime *rt = s->rt;
    pin(s->cpu);
    arena_enter(s->id, NULL);
    int err = shard_setup(s);
    if (!err)
        coil_set_event_loop(s->loop);
    pthread_mutex_lock(&rt->mu);
    if (err && !rt->start_err)
        rt->start_err = err;
    rt->ready++;
    pthread_cond_broadcast(&rt->cv);
    pthread_mutex_unlock(&rt->mu);
    if (err)
        return NULL;
    coil_loop_run_forever(s->loop);
    coil_loop_close(s->loop);
    return NULL;
}

static void stop_shard(void *a, void *b)
{
    (void)b;
    coil_loop_stop(a);
}

static void shutdown_threads(coil_runtime *rt)
{
    for (unsigned i = 1; i < rt->n; i++) {
        shard *s = &rt->shards[i];
        if (s->started && s->ib)
            coil__inbox_post(s->ib, stop_shard, s->loop, NULL);
    }
    for (unsigned i = 1; i < rt->n; i++)
        if (rt->shards[i].started)
            pthread_join(rt->shards[i].thread, NULL);
}

static void runtime_destroy(coil_runtime *rt)
{
    if (rt->shards[0].loop)
        coil_loop_close(rt->shards[0].loop);
    pthread_mutex_destroy(&rt->mu);
    pthread_cond_destroy(&rt->cv);
    free(rt->snap);
    free(rt->shards);
    free(rt);
}

static int cpu_list(const coil_runtime_opts *o, int **cpus, unsigned *ncpus)
{
    cpu_set_t set;
    if (o->cpus && o->ncpus) {
        *cpus = malloc(o->ncpus * sizeof **cpus);
        if (!*cpus)
            return -ENOMEM;
        for (unsigned i = 0; i < o->ncpus; i++) {
            if (o->cpus[i] < 0 || o->cpus[i] >= CPU_SETSIZE)
                return free(*cpus), -EINVAL;
            (*cpus)[i] = o->cpus[i];
        }
        *ncpus = o->ncpus;
        return 0;
    }
    if (sched_getaffinity(0, sizeof set, &set) != 0)
        CPU_ZERO(&set);
    unsigned n = (unsigned)CPU_COUNT(&set);
    *cpus = malloc((n ? n : 1) * sizeof **cpus);
    if (!*cpus)
        return -ENOMEM;
    unsigned k = 0;
    for (int c = 0; c < CPU_SETSIZE && k < n; c++)
        if (CPU_ISSET(c, &set))
            (*cpus)[k++] = c;
    if (k == 0)
        (*cpus)[k++] = -1;
    *ncpus = k;
    return 0;
}

int coil_runtime_new(coil_runtime **out, const coil_runtime_opts *opts)
{
    static const coil_runtime_opts defaults;
    if (!out)
        return -EINVAL;
    if (coil__tls_running)
        return COIL_ERUNNING;
    if (!opts)
        opts = &defaults;
    int *cpus;
    unsigned ncpus;
    int err = cpu_list(opts, &cpus, &ncpus);
    if (err)
        return err;
    unsigned n = opts->shards ? opts->shards : ncpus;
    if (n > MAX_SHARDS) {
        free(cpus);
        return -EINVAL;
    }
    coil_runtime *rt = calloc(1, sizeof *rt);
    if (!rt || !(rt->shards = calloc(n, sizeof *rt->shards))) {
        free(rt);
        free(cpus);
        return -ENOMEM;
    }
    rt->n = n;
    rt->creator = pthread_self();
    if (opts->loop) {
        rt->loop_opts = *opts->loop;
        rt->have_loop_opts = true;
    }
    rt->spin_ns = opts->spin_us < 0 ? 0 : (unsigned)(opts->spin_us ? opts->spin_us : 50) * 1000u;
    pthread_mutex_init(&rt->mu, NULL);
    pthread_cond_init(&rt->cv, NULL);
    for (unsigned i = 0; i < n; i++) {
        shard *s = &rt->shards[i];
        s->rt = rt;
        s->id = i;
        s->cpu = opts->no_pin ? -1 : cpus[i % ncpus];
    }
    free(cpus);
    /* Shard 0 is this thread; its loop is created here, pinned only while it runs. */
    err = shard_setup(&rt->shards[0]);
    if (err) {
        runtime_destroy(rt);
        return err;
    }
    unsigned want = 0;
    for (unsigned i = 1; i < n; i++) {
        shard *s = &rt->shards[i];
        if (pthread_create(&s->thread, NULL, shard_main, s) != 0) {
            err = -EAGAIN;
            break;
        }
        s->started = true;
        want++;
    }
    pthread_mutex_lock(&rt->mu);
    while (rt->ready < want)
        pthread_cond_wait(&rt->cv, &rt->mu);
    if (!err)
        err = rt->start_err;
    pthread_mutex_unlock(&rt->mu);
    if (err) {
        shutdown_threads(rt);
        runtime_destroy(rt);
        return err;
    }
    *out = rt;
    return 0;
}

/* ---- running the main task on shard 0 ---- */

struct saved_thread {
    cpu_set_t mask;
    bool have_mask;
    unsigned arena;
    coil_loop *tls_loop;
};

static void enter_shard0(coil_runtime *rt, struct saved_thread *sv)
{
    shard *s = &rt->shards[0];
    sv->have_mask = s->cpu >= 0 && pthread_getaffinity_np(pthread_self(), sizeof sv->mask, &sv->mask) == 0;
    pin(s->cpu);
    arena_enter(0, &sv->arena);
    sv->tls_loop = coil__tls_loop;
    coil__tls_loop = s->loop;
}

static void leave_shard0(struct saved_thread *sv)
{
    coil__tls_loop = sv->tls_loop;
    arena_leave(sv->arena);
    if (sv->have_mask)
        pthread_setaffinity_np(pthread_self(), sizeof sv->mask, &sv->mask);
}

int coil_runtime_run(coil_runtime *rt, coil_task_fn fn, void *arg, void **result)
{
    if (!rt || !fn)
        return -EINVAL;
    if (coil__tls_running)
        return COIL_ERUNNING;
    if (!pthread_equal(rt->creator, pthread_self()))
        return COIL_EWRONGLOOP;
    coil_loop *loop = rt->shards[0].loop;
    struct saved_thread sv;
    enter_shard0(rt, &sv);
    coil_task *main;
    int err = coil_loop_create_task(loop, &main, fn, arg, &(coil_task_opts){ .name = "main" });
    if (!err) {
        err = coil_loop_run_until_complete(loop, coil_task_future(main), result);
        if (err == COIL_ENOTHING)
            coil_task_cancel(main, "nothing left that could wake the main task");
        else if (err == COIL_ESTOPPED)
            coil_task_cancel(main, "the loop was stopped before the main task finished");
        coil_task_free(main);
    }
    leave_shard0(&sv);
    return err;
}

/* ---- shutdown ---- */

static bool shard_active(shard *s)
{
    coil__inbox *ib = s->ib;
    coil_loop *loop = s->loop;
    bool active = loop->ntasks_alive || ib->expect || ib->ovf_head || !coil__mpsc_empty(ib->ring) ||
                  ib->drained != s->seen_msgs;
    s->seen_msgs = ib->drained;
    return active;
}

static void cancel_tasks(coil_loop *loop)
{
    size_t n = coil_all_tasks(loop, NULL, 0);
    if (!n)
        return;
    coil_task **ts = malloc(n * sizeof *ts);
    if (!ts)
        return;
    n = coil_all_tasks(loop, ts, n);
    for (size_t i = 0; i < n; i++)
        if (coil_task_cancelling(ts[i]) == 0)
            coil_task_cancel(ts[i], "runtime shutdown");
    free(ts);
}

/* Shard 0 only: has every shard been idle since a snapshot, for two checks each? */
static bool all_quiet(coil_runtime *rt)
{
    bool idle = atomic_load(&rt->xpending) == 0;
    for (unsigned i = 0; i < rt->n && idle; i++) {
        shard *s = &rt->shards[i];
        uint64_t g = atomic_load(&s->gen), la = atomic_load(&s->last_active);
        if (rt->snap && la > rt->snap[i])
            idle = false;
        if (!rt->snap && la == g)
            idle = false;
    }
    if (!idle) {
        free(rt->snap);
        rt->snap = NULL;
        return false;
    }
    if (!rt->snap) {
        rt->snap = malloc(rt->n * sizeof *rt->snap);
        if (!rt->snap)
            return false;
        for (unsigned i = 0; i < rt->n; i++)
            rt->snap[i] = atomic_load(&rt->shards[i].gen);
        return false;
    }
    for (unsigned i = 0; i < rt->n; i++)
        if (atomic_load(&rt->shards[i].gen) < rt->snap[i] + 2)
            return false;
    return true;
}

static int shutdown_check(void *arg)
{
    shard *s = arg;
    coil_runtime *rt = s->rt;
    cancel_tasks(s->loop);
    uint64_t g = atomic_load(&s->gen) + 1;
    if (shard_active(s))
        atomic_store(&s->last_active, g);
    atomic_store(&s->gen, g);
    if (s->id == 0 && all_quiet(rt))
        atomic_store(&rt->quiet, 1);
    if (atomic_load(&rt->quiet)) {
        coil_loop_stop(s->loop);
        return 0;
    }
    coil_loop_call_later(s->loop, CHECK_PERIOD, shutdown_check, s, NULL);
    return 0;
}

static void begin_shutdown(void *a, void *b)
{
    (void)b;
    shutdown_check(a);
}

void coil_runtime_free(coil_runtime *rt)
{
    if (!rt)
        return;
    if (!pthread_equal(rt->creator, pthread_self()) || coil__tls_running) {
        /* Shard 0 can only be run by its own thread: going on would hang. Refuse, keep it intact. */
        fprintf(stderr, "coil: coil_runtime_free must be called by the thread that created the runtime, "
                        "outside any running loop; the runtime was left running\n");
        return;
    }
    struct saved_thread sv;
    enter_shard0(rt, &sv);
    for (unsigned i = 1; i < rt->n; i++)
        coil__inbox_post(rt->shards[i].ib, begin_shutdown, &rt->shards[i], NULL);
    coil_loop_call_soon(rt->shards[0].loop, shutdown_check, &rt->shards[0], NULL);
    coil_loop_run_forever(rt->shards[0].loop);
    /* Every loop is quiet; each shard thread closes its own loop and exits. */
    for (unsigned i = 1; i < rt->n; i++)
        if (rt->shards[i].started)
            pthread_join(rt->shards[i].thread, NULL);
    leave_shard0(&sv);
    runtime_destroy(rt);
}
