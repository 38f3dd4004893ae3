// The epoll backend's thread pool (core/backend/epoll/pool.h): every job comes back to its own
// done list exactly once, oldest first per take, with the eventfd written after the push; a
// blocked job holds up no other; cancel takes back only what has not started; the cap, the
// signal mask, fork and exit. Real threads, real pipes and eventfds; every wait is bounded.
#include <gtest/gtest.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "backend/epoll/pool.h"
#include "stderr_capture.h"
#include "watchdog.h"

// ThreadSanitizer refuses a thread started in the child of a process with threads unless told
// otherwise; the fork test's child starts the pool's workers, which is the point of the test.
#if defined(COIL_TEST_TSAN)
extern "C" const char *__tsan_default_options() { return "die_after_fork=0"; }
#endif

// The records are laid out by C (_Atomic) and read here through std::atomic: the same layout.
static_assert(sizeof(std::atomic<int>) == sizeof(int) && alignof(std::atomic<int>) == alignof(int), "");
static_assert(sizeof(std::atomic<coil__pool_job *>) == sizeof(void *), "");
static_assert(std::atomic<int>::is_always_lock_free && std::atomic<coil__pool_job *>::is_always_lock_free, "");

namespace {

using coil_test::time_scale;

// Counts events and lets a thread wait, bounded, for a number of them.
struct Counter {
    std::mutex mu;
    std::condition_variable cv;
    int n = 0;
    void inc()
    {
        std::lock_guard<std::mutex> g(mu);
        n++;
        cv.notify_all();
    }
    bool wait_for(int want, double seconds)
    {
        std::unique_lock<std::mutex> g(mu);
        return cv.wait_for(g, std::chrono::duration<double>(seconds * time_scale()), [&] { return n >= want; });
    }
};

// A test's job: the pool's record first, so run can find the rest from it.
struct Job {
    coil__pool_job job{};
    int value = 0;
    int owner = 0;
    std::atomic<int> runs{0};
    int gate = -1;             // blockers: the pipe to read one byte from
    Counter *started = nullptr;
};

Job *of(coil__pool_job *j) { return reinterpret_cast<Job *>(j); }

int triple(coil__pool_job *j)
{
    Job *t = of(j);
    t->runs++;
    return t->value * 3;
}

// Blocks until the test writes a byte into the gate; the result is what read returned.
int block_on_gate(coil__pool_job *j)
{
    Job *t = of(j);
    t->runs++;
    if (t->started)
        t->started->inc();
    char c;
    ssize_t n = read(t->gate, &c, 1);
    return n < 0 ? -errno : (int)n;
}

int signals_blocked(coil__pool_job *j)
{
    of(j)->runs++;
    sigset_t cur;
    if (pthread_sigmask(SIG_BLOCK, nullptr, &cur) != 0)
        return -errno;
    for (int s : {SIGINT, SIGTERM, SIGHUP, SIGUSR1, SIGUSR2, SIGCHLD, SIGPIPE, SIGALRM, SIGQUIT})
        if (!sigismember(&cur, s))
            return 0;
    return 1;
}

// Wait (bounded) until the thread whose id will appear in `tid` is asleep in the kernel (state S
// in /proc): the only place a thread in coil__pool_done_wait can sleep is its condition variable.
bool asleep_within(const std::atomic<pid_t> &tid, double seconds)
{
    auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds * time_scale());
    while (std::chrono::steady_clock::now() < end) {
        if (pid_t t = tid.load()) {
            std::string path = "/proc/self/task/" + std::to_string(t) + "/stat";
            if (FILE *f = fopen(path.c_str(), "r")) {
                char buf[512];
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                fclose(f);
                buf[n] = 0;
                // The state follows the command name, which is in parentheses.
                const char *close_paren = strrchr(buf, ')');
                if (close_paren && close_paren[1] == ' ' && close_paren[2] == 'S')
                    return true;
            }
        }
        std::this_thread::yield();
    }
    return false;
}

// A done list with its own eventfd, as a loop keeps one.
struct Done {
    coil__pool_done d;
    int efd;
    Done()
    {
        efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        coil__pool_done_init(&d, efd);
    }
    ~Done()
    {
        coil__pool_done_wait(&d);
        close(efd);
    }
    // Wait (bounded) for the eventfd, reset it, take what is there: one take, oldest first.
    // Empty when nothing came within `seconds`.
    std::vector<Job *> take(double seconds)
    {
        std::vector<Job *> out;
        struct pollfd p = {efd, POLLIN, 0};
        if (poll(&p, 1, (int)(seconds * 1000 * time_scale())) != 1)
            return out;
        uint64_t v;
        if (read(efd, &v, sizeof v) != (ssize_t)sizeof v)
            return out;
        for (coil__pool_job *j = coil__pool_take_done(&d); j; j = j->next)
            out.push_back(of(j));
        return out;
    }
    // Takes until n jobs came back or `seconds` passed without one; in the order taken.
    std::vector<Job *> collect(size_t n, double seconds = 10)
    {
        std::vector<Job *> all;
        while (all.size() < n) {
            std::vector<Job *> batch = take(seconds);
            if (batch.empty())
                break;
            all.insert(all.end(), batch.begin(), batch.end());
        }
        return all;
    }
};

// A pipe whose bytes release blockers, one byte each.
struct Gate {
    int fds[2] = {-1, -1};
    Gate() { EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0); }
    ~Gate()
    {
        close(fds[0]);
        close(fds[1]);
    }
    void open_for(int n)
    {
        std::string bytes((size_t)n, 'x');
        ASSERT_EQ(write(fds[1], bytes.data(), bytes.size()), (ssize_t)bytes.size());
    }
};

void make(Job &t, Done &d, int (*run)(coil__pool_job *), int value = 0)
{
    t.job.run = run;
    t.job.done = &d.d;
    t.value = value;
}

// Make each of jobs compute triple(its index) for d and submit it, in order. The index of the first
// one the pool refused, or -1.
int submit_triples(std::vector<Job> &jobs, Done &d)
{
    for (size_t i = 0; i < jobs.size(); i++) {
        make(jobs[i], d, triple, (int)i);
        if (coil__pool_submit(&jobs[i].job) != 0)
            return (int)i;
    }
    return -1;
}

// Submit as many blockers as the pool has workers, so every worker is (or will be) held and a job
// submitted after them waits in the queue until the gate opens.
std::vector<std::unique_ptr<Job>> occupy_every_worker(Done &d, Gate &g, Counter *started = nullptr)
{
    std::vector<std::unique_ptr<Job>> blockers;
    for (unsigned i = 0; i < coil__pool_size(); i++) {
        blockers.emplace_back(new Job);
        make(*blockers.back(), d, block_on_gate);
        blockers.back()->gate = g.fds[0];
        blockers.back()->started = started;
        EXPECT_EQ(coil__pool_submit(&blockers.back()->job), 0);
    }
    return blockers;
}

TEST(EpollPool, EveryJobComesBackExactlyOnceWithItsResult)
{
    Done d;
    const int n = 2000;
    std::vector<Job> jobs(n);
    ASSERT_EQ(submit_triples(jobs, d), -1) << "the pool refused a job";
    std::vector<Job *> back = d.collect(n);
    ASSERT_EQ(back.size(), (size_t)n) << "jobs missing";
    std::set<Job *> seen(back.begin(), back.end());
    EXPECT_EQ(seen.size(), (size_t)n) << "a job came back twice";
    for (int i = 0; i < n; i++) {
        EXPECT_EQ(jobs[i].runs.load(), 1) << i;
        EXPECT_EQ(jobs[i].job.res, 3 * i) << i;
        EXPECT_EQ(jobs[i].job.state.load(), COIL__POOL_IDLE) << i;
    }
    coil__pool_done_wait(&d.d);
    EXPECT_EQ(coil__pool_take_done(&d.d), nullptr) << "a job came back twice";
    EXPECT_GE(coil__pool_threads(), 1u);
    EXPECT_LE(coil__pool_threads(), coil__pool_size());
}

TEST(EpollPool, ATakeReturnsJobsOldestFirst)
{
    Done d;
    Gate g;
    auto blockers = occupy_every_worker(d, g);
    // Cancelled in order, so pushed in order by this thread: one take must give them in order.
    const int n = 64;
    std::vector<Job> jobs(n);
    ASSERT_EQ(submit_triples(jobs, d), -1) << "the pool refused a job";
    for (int i = 0; i < n; i++)
        ASSERT_TRUE(coil__pool_cancel(&jobs[i].job)) << i;
    std::vector<Job *> batch = d.take(10);
    ASSERT_EQ(batch.size(), (size_t)n);
    for (int i = 0; i < n; i++)
        EXPECT_EQ(batch[i], &jobs[i]) << "position " << i << " holds job " << batch[i]->value;
    g.open_for((int)blockers.size());
    EXPECT_EQ(d.collect(blockers.size()).size(), blockers.size());
}

TEST(EpollPoolDeathTest, OneWorkerRunsJobsInSubmissionOrder)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            setenv("COIL_THREADPOOL_SIZE", "1", 1);
            Done d;
            const int n = 500;
            std::vector<Job> jobs(n);
            for (int i = 0; i < n; i++) {
                make(jobs[i], d, triple, i);
                if (coil__pool_submit(&jobs[i].job) != 0)
                    _exit(2);
            }
            std::vector<Job *> back = d.collect(n);
            if (back.size() != (size_t)n)
                _exit(3);
            for (int i = 0; i < n; i++)
                if (back[i] != &jobs[i])
                    _exit(4);
            _exit(coil__pool_threads() == 1 ? 0 : 5);
        },
        ::testing::ExitedWithCode(0), "");
}

TEST(EpollPool, ABlockedJobDoesNotHoldUpOthers)
{
    if (coil__pool_size() < 2)
        GTEST_SKIP() << "COIL_THREADPOOL_SIZE=1: one worker serves one job at a time";
    Done d;
    Gate g;
    Counter started;
    Job blocker;
    make(blocker, d, block_on_gate);
    blocker.gate = g.fds[0];
    blocker.started = &started;
    ASSERT_EQ(coil__pool_submit(&blocker.job), 0);
    ASSERT_TRUE(started.wait_for(1, 10));
    const int n = 50;
    std::vector<Job> jobs(n);
    ASSERT_EQ(submit_triples(jobs, d), -1) << "the pool refused a job";
    std::vector<Job *> back = d.collect(n);
    EXPECT_EQ(back.size(), (size_t)n) << "the other jobs waited for the blocked one";
    EXPECT_EQ(blocker.job.state.load(), COIL__POOL_RUNNING);
    g.open_for(1);
    back = d.collect(1);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0], &blocker);
    EXPECT_EQ(blocker.job.res, 1);
}

TEST(EpollPool, CancelBeforeStartGivesEcanceledAndOneCompletion)
{
    Done d;
    Gate g;
    auto blockers = occupy_every_worker(d, g);
    Job x;
    make(x, d, triple, 7);
    ASSERT_EQ(coil__pool_submit(&x.job), 0);
    EXPECT_EQ(x.job.state.load(), COIL__POOL_QUEUED);
    ASSERT_TRUE(coil__pool_cancel(&x.job));
    EXPECT_FALSE(coil__pool_cancel(&x.job)) << "cancelled twice";
    std::vector<Job *> back = d.take(10);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0], &x);
    EXPECT_EQ(x.job.res, -ECANCELED);
    g.open_for((int)blockers.size());
    back = d.collect(blockers.size());
    EXPECT_EQ(back.size(), blockers.size());
    for (Job *b : back)
        EXPECT_NE(b, &x) << "the cancelled job came back twice";
    coil__pool_done_wait(&d.d);
    EXPECT_EQ(coil__pool_take_done(&d.d), nullptr);
    EXPECT_EQ(x.runs.load(), 0) << "a cancelled job ran";
}

TEST(EpollPool, CancelOfARunningJobReturnsFalseAndItCompletesWithItsResult)
{
    Done d;
    Gate g;
    Counter started;
    Job blocker;
    make(blocker, d, block_on_gate);
    blocker.gate = g.fds[0];
    blocker.started = &started;
    ASSERT_EQ(coil__pool_submit(&blocker.job), 0);
    ASSERT_TRUE(started.wait_for(1, 10));
    EXPECT_FALSE(coil__pool_cancel(&blocker.job));
    g.open_for(1);
    std::vector<Job *> back = d.collect(1);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(back[0], &blocker);
    EXPECT_EQ(blocker.job.res, 1);
    EXPECT_FALSE(coil__pool_cancel(&blocker.job)) << "a finished job cancelled";
    coil__pool_done_wait(&d.d);
    EXPECT_EQ(coil__pool_take_done(&d.d), nullptr);
}

TEST(EpollPool, TheEventfdIsReadableOnceAJobIsOnAnEmptyList)
{
    Done d;
    for (int i = 0; i < 300; i++) {
        Job t;
        make(t, d, triple, i);
        ASSERT_EQ(coil__pool_submit(&t.job), 0);
        struct pollfd p = {d.efd, POLLIN, 0};
        ASSERT_EQ(poll(&p, 1, (int)(10000 * time_scale())), 1) << "no wake-up for job " << i;
        uint64_t v;
        ASSERT_EQ(read(d.efd, &v, sizeof v), (ssize_t)sizeof v);
        // Written after the push: the job is there the moment the eventfd says so.
        coil__pool_job *j = coil__pool_take_done(&d.d);
        ASSERT_EQ(j, &t.job) << "woken before the job was on the list, at job " << i;
        EXPECT_EQ(j->next, nullptr);
        coil__pool_done_wait(&d.d);
    }
}

TEST(EpollPool, JobsFromTwoThreadsGoToTheirOwnDoneLists)
{
    const int n = 500;
    auto side = [](int owner, std::string *err) {
        Done d;
        std::vector<Job> jobs(n);
        for (int i = 0; i < n; i++) {
            make(jobs[i], d, triple, i);
            jobs[i].owner = owner;
            if (coil__pool_submit(&jobs[i].job) != 0) {
                *err = "submit failed";
                return;
            }
        }
        std::vector<Job *> back = d.collect(n);
        if (back.size() != (size_t)n)
            *err = "got " + std::to_string(back.size()) + " of " + std::to_string(n);
        for (Job *t : back)
            if (t->owner != owner)
                *err = "a job of thread " + std::to_string(t->owner) + " on thread " + std::to_string(owner) + "'s list";
        coil__pool_done_wait(&d.d);
        if (coil__pool_take_done(&d.d))
            *err = "a job came back twice";
    };
    std::string err1, err2;
    std::thread a(side, 1, &err1), b(side, 2, &err2);
    a.join();
    b.join();
    EXPECT_EQ(err1, "");
    EXPECT_EQ(err2, "");
}

TEST(EpollPool, CancelRacingTheWorkersStillGivesEachJobOneCompletion)
{
    // Cancels from another thread race the workers' pick-ups: true exactly for the jobs that
    // never ran, and every job comes back once either way.
    Done d;
    Gate g;
    auto blockers = occupy_every_worker(d, g);
    const int n = 3000;
    std::vector<Job> jobs(n);
    ASSERT_EQ(submit_triples(jobs, d), -1) << "the pool refused a job";
    // The workers are let go and take from the oldest on while this thread cancels from the
    // newest back: they meet somewhere in the queue.
    std::vector<char> cancelled(n, 0);
    std::thread canceller([&] {
        g.open_for((int)blockers.size());
        for (int i = n - 1; i >= 0; i--)
            cancelled[i] = coil__pool_cancel(&jobs[i].job);
    });
    canceller.join();
    std::vector<Job *> back = d.collect(n + blockers.size());
    ASSERT_EQ(back.size(), n + blockers.size());
    std::set<Job *> seen(back.begin(), back.end());
    EXPECT_EQ(seen.size(), back.size()) << "a job came back twice";
    int ran = 0;
    for (int i = 0; i < n; i++) {
        if (cancelled[i]) {
            EXPECT_EQ(jobs[i].job.res, -ECANCELED) << i;
            EXPECT_EQ(jobs[i].runs.load(), 0) << i;
        } else {
            EXPECT_EQ(jobs[i].job.res, 3 * i) << i;
            EXPECT_EQ(jobs[i].runs.load(), 1) << i;
            ran++;
        }
    }
    coil__pool_done_wait(&d.d);
    EXPECT_EQ(coil__pool_take_done(&d.d), nullptr) << "a job came back twice";
    RecordProperty("ran", ran);
}

TEST(EpollPool, AListWithoutAnEventfdStillGetsItsJobs)
{
    coil__pool_done d;
    coil__pool_done_init(&d, -1);
    Counter ran;
    Job t;
    t.job.run = [](coil__pool_job *j) {
        of(j)->started->inc();
        return 9;
    };
    t.job.done = &d;
    t.started = &ran;
    ASSERT_EQ(coil__pool_submit(&t.job), 0);
    ASSERT_TRUE(ran.wait_for(1, 10));
    // Once no worker touches the list, the job is on it.
    coil__pool_done_wait(&d);
    coil__pool_job *j = coil__pool_take_done(&d);
    ASSERT_EQ(j, &t.job);
    EXPECT_EQ(j->res, 9);
    EXPECT_EQ(j->next, nullptr);
}

TEST(EpollPool, WorkersRunWithEverySignalBlocked)
{
    // This thread blocks none of them, so a worker could only have its mask from the pool.
    sigset_t none, old;
    sigemptyset(&none);
    ASSERT_EQ(pthread_sigmask(SIG_SETMASK, &none, &old), 0);
    Done d;
    const int n = 32;
    std::vector<Job> jobs(n);
    for (int i = 0; i < n; i++) {
        make(jobs[i], d, signals_blocked);
        ASSERT_EQ(coil__pool_submit(&jobs[i].job), 0);
    }
    EXPECT_EQ(d.collect(n).size(), (size_t)n);
    for (int i = 0; i < n; i++)
        EXPECT_EQ(jobs[i].job.res, 1) << "job " << i << " ran with a signal unblocked";
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
}

TEST(EpollPool, DoneWaitReturnsOnceNoWorkerRunsAJobForTheList)
{
    Done d;
    Gate g;
    Counter started;
    Job blocker;
    make(blocker, d, block_on_gate);
    blocker.gate = g.fds[0];
    blocker.started = &started;
    ASSERT_EQ(coil__pool_submit(&blocker.job), 0);
    ASSERT_TRUE(started.wait_for(1, 10));
    std::atomic<bool> returned{false};
    std::atomic<pid_t> tid{0};
    std::promise<void> p;
    std::future<void> f = p.get_future();
    std::thread waiter([&] {
        tid = gettid();
        coil__pool_done_wait(&d.d);
        returned = true;
        p.set_value();
    });
    // A running job for the list: the waiter must go to sleep and stay asleep until it ends.
    bool asleep = asleep_within(tid, 10);
    EXPECT_TRUE(asleep) << "coil__pool_done_wait did not wait for the running job";
    EXPECT_FALSE(returned.load());
    g.open_for(1);
    bool ok = f.wait_for(std::chrono::duration<double>(10 * time_scale())) == std::future_status::ready;
    EXPECT_TRUE(ok) << "coil__pool_done_wait did not return after the job finished";
    if (!ok) {
        // Let the process end instead of hanging on the join.
        waiter.detach();
        return;
    }
    waiter.join();
    std::vector<Job *> back = d.collect(1);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(blocker.job.res, 1);
}

TEST(EpollPool, BadArgumentsAreRefusedAndLoseNothing)
{
    EXPECT_EQ(coil__pool_submit(nullptr), -EINVAL);
    Done d;
    Job t;
    t.job.done = &d.d;
    EXPECT_EQ(coil__pool_submit(&t.job), -EINVAL) << "no run";
    t.job.run = triple;
    t.job.done = nullptr;
    EXPECT_EQ(coil__pool_submit(&t.job), -EINVAL) << "no done list";
    EXPECT_FALSE(coil__pool_cancel(nullptr));
    EXPECT_FALSE(coil__pool_cancel(&t.job)) << "never submitted";
    EXPECT_EQ(coil__pool_take_done(nullptr), nullptr);

    // A job submitted again before it came back is refused, and still comes back once.
    Gate g;
    Counter started;
    Job blocker;
    make(blocker, d, block_on_gate);
    blocker.gate = g.fds[0];
    blocker.started = &started;
    ASSERT_EQ(coil__pool_submit(&blocker.job), 0);
    EXPECT_EQ(coil__pool_submit(&blocker.job), -EBUSY);
    ASSERT_TRUE(started.wait_for(1, 10));
    EXPECT_EQ(coil__pool_submit(&blocker.job), -EBUSY);
    g.open_for(1);
    std::vector<Job *> back = d.collect(1);
    ASSERT_EQ(back.size(), 1u);
    EXPECT_EQ(blocker.runs.load(), 1);
    // Taken back, it may go again.
    ASSERT_EQ(coil__pool_submit(&blocker.job), 0);
    g.open_for(1);
    EXPECT_EQ(d.collect(1).size(), 1u);
    EXPECT_EQ(blocker.runs.load(), 2);
}

TEST(EpollPool, AForkedChildCanUseThePoolItsParentStarted)
{
    Done d;
    Gate g;
    Counter started;
    // Every parent worker is busy at the fork and one job waits in the queue: a child that kept
    // the parent's counts would think it had its full set of workers and start none.
    auto blockers = occupy_every_worker(d, g, &started);
    ASSERT_TRUE(started.wait_for((int)blockers.size(), 10));
    Job queued;
    make(queued, d, triple, 5);
    ASSERT_EQ(coil__pool_submit(&queued.job), 0);

    fflush(nullptr);
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
        Done mine;
        Job t;
        make(t, mine, triple, 14);
        if (coil__pool_submit(&t.job) != 0)
            _exit(2);
        std::vector<Job *> back = mine.take(10);
        if (back.size() != 1 || back[0] != &t || t.job.res != 42)
            _exit(3);
        if (coil__pool_threads() < 1)
            _exit(4);
        // The parent's queued job is the parent's: it must not run here.
        if (queued.runs.load() != 0)
            _exit(5);
        _exit(0);
    }
    int status = coil_test::wait_child(pid, 20, " (the child's job never ran?)");
    ASSERT_NE(status, -1);
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0) << "2: submit failed, 3: the job did not come back, 4: no worker, "
                                         "5: the parent's job ran in the child";

    g.open_for((int)blockers.size());
    std::vector<Job *> back = d.collect(blockers.size() + 1);
    EXPECT_EQ(back.size(), blockers.size() + 1);
    EXPECT_EQ(queued.job.res, 15);
}

TEST(EpollPoolDeathTest, TheCapComesFromCoilThreadpoolSize)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            setenv("COIL_THREADPOOL_SIZE", "2", 1);
            if (coil__pool_size() != 2)
                _exit(2);
            Done d;
            Gate g;
            Counter started;
            Job jobs[3];
            for (Job &t : jobs) {
                make(t, d, block_on_gate);
                t.gate = g.fds[0];
                t.started = &started;
                if (coil__pool_submit(&t.job) != 0)
                    _exit(3);
            }
            if (coil__pool_threads() != 2)
                _exit(4);
            if (!started.wait_for(2, 10))
                _exit(5);
            // Two run; the third waits for one of them, so cancel takes it back.
            if (!coil__pool_cancel(&jobs[2].job))
                _exit(6);
            g.open_for(2);
            _exit(d.collect(3).size() == 3 ? 0 : 7);
        },
        ::testing::ExitedWithCode(0), "");
}

TEST(EpollPoolDeathTest, AThreadpoolSizeOutsideOneTo128IsIgnoredWithOneMessage)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    for (const char *junk : {"junk", "0", "129", "-3", "4x", " "}) {
        EXPECT_EXIT(
            {
                setenv("COIL_THREADPOOL_SIZE", junk, 1);
                StderrCapture cap;
                unsigned a = coil__pool_size();
                unsigned b = coil__pool_size();
                Done d;
                Job t;
                make(t, d, triple, 1);
                if (coil__pool_submit(&t.job) != 0 || d.collect(1).size() != 1)
                    _exit(2);
                std::string said = cap.text();
                fputs(said.c_str(), stderr);
                if (a != 4 || b != 4)
                    _exit(3);
                size_t first = said.find("COIL_THREADPOOL_SIZE");
                if (first == std::string::npos || said.find("COIL_THREADPOOL_SIZE", first + 1) != std::string::npos)
                    _exit(4);
                _exit(0);
            },
            ::testing::ExitedWithCode(0), "COIL_THREADPOOL_SIZE=.* is not a number in 1\\.\\.128")
            << "COIL_THREADPOOL_SIZE='" << junk << "'";
    }
}

TEST(EpollPoolDeathTest, AProcessExitingWithWorkersLeaksNothing)
{
    // Under ASan, LeakSanitizer checks at exit() and fails the exit status if anything leaked.
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(
        {
            // Held from globals, as a loop's records would be, so what is left is the pool's.
            static Done *d;
            static Gate *g;
            static Job *blocker;
            static Counter started;
            d = new Done;
            g = new Gate;
            std::vector<Job> jobs(20);
            for (Job &t : jobs) {
                make(t, *d, triple, 1);
                if (coil__pool_submit(&t.job) != 0)
                    _exit(2);
            }
            if (d->collect(jobs.size()).size() != jobs.size())
                _exit(3);
            // One worker left blocked in a system call at exit, the others waiting for work.
            blocker = new Job;
            make(*blocker, *d, block_on_gate);
            blocker->gate = g->fds[0];
            blocker->started = &started;
            if (coil__pool_submit(&blocker->job) != 0 || !started.wait_for(1, 10))
                _exit(4);
            exit(0);
        },
        ::testing::ExitedWithCode(0), "");
}

} // namespace
