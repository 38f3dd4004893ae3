// asyncio.Lock semantics (3.12): FIFO fairness, no barging, cancellation without lost wake-ups.
#include <cerrno>
#include <functional>
#include <vector>

#include "coil_test.h"

namespace {

bool yield_until(const std::function<bool()> &cond, int max = 1000)
{
    for (int i = 0; i < max && !cond(); i++)
        coil_sleep(0);
    return cond();
}

struct Lk {
    coil_lock *l = nullptr;
    Lk() { EXPECT_EQ(coil_lock_new(&l), 0); }
    ~Lk() { EXPECT_EQ(coil_lock_free(l), 0); }
};

// A task that takes the lock, records its id, and releases it.
coil_task *locker(coil_lock *l, int id, std::vector<int> &order, int *rc, const coil_task_opts *o = nullptr)
{
    coil_task *t = nullptr;
    coil_test::spawn(&t, [=, &order]() -> void * {
        *rc = coil_lock_acquire(l);
        if (*rc == 0) {
            order.push_back(id);
            coil_sleep(0); // hold it across an await
            EXPECT_EQ(coil_lock_release(l), 0);
        }
        return nullptr;
    }, o);
    return t;
}

void finish(coil_task *t)
{
    coil_task_await(t, nullptr);
    coil_task_free(t);
}

TEST(Lock, FreeLockIsTakenAtOnceWithoutAnAwait)
{
    coil_test::run([] {
        Lk lk;
        EXPECT_FALSE(coil_lock_locked(lk.l));
        coil_task_cancel(coil_current_task(), nullptr);
        EXPECT_EQ(coil_lock_acquire(lk.l), 0); // no await, so the cancel is not seen here
        EXPECT_TRUE(coil_lock_locked(lk.l));
        EXPECT_EQ(coil_sleep(0), -ECANCELED);
        EXPECT_EQ(coil_lock_release(lk.l), 0);
        EXPECT_FALSE(coil_lock_locked(lk.l));
        return nullptr;
    });
}

TEST(Lock, ReleasingAnUnlockedLockIsAnError)
{
    coil_test::run([] {
        Lk lk;
        EXPECT_EQ(coil_lock_release(lk.l), COIL_EINVALSTATE);
        EXPECT_EQ(coil_lock_acquire(lk.l), 0);
        EXPECT_EQ(coil_lock_release(lk.l), 0);
        EXPECT_EQ(coil_lock_release(lk.l), COIL_EINVALSTATE);
        return nullptr;
    });
}

TEST(Lock, WaitersAcquireInTheOrderTheyQueued)
{
    for (coil_stack_mode mode : { COIL_STACK_AUTO, COIL_STACK_COMPACT }) {
        coil_test::run([mode] {
            Lk lk;
            coil_task_opts o{};
            o.stack_mode = mode;
            std::vector<int> order;
            int rc[5];
            EXPECT_EQ(coil_lock_acquire(lk.l), 0);
            coil_task *ts[5];
            for (int i = 0; i < 5; i++)
                ts[i] = locker(lk.l, i, order, &rc[i], &o);
            coil_sleep(0); // all five queue behind us
            EXPECT_EQ(coil_lock_release(lk.l), 0);
            for (auto *t : ts)
                finish(t);
            for (int r : rc)
                EXPECT_EQ(r, 0);
            EXPECT_EQ(order, (std::vector<int>{ 0, 1, 2, 3, 4 }));
            return nullptr;
        });
    }
}

TEST(Lock, NewcomerDoesNotBargePastAWokenWaiter)
{
    coil_test::run([] {
        Lk lk;
        std::vector<int> order;
        int rb = 1, rc = 1;
        EXPECT_EQ(coil_lock_acquire(lk.l), 0);
        coil_task *b = locker(lk.l, 1, order, &rb);
        coil_sleep(0);
        EXPECT_EQ(coil_lock_release(lk.l), 0);
        // Released and b woken but not yet run: reads unlocked, as in asyncio...
        EXPECT_FALSE(coil_lock_locked(lk.l));
        // ...yet a newcomer queues behind b instead of taking it.
        coil_task *c = locker(lk.l, 2, order, &rc);
        finish(b);
        finish(c);
        EXPECT_EQ(order, (std::vector<int>{ 1, 2 }));
        EXPECT_EQ(rb, 0);
        EXPECT_EQ(rc, 0);
        return nullptr;
    });
}

TEST(Lock, CancelledWaiterLeavesTheQueueAndDoesNotGetTheLock)
{
    coil_test::run([] {
        Lk lk;
        std::vector<int> order;
        int ra = 1, rb = 1;
        EXPECT_EQ(coil_lock_acquire(lk.l), 0);
        coil_task *a = locker(lk.l, 1, order, &ra);
        coil_task *b = locker(lk.l, 2, order, &rb);
        coil_sleep(0);
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1);
        finish(a);
        EXPECT_EQ(ra, -ECANCELED);
        EXPECT_TRUE(coil_lock_locked(lk.l)); // still ours
        EXPECT_EQ(coil_lock_release(lk.l), 0);
        finish(b);
        EXPECT_EQ(rb, 0);
        EXPECT_EQ(order, (std::vector<int>{ 2 }));
        return nullptr;
    });
}

TEST(Lock, WaiterCancelledAtTheMomentOfWakeUpPassesTheLockOn)
{
    coil_test::run([] {
        Lk lk;
        std::vector<int> order;
        int ra = 1, rb = 1;
        EXPECT_EQ(coil_lock_acquire(lk.l), 0);
        coil_task *a = locker(lk.l, 1, order, &ra);
        coil_task *b = locker(lk.l, 2, order, &rb);
        coil_sleep(0);
        EXPECT_EQ(coil_lock_release(lk.l), 0); // wakes a
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1); // before a ran
        finish(a);
        finish(b);
        EXPECT_EQ(ra, -ECANCELED);
        EXPECT_EQ(rb, 0);
        EXPECT_EQ(order, (std::vector<int>{ 2 }));
        EXPECT_FALSE(coil_lock_locked(lk.l));
        EXPECT_EQ(coil_lock_acquire(lk.l), 0); // nothing left in a bad state
        EXPECT_EQ(coil_lock_release(lk.l), 0);
        return nullptr;
    });
}

TEST(Lock, CancelRequestedBeforeASuspendingAcquireIsDeliveredThere)
{
    coil_test::run([] {
        Lk lk;
        EXPECT_EQ(coil_lock_acquire(lk.l), 0);
        int ra = 1;
        coil_task *a = nullptr;
        coil_test::spawn(&a, [&]() -> void * {
            coil_task_cancel(coil_current_task(), nullptr);
            ra = coil_lock_acquire(lk.l);
            return nullptr;
        });
        finish(a);
        EXPECT_EQ(ra, -ECANCELED);
        EXPECT_EQ(coil_lock_release(lk.l), 0);
        EXPECT_FALSE(coil_lock_locked(lk.l));
        return nullptr;
    });
}

TEST(Lock, AnyTaskMayReleaseAsInAsyncio)
{
    coil_test::run([] {
        Lk lk;
        EXPECT_EQ(coil_lock_acquire(lk.l), 0);
        int rr = 1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            rr = coil_lock_release(lk.l);
            return nullptr;
        });
        finish(t);
        EXPECT_EQ(rr, 0);
        EXPECT_FALSE(coil_lock_locked(lk.l));
        return nullptr;
    });
}

TEST(Lock, ErrorsForBadUse)
{
    coil_lock *l = nullptr;
    ASSERT_EQ(coil_lock_new(&l), 0);
    EXPECT_EQ(coil_lock_acquire(l), COIL_ENOTASK);
    EXPECT_EQ(coil_lock_new(nullptr), -EINVAL);
    EXPECT_EQ(coil_lock_acquire(nullptr), -EINVAL);
    EXPECT_EQ(coil_lock_release(nullptr), -EINVAL);
    coil_test::run([&] {
        int rc = 1;
        EXPECT_EQ(coil_lock_acquire(l), 0);
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            rc = coil_lock_acquire(l);
            return nullptr;
        });
        coil_sleep(0);
        EXPECT_EQ(coil_lock_free(l), -EBUSY); // a task waits on it
        EXPECT_EQ(coil_lock_release(l), 0);
        finish(t);
        EXPECT_EQ(rc, 0);
        return nullptr;
    });
    EXPECT_EQ(coil_lock_free(l), 0);
}

TEST(Lock, MutualExclusionHoldsUnderManyTasks)
{
    coil_test::run([] {
        Lk lk;
        int inside = 0, max_inside = 0, total = 0;
        std::vector<coil_task *> ts;
        for (int i = 0; i < 50; i++) {
            coil_task *t = nullptr;
            coil_test::spawn(&t, [&, i]() -> void * {
                for (int k = 0; k < 10; k++) {
                    EXPECT_EQ(coil_lock_acquire(lk.l), 0);
                    inside++;
                    max_inside = std::max(max_inside, inside);
                    if ((i + k) % 3 == 0)
                        coil_sleep(0);
                    inside--;
                    total++;
                    EXPECT_EQ(coil_lock_release(lk.l), 0);
                    coil_sleep(0);
                }
                return nullptr;
            });
            ts.push_back(t);
        }
        for (auto *t : ts)
            finish(t);
        EXPECT_EQ(max_inside, 1);
        EXPECT_EQ(total, 500);
        EXPECT_TRUE(yield_until([&] { return !coil_lock_locked(lk.l); }));
        return nullptr;
    });
}

} // namespace
