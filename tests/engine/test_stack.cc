// Task stacks: the default keeps pointers into suspended tasks' stacks valid at any scale, custom
// sizes, compact mode (only by name) at scale, locals surviving compact swaps, the caps on
// dedicated stacks (the loop's, the process's mappings), debug mode's check of the compact rule,
// the guard-page overflow report, the hand-over of a finished task's stack (sanitizers included),
// the alternate signal stacks of loop threads, and LeakSanitizer's view of the stack after a run.
#include <gtest/gtest.h>

#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <atomic>
#include <algorithm>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <coil/introspect.h>

#include "coil_test.h"

extern "C" {
#include "engine/stack.h"
#include "mem/hugemem.h"
}

#if defined(__SANITIZE_ADDRESS__)
#define COIL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL_TEST_ASAN 1
#endif
#endif
#if defined(COIL_TEST_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

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
// (COIL_TEST_TSAN comes from watchdog.h, through coil_test.h.)
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

// The main task of the cap tests is compact: what the waiters share must not live on its stack
// (debug mode poisons a suspended compact task's stack, as another compact task would reuse it).
CapState &fresh_cap_state()
{
    static CapState st;
    st = CapState();
    return st;
}

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
            CapState &st = fresh_cap_state();
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
            CapState &st = fresh_cap_state();
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

TEST(Stack, DefaultTasksPastTheLoopsCapFailWithENostackAndNeverRunCompact)
{
    // The main task takes one of the four stacks; of ten default waiters created before any runs,
    // three get the rest. The others must not run at all (compact, they would share one stack and
    // lose any write through a pointer into it): they end with COIL_ENOSTACK and say why.
    coil_loop_opts lo = cap_loop_opts(COIL_STACK_DEFAULT);
    coil_test::run(
        []() -> void * {
            CapState &st = fresh_cap_state();
            g_cap = &st;
            EXPECT_EQ(coil_future_new(&st.gate), 0);
            const int n = 10;
            coil_task *ts[n];
            for (int i = 0; i < n; i++)
                EXPECT_EQ(coil_create_task(&ts[i], cap_waiter, as_ptr(i), nullptr), 0);
            EXPECT_TRUE(yield_until([&] { return st.arrived == 3; }));
            EXPECT_TRUE(yield_until([&] {
                int done = 0;
                for (int i = 0; i < n; i++)
                    done += coil_task_done(ts[i]);
                return done == n - 3;
            }));
            EXPECT_EQ(st.arrived, 3);
            EXPECT_EQ(st.frames.size(), 3u) << "every task that ran had a stack of its own";
            EXPECT_EQ(coil_future_set_result(st.gate, nullptr), 0);
            int ran = 0, nostack = 0;
            for (int i = 0; i < n; i++) {
                void *r = nullptr;
                int rc = coil_task_await(ts[i], &r);
                if (rc == 0) {
                    EXPECT_EQ(as_int(r), i);
                    ran++;
                } else {
                    EXPECT_EQ(rc, COIL_ENOSTACK);
                    const coil_exception *e = coil_task_exception(ts[i]);
                    EXPECT_NE(e, nullptr);
                    if (e) {
                        EXPECT_NE(strstr(coil_exception_message(e), "max_stacks"), nullptr) << coil_exception_message(e);
                    }
                    nostack++;
                }
                coil_task_free(ts[i]);
            }
            EXPECT_EQ(ran, 3);
            EXPECT_EQ(nostack, n - 3);
            coil_future_free(st.gate);
            g_cap = nullptr;
            return nullptr;
        },
        10.0, nullptr, &lo);
}

TEST(Stack, AnUnknownStackModeIsEinval)
{
    coil_test::run([]() -> void * {
        coil_task_opts o{};
        o.stack_mode = static_cast<coil_stack_mode>(7);
        coil_task *t = reinterpret_cast<coil_task *>(0x1);
        EXPECT_EQ(coil_create_task(&t, [](void *) -> void * { return nullptr; }, nullptr, &o), -EINVAL);
        EXPECT_EQ(t, reinterpret_cast<coil_task *>(0x1));
        return nullptr;
    });
    coil_loop_opts lo{};
    lo.stack_mode = static_cast<coil_stack_mode>(3);
    coil_loop *loop = nullptr;
    EXPECT_EQ(coil_new_event_loop(&loop, &lo), -EINVAL);
}

// ---- the default keeps pointers into suspended stacks valid, at any scale ----

void *child_writes_after_a_sleep(void *arg)
{
    int r = coil_sleep(0.001);
    *static_cast<int *>(arg) = 42;
    return r == 0 ? nullptr : coil_raise(r, "sleep");
}

void *parent_passes_a_local(void *)
{
    int x = 0;
    coil_task *child = nullptr;
    int rc = coil_create_task(&child, child_writes_after_a_sleep, &x, nullptr);
    if (rc != 0)
        return coil_raise(rc, "create child");
    rc = coil_task_await(child, nullptr);
    coil_task_free(child);
    if (rc != 0)
        return coil_raise(rc, "await child");
    return as_ptr(x == 42);
}

TEST(Stack, AThousandParentsPassingALocalToAChildSeeItsWriteUnderTheDefault)
{
    // The everyday C idiom: a pointer to a local, handed to a task that is awaited. Under the
    // default it must hold however many tasks are alive at once.
    coil_test::run(
        []() -> void * {
            const int n = 1000;
            std::vector<coil_task *> ps(n);
            for (int i = 0; i < n; i++)
                EXPECT_EQ(coil_create_task(&ps[i], parent_passes_a_local, nullptr, nullptr), 0);
            int saw = 0, failed = 0;
            for (coil_task *p : ps) {
                void *r = nullptr;
                if (coil_task_await(p, &r) != 0)
                    failed++;
                saw += as_int(r) == 1;
                coil_task_free(p);
            }
            EXPECT_EQ(failed, 0);
            EXPECT_EQ(saw, n) << (n - saw) << " parents never saw their child's write";
            return nullptr;
        },
        30.0);
}

#if defined(COIL_TEST_TSAN)
constexpr long kManyDefaultTasks = 2000;
#else
constexpr long kManyDefaultTasks = 30000; // past any old threshold: 256, and the old cap's ~24,500
#endif

struct Pointed {
    coil_future *gate = nullptr;
    long arrived = 0;
    std::vector<volatile uint64_t *> locals;
};
Pointed *g_pointed;

void *holds_a_local(void *arg)
{
    long i = as_int(arg);
    volatile uint64_t local = 0;
    g_pointed->locals[static_cast<size_t>(i)] = &local;
    g_pointed->arrived++;
    int r = coil_future_await(g_pointed->gate, nullptr);
    if (r != 0)
        return coil_raise(r, "await");
    // Main wrote through the pointer while this task was suspended among thousands of others.
    return local == static_cast<uint64_t>(i) * 3 + 1 ? as_ptr(1) : coil_raise(-EIO, "local %ld lost its write", i);
}

[[maybe_unused]] size_t count_mappings() // every mapping of the process
{
    size_t n = 0;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return 0;
    for (int c; (c = fgetc(f)) != EOF;)
        n += c == '\n';
    fclose(f);
    return n;
}

// How many distinct mappings of /proc/self/maps hold these addresses. (Counting every mapping of
// the process would also count the sanitizers' own, e.g. ThreadSanitizer's per-fiber state.)
size_t mappings_holding(const std::vector<volatile uint64_t *> &addrs)
{
    std::vector<std::pair<uintptr_t, uintptr_t>> maps;
    FILE *f = fopen("/proc/self/maps", "re");
    if (!f)
        return 0;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        unsigned long lo, hi;
        if (sscanf(line, "%lx-%lx", &lo, &hi) == 2)
            maps.emplace_back(lo, hi);
    }
    fclose(f);
    std::set<size_t> used;
    for (volatile uint64_t *p : addrs) {
        uintptr_t a = reinterpret_cast<uintptr_t>(p);
        auto it = std::upper_bound(maps.begin(), maps.end(), std::make_pair(a, UINTPTR_MAX));
        if (it != maps.begin() && a < (it - 1)->second)
            used.insert(static_cast<size_t>(it - 1 - maps.begin()));
    }
    return used.size();
}

bool kernel_has_guard_regions()
{
    long ps = sysconf(_SC_PAGESIZE);
    void *m = mmap(nullptr, 2 * ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return false;
    bool ok = madvise(m, ps, 102 /* MADV_GUARD_INSTALL */) == 0;
    munmap(m, 2 * ps);
    return ok;
}

TEST(Stack, TensOfThousandsOfDefaultTasksKeepPointersIntoTheirSuspendedStacksValid)
{
    coil_test::run(
        []() -> void * {
            const long n = kManyDefaultTasks;
            Pointed pt;
            pt.locals.assign(static_cast<size_t>(n), nullptr);
            g_pointed = &pt;
            EXPECT_EQ(coil_future_new(&pt.gate), 0);
            std::vector<coil_task *> ts(static_cast<size_t>(n));
            for (long i = 0; i < n; i++) {
                int rc = coil_create_task(&ts[static_cast<size_t>(i)], holds_a_local, as_ptr(i), nullptr);
                if (rc != 0) {
                    ADD_FAILURE() << "create " << i << ": " << coil_strerror(rc);
                    ts.resize(static_cast<size_t>(i));
                    break;
                }
            }
            EXPECT_TRUE(yield_until([&] { return pt.arrived == static_cast<long>(ts.size()); }, 100));
            if (kernel_has_guard_regions()) {
                // A stack per mapping (a guard page splitting each) would give one per task.
                EXPECT_LT(mappings_holding(pt.locals), ts.size() / 16) << "with guard regions, a slab of stacks is one mapping";
            }
            // Every local is distinct, and a write through each pointer reaches its task.
            std::map<uintptr_t, int> seen;
            for (long i = 0; i < static_cast<long>(ts.size()); i++) {
                volatile uint64_t *p = pt.locals[static_cast<size_t>(i)];
                seen[reinterpret_cast<uintptr_t>(p)]++;
                *p = static_cast<uint64_t>(i) * 3 + 1;
            }
            EXPECT_EQ(seen.size(), ts.size());
            EXPECT_EQ(coil_future_set_result(pt.gate, nullptr), 0);
            long ok = 0;
            for (coil_task *t : ts) {
                void *r = nullptr;
                if (coil_task_await(t, &r) == 0)
                    ok += as_int(r);
                coil_task_free(t);
            }
            EXPECT_EQ(ok, static_cast<long>(ts.size()));
            coil_future_free(pt.gate);
            g_pointed = nullptr;
            return nullptr;
        },
        120.0);
}

#if !defined(COIL_TEST_TSAN)
TEST(Stack, WithoutGuardRegionsRunningOutOfMappingsIsENostackWithAMessage)
{
    // As on a kernel without MADV_GUARD_INSTALL: each stack's guard page splits its slab, so the
    // process's vm.max_map_count runs out. Tasks past it fail with COIL_ENOSTACK and say why; the
    // rest run, and the process never goes past the limit.
    coil__stack_testing_no_guard_regions(true);
    long max_map = 65530;
    if (FILE *f = fopen("/proc/sys/vm/max_map_count", "re")) {
        if (fscanf(f, "%ld", &max_map) != 1)
            max_map = 65530;
        fclose(f);
    }
    if (max_map > 300000) {
        coil__stack_testing_no_guard_regions(false);
        GTEST_SKIP() << "vm.max_map_count is " << max_map << ": too many stacks to reach its limit here";
    }
    coil_test::run(
        [max_map]() -> void * {
            Pointed pt;
            const long n = max_map / 2 + 1000; // more than the mappings allow at two a stack
            pt.locals.assign(static_cast<size_t>(n), nullptr);
            g_pointed = &pt;
            EXPECT_EQ(coil_future_new(&pt.gate), 0);
            std::vector<coil_task *> ts;
            int create_nostack = 0;
            for (long i = 0; i < n; i++) {
                coil_task *t = nullptr;
                int rc = coil_create_task(&t, holds_a_local, as_ptr(i), nullptr);
                if (rc == COIL_ENOSTACK) {
                    create_nostack++;
                    continue;
                }
                EXPECT_EQ(rc, 0);
                if (rc == 0)
                    ts.push_back(t);
                if (i % 1000 == 999)
                    coil_sleep(0); // let them start: creation then sees the mappings run out
            }
            EXPECT_TRUE(yield_until([&] {
                long settled = pt.arrived;
                for (coil_task *t : ts)
                    settled += coil_task_done(t);
                return settled == static_cast<long>(ts.size());
            }, 100));
            EXPECT_LT(count_mappings(), static_cast<size_t>(max_map));
            EXPECT_GT(pt.arrived, max_map / 4) << "most of the budget went to stacks";
            EXPECT_LT(pt.arrived, n);
            for (long i = 0; i < n; i++)
                if (volatile uint64_t *p = pt.locals[static_cast<size_t>(i)])
                    *p = static_cast<uint64_t>(i) * 3 + 1;
            EXPECT_EQ(coil_future_set_result(pt.gate, nullptr), 0);
            long ok = 0, nostack = 0;
            std::string message;
            for (coil_task *t : ts) {
                void *r = nullptr;
                int rc = coil_task_await(t, &r);
                if (rc == 0) {
                    ok += as_int(r);
                } else if (rc == COIL_ENOSTACK) {
                    nostack++;
                    if (const coil_exception *e = coil_task_exception(t))
                        message = coil_exception_message(e);
                } else {
                    ADD_FAILURE() << "task failed with " << coil_strerror(rc);
                }
                coil_task_free(t);
            }
            EXPECT_EQ(ok, pt.arrived);
            EXPECT_GT(nostack + create_nostack, 0);
            if (nostack) {
                EXPECT_NE(message.find("vm.max_map_count"), std::string::npos) << message;
            }
            coil_future_free(pt.gate);
            g_pointed = nullptr;
            return nullptr;
        },
        120.0);
    coil__stack_testing_no_guard_regions(false);
}
#endif

// ---- debug mode checks the compact rule ----

struct Reports {
    std::vector<std::string> messages, tasks;
};

void collect_report(coil_loop *, const coil_exc_context *ctx, void *arg)
{
    auto *r = static_cast<Reports *>(arg);
    r->messages.push_back(ctx->message ? ctx->message : "");
    r->tasks.push_back(ctx->task ? coil_task_get_name(ctx->task) : "");
}

TEST(StackDebug, AWriteIntoASuspendedCompactTasksStackIsReportedNamingTheTask)
{
    coil_loop_opts lo{};
    lo.debug = 1;
    Reports reports;
    coil_test::run(
        [&reports]() -> void * {
            coil_loop_set_exception_handler(coil_get_running_loop(), collect_report, &reports);
            coil_task_opts o{};
            o.stack_mode = COIL_STACK_COMPACT;
            o.name = "compact-parent";
            coil_task *p = nullptr;
            EXPECT_EQ(coil_create_task(&p, parent_passes_a_local, nullptr, &o), 0);
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(p, &r), 0);
            EXPECT_EQ(as_int(r), 0) << "the write is lost, as compact mode would lose it";
            coil_task_free(p);
            coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr);
            return nullptr;
        },
        10.0, nullptr, &lo);
    ASSERT_EQ(reports.messages.size(), 1u);
    EXPECT_NE(reports.messages[0].find("suspended COIL_STACK_COMPACT task"), std::string::npos) << reports.messages[0];
    EXPECT_EQ(reports.tasks[0], "compact-parent");
}

TEST(StackDebug, CompactTasksThatKeepTheRuleRaiseNoReport)
{
    coil_loop_opts lo{};
    lo.debug = 1;
    Reports reports;
    coil_test::run(
        [&reports]() -> void * {
            coil_loop_set_exception_handler(coil_get_running_loop(), collect_report, &reports);
            const int n = 16;
            coil_task_opts o{};
            o.stack_mode = COIL_STACK_COMPACT;
            coil_task *ts[n];
            for (int i = 0; i < n; i++)
                EXPECT_EQ(coil_create_task(&ts[i], keep_locals, as_ptr(i), &o), 0);
            for (int i = 0; i < n; i++) {
                void *r = nullptr;
                EXPECT_EQ(coil_task_await(ts[i], &r), 0);
                EXPECT_EQ(as_int(r), i);
                coil_task_free(ts[i]);
            }
            coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr);
            return nullptr;
        },
        10.0, nullptr, &lo);
    EXPECT_TRUE(reports.messages.empty()) << reports.messages[0];
}

// ---- the hand-over of a finished task's stack ----

TEST(StackHandOver, ShortTasksStartOnTheStackTheirPredecessorLeft)
{
    // Runs in every build, sanitizers included: they must see this path too. Debug mode times
    // every step, which keeps finishing on the scheduler: it stays off here.
    coil_loop_opts lo{};
    lo.debug = -1;
    coil_test::run(
        []() -> void * {
            coil_loop *loop = coil_get_running_loop();
            uint64_t before = coil__loop_stack_handovers(loop);
            const int n = 100;
            coil_task *ts[n];
            for (int i = 0; i < n; i++)
                EXPECT_EQ(coil_create_task(&ts[i], [](void *a) -> void * { return a; }, as_ptr(i), nullptr), 0);
            long sum = 0;
            for (int i = 0; i < n; i++) {
                void *r = nullptr;
                EXPECT_EQ(coil_task_await(ts[i], &r), 0);
                sum += as_int(r);
                coil_task_free(ts[i]);
            }
            EXPECT_EQ(sum, n * (n - 1) / 2);
            EXPECT_GE(coil__loop_stack_handovers(loop) - before, static_cast<uint64_t>(n - 1));
            return nullptr;
        },
        10.0, nullptr, &lo);
}

// ---- loop threads' alternate signal stacks ----

long vm_size_kb()
{
    long kb = -1;
    if (FILE *f = fopen("/proc/self/status", "re")) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "VmSize: %ld kB", &kb) == 1)
                break;
        fclose(f);
    }
    return kb;
}

void run_and_close_a_loop_on_a_thread()
{
    std::thread th([] {
        coil_loop *loop = nullptr;
        ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
        coil_task *t = nullptr;
        ASSERT_EQ(coil_loop_create_task(loop, &t, [](void *) -> void * { return as_ptr(coil_sleep(0) == 0); },
                                        nullptr, nullptr),
                  0);
        void *r = nullptr;
        EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), &r), 0);
        EXPECT_EQ(as_int(r), 1);
        coil_task_free(t);
        EXPECT_EQ(coil_loop_close(loop), 0);
    });
    th.join();
}

TEST(StackThreads, TwoHundredThreadsThatRunAndCloseALoopLeaveVmSizeWhereItWas)
{
    for (int i = 0; i < 20; i++) // warm up: allocator arenas, thread caches
        run_and_close_a_loop_on_a_thread();
    long before = vm_size_kb();
    for (int i = 0; i < 200; i++)
        run_and_close_a_loop_on_a_thread();
    long after = vm_size_kb();
    ASSERT_GT(before, 0);
    // Each leaked alternate signal stack would be 64 KiB: 200 of them 12.5 MiB.
    EXPECT_LT(after - before, 2048) << "VmSize grew from " << before << " kB to " << after << " kB";
}

// ---- LeakSanitizer after a run ----

#if defined(COIL_TEST_ASAN)
// Uninstrumented, so its locals are on the thread's real stack (not on ASan's heap-allocated fake
// stack, which LeakSanitizer scans wherever the thread runs).
__attribute__((no_sanitize_address, noinline)) int leak_check_holding_blocks_on_the_stack()
{
    void *volatile held[16];
    for (auto &h : held)
        h = malloc(64);
    int leaks = __lsan_do_recoverable_leak_check();
    for (auto &h : held)
        free(h);
    return leaks;
}
#endif

TEST(StackSanitizer, AfterARunLeakSanitizerScansTheThreadsOwnStack)
{
#if !defined(COIL_TEST_ASAN)
    GTEST_SKIP() << "checks AddressSanitizer's fiber bookkeeping; this is not an ASan build";
#else
    // In a fresh process (so nothing before this test shapes what ASan believes): tasks that
    // suspend and resume (through the scheduler and by direct hand-over), then blocks referenced
    // only from this thread's stack. LeakSanitizer must see those references: it scans the range
    // ASan believes the thread runs on, which must be the thread's own stack again.
    ::testing::FLAGS_gtest_death_test_style = "threadsafe";
    EXPECT_EXIT(
        {
            coil_test::run([]() -> void * {
                coil_task *ts[4];
                for (coil_task *&t : ts)
                    coil_create_task(&t, [](void *) -> void * {
                        for (int k = 0; k < 3; k++)
                            coil_sleep(0);
                        return nullptr;
                    }, nullptr, nullptr);
                for (coil_task *t : ts) {
                    coil_task_await(t, nullptr);
                    coil_task_free(t);
                }
                return nullptr;
            });
            _exit(leak_check_holding_blocks_on_the_stack() ? 1 : 0);
        },
        ::testing::ExitedWithCode(0), "");
#endif
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
    ASSERT_EQ(coil__stackpool_init(&p, kSize, 16 * 1024, 0, kKeep), 0);
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

// ---- warm stacks: a steady workload faults nothing after warm-up ----

long minor_faults()
{
    struct rusage ru;
    return getrusage(RUSAGE_SELF, &ru) == 0 ? ru.ru_minflt + ru.ru_majflt : 0;
}

// Runs `n` default-stack tasks alive at once (each waits on `go`), then lets them finish.
void run_a_burst(int n)
{
    coil_event *go = nullptr;
    ASSERT_EQ(coil_event_new(&go), 0);
    std::vector<coil_task *> ts(static_cast<size_t>(n));
    for (auto &t : ts)
        ASSERT_EQ(coil_create_task(&t, [](void *e) -> void * { return as_ptr(coil_event_wait(static_cast<coil_event *>(e))); },
                                   go, nullptr),
                  0);
    const coil__stackpool *p = coil__loop_stacks(coil_get_running_loop());
    EXPECT_TRUE(yield_until([&] { return p->live >= static_cast<unsigned>(n); }));
    coil_event_set(go);
    for (auto *t : ts) {
        void *r = as_ptr(-1);
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(as_int(r), 0);
        coil_task_free(t);
    }
    coil_event_free(go);
}

TEST(StackWarm, ABurstRepeatedAfterAShortIdleSpellRunsOnWarmStacksAndFaultsNothing)
{
    // More tasks than the pool keeps warm regardless (pool_keep's default), and an idle spell in
    // which the loop blocks often enough to give every surplus stack back if it did so at once.
#if defined(COIL_TEST_TSAN)
    // ThreadSanitizer clears and refaults its own shadow of a stack each time a task starts on
    // it: the process's fault count says nothing about the stacks there.
    GTEST_SKIP() << "fault counts include ThreadSanitizer's shadow memory";
#endif
    static constexpr int kTasks = 4096;
    coil_loop_opts lo{};
    lo.debug = -1;
    long faults = -1;
    coil_test::run(
        [&faults]() -> void * {
            run_a_burst(kTasks);
            for (int i = 0; i < 64; i++)
                EXPECT_EQ(coil_sleep(0.003), 0);
            long before = minor_faults();
            run_a_burst(kTasks);
            faults = minor_faults() - before;
            return nullptr;
        },
        30.0, nullptr, &lo);
    // A fresh stack costs at least its top page; warm ones cost none. The slack is for the
    // test's own vector and the runtime's tables, not for stacks.
    EXPECT_LT(faults, kTasks / 16) << "the second burst faulted " << faults << " pages";
}

TEST(StackWarm, AfterABurstAnIdleLoopGivesItsSurplusStacksBackDownToPoolKeep)
{
    static constexpr int kTasks = 1024;
    static constexpr unsigned kKeep = 16;
    coil_loop_opts lo{};
    lo.debug = -1;
    lo.pool_keep = kKeep;
    coil_test::run(
        []() -> void * {
            const coil__stackpool *p = coil__loop_stacks(coil_get_running_loop());
            run_a_burst(kTasks);
            EXPECT_GE(p->nfree, static_cast<unsigned>(kTasks - 1));
            EXPECT_GE(p->bytes_mapped, static_cast<size_t>(kTasks) * p->stride);
            // Idle: the loop blocks on a timer again and again until the surplus has gone back
            // (bounded: the loop's window is far shorter than this).
            for (int i = 0; i < 2000 && p->nfree > kKeep; i++)
                EXPECT_EQ(coil_sleep(0.005), 0);
            EXPECT_LE(p->nfree, kKeep);
            // The warm ones are the live ones, the kept ones and the shared compact stack.
            EXPECT_LE(p->bytes_mapped, (p->live + kKeep) * p->stride + p->shared->map_size);
            // Given back, not lost: another burst runs.
            run_a_burst(kTasks);
            return nullptr;
        },
        60.0, nullptr, &lo);
}

TEST(HugeMemWarm, ABigTableFreedAndAskedForAgainComesBackWarmWithoutAFault)
{
    // The size of gather's state for a hundred thousand tasks: whole huge pages.
    constexpr size_t kBytes = 4 * 1024 * 1024;
    auto touch = [](unsigned char *m) {
        for (size_t i = 0; i < kBytes; i += 4096)
            m[i] = static_cast<unsigned char>(i >> 12);
    };
    auto *a = static_cast<unsigned char *>(coil__huge_alloc(kBytes));
    ASSERT_NE(a, nullptr);
    touch(a);
    coil__huge_free_warm(a, kBytes);
    long before = minor_faults();
    auto *b = static_cast<unsigned char *>(coil__huge_alloc(kBytes));
    ASSERT_NE(b, nullptr);
    touch(b);
    long faults = minor_faults() - before;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(b) % COIL__HUGE_PAGE, 0u);
    EXPECT_EQ(b, a) << "the kept table did not come back";
    coil__huge_free_warm(b, kBytes);
#if defined(COIL_TEST_TSAN)
    (void)faults; // ThreadSanitizer faults in its own shadow of the pages on first access
#else
    EXPECT_LT(faults, 2) << "touching the table again faulted " << faults << " pages";
#endif
}

TEST(HugeMemWarm, FreedTablesBeyondTheCacheBoundGoBackToTheKernel)
{
    constexpr size_t kBytes = 4 * 1024 * 1024;
    size_t n = COIL__HUGE_KEEP_BYTES / kBytes * 2;
    std::vector<void *> held;
    for (size_t i = 0; i < n; i++) {
        void *m = coil__huge_alloc(kBytes);
        ASSERT_NE(m, nullptr);
        memset(m, 1, 4096);
        held.push_back(m);
    }
    for (void *m : held)
        coil__huge_free_warm(m, kBytes);
    EXPECT_LE(coil__huge_cached_bytes(), static_cast<size_t>(COIL__HUGE_KEEP_BYTES));
    EXPECT_GT(coil__huge_cached_bytes(), 0u);
    // Everything it keeps is handed out again before anything new is mapped.
    held.clear();
    for (size_t i = 0; i < n; i++)
        held.push_back(coil__huge_alloc(kBytes));
    EXPECT_EQ(coil__huge_cached_bytes(), 0u);
    // A table freed for good (an outgrown array) goes straight back.
    for (void *m : held)
        coil__huge_free(m, kBytes);
    EXPECT_EQ(coil__huge_cached_bytes(), 0u);
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
            if (recycled) {
                // A loop that blocks trims the free stacks past pool_keep: wait until it has.
                coil_loop_stats st{};
                uint64_t before = coil_loop_get_stats(coil_get_running_loop(), &st) == 0 ? st.stack_bytes : 0;
                for (int i = 0; i < 1000 && st.stack_bytes >= before; i++)
                    if (coil_sleep(0.002) != 0 || coil_loop_get_stats(coil_get_running_loop(), &st) != 0)
                        break;
            }
            static coil_future *never = nullptr;
            coil_future_new(&never);
            coil_task *holder = nullptr; // takes the one warm stack, so `deep` gets a cold one
            coil_create_task(&holder, [](void *) -> void * { return as_ptr(coil_future_await(never, nullptr)); },
                             nullptr, &o);
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
