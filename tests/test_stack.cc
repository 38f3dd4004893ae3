// Task stacks: custom sizes, compact mode at scale, locals surviving compact swaps, the cap on
// dedicated stacks, AUTO falling back to compact, and the guard-page overflow report.
#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <map>
#include <vector>

#include "coil_test.h"

extern "C" {
#include "stack.h"
}

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

template <class Pred> bool yield_until(Pred pred, int limit = 10000)
{
    for (int i = 0; i < limit; i++) {
        if (pred())
            return true;
        if (coil_sleep(0) != 0)
            return false;
    }
    return pred();
}

// ---- custom stack size ----

constexpr size_t kBigLocal = 900 * 1024;

__attribute__((noinline)) void *use_big_stack(void *)
{
    volatile unsigned char big[kBigLocal];
    for (size_t i = 0; i < kBigLocal; i++)
        big[i] = static_cast<unsigned char>(i * 7);
    // Suspend with the whole array live, then check it: the stack really is this task's.
    if (coil_sleep(0) != 0)
        return coil_raise(-EIO, "yield");
    for (size_t i = 0; i < kBigLocal; i++)
        if (big[i] != static_cast<unsigned char>(i * 7))
            return coil_raise(-EIO, "byte %zu changed", i);
    return as_ptr(1);
}

TEST(Stack, ATaskWithACustomStackSizeCanUseMostOfIt)
{
    coil_test::run([]() -> void * {
        coil_task_opts o{};
        o.stack_size = 1024 * 1024;
        o.stack_mode = COIL_STACK_DEDICATED;
        o.name = "big";
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, use_big_stack, nullptr, &o), 0);
        // Another task runs while `big` is suspended with 900 KiB of live locals.
        coil_task *other = nullptr;
        EXPECT_EQ(coil_create_task(&other, [](void *) -> void * { return as_ptr(2); }, nullptr, nullptr), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        const coil_exception *e = coil_task_exception(t);
        EXPECT_EQ(e, nullptr) << (e ? coil_exception_message(e) : "");
        EXPECT_EQ(as_int(r), 1);
        EXPECT_EQ(coil_task_await(other, nullptr), 0);
        coil_task_free(t);
        coil_task_free(other);
        return nullptr;
    });
}

TEST(Stack, ATaskWithASmallCustomStackRuns)
{
    coil_test::run([]() -> void * {
        coil_task_opts o{};
        o.stack_size = 32 * 1024;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *) -> void * {
                                       volatile char buf[8 * 1024];
                                       memset(const_cast<char *>(buf), 1, sizeof buf);
                                       return coil_sleep(0) == 0 ? as_ptr(buf[100]) : nullptr;
                                   },
                                   nullptr, &o),
                  0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(as_int(r), 1);
        coil_task_free(t);
        return nullptr;
    });
}

// ---- compact mode at scale ----

struct Gate {
    coil_future *f = nullptr;
    long arrived = 0;
};
Gate *g_gate; // compact tasks reach shared state through here, never through another task's stack

// ThreadSanitizer gives every task its own fiber with a few hundred KiB of trace state, so a
// hundred thousand live tasks do not fit under it; there the same rule is checked with fewer.
#if defined(__SANITIZE_THREAD__)
#define COIL_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COIL_TEST_TSAN 1
#endif
#endif
#if defined(COIL_TEST_TSAN)
constexpr long kManyTasks = 2000;
#else
constexpr long kManyTasks = 100000;
#endif

void *compact_waiter(void *arg)
{
    g_gate->arrived++;
    int r = coil_future_await(g_gate->f, nullptr);
    return r == 0 ? arg : coil_raise(r, "await");
}

TEST(Stack, AHundredThousandCompactTasksCanBeSuspendedAtOnce)
{
    coil_test::run(
        []() -> void * {
            const long n = kManyTasks;
            Gate gate;
            g_gate = &gate;
            EXPECT_EQ(coil_future_new(&gate.f), 0);
            std::vector<coil_task *> ts(n);
            coil_task_opts o{};
            o.stack_mode = COIL_STACK_COMPACT;
            for (long i = 0; i < n; i++) {
                int rc = coil_create_task(&ts[i], compact_waiter, as_ptr(i), &o);
                if (rc != 0) {
                    ADD_FAILURE() << "create " << i << ": " << coil_strerror(rc);
                    ts.resize(i);
                    break;
                }
            }
            EXPECT_TRUE(yield_until([&] { return gate.arrived == n; }, 100));
            EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), static_cast<size_t>(n) + 1);
            EXPECT_EQ(coil_future_set_result(gate.f, nullptr), 0);
            long long sum = 0;
            int failures = 0;
            for (coil_task *t : ts) {
                void *r = nullptr;
                if (coil_task_await(t, &r) != 0)
                    failures++;
                sum += as_int(r);
                coil_task_free(t);
            }
            EXPECT_EQ(failures, 0);
            EXPECT_EQ(sum, static_cast<long long>(n) * (n - 1) / 2);
            coil_future_free(gate.f);
            g_gate = nullptr;
            return nullptr;
        },
        60.0);
}

// ---- compact locals survive swaps ----

constexpr int kSwapRounds = 40;

// Suspends from `depth` frames down, each frame holding its own pattern, so the stretch of the
// shared stack that is saved and restored differs in size from one suspension to the next.
__attribute__((noinline)) int suspend_at_depth(unsigned seed, int depth)
{
    volatile unsigned char frame[96];
    for (size_t i = 0; i < sizeof frame; i++)
        frame[i] = static_cast<unsigned char>(seed * 131 + depth * 17 + i);
    int bad = 0;
    if (depth > 0)
        bad += suspend_at_depth(seed, depth - 1);
    else if (coil_sleep(0) != 0)
        bad += 1000;
    for (size_t i = 0; i < sizeof frame; i++)
        if (frame[i] != static_cast<unsigned char>(seed * 131 + depth * 17 + i))
            bad++;
    return bad;
}

void *keep_locals(void *arg)
{
    unsigned idx = static_cast<unsigned>(as_int(arg));
    volatile uint32_t mine[200];
    for (size_t i = 0; i < 200; i++)
        mine[i] = idx * 0x9E3779B9u + static_cast<uint32_t>(i);
    int bad = 0;
    for (int round = 0; round < kSwapRounds; round++) {
        // Every fourth task also goes deep (past 8 KiB of frames): its save buffer moves up through
        // the size classes to malloc'd ones and back down.
        int depth = static_cast<int>((idx + round * 37) % (idx % 4 == 0 ? 90 : 5));
        bad += suspend_at_depth(idx, depth);
        for (size_t i = 0; i < 200; i++)
            if (mine[i] != idx * 0x9E3779B9u + static_cast<uint32_t>(i))
                bad++;
    }
    return bad ? coil_raise(-EIO, "task %u saw %d corrupted values", idx, bad) : as_ptr(idx);
}

TEST(Stack, CompactTasksLocalsSurviveBeingSwappedOutAndBack)
{
    coil_test::run([]() -> void * {
        const int n = 64;
        coil_task_opts o{};
        o.stack_mode = COIL_STACK_COMPACT;
        coil_task *ts[n];
        for (int i = 0; i < n; i++)
            EXPECT_EQ(coil_create_task(&ts[i], keep_locals, as_ptr(i), &o), 0);
        for (int i = 0; i < n; i++) {
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(ts[i], &r), 0);
            const coil_exception *e = coil_task_exception(ts[i]);
            EXPECT_EQ(e, nullptr) << (e ? coil_exception_message(e) : "");
            EXPECT_EQ(as_int(r), i);
            coil_task_free(ts[i]);
        }
        return nullptr;
    });
}

TEST(Stack, CompactAndDedicatedTasksInterleaveWithoutCorruptingEachOther)
{
    coil_test::run([]() -> void * {
        const int n = 16;
        coil_task *ts[n];
        for (int i = 0; i < n; i++) {
            coil_task_opts o{};
            o.stack_mode = i % 2 ? COIL_STACK_COMPACT : COIL_STACK_DEDICATED;
            EXPECT_EQ(coil_create_task(&ts[i], keep_locals, as_ptr(i), &o), 0);
        }
        for (int i = 0; i < n; i++) {
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(ts[i], &r), 0);
            EXPECT_EQ(as_int(r), i);
            coil_task_free(ts[i]);
        }
        return nullptr;
    });
}

// ---- the cap on dedicated stacks ----

struct CapState {
    coil_future *gate = nullptr;
    int arrived = 0;
    std::map<uintptr_t, int> frames; // frame address of the task function -> how many tasks
};
CapState *g_cap;

void *cap_waiter(void *arg)
{
    g_cap->frames[reinterpret_cast<uintptr_t>(__builtin_frame_address(0))]++;
    g_cap->arrived++;
    volatile uint64_t mark = 0xC0FFEE00u + static_cast<uint64_t>(as_int(arg));
    int r = coil_future_await(g_cap->gate, nullptr);
    if (r != 0)
        return coil_raise(r, "await");
    if (mark != 0xC0FFEE00u + static_cast<uint64_t>(as_int(arg)))
        return coil_raise(-EIO, "local changed while suspended");
    return arg;
}

coil_loop_opts cap_loop_opts(coil_stack_mode default_mode)
{
    coil_loop_opts lo{};
    lo.max_stacks = 4;
    lo.stack_mode = default_mode;
    return lo;
}

TEST(Stack, DedicatedTaskPastTheLoopsMaxStacksIsENostack)
{
    // The main task is compact here, so the four dedicated stacks are all the waiters'.
    coil_loop_opts lo = cap_loop_opts(COIL_STACK_COMPACT);
    coil_test::run(
        []() -> void * {
            CapState st;
            g_cap = &st;
            EXPECT_EQ(coil_future_new(&st.gate), 0);
            coil_task_opts ded{};
            ded.stack_mode = COIL_STACK_DEDICATED;
            coil_task *ts[4];
            for (int i = 0; i < 4; i++)
                EXPECT_EQ(coil_create_task(&ts[i], cap_waiter, as_ptr(i), &ded), 0);
            EXPECT_TRUE(yield_until([&] { return st.arrived == 4; }));
            coil_task *extra = reinterpret_cast<coil_task *>(0x1);
            EXPECT_EQ(coil_create_task(&extra, cap_waiter, as_ptr(99), &ded), COIL_ENOSTACK);
            EXPECT_EQ(extra, reinterpret_cast<coil_task *>(0x1)) << "nothing handed out on failure";
            EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 5u) << "nothing half-created";
            EXPECT_EQ(coil_future_set_result(st.gate, nullptr), 0);
            for (int i = 0; i < 4; i++) {
                void *r = nullptr;
                EXPECT_EQ(coil_task_await(ts[i], &r), 0);
                EXPECT_EQ(as_int(r), i);
                coil_task_free(ts[i]);
            }
            // The stacks came back: a dedicated task can be created again.
            coil_task *again = nullptr;
            EXPECT_EQ(coil_create_task(&again, [](void *) -> void * { return as_ptr(5); }, nullptr, &ded), 0);
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(again, &r), 0);
            EXPECT_EQ(as_int(r), 5);
            coil_task_free(again);
            coil_future_free(st.gate);
            g_cap = nullptr;
            return nullptr;
        },
        10.0, nullptr, &lo);
}

TEST(Stack, DedicatedTaskThatFindsNoStackWhenItStartsFailsWithENostack)
{
    // Created before any of them ran, all five pass the check at creation; the fifth finds the
    // cap reached when it first runs and ends with COIL_ENOSTACK instead of crashing.
    coil_loop_opts lo = cap_loop_opts(COIL_STACK_COMPACT);
    coil_test::run(
        []() -> void * {
            CapState st;
            g_cap = &st;
            EXPECT_EQ(coil_future_new(&st.gate), 0);
            coil_task_opts ded{};
            ded.stack_mode = COIL_STACK_DEDICATED;
            coil_task *ts[5];
            for (int i = 0; i < 5; i++)
                EXPECT_EQ(coil_create_task(&ts[i], cap_waiter, as_ptr(i), &ded), 0);
            EXPECT_TRUE(yield_until([&] { return coil_task_done(ts[4]); }));
            EXPECT_EQ(coil_task_result(ts[4], nullptr), COIL_ENOSTACK);
            EXPECT_EQ(st.arrived, 4) << "the body of the stackless task never ran";
            EXPECT_EQ(coil_future_set_result(st.gate, nullptr), 0);
            for (int i = 0; i < 4; i++) {
                EXPECT_EQ(coil_task_await(ts[i], nullptr), 0);
                coil_task_free(ts[i]);
            }
            coil_task_free(ts[4]);
            coil_future_free(st.gate);
            g_cap = nullptr;
            return nullptr;
        },
        10.0, nullptr, &lo);
}

TEST(Stack, AutoTasksPastTheCapFallBackToCompactAndStillRun)
{
    // AUTO main task takes one of the four stacks; of ten AUTO waiters three get the rest and the
    // others run compact: all on the one shared stack, so their task function's frame is at the
    // same address.
    coil_loop_opts lo = cap_loop_opts(COIL_STACK_AUTO);
    coil_test::run(
        []() -> void * {
            CapState st;
            g_cap = &st;
            EXPECT_EQ(coil_future_new(&st.gate), 0);
            const int n = 10;
            coil_task *ts[n];
            for (int i = 0; i < n; i++)
                EXPECT_EQ(coil_create_task(&ts[i], cap_waiter, as_ptr(i), nullptr), 0);
            EXPECT_TRUE(yield_until([&] { return st.arrived == n; }));
            int most_shared = 0;
            for (auto &kv : st.frames)
                most_shared = std::max(most_shared, kv.second);
            EXPECT_GE(most_shared, n - 3) << "tasks past the cap did not share the compact stack";
            EXPECT_EQ(coil_future_set_result(st.gate, nullptr), 0);
            for (int i = 0; i < n; i++) {
                void *r = nullptr;
                EXPECT_EQ(coil_task_await(ts[i], &r), 0);
                const coil_exception *e = coil_task_exception(ts[i]);
                EXPECT_EQ(e, nullptr) << (e ? coil_exception_message(e) : "");
                EXPECT_EQ(as_int(r), i);
                coil_task_free(ts[i]);
            }
            coil_future_free(st.gate);
            g_cap = nullptr;
            return nullptr;
        },
        10.0, nullptr, &lo);
}

// ---- slabs: many default-size stacks per mapping ----

size_t resident_bytes()
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "re");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return static_cast<size_t>(resident) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

TEST(StackSlab, TrimmedStacksGiveTheirPagesBackAndComeBackWorking)
{
    constexpr size_t kSize = 64 * 1024, kTouched = 48 * 1024;
    constexpr unsigned kStacks = 40, kKeep = 2; // more than one slab's worth
    coil__stackpool p;
    ASSERT_EQ(coil__stackpool_init(&p, kSize, 16 * 1024, 0, 1024, kKeep), 0);
    std::vector<coil__stack *> held;
    for (unsigned i = 0; i < kStacks; i++) {
        coil__stack *s = coil__stack_get(&p, 0);
        ASSERT_NE(s, nullptr);
        ASSERT_GE(s->size, kSize);
        memset(static_cast<unsigned char *>(coil__stack_top(s)) - kTouched, 0x5a, kTouched);
        held.push_back(s);
    }
    for (coil__stack *s : held)
        coil__stack_put(&p, s);
    size_t bytes = p.bytes_mapped, rss = resident_bytes();
    EXPECT_FALSE(coil__stackpool_trim(&p, 1000));
    EXPECT_EQ(p.nfree, kKeep);
    EXPECT_EQ(p.ncold, kStacks - kKeep);
    EXPECT_EQ(bytes - p.bytes_mapped, (kStacks - kKeep) * p.stride);
    // The trimmed stacks' touched pages are gone (half the expected drop, to allow for noise).
    EXPECT_GT(rss, resident_bytes() + (kStacks - kKeep) * kTouched / 2);

    held.clear();
    for (unsigned i = 0; i < kStacks; i++) {
        coil__stack *s = coil__stack_get(&p, 0);
        ASSERT_NE(s, nullptr);
        ASSERT_GE(s->size, kSize);
        unsigned char *low = static_cast<unsigned char *>(coil__stack_top(s)) - kTouched;
        memset(low, static_cast<int>(i), kTouched);
        ASSERT_EQ(low[kTouched - 1], static_cast<unsigned char>(i));
        held.push_back(s);
    }
    EXPECT_EQ(p.ncold, 0u);
    EXPECT_EQ(p.bytes_mapped, bytes);
    for (coil__stack *s : held)
        coil__stack_put(&p, s);
    coil__stackpool_destroy(&p);
}

// ---- the guard page ----

volatile int g_recursion_limit = INT_MAX; // keeps the compiler from proving the recursion endless

__attribute__((noinline)) int recurse_forever(int depth)
{
    volatile char pad[200];
    pad[0] = static_cast<char>(depth);
    if (depth >= g_recursion_limit)
        return pad[0];
    return recurse_forever(depth + 1) + pad[0];
}

void overflow_in_task(coil_stack_mode mode, const char *name)
{
    coil_loop_opts lo{};
    lo.compact_stack_size = 64 * 1024;
    struct Args {
        coil_stack_mode mode;
        const char *name;
    } args{mode, name};
    coil_test::run(
        [args]() -> void * {
            coil_task_opts o{};
            o.name = args.name;
            o.stack_mode = args.mode;
            if (args.mode == COIL_STACK_DEDICATED)
                o.stack_size = 64 * 1024;
            coil_task *t = nullptr;
            coil_create_task(&t, [](void *) -> void * { return as_ptr(recurse_forever(0)); }, nullptr, &o);
            coil_task_await(t, nullptr);
            return nullptr;
        },
        10.0, nullptr, &lo);
}

// Overflow a default-size stack carved late from a slab, optionally one whose pages were trimmed
// and which came back from the cold list: every slab stack has its own guard page.
void overflow_in_slab_stack(bool recycled)
{
    coil_loop_opts lo{};
    lo.stack_size = 64 * 1024;
    lo.pool_keep = 1;
    coil_test::run(
        [recycled]() -> void * {
            coil_task_opts o{};
            o.stack_mode = COIL_STACK_DEDICATED;
            std::vector<coil_task *> ts(40);
            for (auto &t : ts)
                coil_create_task(&t, [](void *) -> void * { return as_ptr(coil_sleep(0)); }, nullptr, &o);
            for (auto *t : ts) {
                coil_task_await(t, nullptr);
                coil_task_free(t);
            }
            if (recycled)
                coil_sleep(0.005); // the loop blocks: it trims the free stacks past pool_keep
            coil_task *holder = nullptr; // takes the one warm stack, so `deep` gets a cold one
            coil_create_task(&holder, [](void *) -> void * { return as_ptr(coil_sleep(0.001)); }, nullptr, &o);
            o.name = "deep-slab";
            coil_task *t = nullptr;
            coil_create_task(&t, [](void *) -> void * { return as_ptr(recurse_forever(0)); }, nullptr, &o);
            coil_task_await(t, nullptr);
            return nullptr;
        },
        10.0, nullptr, &lo);
}

#if defined(COIL_SANITIZE_BUILD)
// The sanitizer owns SIGSEGV and reports the overflow itself.
const char *const kOverflowDedicated = "";
const char *const kOverflowSlab = "";
const char *const kOverflowCompact = "";
#else
const char *const kOverflowDedicated = "stack overflow in task 'deep'.*[0-9]+-byte stack";
const char *const kOverflowSlab = "stack overflow in task 'deep-slab'.*[0-9]+-byte stack";
const char *const kOverflowCompact = "stack overflow in task 'deep-compact'.*[0-9]+-byte stack.*compact";
#endif

TEST(StackDeathTest, OverflowOfADedicatedStackIsReportedWithTheTaskNameAndSize)
{
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(overflow_in_task(COIL_STACK_DEDICATED, "deep"), kOverflowDedicated);
}

TEST(StackDeathTest, OverflowOfALateSlabStackHitsItsOwnGuardPage)
{
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(overflow_in_slab_stack(false), kOverflowSlab);
}

TEST(StackDeathTest, OverflowOfATrimmedAndReusedSlabStackHitsItsGuardPage)
{
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(overflow_in_slab_stack(true), kOverflowSlab);
}

TEST(StackDeathTest, OverflowOfTheSharedCompactStackIsReportedWithTheTaskName)
{
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_DEATH(overflow_in_task(COIL_STACK_COMPACT, "deep-compact"), kOverflowCompact);
}

} // namespace
