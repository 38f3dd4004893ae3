/* coil core: the one place that knows every layer. The engine (core/engine) builds and runs a
 * loop but names no layer above it; this file puts a loop together from the engine and the hooks
 * observability installs (core/observe), so every loop a program creates, directly, through
 * coil_run or a shard, is counted, timed on request and watched for stalls. */
#include "engine/internal.h"
#include "observe/stats.h"

int coil_new_event_loop(coil_loop **out, const coil_loop_opts *opts)
{
    return coil__loop_new(out, opts, &coil__observe_hooks);
}
