/* coil: TaskGroup (asyncio.TaskGroup, CPython 3.12-3.14 taskgroups.py).
 *
 *     coil_taskgroup *g;
 *     if (coil_taskgroup_new(&g) == 0 && coil_taskgroup_enter(g) == 0) {
 *         int err = coil_taskgroup_create_task(g, NULL, worker, arg, NULL);
 *         if (!err)
 *             err = other_work();            // -ECANCELED if a child fails meanwhile
 *         err = coil_taskgroup_exit(g, err);  // waits for every child
 *         if (err == COIL_EGROUP)
 *             inspect(coil_taskgroup_exception(g));
 *     }
 *     coil_taskgroup_free(g);
 *
 * The first child that fails cancels every other child and the body (the task that entered the
 * group). exit waits for all children and returns COIL_EGROUP with an exception group listing
 * every failure (children's failures in the order they happened, then the body's own error if
 * it was neither 0 nor -ECANCELED). The group's own cancellation of the body is taken back
 * (coil_task_uncancel) at exit, so the body's cancelling count stays right; a cancellation from
 * outside the group cancels every child and exit returns -ECANCELED (unless children failed:
 * then COIL_EGROUP, and the outside cancellation is re-armed for the body's next await, as
 * CPython does). Children that end cancelled are not failures.
 *
 * Nesting: a child task that ran its own group can end with that group's exception through
 * `return coil_taskgroup_raise(inner);`, so the outer group's exception holds the inner group.
 *
 * The group holds its own reference to each child; the `out` handle of create_task is the
 * caller's (free it with coil_task_free). Everything here is for the loop's thread only.
 */
#ifndef COIL_TASKGROUP_H
#define COIL_TASKGROUP_H

#include "api.h"
#include "errors.h"
#include "loop.h"
#include "task.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil_taskgroup coil_taskgroup;

/* A new group, not yet entered. Returns 0, -EINVAL (out NULL), -ENOMEM. Does not suspend. */
COIL_API int coil_taskgroup_new(coil_taskgroup **out);

/* Enter the group in the running task (the body). Returns 0, COIL_ENOTASK, COIL_EINVALSTATE
 * (entered before). Does not suspend. */
COIL_API int coil_taskgroup_enter(coil_taskgroup *g);

/* Create a task in the group (as coil_create_task; `out` may be NULL). Returns 0, the errors of
 * coil_create_task, COIL_EINVALSTATE (not entered), COIL_ECLOSED (the group is shutting down
 * after a failure or cancellation, or has finished). While exit waits, a child may still add
 * siblings, as in asyncio. Does not suspend (an eager task runs up to its first await). */
COIL_API int coil_taskgroup_create_task_at(coil_taskgroup *g, coil_task **out, coil_task_fn fn, void *arg,
                                            const coil_task_opts *opts, const char *file, int line);
#define coil_taskgroup_create_task(g, out, fn, arg, opts) \
    coil_taskgroup_create_task_at((g), (out), (fn), (arg), (opts), __FILE__, __LINE__)

/* Leave the group: `body_err` is what the body produced (0, -ECANCELED, or another code, which
 * counts as a failure and cancels the children). Waits until every child is done, cancelling
 * them all if anything failed or the body was cancelled. Cancelling the body while it waits here
 * cancels the children and keeps waiting.
 * Returns 0, -ECANCELED (cancelled from outside, no failures), COIL_EGROUP (failures: see
 * coil_taskgroup_exception), -ENOMEM (the group exception could not be built; the children are
 * still all done), COIL_EINVALSTATE (not entered, exited before, or not the task that entered).
 * Suspends. Not thread-safe. */
COIL_API int coil_taskgroup_exit(coil_taskgroup *g, int body_err);

/* The exception group of the last exit that returned COIL_EGROUP (owned by the group: valid
 * until coil_taskgroup_free or coil_taskgroup_raise), or NULL. Each child is a copy of a failed
 * child's exception (code, message, task name, nested children); payloads are borrowed from the
 * child tasks, which the group keeps alive until it is freed. */
COIL_API const coil_exception *coil_taskgroup_exception(const coil_taskgroup *g);

/* Raise the group's exception from the running task: moves it onto the task (as coil_raise
 * does) and returns NULL, so a task ends with `return coil_taskgroup_raise(g);`. With no group
 * exception it raises COIL_EGROUP with no children. Outside a task it does nothing. */
COIL_API void *coil_taskgroup_raise(coil_taskgroup *g);

/* Free the group (NULL is ignored). Children still running (a group never exited) are cancelled
 * and left to finish on their own. Not thread-safe. */
COIL_API void coil_taskgroup_free(coil_taskgroup *g);

#ifdef __cplusplus
}
#endif
#endif
