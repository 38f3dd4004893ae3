// A watchdog that runs on its own thread, never as a timer on the loop under test: a timer is
// something the loop could wake for, and an armed timer changes which paths the scheduler takes
// (a loop with a timer never starts its next iteration inline), so it would hide exactly the
// lost wake-ups the tests look for.
//
// Two phases. While the loop runs, the deadline passing asks the loop to stop (a threadsafe
// call) and marks the watchdog fired, so the test fails instead of hanging. Once the run has
// returned (ran()), nothing is posted any more (the loop may be closing); the watchdog only
// guards the rest (close, free). A loop that does not answer the stop request within the grace
// period, or a close that does not finish, can only mean the process is stuck (a lost wake-up
// leaves a loop asleep for good): the watchdog says so on stderr and ends the process with a
// failure status, so a test binary never hangs.
//
// COIL_TEST_TIME_SCALE (a positive number) multiplies every deadline here and in the helpers
// that use time_scale(): sanitizer builds run slower, and tests/faults/check.sh shortens them
// to see injected faults fail quickly.
#ifndef COIL_TEST_WATCHDOG_H
#define COIL_TEST_WATCHDOG_H

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include <coil/coil.h>

namespace coil_test {

// ThreadSanitizer slows thread-heavy tests several times over; their deadlines follow.
#if defined(__SANITIZE_THREAD__)
#define COIL_TEST_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COIL_TEST_TSAN 1
#endif
#endif

inline double time_scale()
{
    static const double scale = [] {
        const char *s = std::getenv("COIL_TEST_TIME_SCALE");
        double v = s ? std::strtod(s, nullptr) : 0.0;
        if (v > 0.0)
            return v;
#if defined(COIL_TEST_TSAN)
        return 4.0;
#else
        return 1.0;
#endif
    }();
    return scale;
}

class ThreadWatchdog {
public:
    // Watch `loop` for `seconds` (scaled by time_scale()); `what` names the run in messages.
    ThreadWatchdog(coil_loop *loop, double seconds, std::string what)
        : loop_(loop), what_(std::move(what)), seconds_(seconds * time_scale()),
          grace_(10.0 * time_scale()), th_([this] { watch(); })
    {
    }
    ~ThreadWatchdog() { disarm(); }
    ThreadWatchdog(const ThreadWatchdog &) = delete;
    ThreadWatchdog &operator=(const ThreadWatchdog &) = delete;

    // The run has returned: from now on only guard against a hang, post nothing.
    void ran()
    {
        std::lock_guard<std::mutex> g(mu_);
        if (phase_ == RUNNING)
            phase_ = RAN;
        cv_.notify_all();
    }
    // Everything is done: stop watching (joins the thread).
    void disarm()
    {
        {
            std::lock_guard<std::mutex> g(mu_);
            phase_ = DONE;
            cv_.notify_all();
        }
        if (th_.joinable())
            th_.join();
    }
    bool fired() const { return fired_.load(); }
    double seconds() const { return seconds_; }

private:
    enum Phase { RUNNING, RAN, DONE };
    using clock = std::chrono::steady_clock;

    static int stop(void *arg)
    {
        coil_loop_stop(static_cast<coil_loop *>(arg));
        return 0;
    }

    [[noreturn]] void give_up(const char *why)
    {
        std::fprintf(stderr, "watchdog: %s: %s; ending the process\n", what_.c_str(), why);
        std::fflush(stderr);
        std::_Exit(3);
    }

    void watch()
    {
        std::unique_lock<std::mutex> lk(mu_);
        auto deadline = clock::now() + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(seconds_));
        if (!cv_.wait_until(lk, deadline, [this] { return phase_ != RUNNING; })) {
            fired_ = true;
            std::fprintf(stderr, "watchdog: %s did not finish within %g s; stopping its loop\n", what_.c_str(),
                         seconds_);
            // Under the lock: the test cannot close the loop while this post is on its way. Never
            // a post that waits for room: a loop that stopped draining would keep it forever.
            if (coil_loop_call_soon_threadsafe_nowait(loop_, stop, loop_) != 0)
                give_up("could not ask the loop to stop (its inbox is full: it stopped draining it)");
            if (!cv_.wait_for(lk, std::chrono::duration<double>(grace_), [this] { return phase_ != RUNNING; }))
                give_up("the loop did not answer the stop request (a lost wake-up?)");
        }
        if (!cv_.wait_for(lk, std::chrono::duration<double>(grace_), [this] { return phase_ == DONE; }))
            give_up("closing after the run did not finish (a lost wake-up?)");
    }

    coil_loop *loop_;
    std::string what_;
    double seconds_, grace_;
    std::mutex mu_;
    std::condition_variable cv_;
    Phase phase_ = RUNNING;
    std::atomic<bool> fired_{ false };
    std::thread th_;
};

// Wait for the forked child `pid` to end, killing it (and failing the test) if it has not within
// `seconds` (scaled by time_scale()): a child that hangs must not hang the suite. Returns its
// waitpid status, or -1 if waitpid failed.
inline int wait_child(pid_t pid, double seconds, const char *why_late)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        struct pollfd p = { pfd, POLLIN, 0 };
        if (poll(&p, 1, (int)(seconds * 1000 * time_scale())) != 1) {
            kill(pid, SIGKILL);
            ADD_FAILURE() << "the child did not end within " << seconds << " s" << why_late;
        }
        close(pfd);
    }
    int status = 0;
    return waitpid(pid, &status, 0) == pid ? status : -1;
}

} // namespace coil_test

#endif
