/* coil core: the io_uring driver (core/backend/backend.h). One SQE per operation, translated from
 * its coil__op; user_data carries a tagged pointer to whatever waits for the completion (see
 * UD_*). */
#include <errno.h>
#include <linux/futex.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include "backend/uring/bufring.h"
#include "backend/uring/driver.h"
#include "observe/stats.h"

/* liburing maps and unmaps a ring's memory with raw system calls, which ThreadSanitizer cannot
 * see: a ring set up on one thread can land where another thread's ring was torn down, and the
 * old ring's accesses then look like a race with the new one's. Every teardown is ordered before
 * every later set-up, which is what the kernel's unmap and map guarantee anyway. */
#if defined(__SANITIZE_THREAD__)
#define COIL__TSAN_RINGS 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COIL__TSAN_RINGS 1
#endif
#endif
#if defined(COIL__TSAN_RINGS)
void __tsan_acquire(void *addr);
void __tsan_release(void *addr);
static char ring_epoch;
static void ring_mapped(void) { __tsan_acquire(&ring_epoch); }
static void ring_unmapping(void) { __tsan_release(&ring_epoch); }
#else
static void ring_mapped(void) {}
static void ring_unmapping(void) {}
#endif

/* Slot bookkeeping for coil__uring_file_add. The kernel's update reads the fd from memory at
 * submit time, so each slot's fd lives here (not in a stream that may be gone by then). */
typedef struct coil__uring_files {
    int *fds;          /* per slot: the fd installed, -1 when free */
    int *free;         /* a stack of freed slots */
    unsigned n, nfree, next; /* table size; freed slots; slots never used start at next */
} coil__uring_files;

#define FILES_MAX 16384u

void coil__uring_explain(int err, const char *then)
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
    fprintf(stderr, "coil: cannot set up io_uring (%s): %s%s\n", strerror(-err), why, then ? then : "");
}

/* Named here because the installed headers may predate it (Linux 6.3). Tries need a kernel that
 * reports a short MSG_WAITALL send that could not wait by the bytes it sent; the feature bits
 * have no name for that, and this one is of the same age or younger. */
#define FEAT_REG_REG_RING_ (1U << 13)

int coil__uring_init(coil_loop *loop, unsigned entries)
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
    memset(&loop->io, 0, sizeof loop->io);
    coil__driver *u = calloc(1, sizeof *u);
    if (!u)
        return -ENOMEM;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CLAMP | IORING_SETUP_CQSIZE;
        p.cq_entries = entries * 4;
        ret = io_uring_queue_init_params(entries, &u->ring, &p);
        if (ret == 0) {
            ring_mapped();
            u->flags = p.flags;
            /* Every io_uring_enter then names the ring by its slot in this thread's registered
             * rings and skips the fd-table lookup and reference. The loop only ever enters from
             * the thread that made it (SINGLE_ISSUER even enforces it), which is what the slot
             * is bound to. Not fatal if refused (kernels before 5.18): plain fd then. */
            (void)io_uring_register_ring_fd(&u->ring);
            u->can_try = (p.features & IORING_FEAT_CQE_SKIP) && (p.features & FEAT_REG_REG_RING_);
            u->tried_tail = &u->tried;
            loop->io.drv = u;
            loop->io.ops = &coil__uring_ops;
            loop->io.peek_cheap = (u->flags & IORING_SETUP_TASKRUN_FLAG) != 0;
            return 0;
        }
        if (ret != -EINVAL)
            break;
    }
    free(u);
    return ret;
}

static void uring_exit(coil_loop *loop)
{
    coil__driver *u = loop->io.drv;
    if (!u)
        return;
    ring_unmapping();
    io_uring_queue_exit(&u->ring); /* the kernel drops the fixed files with the ring */
    if (u->files) {
        free(u->files->fds);
        free(u->files->free);
        free(u->files);
    }
    free(u);
    loop->io.drv = NULL;
}

/* The table is sized once (growing it would mean waiting for every fixed-file operation to
 * finish): up to FILES_MAX, and never past RLIMIT_NOFILE, which the kernel enforces. A loop that
 * never needs slots never pays for one. */
static coil__uring_files *files_of(coil_loop *loop)
{
    coil__driver *u = loop->io.drv;
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
        return io_uring_register_files_update(&loop->io.drv->ring, slot, &f->fds[slot], 1) == 1 ? 0 : -1;
    io_uring_prep_files_update(sqe, &f->fds[slot], 1, (int)slot);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    return 0;
}

static int uring_file_add(coil_loop *loop, int fd)
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

static void uring_file_remove(coil_loop *loop, int slot)
{
    coil__uring_files *f = loop->io.drv ? loop->io.drv->files : NULL;
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
    coil__backend_broken(loop, err,
                         err == -EPERM ? "io_uring_enter was refused (a seccomp or LSM policy that allows io_uring_setup "
                                         "but not io_uring_enter?); the loop cannot wait for I/O or timers and its run "
                                         "ends with this error"
                                       : "io_uring_enter failed; the loop cannot wait for I/O or timers and its run ends "
                                         "with this error");
}

static inline bool enter_transient(int ret)
{
    return ret >= 0 || ret == -EINTR || ret == -EAGAIN || ret == -EBUSY || ret == -ETIME;
}

struct io_uring_sqe *coil__uring_sqe(coil_loop *loop)
{
    if (COIL__FAULT(COIL__FAULT_FAIL_SQE))
        return NULL;
    struct io_uring *ring = &loop->io.drv->ring;
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
    if (COIL_UNLIKELY(!sqe)) {
        /* SQ full: push what is queued to the kernel and take a fresh slot. */
        int n = io_uring_submit(ring);
        if (n > 0)
            COIL__STAT_ADD(loop, sqes_submitted, n);
        else if (!enter_transient(n))
            enter_failed(loop, n);
        loop->io.unsubmitted = 0;
        sqe = io_uring_get_sqe(ring);
        if (!sqe)
            return NULL;
    }
    loop->io.unsubmitted++;
    loop->io.inflight++;
    return sqe;
}

/* ---- tries (COIL__OPF_TRY) ----
 * A try is a send with MSG_DONTWAIT | MSG_WAITALL and IOSQE_CQE_SKIP_SUCCESS. The kernel runs it
 * inline in the io_uring_enter that submits it and posts a CQE only if it failed: -EAGAIN, or
 * for a short send the bytes that did go out. So once an enter has taken every queued SQE and
 * its CQEs are reaped, a try that got no CQE went out whole, and the driver completes it. A
 * success costs no CQE, and above all the enter that submits a turn's answers goes on to sleep
 * until the next request instead of returning at once with their completions. */

/* Take a failed try off its list before its completion runs (which may free the record). Tries
 * rarely fail, and a list holds one enter's worth. */
static void unlist_try(coil__driver *u, coil__io_cb *cb)
{
    cb->listed = false;
    for (coil__io_cb **p = &u->settling; *p; p = &(*p)->settle_next)
        if (*p == cb) {
            *p = cb->settle_next;
            return;
        }
    for (coil__io_cb **p = &u->tried; *p; p = &(*p)->settle_next)
        if (*p == cb) {
            *p = cb->settle_next;
            if (u->tried_tail == &cb->settle_next)
                u->tried_tail = p;
            u->ntried--;
            return;
        }
}

static void as_try(coil_loop *loop, const coil__op *op, struct io_uring_sqe *sqe, coil__io_cb *cb)
{
    coil__driver *u = loop->io.drv;
    if (!(op->flags & COIL__OPF_TRY) || op->code != COIL__OP_SEND || !u->can_try || op->len > INT32_MAX ||
        cb->listed)
        return;
    sqe->msg_flags |= MSG_DONTWAIT | MSG_WAITALL;
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    cb->settle_len = (unsigned)op->len;
    cb->settle_next = NULL;
    cb->listed = true;
    *u->tried_tail = cb;
    u->tried_tail = &cb->settle_next;
    u->ntried++;
}

/* Complete the tries that the last enter took and no CQE has completed: they went out whole.
 * Each leaves the list before its callback runs, which may start the next try on the record. */
static unsigned settle(coil_loop *loop)
{
    coil__driver *u = loop->io.drv;
    unsigned n = 0;
    for (coil__io_cb *cb; (cb = u->settling); n++) {
        u->settling = cb->settle_next;
        cb->listed = false;
        loop->io.inflight--;
        coil__io_done d = { (int)cb->settle_len, false, NULL };
        cb->complete(cb, &d);
    }
    return n;
}

/* A callback's completion. A provided buffer goes back to the pool once the callback has
 * copied it out; the callback may drop the last reference to the pool meanwhile (a stream that
 * ends), so the completion holds one of its own. */
static void complete_cb(coil_loop *loop, coil__io_cb *cb, const struct io_uring_cqe *cqe)
{
    if (COIL_UNLIKELY(cb->listed))
        unlist_try(loop->io.drv, cb); /* a try's CQE: it failed, and says how (see settle) */
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more && !cb->quiet)
        loop->io.inflight--;
    coil__io_done d = { cqe->res, more, NULL };
    coil__uring_bufring *b = loop->io.drv->bufring;
    if (COIL_LIKELY(!(cqe->flags & IORING_CQE_F_BUFFER)) || !b) {
        cb->complete(cb, &d);
        return;
    }
    unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
    d.buf = coil__bufring_buf(b, bid);
    if (d.res > 0)
        coil__kernel_wrote(d.buf, (size_t)d.res);
    b->base.refs++;
    cb->complete(cb, &d);
    coil__bufring_recycle(b, bid);
    coil__bufring_unref(&b->base);
}

static void uring_alarm(coil_loop *loop, uint64_t deadline_ns)
{
    struct io_uring_sqe *sqe = coil__uring_sqe(loop);
    if (!sqe)
        return;
    /* Both ops read the timespec when the kernel takes the SQE, so it lives in the loop; a second
     * arm before that submit moves both to the newer deadline, which alarm_at then names. */
    loop->io.drv->alarm_ts.tv_sec = (long long)(deadline_ns / 1000000000u);
    loop->io.drv->alarm_ts.tv_nsec = (long long)(deadline_ns % 1000000000u);
    if (loop->io.alarm_at) {
        /* Move the armed one. If it has fired meanwhile the update fails (its own CQE is
         * ignored) and the alarm's completion clears alarm_at: the next iteration re-arms. */
        io_uring_prep_timeout_update(sqe, &loop->io.drv->alarm_ts, UD_ALARM, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    } else {
        io_uring_prep_timeout(sqe, &loop->io.drv->alarm_ts, 0, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, UD_ALARM);
        loop->io.inflight--; /* it stands for the timers, which count already */
    }
    loop->io.alarm_at = deadline_ns;
}

static void handle_cqe(coil_loop *loop, const struct io_uring_cqe *cqe)
{
    uint64_t ud = cqe->user_data;
    void *p = (void *)(uintptr_t)(ud & ~(uint64_t)7);
    switch (ud & 7) {
    case UD_TASK:
        loop->io.inflight--;
        coil__task_wake(p, cqe->res);
        break;
    case UD_CALLBACK:
        complete_cb(loop, p, cqe);
        break;
    case UD_WAKE: {
        /* Another thread's wake-up (coil__backend_wake): never counted here. */
        coil__io_done d = { cqe->res, false, NULL };
        ((coil__io_cb *)p)->complete(p, &d);
        break;
    }
    case UD_ALARM:
        loop->io.alarm_at = 0;
        break;
    default:
        loop->io.inflight--; /* a cancel request's own completion */
        break;
    }
}

static bool uring_pending(coil_loop *loop)
{
    struct io_uring *ring = &loop->io.drv->ring;
    if (!loop->io.peek_cheap)
        return true; /* no cheap way to tell: assume so */
    return (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW)) ||
           io_uring_cq_ready(ring);
}

static unsigned uring_poll(coil_loop *loop, bool wait, uint64_t timeout_ns)
{
    coil__driver *u = loop->io.drv;
    struct io_uring *ring = &u->ring;
    unsigned queued = loop->io.unsubmitted;
    int ret;
    loop->io.unsubmitted = 0;
    /* Tries complete after the enter that takes them: do not sleep in it when a task waits for
     * one, or when nothing but tries is in flight to end the sleep. */
    if (wait && u->tried && (loop->io.settle_soon || loop->io.inflight <= u->ntried))
        wait = false;
    if (COIL__FAULT(COIL__FAULT_ENTER_ERROR)) {
        ret = -coil__fault_errno(COIL__FAULT_ENTER_ERROR);
    } else if (!wait) {
        /* Enter the kernel only if there is something to submit or it says completions wait. */
        bool flagged = (u->flags & IORING_SETUP_TASKRUN_FLAG) &&
                       (IO_URING_READ_ONCE(*ring->sq.kflags) & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW));
        bool blind = !(u->flags & IORING_SETUP_TASKRUN_FLAG) && (u->flags & IORING_SETUP_DEFER_TASKRUN);
        if (queued || flagged || blind)
            ret = io_uring_submit_and_get_events(ring);
        else if (!io_uring_cq_ready(ring) && !u->tried)
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
    /* Every SQE taken: the tries queued so far have run, and any that failed has its CQE in the
     * ring, handled below before the rest are completed. */
    if (u->tried && io_uring_sq_ready(ring) == 0) {
        u->settling = u->tried;
        u->tried = NULL;
        u->tried_tail = &u->tried;
        u->ntried = 0;
    }
    if (!u->tried)
        loop->io.settle_soon = false;
    unsigned head, n = 0;
    struct io_uring_cqe *cqe;
    io_uring_for_each_cqe(ring, head, cqe)
    {
        handle_cqe(loop, cqe);
        n++;
    }
    io_uring_cq_advance(ring, n);
    n += settle(loop);
    COIL__STAT_ADD(loop, cqes_reaped, n);
    return n;
}

/* ---- operations (backend.h) ---- */

/* Named here because the installed headers may predate them (Linux 6.7 added the op). */
#define OP_FUTEX_WAIT 51
#define FUTEX2_SIZE_U32_ 0x02u

_Static_assert(sizeof(coil__timespec) == sizeof(struct __kernel_timespec) &&
                   offsetof(coil__timespec, nsec) == offsetof(struct __kernel_timespec, tv_nsec),
               "coil__timespec is read by the kernel as a __kernel_timespec");

static void prep(coil_loop *loop, struct io_uring_sqe *sqe, const coil__op *op)
{
    switch (op->code) {
    case COIL__OP_READ:
        io_uring_prep_read(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        break;
    case COIL__OP_WRITE:
        io_uring_prep_write(sqe, op->fd, op->buf, (unsigned)op->len, op->off);
        break;
    case COIL__OP_RECV:
        io_uring_prep_recv(sqe, op->fd, op->buf, op->bufs && !op->len ? op->bufs->size : op->len, op->arg);
        break;
    case COIL__OP_RECV_MULTISHOT:
        io_uring_prep_recv_multishot(sqe, op->fd, NULL, 0, op->arg);
        /* The byte budget (optlen, honoured since 6.17): the multishot ends by itself once about
         * this much was delivered. */
        if (op->len)
            sqe->file_index = (uint32_t)(op->len > UINT32_MAX ? UINT32_MAX : op->len);
        break;
    case COIL__OP_SEND:
        io_uring_prep_send(sqe, op->fd, op->buf, op->len, op->arg);
        break;
    case COIL__OP_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, op->buf, (unsigned)op->arg);
        break;
    case COIL__OP_RECVMSG:
        io_uring_prep_recvmsg(sqe, op->fd, op->buf, (unsigned)op->arg);
        break;
    case COIL__OP_ACCEPT:
        io_uring_prep_accept(sqe, op->fd, op->buf, op->out, op->arg);
        break;
    case COIL__OP_ACCEPT_MULTISHOT:
        io_uring_prep_multishot_accept(sqe, op->fd, NULL, NULL, op->arg);
        break;
    case COIL__OP_CONNECT:
        io_uring_prep_connect(sqe, op->fd, op->buf, (socklen_t)op->len);
        break;
    case COIL__OP_SHUTDOWN:
        io_uring_prep_shutdown(sqe, op->fd, op->arg);
        break;
    case COIL__OP_CLOSE:
        io_uring_prep_close(sqe, op->fd);
        break;
    case COIL__OP_FSYNC:
        io_uring_prep_fsync(sqe, op->fd, op->flags & COIL__OPF_DATASYNC ? IORING_FSYNC_DATASYNC : 0);
        break;
    case COIL__OP_OPENAT:
        io_uring_prep_openat(sqe, op->fd, op->buf, op->arg, op->arg2);
        break;
    case COIL__OP_STATX:
        io_uring_prep_statx(sqe, op->fd, op->buf, op->arg, op->arg2, op->out);
        break;
    case COIL__OP_POLL:
        io_uring_prep_poll_add(sqe, op->fd, (unsigned)op->arg);
        break;
    case COIL__OP_FUTEX_WAIT:
        io_uring_prep_rw(OP_FUTEX_WAIT, sqe, (int)FUTEX2_SIZE_U32_, op->buf, 0, op->off);
        sqe->addr3 = FUTEX_BITSET_MATCH_ANY;
        break;
    case COIL__OP_TIMEOUT:
        io_uring_prep_timeout(sqe, op->buf, 0, 0);
        break;
    default:
        io_uring_prep_nop(sqe);
        break;
    }
    if (op->flags & COIL__OPF_FIXED)
        sqe->flags |= IOSQE_FIXED_FILE;
    if (op->bufs) {
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = ((const coil__uring_bufring *)op->bufs)->bgid;
    }
    (void)loop;
}

static int uring_submit_task(coil_loop *loop, const coil__op *op, coil_task *t)
{
    struct io_uring_sqe *sqe = coil__uring_sqe(loop);
    if (!sqe)
        return -EBUSY;
    prep(loop, sqe, op);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)t | UD_TASK);
    return 0;
}

static int uring_submit_cb(coil_loop *loop, const coil__op *op, coil__io_cb *cb)
{
    struct io_uring_sqe *sqe = coil__uring_sqe(loop);
    if (!sqe)
        return -EBUSY;
    prep(loop, sqe, op);
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)cb | UD_CALLBACK);
    as_try(loop, op, sqe, cb);
    cb->quiet = op->flags & COIL__OPF_QUIET;
    if (cb->quiet) {
        /* Not work (see COIL__OPF_QUIET): the next submit takes it with the rest. */
        loop->io.unsubmitted--;
        loop->io.inflight--;
    }
    return 0;
}

static bool cancel_ud(coil_loop *loop, uint64_t ud, int flags)
{
    struct io_uring_sqe *sqe = coil__uring_sqe(loop);
    if (!sqe)
        return false;
    io_uring_prep_cancel64(sqe, ud, flags);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
    return true;
}

static bool uring_cancel_task(coil_loop *loop, coil_task *t)
{
    return cancel_ud(loop, (uint64_t)(uintptr_t)t | UD_TASK, 0);
}

static bool uring_cancel_cb(coil_loop *loop, coil__io_cb *cb)
{
    return cancel_ud(loop, (uint64_t)(uintptr_t)cb | UD_CALLBACK, 0);
}

static void uring_cancel_all(coil_loop *loop) { (void)cancel_ud(loop, 0, IORING_ASYNC_CANCEL_ANY); }

/* ---- capabilities ---- */

static bool uring_supports(coil_loop *loop, int cap)
{
    if (cap != COIL__CAP_FUTEX_WAIT)
        return false;
    struct io_uring_probe *pr = io_uring_get_probe_ring(&loop->io.drv->ring);
    bool yes = pr && io_uring_opcode_supported(pr, OP_FUTEX_WAIT);
    if (pr)
        io_uring_free_probe(pr);
    return yes;
}

/* ---- waking a loop from another thread: IORING_OP_MSG_RING ----
 * The message posts a CQE straight into the target loop's ring, whose user_data names the
 * record (tag UD_WAKE), so the target's driver needs no special case and nothing has to stay in
 * flight there (run_until_complete's "nothing can wake me" test still works). No eventfd is
 * needed: MSG_RING works from any ring, a foreign thread's included. */

static coil__wake_addr uring_wake_addr(coil_loop *loop)
{
    coil__wake_addr a = { &coil__uring_ops, loop->io.drv->ring.ring_fd, NULL };
    return a;
}

/* A foreign thread's own small ring, only for MSG_RING; torn down when the thread exits. */
struct wake_ring {
    struct io_uring ring;
};
static pthread_key_t wake_key;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;

static void wake_ring_free(void *p)
{
    struct wake_ring *w = p;
    ring_unmapping();
    io_uring_queue_exit(&w->ring);
    free(w);
}

static void wake_key_init(void) { pthread_key_create(&wake_key, wake_ring_free); }

static struct wake_ring *wake_ring_here(void)
{
    pthread_once(&wake_once, wake_key_init);
    struct wake_ring *w = pthread_getspecific(wake_key);
    if (w)
        return w;
    w = malloc(sizeof *w);
    if (!w)
        return NULL;
    if (io_uring_queue_init(4, &w->ring, 0) != 0) {
        free(w);
        return NULL;
    }
    ring_mapped();
    pthread_setspecific(wake_key, w);
    return w;
}

static int uring_wake(coil_loop *from, coil__wake_addr to, coil__io_cb *rec)
{
    uint64_t ud = (uint64_t)(uintptr_t)rec | UD_WAKE;
    if (from && from->io.ops == &coil__uring_ops) {
        /* From a loop: ride along with its next submission (batched, no extra syscall). */
        struct io_uring_sqe *sqe = coil__uring_sqe(from);
        if (sqe) {
            /* msg_ring passes `len` through as the target's res */
            io_uring_prep_msg_ring(sqe, to.handle, COIL__WAKE_FROM_LOOP, ud, 0);
            io_uring_sqe_set_data64(sqe, UD_IGNORE);
            return COIL__WAKE_FROM_LOOP;
        }
    }
    struct wake_ring *w = wake_ring_here();
    struct io_uring_sqe *sqe = w ? io_uring_get_sqe(&w->ring) : NULL;
    if (!sqe)
        return -ENOMEM;
    io_uring_prep_msg_ring(sqe, to.handle, COIL__WAKE_FROM_THREAD, ud, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_submit(&w->ring);
    /* Only failures post a CQE here (the target ring gone or full: then it is not asleep). */
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&w->ring, &cqe) == 0)
        io_uring_cqe_seen(&w->ring, cqe);
    return COIL__WAKE_FROM_THREAD;
}

const coil__backend_ops coil__uring_ops = {
    .name = "io_uring",
    .exit = uring_exit,
    .poll = uring_poll,
    .pending = uring_pending,
    .alarm = uring_alarm,
    .submit_task = uring_submit_task,
    .submit_cb = uring_submit_cb,
    .try_now = NULL, /* a send rides in the next enter with the wait: trying it first adds a call */
    .cancel_task = uring_cancel_task,
    .cancel_cb = uring_cancel_cb,
    .cancel_all = uring_cancel_all,
    .supports = uring_supports,
    .file_add = uring_file_add,
    .file_remove = uring_file_remove,
    .bufring_shared = coil__uring_bufring_shared,
    .wake_addr = uring_wake_addr,
    .wake = uring_wake,
    .wake_drop = NULL,
};
