// Servers (coil_start_server): a task per connection, lifecycle, EMFILE back-off, and the
// example servers driven by real clients (Python asyncio, wrk).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "coil_test.h"

extern char **environ;

namespace {

void echo_handler(coil_stream *s, void *arg)
{
    int *served = static_cast<int *>(arg);
    if (served)
        ++*served;
    char buf[4096];
    for (;;) {
        size_t n;
        if (coil_stream_read(s, buf, sizeof buf, &n) != 0 || n == 0)
            return;
        if (coil_stream_write(s, buf, n) != 0 || coil_stream_drain(s) != 0)
            return;
    }
}

// Round-trip `msg` through an echo server at 127.0.0.1:port; returns what came back.
std::string roundtrip(const char *host, int port, const std::string &msg)
{
    coil_stream *s = nullptr;
    int err = coil_open_connection(host, port, nullptr, &s);
    if (err)
        return "connect error " + std::to_string(err);
    std::string out(msg.size(), '\0');
    coil_stream_write(s, msg.data(), msg.size());
    size_t got = 0;
    err = coil_stream_readexactly(s, &out[0], msg.size(), &got);
    coil_stream_free(s);
    return err ? "read error " + std::to_string(err) : out;
}

bool wait_until(const std::function<bool()> &cond)
{
    for (int i = 0; i < 5000 && !cond(); i++)
        coil_sleep(0.001);
    return cond();
}

double cpu_seconds()
{
    rusage ru{};
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
}

} // namespace

TEST(Server, ServesEachConnectionInItsOwnTask)
{
    coil_test::run([]() -> void * {
        int served = 0;
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_server(echo_handler, &served, "127.0.0.1", 0, nullptr, &srv), 0);
        int port = coil_server_port(srv);
        EXPECT_GT(port, 0);
        EXPECT_EQ(coil_server_socket_count(srv), 1u);
        EXPECT_TRUE(fcntl(coil_server_socket(srv, 0), F_GETFD) & FD_CLOEXEC);
        std::vector<coil_task *> clients(16);
        for (size_t i = 0; i < clients.size(); i++)
            coil_test::spawn(&clients[i], [port, i]() -> void * {
                std::string msg = "client " + std::to_string(i) + std::string(1000 * i, '.');
                return (void *)(intptr_t)(roundtrip("127.0.0.1", port, msg) == msg);
            });
        for (coil_task *c : clients) {
            void *ok = nullptr;
            coil_task_await(c, &ok);
            EXPECT_TRUE(ok);
            coil_task_free(c);
        }
        EXPECT_EQ(served, 16);
        EXPECT_TRUE(wait_until([srv] { return coil_server_connection_count(srv) == 0; }));
        coil_server_close(srv);
        EXPECT_FALSE(coil_server_is_serving(srv));
        EXPECT_EQ(coil_server_wait_closed(srv), 0);
        coil_server_free(srv);
        return nullptr;
    });
}

// The servers of one loop share its provided-buffer ring: one going away must leave the ring
// registered for the other's connections, the open ones and the new ones, even once the other
// has no connection left.
TEST(Server, ServersOnOneLoopShareItsRecvBuffersAndOutliveEachOther)
{
    coil_test::run([]() -> void * {
        coil_server *a = nullptr, *b = nullptr;
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &a), 0);
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &b), 0);
        EXPECT_EQ(roundtrip("127.0.0.1", coil_server_port(a), "to a"), "to a");
        coil_stream *open_b = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", coil_server_port(b), nullptr, &open_b), 0);
        char buf[16];
        size_t n = 0;
        EXPECT_EQ(coil_stream_write(open_b, "first", 5), 0);
        EXPECT_EQ(coil_stream_readexactly(open_b, buf, 5, &n), 0);
        coil_server_close(a);
        EXPECT_EQ(coil_server_wait_closed(a), 0);
        coil_server_free(a);
        EXPECT_EQ(coil_stream_write(open_b, "again", 5), 0);
        EXPECT_EQ(coil_stream_readexactly(open_b, buf, 5, &n), 0);
        EXPECT_EQ(std::string(buf, n), "again");
        EXPECT_EQ(roundtrip("127.0.0.1", coil_server_port(b), "new to b"), "new to b");
        coil_stream_free(open_b);
        EXPECT_TRUE(wait_until([b] { return coil_server_connection_count(b) == 0; }));
        EXPECT_EQ(roundtrip("127.0.0.1", coil_server_port(b), "b alone"), "b alone");
        coil_server_close_clients(b);
        coil_server_close(b);
        EXPECT_EQ(coil_server_wait_closed(b), 0);
        coil_server_free(b);
        return nullptr;
    });
}

TEST(Server, WithoutAHostItListensOnEveryFamily)
{
    coil_test::run([]() -> void * {
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, nullptr, 0, nullptr, &srv), 0);
        int port = coil_server_port(srv);
        EXPECT_EQ(roundtrip("127.0.0.1", port, "v4"), "v4");
        if (coil_test::have_ipv6_loopback()) {
            EXPECT_EQ(coil_server_socket_count(srv), 2u);
            EXPECT_EQ(roundtrip("::1", port, "v6"), "v6");
        }
        coil_server_free(srv);
        return nullptr;
    });
}

TEST(Server, ServesOverIPv6Loopback)
{
    if (!coil_test::have_ipv6_loopback())
        GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
    coil_test::run([]() -> void * {
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "::1", 0, nullptr, &srv), 0);
        EXPECT_EQ(roundtrip("::1", coil_server_port(srv), "six"), "six");
        coil_server_free(srv);
        return nullptr;
    });
}

TEST(Server, ASilentClientDoesNotHoldUpOthers)
{
    coil_test::run([]() -> void * {
        coil_server *srv = nullptr;
        coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &srv);
        int port = coil_server_port(srv);
        coil_stream *silent = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &silent), 0);
        EXPECT_EQ(roundtrip("127.0.0.1", port, "busy"), "busy");
        EXPECT_TRUE(wait_until([srv] { return coil_server_connection_count(srv) == 1; }));
        // wait_closed waits for the silent client's handler; close_clients ends it.
        coil_server_close(srv);
        coil_task *waiter = nullptr;
        coil_test::spawn(&waiter, [srv]() -> void * { return (void *)(intptr_t)coil_server_wait_closed(srv); });
        coil_sleep(0);
        EXPECT_FALSE(coil_task_done(waiter));
        coil_server_close_clients(srv);
        void *r = (void *)1;
        EXPECT_EQ(coil_task_await(waiter, &r), 0);
        EXPECT_EQ((intptr_t)r, 0);
        coil_task_free(waiter);
        // The server closed the silent client's connection.
        char c;
        size_t n = 1;
        EXPECT_EQ(coil_stream_read(silent, &c, 1, &n), 0);
        EXPECT_EQ(n, 0u);
        coil_stream_free(silent);
        coil_server_free(srv);
        return nullptr;
    });
}

TEST(Server, ServeForeverReturnsOnCloseAndCancellingItClosesTheServer)
{
    coil_test::run([]() -> void * {
        coil_server *srv = nullptr;
        coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &srv);
        coil_task *f = nullptr;
        coil_test::spawn(&f, [srv]() -> void * { return (void *)(intptr_t)coil_server_serve_forever(srv); });
        coil_sleep(0);
        EXPECT_FALSE(coil_task_done(f));
        coil_server_close(srv);
        void *r = (void *)1;
        coil_task_await(f, &r);
        EXPECT_EQ((intptr_t)r, 0);
        coil_task_free(f);
        EXPECT_EQ(coil_server_serve_forever(srv), COIL_ECLOSED);
        coil_server_free(srv);

        coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &srv);
        int port = coil_server_port(srv);
        coil_test::spawn(&f, [srv]() -> void * { return (void *)(intptr_t)coil_server_serve_forever(srv); });
        coil_sleep(0);
        coil_task_cancel(f, nullptr);
        coil_task_await(f, &r);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        coil_task_free(f);
        EXPECT_FALSE(coil_server_is_serving(srv));
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &s), -ECONNREFUSED);
        coil_server_free(srv);
        return nullptr;
    });
}

namespace {

// A handler that holds its connection until the test lets it go.
struct Held {
    coil_event *go = nullptr;
    int started = 0, finished = 0;
};

void held_handler(coil_stream *s, void *arg)
{
    (void)s;
    auto *h = static_cast<Held *>(arg);
    h->started++;
    coil_event_wait(h->go);
    h->finished++;
}

} // namespace

// A pending accept holds the listening socket open in the kernel after close(2) drops its fd, so
// closing must stop the listener itself; a connect right after close, before the loop runs
// again, is refused as asyncio's is.
TEST(Server, AConnectRightAfterCloseIsRefused)
{
    coil_test::run([]() -> void * {
        for (int round = 0; round < 3; round++) {
            coil_server *srv = nullptr;
            EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &srv), 0);
            int port = coil_server_port(srv);
            EXPECT_EQ(roundtrip("127.0.0.1", port, "up"), "up");
            coil_server_close(srv);
            int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            sockaddr_in a{};
            a.sin_family = AF_INET;
            a.sin_port = htons((uint16_t)port);
            a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
            int r = connect(fd, (sockaddr *)&a, sizeof a);
            EXPECT_EQ(r == 0 ? 0 : -errno, -ECONNREFUSED) << "round " << round;
            close(fd);
            EXPECT_EQ(coil_server_wait_closed(srv), 0);
            coil_server_free(srv);
        }
        return nullptr;
    });
}

TEST(Server, CancellingServeForeverClosesTheServerAndWaitsForTheHandlers)
{
    coil_test::run([]() -> void * {
        Held h;
        EXPECT_EQ(coil_event_new(&h.go), 0);
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_server(held_handler, &h, "127.0.0.1", 0, nullptr, &srv), 0);
        int port = coil_server_port(srv);
        coil_task *f = nullptr;
        coil_test::spawn(&f, [srv]() -> void * { return (void *)(intptr_t)coil_server_serve_forever(srv); });
        coil_stream *c = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &c), 0);
        EXPECT_TRUE(wait_until([&h] { return h.started == 1; }));
        coil_task_cancel(f, nullptr);
        // asyncio 3.12+: the server closes at once, and serve_forever waits for wait_closed.
        EXPECT_TRUE(wait_until([srv] { return !coil_server_is_serving(srv); }));
        coil_stream *late = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &late), -ECONNREFUSED);
        for (int i = 0; i < 100; i++)
            coil_sleep(0);
        EXPECT_FALSE(coil_task_done(f)) << "serve_forever returned while a handler still ran";
        coil_event_set(h.go);
        void *r = (void *)1;
        EXPECT_EQ(coil_task_await(f, &r), 0);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        EXPECT_EQ(h.finished, 1);
        EXPECT_EQ(coil_server_connection_count(srv), 0u);
        coil_task_free(f);
        coil_stream_free(c);
        coil_server_free(srv);
        coil_event_free(h.go);
        return nullptr;
    });
}

TEST(Server, ASecondCancelEndsServeForeversWaitForTheHandlers)
{
    coil_test::run([]() -> void * {
        Held h;
        EXPECT_EQ(coil_event_new(&h.go), 0);
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_server(held_handler, &h, "127.0.0.1", 0, nullptr, &srv), 0);
        coil_task *f = nullptr;
        coil_test::spawn(&f, [srv]() -> void * { return (void *)(intptr_t)coil_server_serve_forever(srv); });
        coil_stream *c = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", coil_server_port(srv), nullptr, &c), 0);
        EXPECT_TRUE(wait_until([&h] { return h.started == 1; }));
        coil_task_cancel(f, nullptr);
        EXPECT_TRUE(wait_until([srv] { return !coil_server_is_serving(srv); }));
        EXPECT_FALSE(coil_task_done(f));
        // As asyncio, where the second CancelledError propagates out of wait_closed().
        coil_task_cancel(f, nullptr);
        void *r = (void *)1;
        EXPECT_EQ(coil_task_await(f, &r), 0);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        EXPECT_EQ(h.finished, 0); // the handler still runs: serve_forever did not wait for it
        EXPECT_EQ(coil_server_connection_count(srv), 1u);
        coil_task_free(f);
        coil_event_set(h.go);
        EXPECT_EQ(coil_server_wait_closed(srv), 0);
        EXPECT_EQ(h.finished, 1);
        coil_stream_free(c);
        coil_server_free(srv);
        coil_event_free(h.go);
        return nullptr;
    });
}

TEST(Server, BadArgumentsAndBusyPortsAreErrors)
{
    coil_test::run([]() -> void * {
        coil_server *a = nullptr, *b = nullptr;
        EXPECT_EQ(coil_start_server(nullptr, nullptr, "127.0.0.1", 0, nullptr, &a), -EINVAL);
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 65536, nullptr, &a), -EINVAL);
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &a), 0);
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", coil_server_port(a), nullptr, &b), -EADDRINUSE);
        coil_server_free(a);
        return nullptr;
    });
    coil_server *c = nullptr;
    EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, nullptr, &c), COIL_ENOTASK);
}

TEST(Server, ReusePortLetsOneServerPerShardShareAPort)
{
    coil_test::run([]() -> void * {
        coil_server_opts o{};
        o.reuse_port = 1;
        coil_server *a = nullptr, *b = nullptr;
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", 0, &o, &a), 0);
        int port = coil_server_port(a);
        EXPECT_EQ(coil_start_server(echo_handler, nullptr, "127.0.0.1", port, &o, &b), 0);
        for (int i = 0; i < 8; i++)
            EXPECT_EQ(roundtrip("127.0.0.1", port, "rp"), "rp");
        coil_server_free(a);
        coil_server_free(b);
        return nullptr;
    });
}

TEST(Server, UnixServerServesAndRemovesItsSocketFile)
{
    coil_test::run([]() -> void * {
        std::string path = "/tmp/coil-test-server-" + std::to_string(getpid()) + ".sock";
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_unix_server(echo_handler, nullptr, path.c_str(), nullptr, &srv), 0);
        EXPECT_EQ(coil_server_port(srv), -1);
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_unix_connection(path.c_str(), nullptr, &s), 0);
        coil_stream_write(s, "unix!", 5);
        char buf[8];
        EXPECT_EQ(coil_stream_readexactly(s, buf, 5, nullptr), 0);
        EXPECT_EQ(std::string(buf, 5), "unix!");
        coil_stream_free(s);
        coil_server_free(srv);
        EXPECT_NE(access(path.c_str(), F_OK), 0);
        return nullptr;
    });
}

TEST(Server, AcceptOutOfFdsBacksOffWithoutSpinningAndRecovers)
{
    rlimit old{};
    getrlimit(RLIMIT_NOFILE, &old);
    coil_test::run([&old]() -> void * {
        coil_server *srv = nullptr;
        int served = 0;
        coil_start_server(echo_handler, &served, "127.0.0.1", 0, nullptr, &srv);
        int port = coil_server_port(srv);
        int client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        // Fill the fd table under a lowered limit.
        rlimit low = old;
        low.rlim_cur = 256;
        EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
        std::vector<int> fillers;
        for (;;) {
            int fd = dup(client);
            if (fd < 0)
                break;
            fillers.push_back(fd);
        }
        EXPECT_EQ(errno, EMFILE);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)port);
        EXPECT_EQ(coil_sock_connect(client, (sockaddr *)&sa, sizeof sa), 0);
        // The server cannot accept: over 0.5 s it must sleep, not spin.
        double cpu0 = cpu_seconds();
        coil_sleep(0.5);
        double cpu = cpu_seconds() - cpu0;
        EXPECT_LT(cpu, 0.1) << "the accept loop spun while out of fds";
        EXPECT_EQ(served, 0);
        for (int fd : fillers)
            close(fd);
        setrlimit(RLIMIT_NOFILE, &old);
        // Recovery: the connection made during the drought is served.
        EXPECT_TRUE(wait_until([&served] { return served == 1; }));
        EXPECT_EQ(coil_sock_sendall(client, "back", 4, 0), 0);
        char buf[4];
        size_t n = 0, got = 0;
        while (got < 4 && coil_sock_recv(client, buf + got, 4 - got, 0, &n) == 0 && n)
            got += n;
        EXPECT_EQ(std::string(buf, got), "back");
        close(client);
        coil_server_free(srv);
        return nullptr;
    });
    setrlimit(RLIMIT_NOFILE, &old);
}

namespace {

struct Lazy {
    bool go = false;
    size_t read = 0;
    int err = 1;
    bool done = false;
};

// Reads nothing until told to, then everything up to EOF.
void lazy_handler(coil_stream *s, void *arg)
{
    auto *l = static_cast<Lazy *>(arg);
    for (int i = 0; i < 5000 && !l->go; i++)
        coil_sleep(0.001);
    static char buf[65536];
    size_t n;
    while ((l->err = coil_stream_read(s, buf, sizeof buf, &n)) == 0 && n > 0)
        l->read += n;
    l->done = true;
}

} // namespace

TEST(Server, AHandlerThatDoesNotReadStopsTheServerFromBufferingMore)
{
    coil_test::run([]() -> void * {
        Lazy lazy;
        coil_server *srv = nullptr;
        coil_start_server(lazy_handler, &lazy, "127.0.0.1", 0, nullptr, &srv);
        coil_stream *c = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", coil_server_port(srv), nullptr, &c), 0);
        static constexpr size_t total = 64u << 20;
        static size_t sent;
        sent = 0;
        coil_task *writer = nullptr;
        coil_test::spawn(&writer, [c]() -> void * {
            static char chunk[65536];
            while (sent < total) {
                if (coil_stream_write(c, chunk, sizeof chunk) != 0 || coil_stream_drain(c) != 0)
                    return nullptr;
                sent += sizeof chunk;
            }
            coil_stream_write_eof(c);
            return nullptr;
        });
        // The client must get stuck: the server stops receiving once its handler lags behind,
        // instead of pulling all 64 MiB into memory.
        int stable = 0;
        size_t last = (size_t)-1;
        for (int i = 0; i < 500 && stable < 5; i++) {
            coil_sleep(0.01);
            stable = sent == last ? stable + 1 : 0;
            last = sent;
        }
        EXPECT_EQ(stable, 5);
        EXPECT_LT(sent, total);
        // Once the handler reads, everything arrives, in full.
        lazy.go = true;
        EXPECT_EQ(coil_task_await(writer, nullptr), 0);
        coil_task_free(writer);
        for (int i = 0; i < 5000 && !lazy.done; i++)
            coil_sleep(0.001);
        EXPECT_TRUE(lazy.done);
        EXPECT_EQ(lazy.err, 0);
        EXPECT_EQ(lazy.read, total);
        coil_stream_free(c);
        coil_server_free(srv);
        return nullptr;
    }, 30);
}

TEST(Server, AClientResetReachesTheHandlersReadAsEconnreset)
{
    coil_test::run([]() -> void * {
        Lazy lazy;
        lazy.go = true;
        coil_server *srv = nullptr;
        coil_start_server(lazy_handler, &lazy, "127.0.0.1", 0, nullptr, &srv);
        int c = -1;
        coil_socket(AF_INET, SOCK_STREAM, 0, &c);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)coil_server_port(srv));
        EXPECT_EQ(coil_sock_connect(c, (sockaddr *)&sa, sizeof sa), 0);
        EXPECT_EQ(coil_sock_sendall(c, "partial", 7, 0), 0);
        EXPECT_TRUE(wait_until([&lazy] { return lazy.read == 7; }));
        linger lg{1, 0};
        setsockopt(c, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(c);
        EXPECT_TRUE(wait_until([&lazy] { return lazy.done; }));
        EXPECT_EQ(lazy.err, -ECONNRESET);
        coil_server_free(srv);
        return nullptr;
    });
}

// ---- the example servers, as separate processes ----

namespace {

using coil_test::exe_dir;

// Start a program with stdout on a pipe; returns its pid, *out_fd the pipe's read end.
pid_t start(const std::vector<std::string> &argv, int *out_fd)
{
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0)
        return -1;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
    std::vector<char *> args;
    for (const auto &a : argv)
        args.push_back(const_cast<char *>(a.c_str()));
    args.push_back(nullptr);
    pid_t pid = -1;
    int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    close(p[1]);
    if (rc != 0) {
        close(p[0]);
        return -1;
    }
    *out_fd = p[0];
    return pid;
}

// Read a child's stdout (through the ring) until EOF or `stop` appears.
std::string read_output(int fd, const char *stop = nullptr)
{
    std::string out;
    char buf[4096];
    size_t n;
    while (coil_read(fd, buf, sizeof buf, &n) == 0 && n > 0) {
        out.append(buf, n);
        if (stop && out.find(stop) != std::string::npos)
            break;
    }
    return out;
}

int wait_exit(pid_t pid)
{
    // A failed spawn gives -1: waitpid(-1) would reap anyone's child and kill(-1) would signal
    // every process we may signal, so a bad pid fails the test and touches nothing.
    if (pid <= 0) {
        ADD_FAILURE() << "wait_exit: no child (pid " << pid << ")";
        return -1;
    }
    int st = 0;
    for (int i = 0; i < 5000; i++) {
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        coil_sleep(0.001);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    return -1;
}

// SIGTERM an example server started by start_example: it must shut down cleanly (exit 0, having
// said "closed").
void stop_example(pid_t srv, int out_fd)
{
    if (srv <= 0) {
        ADD_FAILURE() << "stop_example: no server (pid " << srv << ")";
        return;
    }
    kill(srv, SIGTERM);
    std::string tail = read_output(out_fd);
    close(out_fd);
    EXPECT_EQ(wait_exit(srv), 0);
    EXPECT_NE(tail.find("closed"), std::string::npos) << tail;
}

// Start an example server on an ephemeral port (with `extra` options); returns its pid and port.
pid_t start_example(const char *name, int *port, int *out_fd, const std::vector<std::string> &extra = {})
{
    std::string path = exe_dir() + "/example-" + name;
    if (access(path.c_str(), X_OK) != 0) {
        ADD_FAILURE() << path << " is missing: build with COIL_BUILD_TOOLS=ON";
        return -1;
    }
    std::vector<std::string> argv = { path, "--port", "0" };
    argv.insert(argv.end(), extra.begin(), extra.end());
    pid_t pid = start(argv, out_fd);
    std::string banner = read_output(*out_fd, "\n");
    size_t at = banner.find("port ");
    *port = at == std::string::npos ? -1 : atoi(banner.c_str() + at + 5);
    return pid;
}

// What a client got back on one connection, and how it ended.
struct Exchange {
    std::string reply;
    bool closed = false; // the server closed (EOF) within the bound
    double took = 0;     // seconds from the request to the close
};

// Send `req` on a new connection to 127.0.0.1:port, then read until the server closes it, for
// at most `within` seconds. `drip` sends the request a byte at a time, each after waiting up to
// `drip` seconds for the close (a slowloris client that never stops sending).
Exchange exchange(int port, const std::string &req, double within, double drip = 0)
{
    Exchange x;
    coil_stream *s = nullptr;
    if (coil_open_connection("127.0.0.1", port, nullptr, &s) != 0) {
        ADD_FAILURE() << "cannot connect to port " << port;
        return x;
    }
    coil_loop *loop = coil_get_running_loop();
    double t0 = coil_loop_time(loop);
    coil_task *reader = nullptr;
    coil_test::spawn(&reader, [s, &x]() -> void * {
        char buf[4096];
        size_t n;
        int err;
        while ((err = coil_stream_read(s, buf, sizeof buf, &n)) == 0 && n > 0)
            x.reply.append(buf, n);
        x.closed = err == 0 || err == -ECONNRESET;
        return nullptr;
    });
    if (drip > 0) {
        for (size_t i = 0; i < req.size() && !coil_task_done(reader) && coil_loop_time(loop) - t0 < within; i++) {
            coil_stream_write(s, &req[i], 1);
            coil_future *r = coil_task_future(reader);
            coil_wait(&r, 1, drip, COIL_FIRST_COMPLETED, nullptr, nullptr, nullptr, nullptr);
        }
    } else {
        coil_stream_write(s, req.data(), req.size());
    }
    double left = within - (coil_loop_time(loop) - t0);
    coil_wait_for(coil_task_future(reader), left > 0 ? left : 0, nullptr);
    x.took = coil_loop_time(loop) - t0;
    coil_task_free(reader);
    coil_stream_free(s);
    return x;
}

const char *PY_ECHO = R"(
import asyncio, sys
async def main(port):
    r, w = await asyncio.open_connection('127.0.0.1', port)
    for i in range(200):
        msg = b'line %d ' % i + b'x' * (i * 37) + b'\n'
        w.write(msg)
        await w.drain()
        if await r.readline() != msg:
            print('mismatch at', i); return
    big = bytes(range(256)) * 8192
    w.write(big)
    await w.drain()
    if await r.readexactly(len(big)) != big:
        print('big mismatch'); return
    w.write_eof()
    if await r.read() != b'':
        print('no eof'); return
    w.close()
    await w.wait_closed()
    print('python-asyncio-ok')
asyncio.run(main(int(sys.argv[1])))
)";

} // namespace

TEST(Examples, EchoServerServesAPythonAsyncioClientAndStopsOnSigterm)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        pid_t srv = start_example("echo_server", &port, &sfd);
        if (srv < 0)
            return nullptr;
        EXPECT_GT(port, 0);
        int cfd = -1;
        pid_t py = start({ "python3", "-c", PY_ECHO, std::to_string(port) }, &cfd);
        EXPECT_GT(py, 0);
        std::string out = read_output(cfd);
        close(cfd);
        EXPECT_EQ(wait_exit(py), 0);
        EXPECT_NE(out.find("python-asyncio-ok"), std::string::npos) << out;
        stop_example(srv, sfd);
        return nullptr;
    }, 30);
}

TEST(Examples, HttpServerAnswersWrkWithoutErrors)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        pid_t srv = start_example("http_server", &port, &sfd);
        if (srv < 0)
            return nullptr;
        int wfd = -1;
        pid_t wrk = start({ "wrk", "-t1", "-c8", "-d1s", "http://127.0.0.1:" + std::to_string(port) + "/" }, &wfd);
        EXPECT_GT(wrk, 0);
        std::string out = read_output(wfd);
        close(wfd);
        EXPECT_EQ(wait_exit(wrk), 0);
        size_t at = out.find(" requests in ");
        EXPECT_NE(at, std::string::npos) << out;
        size_t start_num = out.rfind('\n', at);
        long requests = atol(out.c_str() + (start_num == std::string::npos ? 0 : start_num + 1));
        EXPECT_GT(requests, 0) << out;
        EXPECT_EQ(out.find("Socket errors"), std::string::npos) << out;
        EXPECT_EQ(out.find("Non-2xx"), std::string::npos) << out;
        if (srv > 0)
            kill(srv, SIGINT);
        read_output(sfd);
        close(sfd);
        EXPECT_EQ(wait_exit(srv), 0);
        return nullptr;
    }, 30);
}

TEST(Examples, HttpServerAnswersPipelinedRequestsInOrderAndRejectsBadOnes)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        pid_t srv = start_example("http_server", &port, &sfd);
        if (srv < 0)
            return nullptr;
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &s), 0);
        std::string reqs = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n"
                           "POST /2 HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
                           "GET /3 HTTP/1.1\r\n\r\n"
                           "NOT A REQUEST\r\n\r\n";
        coil_stream_write(s, reqs.data(), reqs.size());
        char *all = nullptr;
        size_t len = 0;
        EXPECT_EQ(coil_stream_read_all(s, &all, &len), 0);
        std::string resp(all ? all : "", len);
        free(all);
        size_t a = resp.find("200 OK"), b = resp.find("405", a), c = resp.find("200 OK", b), d = resp.find("400 Bad", c);
        EXPECT_NE(a, std::string::npos) << resp;
        EXPECT_NE(b, std::string::npos) << resp;
        EXPECT_NE(c, std::string::npos) << resp;
        EXPECT_NE(d, std::string::npos) << resp;
        EXPECT_NE(resp.find("Content-Length: 13\r\n\r\nHello, World!"), std::string::npos);
        coil_stream_free(s);
        // Headers past the bound get 431 and the connection closes.
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &s), 0);
        std::string huge = "GET / HTTP/1.1\r\nX: " + std::string(20000, 'h') + "\r\n\r\n";
        coil_stream_write(s, huge.data(), huge.size());
        EXPECT_EQ(coil_stream_read_all(s, &all, &len), 0);
        EXPECT_NE(std::string(all, len).find("431"), std::string::npos);
        free(all);
        coil_stream_free(s);
        stop_example(srv, sfd);
        return nullptr;
    }, 30);
}

TEST(Examples, HttpServerRefusesRequestsWhoseFramingCouldBeReadTwoWays)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        pid_t srv = start_example("http_server", &port, &sfd);
        if (srv < 0)
            return nullptr;
        struct Case {
            const char *what, *req, *status;
        };
        const Case cases[] = {
            { "negative length", "POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\nGET /x HTTP/1.1\r\n\r\n", "400" },
            { "length past 2^64", "POST / HTTP/1.1\r\nContent-Length: 18446744073709551616\r\n\r\n", "400" },
            { "length 2^64 - 1 + 1 digit", "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n", "400" },
            { "signed length", "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello", "400" },
            { "length list", "POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello", "400" },
            { "two lengths", "POST / HTTP/1.1\r\nContent-Length: 0\r\nContent-Length: 27\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", "400" },
            { "space before colon", "POST / HTTP/1.1\r\nContent-Length : 27\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", "400" },
            { "folded line", "GET / HTTP/1.1\r\nX-A: a\r\n b\r\n\r\n", "400" },
            { "bare LF", "GET / HTTP/1.1\r\nX-A: a\nContent-Length: 5\r\n\r\nhello", "400" },
            { "bare LF in the target", "GET /a\nb HTTP/1.1\r\n\r\n", "400" },
            { "chunked body", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\n\r\n", "501" },
            { "other coding", "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", "501" },
            { "coding and length", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", "400" },
        };
        for (const Case &c : cases) {
            Exchange x = exchange(port, c.req, 5);
            EXPECT_EQ(x.reply.rfind(std::string("HTTP/1.1 ") + c.status, 0), 0u) << c.what << ": " << x.reply;
            EXPECT_EQ(x.reply.find("200 OK"), std::string::npos) << c.what << ": " << x.reply;
            EXPECT_NE(x.reply.find("Connection: close"), std::string::npos) << c.what << ": " << x.reply;
            EXPECT_TRUE(x.closed) << c.what << ": the server kept the connection";
        }
        // The largest length that fits is a length like any other: the body is read as such.
        Exchange ok = exchange(port, "POST / HTTP/1.1\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", 5);
        EXPECT_EQ(ok.reply.rfind("HTTP/1.1 405", 0), 0u) << ok.reply;
        EXPECT_TRUE(ok.closed);
        stop_example(srv, sfd);
        return nullptr;
    }, 60);
}

TEST(Examples, HttpServerClosesAConnectionWhoseRequestDoesNotArriveInTime)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        // A short request timeout and an idle timeout too long to be what closes them.
        pid_t srv = start_example("http_server", &port, &sfd, { "--request-timeout", "0.3", "--idle-timeout", "60" });
        if (srv < 0)
            return nullptr;
        // Half a request line, then silence.
        Exchange x = exchange(port, "GET / HTTP/1.1\r\nHost:", 10);
        EXPECT_TRUE(x.closed) << "open after " << x.took << " s";
        EXPECT_LT(x.took, 10);
        EXPECT_EQ(x.reply.find("200 OK"), std::string::npos);
        // A client that keeps sending a byte at a time, never done with its headers.
        std::string endless = "GET / HTTP/1.1\r\n";
        while (endless.size() < 4000)
            endless += "X-Drip: " + std::to_string(endless.size()) + "\r\n";
        Exchange d = exchange(port, endless, 10, 0.01);
        EXPECT_TRUE(d.closed) << "still open after " << d.took << " s of dripping";
        EXPECT_LT(d.took, 10);
        // A body that stops short of its Content-Length.
        Exchange b = exchange(port, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\nonly this", 10);
        EXPECT_TRUE(b.closed) << "open after " << b.took << " s";
        // The timeouts end those connections, not the server.
        Exchange ok = exchange(port, "GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 10);
        EXPECT_NE(ok.reply.find("Hello, World!"), std::string::npos) << ok.reply;
        stop_example(srv, sfd);
        return nullptr;
    }, 60);
}

TEST(Examples, HttpServerClosesAnIdleKeepAliveConnectionAndStopsWhileOneIsOpen)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        pid_t srv = start_example("http_server", &port, &sfd, { "--request-timeout", "60", "--idle-timeout", "0.3" });
        if (srv < 0)
            return nullptr;
        // One request answered on a keep-alive connection, then nothing more from the client.
        Exchange x = exchange(port, "GET / HTTP/1.1\r\n\r\n", 10);
        EXPECT_NE(x.reply.find("Hello, World!"), std::string::npos) << x.reply;
        EXPECT_TRUE(x.closed) << "idle connection open after " << x.took << " s";
        EXPECT_LT(x.took, 10);
        stop_example(srv, sfd);
        // A server with an idle client connected still stops on SIGTERM, at once: it does not
        // wait for the idle timeout to end that connection.
        srv = start_example("http_server", &port, &sfd, { "--idle-timeout", "60" });
        if (srv < 0)
            return nullptr;
        coil_stream *idle = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &idle), 0);
        std::string req = "GET / HTTP/1.1\r\n\r\n";
        coil_stream_write(idle, req.data(), req.size());
        char buf[128];
        size_t n = 0;
        EXPECT_EQ(coil_stream_readuntil(idle, "World!", 6, buf, sizeof buf, &n), 0);
        double t0 = coil_loop_time(coil_get_running_loop());
        stop_example(srv, sfd);
        EXPECT_LT(coil_loop_time(coil_get_running_loop()) - t0, 10) << "SIGTERM waited for the idle client";
        coil_stream_free(idle);
        return nullptr;
    }, 60);
}

TEST(Examples, BadShardCountsAreRejectedClearly)
{
    int fd = -1;
    std::string path = exe_dir() + "/example-echo_server";
    ASSERT_EQ(access(path.c_str(), X_OK), 0) << path;
    pid_t pid = start({ path, "--shards", "0", "--port", "0" }, &fd);
    int st = 0;
    waitpid(pid, &st, 0);
    close(fd);
    EXPECT_TRUE(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 2);
}

TEST(Examples, ShardedEchoServerServesOnOnePortAndStopsOnSigterm)
{
    coil_test::run([]() -> void * {
        std::string path = exe_dir() + "/example-echo_server";
        int sfd = -1;
        pid_t srv = start({ path, "--port", "0", "--shards", "2" }, &sfd);
        std::string banner = read_output(sfd, "\n");
        size_t at = banner.find("port ");
        int port = at == std::string::npos ? -1 : atoi(banner.c_str() + at + 5);
        EXPECT_GT(port, 0) << banner;
        EXPECT_NE(banner.find("2 shards"), std::string::npos) << banner;
        for (int i = 0; i < 16 && port > 0; i++)
            EXPECT_EQ(roundtrip("127.0.0.1", port, "s" + std::to_string(i)), "s" + std::to_string(i));
        stop_example(srv, sfd);
        return nullptr;
    }, 30);
}

TEST(Examples, TcpClientTalksToTheEchoServer)
{
    coil_test::run([]() -> void * {
        int port = -1, sfd = -1;
        pid_t srv = start_example("echo_server", &port, &sfd);
        if (srv < 0)
            return nullptr;
        int cfd = -1;
        pid_t cl = start({ exe_dir() + "/example-tcp_client", "--port", std::to_string(port), "--count", "2", "alpha",
                           "beta" }, &cfd);
        std::string out = read_output(cfd);
        close(cfd);
        EXPECT_EQ(wait_exit(cl), 0);
        EXPECT_NE(out.find("alpha\nbeta\nalpha\nbeta\n"), std::string::npos) << out;
        stop_example(srv, sfd);
        return nullptr;
    }, 30);
}
