/* coil core: signal handlers through a signalfd read on the loop's driver (see coil/signal.h). */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "engine/internal.h"

#define COIL_NSIG 65

typedef struct coil__signals {
    coil__io_cb rec;             /* the read's completion */
    coil__loop_closer closer;    /* the loop's close takes the read back and frees this */
    coil_loop *loop;
    int fd;
    bool reading;
    sigset_t handled;            /* in the signalfd's mask */
    sigset_t we_blocked;         /* blocked by us, to unblock on removal */
    struct {
        coil_callback_fn cb;
        void *arg;
    } h[COIL_NSIG];
    struct signalfd_siginfo buf[8];
} coil__signals;

static void arm(coil__signals *s);
static void signals_close(coil_loop *loop, coil__loop_closer *c);

static void on_read(coil__io_cb *rec, const coil__io_done *done)
{
    coil__signals *s = (coil__signals *)rec;
    s->reading = false;
    if (done->res > 0) {
        coil__kernel_wrote(s->buf, (size_t)done->res);
        size_t n = (size_t)done->res / sizeof s->buf[0];
        for (size_t i = 0; i < n; i++) {
            unsigned signo = s->buf[i].ssi_signo;
            if (signo < COIL_NSIG && s->h[signo].cb)
                coil_loop_call_soon(s->loop, s->h[signo].cb, s->h[signo].arg, NULL);
        }
    }
    if (!s->loop->closed)
        arm(s);
}

static bool any_handled(const coil__signals *s)
{
    for (int i = 1; i < COIL_NSIG; i++)
        if (s->h[i].cb)
            return true;
    return false;
}

static void arm(coil__signals *s)
{
    if (s->reading || !any_handled(s))
        return;
    coil__op op = { .code = COIL__OP_READ, .fd = s->fd, .buf = s->buf, .len = sizeof s->buf, .off = 0 };
    if (coil__backend_submit_cb(s->loop, &op, &s->rec) == 0)
        s->reading = true;
}

int coil_loop_add_signal_handler(coil_loop *loop, int signo, coil_callback_fn cb, void *arg)
{
    if (!loop || !cb || signo <= 0 || signo >= COIL_NSIG || signo == SIGKILL || signo == SIGSTOP)
        return -EINVAL;
    if (loop->closed)
        return COIL_ECLOSED;
    coil__signals *s = loop->signals;
    if (!s) {
        s = calloc(1, sizeof *s);
        if (!s)
            return -ENOMEM;
        s->rec.complete = on_read;
        s->closer.close = signals_close;
        s->loop = loop;
        s->fd = -1;
        sigemptyset(&s->handled);
        sigemptyset(&s->we_blocked);
        loop->signals = s;
        coil__loop_on_close(loop, &s->closer);
    }
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, signo);
    if (pthread_sigmask(SIG_BLOCK, &one, &old) != 0)
        return -EINVAL;
    if (!sigismember(&old, signo))
        sigaddset(&s->we_blocked, signo);
    sigset_t next = s->handled;
    sigaddset(&next, signo);
    int fd = signalfd(s->fd, &next, SFD_NONBLOCK | SFD_CLOEXEC);
    if (fd < 0) {
        int err = -errno;
        if (sigismember(&s->we_blocked, signo)) {
            sigdelset(&s->we_blocked, signo);
            pthread_sigmask(SIG_UNBLOCK, &one, NULL);
        }
        return err;
    }
    s->fd = fd;
    s->handled = next;
    s->h[signo].cb = cb;
    s->h[signo].arg = arg;
    arm(s);
    return 0;
}

static void forget(coil__signals *s, int signo)
{
    s->h[signo].cb = NULL;
    s->h[signo].arg = NULL;
    sigdelset(&s->handled, signo);
    if (s->fd >= 0)
        signalfd(s->fd, &s->handled, SFD_NONBLOCK | SFD_CLOEXEC);
    if (sigismember(&s->we_blocked, signo)) {
        sigset_t one;
        sigemptyset(&one);
        sigaddset(&one, signo);
        /* Drop an instance already pending, so unblocking does not deliver it behind our back. */
        struct timespec zero = { 0, 0 };
        while (sigtimedwait(&one, NULL, &zero) == signo) {
        }
        sigdelset(&s->we_blocked, signo);
        pthread_sigmask(SIG_UNBLOCK, &one, NULL);
    }
}

int coil_loop_remove_signal_handler(coil_loop *loop, int signo)
{
    if (!loop || signo <= 0 || signo >= COIL_NSIG || !loop->signals || !loop->signals->h[signo].cb)
        return 0;
    coil__signals *s = loop->signals;
    forget(s, signo);
    if (!any_handled(s) && s->reading) {
        /* Nothing left to wait for: take the read back so the loop does not count it as work. */
        coil__backend_cancel_cb(loop, &s->rec);
    }
    return 1;
}

/* Loop close, while the driver is up: forget every handler (so the read is not armed again),
 * take the read back and reap its completion, so the kernel holds nothing that points into s once it
 * is freed. The kernel cancels a read at once; the bound is for a driver that no longer answers,
 * and one that has failed hard (io.broken) is not waited on (the loop's own final wait for
 * operations in flight gives up on it likewise). */
static void signals_close(coil_loop *loop, coil__loop_closer *c)
{
    coil__signals *s = coil__container_of(c, coil__signals, closer);
    for (int i = 1; i < COIL_NSIG; i++)
        if (s->h[i].cb)
            forget(s, i);
    if (s->reading) {
        coil__backend_cancel_cb(loop, &s->rec);
        uint64_t deadline = coil__now_ns() + 1000000000u;
        for (uint64_t now = coil__now_ns(); s->reading && !loop->io.broken && now < deadline; now = coil__now_ns())
            coil__backend_poll(loop, true, deadline - now);
    }
    if (s->fd >= 0)
        close(s->fd);
    loop->signals = NULL;
    /* A read the driver never gave back may still write into s, or name it in a completion the
     * loop's final reaping runs: keeping its bytes is the only safe end for a driver that stopped
     * answering (s->fd is closed, so nothing is armed again). */
    if (!s->reading)
        free(s);
}
