// Subprocesses (coil/subprocess.h): spawning, stdio wiring, communicate without deadlock, exit
// status and signals, waiting and its cancellation, env/cwd, and no fd leaking into children.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <string>

#include "coil_test.h"

namespace {

bool wait_flag(const bool *flag)
{
    for (int i = 0; i < 10000 && !*flag; i++)
        coil_sleep(0);
    return *flag;
}

coil_subprocess *exec(std::initializer_list<const char *> args, const coil_subprocess_opts *o = nullptr)
{
    std::vector<const char *> argv(args);
    argv.push_back(nullptr);
    coil_subprocess *p = nullptr;
    int rc = coil_create_subprocess_exec(argv.data(), o, &p);
    EXPECT_EQ(rc, 0) << coil_strerror(rc);
    return p;
}

coil_subprocess *shell(const char *cmd, const coil_subprocess_opts *o = nullptr)
{
    coil_subprocess *p = nullptr;
    int rc = coil_create_subprocess_shell(cmd, o, &p);
    EXPECT_EQ(rc, 0) << coil_strerror(rc);
    return p;
}

int wait_rc(coil_subprocess *p)
{
    int rc = 12345;
    EXPECT_EQ(coil_subprocess_wait(p, &rc), 0);
    return rc;
}

std::set<int> fds_of(const std::string &dir)
{
    std::set<int> out;
    DIR *d = opendir(dir.c_str());
    if (!d)
        return out;
    int self = dirfd(d);
    while (dirent *e = readdir(d))
        if (e->d_name[0] != '.' && !(dir == "/proc/self/fd" && atoi(e->d_name) == self))
            out.insert(atoi(e->d_name));
    closedir(d);
    return out;
}

std::string pattern(size_t n)
{
    std::string s(n, 0);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('A' + (i * 31 + i / 1000) % 57);
    return s;
}

// Has the process `pid` gone (reaped)? Waits for it, bounded, by asking the kernel each step.
bool gone_within(pid_t pid, double seconds)
{
    double end = coil_loop_time(coil_get_running_loop()) + seconds;
    while (coil_loop_time(coil_get_running_loop()) < end) {
        if (kill(pid, 0) < 0 && errno == ESRCH)
            return true;
        coil_sleep(0.001);
    }
    return false;
}

} // namespace

TEST(Subprocess, ExitCodeIsTheChildsExitStatus)
{
    coil_test::run([]() -> void * {
        for (int code : { 0, 1, 3, 255 }) {
            std::string cmd = "exit " + std::to_string(code);
            coil_subprocess *p = shell(cmd.c_str());
            EXPECT_GT(coil_subprocess_pid(p), 0);
            EXPECT_EQ(wait_rc(p), code);
            int rc = -1;
            EXPECT_EQ(coil_subprocess_returncode(p, &rc), 0);
            EXPECT_EQ(rc, code);
            coil_subprocess_free(p);
        }
        return nullptr;
    });
}

TEST(Subprocess, ExecOfAMissingProgramFailsWithENOENTAndLeaksNothing)
{
    coil_test::run([]() -> void * {
        std::set<int> before = fds_of("/proc/self/fd");
        coil_subprocess *p = (coil_subprocess *)0x1;
        const char *abs[] = { "/nonexistent/coil-no-such-program", nullptr };
        EXPECT_EQ(coil_create_subprocess_exec(abs, nullptr, &p), -ENOENT);
        const char *bare[] = { "coil-no-such-program-anywhere", nullptr };
        coil_subprocess_opts o{};
        o.stdin_mode = o.stdout_mode = COIL_STDIO_PIPE;
        o.stderr_mode = COIL_STDIO_DEVNULL;
        EXPECT_EQ(coil_create_subprocess_exec(bare, &o, &p), -ENOENT);
        EXPECT_EQ(p, (coil_subprocess *)0x1) << "*out is untouched on error";
        const char *notexec[] = { "/etc/passwd", nullptr };
        EXPECT_EQ(coil_create_subprocess_exec(notexec, &o, &p), -EACCES);
        EXPECT_EQ(fds_of("/proc/self/fd"), before) << "a failed spawn must close every fd it opened";
        // No zombie either: every child spawned here has been reaped.
        EXPECT_EQ(waitpid(-1, nullptr, WNOHANG), -1);
        EXPECT_EQ(errno, ECHILD);
        return nullptr;
    });
}

TEST(Subprocess, BadOptionsAreEINVAL)
{
    coil_test::run([]() -> void * {
        const char *argv[] = { "/bin/true", nullptr };
        coil_subprocess *p = nullptr;
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_STDOUT;
        EXPECT_EQ(coil_create_subprocess_exec(argv, &o, &p), -EINVAL);
        o = {};
        o.stdin_mode = COIL_STDIO_FD;
        o.stdin_fd = -1;
        EXPECT_EQ(coil_create_subprocess_exec(argv, &o, &p), -EINVAL);
        o = {};
        o.stderr_mode = (coil_stdio)42;
        EXPECT_EQ(coil_create_subprocess_exec(argv, &o, &p), -EINVAL);
        const char *empty[] = { nullptr };
        EXPECT_EQ(coil_create_subprocess_exec(empty, nullptr, &p), -EINVAL);
        EXPECT_EQ(coil_create_subprocess_exec(nullptr, nullptr, &p), -EINVAL);
        EXPECT_EQ(coil_create_subprocess_shell(nullptr, nullptr, &p), -EINVAL);
        o = {};
        o.stdout_mode = COIL_STDIO_FD;
        o.stdout_fd = 987; // not open
        EXPECT_EQ(coil_create_subprocess_exec(argv, &o, &p), -EBADF);
        EXPECT_EQ(p, nullptr);
        EXPECT_EQ(coil_subprocess_wait(nullptr, nullptr), -EINVAL);
        return nullptr;
    });
}

TEST(Subprocess, ShellStdoutPipeIsAStream)
{
    coil_test::run([]() -> void * {
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = shell("echo hello; echo world", &o);
        EXPECT_EQ(coil_subprocess_stdin(p), nullptr);
        EXPECT_EQ(coil_subprocess_stderr(p), nullptr);
        coil_stream *s = coil_subprocess_stdout(p);
        EXPECT_NE(s, nullptr);
        char line[64];
        size_t n = 0;
        EXPECT_EQ(coil_stream_readline(s, line, sizeof line, &n), 0);
        EXPECT_EQ(std::string(line, n), "hello\n");
        EXPECT_EQ(coil_stream_readline(s, line, sizeof line, &n), 0);
        EXPECT_EQ(std::string(line, n), "world\n");
        EXPECT_EQ(coil_stream_readline(s, line, sizeof line, &n), 0);
        EXPECT_EQ(n, 0u);
        EXPECT_EQ(wait_rc(p), 0);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, CommunicateReadsTenMiBOfStdoutAndStderrAtOnceWithoutDeadlock)
{
    coil_test::run([]() -> void * {
        coil_subprocess_opts o{};
        o.stdout_mode = o.stderr_mode = COIL_STDIO_PIPE;
        // Both streams are written at the same time, each far past any socket buffer: a reader
        // that drained one before the other would stall the child forever.
        coil_subprocess *p = shell("head -c 10485760 /dev/zero >&2 & head -c 10485760 /dev/zero | tr '\\0' x; wait", &o);
        char *out = nullptr, *err = nullptr;
        size_t on = 0, en = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, &err, &en), 0);
        EXPECT_EQ(on, 10485760u);
        EXPECT_EQ(en, 10485760u);
        EXPECT_TRUE(out && out[0] == 'x' && out[on - 1] == 'x' && out[on] == 0);
        EXPECT_TRUE(err && err[0] == 0 && err[en - 1] == 0);
        free(out);
        free(err);
        int rc = -1;
        EXPECT_EQ(coil_subprocess_returncode(p, &rc), 0) << "communicate waits for the exit";
        EXPECT_EQ(rc, 0);
        coil_subprocess_free(p);
        return nullptr;
    }, 30);
}

TEST(Subprocess, CommunicateFeedsOneMiBToCatAndReadsItBack)
{
    std::string input = pattern(1 << 20);
    coil_test::run([&]() -> void * {
        coil_subprocess_opts o{};
        o.stdin_mode = o.stdout_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = exec({ "/bin/cat" }, &o);
        char *out = nullptr;
        size_t on = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, input.data(), input.size(), &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(on, input.size());
        EXPECT_TRUE(out && memcmp(out, input.data(), on) == 0);
        free(out);
        EXPECT_EQ(wait_rc(p), 0);
        coil_subprocess_free(p);
        return nullptr;
    }, 20);
}

TEST(Subprocess, CommunicateToAChildThatIgnoresStdinIsNotAnError)
{
    std::string input = pattern(4 << 20);
    coil_test::run([&]() -> void * {
        coil_subprocess_opts o{};
        o.stdin_mode = o.stdout_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = shell("echo done", &o);
        char *out = nullptr;
        size_t on = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, input.data(), input.size(), &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(std::string(out, on), "done\n");
        free(out);
        coil_subprocess_free(p);
        // Input without a stdin pipe is refused, not dropped.
        p = exec({ "/bin/true" });
        EXPECT_EQ(coil_subprocess_communicate(p, "x", 1, nullptr, nullptr, nullptr, nullptr), -EINVAL);
        EXPECT_EQ(wait_rc(p), 0);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, YesPipedIntoHeadThroughTheShell)
{
    coil_test::run([]() -> void * {
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = shell("/usr/bin/yes coil | head -n 100000", &o);
        char *out = nullptr;
        size_t on = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(on, 500000u);
        EXPECT_EQ(std::string(out, 10), "coil\ncoil\n");
        free(out);
        EXPECT_EQ(wait_rc(p), 0);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, StderrCanGoToStdoutAndStdioToDevnullOrAGivenFd)
{
    char path[] = "/tmp/coil-sub-XXXXXX";
    int tfd = mkstemp(path);
    ASSERT_GE(tfd, 0);
    coil_test::run([&]() -> void * {
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        o.stderr_mode = COIL_STDIO_STDOUT;
        coil_subprocess *p = shell("echo out; echo err >&2", &o);
        char *out = nullptr, *err = (char *)0x1;
        size_t on = 0, en = 7;
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, &err, &en), 0);
        EXPECT_EQ(std::string(out, on), "out\nerr\n");
        EXPECT_EQ(err, nullptr) << "stderr is not a pipe";
        EXPECT_EQ(en, 0u);
        free(out);
        coil_subprocess_free(p);

        // stdin from /dev/null: cat sees EOF at once.
        o = {};
        o.stdin_mode = COIL_STDIO_DEVNULL;
        o.stdout_mode = COIL_STDIO_PIPE;
        p = exec({ "/bin/cat" }, &o);
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(on, 0u);
        free(out);
        coil_subprocess_free(p);

        // stdout and stderr to a given fd (here swapped onto the same file), which stays ours.
        o = {};
        o.stdout_mode = o.stderr_mode = COIL_STDIO_FD;
        o.stdout_fd = o.stderr_fd = tfd;
        p = shell("echo to-file; echo err-to-file >&2", &o);
        EXPECT_EQ(wait_rc(p), 0);
        coil_subprocess_free(p);
        EXPECT_GE(fcntl(tfd, F_GETFD), 0) << "a given fd is not taken over";
        char *b = nullptr;
        size_t n = 0;
        EXPECT_EQ(coil_file_read_all(path, &b, &n), 0);
        EXPECT_EQ(std::string(b, n), "to-file\nerr-to-file\n");
        free(b);
        return nullptr;
    });
    close(tfd);
    unlink(path);
}

TEST(Subprocess, EnvAndCwdAreTheChildsOwn)
{
    char dir[] = "/tmp/coil-cwd-XXXXXX";
    ASSERT_NE(mkdtemp(dir), nullptr);
    coil_test::run([&]() -> void * {
        char *const env[] = { (char *)"COIL_VAR=forty two", nullptr };
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        o.env = env;
        o.cwd = dir;
        coil_subprocess *p = shell("echo \"$COIL_VAR\"; pwd; echo \"${HOME-unset}\"", &o);
        char *out = nullptr;
        size_t on = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(std::string(out, on), std::string("forty two\n") + dir + "\nunset\n");
        free(out);
        coil_subprocess_free(p);
        // A cwd that does not exist is the create call's error.
        o.cwd = "/tmp/coil-no-such-dir";
        const char *argv[] = { "/bin/true", nullptr };
        EXPECT_EQ(coil_create_subprocess_exec(argv, &o, &p), -ENOENT);
        return nullptr;
    });
    rmdir(dir);
}

TEST(Subprocess, AChildKilledByASignalHasMinusTheSignalAsReturncode)
{
    coil_test::run([]() -> void * {
        coil_subprocess *p = exec({ "/bin/sleep", "30" });
        int rc = 0;
        EXPECT_EQ(coil_subprocess_returncode(p, &rc), COIL_EINVALSTATE) << "still running";
        EXPECT_EQ(coil_subprocess_kill(p), 0);
        EXPECT_EQ(wait_rc(p), -SIGKILL);
        EXPECT_EQ(coil_subprocess_send_signal(p, SIGTERM), -ESRCH) << "asyncio's ProcessLookupError";
        coil_subprocess_free(p);

        p = exec({ "/bin/sleep", "30" });
        EXPECT_EQ(coil_subprocess_terminate(p), 0);
        EXPECT_EQ(wait_rc(p), -SIGTERM);
        coil_subprocess_free(p);

        // A child whose own handler turns SIGTERM into an exit status.
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        p = shell("trap 'exit 7' TERM; echo ready; while :; do sleep 0.01; done", &o);
        char line[16];
        size_t n;
        EXPECT_EQ(coil_stream_readline(coil_subprocess_stdout(p), line, sizeof line, &n), 0);
        EXPECT_EQ(coil_subprocess_send_signal(p, SIGTERM), 0);
        EXPECT_EQ(wait_rc(p), 7);
        EXPECT_EQ(coil_subprocess_send_signal(p, 1234), -ESRCH);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, WaitOnAnAlreadyExitedChildReturnsAtOnce)
{
    coil_test::run([]() -> void * {
        coil_subprocess *p = exec({ "/bin/sh", "-c", "exit 5" });
        // Block until the kernel says it has exited, without reaping it (WNOWAIT).
        siginfo_t si{};
        EXPECT_EQ(waitid(P_PID, (id_t)coil_subprocess_pid(p), &si, WEXITED | WNOWAIT), 0);
        EXPECT_EQ(wait_rc(p), 5);
        EXPECT_EQ(wait_rc(p), 5) << "waiting again returns the same status";
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, SignallingAnExitedChildNotYetWaitedForIsEsrchAndKeepsItsStatus)
{
    // The kernel accepts a signal for a zombie; subprocess.h (and asyncio, which polls first)
    // say a child that has exited is gone: -ESRCH, and the exit status stays for wait().
    coil_test::run([]() -> void * {
        int (*const senders[])(coil_subprocess *) = {
            [](coil_subprocess *p) { return coil_subprocess_send_signal(p, SIGTERM); },
            coil_subprocess_terminate,
            coil_subprocess_kill,
        };
        for (auto send : senders) {
            coil_subprocess *p = exec({ "/bin/sh", "-c", "exit 3" });
            siginfo_t si{};
            EXPECT_EQ(waitid(P_PID, (id_t)coil_subprocess_pid(p), &si, WEXITED | WNOWAIT), 0);
            EXPECT_EQ(send(p), -ESRCH);
            EXPECT_EQ(send(p), -ESRCH) << "and again";
            int rc = 0;
            EXPECT_EQ(coil_subprocess_returncode(p, &rc), 0);
            EXPECT_EQ(rc, 3);
            EXPECT_EQ(wait_rc(p), 3);
            coil_subprocess_free(p);
        }
        return nullptr;
    });
}

TEST(Subprocess, SeveralTasksMayWaitForTheSameChild)
{
    coil_test::run([]() -> void * {
        coil_subprocess_opts o{};
        o.stdin_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = shell("read x; exit 4", &o);
        int rcs[3] = { -1, -1, -1 };
        coil_task *t[3];
        for (int i = 0; i < 3; i++)
            coil_test::spawn(&t[i], [p, &rcs, i]() -> void * {
                EXPECT_EQ(coil_subprocess_wait(p, &rcs[i]), 0);
                return nullptr;
            });
        coil_sleep(0); // all three are parked in wait now
        EXPECT_EQ(coil_stream_write(coil_subprocess_stdin(p), "go\n", 3), 0);
        for (auto *x : t) {
            EXPECT_EQ(coil_task_await(x, nullptr), 0);
            coil_task_free(x);
        }
        for (int rc : rcs)
            EXPECT_EQ(rc, 4);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, CancellingAWaitLeavesTheChildRunning)
{
    coil_test::run([]() -> void * {
        coil_subprocess *p = exec({ "/bin/sleep", "30" });
        bool waiting = false;
        int r = 1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            waiting = true;
            r = coil_subprocess_wait(p, nullptr);
            return nullptr;
        });
        EXPECT_TRUE(wait_flag(&waiting));
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        coil_task_await(t, nullptr);
        coil_task_free(t);
        EXPECT_EQ(r, -ECANCELED);
        int rc;
        EXPECT_EQ(coil_subprocess_returncode(p, &rc), COIL_EINVALSTATE);
        EXPECT_EQ(coil_subprocess_send_signal(p, 0), 0) << "the child is still alive";
        EXPECT_EQ(coil_subprocess_kill(p), 0);
        EXPECT_EQ(wait_rc(p), -SIGKILL);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, CancellingCommunicateReturnsECANCELEDAndTheChildRunsOn)
{
    coil_test::run([]() -> void * {
        coil_subprocess_opts o{};
        o.stdout_mode = o.stderr_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = shell("echo partial; exec sleep 30", &o);
        bool started = false;
        int r = 1;
        char *out = (char *)0x1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            started = true;
            r = coil_subprocess_communicate(p, nullptr, 0, &out, nullptr, nullptr, nullptr);
            return nullptr;
        });
        EXPECT_TRUE(wait_flag(&started));
        coil_sleep(0);
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        coil_task_await(t, nullptr);
        coil_task_free(t);
        EXPECT_EQ(r, -ECANCELED);
        EXPECT_EQ(out, (char *)0x1) << "nothing is returned from a cancelled communicate";
        EXPECT_EQ(coil_subprocess_send_signal(p, 0), 0);
        pid_t pid = coil_subprocess_pid(p);
        // Freeing a running child kills it and reaps it in the background.
        coil_subprocess_free(p);
        EXPECT_TRUE(gone_within(pid, 5.0));
        return nullptr;
    });
}

TEST(Subprocess, FreeingARunningChildKillsAndReapsIt)
{
    coil_test::run([]() -> void * {
        coil_subprocess *p = exec({ "/bin/sleep", "30" });
        pid_t pid = coil_subprocess_pid(p);
        coil_subprocess_free(p);
        EXPECT_TRUE(gone_within(pid, 5.0));
        return nullptr;
    });
}

TEST(Subprocess, NoFdLeaksIntoChildren)
{
    coil_test::run([]() -> void * {
        // Give the runtime reasons to hold fds: an open file, another child's pidfd and pipes.
        int ffd = -1;
        EXPECT_EQ(coil_file_open("/proc/self/status", O_RDONLY, 0, &ffd), 0);
        coil_subprocess_opts po{};
        po.stdin_mode = po.stdout_mode = po.stderr_mode = COIL_STDIO_PIPE;
        coil_subprocess *other = exec({ "/bin/cat" }, &po);

        // Every fd the runtime opened is close-on-exec.
        std::set<int> inherited; // what this process would pass on by itself (from its parent)
        for (int fd : fds_of("/proc/self/fd"))
            if (fd > 2 && !(fcntl(fd, F_GETFD) & FD_CLOEXEC))
                inherited.insert(fd);
        EXPECT_EQ(inherited.count(ffd), 0u);

        for (bool keep : { false, true }) {
            coil_subprocess_opts o{};
            o.stdin_mode = o.stdout_mode = COIL_STDIO_PIPE;
            o.keep_fds = keep;
            coil_subprocess *p = exec({ "/bin/cat" }, &o);
            // A vfork parent resumes at the exec's point of no return, a moment before the
            // kernel closes the close-on-exec fds: look once cat has echoed a byte back.
            char c = 0;
            EXPECT_EQ(coil_stream_write(coil_subprocess_stdin(p), "x", 1), 0);
            EXPECT_EQ(coil_stream_readexactly(coil_subprocess_stdout(p), &c, 1, nullptr), 0);
            EXPECT_EQ(c, 'x');
            std::string dir = "/proc/" + std::to_string(coil_subprocess_pid(p)) + "/fd";
            std::set<int> got = fds_of(dir);
            std::set<int> want = { 0, 1, 2 };
            if (keep)
                want.insert(inherited.begin(), inherited.end());
            std::string what;
            for (int fd : got) {
                char l[256] = {};
                what += " " + std::to_string(fd) + "=" +
                        (readlink((dir + "/" + std::to_string(fd)).c_str(), l, sizeof l - 1) > 0 ? l : "?");
            }
            EXPECT_EQ(got, want) << (keep ? "keep_fds:" : "close_fds:") << what;
            EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, nullptr, nullptr, nullptr, nullptr), 0);
            coil_subprocess_free(p);
        }
        EXPECT_EQ(coil_subprocess_communicate(other, nullptr, 0, nullptr, nullptr, nullptr, nullptr), 0);
        coil_subprocess_free(other);
        EXPECT_EQ(coil_file_close(ffd), 0);
        return nullptr;
    });
}

TEST(Subprocess, PythonChildSeesItsArgumentsAndExitCode)
{
    coil_test::run([]() -> void * {
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = exec({ "python3", "-c", "import sys; print(sys.argv[1:]); sys.exit(9)", "a b", "c" }, &o);
        char *out = nullptr;
        size_t on = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(std::string(out, on), "['a b', 'c']\n");
        free(out);
        EXPECT_EQ(wait_rc(p), 9);
        coil_subprocess_free(p);
        return nullptr;
    });
}

TEST(Subprocess, WaitAndCommunicateOutsideATaskReturnENOTASK)
{
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    coil_set_event_loop(loop);
    const char *argv[] = { "/bin/true", nullptr };
    coil_subprocess *p = nullptr;
    ASSERT_EQ(coil_create_subprocess_exec(argv, nullptr, &p), 0);
    EXPECT_EQ(coil_subprocess_wait(p, nullptr), COIL_ENOTASK);
    EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, nullptr, nullptr, nullptr, nullptr), COIL_ENOTASK);
    siginfo_t si{};
    EXPECT_EQ(waitid(P_PID, (id_t)coil_subprocess_pid(p), &si, WEXITED | WNOWAIT), 0);
    int rc = -1;
    EXPECT_EQ(coil_subprocess_returncode(p, &rc), 0);
    EXPECT_EQ(rc, 0);
    coil_subprocess_free(p);
    coil_set_event_loop(nullptr);
    coil_loop_close(loop);
}

// The loop blocks the signals it handles (it reads them from a signalfd); a child must not
// inherit that mask, or it could never be interrupted by them.
TEST(Subprocess, AChildStartsWithAnEmptySignalMaskWhileTheLoopHandlesSignals)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        EXPECT_EQ(coil_loop_add_signal_handler(loop, SIGUSR1, [](void *) -> int { return 0; }, nullptr), 0);
        sigset_t cur;
        pthread_sigmask(SIG_BLOCK, nullptr, &cur);
        EXPECT_TRUE(sigismember(&cur, SIGUSR1)) << "the premise: this thread blocks SIGUSR1";
        coil_subprocess_opts o{};
        o.stdout_mode = COIL_STDIO_PIPE;
        coil_subprocess *p = exec({ "/bin/grep", "^SigBlk", "/proc/self/status" }, &o);
        char *out = nullptr;
        size_t on = 0;
        EXPECT_EQ(coil_subprocess_communicate(p, nullptr, 0, &out, &on, nullptr, nullptr), 0);
        EXPECT_EQ(std::string(out, on), "SigBlk:\t0000000000000000\n");
        free(out);
        coil_subprocess_free(p);
        EXPECT_EQ(coil_loop_remove_signal_handler(loop, SIGUSR1), 1);
        return nullptr;
    });
}
