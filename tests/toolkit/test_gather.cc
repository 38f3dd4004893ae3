// gather: results in input order, first failure vs return_exceptions, and its cancellation rules.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

// Sleeps `ms` milliseconds of work, then returns `value`.
struct Work {
    int ms;
    intptr_t value;
    int fail; // 0, or the code to raise instead
};

void *work(void *arg)
{
    auto *w = static_cast<Work *>(arg);
    int r = coil_sleep(w->ms / 1000.0);
    if (r)
        return coil_raise(r, "interrupted");
    if (w->fail)
        return coil_raise(w->fail, "work %d failed", w->ms);
    return as_ptr(w->value);
}

// Waits on a future forever; records how it ended.
struct Waiter {
    coil_future *f;
    int result = 1;
};

void *wait_future(void *arg)
{
    auto *w = static_cast<Waiter *>(arg);
    w->result = coil_future_await(w->f, nullptr);
    return w->result ? coil_raise(w->result, nullptr) : as_ptr(5);
}

TEST(Gather, EmptySetReturnsZeroAtOnce)
{
    coil_test::run([]() -> void * {
        EXPECT_EQ(coil_gather(nullptr, 0, false, nullptr), 0);
        return nullptr;
    });
}

TEST(Gather, ResultsComeBackInInputOrderNotCompletionOrder)
{
    coil_test::run([]() -> void * {
        Work w[3] = { { 30, 1, 0 }, { 10, 2, 0 }, { 0, 3, 0 } };
        coil_task *t[3];
        coil_future *fs[3];
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(coil_create_task(&t[i], work, &w[i], nullptr), 0);
            fs[i] = coil_task_future(t[i]);
        }
        coil_gather_result res[3];
        EXPECT_EQ(coil_gather(fs, 3, false, res), 0);
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(res[i].err, 0);
            EXPECT_EQ(as_int(res[i].value), i + 1);
            EXPECT_EQ(res[i].exc, nullptr);
            coil_task_free(t[i]);
        }
        return nullptr;
    });
}

TEST(Gather, WithoutReturnExceptionsTheFirstFailureReturnsAtOnceAndOthersKeepRunning)
{
    coil_test::run([]() -> void * {
        coil_future *slow;
        EXPECT_EQ(coil_future_new(&slow), 0);
        Waiter wt{ slow };
        Work bad{ 0, 0, -EIO };
        coil_task *a, *b;
        EXPECT_EQ(coil_create_task(&a, wait_future, &wt, nullptr), 0);
        EXPECT_EQ(coil_create_task(&b, work, &bad, nullptr), 0);
        coil_future *fs[2] = { coil_task_future(a), coil_task_future(b) };
        EXPECT_EQ(coil_gather(fs, 2, false, nullptr), -EIO);
        EXPECT_FALSE(coil_task_done(a)); // not cancelled: keeps running
        EXPECT_EQ(coil_future_set_result(slow, nullptr), 0);
        void *v;
        EXPECT_EQ(coil_task_await(a, &v), 0);
        EXPECT_EQ(as_int(v), 5);
        coil_task_free(a);
        coil_task_free(b);
        coil_future_free(slow);
        return nullptr;
    });
}

TEST(Gather, WithReturnExceptionsEverySlotHoldsAValueOrAnException)
{
    coil_test::run([]() -> void * {
        Work w[3] = { { 5, 10, 0 }, { 0, 0, -EPIPE }, { 1, 30, 0 } };
        coil_task *t[3];
        coil_future *fs[3];
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(coil_create_task(&t[i], work, &w[i], nullptr), 0);
            fs[i] = coil_task_future(t[i]);
        }
        coil_gather_result res[3];
        EXPECT_EQ(coil_gather(fs, 3, true, res), 0);
        EXPECT_EQ(res[0].err, 0);
        EXPECT_EQ(as_int(res[0].value), 10);
        EXPECT_EQ(res[1].err, -EPIPE);
        EXPECT_NE(res[1].exc, nullptr);
        EXPECT_EQ(coil_exception_code(res[1].exc), -EPIPE);
        EXPECT_STREQ(coil_exception_message(res[1].exc), "work 0 failed");
        EXPECT_EQ(res[2].err, 0);
        EXPECT_EQ(as_int(res[2].value), 30);
        for (auto *x : t)
            coil_task_free(x);
        return nullptr;
    });
}

struct GatherCall {
    coil_future **fs;
    size_t n;
    bool return_exceptions;
    int rc = 1;
};

void *do_gather(void *arg)
{
    auto *g = static_cast<GatherCall *>(arg);
    g->rc = coil_gather(g->fs, g->n, g->return_exceptions, nullptr);
    return nullptr;
}

void cancelling_gather_cancels_children(bool return_exceptions)
{
    coil_test::run([return_exceptions]() -> void * {
        coil_future *never;
        EXPECT_EQ(coil_future_new(&never), 0);
        Waiter w1{ never }, w2{ never };
        coil_task *c1, *c2;
        EXPECT_EQ(coil_create_task(&c1, wait_future, &w1, nullptr), 0);
        EXPECT_EQ(coil_create_task(&c2, wait_future, &w2, nullptr), 0);
        coil_future *fs[2] = { coil_task_future(c1), coil_task_future(c2) };
        GatherCall gc{ fs, 2, return_exceptions };
        coil_task *g = nullptr;
        EXPECT_EQ(coil_create_task(&g, do_gather, &gc, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0); // everyone waits now
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(g, "stop now"), 1);
        EXPECT_EQ(coil_task_await(g, nullptr), 0);
        EXPECT_EQ(gc.rc, -ECANCELED);
        EXPECT_TRUE(coil_task_cancelled(c1));
        EXPECT_TRUE(coil_task_cancelled(c2));
        // The cancel message went through gather to each child.
        EXPECT_STREQ(coil_exception_message(coil_task_exception(c1)), "stop now");
        EXPECT_STREQ(coil_exception_message(coil_task_exception(c2)), "stop now");
        coil_task_free(g);
        coil_task_free(c1);
        coil_task_free(c2);
        coil_future_free(never);
        return nullptr;
    });
}

TEST(Gather, CancellingTheGatheringTaskCancelsEveryChildWithTheSameMessage)
{
    cancelling_gather_cancels_children(false);
}

TEST(Gather, CancellingTheGatheringTaskCancelsEveryChildEvenWithReturnExceptions)
{
    cancelling_gather_cancels_children(true);
}

TEST(Gather, ChildCancelledOnItsOwnIsAFailureAndDoesNotCancelTheGather)
{
    coil_test::run([]() -> void * {
        coil_future *f1, *f2;
        EXPECT_EQ(coil_future_new(&f1), 0);
        EXPECT_EQ(coil_future_new(&f2), 0);
        coil_future *fs[2] = { f1, f2 };
        GatherCall gc{ fs, 2, true };
        coil_task *g = nullptr;
        EXPECT_EQ(coil_create_task(&g, do_gather, &gc, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_future_cancel(f1, nullptr), 1);
        EXPECT_FALSE(coil_task_done(g)); // still waiting for f2
        EXPECT_EQ(coil_future_set_result(f2, as_ptr(2)), 0);
        EXPECT_EQ(coil_task_await(g, nullptr), 0);
        EXPECT_EQ(gc.rc, 0);
        EXPECT_EQ(coil_task_cancelling(g), 0);
        coil_task_free(g);
        coil_future_free(f1);
        coil_future_free(f2);

        // Without return_exceptions the cancelled child is the first failure: -ECANCELED, and
        // the sibling is left running.
        EXPECT_EQ(coil_future_new(&f1), 0);
        EXPECT_EQ(coil_future_new(&f2), 0);
        coil_future *fs2[2] = { f1, f2 };
        GatherCall gc2{ fs2, 2, false };
        EXPECT_EQ(coil_create_task(&g, do_gather, &gc2, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_future_cancel(f1, nullptr), 1);
        EXPECT_EQ(coil_task_await(g, nullptr), 0);
        EXPECT_EQ(gc2.rc, -ECANCELED);
        EXPECT_FALSE(coil_future_done(f2));
        coil_task_free(g);
        coil_future_free(f1);
        coil_future_free(f2);
        return nullptr;
    });
}

TEST(Gather, CancellingAGatherWhoseChildrenAllFinishedStillCancelsTheAwaitingTask)
{
    coil_test::run([]() -> void * {
        coil_future *f1, *f2;
        EXPECT_EQ(coil_future_new(&f1), 0);
        EXPECT_EQ(coil_future_new(&f2), 0);
        coil_future *fs[2] = { f1, f2 };
        GatherCall gc{ fs, 2, false };
        coil_task *g = nullptr;
        EXPECT_EQ(coil_create_task(&g, do_gather, &gc, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        // Both children finish, so gather's wake-up is queued; the cancel lands before it runs.
        EXPECT_EQ(coil_future_set_result(f1, as_ptr(1)), 0);
        EXPECT_EQ(coil_future_set_result(f2, as_ptr(2)), 0);
        EXPECT_EQ(coil_task_cancel(g, nullptr), 1);
        EXPECT_EQ(coil_task_await(g, nullptr), 0);
        EXPECT_EQ(gc.rc, -ECANCELED);
        // The children keep their results.
        void *v;
        EXPECT_EQ(coil_future_result(f1, &v), 0);
        EXPECT_EQ(as_int(v), 1);
        coil_task_free(g);
        coil_future_free(f1);
        coil_future_free(f2);
        return nullptr;
    });
}

TEST(Gather, ACancellationPendingWhenGatherStartsCancelsTheChildren)
{
    coil_test::run([]() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_task_cancel(coil_current_task(), "early"), 1);
        EXPECT_EQ(coil_gather(&f, 1, false, nullptr), -ECANCELED);
        EXPECT_TRUE(coil_future_cancelled(f));
        EXPECT_STREQ(coil_exception_message(coil_future_exception(f)), "early");
        EXPECT_EQ(coil_task_uncancel(coil_current_task()), 0);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Gather, AlreadyDoneChildrenReturnWithoutSuspending)
{
    coil_test::run([]() -> void * {
        coil_future *f1, *f2;
        EXPECT_EQ(coil_future_new(&f1), 0);
        EXPECT_EQ(coil_future_new(&f2), 0);
        EXPECT_EQ(coil_future_set_result(f1, as_ptr(1)), 0);
        EXPECT_EQ(coil_future_set_exception(f2, -ENOENT, "gone"), 0);
        coil_future *fs[2] = { f1, f2 };
        coil_gather_result res[2];
        EXPECT_EQ(coil_gather(fs, 2, false, res), -ENOENT);
        EXPECT_EQ(coil_gather(fs, 2, true, res), 0);
        EXPECT_EQ(as_int(res[0].value), 1);
        EXPECT_EQ(res[1].err, -ENOENT);
        coil_future_free(f1);
        coil_future_free(f2);
        return nullptr;
    });
}

TEST(Gather, BadArgumentsAreRefused)
{
    EXPECT_EQ(coil_gather(nullptr, 1, false, nullptr), COIL_ENOTASK);
    coil_test::run([]() -> void * {
        coil_future *fs[2] = { nullptr, nullptr };
        EXPECT_EQ(coil_gather(nullptr, 2, false, nullptr), -EINVAL);
        EXPECT_EQ(coil_gather(fs, 2, false, nullptr), -EINVAL);
        coil_future *self = coil_task_future(coil_current_task());
        EXPECT_EQ(coil_gather(&self, 1, false, nullptr), COIL_EAWAITSELF);
        return nullptr;
    });
}

} // namespace
