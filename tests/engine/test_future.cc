// Futures: results, exceptions, cancellation, invalid states, waiters and done callbacks.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

template <class Pred> bool yield_until(Pred pred, int limit = 10000)
{
    for (int i = 0; i < limit; i++) {
        if (pred())
            return true;
        if (coil_sleep(0) != 0)
            return false;
    }
    return pred();
}

struct Waiter {
    coil_future *f = nullptr;
    std::vector<int> *order = nullptr;
    int index = 0;
    int *arrived = nullptr;
    int rc = 1;
    void *value = nullptr;
};

void *wait_on(void *arg)
{
    auto *w = static_cast<Waiter *>(arg);
    if (w->arrived)
        ++*w->arrived;
    w->rc = coil_future_await(w->f, &w->value);
    if (w->order)
        w->order->push_back(w->index);
    return nullptr;
}

TEST(Future, SetResultCompletesItAndAwaitReturnsTheValue)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_get_loop(f), coil_get_running_loop());
        EXPECT_FALSE(coil_future_done(f));
        Waiter w;
        w.f = f;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_future_set_result(f, as_ptr(31)), 0);
        EXPECT_TRUE(coil_future_done(f));
        EXPECT_FALSE(coil_future_cancelled(f));
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(w.rc, 0);
        EXPECT_EQ(as_int(w.value), 31);
        void *r = nullptr;
        EXPECT_EQ(coil_future_result(f, &r), 0);
        EXPECT_EQ(as_int(r), 31);
        EXPECT_EQ(coil_future_exception(f), nullptr);
        EXPECT_EQ(coil_future_await(f, &r), 0) << "a done future is awaited without suspending";
        coil_task_free(t);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, SetExceptionMakesAwaitReturnTheCodeAndKeepsTheMessage)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        Waiter w;
        w.f = f;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_future_set_exception(f, -ECONNRESET, "peer %s reset after %d bytes", "10.0.0.1", 17), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(w.rc, -ECONNRESET);
        EXPECT_TRUE(coil_future_done(f));
        EXPECT_FALSE(coil_future_cancelled(f));
        EXPECT_EQ(coil_future_result(f, nullptr), -ECONNRESET);
        const coil_exception *e = coil_future_exception(f);
        EXPECT_EQ(coil_exception_code(e), -ECONNRESET);
        EXPECT_STREQ(coil_exception_message(e), "peer 10.0.0.1 reset after 17 bytes");
        EXPECT_EQ(coil_exception_task_name(e), nullptr) << "set on a plain future, not raised by a task";
        coil_task_free(t);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, SetExceptionWithANonNegativeCodeIsEinvalAndLeavesItPending)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_set_exception(f, 0, "zero"), -EINVAL);
        EXPECT_EQ(coil_future_set_exception(f, EIO, "positive"), -EINVAL);
        EXPECT_FALSE(coil_future_done(f));
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, SetExceptionWithECanceledEndsItCancelled)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_set_exception(f, -ECANCELED, "as cancel"), 0);
        EXPECT_TRUE(coil_future_cancelled(f));
        EXPECT_EQ(coil_future_await(f, nullptr), -ECANCELED);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, CancelMakesAwaitReturnECanceledAndCarriesTheMessage)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        Waiter w;
        w.f = f;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_future_cancel(f, "no longer needed"), 1);
        EXPECT_TRUE(coil_future_done(f));
        EXPECT_TRUE(coil_future_cancelled(f));
        EXPECT_EQ(coil_future_cancel(f, "again"), 0) << "cancel of a done future returns 0";
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(w.rc, -ECANCELED);
        EXPECT_EQ(coil_future_result(f, nullptr), -ECANCELED);
        EXPECT_STREQ(coil_exception_message(coil_future_exception(f)), "no longer needed");
        EXPECT_FALSE(coil_task_cancelled(t)) << "the waiter itself was not cancelled";
        coil_task_free(t);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, SettingTwiceIsInvalidStateAndKeepsTheFirstOutcome)
{
    coil_test::run([]() -> void * {
        coil_future *a = nullptr, *b = nullptr, *c = nullptr;
        EXPECT_EQ(coil_future_new(&a), 0);
        EXPECT_EQ(coil_future_new(&b), 0);
        EXPECT_EQ(coil_future_new(&c), 0);
        EXPECT_EQ(coil_future_set_result(a, as_ptr(1)), 0);
        EXPECT_EQ(coil_future_set_result(a, as_ptr(2)), COIL_EINVALSTATE);
        EXPECT_EQ(coil_future_set_exception(a, -EIO, "late"), COIL_EINVALSTATE);
        void *r = nullptr;
        EXPECT_EQ(coil_future_result(a, &r), 0);
        EXPECT_EQ(as_int(r), 1);

        EXPECT_EQ(coil_future_set_exception(b, -EIO, "first"), 0);
        EXPECT_EQ(coil_future_set_result(b, as_ptr(2)), COIL_EINVALSTATE);
        EXPECT_EQ(coil_future_set_exception(b, -EPIPE, "second"), COIL_EINVALSTATE);
        EXPECT_EQ(coil_future_result(b, nullptr), -EIO);
        EXPECT_STREQ(coil_exception_message(coil_future_exception(b)), "first");

        EXPECT_EQ(coil_future_cancel(c, nullptr), 1);
        EXPECT_EQ(coil_future_set_result(c, as_ptr(3)), COIL_EINVALSTATE);
        EXPECT_EQ(coil_future_result(c, nullptr), -ECANCELED);
        coil_future_free(a);
        coil_future_free(b);
        coil_future_free(c);
        return nullptr;
    });
}

TEST(Future, SetResultOrExceptionOnATasksViewIsEinval)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, [](void *) -> void * { return as_ptr(6); }, nullptr, nullptr), 0);
        coil_future *view = coil_task_future(t);
        EXPECT_EQ(coil_future_task(view), t);
        EXPECT_EQ(coil_future_set_result(view, as_ptr(1)), -EINVAL);
        EXPECT_EQ(coil_future_set_exception(view, -EIO, "no"), -EINVAL);
        EXPECT_FALSE(coil_future_done(view));
        void *r = nullptr;
        EXPECT_EQ(coil_future_await(view, &r), 0);
        EXPECT_EQ(as_int(r), 6) << "the task's own result, untouched";
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Future, PlainFutureHasNoTaskBehindIt)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_task(f), nullptr);
        EXPECT_EQ(coil_future_task(nullptr), nullptr);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, ResultBeforeDoneIsInvalidState)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        void *r = as_ptr(-1);
        EXPECT_EQ(coil_future_result(f, &r), COIL_EINVALSTATE);
        EXPECT_EQ(as_int(r), -1);
        EXPECT_EQ(coil_future_exception(f), nullptr);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, NullArgumentsAreRejectedWithoutCrashing)
{
    coil_test::run([]() -> void * {
        EXPECT_EQ(coil_future_new(nullptr), -EINVAL);
        EXPECT_EQ(coil_future_set_result(nullptr, nullptr), -EINVAL);
        EXPECT_EQ(coil_future_set_exception(nullptr, -EIO, "x"), -EINVAL);
        EXPECT_EQ(coil_future_cancel(nullptr, nullptr), 0);
        EXPECT_EQ(coil_future_await(nullptr, nullptr), -EINVAL);
        EXPECT_EQ(coil_future_add_done_callback(nullptr, [](coil_future *, void *) {}, nullptr), -EINVAL);
        EXPECT_EQ(coil_future_remove_done_callback(nullptr, [](coil_future *, void *) {}, nullptr), 0);
        coil_future_free(nullptr);
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_add_done_callback(f, nullptr, nullptr), -EINVAL);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, AwaitFromOutsideATaskIsENotask)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_future *f = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    EXPECT_EQ(coil_future_await(f, nullptr), COIL_ENOTASK);
    coil_future_free(f);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

TEST(Future, AwaitingAFutureOfAnotherLoopIsEWrongLoop)
{
    coil_loop *other = nullptr;
    ASSERT_EQ(coil_new_event_loop(&other, nullptr), 0);
    coil_future *foreign = nullptr;
    ASSERT_EQ(coil_loop_create_future(other, &foreign), 0);
    coil_test::run([foreign]() -> void * {
        EXPECT_EQ(coil_future_await(foreign, nullptr), COIL_EWRONGLOOP);
        return nullptr;
    });
    coil_future_free(foreign);
    EXPECT_EQ(coil_loop_close(other), 0);
}

TEST(Future, SeveralTasksAwaitingOneFutureAllWakeInFifoOrder)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        std::vector<int> order;
        int arrived = 0;
        const int n = 8;
        Waiter ws[n];
        coil_task *ts[n];
        // Create them in an order different from the index so FIFO is about await order.
        const int await_order[n] = {3, 0, 7, 1, 6, 2, 5, 4};
        for (int k = 0; k < n; k++) {
            int i = await_order[k];
            ws[i].f = f;
            ws[i].order = &order;
            ws[i].index = i;
            ws[i].arrived = &arrived;
            EXPECT_EQ(coil_create_task(&ts[i], wait_on, &ws[i], nullptr), 0);
        }
        EXPECT_TRUE(yield_until([&] { return arrived == n; }));
        EXPECT_EQ(coil_future_set_result(f, as_ptr(5)), 0);
        for (auto &t : ts) {
            EXPECT_EQ(coil_task_await(t, nullptr), 0);
            coil_task_free(t);
        }
        EXPECT_EQ(order, std::vector<int>(await_order, await_order + n));
        for (auto &w : ws) {
            EXPECT_EQ(w.rc, 0);
            EXPECT_EQ(as_int(w.value), 5);
        }
        coil_future_free(f);
        return nullptr;
    });
}

struct CbLog {
    std::vector<int> calls;
    coil_future *seen = nullptr;
};

struct CbArg {
    CbLog *log;
    int id;
};

void record_cb(coil_future *f, void *arg)
{
    auto *a = static_cast<CbArg *>(arg);
    a->log->calls.push_back(a->id);
    a->log->seen = f;
}

TEST(Future, DoneCallbacksRunInRegistrationOrderThroughTheLoopNotInsideSetResult)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        CbLog log;
        CbArg a1{&log, 1}, a2{&log, 2}, a3{&log, 3};
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a2), 0);
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a1), 0);
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a3), 0);
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        EXPECT_TRUE(log.calls.empty()) << "callbacks ran synchronously inside set_result";
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(log.calls, (std::vector<int>{2, 1, 3}));
        EXPECT_EQ(log.seen, f) << "the callback is given the future";
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, DoneCallbacksAndWaitingTasksShareOneFifoOrder)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        std::vector<int> order;
        CbLog log;
        Waiter w;
        w.f = f;
        w.order = &order;
        w.index = 100;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0); // t waits first
        struct Pair {
            std::vector<int> *order;
            int id;
        } p{&order, 1};
        EXPECT_EQ(coil_future_add_done_callback(
                      f, [](coil_future *, void *arg) { static_cast<Pair *>(arg)->order->push_back(static_cast<Pair *>(arg)->id); },
                      &p),
                  0);
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_TRUE(yield_until([&] { return order.size() == 2; }));
        EXPECT_EQ(order, (std::vector<int>{100, 1}));
        coil_task_free(t);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, AddDoneCallbackOnADoneFutureSchedulesItSoon)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        CbLog log;
        CbArg a{&log, 9};
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a), 0);
        EXPECT_TRUE(log.calls.empty()) << "not called synchronously";
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(log.calls, (std::vector<int>{9}));
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, RemoveDoneCallbackReturnsHowManyRegistrationsItRemoved)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        CbLog log;
        CbArg a{&log, 1}, b{&log, 2};
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a), 0);
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &b), 0);
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a), 0);
        EXPECT_EQ(coil_future_remove_done_callback(f, record_cb, &a), 2);
        EXPECT_EQ(coil_future_remove_done_callback(f, record_cb, &a), 0);
        EXPECT_EQ(coil_future_remove_done_callback(f, [](coil_future *, void *) {}, &b), 0)
            << "the (fn, arg) pair must match";
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(log.calls, (std::vector<int>{2}));
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, RemoveDoneCallbackLeavesWaitingTasksAlone)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        Waiter w;
        w.f = f;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        CbLog log;
        CbArg a{&log, 1};
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a), 0);
        EXPECT_EQ(coil_future_remove_done_callback(f, record_cb, &a), 1);
        EXPECT_EQ(coil_future_set_result(f, as_ptr(4)), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(as_int(w.value), 4);
        EXPECT_TRUE(log.calls.empty());
        coil_task_free(t);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Future, TaskDoneCallbackRunsWithTheTasksFutureView)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, [](void *) -> void * { return as_ptr(2); }, nullptr, nullptr), 0);
        CbLog log;
        CbArg a{&log, 1};
        EXPECT_EQ(coil_task_add_done_callback(t, record_cb, &a), 0);
        EXPECT_EQ(coil_task_add_done_callback(t, record_cb, &a), 0);
        EXPECT_EQ(coil_task_remove_done_callback(t, record_cb, &a), 2);
        EXPECT_EQ(coil_task_add_done_callback(t, record_cb, &a), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_TRUE(yield_until([&] { return !log.calls.empty(); }));
        EXPECT_EQ(log.calls.size(), 1u);
        EXPECT_EQ(log.seen, coil_task_future(t));
        EXPECT_EQ(coil_future_task(log.seen), t);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Future, FreedAfterSetResultTheWaiterStillGetsTheValue)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        Waiter w;
        w.f = f;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_future_set_result(f, as_ptr(77)), 0);
        coil_future_free(f); // the waiter has been woken but has not read the outcome yet
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(w.rc, 0);
        EXPECT_EQ(as_int(w.value), 77);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Future, FreedWhileAwaitedStaysValidUntilTheWaiterIsCancelled)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        Waiter w;
        w.f = f;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, wait_on, &w, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        coil_future_free(f); // still pending, still awaited
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1); // cancels the (freed-by-its-owner) future
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(w.rc, -ECANCELED);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Future, FreedWithACallbackPendingStillRunsTheCallback)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_future_new(&f), 0);
        CbLog log;
        CbArg a{&log, 5};
        EXPECT_EQ(coil_future_add_done_callback(f, record_cb, &a), 0);
        EXPECT_EQ(coil_future_set_result(f, nullptr), 0);
        coil_future_free(f);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(log.calls, (std::vector<int>{5}));
        return nullptr;
    });
}

struct HandlerLog {
    int calls = 0;
    int code = 0;
    bool had_future = false;
    bool had_task = false;
    std::string message;
};

void log_handler(coil_loop *, const coil_exc_context *ctx, void *arg)
{
    auto *h = static_cast<HandlerLog *>(arg);
    h->calls++;
    h->code = ctx->code;
    h->had_future = ctx->future != nullptr;
    h->had_task = ctx->task != nullptr;
    h->message = ctx->message ? ctx->message : "";
}

TEST(Future, AnExceptionNeverRetrievedIsReportedWhenTheFutureIsFreed)
{
    coil_test::run([]() -> void * {
        HandlerLog h;
        coil_loop_set_exception_handler(coil_get_running_loop(), log_handler, &h);
        coil_future *lost = nullptr, *seen = nullptr;
        EXPECT_EQ(coil_future_new(&lost), 0);
        EXPECT_EQ(coil_future_new(&seen), 0);
        EXPECT_EQ(coil_future_set_exception(lost, -EPIPE, "lost"), 0);
        EXPECT_EQ(coil_future_set_exception(seen, -EPIPE, "seen"), 0);
        EXPECT_EQ(coil_future_result(seen, nullptr), -EPIPE);
        coil_future_free(seen);
        EXPECT_EQ(h.calls, 0) << "a retrieved exception is not reported";
        coil_future_free(lost);
        EXPECT_EQ(h.calls, 1);
        EXPECT_EQ(h.code, -EPIPE);
        EXPECT_TRUE(h.had_future);
        EXPECT_FALSE(h.had_task);
        EXPECT_NE(h.message.find("never retrieved"), std::string::npos) << h.message;
        coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr);
        return nullptr;
    });
}

} // namespace
