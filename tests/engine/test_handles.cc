// call_later / call_at and their cancellable handles.
#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <vector>

#include "loop_test_util.h"

namespace {

using coil_test::LoopTest;

struct Fired {
    int id;
    uint64_t at_ns;
};

TEST_F(LoopTest, TimersFireInDeadlineOrderNotSchedulingOrder)
{
    std::vector<int> order;
    const double delays[] = {0.030, 0.010, 0.020, 0.005, 0.025};
    for (int i = 0; i < 5; i++)
        ASSERT_EQ(later(delays[i],
                        [&order, i] {
                            order.push_back(i);
                            return 0;
                        }),
                  0);
    ASSERT_EQ(later(0.040,
                    [this] {
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(order, (std::vector<int>{3, 1, 2, 4, 0}));
}

TEST_F(LoopTest, TimersWithEqualDeadlinesFireInSchedulingOrder)
{
    std::vector<int> order;
    double when = coil_loop_time(loop) + 0.005;
    for (int i = 0; i < 50; i++)
        ASSERT_EQ(at(when,
                     [&order, i] {
                         order.push_back(i);
                         return 0;
                     }),
                  0);
    ASSERT_EQ(at(when + 0.001,
                 [this] {
                     coil_loop_stop(loop);
                     return 0;
                 }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    ASSERT_EQ(order.size(), 50u);
    for (int i = 0; i < 50; i++)
        EXPECT_EQ(order[i], i);
}

TEST_F(LoopTest, TimerNeverFiresBeforeItsDeadline)
{
    std::vector<Fired> fired;
    std::vector<double> deadlines;
    double base = coil_loop_time(loop);
    for (int i = 0; i < 20; i++) {
        // Odd fractions of a millisecond, so rounding to the ring's timeout is exercised.
        double when = base + 0.0003 + 0.00037 * i;
        deadlines.push_back(when);
        ASSERT_EQ(at(when,
                     [this, &fired, i] {
                         fired.push_back({i, coil_loop_time_ns(loop)});
                         return 0;
                     }),
                  0);
    }
    for (int i = 0; i < 20; i++) {
        double delay = 0.0002 + 0.00041 * i;
        uint64_t start = coil_loop_time_ns(loop);
        deadlines.push_back((double)start / 1e9 + delay);
        ASSERT_EQ(later(delay,
                        [this, &fired, i] {
                            fired.push_back({20 + i, coil_loop_time_ns(loop)});
                            return 0;
                        }),
                  0);
    }
    ASSERT_EQ(later(0.02,
                    [this] {
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    ASSERT_EQ(fired.size(), 40u);
    for (const Fired &f : fired)
        EXPECT_GE((double)f.at_ns, deadlines[f.id] * 1e9 - 1.0) << "timer " << f.id << " fired early";
}

TEST_F(LoopTest, CallLaterWithZeroOrNegativeDelayRunsAtOnceLikeCallSoon)
{
    std::vector<int> order;
    ASSERT_EQ(later(5.0,
                    [&order] {
                        order.push_back(99);
                        return 0;
                    }),
              0);
    ASSERT_EQ(later(-3.0,
                    [&order] {
                        order.push_back(1);
                        return 0;
                    }),
              0);
    ASSERT_EQ(later(0.0,
                    [&order] {
                        order.push_back(2);
                        return 0;
                    }),
              0);
    ASSERT_EQ(at(-1.0,
                 [&order] {
                     order.push_back(3);
                     return 0;
                 }),
              0);
    double t0 = coil_loop_time(loop);
    double ran_at = 0;
    ASSERT_EQ(later(-1.0,
                    [this, &ran_at] {
                        ran_at = coil_loop_time(loop);
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    // Already due, so none waits for the 5 s timer. call_later(<= 0) means "now" (scheduling
    // order among themselves); call_at(-1) is a deadline in the past, the earliest of all.
    EXPECT_EQ(order, (std::vector<int>{3, 1, 2}));
    EXPECT_LT(ran_at - t0, 1.0);
}

TEST_F(LoopTest, CallLaterAndCallAtWithNanReturnEinval)
{
    coil_handle h{};
    EXPECT_EQ(coil_loop_call_later(loop, NAN, coil_test::call_callback, nullptr, &h), -EINVAL);
    EXPECT_EQ(coil_loop_call_at(loop, NAN, coil_test::call_callback, nullptr, &h), -EINVAL);
    EXPECT_EQ(coil_loop_call_later(loop, 1.0, nullptr, nullptr, &h), -EINVAL);
    EXPECT_EQ(coil_loop_call_at(loop, 1.0, nullptr, nullptr, &h), -EINVAL);
}

TEST_F(LoopTest, HandleCancelReturnsOneThenZeroAndTheCallbackNeverRuns)
{
    int ran_timer = 0, ran_soon = 0;
    coil_handle ht, hs;
    ASSERT_EQ(later(0.001,
                    [&ran_timer] {
                        ran_timer++;
                        return 0;
                    },
                    &ht),
              0);
    ASSERT_EQ(soon(
                  [&ran_soon] {
                      ran_soon++;
                      return 0;
                  },
                  &hs),
              0);
    EXPECT_FALSE(coil_handle_cancelled(&ht));
    EXPECT_FALSE(coil_handle_cancelled(&hs));
    EXPECT_EQ(coil_handle_cancel(&ht), 1);
    EXPECT_EQ(coil_handle_cancel(&ht), 0);
    EXPECT_EQ(coil_handle_cancel(&hs), 1);
    EXPECT_EQ(coil_handle_cancel(&hs), 0);
    EXPECT_TRUE(coil_handle_cancelled(&ht));
    EXPECT_TRUE(coil_handle_cancelled(&hs));
    ASSERT_EQ(later(0.01,
                    [this] {
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(ran_timer, 0);
    EXPECT_EQ(ran_soon, 0);
    EXPECT_TRUE(coil_handle_cancelled(&ht));
}

TEST_F(LoopTest, CancelFromInsideItsOwnRunningCallbackReturnsZero)
{
    // loop.h: 1 only if the callback was pending. Running, it is no longer pending.
    coil_handle hs{}, ht{};
    int soon_rc = -1, later_rc = -1;
    bool soon_cancelled = true, later_cancelled = true;
    ASSERT_EQ(soon(
                  [&] {
                      soon_rc = coil_handle_cancel(&hs);
                      soon_cancelled = coil_handle_cancelled(&hs);
                      return 0;
                  },
                  &hs),
              0);
    ASSERT_EQ(later(
                  0.001,
                  [&] {
                      later_rc = coil_handle_cancel(&ht);
                      later_cancelled = coil_handle_cancelled(&ht);
                      coil_loop_stop(loop);
                      return 0;
                  },
                  &ht),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(soon_rc, 0);
    EXPECT_EQ(later_rc, 0);
    EXPECT_FALSE(soon_cancelled);
    EXPECT_FALSE(later_cancelled);
    EXPECT_EQ(coil_handle_cancel(&hs), 0);
    EXPECT_EQ(coil_handle_cancel(&ht), 0);
}

TEST_F(LoopTest, CancelAfterTheCallbackRanReturnsZeroAndIsSafe)
{
    int ran = 0;
    coil_handle ht, hs;
    ASSERT_EQ(later(0.001,
                    [&ran] {
                        ran++;
                        return 0;
                    },
                    &ht),
              0);
    ASSERT_EQ(soon(
                  [&ran] {
                      ran++;
                      return 0;
                  },
                  &hs),
              0);
    ASSERT_EQ(later(0.005,
                    [this] {
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    ASSERT_EQ(ran, 2);
    // Reuse the handles' slots with new callbacks: stale handles must not touch them.
    int other = 0;
    coil_handle fresh[4];
    for (auto &f : fresh)
        ASSERT_EQ(soon(
                      [&other] {
                          other++;
                          return 0;
                      },
                      &f),
                  0);
    EXPECT_EQ(coil_handle_cancel(&ht), 0);
    EXPECT_EQ(coil_handle_cancel(&hs), 0);
    EXPECT_FALSE(coil_handle_cancelled(&ht));
    EXPECT_FALSE(coil_handle_cancelled(&hs));
    EXPECT_EQ(coil_handle_when(&ht), -1.0);
    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(other, 4);
}

TEST_F(LoopTest, CancellingOneTimerLeavesTheOthersInOrder)
{
    std::vector<int> order;
    coil_handle h[6];
    for (int i = 0; i < 6; i++)
        ASSERT_EQ(later(0.001 * (i + 1),
                        [&order, i] {
                            order.push_back(i);
                            return 0;
                        },
                        &h[i]),
                  0);
    EXPECT_EQ(coil_handle_cancel(&h[0]), 1);
    EXPECT_EQ(coil_handle_cancel(&h[3]), 1);
    ASSERT_EQ(later(0.01,
                    [this] {
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(order, (std::vector<int>{1, 2, 4, 5}));
}

TEST_F(LoopTest, HandleWhenReportsTheTimersDeadlineAndMinusOneForCallSoon)
{
    coil_handle ht, ha, hs;
    double before = coil_loop_time(loop);
    ASSERT_EQ(later(5.0, [] { return 0; }, &ht), 0);
    double after = coil_loop_time(loop);
    EXPECT_GE(coil_handle_when(&ht), before + 5.0 - 1e-6);
    EXPECT_LE(coil_handle_when(&ht), after + 5.0 + 1e-6);
    double when = after + 7.25;
    ASSERT_EQ(at(when, [] { return 0; }, &ha), 0);
    EXPECT_NEAR(coil_handle_when(&ha), when, 1e-6);
    ASSERT_EQ(soon([] { return 0; }, &hs), 0);
    EXPECT_EQ(coil_handle_when(&hs), -1.0);
    coil_handle none{};
    EXPECT_EQ(coil_handle_when(&none), -1.0);
    EXPECT_EQ(coil_handle_when(nullptr), -1.0);
    EXPECT_EQ(coil_handle_cancel(&none), 0);
    EXPECT_EQ(coil_handle_cancel(nullptr), 0);
    EXPECT_FALSE(coil_handle_cancelled(&none));
    EXPECT_EQ(coil_handle_cancel(&ht), 1);
    EXPECT_EQ(coil_handle_cancel(&ha), 1);
    EXPECT_EQ(coil_handle_cancel(&hs), 1);
}

TEST_F(LoopTest, CallbackCancellingALaterCallbackOfTheSameBatchStopsIt)
{
    int ran = 0;
    coil_handle victim;
    ASSERT_EQ(soon([&victim] { return coil_handle_cancel(&victim) == 1 ? 0 : -EIO; }), 0);
    ASSERT_EQ(soon(
                  [&ran] {
                      ran++;
                      return 0;
                  },
                  &victim),
              0);
    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(ran, 0);
}

TEST_F(LoopTest, FarOffTimerDoesNotKeepRunUntilCompleteFromSeeingItsFutureDone)
{
    coil_handle far;
    ASSERT_EQ(later(3600, [] { return 0; }, &far), 0);
    coil_future *f = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    ASSERT_EQ(later(0.001, [f] { return coil_future_set_result(f, nullptr); }), 0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, f, nullptr), 0);
    EXPECT_EQ(coil_handle_cancel(&far), 1);
    coil_future_free(f);
}

} // namespace
