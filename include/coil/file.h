/* coil: files on io_uring (open, read, write, sync, statx, close) and whole-file helpers.
 *
 * Every call here that can suspend does so until the kernel completes the operation, and every
 * one is cancellable: cancelling the task submits an async cancel, and the task resumes only once
 * the kernel is done with the path and the buffer, with -ECANCELED if the operation was stopped,
 * or with its result if it had already completed (the cancellation is then delivered at the next
 * await, so no opened fd and no read data is lost).
 *
 * Paths and buffers may live anywhere, a compact task's stack included: those are copied through
 * a runtime-owned block before the kernel sees them.
 *
 * Every fd opened here is close-on-exec (O_CLOEXEC is always added), so none leaks into a
 * subprocess. Errors are negated errnos (-ENOENT, -EBADF, -EISDIR, ...), -ENOMEM, -ECANCELED,
 * COIL_ENOTASK outside a task; -EINVAL for a NULL argument. Loop thread only. */
#ifndef COIL_FILE_H
#define COIL_FILE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

struct statx; /* <sys/stat.h> with _GNU_SOURCE, or <linux/stat.h> */

/* openat(AT_FDCWD, path, flags | O_CLOEXEC, mode) on the ring; 0 with *fd. Suspends.
 * Unlike open(2), the kernel's io_uring open of a FIFO does not wait for the other end (it
 * opens as if O_NONBLOCK, then clears the flag): a read then sees EOF until a writer comes. */
COIL_API int coil_file_open(const char *path, int flags, mode_t mode, int *fd);
/* The same relative to dirfd (AT_FDCWD for the working directory). Suspends. */
COIL_API int coil_file_openat(int dirfd, const char *path, int flags, mode_t mode, int *fd);

/* read(2)/write(2) at the file position, pread(2)/pwrite(2) at an offset, on the ring. A short
 * count is not an error; *nread = 0 means end of file. Suspend. (The same calls as coil_read,
 * coil_write, coil_pread and coil_pwrite in coil/io.h, which work on any fd.) */
COIL_API int coil_file_read(int fd, void *buf, size_t len, size_t *nread);
COIL_API int coil_file_write(int fd, const void *buf, size_t len, size_t *nwritten);
COIL_API int coil_file_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *nread);
COIL_API int coil_file_pwrite(int fd, const void *buf, size_t len, uint64_t offset, size_t *nwritten);

/* fsync(2) / fdatasync(2) on the ring. Suspend. */
COIL_API int coil_file_fsync(int fd);
COIL_API int coil_file_fdatasync(int fd);

/* statx(2) on the ring: `flags` are AT_* flags (AT_SYMLINK_NOFOLLOW, ...), `mask` the STATX_*
 * fields wanted (0 = STATX_BASIC_STATS). Fills *out. Suspends. */
COIL_API int coil_file_statx(const char *path, int flags, unsigned mask, struct statx *out);
/* statx of an open fd (AT_EMPTY_PATH). Suspends. */
COIL_API int coil_file_fstatx(int fd, unsigned mask, struct statx *out);

/* Close fd. From a task, when this returns the fd is closed, whatever it returns: through the
 * loop's driver when it has room, else synchronously. A cancel pending at the call or arriving
 * during the close does not stop it; it is delivered at the task's next await, and this returns
 * the close's own result (0, or -errno as close(2) reports, e.g. -EIO). -EBADF for a negative fd.
 * Outside a task: COIL_ENOTASK and the fd is left alone. Suspends. Loop thread only.
 * coil_close, coil_file_close and coil_sock_close follow this same rule. */
COIL_API int coil_file_close(int fd);

/* Read the whole file at `path` into a malloc'd block (NUL-terminated for convenience, the NUL
 * not counted in *len) that the caller frees with free(). Works on files whose size is unknown
 * or changing (/proc, pipes): the block grows as needed. Suspends. On error nothing is
 * allocated and *buf is untouched. -EFBIG past SIZE_MAX/2 bytes. */
COIL_API int coil_file_read_all(const char *path, char **buf, size_t *len);
/* Write len bytes of buf as the whole content of `path`. flags 0 = O_CREAT | O_TRUNC (O_WRONLY
 * is always added; pass e.g. O_CREAT | O_APPEND to append); mode 0 = 0666 (before the umask).
 * Suspends. On a write error the file may hold part of the data. */
COIL_API int coil_file_write_all(const char *path, const void *buf, size_t len, int flags, mode_t mode);

#ifdef __cplusplus
}
#endif
#endif
