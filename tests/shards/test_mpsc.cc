// The inbound MPSC ring: FIFO, bounded, nothing lost or duplicated under contention.
#include <gtest/gtest.h>

#include <sched.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

extern "C" {
#include "mpsc.h"
}

namespace {

void mark(void *, void *) {}

coil__msg make_msg(uintptr_t a, uintptr_t b)
{
    return coil__msg{mark, reinterpret_cast<void *>(a), reinterpret_cast<void *>(b)};
}

uintptr_t field(void *p) { return reinterpret_cast<uintptr_t>(p); }

struct Ring {
    coil__mpsc *q = nullptr;
    explicit Ring(uint32_t cap) { EXPECT_EQ(coil__mpsc_init(&q, cap), 0); }
    ~Ring() { coil__mpsc_free(q); }
    operator coil__mpsc *() const { return q; }
};

TEST(Mpsc, PopReturnsMessagesInPushOrderOnOneThread)
{
    Ring q(16);
    for (uintptr_t i = 0; i < 10; i++) {
        coil__msg m = make_msg(i, i * 7);
        ASSERT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), 0);
    }
    coil__msg out[16];
    ASSERT_EQ(coil__mpsc_pop_batch(q, out, 16), 10u);
    for (uintptr_t i = 0; i < 10; i++) {
        EXPECT_EQ(out[i].fn, &mark);
        EXPECT_EQ(field(out[i].a), i);
        EXPECT_EQ(field(out[i].b), i * 7);
    }
    EXPECT_EQ(coil__mpsc_pop_batch(q, out, 16), 0u);
}

TEST(Mpsc, PushOnFullRingReturnsEagainAndChangesNothing)
{
    Ring q(8);
    for (uintptr_t i = 0; i < 8; i++) {
        coil__msg m = make_msg(i, 0);
        ASSERT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), 0);
    }
    coil__msg extra = make_msg(999, 999);
    EXPECT_EQ(coil__mpsc_push(q, extra.fn, extra.a, extra.b), -EAGAIN);
    EXPECT_EQ(coil__mpsc_push(q, extra.fn, extra.a, extra.b), -EAGAIN);

    coil__msg out[16];
    ASSERT_EQ(coil__mpsc_pop_batch(q, out, 16), 8u);
    for (uintptr_t i = 0; i < 8; i++)
        EXPECT_EQ(field(out[i].a), i);
    EXPECT_TRUE(coil__mpsc_empty(q));

    // One slot freed is one push accepted, no more.
    for (uintptr_t i = 0; i < 8; i++)
        ASSERT_EQ(coil__mpsc_push(q, extra.fn, extra.a, extra.b), 0);
    ASSERT_EQ(coil__mpsc_pop_batch(q, out, 1), 1u);
    EXPECT_EQ(coil__mpsc_push(q, extra.fn, extra.a, extra.b), 0);
    EXPECT_EQ(coil__mpsc_push(q, extra.fn, extra.a, extra.b), -EAGAIN);
}

TEST(Mpsc, CapacityRoundsUpToAPowerOfTwoOfAtLeastTwo)
{
    const struct { uint32_t asked, got; } cases[] = {
        {1, 2}, {2, 2}, {3, 4}, {4, 4}, {5, 8}, {1000, 1024}, {1024, 1024},
        {COIL__MPSC_MAX_CAPACITY, COIL__MPSC_MAX_CAPACITY},
    };
    for (const auto &c : cases) {
        Ring q(c.asked);
        EXPECT_EQ(coil__mpsc_capacity(q), c.got) << "asked " << c.asked;
    }
}

TEST(Mpsc, CapacityOfOneHoldsTwoMessages)
{
    Ring q(1);
    coil__msg m = make_msg(1, 2);
    EXPECT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), 0);
    EXPECT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), 0);
    EXPECT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), -EAGAIN);
}

TEST(Mpsc, InitRejectsZeroAndOversizedCapacity)
{
    coil__mpsc *sentinel = reinterpret_cast<coil__mpsc *>(uintptr_t{0x1});
    for (uint32_t bad : {0u, COIL__MPSC_MAX_CAPACITY + 1, UINT32_MAX}) {
        coil__mpsc *q = sentinel;
        EXPECT_EQ(coil__mpsc_init(&q, bad), -EINVAL) << "capacity " << bad;
        EXPECT_EQ(q, sentinel) << "out written on error";
    }
}

TEST(Mpsc, FreeAcceptsNull)
{
    coil__mpsc_free(nullptr);
}

TEST(Mpsc, EmptyTracksWhatAPopWouldFind)
{
    Ring q(4);
    EXPECT_TRUE(coil__mpsc_empty(q));
    coil__msg m = make_msg(1, 1);
    ASSERT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), 0);
    EXPECT_FALSE(coil__mpsc_empty(q));
    coil__msg out;
    ASSERT_EQ(coil__mpsc_pop_batch(q, &out, 1), 1u);
    EXPECT_TRUE(coil__mpsc_empty(q));
}

TEST(Mpsc, PopBatchTakesNoMoreThanMax)
{
    Ring q(16);
    for (uintptr_t i = 0; i < 10; i++) {
        coil__msg m = make_msg(i, 0);
        ASSERT_EQ(coil__mpsc_push(q, m.fn, m.a, m.b), 0);
    }
    coil__msg out[4];
    EXPECT_EQ(coil__mpsc_pop_batch(q, out, 0), 0u);
    uintptr_t next = 0;
    for (uint32_t want : {3u, 3u, 3u, 1u, 0u}) {
        ASSERT_EQ(coil__mpsc_pop_batch(q, out, 3), want);
        for (uint32_t i = 0; i < want; i++)
            EXPECT_EQ(field(out[i].a), next++);
    }
    EXPECT_EQ(next, 10u);
}

TEST(Mpsc, FifoHoldsAcrossManyWrapArounds)
{
    Ring q(4);
    uintptr_t pushed = 0, popped = 0;
    coil__msg out[8];
    // Uneven push and pop counts so head and tail cross the wrap point at every offset.
    for (int round = 0; round < 20000; round++) {
        uint32_t n = 1 + round % 4;
        for (uint32_t i = 0; i < n; i++) {
            coil__msg m = make_msg(pushed, ~pushed);
            int rc = coil__mpsc_push(q, m.fn, m.a, m.b);
            if (rc == -EAGAIN)
                break;
            ASSERT_EQ(rc, 0);
            pushed++;
        }
        uint32_t got = coil__mpsc_pop_batch(q, out, 1 + round % 3);
        for (uint32_t i = 0; i < got; i++) {
            ASSERT_EQ(field(out[i].a), popped);
            ASSERT_EQ(field(out[i].b), ~popped);
            popped++;
        }
    }
    popped += coil__mpsc_pop_batch(q, out, 8);
    EXPECT_EQ(popped, pushed);
    EXPECT_GT(pushed, 10000u * coil__mpsc_capacity(q));
    EXPECT_TRUE(coil__mpsc_empty(q));
}

// Producers stamp (producer id, sequence); the consumer proves exactly-once delivery and
// per-producer order by expecting each producer's next sequence number, and cross-checks the
// total with a checksum neither side can get right by accident.
void stress(uint32_t capacity, unsigned producers, uintptr_t per_producer)
{
    Ring q(capacity);
    std::atomic<bool> give_up{false};
    std::atomic<unsigned> ready{0};
    std::vector<std::thread> threads;
    for (unsigned id = 0; id < producers; id++) {
        threads.emplace_back([&, id] {
            ready.fetch_add(1);
            while (ready.load() < producers)
                sched_yield();
            for (uintptr_t seq = 0; seq < per_producer; seq++) {
                coil__msg m = make_msg(id, seq);
                int rc;
                while ((rc = coil__mpsc_push(q, m.fn, m.a, m.b)) == -EAGAIN) {
                    if (give_up.load(std::memory_order_relaxed))
                        return;
                    sched_yield();
                }
                ASSERT_EQ(rc, 0);
            }
        });
    }

    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::vector<uintptr_t> next(producers, 0);
    uint64_t checksum = 0, expected = 0;
    for (unsigned id = 0; id < producers; id++)
        for (uintptr_t seq = 0; seq < per_producer; seq++)
            expected += (uint64_t(id) + 1) * 0x9E3779B97F4A7C15ull ^ (seq * 0xBF58476D1CE4E5B9ull);

    uint64_t total = 0, want = uint64_t(producers) * per_producer;
    coil__msg out[32];
    bool failed = false;
    while (total < want && !failed) {
        uint32_t n = coil__mpsc_pop_batch(q, out, 32);
        if (n == 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                ADD_FAILURE() << "timed out after " << total << " of " << want << " messages";
                failed = true;
            }
            sched_yield();
            continue;
        }
        for (uint32_t i = 0; i < n; i++) {
            uintptr_t id = field(out[i].a), seq = field(out[i].b);
            if (out[i].fn != &mark || id >= producers || seq != next[id]) {
                ADD_FAILURE() << "bad message: producer " << id << " seq " << seq
                              << " expected " << (id < producers ? next[id] : 0);
                failed = true;
                break;
            }
            next[id]++;
            checksum += (uint64_t(id) + 1) * 0x9E3779B97F4A7C15ull ^ (seq * 0xBF58476D1CE4E5B9ull);
        }
        total += n;
    }
    give_up.store(true);
    for (auto &t : threads)
        t.join();
    if (failed)
        return;

    EXPECT_EQ(total, want);
    EXPECT_EQ(checksum, expected);
    for (unsigned id = 0; id < producers; id++)
        EXPECT_EQ(next[id], per_producer) << "producer " << id;
    EXPECT_TRUE(coil__mpsc_empty(q));
    EXPECT_EQ(coil__mpsc_pop_batch(q, out, 32), 0u) << "a message was duplicated";
}

TEST(Mpsc, FourProducersDeliverEveryMessageOnceAndInOrder)
{
    stress(1024, 4, 250000);
}

TEST(Mpsc, TinyRingUnderContentionLosesAndDuplicatesNothing)
{
    // Capacity 2 keeps the ring full almost all the time: every push races the fullness check.
    stress(2, 4, 20000);
}

} // namespace
