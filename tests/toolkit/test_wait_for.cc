// wait_for (CPython 3.12+): a timeout cancels the awaitable and waits for it; a swallowed
// cancellation gives the value; cancelling wait_for cancels the inner.
#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstdint>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

TEST(WaitFor, ReturnsTheValueWhenInTime)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * { return as_ptr(9); }), 0);
        void *v = nullptr;
        EXPECT_EQ(coil_wait_for(coil_task_future(t), 5, &v), 0);
        EXPECT_EQ(as_int(v), 9);
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(WaitFor, PassesTheInnerErrorThrough)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * { return coil_raise(-EPIPE, "broken"); }), 0);
        EXPECT_EQ(coil_wait_for(coil_task_future(t), 5, nullptr), -EPIPE);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(WaitFor, OnTimeoutCancelsTheInnerAndWaitsUntilItsCancellationIsDone)
{
    coil_test::run([]() -> void * {
        bool cleaned_up = false;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, [&cleaned_up]() -> void * {
            int r = coil_sleep(10);
            EXPECT_EQ(r, -ECANCELED);
            EXPECT_EQ(coil_sleep(0.005), 0); // cleanup that takes a while
            cleaned_up = true;
            return coil_raise(-ECANCELED, nullptr);
        }), 0);
        EXPECT_EQ(coil_wait_for(coil_task_future(t), 0.01, nullptr), -ETIMEDOUT);
        EXPECT_TRUE(cleaned_up);
        EXPECT_TRUE(coil_task_cancelled(t));
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(WaitFor, ReturnsTheValueWhenTheInnerSwallowsTheCancellation)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * {
            EXPECT_EQ(coil_sleep(10), -ECANCELED);
            return as_ptr(42); // swallowed
        }), 0);
        void *v = nullptr;
        EXPECT_EQ(coil_wait_for(coil_task_future(t), 0.01, &v), 0);
        EXPECT_EQ(as_int(v), 42);
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        EXPECT_EQ(coil_sleep(0), 0); // no cancellation left over
        coil_task_free(t);
        return nullptr;
    });
}

TEST(WaitFor, ZeroOrNegativeTimeoutCancelsANotDoneAwaitableAtOnce)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_wait_for(f, 0, nullptr), -ETIMEDOUT);
        EXPECT_TRUE(coil_future_cancelled(f));
        coil_future_free(f);

        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * { return coil_sleep(10) ? coil_raise(-ECANCELED, nullptr) : nullptr; }), 0);
        EXPECT_EQ(coil_wait_for(coil_task_future(t), -1, nullptr), -ETIMEDOUT);
        EXPECT_TRUE(coil_task_cancelled(t));
        coil_task_free(t);

        // A done awaitable gives its outcome, even with timeout 0.
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_set_result(f, as_ptr(3)), 0);
        void *v = nullptr;
        EXPECT_EQ(coil_wait_for(f, 0, &v), 0);
        EXPECT_EQ(as_int(v), 3);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(WaitFor, CancellingTheWaiterCancelsTheInner)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        int rc = 1;
        coil_task *w = nullptr;
        EXPECT_EQ(coil_test::spawn(&w, [f, &rc]() -> void * {
            rc = coil_wait_for(f, 10, nullptr);
            return nullptr;
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(w, nullptr), 1);
        EXPECT_EQ(coil_task_await(w, nullptr), 0);
        EXPECT_EQ(rc, -ECANCELED);
        EXPECT_TRUE(coil_future_cancelled(f));
        coil_task_free(w);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(WaitFor, NoTimeoutWaitsAndNaNIsInvalid)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * {
            coil_sleep(0.002);
            return as_ptr(1);
        }), 0);
        EXPECT_EQ(coil_wait_for(coil_task_future(t), NAN, nullptr), -EINVAL);
        EXPECT_EQ(coil_wait_for(nullptr, 1, nullptr), -EINVAL);
        void *v = nullptr;
        EXPECT_EQ(coil_wait_for(coil_task_future(t), COIL_NO_TIMEOUT, &v), 0);
        EXPECT_EQ(as_int(v), 1);
        coil_future *self = coil_task_future(coil_current_task());
        EXPECT_EQ(coil_wait_for(self, 1, nullptr), COIL_EAWAITSELF);
        coil_task_free(t);
        return nullptr;
    });
}

} // namespace
