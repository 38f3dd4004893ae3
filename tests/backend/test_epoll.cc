// The epoll backend's own rules, on loops that ask for it by name: what it does to the fds it is
// handed, fd numbers reused behind its back, and a loop that never blocks still hearing of I/O.
// (The whole suite also runs on epoll: tools/run.sh test.)
#include <fcntl.h>
#include <gtest/gtest.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <string>

#include "coil/coil.h"
#include "coil_test.h"

namespace {

coil_loop_opts epoll_opts()
{
    coil_loop_opts o{};
    o.backend = COIL_BACKEND_EPOLL;
    return o;
}

// Run body as the main task of a loop that asked for epoll by name.
template <typename Body> int run_on_epoll(Body body, double timeout_s)
{
    coil_loop_opts o = epoll_opts();
    return coil_test::run(body, timeout_s, nullptr, &o);
}

bool nonblocking(int fd) { return (fcntl(fd, F_GETFL) & O_NONBLOCK) != 0; }

} // namespace

TEST(Epoll, ALoopAskedForEpollRunsOnIt)
{
    coil_loop_opts o = epoll_opts();
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, &o), 0);
    EXPECT_STREQ(coil_loop_backend(loop), "epoll");
    EXPECT_EQ(coil_loop_close(loop), 0);
}

// A blocking pipe handed to coil_read / coil_write is made non-blocking while the driver waits on
// it and handed back as it came: a caller that uses the fd blocking afterwards must not get EAGAIN.
TEST(Epoll, ABlockingFdIsHandedBackBlocking)
{
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    ASSERT_FALSE(nonblocking(p[0]));
    ASSERT_EQ(run_on_epoll(
                  [&]() -> void * {
                      coil_task *reader = nullptr;
                      std::string got;
                      coil_test::spawn(&reader, [&]() -> void * {
                          char buf[16];
                          size_t n = 0;
                          EXPECT_EQ(coil_read(p[0], buf, sizeof buf, &n), 0); // waits: the pipe is empty
                          got.assign(buf, n);
                          return nullptr;
                      });
                      coil_sleep(0); // the reader is waiting now
                      EXPECT_EQ(coil_write_all(p[1], "ping", 4), 0);
                      EXPECT_EQ(coil_task_await(reader, nullptr), 0);
                      coil_task_free(reader);
                      EXPECT_EQ(got, "ping");
                      return nullptr;
                  },
                  10.0),
              0);
    EXPECT_FALSE(nonblocking(p[0]));
    EXPECT_FALSE(nonblocking(p[1]));
    close(p[0]);
    close(p[1]);
}

// The driver remembers an fd it registered while operations wait on it. Closed with close(2)
// behind its back and the number reused for another file, the next wait must still hear the new
// file: a registration left from the old one must not stand in for it.
TEST(Epoll, AnFdNumberReusedBehindTheDriversBackIsWaitedOnAnew)
{
    ASSERT_EQ(run_on_epoll(
                  [&]() -> void * {
                      for (int round = 0; round < 3; round++) {
                          int sv[2];
                          EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
                          coil_task *reader = nullptr;
                          size_t n = 0;
                          coil_test::spawn(&reader, [&]() -> void * {
                              char buf[16];
                              EXPECT_EQ(coil_sock_recv(sv[0], buf, sizeof buf, 0, &n), 0);
                              return nullptr;
                          });
                          coil_sleep(0); // waiting on sv[0]
                          EXPECT_EQ(send(sv[1], "x", 1, 0), 1);
                          EXPECT_EQ(coil_task_await(reader, nullptr), 0);
                          coil_task_free(reader);
                          EXPECT_EQ(n, 1u) << "round " << round;
                          // Behind the driver's back: the next socketpair takes the same numbers.
                          close(sv[0]);
                          close(sv[1]);
                      }
                      return nullptr;
                  },
                  10.0),
              0);
}

// A loop whose tasks only ever yield never blocks in epoll_wait; it must still look now and then
// (the "a busy loop hears of I/O"), or a reader starves until the spinning stops.
TEST(Epoll, ALoopThatNeverBlocksStillHearsOfIo)
{
    ASSERT_EQ(run_on_epoll(
                  [&]() -> void * {
                      int sv[2];
                      EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
                      std::atomic<bool> heard{ false };
                      coil_task *reader = nullptr;
                      coil_test::spawn(&reader, [&]() -> void * {
                          char buf[16];
                          size_t n = 0;
                          EXPECT_EQ(coil_sock_recv(sv[0], buf, sizeof buf, 0, &n), 0);
                          heard = true;
                          return nullptr;
                      });
                      coil_sleep(0);
                      EXPECT_EQ(send(sv[1], "x", 1, 0), 1);
                      // Spin without ever letting the loop sleep; bounded, so a broken driver fails
                      // the check below instead of hanging.
                      long yields = 0;
                      while (!heard && yields < 20000000)
                          coil_sleep(0), yields++;
                      EXPECT_TRUE(heard.load()) << "the reader was not woken while the loop stayed busy";
                      EXPECT_EQ(coil_task_await(reader, nullptr), 0);
                      coil_task_free(reader);
                      close(sv[0]);
                      close(sv[1]);
                      return nullptr;
                  },
                  30.0),
              0);
}

// Regular files cannot be waited on with epoll: their reads and writes go to the thread pool and
// keep their offsets.
TEST(Epoll, RegularFilesGoThroughThePoolWithTheirOffsets)
{
    char path[] = "/tmp/coil-epoll-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    unlink(path);
    ASSERT_EQ(run_on_epoll(
                  [&]() -> void * {
                      size_t n = 0;
                      EXPECT_EQ(coil_pwrite(fd, "hello world", 11, 0, &n), 0);
                      EXPECT_EQ(n, 11u);
                      char buf[8] = {};
                      EXPECT_EQ(coil_pread(fd, buf, 5, 6, &n), 0);
                      EXPECT_EQ(std::string(buf, n), "world");
                      return nullptr;
                  },
                  10.0),
              0);
    close(fd);
}

// A stream's write goes out at once when the socket has room, but never ahead of a send already
// waiting on the same fd: the bytes reach the peer in the order the sends were made.
TEST(Epoll, AStreamWriteGoesOutBehindASendAlreadyWaitingOnItsSocket)
{
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    static char sink[1 << 20];
    size_t filled = 0; // fill the socket so the next send has to wait
    for (ssize_t k; (k = send(sv[0], sink, sizeof sink, MSG_DONTWAIT)) > 0;)
        filled += (size_t)k;
    ASSERT_EQ(run_on_epoll(
                  [&]() -> void * {
                      coil_task *sender = nullptr;
                      coil_test::spawn(&sender, [&]() -> void * {
                          size_t n = 0;
                          EXPECT_EQ(coil_sock_send(sv[0], "A", 1, MSG_NOSIGNAL, &n), 0);
                          EXPECT_EQ(n, 1u);
                          return nullptr;
                      });
                      coil_sleep(0); // the sender's send waits for room
                      // Make room without letting the loop poll: the waiting send has not heard yet.
                      std::string got;
                      ssize_t k = recv(sv[1], sink, sizeof sink, MSG_DONTWAIT);
                      EXPECT_GT(k, 0);
                      got.append(sink, k > 0 ? (size_t)k : 0);
                      coil_stream *s = nullptr;
                      EXPECT_EQ(coil_stream_from_fd(sv[0], nullptr, &s), 0);
                      EXPECT_EQ(coil_stream_write(s, "B", 1), 0);
                      while (got.size() < filled + 2) {
                          size_t n = 0;
                          if (coil_sock_recv(sv[1], sink, sizeof sink, 0, &n) != 0 || n == 0)
                              break;
                          got.append(sink, n);
                      }
                      EXPECT_EQ(got.size(), filled + 2);
                      EXPECT_EQ(got.substr(filled), "AB") << "the stream's byte overtook the waiting send";
                      EXPECT_EQ(coil_task_await(sender, nullptr), 0);
                      coil_task_free(sender);
                      coil_stream_free(s);
                      close(sv[1]);
                      return nullptr;
                  },
                  30.0),
              0);
}
