// Unix signal handlers on the loop (loop.add_signal_handler / remove_signal_handler).
#include <gtest/gtest.h>

#include <pthread.h>
#include <signal.h>

#include <cerrno>
#include <vector>

#include "loop_test_util.h"

namespace {

using coil_test::LoopTest;

struct Hits {
    int count = 0;
    bool on_loop = true;
    coil_loop *loop = nullptr;
    pthread_t thread{};
};

int on_signal(void *arg)
{
    auto *h = static_cast<Hits *>(arg);
    h->count++;
    if (coil_get_running_loop() != h->loop || !pthread_equal(pthread_self(), h->thread) || coil_current_task())
        h->on_loop = false;
    return 0;
}

sigset_t current_mask()
{
    sigset_t m;
    pthread_sigmask(SIG_BLOCK, nullptr, &m);
    return m;
}

void expect_same_mask(const sigset_t &a, const sigset_t &b)
{
    for (int s = 1; s < NSIG; s++)
        EXPECT_EQ(sigismember(&a, s), sigismember(&b, s)) << "signal " << s;
}

// Runs the loop until `done()` holds (checked every millisecond by a timer) or the watchdog
// fires, so a test waits on the handler itself rather than for a fixed time.
class SignalTest : public LoopTest {
protected:
    void run_until(std::function<bool()> done, double timeout = 5.0)
    {
        coil_test::Callback *poll = nullptr;
        poll = keep([this, done, &poll] {
            if (done()) {
                coil_loop_stop(loop);
                return 0;
            }
            return coil_loop_call_later(loop, 0.001, coil_test::call_callback, poll, nullptr);
        });
        ASSERT_EQ(coil_loop_call_soon(loop, coil_test::call_callback, poll, nullptr), 0);
        ASSERT_EQ(run_forever_guarded(timeout), 0);
        ASSERT_TRUE(done());
    }
};

TEST_F(SignalTest, HandlerRunsOnTheLoopOncePerRaise)
{
    sigset_t before = current_mask();
    Hits h;
    h.loop = loop;
    h.thread = pthread_self();
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    for (int i = 1; i <= 5; i++) {
        ASSERT_EQ(raise(SIGUSR1), 0);
        run_until([&h, i] { return h.count >= i; });
        EXPECT_EQ(h.count, i);
    }
    EXPECT_TRUE(h.on_loop) << "the handler must run as a loop callback, on the loop's thread";
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
    expect_same_mask(before, current_mask());
}

TEST_F(SignalTest, AddingAgainReplacesTheHandler)
{
    Hits first, second;
    first.loop = second.loop = loop;
    first.thread = second.thread = pthread_self();
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &first), 0);
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &second), 0);
    ASSERT_EQ(raise(SIGUSR1), 0);
    run_until([&second] { return second.count >= 1; });
    EXPECT_EQ(first.count, 0);
    EXPECT_EQ(second.count, 1);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
}

TEST_F(SignalTest, TwoSignalsEachReachTheirOwnHandler)
{
    Hits u1, u2;
    u1.loop = u2.loop = loop;
    u1.thread = u2.thread = pthread_self();
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &u1), 0);
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR2, on_signal, &u2), 0);
    ASSERT_EQ(raise(SIGUSR2), 0);
    run_until([&u2] { return u2.count >= 1; });
    ASSERT_EQ(raise(SIGUSR1), 0);
    run_until([&u1] { return u1.count >= 1; });
    EXPECT_EQ(u1.count, 1);
    EXPECT_EQ(u2.count, 1);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
    // The other handler still works after one was removed.
    ASSERT_EQ(raise(SIGUSR2), 0);
    run_until([&u2] { return u2.count >= 2; });
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR2), 1);
}

TEST_F(SignalTest, RemoveReturnsOneThenZero)
{
    Hits h;
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 0);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, 0), 0);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, NSIG), 0);
}

TEST_F(SignalTest, UncatchableOrOutOfRangeSignalsReturnEinval)
{
    Hits h;
    EXPECT_EQ(coil_loop_add_signal_handler(loop, SIGKILL, on_signal, &h), -EINVAL);
    EXPECT_EQ(coil_loop_add_signal_handler(loop, SIGSTOP, on_signal, &h), -EINVAL);
    EXPECT_EQ(coil_loop_add_signal_handler(loop, 0, on_signal, &h), -EINVAL);
    EXPECT_EQ(coil_loop_add_signal_handler(loop, -1, on_signal, &h), -EINVAL);
    EXPECT_EQ(coil_loop_add_signal_handler(loop, NSIG, on_signal, &h), -EINVAL);
    EXPECT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, nullptr, &h), -EINVAL);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGKILL), 0);
}

TEST_F(SignalTest, RemovalRestoresTheMaskAndDropsAnUnhandledInstance)
{
    sigset_t before = current_mask();
    ASSERT_FALSE(sigismember(&before, SIGUSR1));
    Hits h;
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    sigset_t during = current_mask();
    EXPECT_TRUE(sigismember(&during, SIGUSR1)) << "handled signals are blocked";
    // Raised but never handled: removing must discard it, not deliver it with the default
    // disposition (which would kill the test).
    ASSERT_EQ(raise(SIGUSR1), 0);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
    expect_same_mask(before, current_mask());
    sigset_t pending;
    sigpending(&pending);
    EXPECT_FALSE(sigismember(&pending, SIGUSR1));
    EXPECT_EQ(h.count, 0);
}

TEST_F(SignalTest, SignalTheCallerAlreadyBlockedStaysBlockedAfterRemoval)
{
    sigset_t one, old;
    sigemptyset(&one);
    sigaddset(&one, SIGUSR2);
    ASSERT_EQ(pthread_sigmask(SIG_BLOCK, &one, &old), 0);
    sigset_t before = current_mask();
    Hits h;
    h.loop = loop;
    h.thread = pthread_self();
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR2, on_signal, &h), 0);
    ASSERT_EQ(raise(SIGUSR2), 0);
    run_until([&h] { return h.count >= 1; });
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR2), 1);
    expect_same_mask(before, current_mask());
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(Signal, CloseRemovesHandlersAndRestoresTheMask)
{
    sigset_t before = current_mask();
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    Hits h;
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR2, on_signal, &h), 0);
    ASSERT_EQ(coil_loop_close(loop), 0);
    expect_same_mask(before, current_mask());
}

// A loop closed while its handler's signalfd read is in flight (the handler ran once, and the read
// was armed again) takes the read back before it frees what the read writes into: nothing the
// kernel completes later touches freed memory (the sanitizer builds check), and the mask is as
// it was before the handler.
TEST_F(SignalTest, CloseTakesBackAReadInFlightAndRestoresTheMask)
{
    sigset_t before = current_mask();
    Hits h;
    h.loop = loop;
    h.thread = pthread_self();
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    ASSERT_EQ(raise(SIGUSR1), 0);
    run_until([&h] { return h.count >= 1; });
    EXPECT_EQ(coil_loop_close(loop), 0);
    loop = nullptr;
    expect_same_mask(before, current_mask());
}

TEST_F(SignalTest, RunUntilCompleteIsNotKeptAliveByARemovedHandler)
{
    Hits h;
    ASSERT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, on_signal, &h), 0);
    EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
    coil_future *f = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    // Only the cancelled signalfd read is left: it must drain, then the loop reports ENOTHING.
    EXPECT_EQ(coil_loop_run_until_complete(loop, f, nullptr), COIL_ENOTHING);
    coil_future_free(f);
}

} // namespace
