// Runner and coil_run (asyncio.Runner / asyncio.run), including SIGINT handling.
#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>

#include "coil_test.h"

namespace {

coil_runner *new_runner(bool sigint = false)
{
    coil_runner *r = nullptr;
    coil_runner_opts o{};
    o.no_sigint = !sigint;
    EXPECT_EQ(coil_runner_new(&r, &o), 0);
    return r;
}

void *return_arg(void *arg) { return arg; }

TEST(Runner, GetLoopCreatesTheLoopLazilyAndReturnsTheSameOneEachTime)
{
    coil_runner *r = new_runner();
    ASSERT_NE(r, nullptr);
    coil_loop *a = coil_runner_get_loop(r);
    ASSERT_NE(a, nullptr);
    EXPECT_EQ(coil_runner_get_loop(r), a);
    coil_loop *seen = nullptr;
    void *res = nullptr;
    ASSERT_EQ(coil_runner_run(
                  r, [](void *p) -> void * {
                      *static_cast<coil_loop **>(p) = coil_get_running_loop();
                      return nullptr;
                  },
                  &seen, &res),
              0);
    EXPECT_EQ(seen, a);
    EXPECT_EQ(coil_runner_get_loop(r), a);
    coil_runner_close(r);
}

TEST(Runner, RunCreatesTheLoopOnFirstUseWhenGetLoopWasNeverCalled)
{
    coil_runner *r = new_runner();
    coil_loop *seen = nullptr;
    ASSERT_EQ(coil_runner_run(
                  r, [](void *p) -> void * {
                      *static_cast<coil_loop **>(p) = coil_get_running_loop();
                      return nullptr;
                  },
                  &seen, nullptr),
              0);
    ASSERT_NE(seen, nullptr);
    EXPECT_EQ(coil_runner_get_loop(r), seen);
    coil_runner_close(r);
}

TEST(Runner, SeveralRunsShareOneLoopAndPassResults)
{
    coil_runner *r = new_runner();
    coil_loop *loop = coil_runner_get_loop(r);
    for (intptr_t i = 1; i <= 5; i++) {
        void *res = nullptr;
        ASSERT_EQ(coil_runner_run(r, return_arg, (void *)i, &res), 0);
        EXPECT_EQ((intptr_t)res, i);
        EXPECT_EQ(coil_runner_get_loop(r), loop);
        EXPECT_FALSE(coil_loop_is_running(loop));
    }
    // A task left behind by one run keeps going in the next.
    static int counter;
    counter = 0;
    ASSERT_EQ(coil_runner_run(
                  r, [](void *) -> void * {
                      coil_test::spawn(nullptr, [] {
                          for (int i = 0; i < 3; i++) {
                              counter++;
                              if (coil_sleep(0) != 0)
                                  break;
                          }
                          return nullptr;
                      });
                      return nullptr;
                  },
                  nullptr, nullptr),
              0);
    ASSERT_EQ(coil_runner_run(
                  r, [](void *) -> void * {
                      for (int i = 0; i < 100 && counter < 3; i++)
                          coil_sleep(0);
                      return nullptr;
                  },
                  nullptr, nullptr),
              0);
    EXPECT_EQ(counter, 3);
    coil_runner_close(r);
}

TEST(Runner, RunReturnsTheMainTasksErrorCode)
{
    coil_runner *r = new_runner();
    void *res = (void *)1;
    EXPECT_EQ(coil_runner_run(
                  r, [](void *) -> void * { return coil_raise(-ENOENT, "no such thing"); }, nullptr, &res),
              -ENOENT);
    EXPECT_EQ(res, (void *)1);
    EXPECT_EQ(coil_runner_run(
                  r, [](void *) -> void * { return coil_raise(-ECANCELED, "gave up"); }, nullptr, nullptr),
              -ECANCELED);
    coil_runner_close(r);
}

TEST(Runner, RunWithNullFunctionReturnsEinval)
{
    coil_runner *r = new_runner();
    EXPECT_EQ(coil_runner_run(r, nullptr, nullptr, nullptr), -EINVAL);
    EXPECT_EQ(coil_runner_run(nullptr, return_arg, nullptr, nullptr), -EINVAL);
    EXPECT_EQ(coil_runner_new(nullptr, nullptr), -EINVAL);
    coil_runner_close(r);
    coil_runner_close(nullptr);
}

struct Background {
    int sleep_rc = 1;
    int cleanup_rc = 1;
    bool cleanup_done = false;
};

TEST(Runner, CloseCancelsPendingTasksAndWaitsForTheirCleanup)
{
    static Background bg[3];
    for (auto &b : bg)
        b = Background{};
    coil_runner *r = new_runner();
    ASSERT_EQ(coil_runner_run(
                  r, [](void *) -> void * {
                      for (auto &b : bg) {
                          Background *p = &b;
                          coil_test::spawn(nullptr, [p] {
                              p->sleep_rc = coil_sleep(3600);
                              // Cleanup that itself awaits: possible only if close keeps the
                              // loop running until the task is done.
                              p->cleanup_rc = coil_sleep(0);
                              p->cleanup_done = true;
                              return coil_raise(-ECANCELED, "cancelled by close");
                          });
                      }
                      coil_sleep(0); // let them start
                      return nullptr;
                  },
                  nullptr, nullptr),
              0);
    for (auto &b : bg)
        EXPECT_EQ(b.sleep_rc, 1) << "still sleeping after the run";
    coil_runner_close(r);
    for (auto &b : bg) {
        EXPECT_EQ(b.sleep_rc, -ECANCELED);
        EXPECT_EQ(b.cleanup_rc, 0);
        EXPECT_TRUE(b.cleanup_done);
    }
}

TEST(Runner, CloseRunsDoneCallbacksOfTasksThatFinishedAsTheLastRunEnded)
{
    // The main task starts a task and returns at once: that task finishes in the same iteration
    // that stops the loop, so its done callback is still queued when run() returns. close must
    // run it (asyncio's shutdown steps run the loop), not drop it.
    static bool called;
    called = false;
    coil_runner *r = new_runner();
    ASSERT_EQ(coil_runner_run(
                  r, [](void *) -> void * {
                      coil_task *t = nullptr;
                      if (coil_create_task(&t, return_arg, nullptr, nullptr) != 0)
                          return coil_raise(-EIO, "create");
                      coil_task_add_done_callback(t, [](coil_future *, void *) { called = true; }, nullptr);
                      coil_task_free(t);
                      return nullptr;
                  },
                  nullptr, nullptr),
              0);
    coil_runner_close(r);
    EXPECT_TRUE(called);
}

TEST(Runner, CoilRunRunsTheFunctionAndReturnsItsResult)
{
    void *res = nullptr;
    EXPECT_EQ(coil_run(return_arg, (void *)0x1234, &res), 0);
    EXPECT_EQ(res, (void *)0x1234);
    EXPECT_EQ(coil_run([](void *) -> void * { return coil_raise(-EPIPE, "broken"); }, nullptr, nullptr), -EPIPE);
    EXPECT_EQ(coil_get_running_loop(), nullptr);
    EXPECT_EQ(coil_get_event_loop(), nullptr);
}

TEST(Runner, RunFromInsideARunningLoopReturnsErunning)
{
    int inner_rc = 0, coil_run_rc = 0;
    ASSERT_EQ(coil_test::run([&] {
                  coil_runner *r = new_runner();
                  inner_rc = coil_runner_run(r, return_arg, nullptr, nullptr);
                  coil_runner_close(r);
                  coil_run_rc = coil_run(return_arg, nullptr, nullptr);
                  return nullptr;
              }),
              0);
    EXPECT_EQ(inner_rc, COIL_ERUNNING);
    EXPECT_EQ(coil_run_rc, COIL_ERUNNING);
}

TEST(Runner, RunWhoseMainTaskWaitsForeverReturnsEnothingInsteadOfHanging)
{
    coil_runner *r = new_runner();
    EXPECT_EQ(coil_runner_run(
                  r, [](void *) -> void * {
                      coil_future *f = nullptr;
                      if (coil_future_new(&f) != 0)
                          return nullptr;
                      int rc = coil_future_await(f, nullptr);
                      coil_future_free(f);
                      return coil_raise(rc ? rc : -EIO, "await returned");
                  },
                  nullptr, nullptr),
              COIL_ENOTHING);
    coil_runner_close(r);
}

TEST(Runner, StopInsideRunSaysTheLoopWasStoppedNotThatNothingWasLeft)
{
    // asyncio.Runner.run: RuntimeError('Event loop stopped before Future completed.').
    coil_runner *r = new_runner();
    EXPECT_EQ(coil_runner_run(
                  r, [](void *) -> void * {
                      coil_loop_stop(coil_get_running_loop());
                      int rc = coil_sleep(30);
                      return coil_raise(rc ? rc : -EIO, "sleep returned");
                  },
                  nullptr, nullptr),
              COIL_ESTOPPED);
    coil_runner_close(r);
    EXPECT_STREQ(coil_strerror(COIL_ESTOPPED), "the loop was stopped before the awaited future completed");
}

// ---- SIGINT ----

struct SigState {
    struct sigaction act;
    sigset_t mask;
};

SigState sig_state()
{
    SigState s;
    memset(&s, 0, sizeof s);
    sigaction(SIGINT, nullptr, &s.act);
    pthread_sigmask(SIG_BLOCK, nullptr, &s.mask);
    return s;
}

void expect_same(const SigState &a, const SigState &b)
{
    EXPECT_EQ((void *)a.act.sa_handler, (void *)b.act.sa_handler);
    EXPECT_EQ(a.act.sa_flags, b.act.sa_flags);
    for (int s = 1; s < NSIG; s++)
        EXPECT_EQ(sigismember(&a.mask, s), sigismember(&b.mask, s)) << "signal " << s << " mask changed";
}

struct MainSaw {
    int sleep_rc = 1;
};

TEST(RunnerSigint, SigintCancelsTheMainTaskAndRunReturnsEintr)
{
    SigState before = sig_state();
    coil_runner *r = new_runner(true);
    static MainSaw saw;
    saw = MainSaw{};
    coil_loop *loop = coil_runner_get_loop(r);
    ASSERT_EQ(coil_loop_call_later(
                  loop, 0.01,
                  [](void *) {
                      raise(SIGINT);
                      return 0;
                  },
                  nullptr, nullptr),
              0);
    int rc = coil_runner_run(
        r, [](void *) -> void * {
            saw.sleep_rc = coil_sleep(10);
            return coil_raise(saw.sleep_rc ? saw.sleep_rc : -EIO, "woke up");
        },
        nullptr, nullptr);
    EXPECT_EQ(saw.sleep_rc, -ECANCELED);
    EXPECT_EQ(rc, -EINTR);
    expect_same(before, sig_state());
    coil_runner_close(r);
    expect_same(before, sig_state());
}

TEST(RunnerSigint, SigintRaisedByAnotherTaskCancelsTheMainTask)
{
    SigState before = sig_state();
    coil_runner *r = new_runner(true);
    static MainSaw saw;
    saw = MainSaw{};
    int rc = coil_runner_run(
        r, [](void *) -> void * {
            coil_test::spawn(nullptr, [] {
                raise(SIGINT);
                return nullptr;
            });
            saw.sleep_rc = coil_sleep(10);
            return coil_raise(saw.sleep_rc ? saw.sleep_rc : -EIO, "woke up");
        },
        nullptr, nullptr);
    EXPECT_EQ(saw.sleep_rc, -ECANCELED);
    EXPECT_EQ(rc, -EINTR);
    expect_same(before, sig_state());
    coil_runner_close(r);
}

TEST(RunnerSigint, RunWithSigintLeavesAHandlerAndMaskOfTheCallerUntouched)
{
    // A caller with its own SIGINT handler and SIGINT blocked gets both back as they were.
    struct sigaction mine{}, saved{};
    mine.sa_handler = [](int) {};
    sigemptyset(&mine.sa_mask);
    mine.sa_flags = SA_RESTART;
    ASSERT_EQ(sigaction(SIGINT, &mine, &saved), 0);
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, SIGINT);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &one, &old), 0);
    SigState before = sig_state();

    coil_runner *r = new_runner(true);
    EXPECT_EQ(coil_runner_run(r, return_arg, nullptr, nullptr), 0);
    expect_same(before, sig_state());
    coil_runner_close(r);
    expect_same(before, sig_state());

    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    sigaction(SIGINT, &saved, nullptr);
}

void *swallow_first_sigint(void *)
{
    // The first SIGINT cancels this sleep; ignore it and keep sleeping. The second SIGINT must
    // then kill the process with SIGINT's previous (default) disposition.
    raise(SIGINT);
    int rc = coil_sleep(5);
    if (rc != -ECANCELED)
        _exit(3);
    coil_task_uncancel(coil_current_task());
    raise(SIGINT);
    coil_sleep(5);
    _exit(4); // not killed: the test fails on the exit code
}

TEST(RunnerSigintDeathTest, SecondSigintWhileTheFirstIsIgnoredReraisesWithThePreviousDisposition)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            signal(SIGINT, SIG_DFL);
            coil_runner *r = nullptr;
            coil_runner_opts o{};
            if (coil_runner_new(&r, &o) != 0)
                _exit(2);
            coil_runner_run(r, swallow_first_sigint, nullptr, nullptr);
            _exit(5);
        },
        ::testing::KilledBySignal(SIGINT), "");
}

} // namespace
