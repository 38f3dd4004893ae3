// Awaitable I/O on plain file descriptors (coil/io.h): pipes and a temporary file.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "coil_test.h"

namespace {

struct Pipe {
    int r = -1, w = -1;
    Pipe()
    {
        int fds[2];
        if (pipe2(fds, O_CLOEXEC) == 0) {
            r = fds[0];
            w = fds[1];
        }
    }
    ~Pipe()
    {
        if (r >= 0)
            close(r);
        if (w >= 0)
            close(w);
    }
};

struct TempFile {
    int fd = -1;
    TempFile()
    {
        char path[] = "/tmp/coil-fdio-XXXXXX";
        fd = mkstemp(path);
        if (fd >= 0)
            unlink(path);
    }
    ~TempFile()
    {
        if (fd >= 0)
            close(fd);
    }
};

// Yield until `done` or about `limit` turns have passed; returns done's value.
bool yield_until(const std::function<bool()> &done, int limit = 1000)
{
    for (int i = 0; i < limit && !done(); i++)
        if (coil_sleep(0.001) != 0)
            break;
    return done();
}

TEST(Fdio, ReadAndWriteMoveBytesThroughAPipe)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  size_t n = 0;
                  EXPECT_EQ(coil_write(p.w, "hello", 5, &n), 0);
                  EXPECT_EQ(n, 5u);
                  char buf[16] = {};
                  n = 0;
                  EXPECT_EQ(coil_read(p.r, buf, sizeof buf, &n), 0);
                  EXPECT_EQ(n, 5u);
                  EXPECT_EQ(std::string(buf, n), "hello");
                  // A NULL count is allowed.
                  EXPECT_EQ(coil_write(p.w, "x", 1, nullptr), 0);
                  EXPECT_EQ(coil_read(p.r, buf, 1, nullptr), 0);
                  EXPECT_EQ(buf[0], 'x');
                  return nullptr;
              }),
              0);
}

TEST(Fdio, PreadAndPwriteUseTheGivenOffsetAndLeaveTheFilePositionAlone)
{
    TempFile f;
    ASSERT_GE(f.fd, 0);
    ASSERT_EQ(coil_test::run([&] {
                  size_t n = 0;
                  EXPECT_EQ(coil_pwrite(f.fd, "world", 5, 6, &n), 0);
                  EXPECT_EQ(n, 5u);
                  EXPECT_EQ(coil_pwrite(f.fd, "hello ", 6, 0, &n), 0);
                  EXPECT_EQ(n, 6u);
                  EXPECT_EQ(lseek(f.fd, 0, SEEK_CUR), 0) << "pwrite must not move the position";
                  char buf[32] = {};
                  EXPECT_EQ(coil_pread(f.fd, buf, 5, 6, &n), 0);
                  EXPECT_EQ(std::string(buf, n), "world");
                  EXPECT_EQ(coil_pread(f.fd, buf, sizeof buf, 0, &n), 0);
                  EXPECT_EQ(std::string(buf, n), "hello world");
                  // Past the end: 0 bytes, not an error.
                  EXPECT_EQ(coil_pread(f.fd, buf, sizeof buf, 1000, &n), 0);
                  EXPECT_EQ(n, 0u);
                  // Plain read/write on a file follow and advance the position.
                  EXPECT_EQ(coil_read(f.fd, buf, 6, &n), 0);
                  EXPECT_EQ(std::string(buf, n), "hello ");
                  EXPECT_EQ(lseek(f.fd, 0, SEEK_CUR), 6);
                  EXPECT_EQ(coil_write(f.fd, "W", 1, &n), 0);
                  EXPECT_EQ(coil_pread(f.fd, buf, sizeof buf, 0, &n), 0);
                  EXPECT_EQ(std::string(buf, n), "hello World");
                  // The offset value that means "current position" is refused for p* calls.
                  EXPECT_EQ(coil_pread(f.fd, buf, 1, UINT64_MAX, &n), -EINVAL);
                  EXPECT_EQ(coil_pwrite(f.fd, buf, 1, UINT64_MAX, &n), -EINVAL);
                  return nullptr;
              }),
              0);
}

TEST(Fdio, WriteAllWritesEverythingEvenPastThePipeCapacity)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    const size_t total = 1 << 20; // far more than the 64 KiB a pipe holds
    std::vector<unsigned char> out(total), in;
    for (size_t i = 0; i < total; i++)
        out[i] = (unsigned char)(i * 131 + (i >> 9));
    ASSERT_EQ(coil_test::run([&] {
                  coil_task *reader = nullptr;
                  coil_test::spawn(&reader, [&] {
                      std::vector<unsigned char> buf(65536);
                      while (in.size() < total) {
                          size_t n = 0;
                          int rc = coil_read(p.r, buf.data(), buf.size(), &n);
                          if (rc != 0 || n == 0)
                              break;
                          in.insert(in.end(), buf.begin(), buf.begin() + n);
                      }
                      return nullptr;
                  });
                  EXPECT_EQ(coil_write_all(p.w, out.data(), total), 0);
                  EXPECT_EQ(coil_task_await(reader, nullptr), 0);
                  coil_task_free(reader);
                  return nullptr;
              }),
              0);
    ASSERT_EQ(in.size(), total);
    EXPECT_TRUE(in == out);
}

TEST(Fdio, CloseClosesTheFdAndLaterUseGivesEbadf)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  EXPECT_EQ(coil_close(p.w), 0);
                  char c;
                  EXPECT_EQ(coil_write(p.w, "x", 1, nullptr), -EBADF);
                  EXPECT_EQ(fcntl(p.w, F_GETFD), -1);
                  p.w = -1;
                  EXPECT_EQ(coil_close(p.r), 0);
                  EXPECT_EQ(coil_read(p.r, &c, 1, nullptr), -EBADF);
                  p.r = -1;
                  return nullptr;
              }),
              0);
}

TEST(Fdio, CloseWithACancelPendingStillClosesTheFdAndTheCancelComesAtTheNextAwait)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  EXPECT_EQ(coil_task_cancel(coil_current_task(), nullptr), 1);
                  EXPECT_EQ(coil_close(p.w), 0);
                  EXPECT_EQ(fcntl(p.w, F_GETFD), -1);
                  p.w = -1;
                  EXPECT_EQ(coil_sleep(0), -ECANCELED);
                  coil_task_uncancel(coil_current_task());
                  return nullptr;
              }),
              0);
}

TEST(Fdio, ReadOnAnEmptyPipeSuspendsUntilAWriterTaskWrites)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  bool written = false, read_before_write = false;
                  std::string got;
                  coil_task *reader = nullptr;
                  coil_test::spawn(&reader, [&] {
                      char buf[32];
                      size_t n = 0;
                      int rc = coil_read(p.r, buf, sizeof buf, &n);
                      read_before_write = !written;
                      if (rc == 0)
                          got.assign(buf, n);
                      return nullptr;
                  });
                  // Many loop turns with other work going on: the reader stays suspended.
                  for (int i = 0; i < 20; i++)
                      EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_FALSE(coil_task_done(reader));
                  coil_task *writer = nullptr;
                  coil_test::spawn(&writer, [&] {
                      written = true;
                      EXPECT_EQ(coil_write_all(p.w, "ping", 4), 0);
                      return nullptr;
                  });
                  EXPECT_EQ(coil_task_await(reader, nullptr), 0);
                  EXPECT_EQ(coil_task_await(writer, nullptr), 0);
                  EXPECT_FALSE(read_before_write);
                  EXPECT_EQ(got, "ping");
                  coil_task_free(reader);
                  coil_task_free(writer);
                  return nullptr;
              }),
              0);
}

TEST(Fdio, ReadAtEofReturnsZeroBytes)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  EXPECT_EQ(coil_write_all(p.w, "ab", 2), 0);
                  EXPECT_EQ(coil_close(p.w), 0);
                  p.w = -1;
                  char buf[8];
                  size_t n = 99;
                  EXPECT_EQ(coil_read(p.r, buf, sizeof buf, &n), 0);
                  EXPECT_EQ(n, 2u);
                  EXPECT_EQ(coil_read(p.r, buf, sizeof buf, &n), 0);
                  EXPECT_EQ(n, 0u);
                  return nullptr;
              }),
              0);
}

TEST(Fdio, BadFdReturnsEbadf)
{
    ASSERT_EQ(coil_test::run([&] {
                  char buf[4] = {};
                  size_t n = 77;
                  EXPECT_EQ(coil_read(-1, buf, 4, &n), -EBADF);
                  EXPECT_EQ(coil_write(-1, buf, 4, &n), -EBADF);
                  EXPECT_EQ(coil_pread(-5, buf, 4, 0, &n), -EBADF);
                  EXPECT_EQ(coil_pwrite(-5, buf, 4, 0, &n), -EBADF);
                  EXPECT_EQ(coil_write_all(-1, buf, 4), -EBADF);
                  EXPECT_EQ(coil_close(-1), -EBADF);
                  EXPECT_EQ(n, 77u) << "no count on failure";
                  // A valid-looking number that is not open.
                  int fd = dup(0);
                  EXPECT_GE(fd, 0);
                  close(fd);
                  EXPECT_EQ(coil_read(fd, buf, 4, &n), -EBADF);
                  EXPECT_EQ(coil_write(fd, buf, 4, &n), -EBADF);
                  EXPECT_EQ(coil_close(fd), -EBADF);
                  return nullptr;
              }),
              0);
}

TEST(Fdio, CallsOutsideATaskReturnEnotask)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    char buf[4] = {};
    size_t n = 0;
    EXPECT_EQ(coil_read(p.r, buf, 4, &n), COIL_ENOTASK);
    EXPECT_EQ(coil_write(p.w, buf, 4, &n), COIL_ENOTASK);
    EXPECT_EQ(coil_pread(p.r, buf, 4, 0, &n), COIL_ENOTASK);
    EXPECT_EQ(coil_pwrite(p.w, buf, 4, 0, &n), COIL_ENOTASK);
    EXPECT_EQ(coil_write_all(p.w, buf, 4), COIL_ENOTASK);
    EXPECT_EQ(coil_close(p.w), COIL_ENOTASK);
    EXPECT_NE(fcntl(p.w, F_GETFD), -1) << "the fd must still be open";

    // Nor from a plain callback on a running loop.
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    struct Ctx {
        coil_loop *loop;
        int fd;
        int rc;
    } c{loop, p.r, 0};
    ASSERT_EQ(coil_loop_call_soon(
                  loop,
                  [](void *a) {
                      auto *x = static_cast<Ctx *>(a);
                      char b;
                      x->rc = coil_read(x->fd, &b, 1, nullptr);
                      coil_loop_stop(x->loop);
                      return 0;
                  },
                  &c, nullptr),
              0);
    ASSERT_EQ(coil_loop_run_forever(loop), 0);
    EXPECT_EQ(c.rc, COIL_ENOTASK);
    ASSERT_EQ(coil_loop_close(loop), 0);
}

TEST(Fdio, CancelledReadOnAnEmptyPipeReturnsEcanceledAndConsumesNothing)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  int rc = 1;
                  size_t n = 12345;
                  char buf[16];
                  coil_task *reader = nullptr;
                  coil_test::spawn(&reader, [&] {
                      rc = coil_read(p.r, buf, sizeof buf, &n);
                      return rc ? coil_raise(rc, "read") : nullptr;
                  });
                  EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_FALSE(coil_task_done(reader));
                  EXPECT_EQ(coil_task_cancel(reader, "enough"), 1);
                  EXPECT_EQ(coil_task_await(reader, nullptr), -ECANCELED);
                  EXPECT_EQ(rc, -ECANCELED);
                  EXPECT_EQ(n, 12345u) << "no count for a cancelled read";
                  coil_task_free(reader);

                  // The pipe still works and every byte written afterwards arrives.
                  EXPECT_EQ(coil_write_all(p.w, "after", 5), 0);
                  char got[16] = {};
                  size_t m = 0;
                  EXPECT_EQ(coil_read(p.r, got, sizeof got, &m), 0);
                  EXPECT_EQ(std::string(got, m), "after");
                  return nullptr;
              }),
              0);
}

TEST(Fdio, CancelWhileSuspendedInReadIsDeliveredOnceAndTheTaskCanReadAgain)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  std::vector<int> rcs;
                  std::string got;
                  coil_task *reader = nullptr;
                  coil_test::spawn(&reader, [&] {
                      char buf[16];
                      size_t n = 0;
                      rcs.push_back(coil_read(p.r, buf, sizeof buf, &n));
                      // Swallow the cancellation and read again: this one must complete.
                      int rc = coil_read(p.r, buf, sizeof buf, &n);
                      rcs.push_back(rc);
                      if (rc == 0)
                          got.assign(buf, n);
                      return nullptr;
                  });
                  EXPECT_EQ(coil_sleep(0), 0);
                  // Several requests before it runs: one delivery.
                  EXPECT_EQ(coil_task_cancel(reader, nullptr), 1);
                  EXPECT_EQ(coil_task_cancel(reader, nullptr), 1);
                  EXPECT_TRUE(yield_until([&] { return rcs.size() == 1; }));
                  EXPECT_EQ(coil_write_all(p.w, "again", 5), 0);
                  EXPECT_EQ(coil_task_await(reader, nullptr), 0);
                  EXPECT_EQ(rcs, (std::vector<int>{-ECANCELED, 0}));
                  EXPECT_EQ(got, "again");
                  coil_task_free(reader);
                  return nullptr;
              }),
              0);
}

TEST(Fdio, CancelledReaderAmongOthersLosesNoDataForTheRest)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    ASSERT_EQ(coil_test::run([&] {
                  coil_task *victim = nullptr, *keeper = nullptr;
                  std::string kept;
                  coil_test::spawn(&victim, [&] {
                      char buf[8];
                      int rc = coil_read(p.r, buf, sizeof buf, nullptr);
                      return rc ? coil_raise(rc, "read") : nullptr;
                  });
                  EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_EQ(coil_task_cancel(victim, nullptr), 1);
                  EXPECT_EQ(coil_task_await(victim, nullptr), -ECANCELED);
                  coil_test::spawn(&keeper, [&] {
                      char buf[8];
                      size_t n = 0;
                      if (coil_read(p.r, buf, sizeof buf, &n) == 0)
                          kept.assign(buf, n);
                      return nullptr;
                  });
                  EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_EQ(coil_write_all(p.w, "1234", 4), 0);
                  EXPECT_EQ(coil_task_await(keeper, nullptr), 0);
                  EXPECT_EQ(kept, "1234");
                  coil_task_free(victim);
                  coil_task_free(keeper);
                  return nullptr;
              }),
              0);
}

// Compact tasks: each reads into and writes from buffers on its own (copied-aside) stack while
// the others run and suspend on the same shared stack.
struct CompactJob {
    int in_fd, out_fd;
    int id;
    int rc = 1;
    std::string got;
};

void *compact_echo(void *arg)
{
    auto *j = static_cast<CompactJob *>(arg);
    char buf[256];
    memset(buf, 0, sizeof buf);
    size_t n = 0;
    j->rc = coil_read(j->in_fd, buf, sizeof buf, &n);
    if (j->rc)
        return nullptr;
    // Let every other compact task run on the shared stack before we look at our buffer.
    coil_sleep(0);
    coil_sleep(0);
    j->got.assign(buf, n);
    char reply[64];
    int len = snprintf(reply, sizeof reply, "reply-%d:%.*s", j->id, (int)n, buf);
    j->rc = coil_write_all(j->out_fd, reply, (size_t)len);
    return nullptr;
}

TEST(Fdio, CompactTasksReadIntoAndWriteFromTheirStacksCorrectly)
{
    const int N = 8;
    std::vector<Pipe> in(N), out(N);
    std::vector<CompactJob> jobs;
    for (int i = 0; i < N; i++)
        jobs.push_back(CompactJob{in[i].r, out[i].w, i, 1, {}});
    ASSERT_EQ(coil_test::run([&] {
                  coil_task_opts o{};
                  o.stack_mode = COIL_STACK_COMPACT;
                  std::vector<coil_task *> ts(N);
                  for (int i = 0; i < N; i++)
                      EXPECT_EQ(coil_create_task(&ts[i], compact_echo, &jobs[i], &o), 0);
                  // All suspended in their reads before any data exists.
                  EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_EQ(coil_sleep(0), 0);
                  for (int i = N - 1; i >= 0; i--) {
                      std::string msg = "message-" + std::to_string(i * 1111);
                      EXPECT_EQ(coil_write_all(in[i].w, msg.data(), msg.size()), 0);
                      EXPECT_EQ(coil_sleep(0), 0);
                  }
                  for (int i = 0; i < N; i++) {
                      EXPECT_EQ(coil_task_await(ts[i], nullptr), 0);
                      coil_task_free(ts[i]);
                  }
                  for (int i = 0; i < N; i++) {
                      char buf[128];
                      size_t n = 0;
                      EXPECT_EQ(coil_read(out[i].r, buf, sizeof buf, &n), 0);
                      EXPECT_EQ(std::string(buf, n),
                                "reply-" + std::to_string(i) + ":message-" + std::to_string(i * 1111));
                  }
                  return nullptr;
              }),
              0);
    for (int i = 0; i < N; i++) {
        EXPECT_EQ(jobs[i].rc, 0);
        EXPECT_EQ(jobs[i].got, "message-" + std::to_string(i * 1111));
    }
}

TEST(Fdio, CompactTaskCancelledInAStackBufferReadLeavesThePipeIntact)
{
    Pipe p;
    ASSERT_GE(p.r, 0);
    static int rc;
    rc = 1;
    ASSERT_EQ(coil_test::run([&] {
                  coil_task_opts o{};
                  o.stack_mode = COIL_STACK_COMPACT;
                  coil_task *t = nullptr;
                  EXPECT_EQ(coil_create_task(
                                &t,
                                [](void *fd) -> void * {
                                    char buf[64];
                                    rc = coil_read((int)(intptr_t)fd, buf, sizeof buf, nullptr);
                                    return nullptr;
                                },
                                (void *)(intptr_t)p.r, &o),
                            0);
                  // Another compact task takes the shared stack meanwhile.
                  coil_task *other = nullptr;
                  EXPECT_EQ(coil_create_task(
                                &other, [](void *) -> void * {
                                    char scribble[512];
                                    memset(scribble, 0xAB, sizeof scribble);
                                    coil_sleep(0);
                                    return scribble[3] == (char)0xAB ? nullptr : (void *)1;
                                },
                                nullptr, &o),
                            0);
                  EXPECT_EQ(coil_sleep(0), 0);
                  EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
                  EXPECT_EQ(coil_task_await(t, nullptr), 0);
                  void *res = (void *)2;
                  EXPECT_EQ(coil_task_await(other, &res), 0);
                  EXPECT_EQ(res, nullptr);
                  coil_task_free(t);
                  coil_task_free(other);
                  EXPECT_EQ(coil_write_all(p.w, "ok", 2), 0);
                  char buf[8];
                  size_t n = 0;
                  EXPECT_EQ(coil_read(p.r, buf, sizeof buf, &n), 0);
                  EXPECT_EQ(std::string(buf, n), "ok");
                  return nullptr;
              }),
              0);
    EXPECT_EQ(rc, -ECANCELED);
}

} // namespace
