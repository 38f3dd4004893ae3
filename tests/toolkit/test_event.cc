// asyncio.Event semantics: the flag, wait/set/clear/is_set, cancellation, errors.
#include <cerrno>
#include <functional>
#include <vector>

#include "coil_test.h"

namespace {

// Yield to the loop until cond() holds, at most `max` times (then the caller's EXPECT fails).
bool yield_until(const std::function<bool()> &cond, int max = 1000)
{
    for (int i = 0; i < max && !cond(); i++)
        coil_sleep(0);
    return cond();
}

struct Ev {
    coil_event *e = nullptr;
    Ev() { EXPECT_EQ(coil_event_new(&e), 0); }
    ~Ev() { EXPECT_EQ(coil_event_free(e), 0); }
};

TEST(Event, FlagIsFalseInitially)
{
    coil_test::run([] {
        Ev ev;
        EXPECT_FALSE(coil_event_is_set(ev.e));
        return nullptr;
    });
}

TEST(Event, WaitReturnsAtOnceWhenSetEvenWithACancelPending)
{
    coil_test::run([] {
        Ev ev;
        coil_event_set(ev.e);
        coil_task_cancel(coil_current_task(), nullptr);
        EXPECT_EQ(coil_event_wait(ev.e), 0); // no await happens, so no cancellation point
        EXPECT_EQ(coil_sleep(0), -ECANCELED);
        return nullptr;
    });
}

TEST(Event, SetWakesEveryWaiterInFifoOrder)
{
    coil_test::run([] {
        Ev ev;
        std::vector<int> order;
        int waiting = 0;
        coil_task *ts[3] = {};
        for (int i = 0; i < 3; i++)
            coil_test::spawn(&ts[i], [&, i]() -> void * {
                waiting++;
                EXPECT_EQ(coil_event_wait(ev.e), 0);
                order.push_back(i);
                return nullptr;
            });
        EXPECT_TRUE(yield_until([&] { return waiting == 3; }));
        EXPECT_TRUE(order.empty());
        coil_event_set(ev.e);
        EXPECT_TRUE(coil_event_is_set(ev.e));
        for (auto *t : ts) {
            EXPECT_EQ(coil_task_await(t, nullptr), 0);
            coil_task_free(t);
        }
        EXPECT_EQ(order, (std::vector<int>{ 0, 1, 2 }));
        return nullptr;
    });
}

TEST(Event, WaiterWokenBySetReturnsTrueEvenIfClearedBeforeItRuns)
{
    coil_test::run([] {
        Ev ev;
        int rc = 1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            rc = coil_event_wait(ev.e);
            return nullptr;
        });
        coil_sleep(0);
        coil_event_set(ev.e);
        coil_event_clear(ev.e);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(rc, 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Event, ClearMakesLaterWaitsBlockUntilTheNextSet)
{
    coil_test::run([] {
        Ev ev;
        coil_event_set(ev.e);
        coil_event_clear(ev.e);
        EXPECT_FALSE(coil_event_is_set(ev.e));
        bool done = false;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            EXPECT_EQ(coil_event_wait(ev.e), 0);
            done = true;
            return nullptr;
        });
        for (int i = 0; i < 5; i++)
            coil_sleep(0);
        EXPECT_FALSE(done);
        coil_event_set(ev.e);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_TRUE(done);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Event, CancelledWaiterReturnsEcanceledAndOthersStillWake)
{
    coil_test::run([] {
        Ev ev;
        int ra = 1, rb = 1;
        coil_task *a = nullptr, *b = nullptr;
        coil_test::spawn(&a, [&]() -> void * {
            ra = coil_event_wait(ev.e);
            return nullptr;
        });
        coil_test::spawn(&b, [&]() -> void * {
            rb = coil_event_wait(ev.e);
            return nullptr;
        });
        coil_sleep(0);
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1);
        coil_task_await(a, nullptr);
        EXPECT_EQ(ra, -ECANCELED);
        coil_event_set(ev.e);
        EXPECT_EQ(coil_task_await(b, nullptr), 0);
        EXPECT_EQ(rb, 0);
        coil_task_free(a);
        coil_task_free(b);
        return nullptr;
    });
}

TEST(Event, CancelLandingAfterSetButBeforeTheWaiterRanWins)
{
    coil_test::run([] {
        Ev ev;
        int ra = 1;
        coil_task *a = nullptr;
        coil_test::spawn(&a, [&]() -> void * {
            ra = coil_event_wait(ev.e);
            return nullptr;
        });
        coil_sleep(0);
        coil_event_set(ev.e);
        coil_task_cancel(a, nullptr);
        coil_task_await(a, nullptr);
        EXPECT_EQ(ra, -ECANCELED);
        return nullptr;
    });
}

TEST(Event, WaitOutsideATaskIsAnError)
{
    coil_event *e;
    ASSERT_EQ(coil_event_new(&e), 0);
    EXPECT_EQ(coil_event_wait(e), COIL_ENOTASK);
    coil_event_set(e);
    EXPECT_EQ(coil_event_wait(e), 0); // set: nothing to wait for
    EXPECT_EQ(coil_event_free(e), 0);
    EXPECT_EQ(coil_event_new(nullptr), -EINVAL);
    EXPECT_EQ(coil_event_free(nullptr), 0);
}

TEST(Event, FreeWhileATaskWaitsIsRefused)
{
    coil_test::run([] {
        coil_event *e;
        EXPECT_EQ(coil_event_new(&e), 0);
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            EXPECT_EQ(coil_event_wait(e), 0);
            return nullptr;
        });
        coil_sleep(0);
        EXPECT_EQ(coil_event_free(e), -EBUSY);
        coil_event_set(e);
        EXPECT_EQ(coil_event_free(e), -EBUSY); // woken, not yet run
        coil_task_await(t, nullptr);
        coil_task_free(t);
        EXPECT_EQ(coil_event_free(e), 0);
        return nullptr;
    });
}

TEST(Event, WaitOnAnEventOfAnotherLoopIsRefused)
{
    coil_loop *other;
    ASSERT_EQ(coil_new_event_loop(&other, nullptr), 0);
    ASSERT_EQ(coil_set_event_loop(other), 0);
    coil_event *e;
    ASSERT_EQ(coil_event_new(&e), 0);
    coil_set_event_loop(nullptr);
    coil_test::run([&] {
        EXPECT_EQ(coil_event_wait(e), COIL_EWRONGLOOP);
        return nullptr;
    });
    EXPECT_EQ(coil_event_free(e), 0);
    coil_loop_close(other);
}

} // namespace
