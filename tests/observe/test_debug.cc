// Debug mode: slow steps logged with the task's name and creation place, exceptions never
// retrieved logged with the creation place, loop-only calls from a foreign thread refused.
#include <stdlib.h>

#include <string>
#include <thread>

#include "coil_test.h"
#include "stderr_capture.h"

namespace {

void *spin_ms(double ms)
{
    uint64_t end = coil_loop_time_ns(nullptr) + (uint64_t)(ms * 1e6);
    while (coil_loop_time_ns(nullptr) < end) {
    }
    return nullptr;
}

int noop(void *) { return 0; }

coil_loop_opts debug_opts(double slow = 0.02)
{
    coil_loop_opts o{};
    o.debug = 1;
    o.slow_callback_duration = slow;
    return o;
}

TEST(Debug, ASlowStepIsLoggedWithTheTaskNameAndWhereItWasCreated)
{
    StderrCapture cap;
    coil_loop_opts lo = debug_opts(0.02);
    static int line;
    coil_test::run(
        []() -> void * {
            coil_task *t = nullptr;
            coil_task_opts o{};
            o.name = "slowpoke";
            line = __LINE__ + 1;
            coil_create_task(&t, [](void *) { return spin_ms(40); }, nullptr, &o);
            EXPECT_EQ(0, coil_task_await(t, nullptr));
            coil_task_free(t);
            return nullptr;
        },
        10.0, nullptr, &lo);
    std::string err = cap.text();
    std::string want = "coil: Executing task 'slowpoke' (created at " + std::string(__FILE__) + ":" +
                       std::to_string(line) + ") took 0.0";
    EXPECT_NE(std::string::npos, err.find(want)) << err;
}

TEST(Debug, AFastStepIsNotLogged)
{
    StderrCapture cap;
    coil_loop_opts lo = debug_opts(0.5);
    coil_test::run(
        []() -> void * {
            coil_task *t = nullptr;
            coil_task_opts o{};
            o.name = "quick";
            coil_create_task(&t, [](void *) { return spin_ms(1); }, nullptr, &o);
            EXPECT_EQ(0, coil_task_await(t, nullptr));
            coil_task_free(t);
            return nullptr;
        },
        10.0, nullptr, &lo);
    EXPECT_EQ(std::string::npos, cap.text().find("Executing task 'quick'"));
}

TEST(Debug, AnExceptionNeverRetrievedIsLoggedWithWhereTheTaskWasCreated)
{
    StderrCapture cap;
    coil_loop_opts lo = debug_opts();
    static int line;
    coil_test::run(
        []() -> void * {
            coil_task *t = nullptr;
            coil_task_opts o{};
            o.name = "failing";
            line = __LINE__ + 1;
            coil_create_task(&t, [](void *) { return coil_raise(-EIO, "disk on fire"); }, nullptr, &o);
            coil_sleep(0);
            coil_sleep(0);
            EXPECT_TRUE(coil_task_done(t));
            coil_task_free(t); // never retrieved
            return nullptr;
        },
        10.0, nullptr, &lo);
    std::string err = cap.text();
    EXPECT_NE(std::string::npos, err.find("Task exception was never retrieved")) << err;
    EXPECT_NE(std::string::npos, err.find("disk on fire (task 'failing', created at " + std::string(__FILE__) + ":" +
                                          std::to_string(line) + ")"))
        << err;
}

TEST(Debug, LoopOnlyCallsFromAForeignThreadFailWithTheFunctionsName)
{
    coil_loop *loop = nullptr;
    coil_loop_opts lo = debug_opts();
    ASSERT_EQ(0, coil_new_event_loop(&loop, &lo));
    StderrCapture cap;
    int r_soon = 0, r_later = 0, r_task = 0, r_fut = 0;
    coil_future *f = nullptr;
    ASSERT_EQ(0, coil_loop_create_future(loop, &f));
    std::thread th([&] {
        r_fut = coil_future_set_result(f, nullptr);
        r_soon = coil_loop_call_soon(loop, noop, nullptr, nullptr);
        r_later = coil_loop_call_later(loop, 1.0, noop, nullptr, nullptr);
        r_task = coil_loop_create_task(loop, nullptr, [](void *) -> void * { return nullptr; }, nullptr, nullptr);
    });
    th.join();
    std::string err = cap.text();
    EXPECT_EQ(COIL_EWRONGLOOP, r_soon);
    EXPECT_EQ(COIL_EWRONGLOOP, r_later);
    EXPECT_EQ(COIL_EWRONGLOOP, r_task);
    EXPECT_EQ(COIL_EWRONGLOOP, r_fut);
    EXPECT_FALSE(coil_future_done(f));
    EXPECT_NE(std::string::npos,
              err.find("coil: coil_future_set_result called from a thread that does not own the loop"));
    coil_future_free(f);
    EXPECT_NE(std::string::npos, err.find("coil: coil_loop_call_soon called from a thread that does not own the loop"))
        << err;
    EXPECT_NE(std::string::npos, err.find("coil: coil_create_task called from a thread that does not own the loop"));
    // From the owning thread the same calls work.
    coil_handle h;
    EXPECT_EQ(0, coil_loop_call_soon(loop, noop, nullptr, &h));
    coil_handle_cancel(&h);
    EXPECT_EQ(0, coil_loop_close(loop));
}

TEST(Debug, PrimitivesOfALoopTouchedFromAForeignThreadAreRefusedByName)
{
    coil_loop *loop = nullptr;
    coil_loop_opts lo = debug_opts();
    ASSERT_EQ(0, coil_new_event_loop(&loop, &lo));
    coil_set_event_loop(loop); // primitives created now belong to it
    coil_event *ev = nullptr;
    coil_lock *lock = nullptr;
    coil_semaphore *sem = nullptr;
    coil_condition *cond = nullptr;
    coil_queue *q = nullptr;
    ASSERT_EQ(0, coil_event_new(&ev));
    ASSERT_EQ(0, coil_lock_new(&lock));
    ASSERT_EQ(0, coil_semaphore_new(&sem, 1));
    ASSERT_EQ(0, coil_condition_new(&cond, nullptr));
    ASSERT_EQ(0, coil_queue_new(&q, nullptr));
    ASSERT_EQ(0, coil_queue_put_nowait(q, &lo));
    StderrCapture cap;
    int r_release = 0, r_sem = 0, r_notify = 0, r_put = 0, r_get = 0, r_done = 0;
    std::thread th([&] {
        coil_event_set(ev);
        coil_event_clear(ev);
        r_release = coil_lock_release(lock);
        r_sem = coil_semaphore_release(sem);
        r_notify = coil_condition_notify(cond, 1);
        r_put = coil_queue_put_nowait(q, &lo);
        void *item = nullptr;
        r_get = coil_queue_get_nowait(q, &item);
        r_done = coil_queue_task_done(q);
        coil_queue_shutdown(q, true);
    });
    th.join();
    std::string err = cap.text();
    for (int r : {r_release, r_sem, r_notify, r_put, r_get, r_done})
        EXPECT_EQ(COIL_EWRONGLOOP, r);
    for (const char *fn : {"coil_event_set", "coil_event_clear", "coil_lock_release", "coil_semaphore_release",
                           "coil_condition_notify", "coil_queue_put_nowait", "coil_queue_get_nowait",
                           "coil_queue_task_done", "coil_queue_shutdown"})
        EXPECT_NE(std::string::npos, err.find(std::string("coil: ") + fn + " called from a thread that does not own the loop"))
            << fn << "\n" << err;
    // Nothing changed, and from the owning thread the same calls work.
    EXPECT_FALSE(coil_event_is_set(ev));
    EXPECT_EQ(1, coil_semaphore_value(sem));
    EXPECT_EQ(1u, coil_queue_qsize(q));
    EXPECT_EQ(0, coil_queue_put_nowait(q, &lo));
    EXPECT_EQ(2u, coil_queue_qsize(q));
    coil_event_set(ev);
    EXPECT_TRUE(coil_event_is_set(ev));
    EXPECT_EQ(0, coil_semaphore_release(sem));
    coil_queue_free(q);
    coil_condition_free(cond);
    coil_semaphore_free(sem);
    coil_lock_free(lock);
    coil_event_free(ev);
    coil_set_event_loop(nullptr);
    EXPECT_EQ(0, coil_loop_close(loop));
}

TEST(Debug, CoilDebugInTheEnvironmentTurnsDebugModeOnAndOptionMinusOneOverridesIt)
{
    setenv("COIL_DEBUG", "1", 1);
    coil_loop *a = nullptr, *b = nullptr;
    coil_loop_opts off{};
    off.debug = -1;
    ASSERT_EQ(0, coil_new_event_loop(&a, nullptr));
    ASSERT_EQ(0, coil_new_event_loop(&b, &off));
    unsetenv("COIL_DEBUG");
    EXPECT_TRUE(coil_loop_get_debug(a));
    EXPECT_FALSE(coil_loop_get_debug(b));
    coil_loop_set_debug(a, false);
    EXPECT_FALSE(coil_loop_get_debug(a));
    coil_loop_close(a);
    coil_loop_close(b);
}

} // namespace
