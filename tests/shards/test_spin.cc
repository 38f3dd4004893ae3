// The spin a loop makes on its inbox before it sleeps: learnt from what followed the last ones.
// Requests a few microseconds apart are answered without a wake-up; a producer on the loop's own
// CPU (which cannot post while the loop spins) turns the spin off; rare requests let it decay.
#include <gtest/gtest.h>

#include <pthread.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <thread>

#include <coil/coil.h>

#include "coil_test.h"
#include "inbox_debug.h"
#include "shards_test_util.h"

namespace {

using coil_test::mono_ns;

void pin(pthread_t th, int cpu)
{
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    pthread_setaffinity_np(th, sizeof one, &one);
}

// A CPU of this process's mask other than `cpu`, or -1.
int other_cpu(int cpu)
{
    cpu_set_t allowed;
    if (sched_getaffinity(0, sizeof allowed, &allowed) != 0)
        return -1;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (c != cpu && CPU_ISSET(c, &allowed))
            return c;
    return -1;
}

// The loop's spin budget as the last request found it: learnt from the wait that request ended
// (read on the loop's thread; what comes after the last request would change it again).
unsigned g_budget;

void *echo(void *arg)
{
    g_budget = coil__loop_inbox_spin_budget(coil_get_running_loop());
    return arg;
}

struct Phase {
    int rounds;
    uint64_t pause_ns; // the producer's pause before each request, on the clock
};

struct Outcome {
    uint64_t wakes = 0;    // wake-ups the producer sent during the last phase
    unsigned budget = 0;   // the loop's spin budget when the last request came
    int err = 0;
};

// On a fresh loop pinned to its CPU, a producer pinned to `producer_cpu` (-2: the loop's own)
// makes round trips phase by phase; the loop's main task only awaits the end.
Outcome round_trips(int producer_cpu, std::initializer_list<Phase> phases)
{
    Outcome out;
    coil_test::run(
        [&]() -> void * {
            coil_loop *loop = coil_get_running_loop();
            reachable_from_threads(loop);
            int here = sched_getcpu();
            int cpu = producer_cpu == -2 ? here : other_cpu(here);
            cpu_set_t was;
            sched_getaffinity(0, sizeof was, &was);
            pin(pthread_self(), here);
            coil_future *done;
            coil_future_new(&done);
            std::thread th([&] {
                pin(pthread_self(), cpu);
                for (const Phase &p : phases) {
                    coil__xstats x0;
                    coil__loop_xstats(loop, &x0); // only the producers' counter is read here
                    uint64_t w0 = x0.wakes_sent_here;
                    for (int i = 0; i < p.rounds && !out.err; i++) {
                        for (uint64_t until = mono_ns() + p.pause_ns; p.pause_ns && mono_ns() < until;) {
                        }
                        coil_cfuture *cf;
                        out.err = coil_run_coroutine_threadsafe(loop, echo, (void *)(intptr_t)i, &cf);
                        void *r = nullptr;
                        if (!out.err)
                            out.err = coil_cfuture_result(cf, 10 * coil_test::time_scale(), &r);
                        if (!out.err && (intptr_t)r != i)
                            out.err = -EIO;
                        if (cf)
                            coil_cfuture_free(cf);
                    }
                    coil__xstats x1;
                    coil__loop_xstats(loop, &x1);
                    out.wakes = x1.wakes_sent_here - w0;
                }
                coil_loop_call_soon_threadsafe(
                    loop, [](void *f) { return coil_future_set_result((coil_future *)f, nullptr); }, done);
            });
            EXPECT_EQ(coil_future_await(done, nullptr), 0);
            th.join();
            out.budget = g_budget;
            pthread_setaffinity_np(pthread_self(), sizeof was, &was);
            coil_future_free(done);
            return nullptr;
        },
        60);
    return out;
}

bool two_cpus() { return other_cpu(sched_getcpu()) >= 0; }

TEST(Spin, RequestsAFewMicrosecondsApartAreAnsweredWithoutWakingTheLoop)
{
    if (!two_cpus())
        GTEST_SKIP() << "needs two CPUs";
#if defined(COIL_TEST_TSAN)
    // The rule is about microseconds: ThreadSanitizer stretches a round trip past the spin's cap.
    GTEST_SKIP() << "timing rule, meaningless under ThreadSanitizer's slowdown";
#endif
    Outcome o = round_trips(0, { { 200, 5000 }, { 1000, 5000 } });
    ASSERT_EQ(o.err, 0);
    EXPECT_LT(o.wakes, 500u) << "most of 1000 requests found the loop asleep: it never learnt to spin";
}

TEST(Spin, AProducerOnTheLoopsOwnCpuTurnsTheSpinOff)
{
    Outcome o = round_trips(-2, { { 300, 0 } });
    ASSERT_EQ(o.err, 0);
    EXPECT_EQ(o.budget, 0u) << "the loop spins while the only producer waits for its CPU";
}

TEST(Spin, AfterRequestsStopComingOftenTheSpinDecaysToNothing)
{
    if (!two_cpus())
        GTEST_SKIP() << "needs two CPUs";
    Outcome o = round_trips(0, { { 300, 5000 }, { 20, 2000000 } });
    ASSERT_EQ(o.err, 0);
    EXPECT_EQ(o.budget, 0u) << "the loop still spins for requests that come every 2 ms";
}

} // namespace
