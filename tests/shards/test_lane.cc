// A thread's own lane into a loop's inbox: created on a foreign thread's first post, drained
// and freed after the thread exits, forgotten after the loop closes, and never used where it
// could let a thread's later message overtake an earlier one.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <coil/coil.h>

#include "coil_test.h"
#include "inbox_debug.h"
#include "shards_test_util.h"

namespace {

// Counts callbacks and checks they arrive in the order they were numbered.
struct Seq {
    long next = 0;
    bool in_order = true;
};

struct Numbered {
    Seq *s;
    long n;
};

int numbered_cb(void *arg)
{
    auto *m = static_cast<Numbered *>(arg);
    if (m->s->next != m->n)
        m->s->in_order = false;
    m->s->next = m->n + 1;
    delete m;
    return 0;
}

void post_numbered(coil_loop *loop, Seq *s, long from, long to)
{
    for (long i = from; i < to; i++)
        ASSERT_EQ(coil_loop_call_soon_threadsafe(loop, numbered_cb, new Numbered{ s, i }), 0);
}

// Run `loop` on this thread until s->next reaches want (or a 10 s limit); returns s->next.
long run_until_received(coil_loop *loop, Seq *s, long want)
{
    struct Ctx {
        Seq *s;
        long want;
    } c{ s, want };
    coil_task *t = nullptr;
    EXPECT_EQ(coil_loop_create_task(
                  loop, &t,
                  [](void *a) -> void * {
                      auto *c = static_cast<Ctx *>(a);
                      await_until([c] { return c->s->next >= c->want; }, 10.0);
                      return nullptr;
                  },
                  &c, nullptr),
              0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), 0);
    coil_task_free(t);
    return s->next;
}

unsigned lanes_of(coil_loop *loop) { return coil__loop_inbox_lanes(loop); }

// Post a callback that counts itself into *ran.
void post_count(coil_loop *loop, std::atomic<long> *ran)
{
    EXPECT_EQ(coil_loop_call_soon_threadsafe(
                  loop, [](void *a) { ++*static_cast<std::atomic<long> *>(a); return 0; }, ran),
              0);
}

// A lane pace far longer than any of these tests' limits (see coil__lane_pop_batch).
constexpr uint64_t PACE_LONGER_THAN_A_TEST_NS = 60ull * 1000 * 1000 * 1000;

} // namespace

// The thread posts and exits before the loop runs at all: everything it sent is delivered, in
// order, and its lane goes once drained (LeakSanitizer checks it is freed).
TEST(Lane, MessagesOfAThreadThatHasExitedAreAllDeliveredAndItsLaneFreed)
{
    coil_loop *loop;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    Seq s;
    std::thread([&] { post_numbered(loop, &s, 0, 3000); }).join();
    EXPECT_EQ(lanes_of(loop), 1u);
    EXPECT_EQ(run_until_received(loop, &s, 3000), 3000);
    EXPECT_TRUE(s.in_order);
    EXPECT_EQ(lanes_of(loop), 0u);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

// One thread keeps posting while loops come and go: a new loop (often at the address of the one
// just closed) gets its messages, not the dead loop's lane.
TEST(Lane, AThreadOutlivingALoopPostsToTheNextOne)
{
    std::atomic<coil_loop *> target{ nullptr };
    std::atomic<int> posted{ 0 };
    Seq seqs[4];
    std::thread th([&] {
        for (int round = 0; round < 4; round++) {
            coil_loop *loop;
            while (!(loop = target.load()))
                std::this_thread::yield();
            post_numbered(loop, &seqs[round], 0, 100);
            target = nullptr;
            posted = round + 1;
        }
    });
    for (int round = 0; round < 4; round++) {
        coil_loop *loop;
        ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
        // Create the inbox here, where the last one was freed: the allocator then tends to hand
        // out the same address, which the thread's lane table must not mistake for the old loop.
        coil__loop_inbox_capacity(loop);
        target = loop;
        ASSERT_TRUE(wait_until([&] { return posted.load() == round + 1; }));
        EXPECT_EQ(lanes_of(loop), 1u);
        EXPECT_EQ(run_until_received(loop, &seqs[round], 100), 100);
        EXPECT_TRUE(seqs[round].in_order);
        EXPECT_EQ(coil_loop_close(loop), 0);
    }
    th.join();
}

// A thread has lanes into a few loops at most; it posts to any further loop through the ring,
// and every loop still gets its messages in order.
TEST(Lane, PastItsLanesAThreadPostsThroughTheRing)
{
    enum { LOOPS = 12, EACH = 500 };
    std::vector<coil_loop *> loops(LOOPS);
    for (auto &l : loops)
        ASSERT_EQ(coil_new_event_loop(&l, nullptr), 0);
    std::vector<Seq> seqs(LOOPS);
    // Interleaved, so the ring and the lanes are in use at the same time.
    std::thread([&] {
        for (long i = 0; i < EACH; i++)
            for (int k = 0; k < LOOPS; k++)
                post_numbered(loops[k], &seqs[k], i, i + 1);
    }).join();
    unsigned with_lane = 0;
    for (int k = 0; k < LOOPS; k++) {
        with_lane += lanes_of(loops[k]);
        EXPECT_EQ(run_until_received(loops[k], &seqs[k], EACH), EACH) << "loop " << k;
        EXPECT_TRUE(seqs[k].in_order) << "loop " << k;
        EXPECT_EQ(coil_loop_close(loops[k]), 0);
    }
    EXPECT_GT(with_lane, 0u);
    EXPECT_LT(with_lane, (unsigned)LOOPS);
}

// A thread that has posted from a running loop (through the ring: a loop never waits on a
// lane) keeps using the ring once its loop has stopped, so nothing it sends later can overtake
// what it sent before.
TEST(Lane, AThreadThatPostedFromItsLoopKeepsToTheRing)
{
    coil_loop *target;
    ASSERT_EQ(coil_new_event_loop(&target, nullptr), 0);
    Seq s;
    std::thread([&] {
        coil_test::run([&]() -> void * {
            post_numbered(target, &s, 0, 200);
            return nullptr;
        });
        post_numbered(target, &s, 200, 400);
    }).join();
    EXPECT_EQ(lanes_of(target), 0u);
    EXPECT_EQ(run_until_received(target, &s, 400), 400);
    EXPECT_TRUE(s.in_order);
    EXPECT_EQ(coil_loop_close(target), 0);
}

// Many short-lived threads, each with its own lane, post while the loop runs: every message
// arrives and every lane is reaped.
TEST(Lane, ShortLivedThreadsWhileTheLoopRuns)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        std::atomic<long> ran{ 0 };
        std::vector<std::thread> ths;
        for (int t = 0; t < 16; t++)
            ths.emplace_back([loop, &ran] {
                for (int i = 0; i < 1000; i++)
                    post_count(loop, &ran);
            });
        EXPECT_TRUE(await_until([&] { return ran.load() == 16 * 1000; }, 10.0));
        for (auto &t : ths)
            t.join();
        EXPECT_TRUE(await_until([loop] { return lanes_of(loop) == 0; }, 10.0));
        return nullptr;
    });
}

// A loop that keeps up with a stream from a lane reads it in batches (lane.h), but pacing must
// never slow down requests sent one at a time, each awaiting its answer: the lane is looked at
// every iteration, even with a pace far longer than this test's limit.
TEST(Lane, ABusyLoopAnswersOneMessageAtATimeWithoutPacing)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        coil__loop_inbox_set_lane_pace(loop, PACE_LONGER_THAN_A_TEST_NS);
        std::atomic<long> ran{ 0 };
        std::atomic<bool> done{ false };
        std::thread th([&] {
            for (long i = 1; i <= 50 && !testing::Test::HasFailure(); i++) {
                post_count(loop, &ran);
                EXPECT_TRUE(wait_until([&] { return ran.load() == i; })) << "request " << i;
            }
            done = true;
        });
        // Busy: a loop that always has a ready task never reaches the check it makes before
        // sleeping, so only the drain can have found the messages.
        while (!done.load())
            coil_sleep(0);
        th.join();
        EXPECT_EQ(ran.load(), 50);
        return nullptr;
    });
}

// A loop with nothing else to do takes what has come at once, however long its pace.
TEST(Lane, AnIdleLoopTakesAStreamAtOnce)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        coil__loop_inbox_set_lane_pace(loop, PACE_LONGER_THAN_A_TEST_NS);
        std::atomic<long> ran{ 0 };
        for (long burst = 1; burst <= 5; burst++) {
            std::thread([&] {
                for (int i = 0; i < 10; i++)
                    post_count(loop, &ran);
            }).join();
            EXPECT_TRUE(await_until([&] { return ran.load() == burst * 10; }, 10.0)) << "burst " << burst;
        }
        return nullptr;
    });
}

// Closing a loop runs every message its lanes hold, pace or not.
TEST(Lane, ClosingRunsWhatAPacedLaneHolds)
{
    coil_loop *loop;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil__loop_inbox_set_lane_pace(loop, PACE_LONGER_THAN_A_TEST_NS);
    Seq s;
    std::thread([&] { post_numbered(loop, &s, 0, 10); }).join();
    EXPECT_EQ(run_until_received(loop, &s, 10), 10);
    std::thread([&] { post_numbered(loop, &s, 10, 30); }).join();
    EXPECT_EQ(coil_loop_close(loop), 0);
    EXPECT_EQ(s.next, 30);
    EXPECT_TRUE(s.in_order);
}
