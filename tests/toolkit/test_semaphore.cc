// asyncio.Semaphore and BoundedSemaphore semantics (3.12+): permits, FIFO hand-off, no barging,
// cancellation without lost permits, the bound.
#include <cerrno>
#include <climits>
#include <vector>

#include "coil_test.h"

namespace {

void finish(coil_task *t)
{
    coil_task_await(t, nullptr);
    coil_task_free(t);
}

coil_task *acquirer(coil_semaphore *s, int id, std::vector<int> &order, int *rc)
{
    coil_task *t = nullptr;
    coil_test::spawn(&t, [=, &order]() -> void * {
        *rc = coil_semaphore_acquire(s);
        if (*rc == 0)
            order.push_back(id);
        return nullptr;
    });
    return t;
}

TEST(Semaphore, AcquireTakesAPermitWithoutWaitingWhileAnyAreFree)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_semaphore_new(&s, 2), 0);
        EXPECT_FALSE(coil_semaphore_locked(s));
        EXPECT_EQ(coil_semaphore_acquire(s), 0);
        EXPECT_EQ(coil_semaphore_value(s), 1);
        EXPECT_EQ(coil_semaphore_acquire(s), 0);
        EXPECT_EQ(coil_semaphore_value(s), 0);
        EXPECT_TRUE(coil_semaphore_locked(s));
        EXPECT_EQ(coil_semaphore_release(s), 0);
        EXPECT_EQ(coil_semaphore_release(s), 0);
        EXPECT_EQ(coil_semaphore_value(s), 2);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

TEST(Semaphore, WaitersGetReleasedPermitsInFifoOrder)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_semaphore_new(&s, 0), 0);
        std::vector<int> order;
        int rc[4];
        coil_task *ts[4];
        for (int i = 0; i < 4; i++)
            ts[i] = acquirer(s, i, order, &rc[i]);
        coil_sleep(0);
        EXPECT_TRUE(order.empty());
        for (int i = 0; i < 4; i++)
            EXPECT_EQ(coil_semaphore_release(s), 0);
        for (auto *t : ts)
            finish(t);
        EXPECT_EQ(order, (std::vector<int>{ 0, 1, 2, 3 }));
        EXPECT_EQ(coil_semaphore_value(s), 0);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

TEST(Semaphore, NewcomerDoesNotBargePastAWokenWaiter)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_semaphore_new(&s, 0), 0);
        std::vector<int> order;
        int ra = 1, rb = 1;
        coil_task *a = acquirer(s, 1, order, &ra);
        coil_sleep(0);
        EXPECT_EQ(coil_semaphore_release(s), 0); // handed to a
        EXPECT_EQ(coil_semaphore_release(s), 0); // a free permit, but a has not run yet
        EXPECT_TRUE(coil_semaphore_locked(s));   // asyncio: a waiter not cancelled => locked
        coil_task *b = acquirer(s, 2, order, &rb);
        finish(a);
        finish(b);
        EXPECT_EQ(order, (std::vector<int>{ 1, 2 }));
        EXPECT_EQ(coil_semaphore_value(s), 0);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

TEST(Semaphore, CancelledWaiterTakesNoPermit)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_semaphore_new(&s, 0), 0);
        std::vector<int> order;
        int ra = 1;
        coil_task *a = acquirer(s, 1, order, &ra);
        coil_sleep(0);
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1);
        finish(a);
        EXPECT_EQ(ra, -ECANCELED);
        EXPECT_EQ(coil_semaphore_release(s), 0);
        EXPECT_EQ(coil_semaphore_value(s), 1);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

TEST(Semaphore, WaiterCancelledAtTheMomentOfWakeUpPassesThePermitOn)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_bounded_semaphore_new(&s, 1), 0);
        EXPECT_EQ(coil_semaphore_acquire(s), 0);
        std::vector<int> order;
        int ra = 1, rb = 1;
        coil_task *a = acquirer(s, 1, order, &ra);
        coil_task *b = acquirer(s, 2, order, &rb);
        coil_sleep(0);
        EXPECT_EQ(coil_semaphore_release(s), 0); // handed to a
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1); // before a ran
        finish(a);
        finish(b);
        EXPECT_EQ(ra, -ECANCELED);
        EXPECT_EQ(rb, 0);
        EXPECT_EQ(order, (std::vector<int>{ 2 }));
        EXPECT_EQ(coil_semaphore_value(s), 0);
        EXPECT_EQ(coil_semaphore_release(s), 0);
        EXPECT_EQ(coil_semaphore_value(s), 1); // no permit was lost or made up
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

TEST(Semaphore, BoundedSemaphoreRefusesReleasePastItsInitialValue)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_bounded_semaphore_new(&s, 2), 0);
        EXPECT_EQ(coil_semaphore_release(s), -EINVAL);
        EXPECT_EQ(coil_semaphore_acquire(s), 0);
        EXPECT_EQ(coil_semaphore_release(s), 0);
        EXPECT_EQ(coil_semaphore_release(s), -EINVAL);
        EXPECT_EQ(coil_semaphore_value(s), 2);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        // An unbounded semaphore may go past its initial value.
        EXPECT_EQ(coil_semaphore_new(&s, 0), 0);
        EXPECT_EQ(coil_semaphore_release(s), 0);
        EXPECT_EQ(coil_semaphore_value(s), 1);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

TEST(Semaphore, ErrorsForBadUse)
{
    coil_semaphore *s = nullptr;
    EXPECT_EQ(coil_semaphore_new(&s, -1), -EINVAL);
    EXPECT_EQ(coil_semaphore_new(nullptr, 1), -EINVAL);
    ASSERT_EQ(coil_semaphore_new(&s, INT_MAX), 0);
    EXPECT_EQ(coil_semaphore_release(s), -EOVERFLOW);
    EXPECT_EQ(coil_semaphore_acquire(s), COIL_ENOTASK);
    EXPECT_EQ(coil_semaphore_free(s), 0);
    ASSERT_EQ(coil_semaphore_new(&s, 0), 0);
    coil_test::run([&] {
        std::vector<int> order;
        int rc = 1;
        coil_task *t = acquirer(s, 1, order, &rc);
        coil_sleep(0);
        EXPECT_EQ(coil_semaphore_free(s), -EBUSY);
        EXPECT_EQ(coil_semaphore_release(s), 0);
        finish(t);
        EXPECT_EQ(rc, 0);
        return nullptr;
    });
    EXPECT_EQ(coil_semaphore_free(s), 0);
}

TEST(Semaphore, NeverMoreHoldersThanPermits)
{
    coil_test::run([] {
        coil_semaphore *s = nullptr;
        EXPECT_EQ(coil_bounded_semaphore_new(&s, 3), 0);
        int inside = 0, max_inside = 0;
        std::vector<coil_task *> ts;
        for (int i = 0; i < 30; i++) {
            coil_task *t = nullptr;
            coil_test::spawn(&t, [&, i]() -> void * {
                for (int k = 0; k < 5; k++) {
                    int r = coil_semaphore_acquire(s);
                    if (r) {
                        EXPECT_EQ(r, -ECANCELED);
                        return nullptr;
                    }
                    inside++;
                    max_inside = std::max(max_inside, inside);
                    for (int y = 0; y < (i + k) % 3; y++)
                        coil_sleep(0);
                    inside--;
                    EXPECT_EQ(coil_semaphore_release(s), 0);
                }
                return nullptr;
            });
            ts.push_back(t);
        }
        // Cancel a few mid-flight: the permit count must still come back to 3.
        coil_sleep(0);
        for (int i = 0; i < 30; i += 7)
            coil_task_cancel(ts[i], nullptr);
        for (auto *t : ts)
            finish(t);
        EXPECT_LE(max_inside, 3);
        EXPECT_EQ(max_inside, 3);
        EXPECT_EQ(inside, 0);
        EXPECT_EQ(coil_semaphore_value(s), 3);
        EXPECT_EQ(coil_semaphore_free(s), 0);
        return nullptr;
    });
}

} // namespace
