// Shared helpers for coil's Google Test suites: run a body as the main task of a fresh runner,
// with a watchdog (on a thread, see watchdog.h) that fails the test, instead of hanging, if it
// does not finish in time.
#ifndef COIL_TEST_H
#define COIL_TEST_H

#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <functional>
#include <string>

#include <coil/coil.h>

#include "watchdog.h"

namespace coil_test {

using Body = std::function<void *()>;

// CLOCK_MONOTONIC in nanoseconds, the clock the loop's timers run on.
inline uint64_t mono_ns()
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

// The directory of the running test binary, where the build puts the examples and tools too.
inline std::string exe_dir()
{
    char buf[4096];
    ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
    if (n <= 0)
        return ".";
    std::string p(buf, (size_t)n);
    return p.substr(0, p.rfind('/'));
}

inline void *trampoline(void *arg) { return (*static_cast<Body *>(arg))(); }

// Run `body` as the main task on a fresh runner (SIGINT left alone), failing the test if it has
// not finished within `timeout_s` (scaled by time_scale()). Returns what coil_runner_run returned.
inline int run(Body body, double timeout_s = 10.0, void **result = nullptr, const coil_loop_opts *lo = nullptr)
{
    coil_runner *r = nullptr;
    coil_runner_opts ro{};
    ro.no_sigint = true;
    ro.loop = lo;
    if (coil_runner_new(&r, &ro) != 0) {
        ADD_FAILURE() << "coil_runner_new failed";
        return -1;
    }
    coil_loop *loop = coil_runner_get_loop(r);
    if (!loop) {
        ADD_FAILURE() << "no loop";
        coil_runner_close(r);
        return -1;
    }
    ThreadWatchdog w(loop, timeout_s, "test body");
    int rc = coil_runner_run(r, trampoline, &body, result);
    w.ran();
    EXPECT_FALSE(w.fired()) << "test body did not finish within " << w.seconds() << " s";
    coil_runner_close(r);
    w.disarm();
    return rc;
}

// Spawn a task running a std::function. The function object is freed by a done callback, so it
// is freed even if the task is cancelled before it starts. With out == nullptr the task is
// detached.
inline int spawn(coil_task **out, Body body, const coil_task_opts *opts = nullptr)
{
    auto *b = new Body(std::move(body));
    coil_task *t = nullptr;
    int rc = coil_create_task(&t, trampoline, b, opts);
    if (rc != 0) {
        delete b;
        return rc;
    }
    coil_task_add_done_callback(
        t, [](coil_future *, void *arg) { delete static_cast<Body *>(arg); }, b);
    if (out)
        *out = t;
    else
        coil_task_free(t);
    return 0;
}

// Can a TCP socket bind the IPv6 loopback address here? (Tests that need it skip, saying so.)
inline bool have_ipv6_loopback()
{
    int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (sockaddr *)&sa, sizeof sa) == 0;
    close(fd);
    return ok;
}

} // namespace coil_test

#endif
