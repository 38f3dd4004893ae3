/* coil core: the io_uring driver. One SQE per operation; user_data carries a tagged pointer to
 * whatever waits for the completion (see COIL__UD_*). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "engine/internal.h"
#include "observe/stats.h"

/* Slot bookkeeping for coil__uring_file_add. The kernel's update reads the fd from memory at
 * submit time, so each slot's fd lives here (not in a stream that may be gone by then). */
typedef struct coil__uring_files {
    int *fds;          /* per slot: the fd installed, -1 when free */
    int *free;         /* a stack of freed slots */
    unsigned n, nfree, next; /* table size; freed slots; slots never used start at next */
} coil__uring_files;

#define FILES_MAX 16384u

static void explain(int err)
{
    const char *why;
    switch (err) {
    case -ENOSYS:
        why = "the kernel has no io_uring, or a seccomp filter (a container runtime's default profile, "
              "for one) blocks io_uring_setup: allow the io_uring syscalls or run on a kernel built "
              "with CONFIG_IO_URING";
        break;
    case -EPERM:
        why = "io_uring_setup was refused: sysctl kernel.io_uring_disabled is set (set it to 0, or to 1 "
              "and put this user in kernel.io_uring_group), or a seccomp/LSM policy forbids io_uring";
        break;
    case -ENOMEM:
        why = "the kernel could not allocate the rings: raise the locked-memory limit (ulimit -l, "
              "RLIMIT_MEMLOCK) or ask for fewer ring entries";
        break;
    default:
        why = strerror(-err);
    }
    fprintf(stderr, "coil: cannot set up io_uring (%s): %s\n", strerror(-err), why);
}

int coil__uring_init(coil__uring *u, unsigned entries)
{
    /* Best first; on EINVAL step down one flag at a time to what this kernel accepts. */
    /* TASKRUN_FLAG makes the kernel raise IORING_SQ_TASKRUN when completions wait for us to enter,
     * so a busy loop with I/O in flight can tell, with one load, whether a syscall would find
     * anything (see coil__uring_poll). */
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    memset(u, 0, sizeof *u);
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CLAMP | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        ret = io_uring_queue_init_params(entries, &u->ring, &p);
        if (ret == 0) {
            u->flags = p.flags;
            /* Every io_uring_enter then names the ring by its slot in this thread's registered
             * rings and skips the fd-table lookup and reference. The loop only ever enters from
             * the thread that made it (SINGLE_ISSUER even enforces it), which is what the slot
             * is bound to. Not fatal if refused (kernels before 5.18): plain fd then. */
            (void)io_uring_register_ring_fd(&u->ring);
            return 0;
        }
        if (ret != -EINVAL)
            break;
    }
    explain(ret);
    return COIL_ENOURING;
}

void coil__uring_exit(coil__uring *u)
{
    io_uring_queue_exit(&u->ring); /* the kernel drops the fixed files with the ring */
    if (u->files) {
        free(u->files->fds);
        free(u->files->free);
        free(u->files);
    }
}

/* The table is sized once (growing it would mean waiting for every fixed-file operation to
 * finish): up to FILES_MAX, and never past RLIMIT_NOFILE, which the kernel enforces. A loop that
 * never needs slots never pays for one. */
static coil__uring_files *files_of(coil_loop *loop)
{
    coil__uring *u = &loop->io;
    if (u->files)
        return u->files;
    coil__uring_files *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    struct rlimit rl;
    unsigned n = FILES_MAX;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
        n = (unsigned)rl.rlim_cur;
    f->fds = malloc(n * sizeof *f->fds);
    f->free = malloc(n * sizeof *f->free);
    if (f->fds && f->free && n && io_uring_register_files_sparse(&u->ring, n) == 0)
        f->n = n;
    else {
        free(f->fds);
        free(f->free);
        f->fds = f->free = NULL; /* n stays 0: no slots on this ring */
    }
    u->files = f;
    return f;
}

/* Point slot at f->fds[slot] (an fd, or -1 to empty it): an SQE when one is free, which the next
 * submit carries with everything else, else a syscall now. */
static int files_update(coil_loop *loop, coil__uring_files *f, unsigned slot)
{
    struct io_uring_sqe *sqe = coil__uring_sqe(loop);
    if (!sqe)
        return io_uring_register_files_update(&loop->io.ring, slot, &f->fds[slot], 1) == 1 ? 0 : -1;
    io_uring_prep_files_update(sqe, &f->fds[slot], 1, (int)slot);
    io_uring_sqe_set_data64(sqe, COIL__UD_IGNORE);
    return 0;
}

int coil__uring_file_add(coil_loop *loop, int fd)
{
    coil__uring_files *f = files_of(loop);
    if (!f || (!f->nfree && f->next == f->n))
        return -1;
    unsigned slot = f->nfree ? (unsigned)f->free[--f->nfree] : f->next++;
    f->fds[slot] = fd;
    if (files_update(loop, f, slot) != 0) {
        f->fds[slot] = -1;
        f->free[f->nfree++] = (int)slot;
        return -1;
    }
    return (int)slot;
}

void coil__uring_file_remove(coil_loop *loop, int slot)
{
    coil__uring_files *f = loop->io.files;
    if (!f || slot < 0 || (unsigned)slot >= f->n)
        return;
    f->fds[slot] = -1;
    if (!loop->closed)
        files_update(loop, f, (unsigned)slot);
    f->free[f->nfree++] = slot;
}

/* io_uring_enter failed with something other than "look again" (EINTR, EAGAIN, EBUSY; ETIME for
 * a timed wait): a seccomp or LSM policy that allowed io_uring_setup but refuses io_uring_enter
 * (EPERM), a ring fd gone (EBADF), no memory... The loop can then neither submit nor wait, and
 * carrying on would spin: the run that is driving it ends with the error (coil_loop_run_*), and
 * the loop's exception handler hears of it, once per loop. */
static void enter_failed(coil_loop *loop, int err)
{
    if (!loop->io.err)
        loop->io.err = err;
    if (loop->io.broken)
        return;
    loop->io.broken = true;
    coil__loop_report(loop,
                      err == -EPERM ? "io_uring_enter was refused (a seccomp or LSM policy that allows io_uring_setup "
                                      "but not io_uring_enter?); the loop cannot wait for I/O or timers and its run "
                                      "ends with this error"
                                    : "io_uring_enter failed; the loop cannot wait for I/O or timers and its run ends "
                                      "with this error",
                      err, NULL, NULL, NULL);
}

static inline bool enter_transient(int ret)
{
    return ret >= 0 || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

struct io_uring_sqe *coil__uring_sqe(coil_loop *loop)
{
    if (COIL__FAULT(COIL__FAULT_FAIL_SQE))
        return NULL;
    struct io_uring_sqe *sqe = io_uring_get_sqe(&loop->io.ring);
    if (COIL_UNLIKELY(!sqe)) {
        /* SQ full: push what is queued to the kernel and take a fresh slot. */
        int n = io_uring_submit(&loop->io.ring);
        if (n > 0)
            COIL__STAT_ADD(loop, sqes_submitted, n);
        else if (!enter_transient(n))
            enter_failed(loop, n);
        loop->io.unsubmitted = 0;
        sqe = io_uring_get_sqe(&loop->io.ring);
        if (!sqe)
            return NULL;
    }
    loop->io.unsubmitted++;
    loop->io.inflight++;
    return sqe;
}

static void handle_cqe(coil_loop *loop, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    void *p = (void *)(uintptr_t)(ud & ~(uint64_t)7);
    if (!(cqe->flags & IORING_CQE_F_MORE))
        loop->io.inflight--;
    switch (ud & 7) {
    case COIL__UD_TASK:
        coil__task_wake(p, cqe->res);
        break;
    case COIL__UD_CALLBACK:
        ((coil__uring_cb *)p)->complete(p, cqe);
        break;
    default:
        break; /* a cancel request's own completion */
    }
}

bool coil__uring_pending(coil_loop *loop)
{
    struct io_uring *ring = &loop->io.ring;
    if (!(loop->io.flags & IORING_SETUP_TASKRUN_FLAG))
        return true; /* no cheap way to tell: assume so */
    return (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) ||
           io_uring_cq_ready(ring);
}

unsigned coil__uring_poll(coil_loop *loop, bool wait, uint64_t timeout_ns)
{
    struct io_uring *ring = &loop->io.ring;
    unsigned queued = loop->io.unsubmitted;
    int ret;
    loop->io.unsubmitted = 0;
    if (COIL__FAULT(COIL__FAULT_ENTER_ERROR)) {
        ret = -coil__fault_errno(COIL__FAULT_ENTER_ERROR);
    } else if (!wait) {
        /* Enter the kernel only if there is something to submit or it says completions wait. */
        bool flagged = (loop->io.flags & IORING_SETUP_TASKRUN_FLAG) &&
                       (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
        bool blind = !(loop->io.flags & IORING_SETUP_TASKRUN_FLAG) && (loop->io.flags & IORING_SETUP_DEFER_TASKRUN);
        if (queued || flagged || blind)
            ret = io_uring_submit_and_get_events(ring);
        else if (!io_uring_cq_ready(ring))
            return 0;
        else
            ret = 0;
    } else if (timeout_ns == UINT64_MAX) {
        ret = io_uring_submit_and_wait(ring, 1);
    } else {
        struct __kernel_timespec ts = { .tv_sec = (long long)(timeout_ns / 1000000000u),
                                        .tv_nsec = (long long)(timeout_ns % 1000000000u) };
        struct io_uring_cqe *cqe;
        ret = io_uring_submit_and_wait_timeout(ring, &cqe, 1, &ts, NULL);
    }
    /* -ETIME, -EINTR and friends just mean: look at what completed. */
    if (COIL_UNLIKELY(!enter_transient(ret)))
        enter_failed(loop, ret);
    COIL__STAT_ADD(loop, sqes_submitted, queued);
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(ring, head, cqe)
    {
        handle_cqe(loop, cqe);
        n++;
    }
    io_uring_cq_advance(ring, n);
    COIL__STAT_ADD(loop, cqes_reaped, n);
    return n;
}
