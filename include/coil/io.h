/* coil: awaitable I/O on plain file descriptors, through the loop's io_uring.
 *
 * Each call suspends the running task until the kernel completes the operation. Cancelling the
 * task submits an async cancel; the task resumes only once the kernel is done with the buffer,
 * with -ECANCELED if the operation was cancelled, or with its result if it had completed first
 * (the cancellation is then delivered at the next await). Errors are negated errnos.
 * COIL_ENOTASK outside a task. Loop thread only. */
#ifndef COIL_IO_H
#define COIL_IO_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

COIL_API int coil_read(int fd, void *buf, size_t len, size_t *nread);
COIL_API int coil_write(int fd, const void *buf, size_t len, size_t *nwritten);
COIL_API int coil_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *nread);
COIL_API int coil_pwrite(int fd, const void *buf, size_t len, uint64_t offset, size_t *nwritten);
/* Write all of buf, looping on short writes. */
COIL_API int coil_write_all(int fd, const void *buf, size_t len);
/* Close fd. From a task, when this returns the fd is closed, whatever it returns: through the
 * loop's driver when it has room, else synchronously. A cancel pending at the call or arriving
 * during the close does not stop it; it is delivered at the task's next await, and this returns
 * the close's own result (0, or -errno as close(2) reports, e.g. -EIO). -EBADF for a negative fd.
 * Outside a task: COIL_ENOTASK and the fd is left alone. Suspends. Loop thread only.
 * coil_close, coil_file_close and coil_sock_close follow this same rule. */
COIL_API int coil_close(int fd);

#ifdef __cplusplus
}
#endif
#endif
