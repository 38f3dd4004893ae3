// The stall detector: a step that keeps the loop from its scheduler past the threshold is
// reported with the shard, the task's name and a backtrace of the loop's thread; short steps
// are not; reports are rate-limited.
#include <math.h>

#include <string>

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

size_t count(const std::string &s, const std::string &what)
{
    size_t n = 0;
    for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1))
        n++;
    return n;
}

void run_named_spinner(const char *name, double ms)
{
    coil_task *t = nullptr;
    coil_task_opts o{};
    o.name = name;
    static double spin;
    spin = ms;
    coil_create_task(&t, [](void *) { return spin_ms(spin); }, nullptr, &o);
    EXPECT_EQ(0, coil_task_await(t, nullptr));
    coil_task_free(t);
}

TEST(Stall, ATaskThatBusyLoopsIsReportedWithItsNameAndABacktrace)
{
    StderrCapture cap;
    coil_test::run([]() -> void * {
        EXPECT_EQ(0, coil_loop_set_stall_threshold(coil_get_running_loop(), 0.025));
        run_named_spinner("spinner", 100);
        EXPECT_EQ(0, coil_loop_set_stall_threshold(coil_get_running_loop(), 0));
        return nullptr;
    });
    std::string err = cap.text();
    EXPECT_NE(std::string::npos, err.find("coil: stall: shard ")) << err;
    EXPECT_NE(std::string::npos, err.find(": task 'spinner' (created at ")) << err;
    EXPECT_NE(std::string::npos, err.find("ms without returning to the loop; backtrace:")) << err;
    // backtrace_symbols_fd names the binary for each frame.
    EXPECT_NE(std::string::npos, err.find("test_stall(")) << err;
    EXPECT_EQ(1u, count(err, "coil: stall:")) << err; // one stall, one report
}

TEST(Stall, StepsShorterThanTheThresholdAreNotReported)
{
    StderrCapture cap;
    coil_test::run([]() -> void * {
        EXPECT_EQ(0, coil_loop_set_stall_threshold(coil_get_running_loop(), 0.05));
        coil_task *t = nullptr;
        coil_task_opts o{};
        o.name = "polite";
        coil_create_task(&t, [](void *) -> void * {
            for (int i = 0; i < 40; i++) {
                spin_ms(2);
                coil_sleep(0);
            }
            return nullptr;
        }, nullptr, &o);
        EXPECT_EQ(0, coil_task_await(t, nullptr));
        coil_task_free(t);
        coil_loop_set_stall_threshold(coil_get_running_loop(), 0);
        return nullptr;
    });
    EXPECT_EQ(std::string::npos, cap.text().find("coil: stall:"));
}

TEST(Stall, DebugModeWatchesForStallsByDefault)
{
    StderrCapture cap;
    coil_loop_opts lo{};
    lo.debug = 1;
    lo.slow_callback_duration = 10; // only the stall report, not the slow-step log
    coil_test::run([]() -> void * {
        run_named_spinner("debug-spinner", 80);
        return nullptr;
    }, 10.0, nullptr, &lo);
    std::string err = cap.text();
    EXPECT_NE(std::string::npos, err.find("task 'debug-spinner'")) << err;
}

TEST(Stall, ReportsAreLimitedToAFewAMinute)
{
    StderrCapture cap;
    coil_test::run([]() -> void * {
        EXPECT_EQ(0, coil_loop_set_stall_threshold(coil_get_running_loop(), 0.01));
        for (int i = 0; i < 7; i++)
            run_named_spinner("repeat", 30);
        coil_loop_set_stall_threshold(coil_get_running_loop(), 0);
        return nullptr;
    });
    std::string err = cap.text();
    size_t n = count(err, "task 'repeat'");
    EXPECT_LE(n, 5u) << err;
}

TEST(Stall, ABadThresholdIsRejected)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(0, coil_new_event_loop(&loop, nullptr));
    EXPECT_EQ(-EINVAL, coil_loop_set_stall_threshold(loop, NAN));
    EXPECT_EQ(-EINVAL, coil_loop_set_stall_threshold(nullptr, 1));
    EXPECT_EQ(0, coil_loop_set_stall_threshold(loop, -1)); // the default threshold
    EXPECT_EQ(0, coil_loop_set_stall_threshold(loop, 0));
    coil_loop_close(loop);
}

} // namespace
