// Where the kernel refuses io_uring (a container's seccomp profile, kernel.io_uring_disabled),
// coil runs on epoll: a loop left to choose falls back and says so once per process on stderr
// with the reason, a loop that asks for io_uring by name gets COIL_ENOURING with the refusal, and
// the example servers serve as they do anywhere. A seccomp filter in a child process (see
// seccomp_refuse.h) stands in for the refusing kernel, with both answers a sandbox gives:
// ENOSYS (no such call) and EPERM (forbidden).
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include <coil/coil.h>

#include "coil_test.h"
#include "seccomp_refuse.h"

namespace {

// ---- reading a child's output with a bound ----

// Read fd until `until` appears in what was read (empty: until EOF) or `seconds` pass.
std::string read_for(int fd, double seconds, const std::string &until = "")
{
    std::string got;
    uint64_t deadline = coil_test::mono_ns() + (uint64_t)(seconds * coil_test::time_scale() * 1e9);
    for (;;) {
        if (!until.empty() && got.find(until) != std::string::npos)
            return got;
        uint64_t now = coil_test::mono_ns();
        if (now >= deadline)
            return got;
        struct pollfd p = { fd, POLLIN, 0 };
        int r = poll(&p, 1, (int)((deadline - now) / 1000000u) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return got;
        char buf[4096];
        ssize_t n = read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return got;
        got.append(buf, (size_t)n);
    }
}

std::vector<std::string> lines_of(const std::string &text)
{
    std::vector<std::string> v;
    std::istringstream in(text);
    for (std::string l; std::getline(in, l);)
        v.push_back(l);
    return v;
}

bool has(const std::string &s, const std::string &part) { return s.find(part) != std::string::npos; }

// What a refusal of io_uring_setup with `err` is explained by, in the message.
const char *reason_for(int err) { return err == ENOSYS ? "seccomp" : "kernel.io_uring_disabled"; }

// ---- coil in a child under the filter ----

struct ChildRun {
    int status = -1;         // the child's waitpid status
    std::string report;      // what the body found wrong ("" when nothing)
    std::string stderr_text; // everything the child wrote on stderr
    bool no_filter = false;
};

// Fork; in the child, with COIL_BACKEND cleared and io_uring refused with `err` (no filter when
// err is 0), run `body`, which returns "" or what it found wrong. The child's stderr is captured
// apart from the report, so the test sees exactly what coil printed.
ChildRun run_refused(int err, const std::function<std::string()> &body)
{
    ChildRun c;
    int rep[2], errp[2];
    if (pipe(rep) != 0 || pipe(errp) != 0) {
        ADD_FAILURE() << "pipe: " << strerror(errno);
        return c;
    }
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        close(rep[0]);
        close(errp[0]);
        dup2(errp[1], 2);
        unsetenv("COIL_BACKEND"); // a CI run that forces a backend must not decide this test
        if (err && !coil_test::seccomp_refuse(coil_test::REFUSE_IO_URING, err))
            _exit(77);
        std::string what = body();
        fflush(stderr);
        (void)!write(rep[1], what.data(), what.size());
        _exit(what.empty() ? 0 : 1);
    }
    close(rep[1]);
    close(errp[1]);
    if (pid < 0) {
        close(rep[0]);
        close(errp[0]);
        ADD_FAILURE() << "fork: " << strerror(errno);
        return c;
    }
    c.stderr_text = read_for(errp[0], 20);
    c.report = read_for(rep[0], 5);
    close(rep[0]);
    close(errp[0]);
    c.status = coil_test::wait_child(pid, 10, " (a loop that hangs under the filter?)");
    c.no_filter = WIFEXITED(c.status) && WEXITSTATUS(c.status) == 77;
    return c;
}

#define EXPECT_CHILD_OK(c)                                                                            \
    do {                                                                                              \
        if ((c).no_filter) {                                                                          \
            GTEST_SKIP() << "could not install a seccomp filter here";                                \
        }                                                                                             \
        EXPECT_TRUE(WIFEXITED((c).status) && WEXITSTATUS((c).status) == 0)                            \
            << "status " << (c).status << ": " << (c).report << "\nchild's stderr:\n" << (c).stderr_text; \
    } while (0)

void *add_one(void *arg)
{
    coil_sleep(0.001); // a timer, so the loop waits in its backend once
    return (void *)((intptr_t)arg + 1);
}

// Make a loop with `opts`, run one task on it to its end, close it; "" or what went wrong.
std::string loop_works(const coil_loop_opts *opts, const char *want_backend)
{
    coil_loop *loop = nullptr;
    int rc = coil_new_event_loop(&loop, opts);
    if (rc != 0)
        return "coil_new_event_loop: " + std::to_string(rc) + " (" + coil_strerror(rc) + ")";
    std::string what;
    const char *b = coil_loop_backend(loop);
    if (!b || strcmp(b, want_backend) != 0)
        what = std::string("the loop runs on ") + (b ? b : "(null)") + ", not " + want_backend;
    coil_task *t = nullptr;
    void *res = nullptr;
    if (coil_loop_create_task(loop, &t, add_one, (void *)41, nullptr) != 0)
        what += "; no task";
    else if ((rc = coil_loop_run_until_complete(loop, coil_task_future(t), &res)) != 0 || res != (void *)42)
        what += "; the task's run gave " + std::to_string(rc);
    coil_task_free(t);
    if (coil_loop_close(loop) != 0)
        what += "; close failed";
    return what;
}

// ---- in-process, under the filter ----

void expect_fallback_said_once(int err)
{
    ChildRun c = run_refused(err, [] {
        std::string what = loop_works(nullptr, "epoll");
        // A second and a third loop, one while another is open: no second message.
        coil_loop *a = nullptr, *b = nullptr;
        if (coil_new_event_loop(&a, nullptr) != 0 || coil_new_event_loop(&b, nullptr) != 0)
            what += "; a later loop could not be made";
        if (a && strcmp(coil_loop_backend(a), "epoll") != 0)
            what += "; a later loop is not on epoll";
        if (a)
            coil_loop_close(a);
        if (b)
            coil_loop_close(b);
        // The README's first example, as a user runs it.
        void *res = nullptr;
        int rc = coil_run(add_one, (void *)1, &res);
        if (rc != 0 || res != (void *)2)
            what += "; coil_run gave " + std::to_string(rc);
        return what;
    });
    EXPECT_CHILD_OK(c);
    std::vector<std::string> l = lines_of(c.stderr_text);
    ASSERT_EQ(l.size(), 1u) << "one message for the whole process:\n" << c.stderr_text;
    EXPECT_TRUE(has(l[0], "cannot set up io_uring")) << l[0];
    EXPECT_TRUE(has(l[0], reason_for(err))) << l[0];
    EXPECT_TRUE(has(l[0], "epoll backend")) << l[0];
}

TEST(Refused, SetupRefusedWithEnosysFallsBackToEpollAndSaysSoOnce) { expect_fallback_said_once(ENOSYS); }

TEST(Refused, SetupRefusedWithEpermFallsBackToEpollAndSaysSoOnce) { expect_fallback_said_once(EPERM); }

void expect_forced_uring_refused(int err)
{
    ChildRun c = run_refused(err, [] {
        std::string what;
        coil_loop *loop = reinterpret_cast<coil_loop *>(0x1);
        coil_loop_opts o{};
        o.backend = COIL_BACKEND_IO_URING;
        int rc = coil_new_event_loop(&loop, &o);
        if (rc != COIL_ENOURING)
            what += "opts.backend = IO_URING gave " + std::to_string(rc) + "; ";
        setenv("COIL_BACKEND", "io_uring", 1);
        rc = coil_new_event_loop(&loop, nullptr);
        if (rc != COIL_ENOURING)
            what += "COIL_BACKEND=io_uring gave " + std::to_string(rc) + "; ";
        if (loop != reinterpret_cast<coil_loop *>(0x1))
            what += "*out was written on failure; ";
        return what;
    });
    EXPECT_CHILD_OK(c);
    std::vector<std::string> l = lines_of(c.stderr_text);
    ASSERT_EQ(l.size(), 2u) << "one explanation per refused request:\n" << c.stderr_text;
    for (const std::string &s : l) {
        EXPECT_TRUE(has(s, "cannot set up io_uring")) << s;
        EXPECT_TRUE(has(s, reason_for(err))) << s;
        EXPECT_FALSE(has(s, "epoll")) << "nothing fell back: " << s;
    }
}

TEST(Refused, ForcingIoUringWhereSetupIsRefusedWithEnosysGivesEnouring) { expect_forced_uring_refused(ENOSYS); }

TEST(Refused, ForcingIoUringWhereSetupIsRefusedWithEpermGivesEnouring) { expect_forced_uring_refused(EPERM); }

TEST(Refused, ForcingIoUringAfterAFallbackStillGivesEnouring)
{
    ChildRun c = run_refused(ENOSYS, [] {
        std::string what = loop_works(nullptr, "epoll");
        coil_loop *loop = nullptr;
        coil_loop_opts o{};
        o.backend = COIL_BACKEND_IO_URING;
        int rc = coil_new_event_loop(&loop, &o);
        if (rc != COIL_ENOURING)
            what += "; IO_URING after the fallback gave " + std::to_string(rc);
        return what;
    });
    EXPECT_CHILD_OK(c);
    std::vector<std::string> l = lines_of(c.stderr_text);
    ASSERT_EQ(l.size(), 2u) << c.stderr_text;
    EXPECT_TRUE(has(l[0], "epoll backend")) << l[0];
    EXPECT_TRUE(has(l[1], "cannot set up io_uring") && !has(l[1], "epoll")) << l[1];
}

TEST(Refused, AskingForEpollNeverTriesIoUringAndSaysNothing)
{
    ChildRun c = run_refused(ENOSYS, [] {
        coil_loop_opts o{};
        o.backend = COIL_BACKEND_EPOLL;
        std::string what = loop_works(&o, "epoll");
        setenv("COIL_BACKEND", "epoll", 1);
        std::string env = loop_works(nullptr, "epoll");
        return what + (env.empty() ? "" : "; with COIL_BACKEND=epoll: " + env);
    });
    EXPECT_CHILD_OK(c);
    EXPECT_EQ(c.stderr_text, "");
}

TEST(Refused, AnUnknownCoilBackendIsEinvalNamingTheValue)
{
    ChildRun c = run_refused(ENOSYS, [] {
        std::string what;
        setenv("COIL_BACKEND", "junk", 1);
        coil_loop *loop = reinterpret_cast<coil_loop *>(0x1);
        int rc = coil_new_event_loop(&loop, nullptr);
        if (rc != -EINVAL)
            what += "COIL_BACKEND=junk gave " + std::to_string(rc) + "; ";
        if (loop != reinterpret_cast<coil_loop *>(0x1))
            what += "*out was written on failure; ";
        // A backend named in the options does not ask the environment.
        coil_loop_opts o{};
        o.backend = COIL_BACKEND_EPOLL;
        std::string named = loop_works(&o, "epoll");
        if (!named.empty())
            what += "with opts.backend = EPOLL: " + named;
        return what;
    });
    EXPECT_CHILD_OK(c);
    std::vector<std::string> l = lines_of(c.stderr_text);
    ASSERT_EQ(l.size(), 1u) << c.stderr_text;
    EXPECT_TRUE(has(l[0], "COIL_BACKEND=junk")) << l[0];
}

// coil_run (a runner) passes on why its loop could not be made instead of calling every failure
// an io_uring one.
TEST(Refused, CoilRunWithAnUnknownCoilBackendReturnsEinval)
{
    ChildRun c = run_refused(0, [] {
        setenv("COIL_BACKEND", "junk", 1);
        void *res = nullptr;
        int rc = coil_run(add_one, (void *)1, &res);
        return rc == -EINVAL ? std::string() : "coil_run gave " + std::to_string(rc) + " (" + coil_strerror(rc) + ")";
    });
    EXPECT_CHILD_OK(c);
    EXPECT_TRUE(has(c.stderr_text, "COIL_BACKEND=junk")) << c.stderr_text;
}

TEST(Refused, AnUnknownBackendInTheOptionsIsEinval)
{
    ChildRun c = run_refused(ENOSYS, [] {
        coil_loop *loop = reinterpret_cast<coil_loop *>(0x1);
        coil_loop_opts o{};
        o.backend = static_cast<coil_backend>(7);
        int rc = coil_new_event_loop(&loop, &o);
        std::string what;
        if (rc != -EINVAL)
            what += "backend 7 gave " + std::to_string(rc) + "; ";
        if (loop != reinterpret_cast<coil_loop *>(0x1))
            what += "*out was written on failure; ";
        return what;
    });
    EXPECT_CHILD_OK(c);
}

// ---- the echo example, exec'd under the filter ----

using coil_test::exe_dir;

// Connect to 127.0.0.1:port, send `msg`, read as many bytes back; what came back.
std::string echo_roundtrip(int port, const std::string &msg)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return "(no socket)";
    struct sockaddr_in a = {};
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    std::string back;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return "(cannot connect)";
    }
    uint64_t deadline = coil_test::mono_ns() + (uint64_t)(10 * coil_test::time_scale() * 1e9);
    size_t sent = 0;
    while (back.size() < msg.size() && coil_test::mono_ns() < deadline) {
        struct pollfd p = { fd, (short)(POLLIN | (sent < msg.size() ? POLLOUT : 0)), 0 };
        if (poll(&p, 1, 100) < 0 && errno != EINTR)
            break;
        if ((p.revents & POLLOUT) && sent < msg.size()) {
            ssize_t n = send(fd, msg.data() + sent, msg.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0)
                sent += (size_t)n;
        }
        if (p.revents & (POLLIN | POLLHUP | POLLERR)) {
            char buf[16384];
            ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
                break;
            if (n > 0)
                back.append(buf, (size_t)n);
        }
    }
    close(fd);
    return back;
}

void expect_echo_serves_refused(int err, int shards)
{
    std::string path = exe_dir() + "/example-echo_server";
    ASSERT_EQ(access(path.c_str(), X_OK), 0) << path << " is missing: build with COIL_BUILD_TOOLS=ON";
    coil_test::Refused r = coil_test::spawn_refused({ path, "--port", "0", "--shards", std::to_string(shards) }, err,
                                                    coil_test::REFUSE_IO_URING, { "COIL_BACKEND" });
    if (r.no_filter)
        GTEST_SKIP() << "could not install a seccomp filter here";
    ASSERT_GT(r.pid, 0) << "the server did not start (execve: " << strerror(r.exec_errno) << ")";
    std::string banner = read_for(r.out, 10, "\n");
    size_t at = banner.find("port ");
    int port = at == std::string::npos ? -1 : atoi(banner.c_str() + at + 5);
    if (port <= 0) {
        kill(r.pid, SIGKILL);
        ADD_FAILURE() << "no banner from the server (its stderr follows below); its stdout:\n" << banner;
    } else {
        // A few connections, one with more bytes than a socket buffer holds.
        for (int i = 0; i < 4; i++) {
            std::string msg = "hello " + std::to_string(i) + "\n";
            EXPECT_EQ(echo_roundtrip(port, msg), msg);
        }
        std::string big(1 << 20, 'x');
        for (size_t i = 0; i < big.size(); i++)
            big[i] = (char)('a' + (i * 7) % 26);
        EXPECT_TRUE(echo_roundtrip(port, big) == big) << "the 1 MiB echo came back different";
        kill(r.pid, SIGTERM);
        EXPECT_TRUE(has(read_for(r.out, 10), "closed"));
    }
    std::string said = read_for(r.err, 10);
    int status = coil_test::wait_child(r.pid, 10, " (the server did not stop on SIGTERM)");
    close(r.out);
    close(r.err);
    if (port > 0) {
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status << "\n" << said;
    }
    std::vector<std::string> l = lines_of(said);
    ASSERT_EQ(l.size(), 1u) << "exactly one line about the refusal and the switch:\n" << said;
    EXPECT_TRUE(has(l[0], "cannot set up io_uring")) << l[0];
    EXPECT_TRUE(has(l[0], reason_for(err))) << l[0];
    EXPECT_TRUE(has(l[0], "epoll backend")) << l[0];
}

TEST(Refused, EchoServerServesWhereIoUringIsRefusedWithEnosys) { expect_echo_serves_refused(ENOSYS, 1); }

TEST(Refused, EchoServerServesWhereIoUringIsRefusedWithEperm) { expect_echo_serves_refused(EPERM, 1); }

TEST(Refused, ShardedEchoServerServesWhereIoUringIsRefusedAndSaysSoOnce) { expect_echo_serves_refused(ENOSYS, 2); }

// The filter itself: it refuses what it names with the errno it names, and nothing else, so the
// tests above test coil and not the helper.
TEST(Refused, TheFilterRefusesExactlyTheIoUringCallsItNames)
{
    ChildRun c = run_refused(0, [] {
        if (!coil_test::seccomp_refuse(coil_test::REFUSE_SETUP | coil_test::REFUSE_REGISTER, EPERM))
            _exit(77);
        std::string what;
        errno = 0;
        if (syscall(__NR_io_uring_setup, 0, nullptr) != -1 || errno != EPERM)
            what += "io_uring_setup was not refused with EPERM; ";
        errno = 0;
        if (syscall(__NR_io_uring_register, -1, 0, nullptr, 0) != -1 || errno != EPERM)
            what += "io_uring_register was not refused with EPERM; ";
        errno = 0;
        // Not refused: the kernel itself answers (a bad fd).
        if (syscall(__NR_io_uring_enter, -1, 0, 0, 0, nullptr, 0) != -1 || errno != EBADF)
            what += "io_uring_enter did not reach the kernel; ";
        if (getpid() <= 0)
            what += "getpid failed; ";
        return what;
    });
    EXPECT_CHILD_OK(c);
}

} // namespace
