/* coil core: what observability hangs on every loop. The engine calls these through its
 * coil__loop_hooks and never by name; core/assemble.c installs this table on each loop it builds,
 * which is also what links stats, debug timing, the stall watch and the call graph into every
 * program that creates a loop, from libcoil.a as from libcoil.so. */
#include "engine/internal.h"
#include "observe/stats.h"

static void on_open(coil_loop *loop)
{
    coil__stats_attach(loop);
    coil__debug_loop_init(loop);
}

static void on_close(coil_loop *loop)
{
    coil__debug_loop_close(loop);
    coil__stats_detach(loop);
}

const coil__loop_hooks coil__observe_hooks = {
    .open = on_open,
    .configure = coil__debug_loop_init,
    .close = on_close,
    .iteration = coil__stats_iteration,
    .block = coil__stats_block,
    .publish = coil__stats_publish_tasks,
    .step_begin = coil__step_begin,
    .step_end = coil__step_end,
};
