// The UDP endpoint (coil_udp_*): datagrams both ways, connected and unconnected, cancellation.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "coil_test.h"

TEST(Udp, DatagramsTravelBetweenTwoEndpoints)
{
    coil_test::run([]() -> void * {
        coil_udp_opts ao{};
        ao.local_host = "127.0.0.1";
        coil_udp *a = nullptr, *b = nullptr;
        EXPECT_EQ(coil_udp_open(&ao, &a), 0);
        coil_sockaddr an;
        EXPECT_EQ(coil_udp_sockname(a, &an), 0);
        int aport = coil_sockaddr_port((sockaddr *)&an.ss);
        EXPECT_GT(aport, 0);
        // b is connected to a: sendto without an address.
        coil_udp_opts bo{};
        bo.remote_host = "127.0.0.1";
        bo.remote_port = aport;
        EXPECT_EQ(coil_udp_open(&bo, &b), 0);
        EXPECT_EQ(coil_udp_sendto(b, "dgram-1", 7, nullptr, 0), 0);
        char buf[64];
        size_t n = 0;
        coil_sockaddr from;
        EXPECT_EQ(coil_udp_recvfrom(a, buf, sizeof buf, &n, &from), 0);
        EXPECT_EQ(std::string(buf, n), "dgram-1");
        // Reply to whoever sent it.
        EXPECT_EQ(coil_udp_sendto(a, "reply", 5, (sockaddr *)&from.ss, from.len), 0);
        EXPECT_EQ(coil_udp_recvfrom(b, buf, sizeof buf, &n, nullptr), 0);
        EXPECT_EQ(std::string(buf, n), "reply");
        // Message boundaries hold.
        coil_udp_sendto(b, "one", 3, nullptr, 0);
        coil_udp_sendto(b, "two", 3, nullptr, 0);
        EXPECT_EQ(coil_udp_recvfrom(a, buf, sizeof buf, &n, nullptr), 0);
        EXPECT_EQ(std::string(buf, n), "one");
        EXPECT_EQ(coil_udp_recvfrom(a, buf, sizeof buf, &n, nullptr), 0);
        EXPECT_EQ(std::string(buf, n), "two");
        coil_udp_close(a);
        coil_udp_close(b);
        return nullptr;
    });
}

TEST(Udp, RecvfromIsCancellable)
{
    coil_test::run([]() -> void * {
        coil_udp_opts o{};
        o.local_host = "127.0.0.1";
        coil_udp *u = nullptr;
        EXPECT_EQ(coil_udp_open(&o, &u), 0);
        static bool started;
        started = false;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [u]() -> void * {
            char buf[16];
            size_t n;
            started = true;
            return (void *)(intptr_t)coil_udp_recvfrom(u, buf, sizeof buf, &n, nullptr);
        });
        for (int i = 0; i < 1000 && !started; i++)
            coil_sleep(0);
        coil_task_cancel(t, nullptr);
        void *r = nullptr;
        coil_task_await(t, &r);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        coil_task_free(t);
        coil_udp_close(u);
        return nullptr;
    });
}

TEST(Udp, CloseWakesAWaitingRecvfromWithEclosedAndFreesOnlyAfterIt)
{
    // As a stream's close: the task suspended in recvfrom hears COIL_ECLOSED instead of hanging,
    // and the endpoint outlives the operation the kernel still holds.
    coil_test::run([]() -> void * {
        coil_udp_opts o{};
        o.local_host = "127.0.0.1";
        for (int round = 0; round < 20; round++) {
            coil_udp *u = nullptr;
            EXPECT_EQ(coil_udp_open(&o, &u), 0);
            static int started;
            started = 0;
            coil_task *readers[2] = {};
            for (auto &t : readers)
                coil_test::spawn(&t, [u]() -> void * {
                    char buf[16];
                    size_t n;
                    started++;
                    return (void *)(intptr_t)coil_udp_recvfrom(u, buf, sizeof buf, &n, nullptr);
                });
            for (int i = 0; i < 1000 && started < 2; i++)
                coil_sleep(0);
            EXPECT_EQ(started, 2);
            coil_udp_close(u);
            for (auto t : readers) {
                void *r = nullptr;
                coil_future *f = coil_task_future(t);
                int rc = coil_wait_for(f, 5.0, &r);
                EXPECT_EQ(rc, 0) << coil_strerror(rc) << ": the reader was not woken by close";
                EXPECT_EQ((intptr_t)r, COIL_ECLOSED);
                coil_task_free(t);
            }
        }
        return nullptr;
    });
}

TEST(Udp, ReaderCancelledWhileTheEndpointClosesSeesEcanceled)
{
    coil_test::run([]() -> void * {
        coil_udp_opts o{};
        o.local_host = "127.0.0.1";
        coil_udp *u = nullptr;
        EXPECT_EQ(coil_udp_open(&o, &u), 0);
        static bool started;
        started = false;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [u]() -> void * {
            char buf[16];
            size_t n;
            started = true;
            return (void *)(intptr_t)coil_udp_recvfrom(u, buf, sizeof buf, &n, nullptr);
        });
        for (int i = 0; i < 1000 && !started; i++)
            coil_sleep(0);
        coil_task_cancel(t, nullptr);
        coil_udp_close(u);
        void *r = nullptr;
        coil_future *f = coil_task_future(t);
        EXPECT_EQ(coil_wait_for(f, 5.0, &r), 0);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Udp, OpenNeedsAnAddress)
{
    coil_test::run([]() -> void * {
        coil_udp_opts o{};
        coil_udp *u = nullptr;
        EXPECT_EQ(coil_udp_open(&o, &u), -EINVAL);
        EXPECT_EQ(coil_udp_open(nullptr, &u), -EINVAL);
        o.local_port = 70000;
        EXPECT_EQ(coil_udp_open(&o, &u), -EINVAL);
        return nullptr;
    });
}

TEST(Udp, WorksOverIPv6WhenAvailable)
{
    coil_test::run([]() -> void * {
        coil_udp_opts o{};
        o.local_host = "::1";
        coil_udp *a = nullptr;
        int err = coil_udp_open(&o, &a);
        if (err == -EADDRNOTAVAIL || err == -EAFNOSUPPORT)
            return nullptr; // no IPv6 loopback here; the IPv4 test covers the same code
        EXPECT_EQ(err, 0);
        coil_sockaddr an;
        coil_udp_sockname(a, &an);
        EXPECT_EQ(coil_udp_sendto(a, "self", 4, (sockaddr *)&an.ss, an.len), 0);
        char buf[8];
        size_t n = 0;
        EXPECT_EQ(coil_udp_recvfrom(a, buf, sizeof buf, &n, nullptr), 0);
        EXPECT_EQ(std::string(buf, n), "self");
        coil_udp_close(a);
        return nullptr;
    });
}
