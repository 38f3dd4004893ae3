// Shared helpers for the shards suites: run a body as the main task of a fresh runtime with a
// watchdog, and wait (from a plain thread or from a task) until a condition holds.
#ifndef COIL_SHARDS_TEST_UTIL_H
#define COIL_SHARDS_TEST_UTIL_H

#include <chrono>
#include <thread>

#include <coil/coil.h>

#include "coil_test.h"
#include "inbox_debug.h"

namespace {

// Run `body` as the main task of a fresh runtime of `shards` shards; fail if it takes longer than
// timeout_s (scaled by time_scale()). Returns what coil_runtime_run returned.
inline int run_runtime(unsigned shards, coil_test::Body body, double timeout_s = 10.0, coil_runtime_opts opts = {})
{
    opts.shards = shards;
    coil_runtime *rt = nullptr;
    int err = coil_runtime_new(&rt, &opts);
    if (err) {
        ADD_FAILURE() << "coil_runtime_new: " << coil_strerror(err);
        return err;
    }
    coil_test::ThreadWatchdog w(coil_runtime_loop(rt, 0), timeout_s, "runtime body");
    int rc = coil_runtime_run(rt, coil_test::trampoline, &body, nullptr);
    w.ran();
    EXPECT_FALSE(w.fired()) << "runtime body did not finish within " << w.seconds() << " s";
    coil_runtime_free(rt);
    w.disarm();
    return rc;
}

// From the loop's thread, before handing the loop to threads that will post to it: make its
// inbox now. A loop counts as one that other threads may wake from the moment its inbox exists;
// otherwise a thread's first post races run_until_complete's check for anything that could still
// wake the loop (COIL_ENOTHING).
inline void reachable_from_threads(coil_loop *loop) { (void)coil__loop_inbox_capacity(loop); }

// Yield the CPU until pred() holds or timeout_s (scaled by time_scale()) passes; returns pred().
template <class Pred> inline bool wait_until(Pred pred, double timeout_s = 5.0)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s * coil_test::time_scale());
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return pred();
        std::this_thread::yield();
    }
    return true;
}

// From a task: let the loop run until pred() holds or timeout_s (scaled by time_scale()) passes;
// returns pred().
template <class Pred> inline bool await_until(Pred pred, double timeout_s = 5.0)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(timeout_s * coil_test::time_scale());
    while (!pred()) {
        if (std::chrono::steady_clock::now() > end)
            return pred();
        coil_sleep(0.0002);
    }
    return true;
}

} // namespace

#endif
