/* coil shards: a read-only window on a loop's inbox, for tests and tools. Private to coil, but
 * plain C that C++ can include (the inbox itself lives in shards.h, which C++ cannot). */
#ifndef COIL_SHARDS_INBOX_DEBUG_H
#define COIL_SHARDS_INBOX_DEBUG_H

#include <stdint.h>

#include "coil/loop.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct coil__xstats {
    uint64_t msgs_in, msgs_out;                       /* popped by / posted from this loop */
    uint64_t wakeups_from_loops, wakeups_from_threads; /* wake-ups this loop received */
    uint64_t wakeups_sent;                            /* wake-ups this loop sent to other loops */
    uint64_t asym_fences;                             /* membarriers before a sleep (inbox.c) */
    uint64_t wakes_sent_here;                         /* wake-ups producers sent this loop (a CQE
                                                       * may land later, even while it is busy) */
} coil__xstats;

/* The loop's cross-thread counters. Loop thread (they have one writer). */
void coil__loop_xstats(coil_loop *loop, coil__xstats *out);
/* 1 if the loop has said it is about to block (or is blocked) waiting for its inbox, else 0.
 * Any thread. Creates the inbox if the loop has none. */
int coil__loop_inbox_asleep(coil_loop *loop);
/* How many messages the loop's inbox ring holds (a thread's own lane holds as many). Any thread. */
unsigned coil__loop_inbox_capacity(coil_loop *loop);
/* How many threads' own lanes (lane.h) the loop's inbox has. The loop's thread. */
unsigned coil__loop_inbox_lanes(coil_loop *loop);
/* How long the loop now spins on its inbox before it sleeps (ns; learnt, see inbox.c). The loop's
 * thread. */
unsigned coil__loop_inbox_spin_budget(coil_loop *loop);
/* 1 while the loop fences for its producers before sleeping (inbox.c, asym). Any thread. */
int coil__loop_inbox_asym(coil_loop *loop);
/* Lane messages between two sleeps that switch that on (default 4096). The loop's thread. */
void coil__loop_inbox_set_asym_after(coil_loop *loop, unsigned msgs);
/* How long a lane that streams waits between looks (see coil__lane_pop_batch; default 500 ns).
 * The loop's thread. */
void coil__loop_inbox_set_lane_pace(coil_loop *loop, uint64_t ns);
/* How many chunks of concurrent futures (threadsafe.c) the process holds. Any thread. */
long coil__cfuture_chunks_live(void);

#ifdef __cplusplus
}
#endif
#endif
