// The event loop: call_soon ordering, running and stopping, run_until_complete, closing, the
// thread's current loop, loop time and the exception handler.
#include <gtest/gtest.h>

#include <time.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <string>
#include <thread>
#include <vector>

#include "coil_test.h"
#include "loop_test_util.h"

namespace {

using coil_test::LoopTest;

using coil_test::mono_ns;

// ---- call_soon ----

TEST_F(LoopTest, CallSoonRunsCallbacksInFifoOrder)
{
    std::vector<int> order;
    for (int i = 0; i < 20; i++)
        ASSERT_EQ(soon([&order, i] {
                      order.push_back(i);
                      return 0;
                  }),
                  0);
    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    std::vector<int> want;
    for (int i = 0; i < 20; i++)
        want.push_back(i);
    EXPECT_EQ(order, want);
}

struct Order {
    std::vector<std::string> *log;
    const char *name;
};

void *log_task(void *arg)
{
    auto *o = static_cast<Order *>(arg);
    o->log->push_back(o->name);
    return nullptr;
}

TEST_F(LoopTest, CallSoonInterleavesWithTasksInTheOrderTheyBecameReady)
{
    std::vector<std::string> log;
    Order a{&log, "taskA"}, b{&log, "taskB"};
    coil_task *ta = nullptr, *tb = nullptr;
    ASSERT_EQ(coil_loop_create_task(loop, &ta, log_task, &a, nullptr), 0);
    ASSERT_EQ(soon([&log] {
                  log.push_back("cb1");
                  return 0;
              }),
              0);
    ASSERT_EQ(coil_loop_create_task(loop, &tb, log_task, &b, nullptr), 0);
    ASSERT_EQ(soon([&log] {
                  log.push_back("cb2");
                  return 0;
              }),
              0);
    ASSERT_EQ(coil_loop_run_until_complete(loop, coil_task_future(tb), nullptr), 0);
    EXPECT_EQ(log, (std::vector<std::string>{"taskA", "cb1", "taskB", "cb2"}));
    coil_task_free(ta);
    coil_task_free(tb);
}

TEST_F(LoopTest, CallbackScheduledFromACallbackRunsInTheNextIteration)
{
    std::vector<std::string> log;
    ASSERT_EQ(soon([this, &log] {
                  log.push_back("outer");
                  soon([&log] {
                      log.push_back("inner");
                      return 0;
                  });
                  return 0;
              }),
              0);
    // Queued before the inner one exists: it belongs to the same batch as "outer" and stops the
    // loop at the end of that batch, so "inner" must not have run yet.
    ASSERT_EQ(soon([this, &log] {
                  log.push_back("stopper");
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(log, (std::vector<std::string>{"outer", "stopper"}));

    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(log, (std::vector<std::string>{"outer", "stopper", "inner"}));
}

TEST_F(LoopTest, CallbackThatReschedulesItselfForeverDoesNotStarveTimers)
{
    int spins = 0;
    coil_test::Callback *spin = nullptr;
    spin = keep([this, &spins, &spin] {
        spins++;
        return coil_loop_call_soon(loop, coil_test::call_callback, spin, nullptr);
    });
    ASSERT_EQ(coil_loop_call_soon(loop, coil_test::call_callback, spin, nullptr), 0);
    bool fired = false;
    ASSERT_EQ(later(0.01,
                    [this, &fired] {
                        fired = true;
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_TRUE(fired);
    EXPECT_GT(spins, 1);
}

TEST_F(LoopTest, CallSoonWithNullCallbackReturnsEinval)
{
    EXPECT_EQ(coil_loop_call_soon(loop, nullptr, nullptr, nullptr), -EINVAL);
    EXPECT_EQ(coil_loop_call_soon(nullptr, coil_test::call_callback, nullptr, nullptr), -EINVAL);
}

TEST(Loop, CallSoonOnAClosedLoopReturnsEclosed)
{
    // close() frees the loop, so the only moment a closed loop can be called is while close is
    // under way: from the exception handler it calls for a task that is still pending.
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_future *never = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &never), 0);
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t, [](void *f) -> void * { return (void *)(intptr_t)coil_future_await((coil_future *)f, nullptr); },
                  never, nullptr),
              0);
    // Let the task start and suspend on the future.
    coil_future *step = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &step), 0);
    ASSERT_EQ(coil_loop_call_soon(
                  loop, [](void *f) { return coil_future_set_result((coil_future *)f, nullptr); }, step, nullptr),
              0);
    ASSERT_EQ(coil_loop_run_until_complete(loop, step, nullptr), 0);
    ASSERT_FALSE(coil_task_done(t));

    struct Seen {
        int calls = 0;
        int soon_rc = 0;
        int later_rc = 0;
        int task_rc = 0;
        bool closed = false;
    } seen;
    coil_loop_set_exception_handler(
        loop,
        [](coil_loop *l, const coil_exc_context *, void *arg) {
            auto *s = static_cast<Seen *>(arg);
            s->calls++;
            s->closed = coil_loop_is_closed(l);
            s->soon_rc = coil_loop_call_soon(l, coil_test::call_callback, nullptr, nullptr);
            s->later_rc = coil_loop_call_later(l, 1.0, coil_test::call_callback, nullptr, nullptr);
            s->task_rc = coil_loop_create_task(l, nullptr, [](void *) -> void * { return nullptr; }, nullptr, nullptr);
        },
        &seen);
    coil_future_free(step);
    coil_future_free(never);
    coil_task_free(t);
    ASSERT_EQ(coil_loop_close(loop), 0);
    EXPECT_EQ(seen.calls, 1);
    EXPECT_TRUE(seen.closed);
    EXPECT_EQ(seen.soon_rc, COIL_ECLOSED);
    EXPECT_EQ(seen.later_rc, COIL_ECLOSED);
    EXPECT_EQ(seen.task_rc, COIL_ECLOSED);
}

// ---- time ----

TEST_F(LoopTest, LoopTimeIsMonotonicSecondsAndAgreesWithTimeNs)
{
    uint64_t before = mono_ns();
    double t0 = coil_loop_time(loop);
    uint64_t n0 = coil_loop_time_ns(loop);
    uint64_t after = mono_ns();
    // Seconds on CLOCK_MONOTONIC: within the bracket of two direct clock reads.
    EXPECT_GE(t0 * 1e9, (double)before - 1e3);
    EXPECT_LE(t0 * 1e9, (double)after + 1e3);
    EXPECT_GE(n0, before);
    EXPECT_LE(n0, after);
    EXPECT_NEAR((double)n0 / 1e9, t0, 1e-3);

    double prev = t0;
    uint64_t prev_ns = n0;
    for (int i = 0; i < 1000; i++) {
        double t = coil_loop_time(loop);
        uint64_t n = coil_loop_time_ns(loop);
        ASSERT_GE(t, prev);
        ASSERT_GE(n, prev_ns);
        prev = t;
        prev_ns = n;
    }
}

// ---- running and stopping ----

TEST_F(LoopTest, StopFromACallbackRunsTheRestOfTheBatchThenRunForeverReturns)
{
    std::vector<int> log;
    ASSERT_EQ(soon([this, &log] {
                  log.push_back(1);
                  coil_loop_stop(loop);
                  soon([&log] {
                      log.push_back(3);
                      return 0;
                  });
                  return 0;
              }),
              0);
    ASSERT_EQ(soon([&log] {
                  log.push_back(2);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(log, (std::vector<int>{1, 2}));
    EXPECT_FALSE(coil_loop_is_running(loop));
    // The callback queued after stop() is still there for the next run.
    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
}

TEST_F(LoopTest, StopBeforeRunForeverIsNotRememberedAcrossRuns)
{
    // A stop() that lands in a run carries no further: the next run_forever runs until its own stop.
    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    int ran = 0;
    ASSERT_EQ(later(0.005,
                    [this, &ran] {
                        ran++;
                        coil_loop_stop(loop);
                        return 0;
                    }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(ran, 1);
}

TEST_F(LoopTest, StopBeforeRunForeverRunsExactlyOneIterationThenReturns)
{
    // asyncio: stop() on a loop that is not running makes the next run_forever() run the
    // callbacks already scheduled (and poll I/O without blocking) once, then return.
    std::vector<int> log;
    ASSERT_EQ(soon([this, &log] {
                  log.push_back(1);
                  soon([&log] {
                      log.push_back(3);
                      return 0;
                  });
                  return 0;
              }),
              0);
    ASSERT_EQ(soon([&log] {
                  log.push_back(2);
                  return 0;
              }),
              0);
    coil_loop_stop(loop);
    EXPECT_EQ(coil_loop_run_forever(loop), 0);
    EXPECT_EQ(log, (std::vector<int>{1, 2})) << "the scheduled batch runs, what it schedules waits";
    EXPECT_FALSE(coil_loop_is_running(loop));
    // The stop was used up: the next run goes until its own stop.
    coil_loop_stop(loop);
    EXPECT_EQ(coil_loop_run_forever(loop), 0);
    EXPECT_EQ(log, (std::vector<int>{1, 2, 3}));
}

TEST_F(LoopTest, StopBeforeRunUntilCompleteRunsOneIterationThenReturnsEstopped)
{
    coil_future *f = nullptr, *g = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    ASSERT_EQ(coil_loop_create_future(loop, &g), 0);
    int ran = 0;
    ASSERT_EQ(soon([&ran] {
                  ran++;
                  return 0;
              }),
              0);
    coil_loop_stop(loop);
    EXPECT_EQ(coil_loop_run_until_complete(loop, f, nullptr), COIL_ESTOPPED);
    EXPECT_EQ(ran, 1);
    EXPECT_FALSE(coil_future_done(f));
    // Stopped while running, from a callback, with the future still pending.
    ASSERT_EQ(soon([this] {
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, g, nullptr), COIL_ESTOPPED);
    EXPECT_STREQ(coil_err_name(COIL_ESTOPPED), "COIL_ESTOPPED");
    coil_future_free(f);
    coil_future_free(g);
}

TEST_F(LoopTest, RunUntilCompleteReturnsTheResultOfAFutureSetFromACallback)
{
    coil_future *f = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    static int value = 42;
    ASSERT_EQ(soon([f] { return coil_future_set_result(f, &value); }), 0);
    arm_watchdog();
    void *res = nullptr;
    EXPECT_EQ(coil_loop_run_until_complete(loop, f, &res), 0);
    disarm_watchdog();
    EXPECT_EQ(res, &value);
    EXPECT_TRUE(coil_future_done(f));
    coil_future_free(f);
}

TEST_F(LoopTest, RunUntilCompleteOnATaskReturnsWhatTheTaskReturned)
{
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t,
                  [](void *) -> void * {
                      if (coil_sleep(0.001) != 0)
                          return nullptr;
                      return (void *)(intptr_t)7;
                  },
                  nullptr, nullptr),
              0);
    arm_watchdog();
    void *res = nullptr;
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), &res), 0);
    disarm_watchdog();
    EXPECT_EQ((intptr_t)res, 7);
    coil_task_free(t);
}

TEST_F(LoopTest, RunUntilCompleteReturnsTheTasksErrorCode)
{
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t, [](void *) -> void * { return coil_raise(-EIO, "disk on fire"); }, nullptr, nullptr),
              0);
    void *res = (void *)1;
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), &res), -EIO);
    EXPECT_EQ(res, (void *)1) << "result must not be written on failure";
    const coil_exception *e = coil_task_exception(t);
    ASSERT_NE(e, nullptr);
    EXPECT_STREQ(coil_exception_message(e), "disk on fire");
    coil_task_free(t);
}

TEST_F(LoopTest, RunUntilCompleteReturnsEcanceledForACancelledTask)
{
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t,
                  [](void *) -> void * {
                      int r = coil_sleep(10);
                      return coil_raise(r ? r : -EIO, "sleep returned %d", r);
                  },
                  nullptr, nullptr),
              0);
    ASSERT_EQ(later(0.001, [t] { return coil_task_cancel(t, "stop it") == 1 ? 0 : -EIO; }), 0);
    arm_watchdog();
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), -ECANCELED);
    disarm_watchdog();
    EXPECT_TRUE(coil_task_cancelled(t));
    coil_task_free(t);
}

TEST_F(LoopTest, RunUntilCompleteWithNothingThatCanCompleteTheFutureReturnsEnothing)
{
    // No watchdog here on purpose: a timer would be something that can wake the loop.
    coil_future *f = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, f, nullptr), COIL_ENOTHING);
    EXPECT_FALSE(coil_future_done(f));
    EXPECT_FALSE(coil_loop_is_running(loop));
    // The loop is still usable: complete it properly now.
    ASSERT_EQ(soon([f] { return coil_future_set_result(f, nullptr); }), 0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, f, nullptr), 0);
    coil_future_free(f);
}

TEST_F(LoopTest, RunUntilCompleteOnATaskStuckOnAFutureNobodySetsReturnsEnothing)
{
    coil_future *never = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &never), 0);
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t,
                  [](void *f) -> void * {
                      int r = coil_future_await((coil_future *)f, nullptr);
                      return r ? coil_raise(r, "await failed") : nullptr;
                  },
                  never, nullptr),
              0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), COIL_ENOTHING);
    EXPECT_FALSE(coil_task_done(t));
    // Cancelling unblocks it, and the loop finishes the job.
    EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), -ECANCELED);
    coil_task_free(t);
    coil_future_free(never);
}

TEST_F(LoopTest, IsRunningIsTrueOnlyInsideARun)
{
    EXPECT_FALSE(coil_loop_is_running(loop));
    bool inside = false;
    coil_loop *running = nullptr;
    ASSERT_EQ(soon([this, &inside, &running] {
                  inside = coil_loop_is_running(loop);
                  running = coil_get_running_loop();
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_TRUE(inside);
    EXPECT_EQ(running, loop);
    EXPECT_FALSE(coil_loop_is_running(loop));
    EXPECT_EQ(coil_get_running_loop(), nullptr);
}

TEST_F(LoopTest, RunningALoopInsideARunningLoopReturnsErunning)
{
    coil_loop *other = nullptr;
    ASSERT_EQ(coil_new_event_loop(&other, nullptr), 0);
    coil_future *f = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &f), 0);
    int same_forever = 0, same_until = 0, other_forever = 0;
    ASSERT_EQ(soon([&] {
                  same_forever = coil_loop_run_forever(loop);
                  same_until = coil_loop_run_until_complete(loop, f, nullptr);
                  other_forever = coil_loop_run_forever(other);
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(same_forever, COIL_ERUNNING);
    EXPECT_EQ(same_until, COIL_ERUNNING);
    EXPECT_EQ(other_forever, COIL_ERUNNING);
    EXPECT_FALSE(coil_loop_is_running(other));
    coil_future_free(f);
    EXPECT_EQ(coil_loop_close(other), 0);
}

TEST_F(LoopTest, CloseWhileRunningReturnsErunningAndFreesNothing)
{
    int rc = 0;
    ASSERT_EQ(soon([this, &rc] {
                  rc = coil_loop_close(loop);
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(rc, COIL_ERUNNING);
    EXPECT_FALSE(coil_loop_is_closed(loop));
    // Still fully usable.
    int ran = 0;
    ASSERT_EQ(soon([this, &ran] {
                  ran++;
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(ran, 1);
}

struct Destroyed {
    std::vector<std::string> messages;
    std::vector<std::string> names;
};

void record_destroyed(coil_loop *, const coil_exc_context *ctx, void *arg)
{
    auto *d = static_cast<Destroyed *>(arg);
    d->messages.push_back(ctx->message ? ctx->message : "");
    d->names.push_back(ctx->task ? coil_task_get_name(ctx->task) : "");
}

TEST(Loop, CloseWithPendingTasksReportsEachToTheExceptionHandler)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_future *never = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &never), 0);
    const char *names[] = {"sleeper", "awaiter", "never-started"};
    // One suspended in a sleep, one on a future, one that never got to run at all.
    ASSERT_EQ(coil_loop_create_task(
                  loop, nullptr, [](void *) -> void * { return (void *)(intptr_t)coil_sleep(100); }, nullptr,
                  coil_test::Named(names[0])),
              0);
    ASSERT_EQ(coil_loop_create_task(
                  loop, nullptr,
                  [](void *f) -> void * { return (void *)(intptr_t)coil_future_await((coil_future *)f, nullptr); },
                  never, coil_test::Named(names[1])),
              0);
    coil_future *step = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &step), 0);
    ASSERT_EQ(coil_loop_call_soon(
                  loop, [](void *f) { return coil_future_set_result((coil_future *)f, nullptr); }, step, nullptr),
              0);
    ASSERT_EQ(coil_loop_run_until_complete(loop, step, nullptr), 0);
    coil_future_free(step);
    ASSERT_EQ(coil_loop_create_task(
                  loop, nullptr, [](void *) -> void * { return nullptr; }, nullptr,
                  coil_test::Named(names[2])),
              0);
    EXPECT_EQ(coil_all_tasks(loop, nullptr, 0), 3u);

    Destroyed d;
    coil_loop_set_exception_handler(loop, record_destroyed, &d);
    coil_future_free(never);
    ASSERT_EQ(coil_loop_close(loop), 0);
    ASSERT_EQ(d.messages.size(), 3u);
    for (auto &m : d.messages)
        EXPECT_EQ(m, "Task was destroyed but it is pending!");
    std::vector<std::string> got = d.names;
    std::sort(got.begin(), got.end());
    EXPECT_EQ(got, (std::vector<std::string>{"awaiter", "never-started", "sleeper"}));
}

TEST(Loop, CloseReleasesHandlesTheirOwnersStillHold)
{
    // A finished task, a failed future and a far-off timer whose handles nobody freed: close
    // releases them all (checked by LeakSanitizer) without reporting them as pending.
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_task *done_task = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &done_task, [](void *) -> void * { return nullptr; }, nullptr,
                  coil_test::Named("finished-but-held")),
              0);
    ASSERT_EQ(coil_loop_run_until_complete(loop, coil_task_future(done_task), nullptr), 0);
    coil_future *held = nullptr;
    ASSERT_EQ(coil_loop_create_future(loop, &held), 0);
    ASSERT_EQ(coil_future_set_exception(held, -EIO, "kept"), 0);
    coil_handle h;
    ASSERT_EQ(coil_loop_call_later(loop, 100, coil_test::call_callback, nullptr, &h), 0);
    Destroyed d;
    coil_loop_set_exception_handler(loop, record_destroyed, &d);
    EXPECT_EQ(coil_loop_close(loop), 0);
    EXPECT_TRUE(d.messages.empty()) << "nothing was pending";
}

// ---- the thread's loop ----

TEST(Loop, GetRunningLoopAndGetEventLoopFollowSetEventLoopAndRuns)
{
    EXPECT_EQ(coil_get_running_loop(), nullptr);
    EXPECT_EQ(coil_get_event_loop(), nullptr);
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    EXPECT_EQ(coil_get_event_loop(), nullptr) << "a new loop is not set by creating it";
    ASSERT_EQ(coil_set_event_loop(loop), 0);
    EXPECT_EQ(coil_get_event_loop(), loop);
    EXPECT_EQ(coil_get_running_loop(), nullptr);

    coil_loop *in_running = nullptr, *in_event = nullptr;
    struct Probe {
        coil_loop **running, **event;
        coil_loop *loop;
    } p{&in_running, &in_event, loop};
    ASSERT_EQ(coil_loop_call_soon(
                  loop,
                  [](void *arg) {
                      auto *pr = static_cast<Probe *>(arg);
                      *pr->running = coil_get_running_loop();
                      *pr->event = coil_get_event_loop();
                      coil_loop_stop(pr->loop);
                      return 0;
                  },
                  &p, nullptr),
              0);
    ASSERT_EQ(coil_loop_run_forever(loop), 0);
    EXPECT_EQ(in_running, loop);
    EXPECT_EQ(in_event, loop);

    ASSERT_EQ(coil_set_event_loop(nullptr), 0);
    EXPECT_EQ(coil_get_event_loop(), nullptr);
    ASSERT_EQ(coil_set_event_loop(loop), 0);
    ASSERT_EQ(coil_loop_close(loop), 0);
    EXPECT_EQ(coil_get_event_loop(), nullptr) << "closing the thread's loop unsets it";
}

TEST(Loop, SetEventLoopFromAnotherThreadReturnsEwrongloop)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    // Bind the loop to this thread by running it once.
    ASSERT_EQ(coil_loop_call_soon(
                  loop,
                  [](void *l) {
                      coil_loop_stop((coil_loop *)l);
                      return 0;
                  },
                  loop, nullptr),
              0);
    ASSERT_EQ(coil_loop_run_forever(loop), 0);
    int rc = 0;
    coil_loop *seen = loop;
    std::thread th([&] {
        rc = coil_set_event_loop(loop);
        seen = coil_get_event_loop();
    });
    th.join();
    EXPECT_EQ(rc, COIL_EWRONGLOOP);
    EXPECT_EQ(seen, nullptr);
    ASSERT_EQ(coil_loop_close(loop), 0);
}

TEST(Loop, RunningALoopOnAnotherThreadAfterItRanReturnsEwrongloop)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    ASSERT_EQ(coil_loop_call_soon(
                  loop,
                  [](void *l) {
                      coil_loop_stop((coil_loop *)l);
                      return 0;
                  },
                  loop, nullptr),
              0);
    ASSERT_EQ(coil_loop_run_forever(loop), 0);
    int rc = 0;
    std::thread th([&] { rc = coil_loop_run_forever(loop); });
    th.join();
    EXPECT_EQ(rc, COIL_EWRONGLOOP);
    ASSERT_EQ(coil_loop_close(loop), 0);
}

// ---- exception handler ----

struct Caught {
    int calls = 0;
    int code = 0;
    std::string message;
    bool had_handle = false;
    coil_loop *loop = nullptr;
    void *arg = nullptr;
};

void catch_ctx(coil_loop *loop, const coil_exc_context *ctx, void *arg)
{
    auto *c = static_cast<Caught *>(arg);
    c->calls++;
    c->code = ctx->code;
    c->message = ctx->message ? ctx->message : "";
    c->had_handle = ctx->handle != nullptr;
    c->loop = ctx->loop == loop ? loop : nullptr;
    c->arg = arg;
}

TEST_F(LoopTest, SetGetExceptionHandlerRoundTripsAndNullRestoresTheDefault)
{
    void *arg = (void *)1;
    EXPECT_EQ(coil_loop_get_exception_handler(loop, &arg), nullptr) << "default is reported as NULL";
    Caught c;
    coil_loop_set_exception_handler(loop, catch_ctx, &c);
    EXPECT_EQ(coil_loop_get_exception_handler(loop, &arg), catch_ctx);
    EXPECT_EQ(arg, &c);
    EXPECT_EQ(coil_loop_get_exception_handler(loop, nullptr), catch_ctx);
    coil_loop_set_exception_handler(loop, nullptr, nullptr);
    EXPECT_EQ(coil_loop_get_exception_handler(loop, &arg), nullptr);
}

TEST_F(LoopTest, CallExceptionHandlerRoutesTheContextToTheHandler)
{
    Caught c;
    coil_loop_set_exception_handler(loop, catch_ctx, &c);
    coil_exc_context ctx{};
    ctx.message = "custom";
    ctx.code = -EPIPE;
    ctx.loop = loop;
    coil_loop_call_exception_handler(loop, &ctx);
    EXPECT_EQ(c.calls, 1);
    EXPECT_EQ(c.code, -EPIPE);
    EXPECT_EQ(c.message, "custom");
    EXPECT_EQ(c.loop, loop);
    EXPECT_EQ(c.arg, &c);
}

TEST_F(LoopTest, DefaultExceptionHandlerPrintsOneLineWithMessageCodeNameAndDescription)
{
    coil_exc_context ctx{};
    ctx.message = "something broke";
    ctx.code = -ECONNRESET;
    ctx.loop = loop;
    testing::internal::CaptureStderr();
    coil_loop_default_exception_handler(loop, &ctx);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(out, std::string("coil: something broke: ECONNRESET: ") + coil_strerror(-ECONNRESET) + "\n");

    // With no handler set, call_exception_handler goes to the default.
    testing::internal::CaptureStderr();
    coil_loop_call_exception_handler(loop, &ctx);
    EXPECT_EQ(testing::internal::GetCapturedStderr(), out);
}

TEST_F(LoopTest, DefaultExceptionHandlerNamesTheTask)
{
    coil_task *t = nullptr;
    ASSERT_EQ(coil_loop_create_task(
                  loop, &t, [](void *) -> void * { return coil_raise(-EIO, "bad block"); }, nullptr,
                  coil_test::Named("reader")),
              0);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), nullptr), -EIO);
    coil_exc_context ctx{};
    ctx.message = "Task exception was never retrieved";
    ctx.exception = coil_task_exception(t);
    ctx.task = t;
    ctx.loop = loop;
    testing::internal::CaptureStderr();
    coil_loop_default_exception_handler(loop, &ctx);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_NE(out.find("coil: Task exception was never retrieved: EIO: bad block"), std::string::npos) << out;
    EXPECT_NE(out.find("task 'reader'"), std::string::npos) << out;
    coil_task_free(t);
}

TEST_F(LoopTest, CallbackReturningANegativeCodeReachesTheHandlerAndTheLoopGoesOn)
{
    Caught c;
    coil_loop_set_exception_handler(loop, catch_ctx, &c);
    bool after = false;
    ASSERT_EQ(soon([] { return -EPROTO; }), 0);
    ASSERT_EQ(soon([this, &after] {
                  after = true;
                  coil_loop_stop(loop);
                  return 0;
              }),
              0);
    ASSERT_EQ(run_forever_guarded(), 0);
    EXPECT_EQ(c.calls, 1);
    EXPECT_EQ(c.code, -EPROTO);
    EXPECT_EQ(c.message, "Exception in callback");
    EXPECT_TRUE(c.had_handle);
    EXPECT_TRUE(after) << "the loop must keep running after a failed callback";
}

struct Nested {
    int calls = 0;
    int max_depth = 0;
    int depth = 0;
};

void nesting_handler(coil_loop *loop, const coil_exc_context *ctx, void *arg)
{
    auto *n = static_cast<Nested *>(arg);
    n->calls++;
    n->depth++;
    if (n->depth > n->max_depth)
        n->max_depth = n->depth;
    coil_exc_context inner = *ctx;
    inner.message = "reported from inside the handler";
    coil_loop_call_exception_handler(loop, &inner);
    n->depth--;
}

TEST_F(LoopTest, HandlerThatCallsCallExceptionHandlerDoesNotRecurseItGoesToTheDefault)
{
    Nested n;
    coil_loop_set_exception_handler(loop, nesting_handler, &n);
    coil_exc_context ctx{};
    ctx.message = "outer";
    ctx.code = -EIO;
    ctx.loop = loop;
    testing::internal::CaptureStderr();
    coil_loop_call_exception_handler(loop, &ctx);
    std::string out = testing::internal::GetCapturedStderr();
    EXPECT_EQ(n.calls, 1);
    EXPECT_EQ(n.max_depth, 1);
    EXPECT_NE(out.find("coil: reported from inside the handler: EIO"), std::string::npos) << out;
    // The handler is armed again for the next report.
    testing::internal::CaptureStderr();
    coil_loop_call_exception_handler(loop, &ctx);
    testing::internal::GetCapturedStderr();
    EXPECT_EQ(n.calls, 2);
}

} // namespace
