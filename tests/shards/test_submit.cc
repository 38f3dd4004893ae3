// coil_submit_to and coil_submit_to_all: cross-shard calls, their results, errors and
// cancellation from both sides.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>

#include <coil/coil.h>

#include "coil_test.h"
#include "shards_test_util.h"


namespace {

void *return_shard_id(void *) { return (void *)(intptr_t)coil_shard_id(); }
void *return_arg(void *arg) { return arg; }
void *raise_eio(void *) { return coil_raise(-EIO, "boom on shard %d", coil_shard_id()); }

struct Remote {
    std::atomic<int> started{ 0 };
    std::atomic<int> outcome{ 1 }; // what the remote task's sleep returned; 1 = not yet
};

void *sleep_long(void *arg)
{
    auto *r = static_cast<Remote *>(arg);
    r->started = 1;
    int err = coil_sleep(100);
    r->outcome = err;
    return err ? coil_raise(err, NULL) : nullptr;
}

} // namespace

TEST(Submit, RunsOnTheTargetShardAndReturnsItsResult)
{
    run_runtime(2, []() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_submit_to(1, return_shard_id, nullptr, &f), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_future_await(f, &r), 0);
        EXPECT_EQ((intptr_t)r, 1);
        coil_future_free(f);
        EXPECT_EQ(coil_shard_id(), 0);
        return nullptr;
    });
}

TEST(Submit, ToOwnShardWorks)
{
    run_runtime(2, []() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_submit_to(0, return_arg, (void *)42, &f), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_future_await(f, &r), 0);
        EXPECT_EQ((intptr_t)r, 42);
        coil_future_free(f);
        return nullptr;
    });
}

// More calls in flight than a lane or the inbox's ring holds, so the caller's overflow queue
// runs too. Under ThreadSanitizer every task start creates a fiber, a large zeroed allocation,
// which makes the remote tasks many times slower (and slower still on a loaded machine): fewer
// calls there, still past a lane's capacity, and a watchdog sized for sanitizer builds (the
// harness scales it by time_scale(), more under TSan) while staying under ctest's timeout.
#if defined(COIL_TEST_TSAN)
enum { MANY_CALLS = 5000 };
#else
enum { MANY_CALLS = 10000 };
#endif

TEST(Submit, ManyCallsInFlightAllComplete)
{
    run_runtime(2, []() -> void * {
        enum { N = MANY_CALLS };
        EXPECT_GT((unsigned)N, coil__loop_inbox_capacity(coil_get_running_loop()));
        static coil_future *fs[N];
        for (intptr_t i = 0; i < N; i++)
            EXPECT_EQ(coil_submit_to(1, return_arg, (void *)i, &fs[i]), 0);
        long sum = 0;
        for (intptr_t i = 0; i < N; i++) {
            void *r = nullptr;
            EXPECT_EQ(coil_future_await(fs[i], &r), 0);
            sum += (long)(intptr_t)r;
            coil_future_free(fs[i]);
        }
        EXPECT_EQ(sum, (long)N * (N - 1) / 2);
        return nullptr;
    }, 25.0);
}

TEST(Submit, FailureReachesTheCallerWithCodeAndMessage)
{
    run_runtime(2, []() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_submit_to(1, raise_eio, nullptr, &f), 0);
        EXPECT_EQ(coil_future_await(f, nullptr), -EIO);
        const coil_exception *e = coil_future_exception(f);
        EXPECT_NE(e, nullptr);
        if (e) {
            EXPECT_NE(strstr(coil_exception_message(e), "boom on shard 1"), nullptr);
        }
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Submit, CancellingTheAwaitingTaskCancelsTheRemoteTask)
{
    run_runtime(2, []() -> void * {
        static Remote rem;
        rem.started = 0;
        rem.outcome = 1;
        coil_task *waiter = nullptr;
        coil_test::spawn(&waiter, []() -> void * {
            coil_future *f;
            EXPECT_EQ(coil_submit_to(1, sleep_long, &rem, &f), 0);
            int err = coil_future_await(f, nullptr);
            EXPECT_EQ(err, -ECANCELED);
            coil_future_free(f);
            return err ? coil_raise(err, NULL) : nullptr;
        });
        EXPECT_TRUE(await_until([] { return rem.started.load() == 1; }));
        coil_task_cancel(waiter, nullptr);
        EXPECT_EQ(coil_task_await(waiter, nullptr), -ECANCELED);
        coil_task_free(waiter);
        EXPECT_TRUE(await_until([] { return rem.outcome.load() != 1; }));
        EXPECT_EQ(rem.outcome.load(), -ECANCELED);
        return nullptr;
    });
}

TEST(Submit, RemoteCancellationReachesTheCallerAsCancelled)
{
    run_runtime(2, []() -> void * {
        coil_future *f;
        EXPECT_EQ(coil_submit_to(1, [](void *) -> void * { return coil_raise(-ECANCELED, "gave up"); }, nullptr, &f),
                  0);
        EXPECT_EQ(coil_future_await(f, nullptr), -ECANCELED);
        EXPECT_TRUE(coil_future_cancelled(f));
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Submit, CancelledBeforeItStartsNeverRuns)
{
    run_runtime(2, []() -> void * {
        static std::atomic<int> ran{ 0 };
        ran = 0;
        coil_future *f;
        EXPECT_EQ(coil_submit_to(1, [](void *) -> void * { ran = 1; return nullptr; }, nullptr, &f), 0);
        EXPECT_EQ(coil_future_cancel(f, nullptr), 1);
        // A second call to the same shard is queued behind the cancel: once it is back, the first
        // was either skipped or had already run before the cancel arrived.
        coil_future *g;
        EXPECT_EQ(coil_submit_to(1, return_arg, nullptr, &g), 0);
        EXPECT_EQ(coil_future_await(g, nullptr), 0);
        EXPECT_EQ(coil_future_await(f, nullptr), -ECANCELED);
        coil_future_free(f);
        coil_future_free(g);
        return nullptr;
    });
}

TEST(Submit, ToAllGathersEveryShard)
{
    run_runtime(3, []() -> void * {
        void *results[3] = {};
        int errors[3] = { 1, 1, 1 };
        EXPECT_EQ(coil_shard_count(), 3u);
        EXPECT_EQ(coil_submit_to_all(return_shard_id, nullptr, results, errors), 0);
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ((intptr_t)results[i], i);
            EXPECT_EQ(errors[i], 0);
        }
        return nullptr;
    });
}

TEST(Submit, ToAllReportsTheFirstFailure)
{
    run_runtime(2, []() -> void * {
        int errors[2] = {};
        EXPECT_EQ(coil_submit_to_all(raise_eio, nullptr, nullptr, errors), -EIO);
        EXPECT_EQ(errors[0], -EIO);
        EXPECT_EQ(errors[1], -EIO);
        return nullptr;
    });
}

TEST(Submit, BadArgumentsAreRefused)
{
    run_runtime(2, []() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_submit_to(2, return_arg, nullptr, &f), -EINVAL);
        EXPECT_EQ(coil_submit_to(0, nullptr, nullptr, &f), -EINVAL);
        EXPECT_EQ(coil_submit_to(0, return_arg, nullptr, nullptr), -EINVAL);
        EXPECT_EQ(f, nullptr);
        return nullptr;
    });
}

TEST(Submit, OutsideARuntimeIsWrongLoop)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_submit_to(0, return_arg, nullptr, &f), COIL_EWRONGLOOP);
        EXPECT_EQ(coil_shard_id(), -1);
        EXPECT_EQ(coil_shard_count(), 0u);
        EXPECT_EQ(coil_submit_to_all(return_arg, nullptr, nullptr, nullptr), COIL_EWRONGLOOP);
        return nullptr;
    });
}

TEST(Submit, FailureAfterTheCallerGaveUpGoesToTheCallersHandler)
{
    run_runtime(2, []() -> void * {
        static std::atomic<int> reported{ 0 };
        static std::atomic<int> release{ 0 };
        reported = 0;
        release = 0;
        coil_loop_set_exception_handler(
            coil_get_running_loop(),
            [](coil_loop *, const coil_exc_context *ctx, void *) {
                if (ctx->code == -EIO)
                    reported++;
            },
            nullptr);
        static std::atomic<int> started{ 0 };
        started = 0;
        coil_future *f;
        // The remote task ignores cancellation (it never awaits) and then fails.
        EXPECT_EQ(coil_submit_to(1,
                                 [](void *) -> void * {
                                     started = 1;
                                     while (!release.load())
                                         std::this_thread::yield();
                                     return coil_raise(-EIO, "late failure");
                                 },
                                 nullptr, &f),
                  0);
        EXPECT_TRUE(await_until([] { return started.load() == 1; }));
        coil_future_cancel(f, nullptr);
        coil_future_free(f);
        coil_sleep(0); // let the done callback send the cancel
        release = 1;
        EXPECT_TRUE(await_until([] { return reported.load() == 1; }));
        coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr);
        return nullptr;
    });
}
