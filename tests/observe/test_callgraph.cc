// The call graph: who awaits whom, through plain awaits, gather, wait, shield, TaskGroup and
// futures with several waiters; await cycles are shown, not followed. A waiter kind the call graph
// has never heard of shows what it awaits through its own wait_ops.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include <functional>
#include <string>
#include <vector>

#include "coil_test.h"

// The internal header is C11, with no C++ linkage markers; its one C-only spelling has a C++ twin.
// The system headers it pulls in come first, under their own C++ rules.
#include <liburing.h>
#define _Static_assert static_assert
extern "C" {
#include "engine/internal.h"
}
#undef _Static_assert

namespace {

coil_task_opts named(const char *n)
{
    coil_task_opts o{};
    o.name = n;
    return o;
}

void *sleep_long()
{
    coil_sleep(10);
    return nullptr;
}

std::vector<coil_call_graph_entry> capture(coil_task *t)
{
    size_t n = 0;
    EXPECT_EQ(0, coil_task_capture_call_graph(t, nullptr, 0, &n));
    std::vector<coil_call_graph_entry> es(n);
    EXPECT_EQ(0, coil_task_capture_call_graph(t, es.data(), es.size(), &n));
    es.resize(n);
    return es;
}

// Yield until `cond` holds; false if it never did within about a second.
bool wait_until(const std::function<bool()> &cond)
{
    for (int i = 0; i < 1000; i++) {
        if (cond())
            return true;
        coil_sleep(0.001);
    }
    return cond();
}

std::string loop_graph()
{
    char *buf = nullptr;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    EXPECT_EQ(0, coil_loop_print_call_graph(coil_get_running_loop(), f));
    fclose(f);
    std::string s(buf, len);
    free(buf);
    return s;
}

std::string task_graph(coil_task *t)
{
    char *buf = nullptr;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    EXPECT_EQ(0, coil_task_print_call_graph(t, f));
    fclose(f);
    std::string s(buf, len);
    free(buf);
    return s;
}

void finish(coil_task *t)
{
    coil_task_cancel(t, nullptr);
    coil_task_await(t, nullptr);
    coil_task_free(t);
}

TEST(CallGraph, GatherTaskGroupAndShieldNestingsAreFollowedUpToTheRoot)
{
    coil_test::run([]() -> void * {
        static coil_task *leaf;
        leaf = nullptr;
        // top --shield--> outer --gather--> mid --taskgroup--> leaf (sleeping)
        coil_task *top = nullptr;
        coil_task_opts o = named("top");
        coil_test::spawn(&top, []() -> void * {
            coil_task *outer = nullptr;
            coil_task_opts oo = named("outer");
            coil_test::spawn(&outer, []() -> void * {
                coil_task *mid = nullptr;
                coil_task_opts om = named("mid");
                coil_test::spawn(&mid, []() -> void * {
                    coil_taskgroup *g = nullptr;
                    coil_taskgroup_new(&g);
                    coil_taskgroup_enter(g);
                    coil_task_opts ol = named("leaf");
                    coil_taskgroup_create_task(g, &leaf, [](void *) -> void * { return sleep_long(); }, nullptr, &ol);
                    int r = coil_taskgroup_exit(g, 0);
                    coil_task_free(leaf);
                    coil_taskgroup_free(g);
                    return r ? coil_raise(r, nullptr) : nullptr;
                }, &om);
                coil_future *fs[] = { coil_task_future(mid) };
                coil_gather(fs, 1, true, nullptr);
                coil_task_free(mid);
                return nullptr;
            }, &oo);
            coil_shield(coil_task_future(outer), nullptr);
            coil_task_cancel(outer, nullptr);
            coil_task_await(outer, nullptr);
            coil_task_free(outer);
            return nullptr;
        }, &o);
        EXPECT_TRUE(wait_until([] {
            if (!leaf)
                return false;
            auto es = capture(leaf);
            return es.size() >= 4 && es[0].awaiting;
        }));
        auto es = capture(leaf);
        EXPECT_EQ(4u, es.size());
        if (es.size() == 4) {
            EXPECT_STREQ("leaf", es[0].name);
            EXPECT_STREQ("sleep", es[0].awaiting);
            EXPECT_EQ(-1, es[0].parent);
            const char *names[] = { "leaf", "mid", "outer", "top" };
            const char *kinds[] = { "sleep", "taskgroup", "gather", "shield" };
            for (int i = 1; i < 4; i++) {
                EXPECT_STREQ(names[i], es[i].name);
                EXPECT_STREQ(kinds[i], es[i].awaiting);
                EXPECT_STREQ("suspended", es[i].state);
                EXPECT_EQ(i, es[i].depth);
                EXPECT_EQ(i - 1, es[i].parent);
                EXPECT_FALSE(es[i].cycle);
                EXPECT_EQ(coil_task_future(es[i].task), es[i].future);
            }
        }
        std::string tree = loop_graph();
        EXPECT_NE(std::string::npos, tree.find("Task 'top' [suspended: shield]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("    └── Task 'outer' [suspended: gather]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("        └── Task 'mid' [suspended: taskgroup]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("            └── Task 'leaf' [suspended: sleep]")) << tree;
        std::string one = task_graph(leaf);
        EXPECT_NE(std::string::npos, one.find("awaited by Task 'mid'")) << one;
        EXPECT_NE(std::string::npos, one.find("      awaited by Task 'top' [suspended: shield]")) << one;
        finish(top);
        return nullptr;
    });
}

TEST(CallGraph, AFutureWithSeveralWaitersShowsEachOfThem)
{
    coil_test::run([]() -> void * {
        static coil_future *f;
        coil_future_new(&f);
        auto body = []() -> void * {
            coil_future_await(f, nullptr);
            return nullptr;
        };
        coil_task *w1 = nullptr, *w2 = nullptr;
        coil_task_opts o1 = named("w1"), o2 = named("w2");
        coil_test::spawn(&w1, body, &o1);
        coil_test::spawn(&w2, body, &o2);
        coil_sleep(0);
        std::string tree = loop_graph();
        EXPECT_NE(std::string::npos, tree.find("└── Task 'w1' [suspended: future]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("└── Task 'w2' [suspended: future]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("[pending] (awaited by 'w1' 'w2')")) << tree;
        coil_future_set_result(f, nullptr);
        EXPECT_EQ(0, coil_task_await(w1, nullptr));
        EXPECT_EQ(0, coil_task_await(w2, nullptr));
        coil_task_free(w1);
        coil_task_free(w2);
        coil_future_free(f);
        return nullptr;
    });
}

TEST(CallGraph, AnAwaitCycleIsDetectedAndShownOnce)
{
    coil_test::run([]() -> void * {
        static coil_task *a, *b;
        a = b = nullptr;
        coil_task_opts oa = named("A"), ob = named("B");
        // A waits on B (with a timeout, which breaks the cycle later), B awaits A.
        coil_test::spawn(&a, []() -> void * {
            coil_sleep(0);
            coil_future *fs[] = { coil_task_future(b) };
            coil_wait(fs, 1, 0.3, COIL_ALL_COMPLETED, nullptr, nullptr, nullptr, nullptr);
            return nullptr;
        }, &oa);
        coil_test::spawn(&b, []() -> void * {
            coil_task_await(a, nullptr);
            return nullptr;
        }, &ob);
        EXPECT_TRUE(wait_until([] { return capture(a).size() >= 3; }));
        auto es = capture(a);
        EXPECT_EQ(3u, es.size());
        if (es.size() == 3) {
            EXPECT_STREQ("A", es[0].name);
            EXPECT_STREQ("wait", es[0].awaiting);
            EXPECT_STREQ("B", es[1].name);
            EXPECT_STREQ("task", es[1].awaiting);
            EXPECT_FALSE(es[1].cycle);
            EXPECT_STREQ("A", es[2].name);
            EXPECT_TRUE(es[2].cycle);
        }
        std::string tree = loop_graph();
        EXPECT_NE(std::string::npos, tree.find("(await cycle: already shown above)")) << tree;
        EXPECT_NE(std::string::npos, tree.find("Task 'A' [suspended: wait]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("Task 'B' [suspended: task]")) << tree;
        EXPECT_NE(std::string::npos, task_graph(a).find("(await cycle)"));
        EXPECT_EQ(0, coil_task_await(b, nullptr));
        EXPECT_EQ(0, coil_task_await(a, nullptr));
        coil_task_free(a);
        coil_task_free(b);
        return nullptr;
    });
}

TEST(CallGraph, WaitAndAsCompletedShowWhatTheyStillWaitOn)
{
    coil_test::run([]() -> void * {
        coil_task *s1 = nullptr, *s2 = nullptr, *w = nullptr;
        coil_task_opts o1 = named("s1"), o2 = named("s2"), ow = named("waiter");
        coil_test::spawn(&s1, [] { return sleep_long(); }, &o1);
        coil_test::spawn(&s2, [] { return sleep_long(); }, &o2);
        static coil_future *fs[2];
        fs[0] = coil_task_future(s1);
        fs[1] = coil_task_future(s2);
        coil_test::spawn(&w, []() -> void * {
            coil_as_completed_iter *it = nullptr;
            coil_as_completed(fs, 2, 10, &it);
            coil_future *f = nullptr;
            coil_as_completed_next(it, &f);
            coil_as_completed_free(it);
            return nullptr;
        }, &ow);
        EXPECT_TRUE(wait_until([&] { return capture(s2).size() >= 2; }));
        auto es = capture(s1);
        EXPECT_EQ(2u, es.size());
        if (es.size() == 2) {
            EXPECT_STREQ("waiter", es[1].name);
            EXPECT_STREQ("as_completed", es[1].awaiting);
        }
        finish(w);
        finish(s1);
        finish(s2);
        return nullptr;
    });
}

// A waiter kind defined here, unknown to the library: it waits on two tasks at once and says so
// through its ops' awaits hook, the one way the call graph learns what a wait is on.
struct pair_wait {
    coil__aw *on[2];
};

size_t pair_awaits(const void *obj, coil__aw **out, size_t max)
{
    const pair_wait *w = static_cast<const pair_wait *>(obj);
    for (size_t i = 0; i < 2 && i < max; i++)
        out[i] = w->on[i];
    return 2;
}

void pair_cancel(coil_task *t) { coil__task_wake(t, -ECANCELED); }

coil__wait_ops pair_ops()
{
    coil__wait_ops o{};
    o.what = "test pair";
    o.cancel = pair_cancel;
    o.late_cancel_wins = true;
    o.awaits = pair_awaits;
    return o;
}

TEST(CallGraph, AWaiterKindUnknownToTheLibraryShowsWhatItAwaitsThroughItsOps)
{
    coil_test::run([]() -> void * {
        static coil_task *s1, *s2;
        s1 = s2 = nullptr;
        coil_task *w = nullptr;
        coil_task_opts o1 = named("s1"), o2 = named("s2"), ow = named("pair");
        coil_test::spawn(&s1, [] { return sleep_long(); }, &o1);
        coil_test::spawn(&s2, [] { return sleep_long(); }, &o2);
        coil_test::spawn(&w, []() -> void * {
            static const coil__wait_ops ops = pair_ops();
            pair_wait pw{ { &s1->aw, &s2->aw } };
            int r = coil__task_suspend(&ops, &pw);
            return r == -ECANCELED ? nullptr : coil_raise(r, nullptr);
        }, &ow);
        EXPECT_TRUE(wait_until([&] { return capture(s2).size() >= 2; }));
        for (coil_task *s : { s1, s2 }) {
            auto es = capture(s);
            EXPECT_EQ(2u, es.size());
            if (es.size() == 2) {
                EXPECT_STREQ("pair", es[1].name);
                EXPECT_STREQ("test pair", es[1].awaiting);
                EXPECT_EQ(0, es[1].parent);
            }
        }
        std::string tree = loop_graph();
        EXPECT_NE(std::string::npos, tree.find("Task 'pair' [suspended: test pair]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("    ├── Task 's1' [suspended: sleep]")) << tree;
        EXPECT_NE(std::string::npos, tree.find("    └── Task 's2' [suspended: sleep]")) << tree;
        EXPECT_NE(std::string::npos, task_graph(s1).find("awaited by Task 'pair' [suspended: test pair]"))
            << task_graph(s1);
        finish(w);
        finish(s1);
        finish(s2);
        return nullptr;
    });
}

TEST(CallGraph, ADoneTaskIsItsOwnWholeGraphAndBadArgumentsAreRejected)
{
    coil_test::run([]() -> void * {
        coil_task *t = nullptr;
        coil_test::spawn(&t, []() -> void * { return nullptr; });
        EXPECT_EQ(0, coil_task_await(t, nullptr));
        auto es = capture(t);
        EXPECT_EQ(1u, es.size());
        if (!es.empty()) {
            EXPECT_STREQ("done", es[0].state);
        }
        size_t n;
        EXPECT_EQ(-EINVAL, coil_task_capture_call_graph(nullptr, nullptr, 0, &n));
        EXPECT_EQ(-EINVAL, coil_task_capture_call_graph(t, nullptr, 4, &n));
        EXPECT_EQ(-EINVAL, coil_task_print_call_graph(t, nullptr));
        EXPECT_EQ(-EINVAL, coil_loop_print_call_graph(nullptr, stdout));
        coil_task_free(t);
        return nullptr;
    });
}

} // namespace
