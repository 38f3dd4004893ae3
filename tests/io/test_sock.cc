// Socket operations on the ring (coil/net.h): each operation, its errors, its cancellation.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "coil_test.h"

// core/net_internal.h (not includable from C++): hold the resolver's queue.
extern "C" void coil__resolve_hold(bool hold);

namespace {

bool wait_flag(const bool *flag)
{
    for (int i = 0; i < 10000 && !*flag; i++)
        coil_sleep(0);
    return *flag;
}

// A listening socket on the loopback of `family`, made with coil_socket.
int listen_loopback(int family, coil_sockaddr *addr)
{
    int fd = -1;
    EXPECT_EQ(coil_socket(family, SOCK_STREAM, 0, &fd), 0);
    memset(addr, 0, sizeof *addr);
    if (family == AF_INET) {
        auto *a = (sockaddr_in *)&addr->ss;
        a->sin_family = AF_INET;
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
        auto *a = (sockaddr_in6 *)&addr->ss;
        a->sin6_family = AF_INET6;
        a->sin6_addr = in6addr_loopback;
    }
    addr->len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (bind(fd, (sockaddr *)&addr->ss, addr->len) != 0 || listen(fd, 16) != 0) {
        close(fd);
        return -1;
    }
    getsockname(fd, (sockaddr *)&addr->ss, &addr->len);
    return fd;
}

// Connect + accept + send + recv both ways over `family`'s loopback.
void roundtrip(int family)
{
    coil_sockaddr addr;
    int l = listen_loopback(family, &addr);
    if (l < 0) {
        ADD_FAILURE() << "no loopback for family " << family;
        return;
    }
    coil_task *acc = nullptr;
    coil_test::spawn(&acc, [l]() -> void * {
        coil_sockaddr peer;
        peer.len = sizeof peer.ss;
        int fd = -1;
        int err = coil_sock_accept(l, (sockaddr *)&peer.ss, &peer.len, 0, &fd);
        EXPECT_EQ(err, 0);
        EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        EXPECT_GT(coil_sockaddr_port((sockaddr *)&peer.ss), 0);
        char buf[16];
        size_t n = 0;
        EXPECT_EQ(coil_sock_recv(fd, buf, sizeof buf, 0, &n), 0);
        EXPECT_EQ(coil_sock_send(fd, buf, n, 0, &n), 0);
        EXPECT_EQ(coil_sock_shutdown(fd, SHUT_WR), 0);
        EXPECT_EQ(coil_sock_close(fd), 0);
        return nullptr;
    });
    int c = -1;
    EXPECT_EQ(coil_socket(family, SOCK_STREAM, 0, &c), 0);
    EXPECT_TRUE(fcntl(c, F_GETFD) & FD_CLOEXEC);
    EXPECT_EQ(coil_sock_connect(c, (sockaddr *)&addr.ss, addr.len), 0);
    EXPECT_EQ(coil_sock_sendall(c, "ping", 4, 0), 0);
    char buf[16];
    size_t n = 0, got = 0;
    while (coil_sock_recv(c, buf + got, sizeof buf - got, 0, &n) == 0 && n > 0)
        got += n;
    EXPECT_EQ(std::string(buf, got), "ping");
    coil_task_await(acc, nullptr);
    coil_task_free(acc);
    close(c);
    close(l);
}

} // namespace

TEST(Sock, TcpOverIPv4ConnectsAcceptsSendsAndReceives)
{
    coil_test::run([]() -> void * {
        roundtrip(AF_INET);
        return nullptr;
    });
}

TEST(Sock, TcpOverIPv6ConnectsAcceptsSendsAndReceives)
{
    if (!coil_test::have_ipv6_loopback())
        GTEST_SKIP() << "no IPv6 loopback (::1) on this machine";
    coil_test::run([]() -> void * {
        roundtrip(AF_INET6);
        return nullptr;
    });
}

TEST(Sock, UnixSocketsCarrySendmsgWithAnFd)
{
    coil_test::run([]() -> void * {
        int sv[2];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        int pipefd[2];
        EXPECT_EQ(pipe2(pipefd, O_CLOEXEC), 0);
        // Two iovecs and an SCM_RIGHTS message from a stack the task keeps across the await.
        char part1[] = "hello ", part2[] = "world";
        iovec iov[2] = { { part1, 6 }, { part2, 5 } };
        alignas(cmsghdr) char ctrl[CMSG_SPACE(sizeof(int))] = {};
        msghdr m{};
        m.msg_iov = iov;
        m.msg_iovlen = 2;
        m.msg_control = ctrl;
        m.msg_controllen = sizeof ctrl;
        cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &pipefd[1], sizeof(int));
        size_t n = 0;
        EXPECT_EQ(coil_sock_sendmsg(sv[0], &m, 0, &n), 0);
        EXPECT_EQ(n, 11u);
        char buf[32];
        iovec riov = { buf, sizeof buf };
        alignas(cmsghdr) char rctrl[CMSG_SPACE(sizeof(int))] = {};
        msghdr r{};
        r.msg_iov = &riov;
        r.msg_iovlen = 1;
        r.msg_control = rctrl;
        r.msg_controllen = sizeof rctrl;
        EXPECT_EQ(coil_sock_recvmsg(sv[1], &r, MSG_CMSG_CLOEXEC, &n), 0);
        EXPECT_EQ(std::string(buf, n), "hello world");
        cmsghdr *rc = CMSG_FIRSTHDR(&r);
        EXPECT_NE(rc, nullptr);
        if (rc) {
            int passed;
            memcpy(&passed, CMSG_DATA(rc), sizeof passed);
            EXPECT_EQ(write(passed, "x", 1), 1);
            char x;
            EXPECT_EQ(read(pipefd[0], &x, 1), 1);
            close(passed);
        }
        close(pipefd[0]);
        close(pipefd[1]);
        close(sv[0]);
        close(sv[1]);
        return nullptr;
    });
}

TEST(Sock, CompactTasksSendAndReceiveFromTheirStacks)
{
    coil_test::run([]() -> void * {
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        coil_task_opts to{};
        to.stack_mode = COIL_STACK_COMPACT;
        coil_task *rx = nullptr, *other = nullptr, *tx = nullptr;
        // Steps the tasks wait on (static: a compact task must not point into another's stack).
        static bool in_recv, scribbled, in_recvmsg;
        in_recv = scribbled = in_recvmsg = false;
        coil_test::spawn(&rx, [&sv]() -> void * {
            char buf[64];
            size_t n = 0;
            in_recv = true; // set right before the call, which suspends in the same step
            if (coil_sock_recv(sv[1], buf, sizeof buf, 0, &n) != 0)
                return nullptr;
            struct msghdr m{};
            char buf2[16];
            iovec iov = { buf2, sizeof buf2 };
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            size_t n2 = 0;
            in_recvmsg = true;
            if (coil_sock_recvmsg(sv[1], &m, 0, &n2) != 0)
                return nullptr;
            return new std::string(std::string(buf, n) + "|" + std::string(buf2, n2));
        }, &to);
        coil_test::spawn(&other, []() -> void * {
            // Scribble over the shared stack while rx is suspended, and stay suspended a while.
            volatile char scribble[8192];
            for (auto &c : scribble)
                c = 0x7f;
            scribbled = true;
            wait_flag(&in_recvmsg);
            return nullptr;
        }, &to);
        coil_test::spawn(&tx, [&sv]() -> void * {
            char msg[] = "from a compact stack";
            EXPECT_TRUE(wait_flag(&in_recv));
            EXPECT_TRUE(wait_flag(&scribbled));
            coil_sock_sendall(sv[0], msg, strlen(msg), 0);
            EXPECT_TRUE(wait_flag(&in_recvmsg));
            char m2[] = "msg";
            iovec iov = { m2, 3 };
            msghdr m{};
            m.msg_iov = &iov;
            m.msg_iovlen = 1;
            coil_sock_sendmsg(sv[0], &m, 0, nullptr);
            return nullptr;
        }, &to);
        void *res = nullptr;
        coil_task_await(rx, &res);
        auto *s = static_cast<std::string *>(res);
        EXPECT_NE(s, nullptr);
        if (s) {
            EXPECT_EQ(*s, "from a compact stack|msg");
        }
        delete s;
        coil_task_await(other, nullptr);
        coil_task_await(tx, nullptr);
        coil_task_free(rx);
        coil_task_free(other);
        coil_task_free(tx);
        close(sv[0]);
        close(sv[1]);
        return nullptr;
    });
}

TEST(Sock, ErrorsAreNegatedErrnos)
{
    coil_test::run([]() -> void * {
        coil_sockaddr addr;
        int l = listen_loopback(AF_INET, &addr);
        close(l);
        int c = -1;
        coil_socket(AF_INET, SOCK_STREAM, 0, &c);
        EXPECT_EQ(coil_sock_connect(c, (sockaddr *)&addr.ss, addr.len), -ECONNREFUSED);
        EXPECT_EQ(coil_sock_send(c, "x", 1, 0, nullptr), -EPIPE); // MSG_NOSIGNAL: no SIGPIPE
        close(c);
        size_t n;
        char b;
        EXPECT_EQ(coil_sock_recv(-1, &b, 1, 0, &n), -EBADF);
        EXPECT_EQ(coil_sock_shutdown(0, 42), -EINVAL);
        int fd;
        EXPECT_EQ(coil_socket(12345, SOCK_STREAM, 0, &fd), -EAFNOSUPPORT);
        EXPECT_EQ(coil_sock_accept(0, nullptr, nullptr, 0, nullptr), -EINVAL);
        return nullptr;
    });
    char b;
    size_t n;
    EXPECT_EQ(coil_sock_recv(0, &b, 1, 0, &n), COIL_ENOTASK);
}

TEST(Sock, AcceptRecvSendAndConnectAreCancellable)
{
    coil_test::run([]() -> void * {
        coil_sockaddr addr;
        int l = listen_loopback(AF_INET, &addr);
        int sv[2];
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
        int small = 4096;
        setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        static bool started;
        static std::string big(1 << 22, 'b');
        // Each op blocks forever unless cancelled.
        std::function<int()> ops[] = {
            [l] {
                int fd;
                return coil_sock_accept(l, nullptr, nullptr, 0, &fd);
            },
            [&sv] {
                char b;
                size_t n;
                return coil_sock_recv(sv[1], &b, 1, 0, &n);
            },
            [&sv] { return coil_sock_sendall(sv[0], big.data(), big.size(), 0); },
        };
        for (auto &op : ops) {
            started = false;
            coil_task *t = nullptr;
            coil_test::spawn(&t, [&op]() -> void * {
                started = true;
                return (void *)(intptr_t)op();
            });
            EXPECT_TRUE(wait_flag(&started));
            coil_task_cancel(t, nullptr);
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(t, &r), 0);
            EXPECT_EQ((intptr_t)r, -ECANCELED);
            coil_task_free(t);
        }
        close(sv[0]);
        close(sv[1]);
        close(l);
        return nullptr;
    });
}

TEST(Sock, ConnectIsCancellableWhileTheHandshakeHangs)
{
    coil_test::run([]() -> void * {
        coil_sockaddr addr;
        int l = listen_loopback(AF_INET, &addr);
        listen(l, 0);
        int fillers[4];
        for (int &f : fillers) {
            f = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            connect(f, (sockaddr *)&addr.ss, addr.len);
        }
        static bool started;
        static int c;
        started = false;
        c = -1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&addr]() -> void * {
            coil_socket(AF_INET, SOCK_STREAM, 0, &c);
            started = true;
            int r = coil_sock_connect(c, (sockaddr *)&addr.ss, addr.len);
            close(c);
            return (void *)(intptr_t)r;
        });
        EXPECT_TRUE(wait_flag(&started));
        // Wait until the kernel has the connect and its handshake is stuck (the listener's queue
        // is full, so the SYN goes unanswered): a cancel must still end it.
        tcp_info ti{};
        for (int i = 0; i < 10000; i++) {
            socklen_t tl = sizeof ti;
            if (getsockopt(c, IPPROTO_TCP, TCP_INFO, &ti, &tl) == 0 && ti.tcpi_state == TCP_SYN_SENT)
                break;
            coil_sleep(0);
        }
        EXPECT_EQ(ti.tcpi_state, TCP_SYN_SENT);
        coil_task_cancel(t, nullptr);
        void *r = nullptr;
        coil_task_await(t, &r);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        coil_task_free(t);
        for (int f : fillers)
            close(f);
        close(l);
        return nullptr;
    });
}

namespace {

// Threads: from /proc/self/status.
int threads_now()
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    int n = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "Threads: %d", &n) == 1)
            break;
    fclose(f);
    return n;
}

} // namespace

TEST(Sock, ManyConcurrentNameLookupsAllSucceedOnABoundedNumberOfThreads)
{
    // A lookup by name must not start a thread of its own: 2,000 at once stay within the
    // resolver's bound (COIL_RESOLVE_THREADS), and cancelling a queued one still works. The pool
    // is held while the lookups queue up and the last tenth are cancelled, so those are known to
    // be queued, not running, when their cancel lands.
    enum { N = 2000 };
    int base = threads_now();
    ASSERT_GT(base, 0);
    std::atomic<bool> done{false};
    std::atomic<int> peak{base};
    std::thread watcher([&] {
        while (!done.load()) {
            int n = threads_now();
            int p = peak.load();
            while (n > p && !peak.compare_exchange_weak(p, n)) {
            }
            std::this_thread::yield();
        }
    });
    static int ok, cancelled, other;
    ok = cancelled = other = 0;
    coil__resolve_hold(true);
    coil_test::run(
        []() -> void * {
            std::vector<coil_task *> ts(N);
            for (int i = 0; i < N; i++)
                coil_test::spawn(&ts[i], []() -> void * {
                    addrinfo *r = nullptr;
                    int e = coil_getaddrinfo("localhost", "http", nullptr, &r);
                    if (r)
                        freeaddrinfo(r);
                    return (void *)(intptr_t)e;
                });
            coil_sleep(0); // every task takes its first step: its lookup is queued
            for (int i = N - N / 10; i < N; i++)
                coil_task_cancel(ts[i], nullptr);
            coil_sleep(0); // the cancelled ones take their -ECANCELED and leave the queue
            coil__resolve_hold(false);
            for (int i = 0; i < N; i++) {
                void *r = nullptr;
                coil_task_await(ts[i], &r);
                intptr_t e = (intptr_t)r;
                (e == 0 ? ok : e == -ECANCELED ? cancelled : other)++;
                coil_task_free(ts[i]);
            }
            return nullptr;
        },
        60.0);
    coil__resolve_hold(false);
    done = true;
    watcher.join();
    EXPECT_EQ(other, 0);
    EXPECT_EQ(ok, N - N / 10);
    EXPECT_EQ(cancelled, N / 10) << "queued lookups can be cancelled";
    // The kernel may add an io_uring worker or two to the count; a thread per lookup would not fit.
    EXPECT_LE(peak.load() - base, COIL_RESOLVE_THREADS + 1 + 4) << "peak " << peak.load() << ", base " << base;
}

TEST(Sock, GetaddrinfoResolvesNumericAndNamedHosts)
{
    coil_test::run([]() -> void * {
        addrinfo *res = nullptr;
        EXPECT_EQ(coil_getaddrinfo("127.0.0.1", "80", nullptr, &res), 0);
        EXPECT_NE(res, nullptr);
        if (res) {
            EXPECT_EQ(coil_sockaddr_port(res->ai_addr), 80);
            freeaddrinfo(res);
        }
        res = nullptr;
        EXPECT_EQ(coil_getaddrinfo("localhost", "http", nullptr, &res), 0);
        EXPECT_NE(res, nullptr);
        if (res)
            freeaddrinfo(res);
        EXPECT_EQ(coil_getaddrinfo(nullptr, nullptr, nullptr, &res), -EINVAL);
        // A lookup cancelled while the helper thread works is dropped without leaking.
        coil_task *t = nullptr;
        coil_test::spawn(&t, []() -> void * {
            addrinfo *r = nullptr;
            int e = coil_getaddrinfo("localhost", "ssh", nullptr, &r);
            if (r)
                freeaddrinfo(r);
            return (void *)(intptr_t)e;
        });
        coil_sleep(0);
        coil_task_cancel(t, nullptr);
        void *r = nullptr;
        coil_task_await(t, &r);
        EXPECT_TRUE((intptr_t)r == -ECANCELED || (intptr_t)r == 0);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Sock, SockaddrFormatNamesEachFamily)
{
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(8080);
    inet_pton(AF_INET, "10.1.2.3", &a.sin_addr);
    char buf[128];
    EXPECT_STREQ(coil_sockaddr_format((sockaddr *)&a, sizeof a, buf, sizeof buf), "10.1.2.3:8080");
    sockaddr_in6 b{};
    b.sin6_family = AF_INET6;
    b.sin6_port = htons(443);
    b.sin6_addr = in6addr_loopback;
    EXPECT_STREQ(coil_sockaddr_format((sockaddr *)&b, sizeof b, buf, sizeof buf), "[::1]:443");
    sockaddr_un u{};
    u.sun_family = AF_UNIX;
    strcpy(u.sun_path, "/tmp/x.sock");
    EXPECT_STREQ(coil_sockaddr_format((sockaddr *)&u, sizeof u, buf, sizeof buf), "/tmp/x.sock");
    EXPECT_EQ(coil_sockaddr_port((sockaddr *)&u), -1);
}
