/* coil shards: what the runtime (runtime.c) tells cross-shard calls (submit.c). Private to the
 * library. */
#ifndef COIL_SHARDS_RUNTIME_H
#define COIL_SHARDS_RUNTIME_H

#include "coil/runtime.h"
#include "shards.h"

/* The runtime whose shard this thread's loop (running, or set with coil_set_event_loop) is, and
 * that shard's index in *shard (if shard is not NULL); NULL outside a runtime. */
coil_runtime *coil__runtime_here(unsigned *shard);
/* Shard `shard`'s inbox (shard < coil__runtime_count(rt)). Any thread of the runtime. */
coil__inbox *coil__runtime_inbox(coil_runtime *rt, unsigned shard);
unsigned coil__runtime_count(coil_runtime *rt);
/* Count cross-shard calls alive (+1 when sent, -1 when done): shutdown waits until none is. */
void coil__runtime_xcall_add(coil_runtime *rt, int delta);

#endif
