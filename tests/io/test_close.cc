// One close rule for coil_close, coil_file_close and coil_sock_close: called from a task, when the
// call returns the fd is closed, whatever it returns. With no room in the driver the close is
// done synchronously; a cancel pending at the call or arriving during the close never leaves the
// fd open, and it is delivered at the task's next await.
#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coil_test.h"

namespace {

enum Which { CLOSE, FILE_CLOSE, SOCK_CLOSE };
const char *const names[] = { "coil_close", "coil_file_close", "coil_sock_close" };

int close_with(Which w, int fd)
{
    switch (w) {
    case CLOSE:
        return coil_close(fd);
    case FILE_CLOSE:
        return coil_file_close(fd);
    default:
        return coil_sock_close(fd);
    }
}

// An fd of the kind each close is for: a pipe end, a regular file, a socket.
int open_for(Which w)
{
    if (w == SOCK_CLOSE)
        return socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (w == FILE_CLOSE)
        return open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    close(p[0]);
    return p[1];
}

bool is_closed(int fd) { return fcntl(fd, F_GETFD) == -1 && errno == EBADF; }

// ---- (a) no room in the driver ----
// The child refuses io_uring_enter (io_uring_setup stays allowed, as in sandboxes that do this),
// so once its small submission queue is full nothing can empty it: every further operation finds
// no room. Readers of a pipe fill the queue, then the close under test runs in the same
// iteration (the loop's run ends at that iteration's failed enter).

struct Child {
    Which which;
    int pipe_r = -1;
    int fd = -1;
    int busy = 0;   // readers that found no room: the queue was full
    int rc = 1;     // what the close returned
    bool closed = false;
};

void *reader(void *arg)
{
    auto *c = static_cast<Child *>(arg);
    char b;
    if (coil_read(c->pipe_r, &b, 1, nullptr) == -EBUSY)
        c->busy++;
    return nullptr;
}

void *closer(void *arg)
{
    auto *c = static_cast<Child *>(arg);
    c->rc = close_with(c->which, c->fd);
    c->closed = is_closed(c->fd);
    return nullptr;
}

void ignore_report(coil_loop *, const coil_exc_context *, void *) {}

// Exit status: 0 = the fd was closed; 1 = it was left open; 3 = the queue never filled (the
// test proved nothing); 2 = the filter could not be installed.
[[noreturn]] void child_with_full_queue(Which which)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_enter, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = { (unsigned short)(sizeof prog / sizeof prog[0]), prog };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) != 0)
        _exit(2);
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        _exit(1);
    Child c;
    c.which = which;
    c.pipe_r = p[0];
    c.fd = open_for(which);
    if (c.fd < 0)
        _exit(1);
    coil_loop_opts lo{};
    lo.ring_entries = 4;
    lo.backend = COIL_BACKEND_IO_URING; // a full io_uring queue is the case under test
    coil_loop *loop = nullptr;
    if (coil_new_event_loop(&loop, &lo) != 0)
        _exit(1);
    coil_loop_set_exception_handler(loop, ignore_report, nullptr);
    // All in the loop's first iteration, in this order: more readers than the queue holds, then
    // the close.
    for (int i = 0; i < 16; i++)
        if (coil_loop_create_task(loop, nullptr, reader, &c, nullptr) != 0)
            _exit(1);
    if (coil_loop_create_task(loop, nullptr, closer, &c, nullptr) != 0)
        _exit(1);
    coil_loop_run_forever(loop); // ends with -EPERM at the first enter
    fprintf(stderr, "child: %s returned %d, fd %s, %d readers found no room\n", names[which], c.rc,
            c.closed ? "closed" : "OPEN", c.busy);
    _exit(c.busy == 0 ? 3 : c.closed ? 0 : 1);
}

void expect_closed_with_full_queue(Which which)
{
    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
        child_with_full_queue(which);
    int status = coil_test::wait_child(pid, 15, "");
    ASSERT_NE(status, -1);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    if (WEXITSTATUS(status) == 2)
        GTEST_SKIP() << "could not install a seccomp filter here";
    EXPECT_NE(WEXITSTATUS(status), 3) << "the submission queue never filled: the test proved nothing";
    EXPECT_EQ(WEXITSTATUS(status), 0) << names[which] << " left the fd open (see the child's line above)";
}

// ---- (b) cancelled while closing ----

struct Victim {
    Which which;
    int fd;
    int rc = 1;
    bool closed = false;
    int next_await = 0;
};

void *victim_body(void *arg)
{
    auto *v = static_cast<Victim *>(arg);
    v->rc = close_with(v->which, v->fd);
    v->closed = is_closed(v->fd);
    v->next_await = coil_sleep(0);
    return nullptr;
}

// A task closing fd is cancelled while it waits for the close: the close completes (the fd is
// gone) and the cancel comes at its next await.
void expect_cancel_during_close_closes(Which which)
{
    Victim v{ which, open_for(which) };
    ASSERT_GE(v.fd, 0);
    ASSERT_EQ(coil_test::run([&]() -> void * {
                  coil_task *t = nullptr;
                  EXPECT_EQ(coil_create_task(&t, victim_body, &v, nullptr), 0);
                  // Queued behind the victim: it runs once the victim waits in its close.
                  coil_task *c = nullptr;
                  EXPECT_EQ(coil_create_task(
                                &c, [](void *arg) -> void * { return (void *)(intptr_t)coil_task_cancel((coil_task *)arg, nullptr); },
                                t, nullptr),
                            0);
                  void *cancelled = nullptr;
                  EXPECT_EQ(coil_task_await(c, &cancelled), 0);
                  EXPECT_EQ(cancelled, (void *)1) << "the cancel must reach the victim while it is still pending";
                  EXPECT_EQ(coil_task_await(t, nullptr), 0); // its body took the cancel and returned
                  coil_task_free(c);
                  coil_task_free(t);
                  return nullptr;
              }),
              0);
    EXPECT_TRUE(v.closed) << names[which] << " left the fd open";
    EXPECT_EQ(v.rc, 0) << names[which] << " returns the close's own result";
    EXPECT_EQ(v.next_await, -ECANCELED) << "the cancel is delivered at the next await";
}

// The same with the cancel already pending when the close is called.
void expect_pending_cancel_closes(Which which)
{
    int fd = open_for(which);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(coil_test::run([&]() -> void * {
                  coil_task *self = coil_current_task();
                  EXPECT_EQ(coil_task_cancel(self, nullptr), 1);
                  EXPECT_EQ(close_with(which, fd), 0) << names[which];
                  EXPECT_TRUE(is_closed(fd)) << names[which] << " left the fd open";
                  EXPECT_EQ(coil_sleep(0), -ECANCELED) << "the cancel is delivered at the next await";
                  coil_task_uncancel(self);
                  return nullptr;
              }),
              0);
}

} // namespace

TEST(Close, CoilCloseClosesTheFdEvenWithNoRoomInTheDriver) { expect_closed_with_full_queue(CLOSE); }
TEST(Close, CoilFileCloseClosesTheFdEvenWithNoRoomInTheDriver) { expect_closed_with_full_queue(FILE_CLOSE); }
TEST(Close, CoilSockCloseClosesTheFdEvenWithNoRoomInTheDriver) { expect_closed_with_full_queue(SOCK_CLOSE); }

TEST(Close, CoilCloseCancelledWhileClosingClosesTheFdAndTheCancelComesNext)
{
    expect_cancel_during_close_closes(CLOSE);
}
TEST(Close, CoilFileCloseCancelledWhileClosingClosesTheFdAndTheCancelComesNext)
{
    expect_cancel_during_close_closes(FILE_CLOSE);
}
TEST(Close, CoilSockCloseCancelledWhileClosingClosesTheFdAndTheCancelComesNext)
{
    expect_cancel_during_close_closes(SOCK_CLOSE);
}

TEST(Close, CoilCloseWithACancelPendingClosesTheFdAndTheCancelComesNext) { expect_pending_cancel_closes(CLOSE); }
TEST(Close, CoilFileCloseWithACancelPendingClosesTheFdAndTheCancelComesNext)
{
    expect_pending_cancel_closes(FILE_CLOSE);
}
TEST(Close, CoilSockCloseWithACancelPendingClosesTheFdAndTheCancelComesNext)
{
    expect_pending_cancel_closes(SOCK_CLOSE);
}
