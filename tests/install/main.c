#include <coil/coil.h>

#include "segment.h"

/* Reaches the entry points behind the public macros too (coil_create_task, the task group's),
 * so a shared library that hid them would fail to link here. */
static void *child(void *a) { coil_sleep(0.001); return a; }
static void *m(void *a)
{
    coil_task *t, *u;
    coil_taskgroup *g;
    void *r = 0;
    if (coil_create_task(&t, child, a, 0) || coil_task_await(t, &r))
        return 0;
    coil_task_free(t);
    if (coil_taskgroup_new(&g) || coil_taskgroup_enter(g) || coil_taskgroup_create_task(g, &u, child, a, 0))
        return 0;
    int e = coil_taskgroup_exit(g, 0);
    coil_task_free(u);
    coil_taskgroup_free(g);
    return e || !segment_matches() ? 0 : r;
}
int main(void) { void *r; int e = coil_run(m, (void *)42, &r); return e || r != (void *)42; }
