// asyncio.Condition semantics (3.13+): wait releases and re-acquires the lock (even when
// cancelled), notify(n)/notify_all wake FIFO, and using it without the lock is an error.
#include <cerrno>
#include <functional>
#include <vector>

#include "coil_test.h"

namespace {

void finish(coil_task *t)
{
    coil_task_await(t, nullptr);
    coil_task_free(t);
}

struct Cv {
    coil_condition *c = nullptr;
    Cv(coil_lock *l = nullptr) { EXPECT_EQ(coil_condition_new(&c, l), 0); }
    ~Cv() { EXPECT_EQ(coil_condition_free(c), 0); }
};

// A task that takes the lock, waits once, records its id and its wait result, releases.
coil_task *waiter(coil_condition *c, int id, std::vector<int> &order, int *rc, bool *held_after = nullptr)
{
    coil_task *t = nullptr;
    coil_test::spawn(&t, [=, &order]() -> void * {
        EXPECT_EQ(coil_condition_acquire(c), 0);
        *rc = coil_condition_wait(c);
        if (held_after)
            *held_after = coil_condition_locked(c);
        if (*rc == 0)
            order.push_back(id);
        EXPECT_EQ(coil_condition_release(c), 0);
        return nullptr;
    });
    return t;
}

TEST(Condition, WaitAndNotifyWithoutTheLockAreErrors)
{
    coil_test::run([] {
        Cv cv;
        EXPECT_EQ(coil_condition_wait(cv.c), COIL_EINVALSTATE);
        EXPECT_EQ(coil_condition_notify(cv.c, 1), COIL_EINVALSTATE);
        EXPECT_EQ(coil_condition_notify_all(cv.c), COIL_EINVALSTATE);
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_notify(cv.c, 1), 0); // nobody waits: fine
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        return nullptr;
    });
}

TEST(Condition, WaitReleasesTheLockWhileWaitingAndHoldsItAgainOnReturn)
{
    coil_test::run([] {
        Cv cv;
        std::vector<int> order;
        int rc = 1;
        bool held = false;
        coil_task *t = waiter(cv.c, 1, order, &rc, &held);
        coil_sleep(0);
        EXPECT_FALSE(coil_condition_locked(cv.c)); // released by wait
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_notify(cv.c, 1), 0);
        coil_sleep(0);
        coil_sleep(0);
        EXPECT_TRUE(order.empty()); // notified, but the lock is still ours
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        finish(t);
        EXPECT_EQ(rc, 0);
        EXPECT_TRUE(held);
        EXPECT_EQ(order, (std::vector<int>{ 1 }));
        return nullptr;
    });
}

TEST(Condition, NotifyWakesAtMostNWaitersInFifoOrder)
{
    coil_test::run([] {
        Cv cv;
        std::vector<int> order;
        int rc[4];
        coil_task *ts[4];
        for (int i = 0; i < 4; i++)
            ts[i] = waiter(cv.c, i, order, &rc[i]);
        coil_sleep(0);
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_notify(cv.c, 2), 0);
        EXPECT_EQ(coil_condition_notify(cv.c, 0), 0);
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        finish(ts[0]);
        finish(ts[1]);
        for (int i = 0; i < 5; i++)
            coil_sleep(0);
        EXPECT_EQ(order, (std::vector<int>{ 0, 1 }));
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_notify_all(cv.c), 0);
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        finish(ts[2]);
        finish(ts[3]);
        EXPECT_EQ(order, (std::vector<int>{ 0, 1, 2, 3 }));
        return nullptr;
    });
}

TEST(Condition, CancelledWaitReacquiresTheLockBeforeReturningEcanceled)
{
    coil_test::run([] {
        Cv cv;
        std::vector<int> order;
        int rc = 1;
        bool held = false;
        coil_task *t = waiter(cv.c, 1, order, &rc, &held);
        coil_sleep(0);
        EXPECT_EQ(coil_condition_acquire(cv.c), 0); // so the re-acquire has to wait
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        coil_sleep(0);
        coil_sleep(0);
        EXPECT_FALSE(coil_task_done(t)); // blocked re-acquiring
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        finish(t);
        EXPECT_EQ(rc, -ECANCELED);
        EXPECT_TRUE(held);
        EXPECT_FALSE(coil_condition_locked(cv.c));
        return nullptr;
    });
}

TEST(Condition, CancelWhileReacquiringStillReacquiresThenReportsIt)
{
    coil_test::run([] {
        Cv cv;
        std::vector<int> order;
        int rc = 1;
        bool held = false;
        coil_task *t = waiter(cv.c, 1, order, &rc, &held);
        coil_sleep(0);
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_notify(cv.c, 1), 0);
        coil_sleep(0); // t runs, queues on the lock
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        coil_sleep(0);
        EXPECT_FALSE(coil_task_done(t));
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        finish(t);
        EXPECT_EQ(rc, -ECANCELED);
        EXPECT_TRUE(held);
        return nullptr;
    });
}

TEST(Condition, WaiterCancelledAtTheMomentOfNotifyPassesTheNotificationOn)
{
    coil_test::run([] {
        Cv cv;
        std::vector<int> order;
        int ra = 1, rb = 1;
        coil_task *a = waiter(cv.c, 1, order, &ra);
        coil_task *b = waiter(cv.c, 2, order, &rb);
        coil_sleep(0);
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_notify(cv.c, 1), 0); // wakes a
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1); // before a ran
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        finish(a);
        finish(b);
        EXPECT_EQ(ra, -ECANCELED);
        EXPECT_EQ(rb, 0);
        EXPECT_EQ(order, (std::vector<int>{ 2 }));
        return nullptr;
    });
}

TEST(Condition, WaitForChecksThePredicateFirstAndAfterEveryWakeUp)
{
    coil_test::run([] {
        Cv cv;
        int value = 0, checks = 0;
        struct Ctx {
            int *value, *checks;
        } ctx{ &value, &checks };
        auto pred = [](void *arg) -> bool {
            auto *c = static_cast<Ctx *>(arg);
            (*c->checks)++;
            return *c->value >= 3;
        };
        int rc = 1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            EXPECT_EQ(coil_condition_acquire(cv.c), 0);
            rc = coil_condition_wait_for(cv.c, pred, &ctx);
            EXPECT_GE(value, 3);
            EXPECT_EQ(coil_condition_release(cv.c), 0);
            return nullptr;
        });
        coil_sleep(0);
        EXPECT_EQ(checks, 1);
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(coil_condition_acquire(cv.c), 0);
            value++;
            EXPECT_EQ(coil_condition_notify_all(cv.c), 0);
            EXPECT_EQ(coil_condition_release(cv.c), 0);
            coil_sleep(0);
            coil_sleep(0);
        }
        finish(t);
        EXPECT_EQ(rc, 0);
        EXPECT_EQ(checks, 4);
        // A predicate already true returns at once.
        EXPECT_EQ(coil_condition_acquire(cv.c), 0);
        EXPECT_EQ(coil_condition_wait_for(cv.c, pred, &ctx), 0);
        EXPECT_EQ(coil_condition_release(cv.c), 0);
        return nullptr;
    });
}

TEST(Condition, UsesTheLockItWasGiven)
{
    coil_test::run([] {
        coil_lock *l = nullptr;
        EXPECT_EQ(coil_lock_new(&l), 0);
        {
            Cv cv(l);
            EXPECT_EQ(coil_condition_lock(cv.c), l);
            EXPECT_EQ(coil_lock_acquire(l), 0);
            EXPECT_TRUE(coil_condition_locked(cv.c));
            EXPECT_EQ(coil_condition_notify(cv.c, 1), 0);
            EXPECT_EQ(coil_lock_release(l), 0);
        }
        EXPECT_EQ(coil_lock_free(l), 0); // the condition did not free a lock it borrowed
        return nullptr;
    });
}

TEST(Condition, ErrorsForBadUse)
{
    coil_condition *c = nullptr;
    EXPECT_EQ(coil_condition_new(nullptr, nullptr), -EINVAL);
    ASSERT_EQ(coil_condition_new(&c, nullptr), 0);
    EXPECT_EQ(coil_condition_wait(c), COIL_ENOTASK);
    EXPECT_EQ(coil_condition_wait_for(c, nullptr, nullptr), -EINVAL);
    coil_test::run([&] {
        std::vector<int> order;
        int rc = 1;
        coil_task *t = waiter(c, 1, order, &rc);
        coil_sleep(0);
        EXPECT_EQ(coil_condition_free(c), -EBUSY);
        EXPECT_EQ(coil_condition_acquire(c), 0);
        EXPECT_EQ(coil_condition_notify_all(c), 0);
        EXPECT_EQ(coil_condition_release(c), 0);
        finish(t);
        EXPECT_EQ(rc, 0);
        return nullptr;
    });
    EXPECT_EQ(coil_condition_free(c), 0);
}

} // namespace
