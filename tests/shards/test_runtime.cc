// The runtime: starting shards (count, threads, pinning), running the main task on shard 0,
// and shutting down with tasks and messages still in flight.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <sched.h>
#include <set>
#include <thread>

#include <coil/coil.h>

#include "coil_test.h"
#include "shards_test_util.h"


namespace {

void *where(void *) { return (void *)(intptr_t)sched_getcpu(); }
void *my_thread(void *) { return (void *)(uintptr_t)pthread_self(); }
void *my_loop(void *) { return coil_get_running_loop(); }

unsigned cpus_allowed()
{
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    return (unsigned)CPU_COUNT(&set);
}

} // namespace

TEST(Runtime, DefaultIsOneShardPerAllowedCpu)
{
    coil_runtime *rt;
    ASSERT_EQ(coil_runtime_new(&rt, nullptr), 0);
    EXPECT_EQ(coil_runtime_shard_count(rt), cpus_allowed());
    coil_runtime_free(rt);
}

TEST(Runtime, EveryShardHasItsOwnThreadAndLoop)
{
    run_runtime(3, []() -> void * {
        void *threads[3], *loops[3];
        EXPECT_EQ(coil_submit_to_all(my_thread, nullptr, threads, nullptr), 0);
        EXPECT_EQ(coil_submit_to_all(my_loop, nullptr, loops, nullptr), 0);
        EXPECT_EQ(threads[0], (void *)(uintptr_t)pthread_self()); // shard 0 is the caller's thread
        EXPECT_EQ(std::set<void *>(threads, threads + 3).size(), 3u);
        EXPECT_EQ(std::set<void *>(loops, loops + 3).size(), 3u);
        EXPECT_EQ(loops[0], coil_get_running_loop());
        return nullptr;
    });
}

TEST(Runtime, ShardsArePinnedToTheCpusGiven)
{
    unsigned n = cpus_allowed();
    cpu_set_t set;
    sched_getaffinity(0, sizeof set, &set);
    int cpus[2];
    int k = 0;
    for (int c = 0; c < CPU_SETSIZE && k < 2; c++)
        if (CPU_ISSET(c, &set))
            cpus[k++] = c;
    if (k < 2)
        cpus[1] = cpus[0];
    coil_runtime_opts o{};
    o.cpus = cpus;
    o.ncpus = 2;
    static int want[2];
    want[0] = cpus[0];
    want[1] = cpus[1];
    run_runtime(
        2,
        []() -> void * {
            void *got[2];
            EXPECT_EQ(coil_submit_to_all(where, nullptr, got, nullptr), 0);
            EXPECT_EQ((intptr_t)got[0], want[0]);
            EXPECT_EQ((intptr_t)got[1], want[1]);
            return nullptr;
        },
        10.0, o);
    (void)n;
    // The caller's thread gets its own affinity back after the run.
    cpu_set_t after;
    sched_getaffinity(0, sizeof after, &after);
    EXPECT_TRUE(CPU_EQUAL(&set, &after));
}

TEST(Runtime, RunReturnsTheMainTasksOutcomeAndCanBeCalledAgain)
{
    coil_runtime *rt;
    coil_runtime_opts o{};
    o.shards = 2;
    ASSERT_EQ(coil_runtime_new(&rt, &o), 0);
    void *r = nullptr;
    EXPECT_EQ(coil_runtime_run(rt, [](void *a) -> void * { return a; }, (void *)5, &r), 0);
    EXPECT_EQ((intptr_t)r, 5);
    EXPECT_EQ(coil_runtime_run(rt, [](void *) -> void * { return coil_raise(-EPIPE, "main failed"); }, nullptr, &r),
              -EPIPE);
    coil_runtime_free(rt);
}

TEST(Runtime, RunFromAnotherThreadIsWrongLoop)
{
    coil_runtime *rt;
    coil_runtime_opts o{};
    o.shards = 1;
    ASSERT_EQ(coil_runtime_new(&rt, &o), 0);
    int err = 0;
    std::thread th([&] { err = coil_runtime_run(rt, [](void *a) -> void * { return a; }, nullptr, nullptr); });
    th.join();
    EXPECT_EQ(err, COIL_EWRONGLOOP);
    coil_runtime_free(rt);
}

TEST(Runtime, FreeFromAnotherThreadIsRefusedAndLeavesTheRuntimeUsable)
{
    coil_runtime *rt;
    coil_runtime_opts o{};
    o.shards = 2;
    ASSERT_EQ(coil_runtime_new(&rt, &o), 0);
    std::thread th([rt] { coil_runtime_free(rt); });
    th.join();
    void *r = nullptr;
    EXPECT_EQ(coil_runtime_run(rt, [](void *) -> void * { return (void *)(intptr_t)coil_shard_count(); }, nullptr, &r), 0);
    EXPECT_EQ((intptr_t)r, 2);
    coil_runtime_free(rt);
}

TEST(Runtime, BadOptionsAreRefused)
{
    coil_runtime *rt = nullptr;
    int bad = -1;
    coil_runtime_opts o{};
    o.cpus = &bad;
    o.ncpus = 1;
    EXPECT_EQ(coil_runtime_new(&rt, &o), -EINVAL);
    coil_runtime_opts big{};
    big.shards = 100000;
    EXPECT_EQ(coil_runtime_new(&rt, &big), -EINVAL);
    EXPECT_EQ(coil_runtime_new(nullptr, nullptr), -EINVAL);
    EXPECT_EQ(rt, nullptr);
    coil_runtime_free(nullptr);
}

namespace {

void *backend_here(void *) { return (void *)coil_loop_backend(coil_get_running_loop()); }

// Every shard of a runtime runs tasks on a loop of the backend `name`: asked from shard 0, each
// shard (0 too) answers from its own loop.
void expect_every_shard_on(const char *name, const coil_runtime_opts &opts)
{
    int rc = run_runtime(3, [name]() -> void * {
        void *res[3] = { nullptr, nullptr, nullptr };
        int errs[3] = { -1, -1, -1 };
        EXPECT_EQ(coil_submit_to_all(backend_here, nullptr, res, errs), 0);
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(errs[i], 0) << "shard " << i;
            EXPECT_STREQ(static_cast<const char *>(res[i]), name) << "shard " << i;
        }
        return nullptr;
    }, 10, opts);
    EXPECT_EQ(rc, 0);
}

// For a child (a death test) where gtest's failures go unseen: 0 when every shard of a default
// runtime runs on `name`, else 1 after saying on stderr what it found.
int shards_not_on(const char *name)
{
    coil_runtime *rt = nullptr;
    coil_runtime_opts ro{};
    ro.shards = 3;
    ro.no_pin = true;
    int rc = coil_runtime_new(&rt, &ro);
    if (rc != 0) {
        fprintf(stderr, "coil_runtime_new: %s\n", coil_strerror(rc));
        return 1;
    }
    static void *res[3];
    static int errs[3];
    rc = coil_runtime_run(rt, [](void *) -> void * {
        return (void *)(intptr_t)coil_submit_to_all(backend_here, nullptr, res, errs);
    }, nullptr, nullptr);
    coil_runtime_free(rt);
    int bad = rc != 0;
    for (int i = 0; i < 3; i++)
        if (errs[i] != 0 || !res[i] || strcmp(static_cast<const char *>(res[i]), name) != 0) {
            fprintf(stderr, "shard %d: %s, error %d\n", i, res[i] ? static_cast<const char *>(res[i]) : "(none)",
                    errs[i]);
            bad = 1;
        }
    return bad;
}

coil_runtime_opts on_backend(coil_loop_opts *lo, coil_backend which)
{
    *lo = coil_loop_opts{};
    lo->backend = which;
    coil_runtime_opts ro{};
    ro.no_pin = true;
    ro.loop = lo;
    return ro;
}

} // namespace

TEST(Runtime, EveryShardRunsOnIoUringWhenItsLoopOptionsNameIt)
{
    coil_loop_opts lo;
    expect_every_shard_on("io_uring", on_backend(&lo, COIL_BACKEND_IO_URING));
}

TEST(Runtime, EveryShardRunsOnEpollWhenItsLoopOptionsNameIt)
{
    coil_loop_opts lo;
    expect_every_shard_on("epoll", on_backend(&lo, COIL_BACKEND_EPOLL));
}

// COIL_BACKEND decides for shards whose options say AUTO (in a child of its own, so the variable
// reaches no other test).
TEST(RuntimeDeathTest, EveryShardHonoursCoilBackend)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    for (const char *name : { "io_uring", "epoll" }) {
        EXPECT_EXIT(
            {
                setenv("COIL_BACKEND", name, 1);
                _exit(shards_not_on(name));
            },
            ::testing::ExitedWithCode(0), "")
            << "COIL_BACKEND=" << name;
    }
}

TEST(RuntimeDeathTest, AnUnknownCoilBackendFailsTheRuntimeWithEinvalNamingIt)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            setenv("COIL_BACKEND", "junk", 1);
            coil_runtime *rt = nullptr;
            coil_runtime_opts ro{};
            ro.shards = 2;
            ro.no_pin = true;
            int rc = coil_runtime_new(&rt, &ro);
            _exit(rc == -EINVAL && rt == nullptr ? 0 : 1);
        },
        ::testing::ExitedWithCode(0), "COIL_BACKEND=junk");
}

TEST(Runtime, AnUnknownBackendInTheLoopOptionsIsRefused)
{
    coil_loop_opts lo;
    coil_runtime_opts ro = on_backend(&lo, static_cast<coil_backend>(7));
    coil_runtime *rt = nullptr;
    EXPECT_EQ(coil_runtime_new(&rt, &ro), -EINVAL);
    EXPECT_EQ(rt, nullptr);
}

namespace {
std::atomic<int> cancelled_seen{ 0 };
std::atomic<int> sleepers_started{ 0 };
void *sleep_and_note(void *)
{
    sleepers_started++;
    int err = coil_sleep(1000);
    if (err == -ECANCELED)
        cancelled_seen++;
    return err ? coil_raise(err, NULL) : nullptr;
}
} // namespace

TEST(Runtime, ShutdownCancelsTheTasksLeftOnEveryShard)
{
    cancelled_seen = 0;
    sleepers_started = 0;
    run_runtime(3, []() -> void * {
        for (unsigned s = 0; s < 3; s++) {
            coil_future *f;
            EXPECT_EQ(coil_submit_to(s, sleep_and_note, nullptr, &f), 0);
            coil_future_free(f); // nobody waits: only shutdown can end them
        }
        coil_task *t = nullptr;
        coil_create_task(&t, sleep_and_note, nullptr, nullptr);
        coil_task_free(t);
        EXPECT_TRUE(await_until([] { return sleepers_started.load() == 4; }));
        return nullptr;
    });
    EXPECT_EQ(cancelled_seen.load(), 4);
}

// Main returns with 20,000 calls and their replies still on the rings in both directions; free
// must run or cancel each of them, lose nothing and leak nothing (ASan checks the leaks).
TEST(Runtime, ShutdownWithMessagesInFlight)
{
    static std::atomic<long> ran{ 0 };
    ran = 0;
    // Enough that many are still in flight at the shutdown. Under ThreadSanitizer, with the rest of
    // the suite running beside it, closing after 20000 took longer than the watchdog's grace; a
    // quarter of them still outruns the shards.
    static const int messages = coil_test::time_scale() > 1 ? 5000 : 20000;
    run_runtime(2, []() -> void * {
        for (int i = 0; i < messages; i++) {
            coil_future *f;
            EXPECT_EQ(coil_submit_to(1 - (i & 1), [](void *) -> void * { ran++; return nullptr; }, nullptr, &f), 0);
            coil_future_free(f);
        }
        return nullptr;
    });
    EXPECT_LE(ran.load(), messages);
}

TEST(Runtime, ShutdownWhileForeignThreadsHaveCoroutinesInFlight)
{
    coil_runtime *rt;
    coil_runtime_opts o{};
    o.shards = 2;
    ASSERT_EQ(coil_runtime_new(&rt, &o), 0);
    coil_loop *l1 = coil_runtime_loop(rt, 1);
    std::vector<coil_cfuture *> cfs(1000);
    for (auto &cf : cfs)
        ASSERT_EQ(coil_run_coroutine_threadsafe(l1, sleep_and_note, nullptr, &cf), 0);
    cancelled_seen = 0;
    coil_runtime_free(rt);
    for (auto *cf : cfs) {
        EXPECT_TRUE(coil_cfuture_done(cf));
        EXPECT_EQ(coil_cfuture_result(cf, 0, nullptr), -ECANCELED);
        coil_cfuture_free(cf);
    }
}

// jemalloc's control interface, when the test is linked with jemalloc (normal builds; sanitizer
// builds use the sanitizer's allocator and have no arenas to check).
extern "C" int mallctl(const char *name, void *oldp, size_t *oldlenp, void *newp, size_t newlen)
    __attribute__((weak));

TEST(Runtime, EachShardAllocatesFromItsOwnJemallocArena)
{
    static bool have_jemalloc;
    have_jemalloc = mallctl != nullptr;
    run_runtime(3, []() -> void * {
        void *arenas[3] = {};
        EXPECT_EQ(coil_submit_to_all(
                      [](void *) -> void * {
                          unsigned a = 0;
                          size_t sz = sizeof a;
                          if (have_jemalloc && mallctl("thread.arena", &a, &sz, nullptr, 0) != 0)
                              return coil_raise(-EIO, "mallctl failed");
                          return (void *)(uintptr_t)a;
                      },
                      nullptr, arenas, nullptr),
                  0);
        if (have_jemalloc) {
            EXPECT_EQ(std::set<void *>(arenas, arenas + 3).size(), 3u) << "shards share an arena";
        }
        return nullptr;
    });
}

TEST(Runtime, ShardIdOutsideIsMinusOne)
{
    EXPECT_EQ(coil_shard_id(), -1);
    EXPECT_EQ(coil_shard_count(), 0u);
    EXPECT_EQ(coil_runtime_loop(nullptr, 0), nullptr);
}
