// A ring that fails must fail loudly, never spin: a hard io_uring_enter failure ends the run with
// the error and tells the loop's exception handler; transient results are retried; an operation
// that gets no SQE fails in its task instead of hanging. The faults come from a real seccomp
// filter (any build) or from fault injection (a -DCOIL_FAULTS=ON build, see core/faults.h).
#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <coil/coil.h>

#include "engine/faults.h"
#include "seccomp_refuse.h"
#include "watchdog.h"

namespace {

using clk = std::chrono::steady_clock;

double seconds_since(clk::time_point t0) { return std::chrono::duration<double>(clk::now() - t0).count(); }

// Selects faults for one test and clears them after it; skips where the build has none.
struct Faults {
    explicit Faults(const char *spec) : ok(coil__fault_set(spec) == 0) {}
    ~Faults() { coil__fault_set(nullptr); }
    bool ok;
};

#define REQUIRE_FAULTS(f)                                                                              \
    do {                                                                                               \
        if (!(f).ok)                                                                                   \
            GTEST_SKIP() << "built without -DCOIL_FAULTS=ON (tests/faults/check.sh runs this build)"; \
    } while (0)

struct Heard {
    int calls = 0;
    int code = 0;
    std::string message;
};

void remember(coil_loop *, const coil_exc_context *ctx, void *arg)
{
    auto *h = static_cast<Heard *>(arg);
    h->calls++;
    h->code = ctx->code;
    h->message = ctx->message ? ctx->message : "";
}

void *sleep_long(void *)
{
    coil_sleep(5.0);
    return (void *)1;
}

// Run sleep_long as a runner's main task with `h` as the loop's exception handler; returns what
// coil_runner_run returned.
int run_sleeper(Heard *h)
{
    coil_runner *r = nullptr;
    coil_runner_opts ro{};
    ro.no_sigint = true;
    if (coil_runner_new(&r, &ro) != 0)
        return -12345;
    coil_loop *loop = coil_runner_get_loop(r);
    coil_loop_set_exception_handler(loop, remember, h);
    int rc = coil_runner_run(r, sleep_long, nullptr, nullptr);
    coil_runner_close(r);
    return rc;
}

} // namespace

TEST(RingErrors, EnterRefusedEndsTheRunWithTheErrorInsteadOfSpinning)
{
    Faults f("enter_error:1+:EPERM");
    REQUIRE_FAULTS(f);
    Heard h;
    auto t0 = clk::now();
    EXPECT_EQ(run_sleeper(&h), -EPERM);
    EXPECT_LT(seconds_since(t0), 2.0) << "the run waited out its timer instead of failing";
    EXPECT_EQ(h.calls, 1) << "the exception handler hears of a broken ring once";
    EXPECT_EQ(h.code, -EPERM);
    EXPECT_NE(h.message.find("io_uring_enter"), std::string::npos) << h.message;
}

TEST(RingErrors, EnterFailingWithEbadfEndsRunForever)
{
    Faults f("enter_error:1+:EBADF");
    REQUIRE_FAULTS(f);
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    Heard h;
    coil_loop_set_exception_handler(loop, remember, &h);
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(loop, &t, sleep_long, nullptr, nullptr), 0);
    auto t0 = clk::now();
    coil_test::ThreadWatchdog w(loop, 3.0, "run_forever on a failing ring");
    EXPECT_EQ(coil_loop_run_forever(loop), -EBADF);
    w.ran();
    EXPECT_LT(seconds_since(t0), 2.0);
    EXPECT_EQ(h.code, -EBADF);
    coil_task_cancel(t, nullptr);
    coil_task_free(t);
    EXPECT_EQ(coil_loop_close(loop), 0);
    w.disarm();
}

TEST(RingErrors, TransientEnterResultsAreRetried)
{
    // Every other enter says "interrupted", "try again" or "busy": the run carries on and ends
    // normally once its timer is due.
    for (const char *spec : { "enter_error:%2:EINTR", "enter_error:%2:EAGAIN", "enter_error:%2:EBUSY" }) {
        Faults f(spec);
        REQUIRE_FAULTS(f);
        Heard h;
        coil_runner *r = nullptr;
        coil_runner_opts ro{};
        ro.no_sigint = true;
        ASSERT_EQ(coil_runner_new(&r, &ro), 0);
        coil_loop_set_exception_handler(coil_runner_get_loop(r), remember, &h);
        void *res = nullptr;
        EXPECT_EQ(coil_runner_run(
                      r, [](void *) -> void * { return coil_sleep(0.02) == 0 ? (void *)1 : nullptr; }, nullptr,
                      &res),
                  0)
            << spec;
        EXPECT_EQ(res, (void *)1) << spec;
        EXPECT_EQ(h.calls, 0) << spec;
        coil_runner_close(r);
    }
}

TEST(RingErrors, AnOperationThatGetsNoSqeFailsInItsTask)
{
    Faults f(nullptr);
    REQUIRE_FAULTS(f);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct Ctx {
        int fd;
        int rc = 1;
    } c{ sv[0] };
    auto t0 = clk::now();
    EXPECT_EQ(coil_run(
                  [](void *arg) -> void * {
                      auto *c = static_cast<Ctx *>(arg);
                      // The next SQE anyone asks for is refused: this recv's.
                      coil__fault_set("fail_sqe:1");
                      char buf[8];
                      size_t n = 0;
                      c->rc = coil_sock_recv(c->fd, buf, sizeof buf, 0, &n);
                      return nullptr;
                  },
                  &c, nullptr),
              0);
    EXPECT_EQ(c.rc, -EBUSY) << "the recv must fail, not wait for data that never comes";
    EXPECT_LT(seconds_since(t0), 2.0);
    close(sv[0]);
    close(sv[1]);
}

namespace {

// In a child process: refuse io_uring_enter with EPERM (io_uring_setup stays allowed, as in
// sandboxes that do this), then run a task that sleeps 5 s. Exit status: 0 if the run returned
// -EPERM within a second and used little CPU, else 1 (2: the filter could not be installed).
[[noreturn]] void child_under_seccomp()
{
    if (!coil_test::seccomp_refuse(coil_test::REFUSE_ENTER, EPERM))
        _exit(2);
    setenv("COIL_BACKEND", "io_uring", 1); // the ring's failure is what is tested, whatever the run's backend
    auto t0 = clk::now();
    int rc = coil_run(sleep_long, nullptr, nullptr);
    double took = seconds_since(t0);
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_stime.tv_sec +
                 ((double)ru.ru_utime.tv_usec + (double)ru.ru_stime.tv_usec) / 1e6;
    fprintf(stderr, "child: coil_run returned %d after %.3f s, %.3f s CPU\n", rc, took, cpu);
    _exit(rc == -EPERM && took < 1.0 && cpu < 1.0 ? 0 : 1);
}

} // namespace

TEST(RingErrors, SeccompRefusingIoUringEnterEndsTheRunWithEperm)
{
    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0)
        child_under_seccomp();
    int status = coil_test::wait_child(pid, 15, " (a spinning loop?)");
    ASSERT_NE(status, -1);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    if (WEXITSTATUS(status) == 2)
        GTEST_SKIP() << "could not install a seccomp filter here";
    EXPECT_EQ(WEXITSTATUS(status), 0) << "see the child's line above";
}
