/* coil core: gather (asyncio.gather). The gathering task waits on one heap object that holds a
 * wait node per child: a child's completion runs gather's wake function right away (no extra
 * trip through the ready queue), and nothing points into the gathering task's stack, which may
 * be a compact one. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

#include "mem/hugemem.h"
#include "engine/internal.h"

typedef struct gather_state gather_state;

typedef struct gather_node {
    coil__wnode wnode;          /* on the child's wait list until it completes */
    gather_state *g;
    coil__aw *aw;
} gather_node;

struct gather_state {
    coil_task *task;
    size_t n, nfinished;
    bool return_exceptions;
    bool woken;                 /* the task was made ready; later completions only count */
    bool cancel_requested;      /* the task's cancel reached at least one child (asyncio 32684) */
    int first_err;              /* without return_exceptions: the first failure */
    gather_node nodes[];
};

/* A gather of 100k children has a 4 MB wait-node table: big ones go on huge pages. */
static size_t state_bytes(size_t n) { return sizeof(gather_state) + n * sizeof(gather_node); }

static void wake_once(gather_state *g, int result)
{
    if (!g->woken) {
        g->woken = true;
        coil__task_wake(g->task, result);
    }
}

static void child_done(coil__wnode *wn, int result)
{
    (void)result;
    gather_node *gn = coil__container_of(wn, gather_node, wnode);
    gather_state *g = gn->g;
    g->nfinished++;
    if (!g->return_exceptions && gn->aw->h.state != COIL__DONE) {
        if (!g->first_err) {
            int err = coil__aw_outcome(gn->aw, NULL);
            g->first_err = err ? err : -EIO;
        }
        wake_once(g, 0);
        return;
    }
    if (g->nfinished == g->n)
        wake_once(g, 0);
}

/* Cancel every child not yet done. Returns how many took the request. */
static int cancel_children(gather_state *g)
{
    coil_task *t = g->task;
    const char *msg = t->ext ? t->ext->cancel_msg : NULL;
    int n = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->nodes[i].aw->h.state == COIL__PENDING)
            n += coil_future_cancel((coil_future *)g->nodes[i].aw, msg);
    if (n)
        g->cancel_requested = true;
    return n;
}

static void gather_cancel(coil_task *t)
{
    gather_state *g = t->wait_obj;
    /* Keep waiting: the children's ends decide when gather returns. If none took the request,
     * asyncio delivers it once the task runs again. */
    if (!cancel_children(g))
        t->tflags |= COIL__TF_MUST_CANCEL;
}

static size_t gather_awaits(const void *wait_obj, coil__aw **out, size_t max);
static const coil__wait_ops gather_wait = { "gather", gather_cancel, true, gather_awaits };

static void detach(coil_loop *loop, gather_state *g)
{
    for (size_t i = 0; i < g->n; i++) {
        gather_node *gn = &g->nodes[i];
        if (gn->wnode.next)
            coil__wlist_remove(&gn->aw->waiters, &gn->wnode);
        coil__aw_unref(loop, gn->aw);
    }
    coil__huge_free_warm(g, state_bytes(g->n));
}

static void fill(coil_future **aws, size_t n, coil_gather_result *results)
{
    if (!results)
        return;
    for (size_t i = 0; i < n; i++) {
        coil__aw *aw = &aws[i]->aw;
        coil_gather_result *r = &results[i];
        r->value = NULL;
        r->err = coil__aw_outcome(aw, &r->value);
        r->exc = r->err ? coil__aw_exception(aw) : NULL;
    }
}

int coil_gather(coil_future **aws, size_t n, bool return_exceptions, coil_gather_result *results)
{
    if (n == 0)
        return 0;
    coil_loop *loop = coil__tls_running;
    coil_task *t = loop ? loop->current : NULL;
    if (!t)
        return COIL_ENOTASK;
    if (!aws)
        return -EINVAL;
    size_t pending = 0;
    for (size_t i = 0; i < n; i++) {
        if (!aws[i])
            return -EINVAL;
        if (&aws[i]->aw == &t->aw)
            return COIL_EAWAITSELF;
        if (coil__aw_loop(&aws[i]->aw) != loop)
            return COIL_EWRONGLOOP;
        if (aws[i]->aw.h.state == COIL__PENDING)
            pending++;
    }
    if (!pending) {
        /* Nothing to wait for: asyncio's outcome, without a trip through the loop. */
        if (!return_exceptions)
            for (size_t i = 0; i < n; i++) {
                int err = coil__aw_outcome(&aws[i]->aw, NULL);
                if (err)
                    return err;
            }
        fill(aws, n, results);
        return 0;
    }

    if (n > (SIZE_MAX - sizeof(gather_state)) / sizeof(gather_node))
        return -ENOMEM;
    gather_state *g = coil__huge_alloc(state_bytes(n));
    if (!g)
        return -ENOMEM;
    *g = (gather_state){ .task = t, .n = n, .return_exceptions = return_exceptions };
    for (size_t i = 0; i < n; i++) {
        gather_node *gn = &g->nodes[i];
        gn->g = g;
        gn->aw = &aws[i]->aw;
        gn->aw->h.refs++;
        gn->wnode.next = NULL;
        if (gn->aw->h.state == COIL__PENDING) {
            gn->wnode.wake = child_done;
            coil__wlist_append(&gn->aw->waiters, &gn->wnode);
        } else {
            child_done(&gn->wnode, 0);
        }
    }
    /* A cancellation requested before this await cancels the children, as asyncio's task does
     * with its pending cancel when it starts awaiting the gathering future. */
    if (coil__task_check_cancel(t) && !cancel_children(g))
        t->tflags |= COIL__TF_MUST_CANCEL;

    int r = coil__task_suspend(&gather_wait, g);
    if (r == 0) {
        if (!return_exceptions && g->first_err)
            r = g->first_err;
        else if (g->cancel_requested)
            r = -ECANCELED;
    }
    if (r == 0)
        fill(aws, n, results);
    else if (r == g->first_err)
        for (size_t i = 0; i < n; i++)
            if (aws[i]->aw.h.state != COIL__PENDING && aws[i]->aw.h.state != COIL__DONE)
                aws[i]->aw.h.flags |= COIL__AW_RETRIEVED;
    detach(loop, g);
    return r;
}

/* The awaits hook of its wait (what the call graph follows): the children the gathering task still waits on. */
static size_t gather_awaits(const void *wait_obj, coil__aw **out, size_t max)
{
    const gather_state *g = wait_obj;
    size_t k = 0;
    for (size_t i = 0; i < g->n; i++)
        if (g->nodes[i].wnode.next) {
            if (k < max)
                out[k] = g->nodes[i].aw;
            k++;
        }
    return k;
}
