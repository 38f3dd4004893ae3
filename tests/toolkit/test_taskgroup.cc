// TaskGroup (CPython taskgroups.py): exit waits for all; the first failure cancels the rest and
// the body; failures come back as an exception group; outside cancellation; nesting.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }

struct Child {
    double sleep_s;
    int fail;           // raise this after sleeping, 0 = return normally
    int seen = 1;       // what the sleep returned
    bool finished = false;
};

void *child(void *arg)
{
    auto *c = static_cast<Child *>(arg);
    c->seen = coil_sleep(c->sleep_s);
    c->finished = true;
    if (c->seen)
        return coil_raise(c->seen, nullptr);
    if (c->fail)
        return coil_raise(c->fail, "child failed after %g s", c->sleep_s);
    return as_ptr(1);
}

TEST(TaskGroup, ExitWaitsForEveryChild)
{
    coil_test::run([]() -> void * {
        Child a{ 0.002, 0 }, b{ 0.004, 0 };
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &a, nullptr), 0);
        coil_task *tb = nullptr;
        EXPECT_EQ(coil_taskgroup_create_task(g, &tb, child, &b, nullptr), 0);
        EXPECT_EQ(coil_taskgroup_exit(g, 0), 0);
        EXPECT_TRUE(a.finished && b.finished);
        EXPECT_TRUE(coil_task_done(tb));
        EXPECT_EQ(coil_taskgroup_exception(g), nullptr);
        coil_task_free(tb);
        coil_taskgroup_free(g);
        return nullptr;
    });
}

TEST(TaskGroup, AChildFailureCancelsItsSiblingsAndTheBody)
{
    coil_test::run([]() -> void * {
        Child bad{ 0.001, -EIO }, sibling{ 10, 0 };
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &bad, nullptr), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &sibling, nullptr), 0);
        int body = coil_sleep(10); // the body is cancelled by the failure
        EXPECT_EQ(body, -ECANCELED);
        EXPECT_EQ(coil_taskgroup_exit(g, body), COIL_EGROUP);
        EXPECT_EQ(sibling.seen, -ECANCELED);
        const coil_exception *e = coil_taskgroup_exception(g);
        EXPECT_EQ(coil_exception_code(e), COIL_EGROUP);
        EXPECT_EQ(coil_exception_count(e), 1u);
        EXPECT_EQ(coil_exception_code(coil_exception_child(e, 0)), -EIO);
        EXPECT_STREQ(coil_exception_message(coil_exception_child(e, 0)), "child failed after 0.001 s");
        // The group's own cancellation of the body was taken back.
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &bad, nullptr), COIL_ECLOSED);
        coil_taskgroup_free(g);
        return nullptr;
    });
}

TEST(TaskGroup, EveryChildFailureIsListedInTheOrderTheyHappened)
{
    coil_test::run([]() -> void * {
        // Both only yield, so both resume in the same iteration, in creation order, and both fail
        // before the group's done callbacks (queued behind them) can cancel either.
        Child a{ 0, -EPIPE }, b{ 0, -ENOENT };
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &a, nullptr), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &b, nullptr), 0);
        int body = coil_sleep(10);
        EXPECT_EQ(body, -ECANCELED);
        EXPECT_EQ(coil_taskgroup_exit(g, body), COIL_EGROUP);
        const coil_exception *e = coil_taskgroup_exception(g);
        EXPECT_EQ(coil_exception_count(e), 2u);
        EXPECT_EQ(coil_exception_code(coil_exception_child(e, 0)), -EPIPE);
        EXPECT_EQ(coil_exception_code(coil_exception_child(e, 1)), -ENOENT);
        EXPECT_EQ(coil_task_cancelling(coil_current_task()), 0);
        coil_taskgroup_free(g);
        return nullptr;
    });
}

TEST(TaskGroup, ABodyErrorCancelsTheChildren)
{
    coil_test::run([]() -> void * {
        Child c{ 10, 0 };
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &c, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_taskgroup_exit(g, -EINVAL), COIL_EGROUP);
        EXPECT_EQ(c.seen, -ECANCELED);
        const coil_exception *e = coil_taskgroup_exception(g);
        EXPECT_EQ(coil_exception_count(e), 1u);
        EXPECT_EQ(coil_exception_code(coil_exception_child(e, 0)), -EINVAL);
        coil_taskgroup_free(g);
        return nullptr;
    });
}

TEST(TaskGroup, CancellationFromOutsideCancelsEveryChildAndExitReturnsCancelled)
{
    coil_test::run([]() -> void * {
        Child a{ 10, 0 }, b{ 10, 0 };
        int exit_rc = 1, cancelling = -1;
        coil_task *body = nullptr;
        EXPECT_EQ(coil_test::spawn(&body, [&]() -> void * {
            coil_taskgroup *g = nullptr;
            EXPECT_EQ(coil_taskgroup_new(&g), 0);
            EXPECT_EQ(coil_taskgroup_enter(g), 0);
            EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &a, nullptr), 0);
            EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &b, nullptr), 0);
            exit_rc = coil_taskgroup_exit(g, coil_sleep(10));
            cancelling = coil_task_cancelling(coil_current_task());
            coil_taskgroup_free(g);
            return coil_raise(exit_rc, nullptr);
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(body, nullptr), 1);
        EXPECT_EQ(coil_task_await(body, nullptr), -ECANCELED);
        EXPECT_EQ(exit_rc, -ECANCELED);
        EXPECT_EQ(a.seen, -ECANCELED);
        EXPECT_EQ(b.seen, -ECANCELED);
        EXPECT_EQ(cancelling, 1);
        coil_task_free(body);
        return nullptr;
    });
}

TEST(TaskGroup, CancellingTheBodyWhileExitWaitsCancelsTheChildren)
{
    coil_test::run([]() -> void * {
        Child a{ 10, 0 };
        int exit_rc = 1;
        coil_task *body = nullptr;
        EXPECT_EQ(coil_test::spawn(&body, [&]() -> void * {
            coil_taskgroup *g = nullptr;
            EXPECT_EQ(coil_taskgroup_new(&g), 0);
            EXPECT_EQ(coil_taskgroup_enter(g), 0);
            EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &a, nullptr), 0);
            exit_rc = coil_taskgroup_exit(g, 0);
            coil_taskgroup_free(g);
            return nullptr;
        }), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        EXPECT_EQ(coil_task_cancel(body, nullptr), 1);
        EXPECT_EQ(coil_task_await(body, nullptr), 0);
        EXPECT_EQ(exit_rc, -ECANCELED);
        EXPECT_EQ(a.seen, -ECANCELED);
        coil_task_free(body);
        return nullptr;
    });
}

Child inner_bad{ 0, -EIO };

void *runs_inner_group(void *)
{
    coil_taskgroup *g = nullptr;
    if (coil_taskgroup_new(&g) != 0 || coil_taskgroup_enter(g) != 0)
        return coil_raise(-ENOMEM, "group");
    coil_taskgroup_create_task(g, nullptr, child, &inner_bad, nullptr);
    int r = coil_taskgroup_exit(g, 0);
    void *ret = r == COIL_EGROUP ? coil_taskgroup_raise(g) : coil_raise(-EINVAL, "expected a group");
    coil_taskgroup_free(g);
    return ret;
}

TEST(TaskGroup, NestedGroupsNestTheirExceptionGroups)
{
    coil_test::run([]() -> void * {
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_taskgroup_create_task(g, &t, runs_inner_group, nullptr, nullptr), 0);
        int body = coil_sleep(10);
        EXPECT_EQ(coil_taskgroup_exit(g, body), COIL_EGROUP);
        const coil_exception *e = coil_taskgroup_exception(g);
        EXPECT_EQ(coil_exception_count(e), 1u);
        const coil_exception *inner = coil_exception_child(e, 0);
        EXPECT_EQ(coil_exception_code(inner), COIL_EGROUP);
        EXPECT_EQ(coil_exception_count(inner), 1u);
        EXPECT_EQ(coil_exception_code(coil_exception_child(inner, 0)), -EIO);
        // The child task still tells what happened when awaited directly.
        EXPECT_EQ(coil_task_await(t, nullptr), COIL_EGROUP);
        EXPECT_EQ(coil_exception_count(coil_task_exception(t)), 1u);
        coil_task_free(t);
        coil_taskgroup_free(g);
        return nullptr;
    });
}

TEST(TaskGroup, CreatingATaskOutsideTheGroupsLifetimeIsAnError)
{
    coil_test::run([]() -> void * {
        Child c{ 0, 0 };
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &c, nullptr), COIL_EINVALSTATE);
        EXPECT_EQ(coil_taskgroup_exit(g, 0), COIL_EINVALSTATE);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), COIL_EINVALSTATE);
        EXPECT_EQ(coil_taskgroup_exit(g, 0), 0);
        EXPECT_EQ(coil_taskgroup_create_task(g, nullptr, child, &c, nullptr), COIL_ECLOSED);
        EXPECT_EQ(coil_taskgroup_exit(g, 0), COIL_EINVALSTATE);
        coil_taskgroup_free(g);
        EXPECT_EQ(coil_taskgroup_new(nullptr), -EINVAL);
        return nullptr;
    });
    coil_taskgroup *g = nullptr;
    EXPECT_EQ(coil_taskgroup_new(&g), 0);
    EXPECT_EQ(coil_taskgroup_enter(g), COIL_ENOTASK);
    coil_taskgroup_free(g);
}

TEST(TaskGroup, AGroupFreedWithoutExitCancelsItsChildren)
{
    coil_test::run([]() -> void * {
        Child c{ 10, 0 };
        coil_taskgroup *g = nullptr;
        EXPECT_EQ(coil_taskgroup_new(&g), 0);
        EXPECT_EQ(coil_taskgroup_enter(g), 0);
        coil_task *t = nullptr;
        EXPECT_EQ(coil_taskgroup_create_task(g, &t, child, &c, nullptr), 0);
        EXPECT_EQ(coil_sleep(0), 0);
        coil_taskgroup_free(g);
        EXPECT_EQ(coil_task_await(t, nullptr), -ECANCELED);
        coil_task_free(t);
        return nullptr;
    });
}

} // namespace
