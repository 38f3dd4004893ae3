// The loop's timer queue (FIFO run + 4-ary heap) against a reference model: whatever the mix of
// in-order and out-of-order deadlines, cancels and pops, timers come out earliest first, equal
// deadlines in arming order, and nothing is lost or fired twice.
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <utility>
#include <vector>

extern "C" {
#include "engine/timer.h"
}

namespace {

struct Timer {
    coil__timer t{};
    uint64_t when = 0;
    uint64_t order = 0; // arming order, as the model sees it
};

void no_fire(coil__timer *) {}

struct Queue {
    coil__timerheap h;
    Queue() { coil__timers_init(&h); }
    ~Queue() { coil__timers_free(&h); }
};

// Key = (deadline, arming order): the order the queue must pop in.
using Model = std::set<std::pair<uint64_t, uint64_t>>;

class TimerQueueModel : public ::testing::TestWithParam<int> {};

TEST_P(TimerQueueModel, PopsInDeadlineThenArmingOrderThroughArmsCancelsAndPops)
{
    std::mt19937_64 rng(static_cast<uint64_t>(GetParam()));
    Queue q;
    std::vector<std::unique_ptr<Timer>> timers(512);
    for (auto &p : timers) {
        p = std::make_unique<Timer>();
        p->t.fire = no_fire;
    }
    Model model;
    uint64_t now = 0, order = 0, base = 1000;
    for (int step = 0; step < 200000; step++) {
        Timer &tm = *timers[rng() % timers.size()];
        unsigned op = rng() % 10;
        if (!coil__timer_armed(&tm.t) && op < 5) {
            // Mostly in deadline order (a run of equal delays), sometimes out of it, some ties.
            unsigned kind = rng() % 4;
            base += rng() % 3;
            tm.when = kind < 2 ? base : kind == 2 ? now + rng() % 2000 : base - rng() % 50;
            tm.order = order++;
            ASSERT_EQ(coil__timers_add(&q.h, &tm.t, tm.when), 0);
            model.insert({tm.when, tm.order});
        } else if (coil__timer_armed(&tm.t) && op < 8) {
            coil__timers_remove(&q.h, &tm.t);
            ASSERT_FALSE(coil__timer_armed(&tm.t));
            ASSERT_EQ(model.erase({tm.when, tm.order}), 1u);
        } else {
            now += rng() % 40;
            coil__timer *t;
            while ((t = coil__timers_pop_due(&q.h, now))) {
                auto *got = reinterpret_cast<Timer *>(t);
                ASSERT_FALSE(model.empty());
                ASSERT_EQ(*model.begin(), std::make_pair(got->when, got->order)) << "step " << step;
                ASSERT_FALSE(coil__timer_armed(t));
                model.erase(model.begin());
            }
            ASSERT_TRUE(model.empty() || model.begin()->first > now);
        }
        ASSERT_EQ(coil__timers_count(&q.h), model.size());
        ASSERT_EQ(coil__timers_empty(&q.h), model.empty());
        if (!model.empty()) {
            ASSERT_EQ(coil__timers_next(&q.h), model.begin()->first);
        }
    }
}

INSTANTIATE_TEST_SUITE_P(Seeds, TimerQueueModel, ::testing::Values(1, 2, 3, 42));

TEST(TimerQueue, InOrderDeadlinesNeverTouchTheHeap)
{
    Queue q;
    std::vector<Timer> ts(1000);
    for (size_t i = 0; i < ts.size(); i++) {
        ts[i].t.fire = no_fire;
        ASSERT_EQ(coil__timers_add(&q.h, &ts[i].t, 100 + i / 3), 0); // ties too
    }
    EXPECT_EQ(q.h.n, 0u);
    for (size_t i = 0; i < ts.size(); i++)
        ASSERT_EQ(coil__timers_pop_due(&q.h, UINT64_MAX), &ts[i].t);
    EXPECT_TRUE(coil__timers_empty(&q.h));
}

TEST(TimerQueue, ArmedAndCancelledTimeoutsKeepMemoryToTheLiveOnes)
{
    // A server arms a timeout per request and cancels it when the request completes: with one
    // long-lived timer holding the run open, the cancelled slots must be reclaimed, not kept.
    Queue q;
    Timer keeper;
    keeper.t.fire = no_fire;
    ASSERT_EQ(coil__timers_add(&q.h, &keeper.t, 1), 0);
    std::vector<Timer> live(8);
    for (auto &tm : live)
        tm.t.fire = no_fire;
    for (uint64_t i = 0; i < 1000000; i++) {
        Timer &tm = live[i % live.size()];
        if (coil__timer_armed(&tm.t))
            coil__timers_remove(&q.h, &tm.t);
        ASSERT_EQ(coil__timers_add(&q.h, &tm.t, 10 + i), 0);
    }
    EXPECT_EQ(coil__timers_count(&q.h), 1 + live.size());
    EXPECT_LE(q.h.run_cap, 128u);
    EXPECT_EQ(coil__timers_pop_due(&q.h, UINT64_MAX), &keeper.t);
}

} // namespace
