/* coil core: subprocesses (coil/subprocess.h).
 *
 * Spawning is posix_spawn: glibc runs the child on a vfork-style clone and hands back the exec
 * error itself (the close-on-exec pipe trick, done inside libc), so a missing program is the
 * create call's error. Each standard stream the child gets is first duplicated in this process
 * to a close-on-exec fd above 2, then dup2'd into place in the child: that makes any mix of
 * given fds (even stdout=2, stderr=1) come out right, and nothing else survives the exec.
 *
 * Exit: a pidfd, polled (POLLIN) on the ring through a callback record in the process object
 * while anyone waits, then waitid(P_PIDFD) reaps exactly that child. There is no SIGCHLD
 * handler, so children spawned by other code in the process are never reaped here. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coil/subprocess.h"
#include "io/net_internal.h"

extern char **environ;

struct coil_subprocess {
    coil__io_cb poll_cb;        /* the pidfd poll's completion; first, so the record is the object */
    coil_loop *loop;
    pid_t pid;
    int pidfd;                  /* -1 once reaped */
    int returncode;
    bool exited, polling, freed;
    coil__wlist waiters;
    coil_stream *io[3];
};

static int pidfd_open_(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int pidfd_signal(int pidfd, int sig) { return (int)syscall(SYS_pidfd_send_signal, pidfd, sig, NULL, 0); }

static void destroy(coil_subprocess *p)
{
    if (p->pidfd >= 0)
        close(p->pidfd);
    free(p);
}

/* Reap the child if it has exited (or wait for it when `block`). True once it is reaped. */
static bool reap(coil_subprocess *p, bool block)
{
    if (p->exited)
        return true;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r;
    do
        r = waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | (block ? 0 : WNOHANG));
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        /* ECHILD: someone reaped it behind our back (SIGCHLD ignored, a waitpid(-1) elsewhere).
         * The status is lost; asyncio reports 255 then. */
        p->returncode = 255;
    } else if (si.si_pid == 0) {
        return false;
    } else {
        p->returncode = si.si_code == CLD_EXITED ? si.si_status : -si.si_status;
    }
    p->exited = true;
    close(p->pidfd);
    p->pidfd = -1;
    return true;
}

static void poll_done(coil__io_cb *cb, const coil__io_done *done);

static bool arm_poll(coil_subprocess *p)
{
    coil__op op = { .code = COIL__OP_POLL, .fd = p->pidfd, .arg = POLLIN };
    p->poll_cb.complete = poll_done;
    if (coil__backend_submit_cb(p->loop, &op, &p->poll_cb) != 0)
        return false;
    p->polling = true;
    return true;
}

static void poll_done(coil__io_cb *cb, const coil__io_done *done)
{
    coil_subprocess *p = (coil_subprocess *)cb;
    p->polling = false;
    if (!reap(p, false)) {
        if (done->res == -ECANCELED) {
            /* Only the loop's close cancels this poll. A freed child was sent SIGKILL, so the
             * blocking reap is short; one still owned waits for a later coil_subprocess_wait. */
            if (p->freed)
                reap(p, true);
        } else if (!arm_poll(p)) {
            coil__wlist_wake_all(&p->waiters, -EBUSY);
        }
    }
    if (p->exited)
        coil__wlist_wake_all(&p->waiters, 0);
    if (p->freed && !p->polling)
        destroy(p);
}

/* ---- spawning ---- */

/* A close-on-exec duplicate of fd above 2, so dup2 into 0..2 in the child never clobbers it. */
static int dup_high(int fd)
{
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    return d < 0 ? -errno : d;
}

static void close_all(int *fds, int n)
{
    for (int i = 0; i < n; i++)
        if (fds[i] >= 0) {
            close(fds[i]);
            fds[i] = -1;
        }
}

/* For stream i: set child[i] (the fd to dup2 onto i, or -1) and parent[i] (our PIPE end). */
static int prepare_stdio(int i, coil_stdio mode, int given, int *devnull, int *child, int *parent)
{
    switch (mode) {
    case COIL_STDIO_INHERIT:
    case COIL_STDIO_STDOUT:
        return 0;
    case COIL_STDIO_PIPE: {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
            return -errno;
        parent[i] = sv[0];
        child[i] = dup_high(sv[1]);
        close(sv[1]);
        return child[i] < 0 ? child[i] : 0;
    }
    case COIL_STDIO_DEVNULL:
        if (*devnull < 0) {
            *devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (*devnull < 0)
                return -errno;
        }
        child[i] = dup_high(*devnull);
        return child[i] < 0 ? child[i] : 0;
    case COIL_STDIO_FD:
        child[i] = dup_high(given);
        return child[i] < 0 ? child[i] : 0;
    }
    return -EINVAL;
}

static int check_opts(const coil_subprocess_opts *o)
{
    const coil_stdio m[3] = { o->stdin_mode, o->stdout_mode, o->stderr_mode };
    const int fd[3] = { o->stdin_fd, o->stdout_fd, o->stderr_fd };
    for (int i = 0; i < 3; i++) {
        if ((unsigned)m[i] > COIL_STDIO_STDOUT || (m[i] == COIL_STDIO_STDOUT && i != 2))
            return -EINVAL;
        if (m[i] == COIL_STDIO_FD && fd[i] < 0)
            return -EINVAL;
    }
    return 0;
}

static int spawn(const char *const *argv, const coil_subprocess_opts *o, const int *child, pid_t *pid)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    int rc = posix_spawn_file_actions_init(&fa);
    if (rc)
        return -rc;
    rc = posix_spawnattr_init(&attr);
    if (rc) {
        posix_spawn_file_actions_destroy(&fa);
        return -rc;
    }
    for (int i = 0; i < 3 && !rc; i++) {
        if (child[i] >= 0)
            rc = posix_spawn_file_actions_adddup2(&fa, child[i], i);
        else if (i == 2 && o->stderr_mode == COIL_STDIO_STDOUT)
            rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
    }
    if (!rc && o->cwd)
        rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
    if (!rc && !o->keep_fds)
        rc = posix_spawn_file_actions_addclosefrom_np(&fa, 3);
    /* The loop may block signals (a signalfd); a child must start with a clean mask, and with
     * SIGPIPE at its default even if this process ignores it (as Python's restore_signals). */
    sigset_t none, dfl;
    sigemptyset(&none);
    sigemptyset(&dfl);
    sigaddset(&dfl, SIGPIPE);
    sigaddset(&dfl, SIGXFSZ);
    short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
    if (o->start_new_session)
        flags |= POSIX_SPAWN_SETSID;
    if (!rc)
        rc = posix_spawnattr_setsigmask(&attr, &none);
    if (!rc)
        rc = posix_spawnattr_setsigdefault(&attr, &dfl);
    if (!rc)
        rc = posix_spawnattr_setflags(&attr, flags);
    if (!rc)
        rc = posix_spawnp(pid, argv[0], &fa, &attr, (char *const *)argv, o->env ? o->env : environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    return -rc;
}

/* A child we cannot hand out: kill it and reap it before returning the error. */
static void discard_child(pid_t pid)
{
    if (pid <= 0)
        return; /* never kill(0 or -1): that would signal the process group or everyone */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR) {
    }
}

int coil_create_subprocess_exec(const char *const *argv, const coil_subprocess_opts *opts, coil_subprocess **out)
{
    if (!argv || !argv[0] || !out)
        return -EINVAL;
    coil_loop *loop = coil_get_event_loop();
    if (!loop)
        return -EINVAL;
    const coil_subprocess_opts o = opts ? *opts : (coil_subprocess_opts){ 0 };
    int err = check_opts(&o);
    if (err)
        return err;
    const coil_stdio mode[3] = { o.stdin_mode, o.stdout_mode, o.stderr_mode };
    const int given[3] = { o.stdin_fd, o.stdout_fd, o.stderr_fd };
    int child[3] = { -1, -1, -1 }, parent[3] = { -1, -1, -1 }, devnull = -1;
    for (int i = 0; i < 3 && !err; i++)
        err = prepare_stdio(i, mode[i], given[i], &devnull, child, parent);
    pid_t pid = -1;
    if (!err)
        err = spawn(argv, &o, child, &pid);
    close_all(child, 3);
    close_all(&devnull, 1);
    if (err) {
        close_all(parent, 3);
        return err;
    }
    coil_subprocess *p = calloc(1, sizeof *p);
    int pidfd = pidfd_open_(pid);
    if (!p || pidfd < 0) {
        err = pidfd < 0 ? -errno : -ENOMEM;
        if (pidfd >= 0)
            close(pidfd);
        free(p);
        close_all(parent, 3);
        discard_child(pid);
        return err;
    }
    p->loop = loop;
    p->pid = pid;
    p->pidfd = pidfd;
    for (int i = 0; i < 3; i++) {
        if (parent[i] < 0)
            continue;
        int fd = parent[i];
        parent[i] = -1;
        err = coil__stream_new(loop, fd, o.stream, &p->io[i]); /* owns fd even on error */
        if (err) {
            close_all(parent, 3);
            coil_subprocess_free(p);
            return err;
        }
    }
    *out = p;
    return 0;
}

int coil_create_subprocess_shell(const char *cmd, const coil_subprocess_opts *opts, coil_subprocess **out)
{
    if (!cmd)
        return -EINVAL;
    const char *argv[] = { "/bin/sh", "-c", cmd, NULL };
    return coil_create_subprocess_exec(argv, opts, out);
}

/* ---- the process object ---- */

pid_t coil_subprocess_pid(const coil_subprocess *p) { return p ? p->pid : -1; }
coil_stream *coil_subprocess_stdin(coil_subprocess *p) { return p ? p->io[0] : NULL; }
coil_stream *coil_subprocess_stdout(coil_subprocess *p) { return p ? p->io[1] : NULL; }
coil_stream *coil_subprocess_stderr(coil_subprocess *p) { return p ? p->io[2] : NULL; }

/* The exit status is kept in the object, so a cancel landing after the wake-up loses nothing. */
static const coil__wait_ops exit_wait = { "subprocess wait", coil__wlist_wait_cancel, true, NULL };

int coil_subprocess_wait(coil_subprocess *p, int *returncode)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!p)
        return -EINVAL;
    int c = coil__task_check_cancel(t);
    if (c)
        return c;
    if (!reap(p, false)) {
        if (!p->polling && !arm_poll(p))
            return -EBUSY;
        int r = coil__wlist_wait(t, &p->waiters, &exit_wait, false);
        if (r)
            return r;
    }
    if (returncode)
        *returncode = p->returncode;
    return 0;
}

int coil_subprocess_returncode(coil_subprocess *p, int *returncode)
{
    if (!p)
        return -EINVAL;
    if (!reap(p, false))
        return COIL_EINVALSTATE;
    if (returncode)
        *returncode = p->returncode;
    return 0;
}

int coil_subprocess_send_signal(coil_subprocess *p, int sig)
{
    if (!p)
        return -EINVAL;
    /* The kernel delivers a signal to a zombie without complaint (pidfd_send_signal too), so
     * reap first: a child that has exited is gone (asyncio polls before signalling as well).
     * The status stays in the object for a later wait. */
    if (reap(p, false))
        return -ESRCH;
    return pidfd_signal(p->pidfd, sig) < 0 ? -errno : 0;
}

int coil_subprocess_terminate(coil_subprocess *p) { return coil_subprocess_send_signal(p, SIGTERM); }
int coil_subprocess_kill(coil_subprocess *p) { return coil_subprocess_send_signal(p, SIGKILL); }

void coil_subprocess_free(coil_subprocess *p)
{
    if (!p || p->freed)
        return;
    for (int i = 0; i < 3; i++) {
        coil_stream_free(p->io[i]);
        p->io[i] = NULL;
    }
    coil__wlist_wake_all(&p->waiters, COIL_ECLOSED);
    if (!reap(p, false)) {
        pidfd_signal(p->pidfd, SIGKILL);
        p->freed = true;
        if (!p->polling && !arm_poll(p))
            reap(p, true);
        if (p->polling)
            return; /* poll_done reaps and destroys */
    }
    if (p->polling) {
        p->freed = true;
        return; /* the poll still names this object; its completion destroys it */
    }
    destroy(p);
}
