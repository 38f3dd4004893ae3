// Short tasks run back to back on one stack: a task that has never run may start on the stack a
// task of the same batch just finished with. Whatever takes that path must behave exactly as if
// each task had gone through the scheduler.
#include <gtest/gtest.h>

#include <pthread.h>

#include <cerrno>
#include <cstdint>
#include <string>
#include <vector>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t as_int(void *p) { return reinterpret_cast<intptr_t>(p); }

std::vector<coil_task *> g_tasks;
std::string g_order;

void *check_self(void *arg)
{
    intptr_t i = as_int(arg);
    if (coil_current_task() != g_tasks[static_cast<size_t>(i)])
        return coil_raise(-EIO, "task %ld sees another task as current", static_cast<long>(i));
    return as_ptr(i * 3);
}

TEST(TaskChain, BackToBackTasksEachSeeThemselvesAsCurrentAndReturnTheirOwnResult)
{
    coil_test::run([]() -> void * {
        g_tasks.assign(1000, nullptr);
        for (size_t i = 0; i < g_tasks.size(); i++)
            EXPECT_EQ(coil_create_task(&g_tasks[i], check_self, as_ptr(static_cast<intptr_t>(i)), nullptr), 0);
        for (size_t i = 0; i < g_tasks.size(); i++) {
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(g_tasks[i], &r), 0);
            EXPECT_EQ(as_int(r), static_cast<intptr_t>(i) * 3);
            coil_task_free(g_tasks[i]);
        }
        return nullptr;
    });
}

void *record(void *arg)
{
    g_order += static_cast<char>('0' + as_int(arg));
    return nullptr;
}

TEST(TaskChain, TheAwaiterWokenByTheFirstTaskStillRunsAfterTheRestOfTheBatch)
{
    coil_test::run([]() -> void * {
        g_order.clear();
        coil_task *ts[5];
        for (int i = 0; i < 5; i++)
            coil_create_task(&ts[i], record, as_ptr(i), nullptr);
        EXPECT_EQ(coil_task_await(ts[0], nullptr), 0);
        g_order += 'M';
        for (auto *t : ts) {
            EXPECT_EQ(coil_task_await(t, nullptr), 0);
            coil_task_free(t);
        }
        EXPECT_EQ(g_order, "01234M"); // asyncio's FIFO: the woken awaiter queues behind the batch
        return nullptr;
    });
}

constexpr size_t kDeep = 120 * 1024; // most of a 128 KiB default stack

__attribute__((noinline)) void *use_most_of_the_stack(void *arg)
{
    volatile unsigned char big[kDeep];
    for (size_t i = 0; i < kDeep; i += 512)
        big[i] = static_cast<unsigned char>(i);
    return as_ptr(as_int(arg) + big[512]);
}

TEST(TaskChain, EachTaskStartsAtTheTopOfTheStackItInherits)
{
    // If a chained task started below its predecessor's frames, a few of these would overflow.
    coil_test::run([]() -> void * {
        std::vector<coil_task *> ts(64);
        for (size_t i = 0; i < ts.size(); i++)
            coil_create_task(&ts[i], use_most_of_the_stack, as_ptr(static_cast<intptr_t>(i)), nullptr);
        for (size_t i = 0; i < ts.size(); i++) {
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(ts[i], &r), 0);
            EXPECT_EQ(as_int(r), static_cast<intptr_t>(i) + 0);
            coil_task_free(ts[i]);
        }
        return nullptr;
    });
}

constexpr size_t kHuge = 800 * 1024;

__attribute__((noinline)) void *use_a_huge_stack(void *)
{
    volatile unsigned char big[kHuge];
    for (size_t i = 0; i < kHuge; i += 512)
        big[i] = 1;
    return as_ptr(big[kHuge - 512]);
}

TEST(TaskChain, ATaskWithItsOwnStackSizeNeverInheritsADefaultStack)
{
    coil_test::run([]() -> void * {
        coil_task *a = nullptr, *b = nullptr;
        coil_create_task(&a, record, as_ptr(0), nullptr);
        coil_task_opts o{};
        o.stack_size = 1024 * 1024;
        coil_create_task(&b, use_a_huge_stack, nullptr, &o);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(b, &r), 0);
        EXPECT_EQ(as_int(r), 1);
        coil_task_free(a);
        coil_task_free(b);
        return nullptr;
    });
}

bool g_ran;

void *must_not_run(void *)
{
    g_ran = true;
    return nullptr;
}

TEST(TaskChain, ATaskCancelledBeforeItStartsNeverStarts)
{
    coil_test::run([]() -> void * {
        g_ran = false;
        coil_task *a = nullptr, *b = nullptr, *c = nullptr;
        coil_create_task(&a, record, as_ptr(0), nullptr);
        coil_create_task(&b, must_not_run, nullptr, nullptr);
        coil_create_task(&c, record, as_ptr(2), nullptr);
        coil_task_cancel(b, nullptr);
        EXPECT_EQ(coil_task_await(c, nullptr), 0);
        EXPECT_EQ(coil_task_await(b, nullptr), -ECANCELED);
        EXPECT_TRUE(coil_task_cancelled(b));
        EXPECT_FALSE(g_ran);
        for (auto *t : {a, b, c})
            coil_task_free(t);
        return nullptr;
    });
}

int g_reports;
int g_reported_code;

void count_reports(coil_loop *, const coil_exc_context *ctx, void *)
{
    g_reports++;
    g_reported_code = ctx->code;
}

void *fail(void *) { return coil_raise(-EPROTO, "failed on purpose"); }

TEST(TaskChain, AFailureNobodyRetrievesStillReachesTheExceptionHandler)
{
    coil_test::run([]() -> void * {
        g_reports = 0;
        g_order.clear();
        coil_loop_set_exception_handler(coil_get_running_loop(), count_reports, nullptr);
        coil_create_task(nullptr, fail, nullptr, nullptr); // detached: freed unretrieved
        coil_task *b = nullptr;
        coil_create_task(&b, record, as_ptr(1), nullptr);
        EXPECT_EQ(coil_task_await(b, nullptr), 0);
        coil_task_free(b);
        EXPECT_EQ(g_reports, 1);
        EXPECT_EQ(g_reported_code, -EPROTO);
        EXPECT_EQ(g_order, "1");
        coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr);
        return nullptr;
    });
}

void *record_e(void *)
{
    g_order += 'E';
    return nullptr;
}

int g_reports_off_thread_stack;

// Is `p` on this thread's own stack (the scheduler's), rather than on a task's mapped stack?
bool on_thread_stack(const void *p)
{
    pthread_attr_t attr;
    void *lo = nullptr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &attr) != 0)
        return false;
    pthread_attr_getstack(&attr, &lo, &size);
    pthread_attr_destroy(&attr);
    return p >= lo && static_cast<const char *>(p) < static_cast<const char *>(lo) + size;
}

void start_eager_task(coil_loop *, const coil_exc_context *, void *)
{
    g_reports++;
    int here = 0;
    // The report of a task that finished with an exception comes from the scheduler: finishing
    // on a task's stack (the hand-over) is only for tasks whose finish runs no user code.
    if (!on_thread_stack(&here))
        g_reports_off_thread_stack++;
    coil_task_opts o{};
    o.eager = true;
    coil_create_task(nullptr, record_e, nullptr, &o);
}

TEST(TaskChain, AnExceptionHandlerThatStartsAnEagerTaskRunsItSafely)
{
    // The report runs wherever the failed task is finished; an eager task started from there
    // must not be run as if from the scheduler's stack while on a task's.
    coil_test::run([]() -> void * {
        g_reports = 0;
        g_reports_off_thread_stack = 0;
        g_order.clear();
        coil_loop_set_exception_handler(coil_get_running_loop(), start_eager_task, nullptr);
        for (int round = 0; round < 3; round++) {
            coil_create_task(nullptr, fail, nullptr, nullptr);
            coil_task *b = nullptr;
            coil_create_task(&b, record, as_ptr(round), nullptr);
            EXPECT_EQ(coil_task_await(b, nullptr), 0);
            coil_task_free(b);
        }
        EXPECT_EQ(g_reports, 3);
        EXPECT_EQ(g_reports_off_thread_stack, 0);
        EXPECT_EQ(g_order, "E0E1E2");
        coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr);
        return nullptr;
    });
}

void note_done(coil_future *, void *arg) { g_order += static_cast<char>('a' + as_int(arg)); }

TEST(TaskChain, DoneCallbacksStillRunFromTheLoopInOrder)
{
    coil_test::run([]() -> void * {
        g_order.clear();
        coil_task *a = nullptr, *b = nullptr;
        coil_create_task(&a, record, as_ptr(0), nullptr);
        coil_task_add_done_callback(a, note_done, as_ptr(0));
        coil_create_task(&b, record, as_ptr(1), nullptr);
        coil_task_add_done_callback(b, note_done, as_ptr(1));
        EXPECT_EQ(coil_task_await(b, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        // As in asyncio: both bodies in creation order, each done callback scheduled after its
        // task finished, run in the order they were scheduled.
        EXPECT_EQ(g_order, "01ab");
        coil_task_free(a);
        coil_task_free(b);
        return nullptr;
    });
}

void *times7(void *arg) { return as_ptr(as_int(arg) * 7); }

void *yield_then_return(void *arg)
{
    volatile intptr_t keep = as_int(arg) * 7; // a local that must survive the suspension
    if (coil_sleep(0) != 0)
        return coil_raise(-EIO, "yield");
    return as_ptr(keep);
}

TEST(TaskChain, CompactAndSuspendingTasksMixedWithShortOnesKeepTheirFrames)
{
    coil_test::run([]() -> void * {
        std::vector<coil_task *> ts(300);
        for (size_t i = 0; i < ts.size(); i++) {
            coil_task_opts o{};
            o.stack_mode = i % 3 == 1 ? COIL_STACK_COMPACT : COIL_STACK_AUTO;
            coil_create_task(&ts[i], i % 2 ? yield_then_return : times7, as_ptr(static_cast<intptr_t>(i)), &o);
        }
        for (size_t i = 0; i < ts.size(); i++) {
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(ts[i], &r), 0) << i;
            EXPECT_EQ(as_int(r), static_cast<intptr_t>(i) * 7) << i;
            coil_task_free(ts[i]);
        }
        return nullptr;
    });
}

TEST(TaskChain, ANewTaskAfterAResumedCompactTaskGetsItsOwnStack)
{
    // A compact task keeps its saved frames where a dedicated one keeps its stack: when one that
    // was evicted and brought back finishes, it has no stack of its own to hand over, and the
    // new task after it must not be given its save buffer as one (nor run on the shared stack).
    coil_test::run([]() -> void * {
        for (int round = 0; round < 50; round++) {
            coil_task_opts compact{};
            compact.stack_mode = COIL_STACK_COMPACT;
            coil_task *a = nullptr, *b = nullptr, *c = nullptr, *d = nullptr;
            EXPECT_EQ(coil_create_task(&a, yield_then_return, as_ptr(round), &compact), 0);
            EXPECT_EQ(coil_create_task(&d, times7, as_ptr(round + 3000), &compact), 0);
            EXPECT_EQ(coil_sleep(0), 0); // a ran up to its yield, d evicted it and returned
            // b is queued behind a; c (compact) runs while b is suspended.
            EXPECT_EQ(coil_create_task(&b, yield_then_return, as_ptr(round + 1000), nullptr), 0);
            EXPECT_EQ(coil_create_task(&c, yield_then_return, as_ptr(round + 2000), &compact), 0);
            void *r = nullptr;
            EXPECT_EQ(coil_task_await(a, &r), 0);
            EXPECT_EQ(as_int(r), round * 7);
            EXPECT_EQ(coil_task_await(b, &r), 0);
            EXPECT_EQ(as_int(r), (round + 1000) * 7);
            EXPECT_EQ(coil_task_await(c, &r), 0);
            EXPECT_EQ(as_int(r), (round + 2000) * 7);
            EXPECT_EQ(coil_task_await(d, &r), 0);
            EXPECT_EQ(as_int(r), (round + 3000) * 7);
            for (auto *t : {a, b, c, d})
                coil_task_free(t);
        }
        return nullptr;
    });
}

} // namespace
