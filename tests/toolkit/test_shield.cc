// shield: the outer await can be cancelled; the inner work goes on and its result is kept.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

TEST(Shield, ReturnsTheInnerOutcome)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * {
            coil_sleep(0.001);
            return as_ptr(8);
        }), 0);
        void *v = nullptr;
        EXPECT_EQ(coil_shield(coil_task_future(t), &v), 0);
        EXPECT_EQ(as_int(v), 8);
        EXPECT_EQ(coil_shield(coil_task_future(t), &v), 0); // done: no suspension
        coil_task_free(t);
        EXPECT_EQ(coil_test::spawn(&t, []() -> void * { return coil_raise(-EIO, "inner"); }), 0);
        EXPECT_EQ(coil_shield(coil_task_future(t), nullptr), -EIO);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Shield, CancellingTheOuterAwaitLeavesTheInnerRunningAndItsResultIntact)
{
    coil_test::run([]() -> void * {
        coil_future *gate;
        EXPECT_EQ(coil_future_new(&gate), 0);
        coil_task *inner = nullptr;
        EXPECT_EQ(coil_test::spawn(&inner, [gate]() -> void * {
            int r = coil_future_await(gate, nullptr);
            return r ? coil_raise(r, nullptr) : as_ptr(77);
        }), 0);
        int rc = 1;
        coil_task *outer = nullptr;
        EXPECT_EQ(coil_test::spawn(&outer, [inner, &rc]() -> void * {
            rc = coil_shield(coil_task_future(inner), nullptr);
            return nullptr;
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(outer, nullptr), 1);
        EXPECT_EQ(coil_task_await(outer, nullptr), 0);
        EXPECT_EQ(rc, -ECANCELED);
        EXPECT_FALSE(coil_task_done(inner));
        EXPECT_EQ(coil_task_cancelling(inner), 0);
        EXPECT_EQ(coil_future_set_result(gate, nullptr), 0);
        void *v = nullptr;
        EXPECT_EQ(coil_task_await(inner, &v), 0);
        EXPECT_EQ(as_int(v), 77);
        coil_task_free(outer);
        coil_task_free(inner);
        coil_future_free(gate);
        return nullptr;
    });
}

TEST(Shield, APendingCancellationReturnsCancelledWithoutTouchingTheInner)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_task_cancel(coil_current_task(), nullptr), 1);
        EXPECT_EQ(coil_shield(f, nullptr), -ECANCELED);
        EXPECT_FALSE(coil_future_done(f));
        EXPECT_EQ(coil_task_uncancel(coil_current_task()), 0);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Shield, BadArgumentsAreRefused)
{
    EXPECT_EQ(coil_shield(nullptr, nullptr), -EINVAL);
    coil_test::run([]() -> void * {
        coil_future *self = coil_task_future(coil_current_task());
        EXPECT_EQ(coil_shield(self, nullptr), COIL_EAWAITSELF);
        return nullptr;
    });
}

} // namespace
