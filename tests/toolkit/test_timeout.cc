// Timeout scopes: their own cancellation becomes -ETIMEDOUT, anyone else's stays -ECANCELED,
// counted with the task's cancellation requests exactly as CPython's timeouts.py.
#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>

#include "coil_test.h"

namespace {

TEST(Timeout, TheScopesOwnCancellationBecomesTimedOut)
{
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 0.01), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        EXPECT_FALSE(coil_timeout_expired(s));
        int r = coil_sleep(10);
        EXPECT_EQ(r, -ECANCELED);
        EXPECT_EQ(coil_timeout_exit(s, r), -ETIMEDOUT);
        EXPECT_TRUE(coil_timeout_expired(s));
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        coil_timeout_free(s);
        EXPECT_EQ(coil_sleep(0), 0); // nothing left pending
        return nullptr;
    });
}

TEST(Timeout, AScopeThatDidNotExpireReturnsTheBodysCodeUnchanged)
{
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 10), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_timeout_exit(s, -EIO), -EIO);
        EXPECT_FALSE(coil_timeout_expired(s));
        coil_timeout_free(s);
        return nullptr;
    });
}

TEST(Timeout, AForeignCancelInsideAScopeThatHasNotExpiredStaysCancelled)
{
    coil_test::run([]() -> void * {
        int rc = 1;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, [&rc]() -> void * {
            coil_timeout_scope *s = nullptr;
            EXPECT_EQ(coil_timeout(&s, 10), 0);
            EXPECT_EQ(coil_timeout_enter(s), 0);
            rc = coil_timeout_exit(s, coil_sleep(10));
            coil_timeout_free(s);
            return coil_raise(rc, nullptr);
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_EQ(rc, -ECANCELED);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Timeout, AForeignCancelArrivingWithTheExpiryStaysCancelled)
{
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 0), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        int r = coil_sleep(10); // the scope fires
        EXPECT_EQ(r, -ECANCELED);
        EXPECT_EQ(coil_task_cancel(coil_current_task(), nullptr), 1); // someone else asks too
        EXPECT_EQ(coil_timeout_exit(s, r), -ECANCELED);
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 1);
        EXPECT_EQ(coil_task_uncancel(coil_current_task()), 0);
        coil_timeout_free(s);
        return nullptr;
    });
}

TEST(Timeout, NestedScopesOnOneDeadlineReportTheTimeoutFromTheOutermostOnly)
{
    coil_test::run([]() -> void * {
        double when = coil_loop_time(coil_get_running_loop()) + 0.01;
        coil_timeout_scope *outer = nullptr, *inner = nullptr;
        EXPECT_EQ(coil_timeout_at(&outer, when), 0);
        EXPECT_EQ(coil_timeout_at(&inner, when), 0);
        EXPECT_EQ(coil_timeout_enter(outer), 0);
        EXPECT_EQ(coil_timeout_enter(inner), 0);
        int r = coil_sleep(10);
        EXPECT_EQ(r, -ECANCELED);
        r = coil_timeout_exit(inner, r);
        EXPECT_EQ(r, -ECANCELED);
        EXPECT_TRUE(coil_timeout_expired(inner));
        EXPECT_EQ(coil_timeout_exit(outer, r), -ETIMEDOUT);
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        coil_timeout_free(inner);
        coil_timeout_free(outer);
        return nullptr;
    });
}

TEST(Timeout, RescheduleToNeverDisarmsTheScope)
{
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 0.005), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        EXPECT_EQ(coil_timeout_reschedule(s, COIL_NO_TIMEOUT), 0);
        EXPECT_TRUE(std::isinf(coil_timeout_when(s)));
        EXPECT_EQ(coil_sleep(0.02), 0); // past the old deadline: not interrupted
        EXPECT_FALSE(coil_timeout_expired(s));
        EXPECT_EQ(coil_timeout_exit(s, 0), 0);
        coil_timeout_free(s);
        return nullptr;
    });
}

TEST(Timeout, RescheduleMovesTheDeadline)
{
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, COIL_NO_TIMEOUT), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        double when = coil_loop_time(coil_get_running_loop()) + 0.005;
        EXPECT_EQ(coil_timeout_reschedule(s, when), 0);
        EXPECT_EQ(coil_timeout_when(s), when);
        int r = coil_sleep(10);
        EXPECT_GE(coil_loop_time(coil_get_running_loop()), when);
        EXPECT_EQ(coil_timeout_exit(s, r), -ETIMEDOUT);
        EXPECT_EQ(coil_timeout_reschedule(s, when), COIL_EINVALSTATE); // no longer entered
        coil_timeout_free(s);
        return nullptr;
    });
}

// A deadline moved later must hold past the old one and still end the scope at the new one.
TEST(Timeout, ADeadlineMovedLaterHoldsUntilTheNewOne)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 0.005), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        double when = coil_loop_time(loop) + 0.06;
        for (int i = 0; i < 3; i++) // moved later step by step, as a server moves it per request
            EXPECT_EQ(coil_timeout_reschedule(s, when - 0.02 + 0.01 * i), 0);
        EXPECT_EQ(coil_sleep(0.025), 0); // past the first deadline
        EXPECT_FALSE(coil_timeout_expired(s));
        int r = coil_sleep(10);
        EXPECT_GE(coil_loop_time(loop), when);
        EXPECT_LT(coil_loop_time(loop), when + 5);
        EXPECT_EQ(coil_timeout_exit(s, r), -ETIMEDOUT);
        coil_timeout_free(s);
        return nullptr;
    });
}

// After a move later, a move earlier than the timer's first deadline takes effect at once.
TEST(Timeout, ADeadlineMovedLaterThenEarlierEndsAtTheEarlierOne)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 30), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        EXPECT_EQ(coil_timeout_reschedule(s, coil_loop_time(loop) + 60), 0);
        double when = coil_loop_time(loop) + 0.005;
        EXPECT_EQ(coil_timeout_reschedule(s, when), 0);
        int r = coil_sleep(20);
        EXPECT_GE(coil_loop_time(loop), when);
        EXPECT_LT(coil_loop_time(loop), when + 5);
        EXPECT_EQ(coil_timeout_exit(s, r), -ETIMEDOUT);
        coil_timeout_free(s);
        return nullptr;
    });
}

TEST(Timeout, AScopeWorksInCleanupCodeAfterACancellation)
{
    coil_test::run([]() -> void * {
        int cleanup_rc = 1, cancelling_in_cleanup = -1;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, [&]() -> void * {
            int r = coil_sleep(10);
            EXPECT_EQ(r, -ECANCELED);
            // Cleanup with a bounded wait, while our own cancellation is still in progress.
            coil_timeout_scope *s = nullptr;
            EXPECT_EQ(coil_timeout(&s, 0.01), 0);
            EXPECT_EQ(coil_timeout_enter(s), 0);
            cleanup_rc = coil_timeout_exit(s, coil_sleep(10));
            coil_timeout_free(s);
            cancelling_in_cleanup = coil_task_cancelling(coil_current_task());
            return coil_raise(-ECANCELED, nullptr);
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_EQ(cleanup_rc, -ETIMEDOUT);
        EXPECT_EQ(cancelling_in_cleanup, 1); // the outer cancellation is still counted
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Timeout, AnExpiredScopeWhoseBodyFinishedAnywayLeavesNoCancellationBehind)
{
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, 0), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        // Busy until the deadline has passed and the timer pass ran, without an await that
        // could deliver it: a yield from a nested task lets the loop turn.
        coil_task *other = nullptr;
        EXPECT_EQ(coil_test::spawn(&other, []() -> void * { return nullptr; }), 0);
        int r = coil_task_await(other, nullptr); // may or may not see the cancel
        if (r == 0)
            EXPECT_EQ(coil_timeout_exit(s, 0), 0);
        else
            EXPECT_EQ(coil_timeout_exit(s, r), -ETIMEDOUT);
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        EXPECT_EQ(coil_sleep(0), 0); // no cancellation left pending
        coil_task_free(other);
        coil_timeout_free(s);
        return nullptr;
    });
}

TEST(Timeout, MisuseGetsAClearError)
{
    coil_timeout_scope *s = nullptr;
    EXPECT_EQ(coil_timeout(nullptr, 1), -EINVAL);
    coil_test::run([]() -> void * {
        coil_timeout_scope *s = nullptr;
        EXPECT_EQ(coil_timeout(&s, NAN), -EINVAL);
        EXPECT_EQ(coil_timeout(&s, 1), 0);
        EXPECT_EQ(coil_timeout_reschedule(s, 2), COIL_EINVALSTATE); // not entered
        EXPECT_EQ(coil_timeout_exit(s, 0), COIL_EINVALSTATE);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        EXPECT_EQ(coil_timeout_enter(s), COIL_EINVALSTATE);
        EXPECT_EQ(coil_timeout_reschedule(s, NAN), -EINVAL);
        EXPECT_EQ(coil_timeout_exit(s, 0), 0);
        EXPECT_EQ(coil_timeout_exit(s, 0), COIL_EINVALSTATE);
        coil_timeout_free(s);
        // Freed while entered: disarmed, nothing fires later.
        EXPECT_EQ(coil_timeout(&s, 0), 0);
        EXPECT_EQ(coil_timeout_enter(s), 0);
        coil_timeout_free(s);
        EXPECT_EQ(coil_sleep(0.005), 0);
        return nullptr;
    });
    (void)s;
}

} // namespace
