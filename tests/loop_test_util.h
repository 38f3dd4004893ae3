// Helpers for the loop-level suites (test_loop, test_handles, test_signal): a fresh loop per
// test, std::function callbacks, and a watchdog (on a thread, see watchdog.h) that stops a run
// that would otherwise hang.
#ifndef COIL_LOOP_TEST_UTIL_H
#define COIL_LOOP_TEST_UTIL_H

#include <gtest/gtest.h>

#include <functional>
#include <list>
#include <memory>

#include <coil/coil.h>

#include "watchdog.h"

namespace coil_test {

using Callback = std::function<int()>;

// Task options naming the task, usable inline: coil_loop_create_task(..., Named("worker")).
struct Named {
    coil_task_opts o{};
    explicit Named(const char *name, coil_stack_mode mode = COIL_STACK_AUTO)
    {
        o.name = name;
        o.stack_mode = mode;
    }
    operator const coil_task_opts *() const { return &o; }
};

inline int call_callback(void *arg) { return (*static_cast<Callback *>(arg))(); }

class LoopTest : public ::testing::Test {
protected:
    coil_loop *loop = nullptr;
    std::unique_ptr<ThreadWatchdog> watchdog;

    void SetUp() override { ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0); }

    void TearDown() override
    {
        if (watchdog)
            watchdog->ran();
        if (loop) {
            EXPECT_EQ(coil_loop_close(loop), 0);
            loop = nullptr;
        }
        watchdog.reset();
    }

    // Keep the function alive for the whole test: the loop only holds a pointer to it.
    Callback *keep(Callback cb)
    {
        fns_.push_back(std::move(cb));
        return &fns_.back();
    }

    int soon(Callback cb, coil_handle *h = nullptr)
    {
        return coil_loop_call_soon(loop, call_callback, keep(std::move(cb)), h);
    }
    int later(double delay, Callback cb, coil_handle *h = nullptr)
    {
        return coil_loop_call_later(loop, delay, call_callback, keep(std::move(cb)), h);
    }
    int at(double when, Callback cb, coil_handle *h = nullptr)
    {
        return coil_loop_call_at(loop, when, call_callback, keep(std::move(cb)), h);
    }

    // Stop the loop (and fail the test) if it is still running after `seconds`.
    void arm_watchdog(double seconds = 5.0)
    {
        watchdog.reset();
        watchdog.reset(new ThreadWatchdog(loop, seconds, "the loop's run"));
    }
    // The run has returned: the watchdog now only guards the close (see watchdog.h).
    void disarm_watchdog()
    {
        ASSERT_TRUE(watchdog);
        watchdog->ran();
        EXPECT_FALSE(watchdog->fired()) << "the loop was stopped by the watchdog";
    }

    // run_forever under the watchdog.
    int run_forever_guarded(double seconds = 5.0)
    {
        arm_watchdog(seconds);
        int rc = coil_loop_run_forever(loop);
        disarm_watchdog();
        return rc;
    }

private:
    std::list<Callback> fns_;
};

} // namespace coil_test

#endif
