/* coil core: files through the loop's driver (coil/file.h): open, sync, statx, close, whole-file
 * helpers.
 *
 * Reads and writes are fdio.c's. Each call here is one operation whose record is the task itself
 * (coil__io_wait): the task resumes only on that operation's completion, even when cancelled, so
 * a path or a statx buffer handed to the kernel stays valid for as long as the kernel uses it.
 * Those that sit on the shared stack of compact tasks are bounced through the heap first,
 * because that memory belongs to another task while this one is suspended. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coil/file.h"
#include "io/io_internal.h"

/* The running task, ready to submit: COIL_ENOTASK outside one, or the pending cancellation. */
static coil_task *enter(int *err)
{
    coil_task *t = coil__running_task();
    if (!t) {
        *err = COIL_ENOTASK;
        return NULL;
    }
    *err = coil__task_check_cancel(t);
    return *err ? NULL : t;
}

/* A copy of path the kernel may read while the task is switched out, or path itself. */
static const char *stable_path(coil_task *t, const char *path, char **copy)
{
    *copy = NULL;
    size_t n = strlen(path) + 1;
    if (!coil__io_must_bounce(t, path, n))
        return path;
    *copy = malloc(n);
    if (*copy)
        memcpy(*copy, path, n);
    return *copy;
}

int coil_file_openat(int dirfd, const char *path, int flags, mode_t mode, int *fd)
{
    if (!path || !fd)
        return -EINVAL;
    int err;
    coil_task *t = enter(&err);
    if (!t)
        return err;
    char *copy;
    const char *p = stable_path(t, path, &copy);
    if (!p)
        return -ENOMEM;
    coil__op op = { .code = COIL__OP_OPENAT, .fd = dirfd, .buf = (void *)p, .arg = flags | O_CLOEXEC, .arg2 = mode };
    int res = coil__io_wait(t, &op);
    free(copy);
    if (res < 0)
        return res;
    *fd = res;
    return 0;
}

int coil_file_open(const char *path, int flags, mode_t mode, int *fd)
{
    return coil_file_openat(AT_FDCWD, path, flags, mode, fd);
}

int coil_file_read(int fd, void *buf, size_t len, size_t *nread) { return coil_read(fd, buf, len, nread); }

int coil_file_write(int fd, const void *buf, size_t len, size_t *nwritten)
{
    return coil_write(fd, buf, len, nwritten);
}

int coil_file_pread(int fd, void *buf, size_t len, uint64_t offset, size_t *nread)
{
    return coil_pread(fd, buf, len, offset, nread);
}

int coil_file_pwrite(int fd, const void *buf, size_t len, uint64_t offset, size_t *nwritten)
{
    return coil_pwrite(fd, buf, len, offset, nwritten);
}

static int sync_fd(int fd, uint8_t op_flags)
{
    if (fd < 0)
        return -EBADF;
    int err;
    coil_task *t = enter(&err);
    if (!t)
        return err;
    coil__op op = { .code = COIL__OP_FSYNC, .flags = op_flags, .fd = fd };
    int res = coil__io_wait(t, &op);
    return res < 0 ? res : 0;
}

int coil_file_fsync(int fd) { return sync_fd(fd, 0); }
int coil_file_fdatasync(int fd) { return sync_fd(fd, COIL__OPF_DATASYNC); }

static int do_statx(int dirfd, const char *path, int flags, unsigned mask, struct statx *out)
{
    if (!path || !out)
        return -EINVAL;
    int err;
    coil_task *t = enter(&err);
    if (!t)
        return err;
    char *copy;
    const char *p = stable_path(t, path, &copy);
    if (!p)
        return -ENOMEM;
    struct statx *st = out;
    if (coil__io_must_bounce(t, out, sizeof *out)) {
        st = malloc(sizeof *st);
        if (!st) {
            free(copy);
            return -ENOMEM;
        }
    }
    coil__op op = { .code = COIL__OP_STATX, .fd = dirfd, .buf = (void *)p, .out = st, .arg = flags,
                    .arg2 = mask ? mask : STATX_BASIC_STATS };
    int res = coil__io_wait(t, &op);
    if (res >= 0)
        coil__kernel_wrote(st, sizeof *st);
    free(copy);
    if (st != out) {
        if (res >= 0)
            memcpy(out, st, sizeof *out);
        free(st);
    }
    return res < 0 ? res : 0;
}

int coil_file_statx(const char *path, int flags, unsigned mask, struct statx *out)
{
    return do_statx(AT_FDCWD, path, flags, mask, out);
}

int coil_file_fstatx(int fd, unsigned mask, struct statx *out)
{
    if (fd < 0)
        return -EBADF;
    return do_statx(fd, "", AT_EMPTY_PATH, mask, out);
}

int coil_file_close(int fd) { return coil__io_close(fd); }

/* ---- whole-file helpers ---- */

#define READ_ALL_MIN 4096

int coil_file_read_all(const char *path, char **buf, size_t *len)
{
    if (!path || !buf)
        return -EINVAL;
    int fd, err = coil_file_open(path, O_RDONLY, 0, &fd);
    if (err)
        return err;
    /* Size the block from the file when it says (a regular file); /proc and pipes say 0 and the
     * block grows instead. One spare byte, so a file read at its size still sees EOF without a
     * regrow, and for the NUL. */
    struct statx st;
    size_t cap = READ_ALL_MIN;
    err = coil_file_fstatx(fd, STATX_SIZE, &st);
    if (err)
        goto fail_fd;
    if (st.stx_size >= SIZE_MAX / 2) {
        err = -EFBIG;
        goto fail_fd;
    }
    if ((size_t)st.stx_size + 1 > cap)
        cap = (size_t)st.stx_size + 1;
    char *b = malloc(cap);
    if (!b) {
        err = -ENOMEM;
        goto fail_fd;
    }
    size_t n = 0;
    for (;;) {
        if (n + 1 >= cap) {
            if (cap >= SIZE_MAX / 4) {
                err = -EFBIG;
                goto fail_buf;
            }
            char *nb = realloc(b, cap * 2);
            if (!nb) {
                err = -ENOMEM;
                goto fail_buf;
            }
            b = nb;
            cap *= 2;
        }
        size_t got = 0;
        err = coil_read(fd, b + n, cap - 1 - n, &got);
        if (err)
            goto fail_buf;
        if (got == 0)
            break;
        n += got;
    }
    close(fd);
    b[n] = 0;
    *buf = b;
    if (len)
        *len = n;
    return 0;
fail_buf:
    free(b);
fail_fd:
    close(fd);
    return err;
}

int coil_file_write_all(const char *path, const void *buf, size_t len, int flags, mode_t mode)
{
    if (!path || (!buf && len))
        return -EINVAL;
    if (flags == 0)
        flags = O_CREAT | O_TRUNC;
    if ((flags & O_ACCMODE) == O_RDONLY)
        flags |= O_WRONLY;
    int fd, err = coil_file_open(path, flags, mode ? mode : 0666, &fd);
    if (err)
        return err;
    err = len ? coil_write_all(fd, buf, len) : 0;
    /* close(2) reports delayed write errors (NFS): those count as the write failing. */
    if (close(fd) && !err && errno != EINTR)
        err = -errno;
    return err;
}
