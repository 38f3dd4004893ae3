/* coil core: fault injection, for tests that must see the runtime fail the way a real system
 * can make it fail.
 *
 * Built only with -DCOIL_FAULTS=ON (compile definition COIL_FAULTS). Without it every hook is the
 * constant 0 and costs nothing; coil__fault_set then refuses with -ENOSYS.
 *
 * The environment variable COIL_FAULT, read once when the first hook runs, selects the faults:
 * a comma-separated list of KIND:WHEN[:ERRNO].
 *
 *   KIND   drop_wakeup   a cross-thread wake-up of a sleeping loop (the MSG_RING a producer owes
 *                        after it cleared the loop's asleep flag) is not sent: a lost wake-up
 *          fail_sqe      no submission queue entry can be had for an operation, as when the queue
 *                        stays full: the operation fails at once (its caller's -EBUSY path)
 *          enter_error   io_uring_enter is not called and returns -ERRNO (default EPERM), as
 *                        under a seccomp policy that refuses it
 *   WHEN   N             the Nth occurrence of KIND only (counted per process, from 1)
 *          N+            the Nth and every later one
 *          %K            every Kth (%1: all of them)
 *   ERRNO  a name (EPERM, EBADF, ENOMEM, EINTR, EAGAIN, EBUSY, ETIME, EFAULT, EINVAL) or a number
 *
 * Examples: COIL_FAULT=drop_wakeup:%1000   COIL_FAULT=enter_error:1+:EPERM,fail_sqe:3
 *
 * Thread-safe: the occurrence counters are atomic. */
#ifndef COIL_CORE_FAULTS_H
#define COIL_CORE_FAULTS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { COIL__FAULT_DROP_WAKEUP, COIL__FAULT_FAIL_SQE, COIL__FAULT_ENTER_ERROR, COIL__FAULT_KINDS };

#if defined(COIL_FAULTS)
/* Count one occurrence of kind; true if this one is to fail. */
bool coil__fault_hit(int kind);
#define COIL__FAULT(kind) __builtin_expect(coil__fault_hit(kind), 0)
#else
#define COIL__FAULT(kind) 0
#endif

/* The errno an enter_error fault returns (positive). */
int coil__fault_errno(int kind);
/* Replace the selection with spec (COIL_FAULT's syntax; NULL or "" for none) and restart every
 * count. For tests, between runs. 0, -EINVAL for a spec that does not parse (nothing changes
 * then), -ENOSYS in a build without COIL_FAULTS. */
int coil__fault_set(const char *spec);

#ifdef __cplusplus
}
#endif

#endif
