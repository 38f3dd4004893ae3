// asyncio.Queue / LifoQueue / PriorityQueue semantics (3.13+), shutdown included.
#include <cerrno>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "coil_test.h"

namespace {

void *I(intptr_t v) { return reinterpret_cast<void *>(v); }
intptr_t V(void *p) { return reinterpret_cast<intptr_t>(p); }

bool yield_until(const std::function<bool()> &cond, int max = 1000)
{
    for (int i = 0; i < max && !cond(); i++)
        coil_sleep(0);
    return cond();
}

void finish(coil_task *t)
{
    coil_task_await(t, nullptr);
    coil_task_free(t);
}

coil_queue *fifo(long maxsize)
{
    coil_queue *q = nullptr;
    coil_queue_opts o{};
    o.maxsize = maxsize;
    EXPECT_EQ(coil_queue_new(&q, &o), 0);
    return q;
}

// A task that does one get and records its result.
coil_task *getter(coil_queue *q, int *rc, intptr_t *got, std::vector<int> *order = nullptr, int id = 0)
{
    coil_task *t = nullptr;
    coil_test::spawn(&t, [=]() -> void * {
        void *it = nullptr;
        *rc = coil_queue_get(q, &it);
        if (*rc == 0) {
            *got = V(it);
            if (order)
                order->push_back(id);
        }
        return nullptr;
    });
    return t;
}

coil_task *putter(coil_queue *q, intptr_t v, int *rc, std::vector<int> *order = nullptr)
{
    coil_task *t = nullptr;
    coil_test::spawn(&t, [=]() -> void * {
        *rc = coil_queue_put(q, I(v));
        if (*rc == 0 && order)
            order->push_back(static_cast<int>(v));
        return nullptr;
    });
    return t;
}

TEST(Queue, FifoQueueReturnsItemsInPutOrder)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        for (intptr_t i = 0; i < 100; i++) // crosses several growths and wraps
            EXPECT_EQ(coil_queue_put(q, I(i)), 0);
        for (intptr_t i = 0; i < 50; i++) {
            void *it;
            EXPECT_EQ(coil_queue_get(q, &it), 0);
            EXPECT_EQ(V(it), i);
            EXPECT_EQ(coil_queue_put(q, I(100 + i)), 0);
        }
        for (intptr_t i = 50; i < 150; i++) {
            void *it;
            EXPECT_EQ(coil_queue_get_nowait(q, &it), 0);
            EXPECT_EQ(V(it), i);
        }
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, LifoQueueReturnsTheMostRecentItemFirst)
{
    coil_test::run([] {
        coil_queue *q = nullptr;
        EXPECT_EQ(coil_lifo_queue_new(&q, nullptr), 0);
        for (intptr_t i = 0; i < 40; i++)
            EXPECT_EQ(coil_queue_put(q, I(i)), 0);
        for (intptr_t i = 39; i >= 0; i--) {
            void *it;
            EXPECT_EQ(coil_queue_get(q, &it), 0);
            EXPECT_EQ(V(it), i);
        }
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

struct Prio {
    int prio;
    int tag;
};

int by_prio(const void *a, const void *b, void *)
{
    int pa = static_cast<const Prio *>(a)->prio, pb = static_cast<const Prio *>(b)->prio;
    return (pa > pb) - (pa < pb);
}

TEST(Queue, PriorityQueueReturnsLowestFirstAndEqualPrioritiesInInsertionOrder)
{
    coil_test::run([] {
        coil_queue *q = nullptr;
        coil_queue_opts o{};
        o.compare = by_prio;
        EXPECT_EQ(coil_priority_queue_new(&q, &o), 0);
        std::vector<Prio> items;
        for (int i = 0; i < 60; i++)
            items.push_back(Prio{ (i * 7) % 5, i });
        for (auto &p : items)
            EXPECT_EQ(coil_queue_put(q, &p), 0);
        int last_prio = -1, last_tag = -1;
        for (int i = 0; i < 60; i++) {
            void *it;
            EXPECT_EQ(coil_queue_get(q, &it), 0);
            auto *p = static_cast<Prio *>(it);
            EXPECT_GE(p->prio, last_prio);
            if (p->prio == last_prio) {
                EXPECT_GT(p->tag, last_tag) << "equal priorities must keep insertion order";
            }
            last_prio = p->prio;
            last_tag = p->tag;
        }
        EXPECT_TRUE(coil_queue_empty(q));
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, MaxsizeZeroOrNegativeMeansUnbounded)
{
    coil_test::run([] {
        for (long m : { 0L, -5L }) {
            coil_queue *q = fifo(m);
            EXPECT_EQ(coil_queue_maxsize(q), 0);
            for (intptr_t i = 0; i < 5000; i++)
                EXPECT_EQ(coil_queue_put_nowait(q, I(i)), 0);
            EXPECT_FALSE(coil_queue_full(q));
            EXPECT_EQ(coil_queue_qsize(q), 5000u);
            EXPECT_EQ(coil_queue_free(q), 0);
        }
        return nullptr;
    });
}

TEST(Queue, NowaitCallsFailWithQueueFullAndQueueEmpty)
{
    coil_test::run([] {
        coil_queue *q = fifo(2);
        void *it = I(7);
        EXPECT_EQ(coil_queue_get_nowait(q, &it), COIL_EQUEUEEMPTY);
        EXPECT_EQ(V(it), 7); // untouched on error
        EXPECT_EQ(coil_queue_put_nowait(q, I(1)), 0);
        EXPECT_EQ(coil_queue_put_nowait(q, I(2)), 0);
        EXPECT_EQ(coil_queue_put_nowait(q, I(3)), COIL_EQUEUEFULL);
        EXPECT_EQ(coil_queue_qsize(q), 2u);
        EXPECT_TRUE(coil_queue_full(q));
        EXPECT_FALSE(coil_queue_empty(q));
        EXPECT_EQ(coil_queue_maxsize(q), 2);
        EXPECT_EQ(coil_queue_get_nowait(q, &it), 0);
        EXPECT_EQ(V(it), 1);
        EXPECT_FALSE(coil_queue_full(q));
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, PutBlocksWhileFullAndPuttersResumeInFifoOrder)
{
    coil_test::run([] {
        coil_queue *q = fifo(1);
        EXPECT_EQ(coil_queue_put(q, I(0)), 0);
        std::vector<int> order;
        int rc[3];
        coil_task *ts[3];
        for (int i = 0; i < 3; i++)
            ts[i] = putter(q, i + 1, &rc[i], &order);
        coil_sleep(0);
        EXPECT_TRUE(order.empty());
        for (intptr_t want = 0; want < 4; want++) {
            void *it;
            EXPECT_EQ(coil_queue_get(q, &it), 0);
            EXPECT_EQ(V(it), want);
        }
        for (auto *t : ts)
            finish(t);
        EXPECT_EQ(order, (std::vector<int>{ 1, 2, 3 }));
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, GetBlocksWhileEmptyAndGettersAreServedInFifoOrder)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        std::vector<int> order;
        int rc[3];
        intptr_t got[3];
        coil_task *ts[3];
        for (int i = 0; i < 3; i++)
            ts[i] = getter(q, &rc[i], &got[i], &order, i);
        coil_sleep(0);
        EXPECT_TRUE(order.empty());
        for (intptr_t i = 0; i < 3; i++)
            EXPECT_EQ(coil_queue_put(q, I(10 + i)), 0);
        for (auto *t : ts)
            finish(t);
        EXPECT_EQ(order, (std::vector<int>{ 0, 1, 2 }));
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(rc[i], 0);
            EXPECT_EQ(got[i], 10 + i);
        }
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, ProducerRunsUntilTheQueueIsFullBeforeTheConsumerDrainsIt)
{
    coil_test::run([] {
        coil_queue *q = fifo(4);
        std::string log;
        coil_task *c = nullptr, *p = nullptr;
        coil_test::spawn(&c, [&]() -> void * {
            for (int i = 0; i < 8; i++) {
                void *it;
                EXPECT_EQ(coil_queue_get(q, &it), 0);
                log += 'g';
            }
            return nullptr;
        });
        coil_test::spawn(&p, [&]() -> void * {
            for (int i = 0; i < 8; i++) {
                EXPECT_EQ(coil_queue_put(q, I(i)), 0);
                log += 'p';
            }
            return nullptr;
        });
        finish(c);
        finish(p);
        EXPECT_EQ(log, "ppppggggppppgggg");
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, TaskDoneMoreTimesThanItemsPutIsAnError)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        EXPECT_EQ(coil_queue_task_done(q), -EINVAL);
        EXPECT_EQ(coil_queue_put(q, I(1)), 0);
        EXPECT_EQ(coil_queue_get(q, nullptr), 0);
        EXPECT_EQ(coil_queue_task_done(q), 0);
        EXPECT_EQ(coil_queue_task_done(q), -EINVAL);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, JoinWaitsUntilEveryItemIsMarkedDone)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        EXPECT_EQ(coil_queue_join(q), 0); // nothing unfinished: at once
        for (intptr_t i = 0; i < 3; i++)
            EXPECT_EQ(coil_queue_put(q, I(i)), 0);
        bool joined = false;
        coil_task *j = nullptr;
        coil_test::spawn(&j, [&]() -> void * {
            EXPECT_EQ(coil_queue_join(q), 0);
            joined = true;
            return nullptr;
        });
        for (int i = 0; i < 3; i++) {
            EXPECT_EQ(coil_queue_get(q, nullptr), 0);
            coil_sleep(0);
            EXPECT_FALSE(joined);
            EXPECT_EQ(coil_queue_task_done(q), 0);
        }
        finish(j);
        EXPECT_TRUE(joined);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, CancelledGetterWokenForAnItemLeavesItForTheNextGetter)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        int r1 = 1, r2 = 1;
        intptr_t g1 = -1, g2 = -1;
        coil_task *a = getter(q, &r1, &g1);
        coil_task *b = getter(q, &r2, &g2);
        coil_sleep(0);
        EXPECT_EQ(coil_queue_put(q, I(42)), 0); // wakes a
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1); // before a ran
        finish(a);
        finish(b);
        EXPECT_EQ(r1, -ECANCELED);
        EXPECT_EQ(g1, -1);
        EXPECT_EQ(r2, 0);
        EXPECT_EQ(g2, 42);
        EXPECT_TRUE(coil_queue_empty(q));
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, CancelledGetterLosesNoItem)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        int r1 = 1;
        intptr_t g1 = -1;
        coil_task *a = getter(q, &r1, &g1);
        coil_sleep(0);
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1);
        finish(a);
        EXPECT_EQ(r1, -ECANCELED);
        EXPECT_EQ(coil_queue_put(q, I(5)), 0);
        void *it;
        EXPECT_EQ(coil_queue_get_nowait(q, &it), 0);
        EXPECT_EQ(V(it), 5);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, CancelledPutterInsertsNothingAndPassesItsSlotOn)
{
    coil_test::run([] {
        coil_queue *q = fifo(1);
        EXPECT_EQ(coil_queue_put(q, I(0)), 0);
        int r1 = 1, r2 = 1, r3 = 1;
        coil_task *a = putter(q, 1, &r1);
        coil_task *b = putter(q, 2, &r2);
        coil_task *c = putter(q, 3, &r3);
        coil_sleep(0);
        EXPECT_EQ(coil_task_cancel(a, nullptr), 1); // while waiting
        finish(a);
        EXPECT_EQ(r1, -ECANCELED);
        EXPECT_EQ(coil_queue_qsize(q), 1u);
        void *it;
        EXPECT_EQ(coil_queue_get_nowait(q, &it), 0); // frees the slot, wakes b
        EXPECT_EQ(coil_task_cancel(b, nullptr), 1); // before b ran: c must get the slot
        finish(b);
        finish(c);
        EXPECT_EQ(r2, -ECANCELED);
        EXPECT_EQ(r3, 0);
        EXPECT_EQ(coil_queue_qsize(q), 1u);
        EXPECT_EQ(coil_queue_get_nowait(q, &it), 0);
        EXPECT_EQ(V(it), 3);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, ShutdownFailsBlockedPuttersAndGettersWithQueueShutDown)
{
    coil_test::run([] {
        coil_queue *empty = fifo(0), *full = fifo(1);
        EXPECT_EQ(coil_queue_put(full, I(9)), 0);
        int rg[2], rp[2];
        intptr_t g[2];
        coil_task *gs[2], *ps[2];
        for (int i = 0; i < 2; i++) {
            gs[i] = getter(empty, &rg[i], &g[i]);
            ps[i] = putter(full, i, &rp[i]);
        }
        coil_sleep(0);
        coil_queue_shutdown(empty, false);
        coil_queue_shutdown(full, false);
        for (int i = 0; i < 2; i++) {
            finish(gs[i]);
            finish(ps[i]);
            EXPECT_EQ(rg[i], COIL_EQUEUESHUTDOWN);
            EXPECT_EQ(rp[i], COIL_EQUEUESHUTDOWN);
        }
        EXPECT_EQ(coil_queue_put(empty, I(1)), COIL_EQUEUESHUTDOWN);
        EXPECT_EQ(coil_queue_put_nowait(empty, I(1)), COIL_EQUEUESHUTDOWN);
        EXPECT_EQ(coil_queue_get(empty, nullptr), COIL_EQUEUESHUTDOWN);
        EXPECT_EQ(coil_queue_get_nowait(empty, nullptr), COIL_EQUEUESHUTDOWN);
        void *it;
        EXPECT_EQ(coil_queue_get(full, &it), 0); // what was queued is still delivered
        EXPECT_EQ(V(it), 9);
        EXPECT_EQ(coil_queue_get(full, &it), COIL_EQUEUESHUTDOWN);
        EXPECT_EQ(coil_queue_free(empty), 0);
        EXPECT_EQ(coil_queue_free(full), 0);
        return nullptr;
    });
}

TEST(Queue, ShutdownLetsGettersDrainWhatIsLeftFirst)
{
    coil_test::run([] {
        coil_queue *q = fifo(0);
        for (intptr_t i = 0; i < 3; i++)
            EXPECT_EQ(coil_queue_put(q, I(i)), 0);
        coil_queue_shutdown(q, false);
        EXPECT_EQ(coil_queue_put_nowait(q, I(3)), COIL_EQUEUESHUTDOWN);
        for (intptr_t i = 0; i < 3; i++) {
            void *it;
            EXPECT_EQ(coil_queue_get(q, &it), 0);
            EXPECT_EQ(V(it), i);
            EXPECT_EQ(coil_queue_task_done(q), 0);
        }
        EXPECT_EQ(coil_queue_get(q, nullptr), COIL_EQUEUESHUTDOWN);
        EXPECT_EQ(coil_queue_join(q), 0);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

void count_drop(void *item, void *ctx) { static_cast<std::vector<intptr_t> *>(ctx)->push_back(V(item)); }

TEST(Queue, ImmediateShutdownDiscardsItemsCountsThemDoneAndReleasesJoin)
{
    coil_test::run([] {
        std::vector<intptr_t> dropped;
        coil_queue *q = nullptr;
        coil_queue_opts o{};
        o.drop = count_drop;
        o.ctx = &dropped;
        EXPECT_EQ(coil_queue_new(&q, &o), 0);
        for (intptr_t i = 0; i < 3; i++)
            EXPECT_EQ(coil_queue_put(q, I(i)), 0);
        EXPECT_EQ(coil_queue_get(q, nullptr), 0); // taken, not yet done: join still waits on it
        int rj = 1;
        bool joined = false;
        coil_task *j = nullptr;
        coil_test::spawn(&j, [&]() -> void * {
            rj = coil_queue_join(q);
            joined = true;
            return nullptr;
        });
        coil_sleep(0);
        coil_queue_shutdown(q, true);
        EXPECT_EQ(dropped, (std::vector<intptr_t>{ 1, 2 }));
        EXPECT_TRUE(coil_queue_empty(q));
        EXPECT_EQ(coil_queue_get_nowait(q, nullptr), COIL_EQUEUESHUTDOWN);
        coil_sleep(0);
        EXPECT_FALSE(joined);
        EXPECT_EQ(coil_queue_task_done(q), 0);
        finish(j);
        EXPECT_EQ(rj, 0);
        EXPECT_EQ(coil_queue_task_done(q), -EINVAL);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, FreeDropsItemsStillQueued)
{
    std::vector<intptr_t> dropped;
    coil_test::run([&] {
        coil_queue *q = nullptr;
        coil_queue_opts o{};
        o.drop = count_drop;
        o.ctx = &dropped;
        EXPECT_EQ(coil_lifo_queue_new(&q, &o), 0);
        EXPECT_EQ(coil_queue_put(q, I(1)), 0);
        EXPECT_EQ(coil_queue_put(q, I(2)), 0);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
    EXPECT_EQ(dropped.size(), 2u);
}

TEST(Queue, ErrorsForBadUse)
{
    coil_queue *q = nullptr;
    EXPECT_EQ(coil_priority_queue_new(&q, nullptr), -EINVAL);
    EXPECT_EQ(coil_queue_new(nullptr, nullptr), -EINVAL);
    ASSERT_EQ(coil_queue_new(&q, nullptr), 0);
    EXPECT_EQ(coil_queue_get(q, nullptr), COIL_ENOTASK); // would have to wait outside a task
    EXPECT_EQ(coil_queue_put(nullptr, nullptr), -EINVAL);
    EXPECT_EQ(coil_queue_get(nullptr, nullptr), -EINVAL);
    coil_test::run([&] {
        int rc = 1;
        intptr_t got = 0;
        coil_task *t = getter(q, &rc, &got);
        coil_sleep(0);
        EXPECT_EQ(coil_queue_free(q), -EBUSY);
        EXPECT_EQ(coil_queue_put(q, I(3)), 0);
        EXPECT_EQ(coil_queue_free(q), -EBUSY); // woken, not yet run
        finish(t);
        EXPECT_EQ(got, 3);
        return nullptr;
    });
    EXPECT_EQ(coil_queue_free(q), 0);
    EXPECT_EQ(coil_queue_free(nullptr), 0);
}

TEST(Queue, CompactModeProducerAndConsumerExchangeItemsThroughABoundedQueue)
{
    coil_test::run([] {
        coil_queue *q = fifo(3);
        coil_task_opts o{};
        o.stack_mode = COIL_STACK_COMPACT;
        long sum = 0;
        coil_task *p = nullptr, *c = nullptr;
        coil_test::spawn(&p, [&]() -> void * {
            for (intptr_t i = 1; i <= 100; i++)
                EXPECT_EQ(coil_queue_put(q, I(i)), 0);
            return nullptr;
        }, &o);
        coil_test::spawn(&c, [&]() -> void * {
            for (int i = 0; i < 100; i++) {
                void *it = nullptr; // on the compact stack: written only by this task
                EXPECT_EQ(coil_queue_get(q, &it), 0);
                sum += V(it);
            }
            return nullptr;
        }, &o);
        finish(p);
        finish(c);
        EXPECT_EQ(sum, 5050);
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

TEST(Queue, ManyProducersAndConsumersDeliverEveryItemExactlyOnce)
{
    coil_test::run([] {
        coil_queue *q = fifo(8);
        const int np = 4, per = 500;
        std::vector<int> seen(np * per, 0);
        std::vector<coil_task *> ts;
        for (int p = 0; p < np; p++) {
            coil_task *t = nullptr;
            coil_test::spawn(&t, [&, p]() -> void * {
                for (int i = 0; i < per; i++)
                    EXPECT_EQ(coil_queue_put(q, I(p * per + i)), 0);
                return nullptr;
            });
            ts.push_back(t);
        }
        for (int c = 0; c < 3; c++) {
            coil_task *t = nullptr;
            coil_test::spawn(&t, [&]() -> void * {
                void *it;
                while (coil_queue_get(q, &it) == 0) {
                    seen[V(it)]++;
                    coil_queue_task_done(q);
                    if (V(it) % 7 == 0)
                        coil_sleep(0);
                }
                return nullptr;
            });
            ts.push_back(t);
        }
        for (int p = 0; p < np; p++)
            finish(ts[p]);
        EXPECT_EQ(coil_queue_join(q), 0);
        coil_queue_shutdown(q, false);
        for (size_t i = np; i < ts.size(); i++)
            finish(ts[i]);
        for (int s : seen)
            EXPECT_EQ(s, 1);
        EXPECT_TRUE(yield_until([&] { return coil_queue_empty(q); }));
        EXPECT_EQ(coil_queue_free(q), 0);
        return nullptr;
    });
}

} // namespace
