// Timers on a loop that never blocks: tasks that only yield to each other run their next
// iterations inline, without the scheduler, and the clock is not read while the loop's alarm (one
// absolute timeout on the ring at the earliest deadline) guards the timers. Whatever the timers
// do meanwhile, each must fire on time and none may keep a finished loop waiting.
#include <gtest/gtest.h>

#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "coil_test.h"
#include "loop_test_util.h"

namespace {

using coil_test::mono_ns;

// Two tasks that yield to each other until *stop, counting their yields.
struct Yielders {
    bool stop = false;
    long yields = 0;
    coil_task *t[2] = { nullptr, nullptr };

    void start()
    {
        for (auto &task : t)
            ASSERT_EQ(coil_test::spawn(&task,
                                       [this]() -> void * {
                                           while (!stop) {
                                               yields++;
                                               if (coil_sleep(0) != 0)
                                                   break;
                                           }
                                           return nullptr;
                                       }),
                      0);
    }
    void finish()
    {
        stop = true;
        for (auto *task : t) {
            EXPECT_EQ(coil_task_await(task, nullptr), 0);
            coil_task_free(task);
        }
    }
};

// Sleep `seconds` in a task of its own; the returned flag holds the lateness in ns once it woke.
coil_task *sleeper(double seconds, std::atomic<int64_t> *late)
{
    coil_task *t = nullptr;
    uint64_t due = mono_ns() + (uint64_t)(seconds * 1e9);
    EXPECT_EQ(coil_test::spawn(&t,
                               [seconds, due, late]() -> void * {
                                   int r = coil_sleep(seconds);
                                   late->store((int64_t)(mono_ns() - due));
                                   return r ? coil_raise(r, "sleep") : nullptr;
                               }),
              0);
    return t;
}

TEST(BusyTimers, ASleepEndsOnTimeWhileTwoTasksOnlyYieldToEachOther)
{
    coil_test::run([]() -> void * {
        std::atomic<int64_t> late{ -1 };
        Yielders y;
        y.start();
        coil_task *s = sleeper(0.02, &late);
        EXPECT_EQ(coil_task_await(s, nullptr), 0);
        y.finish();
        coil_task_free(s);
        EXPECT_GE(late.load(), 0);
        EXPECT_LT(late.load(), (int64_t)(2e9 * coil_test::time_scale())) << "the sleep ended late";
        EXPECT_GT(y.yields, 100) << "the yielders did not run while the sleeper waited";
        return nullptr;
    });
}

TEST(BusyTimers, AnEarlierTimerArmedWhileTheLoopRunsInlineFiresBeforeTheLaterOne)
{
    coil_test::run([]() -> void * {
        std::atomic<int64_t> far_late{ -1 }, near_late{ -1 };
        coil_task *far = sleeper(100, &far_late); // the alarm is armed for this one first
        Yielders y;
        y.start();
        // Let the loop settle into its inline iterations under the far alarm, then arm an
        // earlier timer from inside one of them.
        for (int i = 0; i < 1000; i++)
            coil_sleep(0);
        coil_task *near = sleeper(0.02, &near_late);
        EXPECT_EQ(coil_task_await(near, nullptr), 0);
        EXPECT_GE(near_late.load(), 0);
        EXPECT_EQ(far_late.load(), -1);
        EXPECT_EQ(coil_task_cancel(far, nullptr), 1);
        EXPECT_EQ(coil_task_await(far, nullptr), -ECANCELED);
        y.finish();
        coil_task_free(near);
        coil_task_free(far);
        return nullptr;
    });
}

TEST(BusyTimers, TimersArmedAndFiredInABusyLoopAllFireInDeadlineOrder)
{
    coil_test::run([]() -> void * {
        Yielders y;
        y.start();
        constexpr int kN = 50;
        std::atomic<int64_t> late[kN];
        coil_task *ts[kN];
        // Deadlines 1..50 ms, armed in reverse so each new one is the earliest: every arm moves
        // the alarm.
        for (int i = kN - 1; i >= 0; i--) {
            late[i] = -1;
            ts[i] = sleeper(0.001 * (i + 1), &late[i]);
            coil_sleep(0);
        }
        for (int i = 0; i < kN; i++) {
            EXPECT_EQ(coil_task_await(ts[i], nullptr), 0);
            EXPECT_GE(late[i].load(), 0) << "timer " << i;
            coil_task_free(ts[i]);
        }
        y.finish();
        return nullptr;
    });
}

// The alarm stands for the timers and is not outside work: once the only timer is cancelled,
// run_until_complete must see that nothing can wake the loop instead of sleeping until the
// alarm's deadline.
using BusyTimersLoop = coil_test::LoopTest;

TEST_F(BusyTimersLoop, ACancelledTimersAlarmDoesNotKeepRunUntilCompleteWaiting)
{
    static std::atomic<int64_t> far_late{ -1 };
    struct Ctx {
        coil_future *never;
        coil_task *far;
    } c{ nullptr, nullptr };
    ASSERT_EQ(coil_loop_create_future(loop, &c.never), 0);
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t,
                  [](void *arg) -> void * {
                      auto *c = static_cast<Ctx *>(arg);
                      c->far = sleeper(100, &far_late);
                      Yielders y;
                      y.start();
                      for (int i = 0; i < 1000; i++)
                          coil_sleep(0); // the loop runs inline under the far alarm
                      y.finish();
                      coil_task_cancel(c->far, nullptr);
                      coil_task_await(c->far, nullptr);
                      int r = coil_future_await(c->never, nullptr);
                      return r ? coil_raise(r, "await failed") : nullptr;
                  },
                  &c, nullptr),
              0);
    // A watchdog on a thread: if the loop sleeps on the alarm, stop it and fail.
    coil_test::ThreadWatchdog w(loop, 10.0, "run_until_complete");
    uint64_t t0 = mono_ns();
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), COIL_ENOTHING);
    w.ran();
    EXPECT_FALSE(w.fired()) << "the loop slept on the cancelled timer's alarm";
    w.disarm();
    EXPECT_LT(mono_ns() - t0, (uint64_t)(5e9 * coil_test::time_scale()));
    EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), -ECANCELED);
    coil_task_free(t);
    coil_task_free(c.far);
    coil_future_free(c.never);
}

} // namespace
