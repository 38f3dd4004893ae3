// Cancellation, asyncio 3.11+ semantics: cancel/uncancel/cancelling, delivery at await points,
// propagation into awaited futures and tasks, swallowing, messages, and late cancels.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <string>

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

// State shared between a test body and the task it cancels. Lives in the main task's frame,
// which is on a dedicated stack (the runner's loop defaults to AUTO).
struct Probe {
    coil_future *started = nullptr; // set by the task just before its cancellable await
    coil_future *awaited = nullptr; // what the task awaits, when it awaits a future
    coil_task *inner = nullptr;     // what the task awaits, when it awaits a task
    bool body_ran = false;
    int first = 1;  // what the first await returned
    int second = 1; // what a later await returned
    int cancelling_seen = -1;
    intptr_t swallow_value = 0;
};

void *sleeper(void *arg)
{
    auto *p = static_cast<Probe *>(arg);
    p->body_ran = true;
    if (p->started)
        coil_future_set_result(p->started, nullptr);
    p->first = coil_sleep(10);
    return p->first ? coil_raise(p->first, nullptr) : as_ptr(1);
}

double now() { return coil_loop_time(coil_get_running_loop()); }

TEST(Cancel, CancelBeforeStartNeverRunsTheBody)
{
    coil_test::run([]() -> void * {
        Probe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, sleeper, &p, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_cancelling(t), 1);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_FALSE(p.body_ran);
        EXPECT_TRUE(coil_task_done(t));
        EXPECT_TRUE(coil_task_cancelled(t));
        EXPECT_EQ(coil_task_result(t, nullptr), -ECANCELED);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Cancel, CancelWhileSleepingWakesTheSleeperAtOnceWithECanceled)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, sleeper, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_TRUE(yield_until([&] { return coil_all_tasks(nullptr, nullptr, 0) == 2; }));
        double t0 = now();
        EXPECT_EQ(coil_task_cancel(t, "wake up"), 1);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_LT(now() - t0, 2.0) << "the 10 s sleep was not interrupted";
        EXPECT_EQ(p.first, -ECANCELED);
        EXPECT_TRUE(coil_task_cancelled(t));
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

void *future_waiter(void *arg)
{
    auto *p = static_cast<Probe *>(arg);
    if (p->started)
        coil_future_set_result(p->started, nullptr);
    p->first = coil_future_await(p->awaited, nullptr);
    return p->first ? coil_raise(p->first, nullptr) : as_ptr(1);
}

TEST(Cancel, CancellingATaskAwaitingAFutureCancelsTheFuture)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        EXPECT_EQ(coil_future_new(&p.awaited), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, future_waiter, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0); // t is now suspended in its await
        EXPECT_EQ(coil_task_cancel(t, "go away"), 1);
        EXPECT_TRUE(coil_future_cancelled(p.awaited)) << "the awaited future is cancelled right away";
        const coil_exception *fe = coil_future_exception(p.awaited);
        EXPECT_STREQ(coil_exception_message(fe), "go away") << "the future carries the cancel message";
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_EQ(p.first, -ECANCELED);
        EXPECT_TRUE(coil_task_cancelled(t));
        coil_task_free(t);
        coil_future_free(p.awaited);
        coil_future_free(p.started);
        return nullptr;
    });
}

void *task_waiter(void *arg)
{
    auto *p = static_cast<Probe *>(arg);
    if (p->started)
        coil_future_set_result(p->started, nullptr);
    void *r = nullptr;
    p->first = coil_task_await(p->inner, &r);
    p->cancelling_seen = coil_task_cancelling(coil_current_task());
    return p->first ? coil_raise(p->first, nullptr) : r;
}

TEST(Cancel, CancellingATaskAwaitingATaskCancelsTheInnerTask)
{
    coil_test::run([]() -> void * {
        Probe inner_p, outer_p;
        EXPECT_EQ(coil_future_new(&inner_p.started), 0);
        EXPECT_EQ(coil_create_task(&outer_p.inner, sleeper, &inner_p, nullptr), 0);
        coil_task *outer = nullptr;
        EXPECT_EQ(coil_create_task(&outer, task_waiter, &outer_p, nullptr), 0);
        EXPECT_EQ(coil_future_await(inner_p.started, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(outer, "outer msg"), 1);
        EXPECT_EQ(coil_task_cancelling(outer_p.inner), 1) << "the request was forwarded at once";
        EXPECT_EQ(coil_task_await(outer, nullptr), -ECANCELED);
        EXPECT_TRUE(coil_task_cancelled(outer));
        EXPECT_TRUE(coil_task_cancelled(outer_p.inner));
        EXPECT_EQ(inner_p.first, -ECANCELED);
        const coil_exception *e = coil_task_exception(outer_p.inner);
        EXPECT_STREQ(coil_exception_message(e), "outer msg") << "the inner task got the outer's message";
        coil_task_free(outer);
        coil_task_free(outer_p.inner);
        coil_future_free(inner_p.started);
        return nullptr;
    });
}

// Swallows the first cancellation (asyncio: `except CancelledError: return 42`).
void *swallower(void *arg)
{
    auto *p = static_cast<Probe *>(arg);
    if (p->started)
        coil_future_set_result(p->started, nullptr);
    p->first = coil_sleep(10);
    return as_ptr(p->swallow_value);
}

TEST(Cancel, OuterGetsTheValueWhenTheInnerTaskSwallowsTheCancellation)
{
    coil_test::run([]() -> void * {
        Probe inner_p, outer_p;
        inner_p.swallow_value = 42;
        EXPECT_EQ(coil_future_new(&inner_p.started), 0);
        EXPECT_EQ(coil_create_task(&outer_p.inner, swallower, &inner_p, nullptr), 0);
        coil_task *outer = nullptr;
        EXPECT_EQ(coil_create_task(&outer, task_waiter, &outer_p, nullptr), 0);
        EXPECT_EQ(coil_future_await(inner_p.started, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(outer, nullptr), 1);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(outer, &r), 0);
        EXPECT_EQ(as_int(r), 42);
        EXPECT_EQ(outer_p.first, 0) << "the outer's await returned the inner's value, as in asyncio";
        EXPECT_EQ(outer_p.cancelling_seen, 1) << "the request still counts on the outer task";
        EXPECT_EQ(inner_p.first, -ECANCELED);
        EXPECT_FALSE(coil_task_cancelled(outer));
        EXPECT_FALSE(coil_task_cancelled(outer_p.inner));
        coil_task_free(outer);
        coil_task_free(outer_p.inner);
        coil_future_free(inner_p.started);
        return nullptr;
    });
}

void *double_cancel_body(void *arg)
{
    auto *p = static_cast<Probe *>(arg);
    coil_future_set_result(p->started, nullptr);
    p->first = coil_sleep(10);
    p->cancelling_seen = coil_task_cancelling(coil_current_task());
    p->second = coil_sleep(0.001);
    return as_ptr(5);
}

TEST(Cancel, CancellingTwiceDeliversOneECanceledAndCountsTwo)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, double_cancel_body, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_cancelling(t), 2);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(p.first, -ECANCELED);
        EXPECT_EQ(p.cancelling_seen, 2);
        EXPECT_EQ(p.second, 0) << "the second request must not be delivered again";
        EXPECT_EQ(as_int(r), 5);
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, CancellingTwiceBeforeStartStillNeverRunsTheBody)
{
    coil_test::run([]() -> void * {
        Probe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, sleeper, &p, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(t, "one"), 1);
        EXPECT_EQ(coil_task_cancel(t, "two"), 1);
        EXPECT_EQ(coil_task_cancelling(t), 2);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_FALSE(p.body_ran);
        EXPECT_STREQ(coil_exception_message(coil_task_exception(t)), "two") << "the latest message wins";
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Cancel, UncancelDecrementsTheCountDownToZero)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, swallower, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_EQ(coil_task_cancelling(t), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_uncancel(t), 2);
        EXPECT_EQ(coil_task_cancelling(t), 2);
        EXPECT_EQ(coil_task_uncancel(t), 1);
        EXPECT_EQ(coil_task_uncancel(t), 0);
        EXPECT_EQ(coil_task_uncancel(t), 0) << "never below zero";
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, UncancelToZeroForgetsARequestNotYetDelivered)
{
    coil_test::run([]() -> void * {
        Probe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       auto *q = static_cast<Probe *>(arg);
                                       q->body_ran = true;
                                       q->first = coil_sleep(0);
                                       return as_ptr(3);
                                   },
                                   &p, nullptr),
                  0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_uncancel(t), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_TRUE(p.body_ran) << "asyncio 3.13: uncancel to zero withdraws the pending request";
        EXPECT_EQ(p.first, 0);
        EXPECT_EQ(as_int(r), 3);
        EXPECT_FALSE(coil_task_cancelled(t));
        coil_task_free(t);
        return nullptr;
    });
}

void *swallow_and_go_on(void *arg)
{
    auto *p = static_cast<Probe *>(arg);
    coil_future_set_result(p->started, nullptr);
    p->first = coil_sleep(10);
    if (p->first == -ECANCELED)
        coil_task_uncancel(coil_current_task());
    p->cancelling_seen = coil_task_cancelling(coil_current_task());
    p->second = coil_sleep(0.001);
    if (p->second != 0)
        return coil_raise(p->second, "second sleep");
    return as_ptr(11);
}

TEST(Cancel, TaskThatSwallowsACancellationGoesOnAndIsNotCancelled)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, swallow_and_go_on, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(p.first, -ECANCELED);
        EXPECT_EQ(p.cancelling_seen, 0);
        EXPECT_EQ(p.second, 0) << "a later sleep runs to completion";
        EXPECT_EQ(as_int(r), 11);
        EXPECT_FALSE(coil_task_cancelled(t));
        EXPECT_EQ(coil_task_exception(t), nullptr);
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, CancelOfADoneTaskReturnsZeroAndChangesNothing)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, [](void *) -> void * { return as_ptr(4); }, nullptr, nullptr), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(t, "late"), 0);
        EXPECT_EQ(coil_task_cancelling(t), 0);
        EXPECT_FALSE(coil_task_cancelled(t));
        void *r = nullptr;
        EXPECT_EQ(coil_task_result(t, &r), 0);
        EXPECT_EQ(as_int(r), 4);
        EXPECT_EQ(coil_future_cancel(coil_task_future(t), nullptr), 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Cancel, TheCancelMessageIsCarriedIntoTheCancelledTasksException)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task_opts o{};
        o.name = "victim";
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, sleeper, &p, &o), 0); // returns coil_raise(-ECANCELED, NULL)
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        std::string msg = "shutting down";
        EXPECT_EQ(coil_task_cancel(t, msg.c_str()), 1);
        msg = "overwritten"; // the message was copied
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        const coil_exception *e = coil_task_exception(t);
        EXPECT_NE(e, nullptr);
        EXPECT_EQ(coil_exception_code(e), -ECANCELED);
        EXPECT_STREQ(coil_exception_message(e), "shutting down");
        EXPECT_STREQ(coil_exception_task_name(e), "victim");
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, TheCancelMessageReachesATaskCancelledBeforeStart)
{
    coil_test::run([]() -> void * {
        Probe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, sleeper, &p, nullptr), 0);
        EXPECT_EQ(coil_task_cancel(t, "never started"), 1);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_STREQ(coil_exception_message(coil_task_exception(t)), "never started");
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Cancel, ACancelLandingAfterTheFutureWasSetButBeforeTheTaskRanWins)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        EXPECT_EQ(coil_future_new(&p.awaited), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, future_waiter, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0); // t is suspended on p.awaited
        EXPECT_EQ(coil_future_set_result(p.awaited, as_ptr(9)), 0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1) << "t is woken but has not run: still cancellable";
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_EQ(p.first, -ECANCELED) << "asyncio: the await raises CancelledError";
        EXPECT_TRUE(coil_task_cancelled(t));
        // The future itself keeps its result.
        void *r = nullptr;
        EXPECT_EQ(coil_future_result(p.awaited, &r), 0);
        EXPECT_EQ(as_int(r), 9);
        coil_task_free(t);
        coil_future_free(p.awaited);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, APlainYieldSeesAPendingCancel)
{
    coil_test::run([]() -> void * {
        Probe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       auto *q = static_cast<Probe *>(arg);
                                       EXPECT_EQ(coil_task_cancel(coil_current_task(), nullptr), 1);
                                       q->first = coil_sleep(0);
                                       q->second = coil_sleep(0);
                                       return as_ptr(1);
                                   },
                                   &p, nullptr),
                  0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(p.first, -ECANCELED);
        EXPECT_EQ(p.second, 0) << "delivered exactly once";
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Cancel, ACancelWhileYieldedInTheReadyQueueIsDeliveredByThatYield)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       auto *q = static_cast<Probe *>(arg);
                                       coil_future_set_result(q->started, nullptr);
                                       q->first = coil_sleep(0);
                                       return as_ptr(1);
                                   },
                                   &p, nullptr),
                  0);
        // Run t up to its yield: it sets `started`, which wakes us, then queues itself behind us.
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_FALSE(coil_task_done(t));
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(p.first, -ECANCELED);
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, ARunningTaskCancellingItselfSeesItAtItsNextAwait)
{
    coil_test::run([]() -> void * {
        Probe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       auto *q = static_cast<Probe *>(arg);
                                       coil_task_cancel(coil_current_task(), "self");
                                       q->cancelling_seen = coil_task_cancelling(coil_current_task());
                                       q->first = coil_sleep(5);
                                       return coil_raise(q->first, nullptr);
                                   },
                                   &p, nullptr),
                  0);
        double t0 = now();
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        EXPECT_LT(now() - t0, 2.0);
        EXPECT_EQ(p.cancelling_seen, 1);
        EXPECT_EQ(p.first, -ECANCELED);
        EXPECT_STREQ(coil_exception_message(coil_task_exception(t)), "self");
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Cancel, CancellingTheAwaiterOfAFutureThroughTheTaskViewCancelsTheTask)
{
    coil_test::run([]() -> void * {
        Probe p;
        EXPECT_EQ(coil_future_new(&p.started), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, sleeper, &p, nullptr), 0);
        EXPECT_EQ(coil_future_await(p.started, nullptr), 0);
        EXPECT_EQ(coil_future_cancel(coil_task_future(t), "via view"), 1);
        EXPECT_EQ(coil_future_await(coil_task_future(t), nullptr), -ECANCELED);
        EXPECT_TRUE(coil_future_cancelled(coil_task_future(t)));
        EXPECT_STREQ(coil_exception_message(coil_future_exception(coil_task_future(t))), "via view");
        coil_task_free(t);
        coil_future_free(p.started);
        return nullptr;
    });
}

TEST(Cancel, CancellingTheMainTaskAtAnAwaitEndsTheRunWithECanceled)
{
    int rc = coil_test::run([]() -> void * {
        coil_task_cancel(coil_current_task(), nullptr);
        int r = coil_sleep(10);
        EXPECT_EQ(r, -ECANCELED);
        return coil_raise(r, nullptr);
    });
    EXPECT_EQ(rc, -ECANCELED);
}

TEST(Cancel, CancelledWaiterOnAPendingTaskLeavesThatTaskRunning)
{
    // asyncio forwards the cancel to the awaited task; an awaited task that swallows it runs on
    // and its waiter gets the value. Here the awaited task finishes normally after uncancel.
    coil_test::run([]() -> void * {
        Probe inner_p, outer_p;
        inner_p.swallow_value = 8;
        EXPECT_EQ(coil_future_new(&inner_p.started), 0);
        EXPECT_EQ(coil_create_task(&outer_p.inner, swallower, &inner_p, nullptr), 0);
        coil_task *a = nullptr, *b = nullptr;
        EXPECT_EQ(coil_create_task(&a, task_waiter, &outer_p, nullptr), 0);
        Probe other;
        other.inner = outer_p.inner;
        EXPECT_EQ(coil_create_task(&b, task_waiter, &other, nullptr), 0);
        EXPECT_EQ(coil_future_await(inner_p.started, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1);
        void *ra = nullptr, *rb = nullptr;
        EXPECT_EQ(coil_task_await(a, &ra), 0);
        EXPECT_EQ(coil_task_await(b, &rb), 0);
        EXPECT_EQ(as_int(ra), 8);
        EXPECT_EQ(as_int(rb), 8) << "the other waiter is unaffected";
        coil_task_free(a);
        coil_task_free(b);
        coil_task_free(outer_p.inner);
        coil_future_free(inner_p.started);
        return nullptr;
    });
}

} // namespace

namespace {
struct Cycle {
    coil_task *a = nullptr, *b = nullptr;
    int a_started = 0, b_started = 0;
};
void *cycle_a(void *arg)
{
    auto *c = static_cast<Cycle *>(arg);
    c->a_started = 1;
    while (!c->b)
        coil_sleep(0);
    return coil_task_await(c->b, nullptr) == 0 ? nullptr : coil_raise(-ECANCELED, nullptr);
}
void *cycle_b(void *arg)
{
    auto *c = static_cast<Cycle *>(arg);
    c->b_started = 1;
    return coil_task_await(c->a, nullptr) == 0 ? nullptr : coil_raise(-ECANCELED, nullptr);
}
} // namespace

// An await cycle never completes (as in asyncio), but cancelling into it must not chase the
// cycle forever: the cancel reaches each task once and the loop stays healthy.
TEST(Cancel, CancellingATaskInAnAwaitCycleReachesEachTaskOnceWithoutRecursingForever)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    int destroyed = 0;
    coil_loop_set_exception_handler(
        loop, [](coil_loop *, const coil_exc_context *, void *arg) { ++*static_cast<int *>(arg); }, &destroyed);
    Cycle c;
    ASSERT_EQ(coil_loop_create_task(loop, &c.a, cycle_a, &c, nullptr), 0);
    ASSERT_EQ(coil_loop_create_task(loop, &c.b, cycle_b, &c, nullptr), 0);
    coil_task *main = nullptr;
    ASSERT_EQ(coil_loop_create_task(loop, &main,
                                    [](void *arg) -> void * {
                                        auto *c = static_cast<Cycle *>(arg);
                                        for (int i = 0; i < 10; i++)
                                            coil_sleep(0); // both are suspended on each other now
                                        EXPECT_EQ(coil_task_cancel(c->a, "break it"), 1);
                                        EXPECT_EQ(coil_task_cancelling(c->a), 2); // its own + the echo
                                        EXPECT_EQ(coil_task_cancelling(c->b), 1);
                                        EXPECT_FALSE(coil_task_done(c->a));
                                        return nullptr;
                                    },
                                    &c, nullptr),
              0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(main), nullptr), 0);
    EXPECT_TRUE(c.a_started && c.b_started);
    coil_task_free(main);
    coil_task_free(c.a);
    coil_task_free(c.b);
    EXPECT_EQ(coil_loop_close(loop), 0);
    EXPECT_EQ(destroyed, 2); // both reported as destroyed while pending
}
