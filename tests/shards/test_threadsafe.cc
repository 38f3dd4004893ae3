// coil_loop_call_soon_threadsafe: from foreign threads, in order, through a full ring, and its
// errors.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include <coil/coil.h>

#include "coil_test.h"
#include "shards_test_util.h"
#include "inbox_debug.h"

namespace {

struct Ordered {
    coil_future *done;
    long next[4] = {};
    long total = 0;
    long want = 0;
    bool in_order = true;
    pthread_t loop_thread;
    bool on_loop_thread = true;
};

struct Msg {
    Ordered *o;
    int producer;
    long seq;
};

int ordered_cb(void *arg)
{
    auto *m = static_cast<Msg *>(arg);
    Ordered *o = m->o;
    if (o->next[m->producer] != m->seq)
        o->in_order = false;
    o->next[m->producer] = m->seq + 1;
    if (!pthread_equal(pthread_self(), o->loop_thread))
        o->on_loop_thread = false;
    if (++o->total == o->want)
        coil_future_set_result(o->done, nullptr);
    delete m;
    return 0;
}

} // namespace

// Four threads post 20,000 callbacks each, five times the ring's capacity in all, while the loop
// runs: every callback runs once, on the loop's thread, in each producer's order.
TEST(Threadsafe, CallbacksFromFourThreadsRunOnTheLoopInPerThreadOrder)
{
    coil_test::run([]() -> void * {
        Ordered o;
        o.want = 4 * 20000;
        o.loop_thread = pthread_self();
        coil_future_new(&o.done);
        coil_loop *loop = coil_get_running_loop();
        reachable_from_threads(loop);
        std::vector<std::thread> ths;
        for (int p = 0; p < 4; p++)
            ths.emplace_back([&o, loop, p] {
                for (long i = 0; i < 20000; i++)
                    EXPECT_EQ(coil_loop_call_soon_threadsafe(loop, ordered_cb, new Msg{ &o, p, i }), 0);
            });
        EXPECT_EQ(coil_future_await(o.done, nullptr), 0);
        for (auto &t : ths)
            t.join();
        EXPECT_EQ(o.total, o.want);
        EXPECT_TRUE(o.in_order);
        EXPECT_TRUE(o.on_loop_thread);
        coil_future_free(o.done);
        return nullptr;
    });
}

// With the loop not draining, the nowait variant fills the ring and then says -EAGAIN; nothing
// is lost: once the loop runs, every accepted callback runs.
TEST(Threadsafe, NowaitReturnsEagainWhenTheRingIsFullAndLosesNothing)
{
    coil_loop *loop;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    ASSERT_EQ(coil_set_event_loop(loop), 0);
    static std::atomic<long> ran{ 0 };
    ran = 0;
    long accepted = 0;
    std::thread th([&] {
        for (;;) {
            int err = coil_loop_call_soon_threadsafe_nowait(
                loop, [](void *) { ran++; return 0; }, nullptr);
            if (err == -EAGAIN)
                break;
            ASSERT_EQ(err, 0);
            accepted++;
        }
    });
    th.join();
    EXPECT_EQ(accepted, (long)coil__loop_inbox_capacity(loop));
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(loop, &t, [](void *a) -> void * {
        long want = *static_cast<long *>(a);
        await_until([want] { return ran.load() == want; });
        return nullptr;
    }, &accepted, nullptr), 0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), 0);
    coil_task_free(t);
    EXPECT_EQ(ran.load(), accepted);
    coil_set_event_loop(nullptr);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

// The blocking variant waits for space instead: a producer pushing three ring-fulls into a loop
// that starts draining only later gets every one in.
TEST(Threadsafe, FullRingMakesAForeignProducerWaitNotFail)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static long ran;
        ran = 0;
        long n = 3 * (long)coil__loop_inbox_capacity(loop);
        std::atomic<int> done{ 0 };
        std::thread th([&] {
            for (long i = 0; i < n; i++)
                EXPECT_EQ(coil_loop_call_soon_threadsafe(loop, [](void *) { ran++; return 0; }, nullptr), 0);
            done = 1;
        });
        EXPECT_TRUE(await_until([&] { return done.load() == 1 && ran == n; }, 20.0));
        th.join();
        EXPECT_EQ(ran, n);
        return nullptr;
    }, 30.0);
}

TEST(Threadsafe, CallbackErrorGoesToTheLoopsExceptionHandler)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static int seen;
        seen = 0;
        coil_loop_set_exception_handler(
            loop, [](coil_loop *, const coil_exc_context *ctx, void *) { seen = ctx->code; }, nullptr);
        std::thread th([loop] {
            EXPECT_EQ(coil_loop_call_soon_threadsafe(loop, [](void *) { return -EIO; }, nullptr), 0);
        });
        th.join();
        EXPECT_TRUE(await_until([] { return seen != 0; }));
        EXPECT_EQ(seen, -EIO);
        coil_loop_set_exception_handler(loop, nullptr, nullptr);
        return nullptr;
    });
}

TEST(Threadsafe, BadArgumentsAreEinval)
{
    EXPECT_EQ(coil_loop_call_soon_threadsafe(nullptr, [](void *) { return 0; }, nullptr), -EINVAL);
    coil_test::run([]() -> void * {
        EXPECT_EQ(coil_loop_call_soon_threadsafe(coil_get_running_loop(), nullptr, nullptr), -EINVAL);
        return nullptr;
    });
}

TEST(Threadsafe, FromTheLoopsOwnThreadRunsOnALaterIteration)
{
    coil_test::run([]() -> void * {
        static int ran;
        ran = 0;
        EXPECT_EQ(coil_loop_call_soon_threadsafe(coil_get_running_loop(), [](void *) { ran = 1; return 0; }, nullptr), 0);
        EXPECT_EQ(ran, 0);
        EXPECT_TRUE(await_until([] { return ran == 1; }));
        return nullptr;
    });
}

// A loop that never sleeps and has no I/O in flight still hears a thread that posts to it for
// the first time: that thread creates the loop's inbox, which only its wake-up CQE hooks in.
TEST(Threadsafe, ABusyLoopWithoutIoHearsAThreadsFirstMessage)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static std::atomic<int> heard;
        heard = 0;
        std::thread th([loop] {
            EXPECT_EQ(coil_loop_call_soon_threadsafe(loop, [](void *) { heard = 1; return 0; }, nullptr), 0);
        });
        // Always ready, never a timer or an operation: the loop never blocks in the ring.
        auto end = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (!heard.load() && std::chrono::steady_clock::now() < end)
            coil_sleep(0);
        th.join();
        EXPECT_EQ(heard.load(), 1);
        return nullptr;
    });
}

// asyncio's "stop a loop from another thread": loop.call_soon_threadsafe(loop.stop), then the
// loop's thread closes the loop while the poster may still be returning from the post. The post
// publishes the message before it is done with the inbox, so close must not free the inbox
// under it. Run under ThreadSanitizer (which sees the free race the post's last reads) and ASan.
namespace {

struct StopRound {
    coil_loop *loop = nullptr;
    std::atomic<bool> go{false};
    bool warmed = false;
};

int spin_until_stopped(void *arg)
{
    auto *r = static_cast<StopRound *>(arg);
    if (!r->warmed) {
        // Hook the inbox into the loop from its own thread, so the poster's message is seen
        // without a wake-up (the loop never sleeps: the poster's last reads race the close).
        r->warmed = true;
        EXPECT_EQ(coil_loop_call_soon_threadsafe(r->loop, [](void *) { return 0; }, nullptr), 0);
        r->go = true;
    }
    return coil_loop_call_soon(r->loop, spin_until_stopped, r, nullptr);
}

int stop_loop_cb(void *arg)
{
    coil_loop_stop(static_cast<coil_loop *>(arg));
    return 0;
}

void stop_from_another_thread_then_close(bool poster_runs_a_loop, int rounds)
{
    for (int round = 0; round < rounds; round++) {
        StopRound r;
        ASSERT_EQ(coil_new_event_loop(&r.loop, nullptr), 0);
        std::thread th([&r, poster_runs_a_loop] {
            while (!r.go.load())
                std::this_thread::yield();
            if (!poster_runs_a_loop) {
                EXPECT_EQ(coil_loop_call_soon_threadsafe(r.loop, stop_loop_cb, r.loop), 0);
                return;
            }
            // From a task of another loop: the post goes through the target's shared ring.
            EXPECT_EQ(coil_run(
                          [](void *arg) -> void * {
                              auto *rr = static_cast<StopRound *>(arg);
                              EXPECT_EQ(coil_loop_call_soon_threadsafe(rr->loop, stop_loop_cb, rr->loop), 0);
                              return nullptr;
                          },
                          &r, nullptr),
                      0);
        });
        ASSERT_EQ(coil_loop_call_soon(r.loop, spin_until_stopped, &r, nullptr), 0);
        EXPECT_EQ(coil_loop_run_forever(r.loop), 0);
        EXPECT_EQ(coil_loop_close(r.loop), 0);
        th.join();
    }
}

} // namespace

TEST(Threadsafe, StopPostedFromAThreadThenCloseNeverFreesTheInboxUnderThePoster)
{
    stop_from_another_thread_then_close(false, 300);
}

TEST(Threadsafe, StopPostedFromAnotherLoopThenCloseNeverFreesTheInboxUnderThePoster)
{
    stop_from_another_thread_then_close(true, 100);
}

// A loop whose post found the target's ring full keeps the message in its own overflow list and
// returns 0; the target may close before that list is flushed. The flush must then find out
// that the target is gone, not push into its freed ring.
TEST(Threadsafe, OverflowFromAnotherLoopOutlivesTheTargetsClose)
{
    coil_loop *target = nullptr;
    ASSERT_EQ(coil_new_event_loop(&target, nullptr), 0);
    static std::atomic<int> ran;
    ran = 0;
    std::atomic<bool> posted{false}, closed{false};
    enum { N = 5000 }; // more than the target's ring holds: the rest overflows
    std::thread sender([&] {
        struct Ctx {
            coil_loop *target;
            std::atomic<bool> *posted, *closed;
        } ctx{ target, &posted, &closed };
        EXPECT_EQ(coil_run(
                      [](void *arg) -> void * {
                          auto *c = static_cast<Ctx *>(arg);
                          for (int i = 0; i < N; i++)
                              EXPECT_EQ(coil_loop_call_soon_threadsafe(c->target, [](void *) { ran++; return 0; },
                                                                       nullptr),
                                        0);
                          *c->posted = true;
                          auto end = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                          while (!c->closed->load() && std::chrono::steady_clock::now() < end)
                              coil_sleep(0);
                          // Each iteration tries to flush the overflow into the closed target.
                          for (int i = 0; i < 100; i++)
                              coil_sleep(0);
                          return nullptr;
                      },
                      &ctx, nullptr),
                  0);
    });
    while (!posted.load())
        std::this_thread::yield();
    EXPECT_EQ(coil_loop_close(target), 0); // runs what reached its ring
    closed = true;
    sender.join();
    EXPECT_GE(ran.load(), 1);
    EXPECT_LT(ran.load(), N) << "the overflow never reached the closed loop";
}
