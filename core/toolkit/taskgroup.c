/* coil core: TaskGroup, after CPython's taskgroups.py: the same states (entered, exiting,
 * aborting, parent_cancel_requested), the same use of cancel/uncancel on the body's task, and
 * the same order of decisions at exit. Children are tracked with a done callback each, which
 * runs through the ready queue as asyncio's add_done_callback does. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

typedef struct tg_child {
    struct tg_child *next, *prev;
    coil_taskgroup *g;          /* NULL once the group was freed before this child ended */
    coil_task *t;               /* the group's reference */
} tg_child;

struct coil_taskgroup {
    coil_loop *loop;
    coil_task *parent;          /* the body's task, referenced from enter to free */
    tg_child *children;         /* not yet done */
    size_t ntasks;
    coil_exception **errors;    /* children's failures, in the order they happened */
    size_t nerrors, cap;
    coil_exception *exc;        /* the group exception of the last exit */
    bool entered, exiting, exited, aborting, parent_cancel_requested, waiting, oom;
};

int coil_taskgroup_new(coil_taskgroup **out)
{
    if (!out)
        return -EINVAL;
    coil_taskgroup *g = calloc(1, sizeof *g);
    if (!g)
        return -ENOMEM;
    *out = g;
    return 0;
}

int coil_taskgroup_enter(coil_taskgroup *g)
{
    if (!g)
        return -EINVAL;
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (g->entered)
        return COIL_EINVALSTATE;
    g->entered = true;
    g->loop = t->loop;
    g->parent = t;
    t->aw.h.refs++;
    return 0;
}

/* A deep copy without payloads: what a failed child keeps when its exception moves to the group. */
static coil_exception *copy_exception(const coil_exception *e)
{
    coil_exception *c = coil__exception_new(e->code, e->task_name, e->message);
    if (!c)
        return NULL;
    if (e->nchildren) {
        c->children = calloc(e->nchildren, sizeof *c->children);
        if (!c->children) {
            coil__exception_free(c);
            return NULL;
        }
        for (size_t i = 0; i < e->nchildren; i++) {
            c->children[i] = copy_exception(e->children[i]);
            if (!c->children[i]) {
                coil__exception_free(c);
                return NULL;
            }
            c->nchildren = i + 1;
        }
    }
    return c;
}

/* Move the failed child's exception into the group (payload and all), leaving the child a copy
 * so awaiting it still tells what happened. */
static int room_for_error(coil_taskgroup *g)
{
    if (g->nerrors == g->cap) {
        coil_exception **a = coil__grow_array(g->errors, &g->cap, sizeof *a, 4);
        if (!a)
            return -ENOMEM;
        g->errors = a;
    }
    return 0;
}

static int take_exception(coil_taskgroup *g, coil_task *t)
{
    coil_exception *e = t->ext ? t->ext->exc : NULL;
    if (!e)
        return 0;
    if (room_for_error(g) != 0)
        return -ENOMEM;
    coil_exception *left = copy_exception(e);
    if (!left)
        return -ENOMEM;
    t->ext->exc = left;
    t->aw.h.flags |= COIL__AW_RETRIEVED;
    g->errors[g->nerrors++] = e;
    return 0;
}

static void abort_children(coil_taskgroup *g)
{
    g->aborting = true;
    for (tg_child *c = g->children; c; c = c->next)
        coil_task_cancel(c->t, NULL);
}

static void on_task_done(coil_future *f, void *arg)
{
    (void)f;
    tg_child *c = arg;
    coil_taskgroup *g = c->g;
    coil_task *t = c->t;
    coil_loop *loop = t->loop;
    if (!g) {
        coil__aw_unref(loop, &t->aw);
        free(c);
        return;
    }
    if (c->prev)
        c->prev->next = c->next;
    else
        g->children = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    g->ntasks--;
    if (g->waiting && g->ntasks == 0) {
        g->waiting = false;
        coil__task_wake(g->parent, 0);
    }
    if (t->aw.h.state != COIL__FAILED) {
        coil__aw_unref(loop, &t->aw);
        return;
    }
    if (take_exception(g, t) != 0)
        g->oom = true;
    coil__aw_unref(loop, &t->aw);
    if (g->parent->aw.h.state != COIL__PENDING) {
        coil__loop_report(loop, "Task group child failed after the body's task finished", COIL_EGROUP,
                          g->nerrors ? g->errors[g->nerrors - 1] : NULL, g->parent, NULL);
        return;
    }
    if (!g->aborting && !g->parent_cancel_requested) {
        /* Stop the body too; exit takes this request back so its count stays right. */
        abort_children(g);
        g->parent_cancel_requested = true;
        coil_task_cancel(g->parent, NULL);
    }
}

int coil_taskgroup_create_task_at(coil_taskgroup *g, coil_task **out, coil_task_fn fn, void *arg,
                                   const coil_task_opts *opts, const char *file, int line)
{
    if (!g || !fn)
        return -EINVAL;
    if (!g->entered)
        return COIL_EINVALSTATE;
    if (g->exited || (g->exiting && g->ntasks == 0) || g->aborting)
        return COIL_ECLOSED;
    tg_child *c = malloc(sizeof *c);
    if (!c)
        return -ENOMEM;
    coil_task *t;
    int err = coil_loop_create_task_at(g->loop, &t, fn, arg, opts, file, line);
    if (err) {
        free(c);
        return err;
    }
    c->g = g;
    c->t = t;
    err = coil__aw_add_done(&t->aw, on_task_done, c);
    if (err) {
        coil_task_cancel(t, NULL);
        coil__aw_unref(g->loop, &t->aw);
        free(c);
        return err;
    }
    c->prev = NULL;
    c->next = g->children;
    if (g->children)
        g->children->prev = c;
    g->children = c;
    g->ntasks++;
    if (out) {
        t->aw.h.refs++;
        *out = t;
    }
    return 0;
}

static void exit_cancel(coil_task *t)
{
    coil_taskgroup *g = t->wait_obj;
    g->waiting = false;
    coil__task_wake(t, -ECANCELED);
}

static size_t taskgroup_awaits(const void *wait_obj, coil__aw **out, size_t max);
static const coil__wait_ops exit_wait = { "taskgroup", exit_cancel, true, taskgroup_awaits };

static int body_exception(coil_taskgroup *g, int body_err)
{
    if (room_for_error(g) != 0)
        return -ENOMEM;
    coil_exception *e = coil__exception_new(body_err, coil__task_name(g->parent), NULL);
    if (!e)
        return -ENOMEM;
    g->errors[g->nerrors++] = e;
    return 0;
}

int coil_taskgroup_exit(coil_taskgroup *g, int body_err)
{
    if (!g || !g->entered || g->exiting || g->parent != coil__running_task())
        return COIL_EINVALSTATE;
    coil_task *t = g->parent;
    g->exiting = true;
    bool propagate_cancel = body_err == -ECANCELED;
    if (body_err && !g->aborting)
        abort_children(g);
    while (g->ntasks) {
        /* A pending cancellation is delivered here, as CPython's await on its completion future
         * would; the group's own request (parent_cancel_requested) is consumed the same way. */
        int r = coil__task_check_cancel(t);
        if (!r) {
            g->waiting = true;
            r = coil__task_suspend(&exit_wait, g);
            g->waiting = false;
        }
        if (r == -ECANCELED && !g->aborting) {
            propagate_cancel = true;
            abort_children(g);
        }
    }
    g->exited = true;
    if (g->parent_cancel_requested && coil_task_uncancel(t) == 0)
        propagate_cancel = false;
    if (propagate_cancel && g->nerrors == 0)
        return -ECANCELED;
    if (body_err && body_err != -ECANCELED && body_exception(g, body_err) != 0)
        g->oom = true;
    if (g->nerrors == 0)
        return g->oom ? -ENOMEM : 0;
    if (coil_task_cancelling(t) > 0) {
        /* Cancelled from outside too: re-arm that request for the body's next await. */
        coil_task_uncancel(t);
        coil_task_cancel(t, NULL);
    }
    coil__exception_free(g->exc);
    g->exc = coil__exception_group("unhandled errors in a TaskGroup", g->errors, g->nerrors);
    if (!g->exc) {
        for (size_t i = 0; i < g->nerrors; i++)
            coil__exception_free(g->errors[i]);
        free(g->errors);
        g->errors = NULL;
        g->nerrors = g->cap = 0;
        return -ENOMEM;
    }
    g->errors = NULL; /* the group exception owns them now */
    g->nerrors = g->cap = 0;
    return COIL_EGROUP;
}

const coil_exception *coil_taskgroup_exception(const coil_taskgroup *g) { return g ? g->exc : NULL; }

void *coil_taskgroup_raise(coil_taskgroup *g)
{
    coil_task *t = coil__running_task();
    if (!t || !g)
        return NULL;
    coil__task_ext *x = coil__task_ext_get(t);
    if (!x)
        return NULL;
    coil_exception *e = g->exc;
    if (!e)
        e = coil__exception_group("unhandled errors in a TaskGroup", NULL, 0);
    if (!e)
        return NULL;
    g->exc = NULL;
    if (!e->task_name)
        e->task_name = strdup(coil__task_name(t));
    coil__exception_free(x->exc);
    x->exc = e;
    return NULL;
}

void coil_taskgroup_free(coil_taskgroup *g)
{
    if (!g)
        return;
    tg_child *c = g->children;
    while (c) {
        tg_child *next = c->next;
        /* Its done callback frees the record and drops the reference when the child ends. */
        c->g = NULL;
        coil_task_cancel(c->t, NULL);
        c = next;
    }
    for (size_t i = 0; i < g->nerrors; i++)
        coil__exception_free(g->errors[i]);
    free(g->errors);
    coil__exception_free(g->exc);
    if (g->parent)
        coil__aw_unref(g->loop, &g->parent->aw);
    free(g);
}

/* The awaits hook of its wait (what the call graph follows): the children the group's exit waits for. */
static size_t taskgroup_awaits(const void *wait_obj, coil__aw **out, size_t max)
{
    const coil_taskgroup *g = wait_obj;
    size_t k = 0;
    for (const tg_child *c = g->children; c; c = c->next) {
        if (k < max)
            out[k] = &c->t->aw;
        k++;
    }
    return k;
}
