// Tasks: creating, awaiting, results, names, current_task/all_tasks and eager start (3.12).
#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

void *return_arg(void *arg) { return arg; }

// Waits for the future in arg, then returns 7.
void *await_future_then_7(void *arg)
{
    int r = coil_future_await(static_cast<coil_future *>(arg), nullptr);
    return r == 0 ? as_ptr(7) : coil_raise(r, "await failed");
}

// Yield until `pred` holds, at most `limit` times (a bound that fails the test, not a sleep).
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

TEST(Task, AwaitReturnsTheValueTheTaskFunctionReturned)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, return_arg, as_ptr(12345), nullptr), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(as_int(r), 12345);
        // A second await of the same (done) task gives the same value again.
        r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(as_int(r), 12345);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Task, AwaitWithNullResultPointerStillWaitsForCompletion)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, return_arg, as_ptr(1), nullptr), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_TRUE(coil_task_done(t));
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Task, RunnerReturnsTheMainTaskValue)
{
    void *r = nullptr;
    EXPECT_EQ(coil_test::run([]() -> void * { return as_ptr(99); }, 10.0, &r), 0);
    EXPECT_EQ(as_int(r), 99);
}

TEST(Task, ResultBeforeDoneIsInvalidState)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, return_arg, as_ptr(3), nullptr), 0);
        void *r = as_ptr(-1);
        EXPECT_EQ(coil_task_result(t, &r), COIL_EINVALSTATE);
        EXPECT_EQ(as_int(r), -1) << "a failed result() must not touch the out-parameter";
        EXPECT_EQ(coil_task_exception(t), nullptr);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(coil_task_result(t, &r), 0);
        EXPECT_EQ(as_int(r), 3);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Task, DoneAndCancelledFlagsFollowTheOutcome)
{
    coil_test::run([]() -> void * {
        coil_future *gate_ok = nullptr, *gate_cancel = nullptr;
        EXPECT_EQ(coil_future_new(&gate_ok), 0);
        EXPECT_EQ(coil_future_new(&gate_cancel), 0);
        coil_task *ok = nullptr, *failed = nullptr, *cancelled = nullptr;
        EXPECT_EQ(coil_create_task(&ok, await_future_then_7, gate_ok, nullptr), 0);
        EXPECT_EQ(coil_create_task(&failed, [](void *) -> void * { return coil_raise(-EIO, "boom"); }, nullptr,
                                   nullptr),
                  0);
        EXPECT_EQ(coil_create_task(&cancelled, await_future_then_7, gate_cancel, nullptr), 0);
        for (coil_task *t : {ok, failed, cancelled}) {
            EXPECT_FALSE(coil_task_done(t));
            EXPECT_FALSE(coil_task_cancelled(t));
        }
        EXPECT_TRUE(yield_until([&] { return coil_task_done(failed); }));
        EXPECT_EQ(coil_task_cancel(cancelled, nullptr), 1);
        EXPECT_EQ(coil_future_set_result(gate_ok, nullptr), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(ok, &r), 0);
        EXPECT_EQ(as_int(r), 7);
        EXPECT_EQ(coil_task_await(cancelled, nullptr), -ECANCELED);
        EXPECT_EQ(coil_task_await(failed, nullptr), -EIO);
        EXPECT_TRUE(coil_task_done(ok));
        EXPECT_FALSE(coil_task_cancelled(ok));
        EXPECT_TRUE(coil_task_done(failed));
        EXPECT_FALSE(coil_task_cancelled(failed));
        EXPECT_TRUE(coil_task_done(cancelled));
        EXPECT_TRUE(coil_task_cancelled(cancelled));
        coil_task_free(ok);
        coil_task_free(failed);
        coil_task_free(cancelled);
        coil_future_free(gate_ok);
        coil_future_free(gate_cancel);
        return nullptr;
    });
}

int set_flag_cb(void *arg)
{
    *static_cast<bool *>(arg) = true;
    return 0;
}

TEST(Task, AwaitOfADoneTaskDoesNotSuspend)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, return_arg, as_ptr(5), nullptr), 0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_TRUE(coil_task_done(t));
        // Anything queued now runs only if we suspend.
        bool ran = false;
        EXPECT_EQ(coil_loop_call_soon(coil_get_running_loop(), set_flag_cb, &ran, nullptr), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(as_int(r), 5);
        EXPECT_FALSE(ran) << "awaiting a done task suspended the caller";
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_TRUE(ran);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Task, AwaitFromOutsideATaskIsENotask)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    ASSERT_EQ(coil_set_event_loop(loop), 0);
    coil_task *t = nullptr;
    ASSERT_EQ(coil_create_task(&t, return_arg, as_ptr(8), nullptr), 0);
    void *r = as_ptr(-1);
    EXPECT_EQ(coil_task_await(t, &r), COIL_ENOTASK);
    EXPECT_EQ(as_int(r), -1);
    EXPECT_EQ(coil_current_task(), nullptr);
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), &r), 0);
    EXPECT_EQ(as_int(r), 8);
    coil_task_free(t);
    EXPECT_EQ(coil_set_event_loop(nullptr), 0);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

TEST(Task, ATaskAwaitingItselfGetsEAwaitSelf)
{
    coil_test::run([]() -> void * {
        coil_task *self = coil_current_task();
        EXPECT_NE(self, nullptr);
        EXPECT_EQ(coil_task_await(self, nullptr), COIL_EAWAITSELF);
        EXPECT_EQ(coil_future_await(coil_task_future(self), nullptr), COIL_EAWAITSELF);
        EXPECT_FALSE(coil_task_done(self));
        return nullptr;
    });
}

TEST(Task, AwaitOfNullTaskIsEinval)
{
    coil_test::run([]() -> void * {
        EXPECT_EQ(coil_task_await(nullptr, nullptr), -EINVAL);
        return nullptr;
    });
}

TEST(Task, CreateWithoutAFunctionIsEinvalAndCreatesNothing)
{
    coil_test::run([]() -> void * {
        coil_task *t = reinterpret_cast<coil_task *>(0x1);
        EXPECT_EQ(coil_create_task(&t, nullptr, nullptr, nullptr), -EINVAL);
        EXPECT_EQ(t, reinterpret_cast<coil_task *>(0x1));
        EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 1u);
        return nullptr;
    });
}

TEST(Task, CreateWithNoLoopAnywhereIsEinval)
{
    ASSERT_EQ(coil_get_event_loop(), nullptr);
    coil_task *t = nullptr;
    EXPECT_EQ(coil_create_task(&t, return_arg, nullptr, nullptr), -EINVAL);
}

struct DetachedState {
    coil_future *done;
    int runs;
};

void *detached_body(void *arg)
{
    auto *s = static_cast<DetachedState *>(arg);
    s->runs++;
    EXPECT_EQ(coil_sleep(0), 0);
    coil_future_set_result(s->done, as_ptr(s->runs));
    return nullptr;
}

TEST(Task, DetachedTaskRunsAndFreesItself)
{
    coil_test::run([]() -> void * {
        DetachedState s{};
        EXPECT_EQ(coil_future_new(&s.done), 0);
        EXPECT_EQ(coil_create_task(nullptr, detached_body, &s, nullptr), 0);
        EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 2u);
        void *r = nullptr;
        EXPECT_EQ(coil_future_await(s.done, &r), 0);
        EXPECT_EQ(as_int(r), 1);
        // It finished in the step that set the future; nothing of it is left (LSan checks memory).
        EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 1u);
        coil_future_free(s.done);
        return nullptr;
    });
}

TEST(Task, DefaultNameIsTaskDashNumberCountingUp)
{
    coil_test::run([]() -> void * {
        coil_task *a = nullptr, *b = nullptr;
        EXPECT_EQ(coil_create_task(&a, return_arg, nullptr, nullptr), 0);
        EXPECT_EQ(coil_create_task(&b, return_arg, nullptr, nullptr), 0);
        std::string na = coil_task_get_name(a), nb = coil_task_get_name(b);
        unsigned ia = 0, ib = 0;
        char tail = 0;
        EXPECT_EQ(sscanf(na.c_str(), "Task-%u%c", &ia, &tail), 1) << na;
        EXPECT_EQ(sscanf(nb.c_str(), "Task-%u%c", &ib, &tail), 1) << nb;
        EXPECT_EQ(ib, ia + 1);
        EXPECT_EQ(coil_task_await(a, nullptr), 0);
        EXPECT_EQ(coil_task_await(b, nullptr), 0);
        EXPECT_EQ(std::string(coil_task_get_name(a)), na) << "the name does not change when the task ends";
        coil_task_free(a);
        coil_task_free(b);
        return nullptr;
    });
}

TEST(Task, OptsNameIsCopiedAtCreation)
{
    coil_test::run([]() -> void * {
        char buf[16];
        strcpy(buf, "worker-1");
        coil_task_opts o{};
        o.name = buf;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, return_arg, nullptr, &o), 0);
        strcpy(buf, "clobbered");
        EXPECT_STREQ(coil_task_get_name(t), "worker-1");
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Task, SetNameReplacesTheNameAndRejectsNull)
{
    coil_test::run([]() -> void * {
        EXPECT_STREQ(coil_task_get_name(coil_current_task()), "main");
        coil_task *t = nullptr;
        coil_task_opts o{};
        o.name = "before";
        EXPECT_EQ(coil_create_task(&t, return_arg, nullptr, &o), 0);
        EXPECT_EQ(coil_task_set_name(t, "after"), 0);
        EXPECT_STREQ(coil_task_get_name(t), "after");
        EXPECT_EQ(coil_task_set_name(t, nullptr), -EINVAL);
        EXPECT_STREQ(coil_task_get_name(t), "after");
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(coil_task_set_name(t, "done-renamed"), 0) << "asyncio allows renaming a done task";
        EXPECT_STREQ(coil_task_get_name(t), "done-renamed");
        EXPECT_EQ(coil_task_get_loop(t), coil_get_running_loop());
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Task, NameSetInsideTheTaskIsSeenOutside)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *) -> void * {
                                       coil_task_set_name(coil_current_task(), "renamed-itself");
                                       return nullptr;
                                   },
                                   nullptr, nullptr),
                  0);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_STREQ(coil_task_get_name(t), "renamed-itself");
        coil_task_free(t);
        return nullptr;
    });
}

struct CurrentProbe {
    coil_task *seen_in_task = nullptr;
    coil_task *seen_in_callback = reinterpret_cast<coil_task *>(0x1);
    bool callback_ran = false;
};

TEST(Task, CurrentTaskIsTheRunningTaskInsideAndNullOutside)
{
    EXPECT_EQ(coil_current_task(), nullptr);
    coil_test::run([]() -> void * {
        CurrentProbe p;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       static_cast<CurrentProbe *>(arg)->seen_in_task = coil_current_task();
                                       return nullptr;
                                   },
                                   &p, nullptr),
                  0);
        EXPECT_EQ(coil_loop_call_soon(
                      coil_get_running_loop(),
                      [](void *arg) -> int {
                          auto *q = static_cast<CurrentProbe *>(arg);
                          q->seen_in_callback = coil_current_task();
                          q->callback_ran = true;
                          return 0;
                      },
                      &p, nullptr),
                  0);
        coil_task *self = coil_current_task();
        EXPECT_NE(self, nullptr);
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(coil_current_task(), self) << "current task after resuming";
        EXPECT_EQ(p.seen_in_task, t);
        EXPECT_TRUE(yield_until([&] { return p.callback_ran; }));
        EXPECT_EQ(p.seen_in_callback, nullptr) << "a plain callback runs outside any task";
        coil_task_free(t);
        return nullptr;
    });
    EXPECT_EQ(coil_current_task(), nullptr);
}

TEST(Task, AllTasksCountsPendingTasksOnly)
{
    coil_test::run([]() -> void * {
        coil_task *self = coil_current_task();
        EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 1u);
        coil_future *gate = nullptr;
        EXPECT_EQ(coil_future_new(&gate), 0);
        coil_task *ts[3];
        for (auto &t : ts)
            EXPECT_EQ(coil_create_task(&t, await_future_then_7, gate, nullptr), 0);
        coil_task *done_early = nullptr;
        EXPECT_EQ(coil_create_task(&done_early, return_arg, nullptr, nullptr), 0);
        EXPECT_EQ(coil_task_await(done_early, nullptr), 0);
        // done_early's handle is still held, but it is done: not counted.
        coil_task *seen[8] = {};
        EXPECT_EQ(coil_all_tasks(coil_get_running_loop(), seen, 8), 4u);
        std::vector<coil_task *> got(seen, seen + 4);
        for (coil_task *want : {self, ts[0], ts[1], ts[2]})
            EXPECT_NE(std::find(got.begin(), got.end(), want), got.end());
        EXPECT_EQ(std::find(got.begin(), got.end(), done_early), got.end());
        // A smaller array still reports the full count.
        coil_task *one[1] = {};
        EXPECT_EQ(coil_all_tasks(nullptr, one, 1), 4u);
        EXPECT_NE(one[0], nullptr);
        EXPECT_EQ(coil_future_set_result(gate, nullptr), 0);
        for (auto &t : ts) {
            EXPECT_EQ(coil_task_await(t, nullptr), 0);
            coil_task_free(t);
        }
        EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 1u);
        coil_task_free(done_early);
        coil_future_free(gate);
        return nullptr;
    });
}

// ---- eager start (asyncio 3.12) ----

struct EagerProbe {
    bool callback_ran = false;
    bool body_ran = false;
    bool callback_ran_before_body = false;
    int step = 0;
    coil_task *child = nullptr;
};

TEST(TaskEager, FinishingWithoutSuspendingIsDoneOnReturnAndNeverQueued)
{
    coil_test::run([]() -> void * {
        EagerProbe p;
        EXPECT_EQ(coil_loop_call_soon(coil_get_running_loop(), set_flag_cb, &p.callback_ran, nullptr), 0);
        coil_task_opts o{};
        o.eager = true;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       auto *q = static_cast<EagerProbe *>(arg);
                                       q->body_ran = true;
                                       q->callback_ran_before_body = q->callback_ran;
                                       return as_ptr(77);
                                   },
                                   &p, &o),
                  0);
        EXPECT_TRUE(p.body_ran);
        EXPECT_FALSE(p.callback_ran_before_body);
        EXPECT_FALSE(p.callback_ran) << "creating an eager task must not run other ready work";
        EXPECT_TRUE(coil_task_done(t));
        void *r = nullptr;
        EXPECT_EQ(coil_task_result(t, &r), 0);
        EXPECT_EQ(as_int(r), 77);
        EXPECT_EQ(coil_all_tasks(nullptr, nullptr, 0), 1u);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_TRUE(p.callback_ran);
        coil_task_free(t);
        return nullptr;
    });
}

void *eager_two_steps(void *arg)
{
    auto *p = static_cast<EagerProbe *>(arg);
    p->step = 1;
    p->callback_ran_before_body = p->callback_ran;
    int r = coil_sleep(0);
    p->step = 2;
    return r == 0 ? as_ptr(2) : coil_raise(r, nullptr);
}

TEST(TaskEager, SuspendingTaskRunsToItsFirstAwaitSynchronouslyThenContinuesLater)
{
    coil_test::run([]() -> void * {
        EagerProbe p;
        EXPECT_EQ(coil_loop_call_soon(coil_get_running_loop(), set_flag_cb, &p.callback_ran, nullptr), 0);
        coil_task_opts o{};
        o.eager = true;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, eager_two_steps, &p, &o), 0);
        EXPECT_EQ(p.step, 1) << "the eager part ran before create returned";
        EXPECT_FALSE(p.callback_ran_before_body);
        EXPECT_FALSE(coil_task_done(t));
        EXPECT_FALSE(p.callback_ran);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        EXPECT_EQ(p.step, 2);
        EXPECT_EQ(as_int(r), 2);
        EXPECT_TRUE(p.callback_ran);
        coil_task_free(t);
        return nullptr;
    });
}

// A compact creator's frames share the shared stack with a compact eager child: the creator must
// be copied aside while the child runs and come back intact.
void *compact_creator(void *arg)
{
    auto *p = static_cast<EagerProbe *>(arg);
    volatile unsigned char pattern[300];
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = static_cast<unsigned char>(i * 13 + 1);
    coil_task_opts o{};
    o.eager = true;
    o.stack_mode = COIL_STACK_COMPACT;
    coil_task *child = nullptr;
    int rc = coil_create_task(&child,
                              [](void *a) -> void * {
                                  auto *q = static_cast<EagerProbe *>(a);
                                  volatile unsigned char mine[200];
                                  for (size_t i = 0; i < sizeof mine; i++)
                                      mine[i] = 0xEE;
                                  q->step = 1;
                                  if (coil_sleep(0) != 0)
                                      return coil_raise(-EIO, "child yield");
                                  for (size_t i = 0; i < sizeof mine; i++)
                                      if (mine[i] != 0xEE)
                                          return coil_raise(-EIO, "child stack corrupted");
                                  q->step = 2;
                                  return as_ptr(21);
                              },
                              p, &o);
    if (rc != 0)
        return coil_raise(rc, "create");
    if (p->step != 1)
        return coil_raise(-EIO, "eager child did not run first (step %d)", p->step);
    for (size_t i = 0; i < sizeof pattern; i++)
        if (pattern[i] != static_cast<unsigned char>(i * 13 + 1))
            return coil_raise(-EIO, "creator stack corrupted after eager start");
    void *r = nullptr;
    rc = coil_task_await(child, &r);
    coil_task_free(child);
    if (rc != 0)
        return coil_raise(rc, "child failed");
    for (size_t i = 0; i < sizeof pattern; i++)
        if (pattern[i] != static_cast<unsigned char>(i * 13 + 1))
            return coil_raise(-EIO, "creator stack corrupted after await");
    return as_ptr(as_int(r) * 2);
}

TEST(TaskEager, CompactCreatorCanEagerlyStartACompactTask)
{
    coil_test::run([]() -> void * {
        EagerProbe p;
        coil_task_opts o{};
        o.stack_mode = COIL_STACK_COMPACT;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, compact_creator, &p, &o), 0);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), 0);
        const coil_exception *e = coil_task_exception(t);
        EXPECT_EQ(e, nullptr) << (e ? coil_exception_message(e) : "");
        EXPECT_EQ(as_int(r), 42);
        EXPECT_EQ(p.step, 2);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(TaskEager, EagerCreateFromACallbackRunsTheTaskAtOnce)
{
    coil_test::run([]() -> void * {
        EagerProbe p;
        EXPECT_EQ(coil_loop_call_soon(
                      coil_get_running_loop(),
                      [](void *arg) -> int {
                          auto *q = static_cast<EagerProbe *>(arg);
                          coil_task_opts o{};
                          o.eager = true;
                          int rc = coil_create_task(&q->child, eager_two_steps, q, &o);
                          q->callback_ran = true;
                          return rc;
                      },
                      &p, nullptr),
                  0);
        EXPECT_TRUE(yield_until([&] { return p.callback_ran; }));
        if (!p.child) {
            ADD_FAILURE() << "no child";
            return nullptr;
        }
        EXPECT_GE(p.step, 1);
        EXPECT_FALSE(p.callback_ran_before_body) << "the child ran before the callback went on";
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(p.child, &r), 0);
        EXPECT_EQ(as_int(r), 2);
        coil_task_free(p.child);
        return nullptr;
    });
}

TEST(TaskEager, EagerCreateOnALoopThatIsNotRunningJustSchedules)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    ASSERT_EQ(coil_set_event_loop(loop), 0);
    EagerProbe p;
    coil_task_opts o{};
    o.eager = true;
    coil_task *t = nullptr;
    ASSERT_EQ(coil_create_task(&t, eager_two_steps, &p, &o), 0);
    EXPECT_EQ(p.step, 0);
    void *r = nullptr;
    EXPECT_EQ(coil_loop_run_until_complete(loop, coil_task_future(t), &r), 0);
    EXPECT_EQ(as_int(r), 2);
    coil_task_free(t);
    EXPECT_EQ(coil_set_event_loop(nullptr), 0);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

TEST(TaskEager, EagerTaskThatRaisesIsDoneWithItsErrorOnReturn)
{
    coil_test::run([]() -> void * {
        coil_task_opts o{};
        o.eager = true;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t, [](void *) -> void * { return coil_raise(-EPIPE, "eager fail"); }, nullptr,
                                   &o),
                  0);
        EXPECT_TRUE(coil_task_done(t));
        EXPECT_EQ(coil_task_result(t, nullptr), -EPIPE);
        coil_task_free(t);
        return nullptr;
    });
}

// ---- sleeping and yielding ----

TEST(TaskSleep, SleepReturnsNoEarlierThanTheDelay)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        uint64_t t0 = coil_loop_time_ns(loop);
        EXPECT_EQ(coil_sleep(0.02), 0);
        EXPECT_GE(coil_loop_time_ns(loop) - t0, 20000000u);
        t0 = coil_loop_time_ns(loop);
        EXPECT_EQ(coil_sleep_ns(5000000), 0);
        EXPECT_GE(coil_loop_time_ns(loop) - t0, 5000000u);
        return nullptr;
    });
}

TEST(TaskSleep, ZeroOrNegativeSleepIsAYieldBehindEverythingAlreadyReady)
{
    coil_test::run([]() -> void * {
        std::vector<int> order;
        coil_task *t = nullptr;
        EXPECT_EQ(coil_create_task(&t,
                                   [](void *arg) -> void * {
                                       static_cast<std::vector<int> *>(arg)->push_back(1);
                                       return nullptr;
                                   },
                                   &order, nullptr),
                  0);
        EXPECT_EQ(coil_sleep(-5), 0);
        order.push_back(2);
        EXPECT_EQ(order, (std::vector<int>{1, 2}));
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(TaskSleep, SleepOfNanIsEinval)
{
    coil_test::run([]() -> void * {
        EXPECT_EQ(coil_sleep(std::nan("")), -EINVAL);
        return nullptr;
    });
}

TEST(TaskSleep, SleepAndAwaitOutsideATaskAreENotask)
{
    EXPECT_EQ(coil_sleep(0.001), COIL_ENOTASK);
    EXPECT_EQ(coil_sleep_ns(0), COIL_ENOTASK);
    // A plain callback of a running loop is not a task either.
    coil_test::run([]() -> void * {
        struct Res {
            int sleep_rc = 1, await_rc = 1;
            bool ran = false;
            coil_future *f = nullptr;
        } res;
        EXPECT_EQ(coil_future_new(&res.f), 0);
        EXPECT_EQ(coil_loop_call_soon(
                      coil_get_running_loop(),
                      [](void *arg) -> int {
                          auto *r = static_cast<Res *>(arg);
                          r->sleep_rc = coil_sleep(0);
                          r->await_rc = coil_future_await(r->f, nullptr);
                          r->ran = true;
                          return 0;
                      },
                      &res, nullptr),
                  0);
        EXPECT_TRUE(yield_until([&] { return res.ran; }));
        EXPECT_EQ(res.sleep_rc, COIL_ENOTASK);
        EXPECT_EQ(res.await_rc, COIL_ENOTASK);
        coil_future_free(res.f);
        return nullptr;
    });
}

} // namespace
