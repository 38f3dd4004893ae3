// to_thread, run_in_executor, custom executors and shutting them down; cancellation while the
// function runs on its thread.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <dirent.h>
#include <string>
#include <thread>
#include <vector>

#include <coil/coil.h>

#include "coil_test.h"
#include "shards_test_util.h"


namespace {

void *thread_id(void *) { return (void *)(uintptr_t)pthread_self(); }

int count_threads()
{
    int n = 0;
    DIR *d = opendir("/proc/self/task");
    if (!d)
        return -1;
    while (struct dirent *e = readdir(d))
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n;
}

struct Gate {
    std::atomic<int> entered{ 0 };
    std::atomic<int> open{ 0 };
    std::atomic<int> finished{ 0 };
};

void *wait_at_gate(void *arg)
{
    auto *g = static_cast<Gate *>(arg);
    g->entered++;
    while (!g->open.load())
        std::this_thread::yield();
    g->finished++;
    return new int(7);
}

} // namespace

TEST(Executor, ToThreadRunsTheFunctionOnAnotherThreadAndReturnsItsResult)
{
    coil_test::run([]() -> void * {
        void *r = nullptr;
        EXPECT_EQ(coil_to_thread(thread_id, nullptr, &r), 0);
        EXPECT_FALSE(pthread_equal((pthread_t)(uintptr_t)r, pthread_self()));
        return nullptr;
    });
}

TEST(Executor, TheLoopRunsOtherTasksWhileTheFunctionBlocks)
{
    coil_test::run([]() -> void * {
        static Gate g;
        g.entered = 0;
        g.open = 0;
        coil_task *opener = nullptr;
        // Only a task running on the loop can open the gate the thread is blocked on.
        coil_test::spawn(&opener, []() -> void * {
            await_until([] { return g.entered.load() == 1; });
            g.open = 1;
            return nullptr;
        });
        void *r = nullptr;
        EXPECT_EQ(coil_to_thread(wait_at_gate, &g, &r), 0);
        EXPECT_EQ(*static_cast<int *>(r), 7);
        delete static_cast<int *>(r);
        coil_task_await(opener, nullptr);
        coil_task_free(opener);
        return nullptr;
    });
}

TEST(Executor, CancelledCallerLetsTheFunctionFinishAndFreesItsResult)
{
    coil_test::run([]() -> void * {
        static Gate g;
        static std::atomic<int> freed{ 0 };
        g.entered = 0;
        g.open = 0;
        g.finished = 0;
        freed = 0;
        coil_task *caller = nullptr;
        coil_test::spawn(&caller, []() -> void * {
            void *r = nullptr;
            int err = coil_run_in_executor(nullptr, wait_at_gate, &g,
                                           [](void *p) {
                                               delete static_cast<int *>(p);
                                               freed++;
                                           },
                                           &r);
            EXPECT_EQ(err, -ECANCELED);
            EXPECT_EQ(r, nullptr);
            return nullptr;
        });
        EXPECT_TRUE(await_until([] { return g.entered.load() == 1; }));
        coil_task_cancel(caller, nullptr);
        EXPECT_EQ(coil_task_await(caller, nullptr), 0);
        coil_task_free(caller);
        EXPECT_EQ(g.finished.load(), 0); // the caller returned while the function still runs
        g.open = 1;
        EXPECT_TRUE(await_until([] { return freed.load() == 1; }));
        EXPECT_EQ(g.finished.load(), 1);
        return nullptr;
    });
}

TEST(Executor, CustomExecutorRunsAtMostItsThreadCountAtOnce)
{
    coil_test::run([]() -> void * {
        static coil_executor *ex;
        static std::atomic<int> running{ 0 }, peak{ 0 };
        running = 0;
        peak = 0;
        EXPECT_EQ(coil_executor_new(&ex, 2), 0);
        std::vector<coil_task *> ts(8);
        for (auto &t : ts)
            coil_test::spawn(&t, []() -> void * {
                EXPECT_EQ(coil_run_in_executor(
                              ex,
                              [](void *) -> void * {
                                  int now = ++running;
                                  int p = peak.load();
                                  while (now > p && !peak.compare_exchange_weak(p, now))
                                      ;
                                  // Hold the thread, as a blocking call would, until a second job
                                  // runs beside this one (bounded: a slow second thread, under a
                                  // sanitizer, must not make the first finish every job alone),
                                  // then 5 ms more, in which a third would show if one could run.
                                  auto until = std::chrono::steady_clock::now() +
                                               std::chrono::duration<double>(5 * coil_test::time_scale());
                                  while (peak.load() < 2 && std::chrono::steady_clock::now() < until)
                                      std::this_thread::yield();
                                  auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(5);
                                  while (std::chrono::steady_clock::now() < end)
                                      std::this_thread::yield();
                                  running--;
                                  return nullptr;
                              },
                              nullptr, nullptr, nullptr),
                          0);
                return nullptr;
            });
        for (auto *t : ts) {
            EXPECT_EQ(coil_task_await(t, nullptr), 0);
            coil_task_free(t);
        }
        EXPECT_LE(coil_executor_threads(ex), 2u);
        EXPECT_EQ(peak.load(), 2);
        coil_executor_free(ex);
        return nullptr;
    });
}

TEST(Executor, ShutdownDefaultExecutorThenToThreadIsClosed)
{
    coil_test::run([]() -> void * {
        EXPECT_EQ(coil_to_thread(thread_id, nullptr, nullptr), 0);
        EXPECT_EQ(coil_shutdown_default_executor(5.0), 0);
        EXPECT_EQ(coil_to_thread(thread_id, nullptr, nullptr), COIL_ECLOSED);
        return nullptr;
    });
}

TEST(Executor, ShutdownDefaultExecutorTimesOutButTheLoopStillWaitsAtClose)
{
    static Gate g;
    g.entered = 0;
    g.open = 0;
    g.finished = 0;
    coil_test::run([]() -> void * {
        coil_task *user = nullptr;
        coil_test::spawn(&user, []() -> void * {
            void *r = nullptr;
            EXPECT_EQ(coil_to_thread(wait_at_gate, &g, &r), 0);
            delete static_cast<int *>(r);
            return nullptr;
        });
        EXPECT_TRUE(await_until([] { return g.entered.load() == 1; }));
        EXPECT_EQ(coil_shutdown_default_executor(0.02), -ETIMEDOUT);
        g.open = 1;
        EXPECT_EQ(coil_task_await(user, nullptr), 0);
        coil_task_free(user);
        return nullptr;
    });
    EXPECT_EQ(g.finished.load(), 1);
}

// The Runner shuts the default executor down at close: its threads are gone afterwards.
TEST(Executor, RunnerCloseJoinsTheDefaultExecutorsThreads)
{
    constexpr int kJobs = 3; // the default pool has at least min(32, CPUs + 4) >= 5 threads
    static std::atomic<int> arrived{ 0 }, threads_while_busy{ 0 };
    arrived = 0;
    threads_while_busy = 0;
    // Sanitizers start a helper thread of their own with the first thread a process creates;
    // let that happen before taking the baseline.
    std::thread([] {}).join();
    int before = count_threads();
    coil_test::run([]() -> void * {
        std::vector<coil_task *> ts(kJobs);
        for (auto &t : ts)
            coil_test::spawn(&t, []() -> void * {
                coil_to_thread(
                    [](void *) -> void * {
                        // Meet the other jobs, so all of them provably run on pool threads at once.
                        if (++arrived == kJobs)
                            threads_while_busy = count_threads();
                        auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                        while (arrived.load() < kJobs && std::chrono::steady_clock::now() < deadline)
                            std::this_thread::yield();
                        return nullptr;
                    },
                    nullptr, nullptr);
                return nullptr;
            });
        for (auto *t : ts) {
            coil_task_await(t, nullptr);
            coil_task_free(t);
        }
        return nullptr;
    });
    EXPECT_EQ(arrived.load(), kJobs);
    EXPECT_GE(threads_while_busy.load(), before + kJobs);
    EXPECT_EQ(count_threads(), before);
}

TEST(Executor, ExecutorFreeRunsQueuedWorkFirst)
{
    coil_test::run([]() -> void * {
        coil_executor *ex;
        EXPECT_EQ(coil_executor_new(&ex, 1), 0);
        static std::atomic<int> done{ 0 };
        done = 0;
        std::vector<coil_task *> ts(4);
        for (auto &t : ts)
            coil_test::spawn(&t, [ex]() -> void * {
                coil_run_in_executor(ex, [](void *) -> void * { done++; return nullptr; }, nullptr, nullptr, nullptr);
                return nullptr;
            });
        coil_sleep(0); // every task has queued its job
        coil_executor_free(ex);
        EXPECT_EQ(done.load(), 4);
        for (auto *t : ts) {
            EXPECT_EQ(coil_task_await(t, nullptr), 0);
            coil_task_free(t);
        }
        return nullptr;
    });
}

TEST(Executor, OutsideATaskIsEnotask)
{
    EXPECT_EQ(coil_to_thread(thread_id, nullptr, nullptr), COIL_ENOTASK);
    EXPECT_EQ(coil_shutdown_default_executor(1), COIL_ENOTASK);
    EXPECT_EQ(coil_run_in_executor(nullptr, nullptr, nullptr, nullptr, nullptr), -EINVAL);
}

// ---- failing in a worker: coil_raise on the worker thread reaches the awaiter ----

namespace {

void *raise_eio(void *arg)
{
    return coil_raise(-EIO, "disk %s failed", static_cast<const char *>(arg));
}

std::atomic<int> payloads_freed{ 0 };

void *raise_with_payload(void *)
{
    coil_raise(-EPERM, "first");
    // Raising again replaces the first exception, as in a task.
    return coil_raise_payload(-EACCES, new int(7), [](void *p) {
        delete static_cast<int *>(p);
        payloads_freed++;
    }, "no access to %d", 7);
}

} // namespace

TEST(Executor, AFunctionThatRaisesFailsToThreadWithItsCode)
{
    coil_test::run([]() -> void * {
        void *r = (void *)0x1;
        EXPECT_EQ(coil_to_thread(raise_eio, (void *)"sda", &r), -EIO);
        EXPECT_EQ(r, (void *)0x1) << "no result on failure";
        coil_executor *ex = nullptr;
        EXPECT_EQ(coil_executor_new(&ex, 1), 0);
        payloads_freed = 0;
        EXPECT_EQ(coil_run_in_executor(ex, raise_with_payload, nullptr, nullptr, &r), -EACCES);
        EXPECT_EQ(payloads_freed.load(), 1);
        // A later call on the same worker thread starts clean.
        EXPECT_EQ(coil_run_in_executor(ex, thread_id, nullptr, nullptr, &r), 0);
        coil_executor_free(ex);
        return nullptr;
    });
}

TEST(Executor, RunInExecutorFutureDeliversCodeMessageAndPayload)
{
    coil_test::run([]() -> void * {
        coil_future *f = nullptr;
        EXPECT_EQ(coil_run_in_executor_future(nullptr, raise_eio, (void *)"sdb", nullptr, &f), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_future_await(f, &r), -EIO);
        const coil_exception *e = coil_future_exception(f);
        EXPECT_NE(e, nullptr);
        if (e) {
            EXPECT_EQ(coil_exception_code(e), -EIO);
            EXPECT_STREQ(coil_exception_message(e), "disk sdb failed");
        }
        coil_future_free(f);

        payloads_freed = 0;
        EXPECT_EQ(coil_run_in_executor_future(nullptr, raise_with_payload, nullptr, nullptr, &f), 0);
        EXPECT_EQ(coil_future_await(f, nullptr), -EACCES);
        e = coil_future_exception(f);
        EXPECT_TRUE(e && *static_cast<int *>(coil_exception_payload(e)) == 7);
        EXPECT_STREQ(e ? coil_exception_message(e) : "", "no access to 7");
        EXPECT_EQ(payloads_freed.load(), 0) << "the future owns the payload";
        coil_future_free(f);
        EXPECT_EQ(payloads_freed.load(), 1);

        // A function that succeeds: the future has its result.
        EXPECT_EQ(coil_run_in_executor_future(nullptr, thread_id, nullptr, nullptr, &f), 0);
        EXPECT_EQ(coil_future_await(f, &r), 0);
        EXPECT_NE((uintptr_t)r, (uintptr_t)pthread_self());
        coil_future_free(f);
        return nullptr;
    });
}

TEST(Executor, AWorkerFailureNobodyRetrievesGoesToTheExceptionHandler)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static int code;
        static std::string msg, context;
        code = 0;
        msg.clear();
        context.clear();
        coil_loop_set_exception_handler(
            loop,
            [](coil_loop *, const coil_exc_context *ctx, void *) {
                code = ctx->code;
                context = ctx->message ? ctx->message : "";
                msg = ctx->exception ? coil_exception_message(ctx->exception) : "";
            },
            nullptr);
        coil_future *f = nullptr;
        EXPECT_EQ(coil_run_in_executor_future(nullptr, raise_eio, (void *)"sdc", nullptr, &f), 0);
        // Wait for it to be done without retrieving it.
        EXPECT_TRUE(await_until([f] { return coil_future_done(f); }));
        coil_future_free(f);
        EXPECT_EQ(code, -EIO);
        EXPECT_EQ(msg, "disk sdc failed");
        EXPECT_EQ(context, "Future exception was never retrieved");
        coil_loop_set_exception_handler(loop, nullptr, nullptr);
        return nullptr;
    });
}

TEST(Executor, AWorkerFailurePassedOnByATaskReachesACfutureUser)
{
    // run_coroutine_threadsafe from a plain thread; the task awaits a function that raises and
    // passes its exception on: the thread sees the code, and the message reaches the handler
    // when the thread lets go of the cfuture without retrieving it.
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        static std::string msg;
        msg.clear();
        coil_loop_set_exception_handler(
            loop,
            [](coil_loop *, const coil_exc_context *ctx, void *) { msg = ctx->message ? ctx->message : ""; },
            nullptr);
        auto task = [](void *) -> void * {
            coil_future *f = nullptr;
            if (coil_run_in_executor_future(nullptr, raise_eio, (void *)"sdd", nullptr, &f) != 0)
                return coil_raise(-ENOMEM, "could not start");
            int rc = coil_future_await(f, nullptr);
            const coil_exception *e = coil_future_exception(f);
            void *r = rc ? coil_raise(rc, "%s", e ? coil_exception_message(e) : "?") : nullptr;
            coil_future_free(f);
            return r;
        };
        int rc = 0;
        std::thread th([&] {
            coil_cfuture *cf = nullptr;
            EXPECT_EQ(coil_run_coroutine_threadsafe(loop, task, nullptr, &cf), 0);
            rc = coil_cfuture_result(cf, 10.0, nullptr);
            coil_cfuture *cf2 = nullptr;
            EXPECT_EQ(coil_run_coroutine_threadsafe(loop, task, nullptr, &cf2), 0);
            while (!coil_cfuture_done(cf2))
                std::this_thread::yield();
            coil_cfuture_free(cf2); // never retrieved
            coil_cfuture_free(cf);
        });
        EXPECT_TRUE(await_until([] { return !msg.empty(); }, 10.0));
        th.join();
        EXPECT_EQ(rc, -EIO);
        EXPECT_NE(msg.find("disk sdd failed"), std::string::npos) << msg;
        coil_loop_set_exception_handler(loop, nullptr, nullptr);
        return nullptr;
    });
}

TEST(Executor, AFailureOfACallWhoseAwaiterWasCancelledIsDroppedWithItsPayload)
{
    coil_test::run([]() -> void * {
        static Gate g;
        g.entered = 0;
        g.open = 0;
        g.finished = 0;
        payloads_freed = 0;
        coil_task *t = nullptr;
        coil_test::spawn(&t, []() -> void * {
            return (void *)(intptr_t)coil_to_thread(
                [](void *) -> void * {
                    g.entered++;
                    while (!g.open.load())
                        std::this_thread::yield();
                    return raise_with_payload(nullptr);
                },
                nullptr, nullptr);
        });
        EXPECT_TRUE(await_until([] { return g.entered.load() == 1; }));
        coil_task_cancel(t, nullptr);
        void *r = nullptr;
        coil_task_await(t, &r);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        coil_task_free(t);
        g.open = 1;
        EXPECT_TRUE(await_until([] { return payloads_freed.load() == 1; }));
        return nullptr;
    });
}

// A loop's close first settles, with COIL_ECLOSED, the concurrent futures whose tasks it will
// never run again, and only then waits for its default executor's jobs: a job blocked on the
// result of such a future is released, so the close neither hangs nor waits out the job's own
// timeout.
TEST(Executor, LoopCloseReleasesAJobWaitingOnOneOfItsCoroutinesBeforeWaitingForTheJob)
{
    static std::atomic<int> started{ 0 }, job_result{ 1 };
    started = 0;
    job_result = 1;
    static const double job_wait_s = 30.0 * coil_test::time_scale();
    coil_loop *loop;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_set_event_loop(loop);
    static coil_loop *target;
    target = loop;
    coil_task *step;
    coil_loop_create_task(loop, &step, [](void *) -> void * {
        coil_future *f = nullptr;
        // The job (on a pool thread) starts a coroutine on this loop and waits for its result.
        EXPECT_EQ(coil_run_in_executor_future(nullptr, [](void *) -> void * {
            coil_cfuture *cf = nullptr;
            int err = coil_run_coroutine_threadsafe(target, [](void *) -> void * {
                started = 1;
                return coil_sleep(1000) ? nullptr : nullptr;
            }, nullptr, &cf);
            job_result = err ? err : coil_cfuture_result(cf, job_wait_s, nullptr);
            coil_cfuture_free(cf);
            return nullptr;
        }, nullptr, nullptr, &f), 0);
        coil_future_free(f);
        EXPECT_TRUE(await_until([] { return started.load() == 1; }));
        return nullptr;
    }, nullptr, nullptr);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(step), nullptr), 0);
    coil_task_free(step);
    ASSERT_EQ(started.load(), 1);
    coil_loop_set_exception_handler(loop, [](coil_loop *, const coil_exc_context *, void *) {}, nullptr);
    coil_set_event_loop(nullptr);
    auto t0 = std::chrono::steady_clock::now();
    EXPECT_EQ(coil_loop_close(loop), 0);
    double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    EXPECT_EQ(job_result.load(), COIL_ECLOSED);
    EXPECT_LT(took, job_wait_s / 2) << "the close waited for the job before releasing it";
}
