// as_completed: completion order, the total timeout (-ETIMEDOUT per pending awaitable, nothing
// cancelled), and cancellation of next().
#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstdint>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }

TEST(AsCompleted, YieldsInCompletionOrder)
{
    coil_test::run([]() -> void * {
        coil_future *f[3];
        for (auto &x : f)
            EXPECT_EQ(coil_future_new(&x), 0);
        coil_as_completed_iter *it = nullptr;
        EXPECT_EQ(coil_as_completed(f, 3, COIL_NO_TIMEOUT, &it), 0);
        EXPECT_EQ(coil_test::spawn(nullptr, [&f]() -> void * {
            coil_future_set_result(f[2], as_ptr(2));
            coil_sleep(0);
            coil_future_set_result(f[0], as_ptr(0));
            coil_sleep(0);
            coil_future_set_result(f[1], as_ptr(1));
            return nullptr;
        }), 0);
        coil_future *got = nullptr;
        int order[] = { 2, 0, 1 };
        for (int i : order) {
            EXPECT_EQ(coil_as_completed_next(it, &got), 0);
            EXPECT_EQ(got, f[i]);
        }
        EXPECT_EQ(coil_as_completed_next(it, &got), 0);
        EXPECT_EQ(got, nullptr); // exhausted
        coil_as_completed_free(it);
        for (auto *x : f)
            coil_future_free(x);
        return nullptr;
    });
}

TEST(AsCompleted, AfterTheTimeoutEachPendingAwaitableGivesTimedOutAndNothingIsCancelled)
{
    coil_test::run([]() -> void * {
        coil_future *f[3];
        for (auto &x : f)
            EXPECT_EQ(coil_future_new(&x), 0);
        EXPECT_EQ(coil_future_set_result(f[1], nullptr), 0);
        coil_as_completed_iter *it = nullptr;
        EXPECT_EQ(coil_as_completed(f, 3, 0.01, &it), 0);
        EXPECT_EQ(coil_sleep(0.02), 0); // the timeout passes; f[1] completed before it
        coil_future *got = nullptr;
        EXPECT_EQ(coil_as_completed_next(it, &got), 0);
        EXPECT_EQ(got, f[1]);
        EXPECT_EQ(coil_as_completed_next(it, &got), -ETIMEDOUT);
        EXPECT_EQ(coil_as_completed_next(it, &got), -ETIMEDOUT);
        EXPECT_EQ(coil_as_completed_next(it, &got), 0);
        EXPECT_EQ(got, nullptr);
        EXPECT_FALSE(coil_future_done(f[0]));
        EXPECT_FALSE(coil_future_done(f[2]));
        coil_as_completed_free(it);
        for (auto *x : f)
            coil_future_free(x);
        return nullptr;
    });
}

TEST(AsCompleted, ATimeoutWakesAWaitingNext)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        coil_as_completed_iter *it = nullptr;
        EXPECT_EQ(coil_as_completed(&f, 1, 0.005, &it), 0);
        coil_future *got = nullptr;
        EXPECT_EQ(coil_as_completed_next(it, &got), -ETIMEDOUT);
        coil_as_completed_free(it);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(AsCompleted, ACancelledNextConsumesNothing)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        coil_as_completed_iter *it = nullptr;
        EXPECT_EQ(coil_as_completed(&f, 1, COIL_NO_TIMEOUT, &it), 0);
        int rc = 1;
        coil_task *w = nullptr;
        EXPECT_EQ(coil_test::spawn(&w, [it, &rc]() -> void * {
            coil_future *got;
            rc = coil_as_completed_next(it, &got);
            return nullptr;
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        // The completion and the cancel land before the waiter runs: the cancel wins and the
        // completion stays for the next call.
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(w, nullptr), 1);
        EXPECT_EQ(coil_task_await(w, nullptr), 0);
        EXPECT_EQ(rc, -ECANCELED);
        coil_future *got = nullptr;
        EXPECT_EQ(coil_as_completed_next(it, &got), 0);
        EXPECT_EQ(got, f);
        coil_task_free(w);
        coil_as_completed_free(it);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(AsCompleted, FreeingTheIteratorWakesAWaiterWithClosed)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        coil_as_completed_iter *it = nullptr;
        EXPECT_EQ(coil_as_completed(&f, 1, COIL_NO_TIMEOUT, &it), 0);
        int rc = 1;
        coil_task *w = nullptr;
        EXPECT_EQ(coil_test::spawn(&w, [it, &rc]() -> void * {
            coil_future *got;
            rc = coil_as_completed_next(it, &got);
            return nullptr;
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        coil_future *got = nullptr;
        EXPECT_EQ(coil_as_completed_next(it, &got), COIL_EINVALSTATE); // one waiter at a time
        coil_as_completed_free(it);
        EXPECT_EQ(coil_task_await(w, nullptr), 0);
        EXPECT_EQ(rc, COIL_ECLOSED);
        coil_task_free(w);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(AsCompleted, EmptyIsExhaustedAndBadArgumentsAreRefused)
{
    coil_test::run([]() -> void * {
        coil_as_completed_iter *it = nullptr;
        EXPECT_EQ(coil_as_completed(nullptr, 0, 1, &it), 0);
        coil_future *got = reinterpret_cast<coil_future *>(1);
        EXPECT_EQ(coil_as_completed_next(it, &got), 0);
        EXPECT_EQ(got, nullptr);
        coil_as_completed_free(it);
        coil_future *f = nullptr;
        EXPECT_EQ(coil_as_completed(&f, 1, 1, &it), -EINVAL);
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_as_completed(&f, 1, NAN, &it), -EINVAL);
        EXPECT_EQ(coil_as_completed(&f, 1, 1, nullptr), -EINVAL);
        coil_future_free(f);
        return nullptr;
    });
}

} // namespace
