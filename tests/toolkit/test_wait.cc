// wait: FIRST_COMPLETED / FIRST_EXCEPTION / ALL_COMPLETED, a timeout that never cancels, and its
// argument errors.
#include <gtest/gtest.h>

#include <cerrno>
#include <cmath>
#include <cstdint>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }

struct Futs {
    coil_future *f[3] = {};
    Futs()
    {
        for (auto &x : f)
            EXPECT_EQ(coil_future_new(&x), 0);
    }
    ~Futs()
    {
        for (auto *x : f)
            coil_future_free(x);
    }
};

// A task that, once it runs, settles future `f` (result, or failure when code != 0).
void settle_soon(coil_future *f, int code)
{
    EXPECT_EQ(coil_test::spawn(nullptr, [f, code]() -> void * {
        if (code)
            coil_future_set_exception(f, code, "failed");
        else
            coil_future_set_result(f, as_ptr(1));
        return nullptr;
    }), 0);
}

TEST(Wait, FirstCompletedReturnsAsSoonAsOneIsDone)
{
    coil_test::run([]() -> void * {
        Futs fs;
        settle_soon(fs.f[1], 0);
        coil_future *done[3], *pending[3];
        size_t nd = 9, np = 9;
        EXPECT_EQ(coil_wait(fs.f, 3, COIL_NO_TIMEOUT, COIL_FIRST_COMPLETED, done, &nd, pending, &np), 0);
        EXPECT_EQ(nd, 1u);
        EXPECT_EQ(done[0], fs.f[1]);
        EXPECT_EQ(np, 2u);
        EXPECT_EQ(pending[0], fs.f[0]);
        EXPECT_EQ(pending[1], fs.f[2]);
        return nullptr;
    });
}

TEST(Wait, FirstExceptionReturnsAtTheFirstFailureNotAtASuccess)
{
    coil_test::run([]() -> void * {
        Futs fs;
        settle_soon(fs.f[0], 0);
        settle_soon(fs.f[2], -EIO);
        size_t nd = 0, np = 0;
        EXPECT_EQ(coil_wait(fs.f, 3, COIL_NO_TIMEOUT, COIL_FIRST_EXCEPTION, nullptr, &nd, nullptr, &np), 0);
        EXPECT_EQ(nd, 2u);
        EXPECT_EQ(np, 1u);
        EXPECT_FALSE(coil_future_done(fs.f[1]));
        coil_future_result(fs.f[2], nullptr);
        return nullptr;
    });
}

TEST(Wait, FirstExceptionWithoutFailuresWaitsForAll)
{
    coil_test::run([]() -> void * {
        Futs fs;
        for (auto *f : fs.f)
            settle_soon(f, 0);
        size_t nd = 0, np = 9;
        EXPECT_EQ(coil_wait(fs.f, 3, COIL_NO_TIMEOUT, COIL_FIRST_EXCEPTION, nullptr, &nd, nullptr, &np), 0);
        EXPECT_EQ(nd, 3u);
        EXPECT_EQ(np, 0u);
        return nullptr;
    });
}

TEST(Wait, AllCompletedWaitsForEveryOne)
{
    coil_test::run([]() -> void * {
        Futs fs;
        settle_soon(fs.f[2], 0);
        settle_soon(fs.f[0], -EPIPE);
        settle_soon(fs.f[1], 0);
        coil_future *done[3];
        size_t nd = 0, np = 9;
        EXPECT_EQ(coil_wait(fs.f, 3, 5, COIL_ALL_COMPLETED, done, &nd, nullptr, &np), 0);
        EXPECT_EQ(nd, 3u);
        EXPECT_EQ(np, 0u);
        EXPECT_EQ(done[0], fs.f[0]); // input order
        coil_future_result(fs.f[0], nullptr);
        return nullptr;
    });
}

TEST(Wait, ATimeoutReturnsWhatIsDoneAndCancelsNothing)
{
    coil_test::run([]() -> void * {
        Futs fs;
        EXPECT_EQ(coil_future_set_result(fs.f[0], nullptr), 0);
        coil_future *pending[3];
        size_t nd = 0, np = 0;
        double t0 = coil_loop_time(coil_get_running_loop());
        EXPECT_EQ(coil_wait(fs.f, 3, 0.01, COIL_ALL_COMPLETED, nullptr, &nd, pending, &np), 0);
        EXPECT_GE(coil_loop_time(coil_get_running_loop()) - t0, 0.0099);
        EXPECT_EQ(nd, 1u);
        EXPECT_EQ(np, 2u);
        EXPECT_FALSE(coil_future_done(fs.f[1]));
        EXPECT_FALSE(coil_future_done(fs.f[2]));
        // A zero timeout just looks.
        EXPECT_EQ(coil_wait(fs.f, 3, 0, COIL_ALL_COMPLETED, nullptr, &nd, nullptr, &np), 0);
        EXPECT_EQ(np, 2u);
        return nullptr;
    });
}

TEST(Wait, CancellingTheWaiterLeavesTheAwaitablesAlone)
{
    coil_test::run([]() -> void * {
        Futs fs;
        int rc = 1;
        coil_task *w = nullptr;
        coil_future **f = fs.f;
        EXPECT_EQ(coil_test::spawn(&w, [f, &rc]() -> void * {
            rc = coil_wait(f, 3, COIL_NO_TIMEOUT, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr);
            return nullptr;
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(w, nullptr), 1);
        EXPECT_EQ(coil_task_await(w, nullptr), 0);
        EXPECT_EQ(rc, -ECANCELED);
        for (auto *x : fs.f)
            EXPECT_FALSE(coil_future_done(x));
        coil_task_free(w);
        return nullptr;
    });
}

TEST(Wait, AConditionAlreadyMetReturnsAtOnce)
{
    coil_test::run([]() -> void * {
        Futs fs;
        EXPECT_EQ(coil_future_set_result(fs.f[1], nullptr), 0);
        size_t nd = 0;
        EXPECT_EQ(coil_wait(fs.f, 3, COIL_NO_TIMEOUT, COIL_FIRST_COMPLETED, nullptr, &nd, nullptr, nullptr), 0);
        EXPECT_EQ(nd, 1u);
        return nullptr;
    });
}

TEST(Wait, BadArgumentsAreRefused)
{
    coil_test::run([]() -> void * {
        Futs fs;
        EXPECT_EQ(coil_wait(fs.f, 0, 1, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr), -EINVAL);
        EXPECT_EQ(coil_wait(nullptr, 1, 1, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr), -EINVAL);
        EXPECT_EQ(coil_wait(fs.f, 3, NAN, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr), -EINVAL);
        EXPECT_EQ(coil_wait(fs.f, 3, 1, (coil_return_when)7, nullptr, nullptr, nullptr, nullptr), -EINVAL);
        coil_future *self = coil_task_future(coil_current_task());
        EXPECT_EQ(coil_wait(&self, 1, 1, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr), COIL_EAWAITSELF);
        return nullptr;
    });
    EXPECT_EQ(coil_wait(nullptr, 1, 1, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr), COIL_ENOTASK);
}

} // namespace
