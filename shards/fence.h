/* coil shards: the asymmetric fence. One side of a handshake pays for a barrier on behalf of
 * every other thread of the process, so those threads can use plain loads and stores where
 * they would otherwise need a locked read-modify-write (see the inbox's `asym` in inbox.c).
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) provides it: it runs a full memory barrier on
 * every CPU that runs a thread of this process, and returns once all have. */
#ifndef COIL_SHARDS_FENCE_H
#define COIL_SHARDS_FENCE_H

#include <stdbool.h>

/* Can coil__fence_heavy be used now? The process must register for it first: the first call
 * that finds it unregistered starts that in the background and says false, so a later call
 * may say true. False for good where the kernel lacks it. Any thread; never blocks. */
bool coil__fence_ready(void);

/* A full barrier on every running thread of the process: whatever another thread stored
 * before its barrier is visible to our loads after this call, and our stores before it are
 * visible to its loads after. Only once coil__fence_ready said true. Returns false if it
 * failed; coil__fence_ready says false from then on, so the caller falls back to the
 * symmetric handshake. Any thread; a system call, costly when other threads run. */
bool coil__fence_heavy(void);

#endif
