/* coil: Unix signal handlers on the loop (asyncio's loop.add_signal_handler).
 *
 * A handled signal is blocked in the loop's thread and read from a signalfd through the ring, so
 * the callback runs on the loop like any other callback, never in signal context. Signals sent
 * to the process (kill PID) reach the loop only if every other thread blocks them too (or the
 * loop's thread is the only one); signals sent to the loop's thread (raise, pthread_kill) always
 * do. Loop thread only. */
#ifndef COIL_SIGNAL_H
#define COIL_SIGNAL_H

#include "api.h"
#include "loop.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Call cb(arg) on the loop each time signo arrives. Replaces an earlier handler for signo.
 * Returns 0, -EINVAL for a signal that cannot be caught (SIGKILL, SIGSTOP) or is out of range,
 * COIL_ECLOSED, or a negated errno from signalfd. */
COIL_API int coil_loop_add_signal_handler(coil_loop *loop, int signo, coil_callback_fn cb, void *arg);
/* Returns 1 if a handler was removed, 0 if there was none. The signal is unblocked again (an
 * instance that arrived and was not yet handled is discarded). */
COIL_API int coil_loop_remove_signal_handler(coil_loop *loop, int signo);

#ifdef __cplusplus
}
#endif
#endif
