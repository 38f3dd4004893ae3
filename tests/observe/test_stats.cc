// Loop counters: what each counter counts, and the shared-memory segment that publishes them.
#include <fcntl.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "coil_test.h"
extern "C" {
#include "observe/stats.h"
}

namespace {

coil_loop_stats snapshot()
{
    coil_loop_stats s{};
    EXPECT_EQ(0, coil_loop_get_stats(coil_get_running_loop(), &s));
    return s;
}

std::string shm_path() { return "/dev/shm/coil." + std::to_string(getpid()); }

bool exists(const std::string &p)
{
    struct stat st;
    return stat(p.c_str(), &st) == 0;
}

TEST(Stats, TasksCreatedAndFinishedCountEveryTaskExactly)
{
    coil_test::run([]() -> void * {
        coil_loop_stats before = snapshot();
        std::vector<coil_task *> ts(10);
        for (auto &t : ts)
            EXPECT_EQ(0, coil_test::spawn(&t, []() -> void * {
                          coil_sleep(0); // suspends once, as a task that awaits something
                          return nullptr;
                      }));
        coil_loop_stats mid = snapshot();
        EXPECT_EQ(before.tasks_created + 10, mid.tasks_created);
        for (auto *t : ts) {
            EXPECT_EQ(0, coil_task_await(t, nullptr));
            coil_task_free(t);
        }
        coil_loop_stats after = snapshot();
        EXPECT_EQ(before.tasks_created + 10, after.tasks_created);
        EXPECT_EQ(before.tasks_finished + 10, after.tasks_finished);
        EXPECT_GT(after.iterations, before.iterations);
        return nullptr;
    });
}

TEST(Stats, EachFdOperationIsOneSqeSubmittedAndOneCqeReaped)
{
    coil_test::run([]() -> void * {
        int p[2];
        EXPECT_EQ(0, pipe(p));
        // Settle: let anything the runner queued at start be submitted and reaped.
        coil_sleep(0);
        coil_loop_stats before = snapshot();
        char buf[4];
        for (int i = 0; i < 5; i++) {
            size_t n = 0;
            EXPECT_EQ(0, coil_write(p[1], "abcd", 4, &n));
            EXPECT_EQ(0, coil_read(p[0], buf, 4, &n));
            EXPECT_EQ(4u, n);
        }
        coil_loop_stats after = snapshot();
        EXPECT_EQ(before.sqes_submitted + 10, after.sqes_submitted);
        EXPECT_EQ(before.cqes_reaped + 10, after.cqes_reaped);
        close(p[0]);
        close(p[1]);
        return nullptr;
    });
}

// A stream's send counts as one operation started and finished, also where the backend sends it
// on the writer's call (epoll) rather than through a completion.
TEST(Stats, AStreamSendIsOneOperation)
{
    coil_test::run([]() -> void * {
        int sv[2];
        EXPECT_EQ(0, socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
        coil_stream *s = nullptr;
        EXPECT_EQ(0, coil_stream_from_fd(sv[0], nullptr, &s));
        coil_sleep(0); // settle what making the stream queued
        coil_loop_stats before = snapshot();
        EXPECT_EQ(0, coil_stream_write(s, "ping", 4));
        char buf[4];
        ssize_t got = -1; // the peer has it: the send is done (io_uring sends it at the next poll)
        for (int i = 0; i < 10000 && got != 4; i++)
            if ((got = recv(sv[1], buf, sizeof buf, MSG_DONTWAIT)) != 4)
                coil_sleep(0);
        EXPECT_EQ(4, got);
        coil_loop_stats after = snapshot();
        for (int i = 0; i < 1000 && after.cqes_reaped == before.cqes_reaped; i++) {
            coil_sleep(0); // a completion, where there is one, is reaped by a poll
            after = snapshot();
        }
        EXPECT_EQ(before.sqes_submitted + 1, after.sqes_submitted);
        EXPECT_EQ(before.cqes_reaped + 1, after.cqes_reaped);
        coil_stream_free(s);
        close(sv[1]);
        return nullptr;
    });
}

TEST(Stats, GaugesShowLiveTasksAndArmedTimers)
{
    coil_test::run([]() -> void * {
        std::vector<coil_task *> ts(4);
        for (auto &t : ts)
            coil_test::spawn(&t, []() -> void * {
                coil_sleep(10);
                return nullptr;
            });
        // Gauges are refreshed once per scheduler iteration: yield until they show all four
        // asleep (bounded: it takes one or two iterations).
        coil_loop_stats s = snapshot();
        for (int i = 0; i < 1000 && !(s.tasks_alive >= 5 && s.timers_armed >= 4); i++) {
            coil_sleep(0);
            s = snapshot();
        }
        EXPECT_GE(s.tasks_alive, 5u);          // the four sleepers and this task
        EXPECT_GE(s.timers_armed, 4u);         // their four timers (and the test watchdog's)
        EXPECT_GE(s.stacks_in_use, 5u);
        EXPECT_GT(s.stack_bytes, 0u);
        for (auto *t : ts) {
            coil_task_cancel(t, nullptr);
            coil_task_await(t, nullptr);
            coil_task_free(t);
        }
        return nullptr;
    });
}

TEST(Stats, TimingModeFillsTheStepHistogramAndLongestStep)
{
    coil_test::run([]() -> void * {
        coil_loop *loop = coil_get_running_loop();
        coil_loop_set_stats_timing(loop, true);
        coil_task *t = nullptr;
        coil_test::spawn(&t, []() -> void * {
            uint64_t end = coil_loop_time_ns(nullptr) + 5000000;
            while (coil_loop_time_ns(nullptr) < end) {
            }
            return nullptr;
        });
        EXPECT_EQ(0, coil_task_await(t, nullptr));
        coil_task_free(t);
        coil_loop_stats s = snapshot();
        EXPECT_GE(s.longest_step_ns, 5000000u);
        EXPECT_GT(s.steps_timed, 0u);
        uint64_t sum = 0;
        for (uint64_t b : s.step_hist)
            sum += b;
        EXPECT_EQ(s.steps_timed, sum);
        EXPECT_GE(s.steps_ns, 5000000u);
        // The longest step is counted in its log2 bucket: [2^b, 2^(b+1)) ns.
        unsigned b = 63u - (unsigned)__builtin_clzll(s.longest_step_ns);
        EXPECT_GE(s.step_hist[b], 1u);
        coil_loop_set_stats_timing(loop, false);
        return nullptr;
    });
}

TEST(Stats, SegmentExistsWhileALoopIsOpenAndIsRemovedWithTheLast)
{
    coil_loop *a = nullptr, *b = nullptr;
    ASSERT_EQ(0, coil_new_event_loop(&a, nullptr));
    ASSERT_TRUE(exists(shm_path()));
    ASSERT_EQ(0, coil_new_event_loop(&b, nullptr));
    int fd = open(shm_path().c_str(), O_RDONLY);
    ASSERT_GE(fd, 0);
    struct stat st;
    ASSERT_EQ(0, fstat(fd, &st));
    EXPECT_EQ(0600u, st.st_mode & 0777);
    EXPECT_EQ(getuid(), st.st_uid);
    auto *seg = static_cast<coil__stats_seg *>(mmap(nullptr, sizeof(coil__stats_seg), PROT_READ, MAP_SHARED, fd, 0));
    close(fd);
    ASSERT_NE(MAP_FAILED, (void *)seg);
    EXPECT_EQ(COIL__STATS_MAGIC, seg->magic);
    EXPECT_EQ(COIL__STATS_VERSION, seg->version);
    EXPECT_EQ((uint64_t)getpid(), seg->pid);
    EXPECT_EQ(coil__proc_start_time(getpid()), seg->start_time);
    EXPECT_NE(0u, seg->start_time);
    unsigned live = 0;
    for (auto &s : seg->slots)
        live += s.in_use != 0;
    EXPECT_EQ(2u, live);
    munmap(seg, sizeof *seg);
    coil_loop_close(a);
    EXPECT_TRUE(exists(shm_path()));
    coil_loop_close(b);
    EXPECT_FALSE(exists(shm_path()));
}

// Run the loop until a task that sleeps a millisecond is done: the loop blocks in its ring, so
// everything queued (the bell's watch too) reaches the kernel.
void run_a_sleep(coil_loop *loop)
{
    coil_task *t = nullptr;
    ASSERT_EQ(0, coil_loop_create_task(loop, &t, [](void *) -> void * {
        coil_sleep(0.001);
        return nullptr;
    }, nullptr, nullptr));
    EXPECT_EQ(0, coil_loop_run_until_complete(loop, (coil_future *)t, nullptr));
    coil_task_free(t);
}

long wake_bell(uint32_t *bell) { return syscall(SYS_futex, bell, FUTEX_WAKE, INT_MAX, nullptr, nullptr, 0); }

TEST(Stats, AClosingLoopTakesItsWatchOffTheBell)
{
    coil_loop *a = nullptr, *b = nullptr;
    ASSERT_EQ(0, coil_new_event_loop(&a, nullptr));
    ASSERT_EQ(0, coil_new_event_loop(&b, nullptr)); // keeps the segment while a closes
    coil_loop_stats st{};
    ASSERT_EQ(0, coil_loop_get_stats(a, &st));
    int fd = open(shm_path().c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    auto *seg = static_cast<coil__stats_seg *>(
        mmap(nullptr, sizeof(coil__stats_seg), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0));
    close(fd);
    ASSERT_NE(MAP_FAILED, (void *)seg);
    coil__loop_stats *slot = &seg->slots[st.shard];
    if (slot->watch != COIL__WATCH_FUTEX) {
        munmap(seg, sizeof *seg);
        coil_loop_close(a);
        coil_loop_close(b);
        GTEST_SKIP() << "this kernel has no IORING_OP_FUTEX_WAIT";
    }
    run_a_sleep(a);
    EXPECT_EQ(1, wake_bell(&slot->bell)) << "the loop's watch waits on its bell";
    run_a_sleep(a); // reaps that completion and arms the watch again
    EXPECT_EQ(0, coil_loop_close(a));
    EXPECT_EQ(0, wake_bell(&slot->bell)) << "a closed loop left its watch on the bell";
    munmap(seg, sizeof *seg);
    coil_loop_close(b);
}

TEST(Stats, GetStatsRejectsNullArguments)
{
    coil_loop_stats s;
    EXPECT_EQ(-EINVAL, coil_loop_get_stats(nullptr, &s));
    coil_loop *a = nullptr;
    ASSERT_EQ(0, coil_new_event_loop(&a, nullptr));
    EXPECT_EQ(-EINVAL, coil_loop_get_stats(a, nullptr));
    coil_loop_close(a);
}

} // namespace
