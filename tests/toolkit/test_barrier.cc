// asyncio.Barrier semantics (3.11+): arrival indices, filling and draining, reset, abort,
// broken state reported to every waiter, cancellation.
#include <algorithm>
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

void finish(coil_task *t)
{
    coil_task_await(t, nullptr);
    coil_task_free(t);
}

struct Wait {
    int rc = 1;
    unsigned index = 99;
    coil_task *t = nullptr;
};

void start(coil_barrier *b, Wait &w)
{
    coil_test::spawn(&w.t, [b, &w]() -> void * {
        w.rc = coil_barrier_wait(b, &w.index);
        return nullptr;
    });
}

TEST(Barrier, PartiesMustBeAtLeastOne)
{
    coil_barrier *b = nullptr;
    EXPECT_EQ(coil_barrier_new(&b, 0), -EINVAL);
    EXPECT_EQ(coil_barrier_new(nullptr, 2), -EINVAL);
    ASSERT_EQ(coil_barrier_new(&b, 3), 0);
    EXPECT_EQ(coil_barrier_parties(b), 3u);
    EXPECT_EQ(coil_barrier_n_waiting(b), 0u);
    EXPECT_FALSE(coil_barrier_broken(b));
    EXPECT_EQ(coil_barrier_free(b), 0);
}

TEST(Barrier, WaitReturnsOnceAllPartiesArriveWithEachArrivalIndex)
{
    coil_test::run([] {
        coil_barrier *b = nullptr;
        EXPECT_EQ(coil_barrier_new(&b, 3), 0);
        Wait w[2];
        for (auto &x : w)
            start(b, x);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 2; }));
        EXPECT_FALSE(coil_task_done(w[0].t));
        unsigned mine = 99;
        EXPECT_EQ(coil_barrier_wait(b, &mine), 0);
        EXPECT_EQ(mine, 2u); // the last to arrive
        for (auto &x : w)
            finish(x.t);
        std::vector<unsigned> idx{ w[0].index, w[1].index };
        std::sort(idx.begin(), idx.end());
        EXPECT_EQ(idx, (std::vector<unsigned>{ 0, 1 }));
        EXPECT_EQ(w[0].rc, 0);
        EXPECT_EQ(w[1].rc, 0);
        EXPECT_EQ(coil_barrier_n_waiting(b), 0u);
        EXPECT_EQ(coil_barrier_free(b), 0);
        return nullptr;
    });
}

TEST(Barrier, SinglePartyBarrierNeverBlocksAndIsReusable)
{
    coil_test::run([] {
        coil_barrier *b = nullptr;
        EXPECT_EQ(coil_barrier_new(&b, 1), 0);
        for (int i = 0; i < 3; i++) {
            unsigned idx = 9;
            EXPECT_EQ(coil_barrier_wait(b, &idx), 0);
            EXPECT_EQ(idx, 0u);
        }
        EXPECT_EQ(coil_barrier_free(b), 0);
        return nullptr;
    });
}

TEST(Barrier, NewcomersWaitForTheDrainingRoundToLeaveThenFillTheNextOne)
{
    coil_test::run([] {
        coil_barrier *b = nullptr;
        EXPECT_EQ(coil_barrier_new(&b, 2), 0);
        Wait first[2], second[2];
        start(b, first[0]);
        start(b, first[1]); // completes round 1; both still have to leave
        start(b, second[0]);
        start(b, second[1]);
        for (auto &x : first)
            finish(x.t);
        for (auto &x : second)
            finish(x.t);
        for (auto *w : { &first[0], &first[1], &second[0], &second[1] })
            EXPECT_EQ(w->rc, 0);
        EXPECT_EQ(first[0].index + first[1].index, 1u);
        EXPECT_EQ(second[0].index + second[1].index, 1u);
        EXPECT_EQ(coil_barrier_free(b), 0);
        return nullptr;
    });
}

TEST(Barrier, AbortBreaksTheBarrierForCurrentAndFutureWaiters)
{
    coil_test::run([] {
        coil_barrier *b = nullptr;
        EXPECT_EQ(coil_barrier_new(&b, 3), 0);
        Wait w[2];
        for (auto &x : w)
            start(b, x);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 2; }));
        EXPECT_EQ(coil_barrier_abort(b), 0);
        EXPECT_TRUE(coil_barrier_broken(b));
        for (auto &x : w) {
            finish(x.t);
            EXPECT_EQ(x.rc, COIL_EBROKENBARRIER);
        }
        unsigned idx = 7;
        EXPECT_EQ(coil_barrier_wait(b, &idx), COIL_EBROKENBARRIER);
        EXPECT_EQ(idx, 7u);
        // A reset makes it usable again.
        EXPECT_EQ(coil_barrier_reset(b), 0);
        EXPECT_FALSE(coil_barrier_broken(b));
        Wait again[2];
        for (auto &x : again)
            start(b, x);
        EXPECT_EQ(coil_barrier_wait(b, &idx), 0);
        for (auto &x : again) {
            finish(x.t);
            EXPECT_EQ(x.rc, 0);
        }
        EXPECT_EQ(coil_barrier_free(b), 0);
        return nullptr;
    });
}

TEST(Barrier, ResetFailsTheWaitersThenTheBarrierFillsAgain)
{
    coil_test::run([] {
        coil_barrier *b = nullptr;
        EXPECT_EQ(coil_barrier_new(&b, 3), 0);
        Wait w[2];
        for (auto &x : w)
            start(b, x);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 2; }));
        EXPECT_EQ(coil_barrier_reset(b), 0);
        EXPECT_EQ(coil_barrier_n_waiting(b), 0u); // resetting
        for (auto &x : w) {
            finish(x.t);
            EXPECT_EQ(x.rc, COIL_EBROKENBARRIER);
        }
        EXPECT_FALSE(coil_barrier_broken(b));
        Wait next[2];
        for (auto &x : next)
            start(b, x);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 2; }));
        unsigned idx = 0;
        EXPECT_EQ(coil_barrier_wait(b, &idx), 0);
        EXPECT_EQ(idx, 2u);
        for (auto &x : next) {
            finish(x.t);
            EXPECT_EQ(x.rc, 0);
        }
        EXPECT_EQ(coil_barrier_free(b), 0);
        return nullptr;
    });
}

TEST(Barrier, CancelledWaiterLeavesTheBarrierAndItsPlaceIsRefilled)
{
    coil_test::run([] {
        coil_barrier *b = nullptr;
        EXPECT_EQ(coil_barrier_new(&b, 2), 0);
        Wait a, c;
        start(b, a);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 1; }));
        EXPECT_EQ(coil_task_cancel(a.t, nullptr), 1);
        finish(a.t);
        EXPECT_EQ(a.rc, -ECANCELED);
        EXPECT_EQ(coil_barrier_n_waiting(b), 0u);
        start(b, c);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 1; }));
        unsigned idx = 9;
        EXPECT_EQ(coil_barrier_wait(b, &idx), 0);
        EXPECT_EQ(idx, 1u);
        finish(c.t);
        EXPECT_EQ(c.rc, 0);
        EXPECT_EQ(c.index, 0u);
        EXPECT_EQ(coil_barrier_free(b), 0);
        return nullptr;
    });
}

TEST(Barrier, ErrorsForBadUse)
{
    coil_barrier *b = nullptr;
    ASSERT_EQ(coil_barrier_new(&b, 2), 0);
    EXPECT_EQ(coil_barrier_wait(b, nullptr), COIL_ENOTASK);
    EXPECT_EQ(coil_barrier_wait(nullptr, nullptr), -EINVAL);
    coil_test::run([&] {
        Wait w;
        start(b, w);
        EXPECT_TRUE(yield_until([&] { return coil_barrier_n_waiting(b) == 1; }));
        EXPECT_EQ(coil_barrier_free(b), -EBUSY);
        EXPECT_EQ(coil_barrier_wait(b, nullptr), 0);
        finish(w.t);
        return nullptr;
    });
    EXPECT_EQ(coil_barrier_free(b), 0);
}

} // namespace
