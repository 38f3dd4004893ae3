// coil_run_coroutine_threadsafe and the concurrent future: blocking waits with timeouts from
// foreign threads, cancellation from both sides, awaiting from another loop, errors.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <thread>
#include <vector>

#include <coil/coil.h>

#include "coil_test.h"
#include "shards_test_util.h"
#include "inbox_debug.h"


namespace {

void *plus_one(void *arg) { return (void *)((intptr_t)arg + 1); }
void *fail_eio(void *) { return coil_raise(-EIO, "cfuture failure"); }

struct Sleeper {
    std::atomic<int> started{ 0 };
    std::atomic<int> outcome{ 1 };
};

void *sleep_forever(void *arg)
{
    auto *s = static_cast<Sleeper *>(arg);
    s->started = 1;
    int err = coil_sleep(1000);
    s->outcome = err;
    return err ? coil_raise(err, NULL) : nullptr;
}

// Run `body` on a foreign thread while the test's loop keeps running; the main task waits for
// the thread to finish without blocking the loop.
void on_foreign_thread(std::function<void()> body)
{
    std::atomic<int> done{ 0 };
    std::thread th([&] {
        body();
        done = 1;
    });
    EXPECT_TRUE(await_until([&] { return done.load() == 1; }, 20.0));
    th.join();
}

} // namespace

TEST(CFuture, ResultBlocksAForeignThreadUntilTheTaskFinishes)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        on_foreign_thread([loop] {
            coil_cfuture *cf;
            ASSERT_EQ(coil_run_coroutine_threadsafe(loop, plus_one, (void *)41, &cf), 0);
            void *r = nullptr;
            EXPECT_EQ(coil_cfuture_result(cf, 5.0, &r), 0);
            EXPECT_EQ((intptr_t)r, 42);
            EXPECT_TRUE(coil_cfuture_done(cf));
            EXPECT_FALSE(coil_cfuture_cancelled(cf));
            coil_cfuture_free(cf);
        });
        return nullptr;
    });
}

TEST(CFuture, ResultTimesOutWithEtimedoutThenCancelEndsIt)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static Sleeper s;
        s.started = 0;
        s.outcome = 1;
        on_foreign_thread([loop] {
            coil_cfuture *cf;
            ASSERT_EQ(coil_run_coroutine_threadsafe(loop, sleep_forever, &s, &cf), 0);
            EXPECT_EQ(coil_cfuture_result(cf, 0.05, nullptr), -ETIMEDOUT);
            EXPECT_FALSE(coil_cfuture_done(cf));
            EXPECT_TRUE(wait_until([] { return s.started.load() == 1; }));
            EXPECT_EQ(coil_cfuture_cancel(cf), 1);
            EXPECT_EQ(coil_cfuture_cancel(cf), 0);
            EXPECT_TRUE(coil_cfuture_cancelled(cf));
            EXPECT_EQ(coil_cfuture_result(cf, 0, nullptr), -ECANCELED);
            EXPECT_TRUE(wait_until([] { return s.outcome.load() != 1; }));
            EXPECT_EQ(s.outcome.load(), -ECANCELED);
            coil_cfuture_free(cf);
        });
        return nullptr;
    });
}

TEST(CFuture, BlockingWaitFromTheLoopsOwnThreadIsEdeadlkNotADeadlock)
{
    coil_test::run([]() -> void * {
        coil_cfuture *cf;
        EXPECT_EQ(coil_run_coroutine_threadsafe(coil_get_running_loop(), plus_one, (void *)1, &cf), 0);
        EXPECT_EQ(coil_cfuture_result(cf, -1, nullptr), -EDEADLK);
        void *r = nullptr;
        EXPECT_EQ(coil_cfuture_await(cf, &r), 0); // awaiting it from a task is fine
        EXPECT_EQ((intptr_t)r, 2);
        EXPECT_EQ(coil_cfuture_result(cf, -1, &r), 0); // and once done, so is result
        coil_cfuture_free(cf);
        return nullptr;
    });
}

TEST(CFuture, FourForeignThreadsSubmitAtOnce)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        std::atomic<int> done{ 0 };
        std::atomic<long> sum{ 0 };
        std::vector<std::thread> ths;
        for (int p = 0; p < 4; p++)
            ths.emplace_back([&, p] {
                std::vector<coil_cfuture *> cfs(2000);
                for (long i = 0; i < 2000; i++)
                    EXPECT_EQ(coil_run_coroutine_threadsafe(loop, plus_one, (void *)(intptr_t)(p * 2000 + i), &cfs[i]), 0);
                for (auto *cf : cfs) {
                    void *r = nullptr;
                    EXPECT_EQ(coil_cfuture_result(cf, 10.0, &r), 0);
                    sum += (long)(intptr_t)r;
                    coil_cfuture_free(cf);
                }
                done++;
            });
        EXPECT_TRUE(await_until([&] { return done.load() == 4; }, 30.0));
        for (auto &t : ths)
            t.join();
        long n = 8000;
        EXPECT_EQ(sum.load(), n * (n - 1) / 2 + n);
        return nullptr;
    }, 40.0);
}

TEST(CFuture, FuturesOutliveTheThreadThatMadeThemAndAnotherThreadFreesThem)
{
    // Enough futures to move the submitting thread from its small chunks onto huge ones; the
    // submitter exits with its last chunk part used, and a second thread waits and frees.
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        std::vector<coil_cfuture *> cfs(20000);
        on_foreign_thread([&] {
            for (size_t i = 0; i < cfs.size(); i++)
                ASSERT_EQ(coil_run_coroutine_threadsafe(loop, plus_one, (void *)(intptr_t)i, &cfs[i]), 0);
        });
        long sum = 0;
        on_foreign_thread([&] {
            for (auto *cf : cfs) {
                void *r = nullptr;
                EXPECT_EQ(coil_cfuture_result(cf, 10.0, &r), 0);
                sum += (long)(intptr_t)r;
                coil_cfuture_free(cf);
            }
        });
        long n = static_cast<long>(cfs.size());
        EXPECT_EQ(sum, n * (n - 1) / 2 + n);
        return nullptr;
    }, 40.0);
}

// Futures come from chunks, huge ones mapped outside the heap where LeakSanitizer cannot see
// them (threadsafe.c): every chunk goes back as soon as its last future is freed, whichever
// thread frees it, and the one a thread is still handing out goes back when the thread exits.
TEST(CFuture, EveryChunkGoesBackOnceAllItsFuturesAreFreed)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        const long base = coil__cfuture_chunks_live();
        std::vector<coil_cfuture *> cfs(20000);
        auto submit_and_wait = [&](size_t n) {
            for (size_t i = 0; i < n; i++)
                ASSERT_EQ(coil_run_coroutine_threadsafe(loop, plus_one, (void *)(intptr_t)i, &cfs[i]), 0);
            for (size_t i = 0; i < n; i++)
                ASSERT_EQ(coil_cfuture_result(cfs[i], 10.0, nullptr), 0);
        };
        // Freed newest first, the last futures freed are those of the thread's first chunk, long
        // since handed out: it goes back at once, while the thread runs. Only the chunk the thread
        // is still handing out remains, until it exits.
        std::atomic<int> stage{ 0 };
        long while_running = -1;
        std::thread a([&] {
            submit_and_wait(cfs.size());
            for (size_t i = cfs.size(); i-- > 0;)
                coil_cfuture_free(cfs[i]);
            while_running = coil__cfuture_chunks_live();
            stage = 1;
            wait_until([&] { return stage.load() == 2; }, 20.0);
        });
        EXPECT_TRUE(await_until([&] { return stage.load() == 1; }, 20.0));
        EXPECT_EQ(while_running, base + 1);
        stage = 2;
        a.join();
        EXPECT_EQ(coil__cfuture_chunks_live(), base);

        // One thread frees part of a chunk's futures and exits; another frees the rest.
        on_foreign_thread([&] { submit_and_wait(600); });
        on_foreign_thread([&] {
            for (size_t i = 0; i < 300; i++)
                coil_cfuture_free(cfs[i]);
        });
        on_foreign_thread([&] {
            for (size_t i = 300; i < 600; i++)
                coil_cfuture_free(cfs[i]);
        });
        EXPECT_EQ(coil__cfuture_chunks_live(), base);
        return nullptr;
    }, 40.0);
}

TEST(CFuture, TaskFailureReachesTheWaiterAsItsCode)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        on_foreign_thread([loop] {
            coil_cfuture *cf;
            ASSERT_EQ(coil_run_coroutine_threadsafe(loop, fail_eio, nullptr, &cf), 0);
            EXPECT_EQ(coil_cfuture_result(cf, 5.0, nullptr), -EIO);
            coil_cfuture_free(cf);
        });
        return nullptr;
    });
}

TEST(CFuture, UnretrievedFailureGoesToTheHandlerOfTheLoopThatRanIt)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static std::atomic<int> reported{ 0 };
        static std::string msg;
        reported = 0;
        coil_loop_set_exception_handler(
            loop,
            [](coil_loop *, const coil_exc_context *ctx, void *) {
                if (ctx->code == -EIO) {
                    msg = ctx->message ? ctx->message : "";
                    reported++;
                }
            },
            nullptr);
        on_foreign_thread([loop] {
            coil_cfuture *cf;
            ASSERT_EQ(coil_run_coroutine_threadsafe(loop, fail_eio, nullptr, &cf), 0);
            EXPECT_TRUE(wait_until([cf] { return coil_cfuture_done(cf); }));
            coil_cfuture_free(cf); // never asked for the outcome
        });
        EXPECT_TRUE(await_until([] { return reported.load() == 1; }));
        EXPECT_NE(msg.find("cfuture failure"), std::string::npos) << msg;
        coil_loop_set_exception_handler(loop, nullptr, nullptr);
        return nullptr;
    });
}

TEST(CFuture, DoneCallbackRunsOnceWhenDoneAndAtOnceIfAlreadyDone)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        on_foreign_thread([loop] {
            static std::atomic<int> calls{ 0 };
            calls = 0;
            coil_cfuture *cf;
            ASSERT_EQ(coil_run_coroutine_threadsafe(loop, plus_one, nullptr, &cf), 0);
            EXPECT_EQ(coil_cfuture_add_done_callback(cf, [](coil_cfuture *, void *) { calls++; }, nullptr), 0);
            EXPECT_EQ(coil_cfuture_result(cf, 5.0, nullptr), 0);
            EXPECT_TRUE(wait_until([] { return calls.load() == 1; }));
            EXPECT_EQ(coil_cfuture_add_done_callback(cf, [](coil_cfuture *, void *) { calls++; }, nullptr), 0);
            EXPECT_EQ(calls.load(), 2);
            EXPECT_EQ(coil_cfuture_add_done_callback(cf, nullptr, nullptr), -EINVAL);
            coil_cfuture_free(cf);
        });
        return nullptr;
    });
}

TEST(CFuture, AwaitFromAnotherShardDeliversTheResult)
{
    run_runtime(2, []() -> void * {
        coil_cfuture *cf;
        coil_loop *l1 = nullptr;
        // Find shard 1's loop from a task running there.
        coil_future *f;
        coil_submit_to(1, [](void *) -> void * { return coil_get_running_loop(); }, nullptr, &f);
        coil_future_await(f, (void **)&l1);
        coil_future_free(f);
        EXPECT_NE(l1, nullptr);
        EXPECT_EQ(coil_run_coroutine_threadsafe(l1, [](void *) -> void * { return (void *)(intptr_t)coil_shard_id(); },
                                                nullptr, &cf),
                  0);
        void *r = nullptr;
        EXPECT_EQ(coil_cfuture_await(cf, &r), 0);
        EXPECT_EQ((intptr_t)r, 1);
        coil_cfuture_free(cf);
        return nullptr;
    });
}

TEST(CFuture, CancellingTheAwaitingTaskCancelsTheFutureAndItsTask)
{
    run_runtime(2, []() -> void * {
        static Sleeper s;
        s.started = 0;
        s.outcome = 1;
        static coil_cfuture *cf;
        coil_loop *l1 = nullptr;
        coil_future *f;
        coil_submit_to(1, [](void *) -> void * { return coil_get_running_loop(); }, nullptr, &f);
        coil_future_await(f, (void **)&l1);
        coil_future_free(f);
        EXPECT_EQ(coil_run_coroutine_threadsafe(l1, sleep_forever, &s, &cf), 0);
        coil_task *waiter = nullptr;
        coil_test::spawn(&waiter, []() -> void * {
            int err = coil_cfuture_await(cf, nullptr);
            EXPECT_EQ(err, -ECANCELED);
            return nullptr;
        });
        EXPECT_TRUE(await_until([] { return s.started.load() == 1; }));
        coil_sleep(0); // the waiter is suspended on cf by now
        coil_task_cancel(waiter, nullptr);
        coil_task_await(waiter, nullptr);
        coil_task_free(waiter);
        EXPECT_TRUE(coil_cfuture_cancelled(cf));
        EXPECT_TRUE(await_until([] { return s.outcome.load() != 1; }));
        EXPECT_EQ(s.outcome.load(), -ECANCELED);
        coil_cfuture_free(cf);
        return nullptr;
    });
}

TEST(CFuture, CancelledBeforeItStartsNeverRuns)
{
    coil_loop *loop;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_set_event_loop(loop);
    static std::atomic<int> ran{ 0 };
    ran = 0;
    coil_cfuture *cf;
    // The loop is not running: the task cannot have started when we cancel.
    ASSERT_EQ(coil_run_coroutine_threadsafe(loop, [](void *) -> void * { ran = 1; return nullptr; }, nullptr, &cf), 0);
    EXPECT_EQ(coil_cfuture_cancel(cf), 1);
    coil_cfuture *marker;
    ASSERT_EQ(coil_run_coroutine_threadsafe(loop, plus_one, nullptr, &marker), 0);
    coil_task *t = nullptr;
    coil_loop_create_task(loop, &t, [](void *m) -> void * {
        coil_cfuture_await(static_cast<coil_cfuture *>(m), nullptr);
        return nullptr;
    }, marker, nullptr);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), 0);
    coil_task_free(t);
    EXPECT_EQ(ran.load(), 0);
    coil_cfuture_free(cf);
    coil_cfuture_free(marker);
    coil_set_event_loop(nullptr);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

TEST(CFuture, ItsTaskCancelledBeforeItsFirstStepEndsTheFutureCancelled)
{
    // What a runtime shutdown does to every task: the coroutine's task is cancelled after the
    // loop took the request but before the task ran. The coroutine is never entered, and the
    // future must still end, cancelled, not wait forever.
    static std::atomic<int> ran{ 0 };
    ran = 0;
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        coil_cfuture *cf = nullptr;
        EXPECT_EQ(coil_run_coroutine_threadsafe(loop, [](void *) -> void * { ran = 1; return nullptr; }, nullptr, &cf), 0);
        coil_task *self = coil_current_task();
        coil_task *found = nullptr;
        for (int i = 0; i < 100 && !found; i++) {
            EXPECT_EQ(coil_sleep(0), 0); // the loop drains the request and queues the task
            coil_task *ts[16];
            size_t n = coil_all_tasks(loop, ts, 16);
            for (size_t k = 0; k < n && k < 16; k++)
                if (ts[k] != self)
                    found = ts[k];
        }
        EXPECT_NE(found, nullptr);
        if (found)
            coil_task_cancel(found, "shutdown");
        EXPECT_TRUE(await_until([&] { return coil_cfuture_done(cf); }, 5.0));
        EXPECT_TRUE(coil_cfuture_cancelled(cf));
        EXPECT_EQ(coil_cfuture_result(cf, 0, nullptr), -ECANCELED);
        EXPECT_EQ(ran.load(), 0);
        coil_cfuture_free(cf);
        return nullptr;
    });
}

TEST(CFuture, BadArgumentsAreEinval)
{
    coil_cfuture *cf = nullptr;
    EXPECT_EQ(coil_run_coroutine_threadsafe(nullptr, plus_one, nullptr, &cf), -EINVAL);
    EXPECT_EQ(coil_cfuture_result(nullptr, 0, nullptr), -EINVAL);
    EXPECT_EQ(coil_cfuture_await(nullptr, nullptr), -EINVAL);
    EXPECT_EQ(coil_cfuture_cancel(nullptr), 0);
    coil_cfuture_free(nullptr);
}

// Closing a loop with a concurrent future's task still pending (and a task of the same loop
// awaiting it) neither hangs nor leaks: the future ends with COIL_ECLOSED.
TEST(CFuture, ClosingTheLoopSettlesPendingFuturesWithEclosed)
{
    coil_loop *loop;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_set_event_loop(loop);
    static Sleeper s;
    s.started = 0;
    s.outcome = 1;
    coil_cfuture *cf;
    ASSERT_EQ(coil_run_coroutine_threadsafe(loop, sleep_forever, &s, &cf), 0);
    coil_task *waiter;
    coil_loop_create_task(loop, &waiter, [](void *c) -> void * {
        coil_cfuture_await(static_cast<coil_cfuture *>(c), nullptr);
        return nullptr;
    }, cf, nullptr);
    coil_task *step;
    coil_loop_create_task(loop, &step, [](void *) -> void * {
        await_until([] { return s.started.load() == 1; });
        return nullptr;
    }, nullptr, nullptr);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(step), nullptr), 0);
    coil_task_free(step);
    coil_task_free(waiter);
    coil_loop_set_exception_handler(loop, [](coil_loop *, const coil_exc_context *, void *) {}, nullptr);
    coil_set_event_loop(nullptr);
    EXPECT_EQ(coil_loop_close(loop), 0);
    EXPECT_TRUE(coil_cfuture_done(cf));
    EXPECT_EQ(coil_cfuture_result(cf, 0, nullptr), COIL_ECLOSED);
    coil_cfuture_free(cf);
}
