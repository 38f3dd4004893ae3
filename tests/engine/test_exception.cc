// Exceptions: coil_raise and its payloads, what awaiting and coil_task_exception report, the
// "never retrieved" report to the loop's exception handler, and error names and texts.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>

#include "coil_test.h"

namespace {

void *as_ptr(intptr_t v) { return reinterpret_cast<void *>(v); }

template <class Pred> bool yield_until(Pred pred, int limit = 10000)
{
    for (int i = 0; i < limit; i++) {
        if (pred())
            return true;
        if (coil_sleep(0) != 0)
            return false;
    }
    return pred();
}

coil_task *create_named(coil_task_fn fn, void *arg, const char *name)
{
    coil_task_opts o{};
    o.name = name;
    coil_task *t = nullptr;
    EXPECT_EQ(coil_create_task(&t, fn, arg, &o), 0);
    return t;
}

struct HandlerLog {
    int calls = 0;
    int code = 0;
    std::string message;
    std::string task_name;
    std::string exc_message;
    coil_loop *loop = nullptr;
};

void log_handler(coil_loop *loop, const coil_exc_context *ctx, void *arg)
{
    auto *h = static_cast<HandlerLog *>(arg);
    h->calls++;
    h->code = ctx->code;
    h->message = ctx->message ? ctx->message : "";
    h->task_name = ctx->task ? coil_task_get_name(ctx->task) : "";
    h->exc_message = ctx->exception ? coil_exception_message(ctx->exception) : "";
    h->loop = ctx->loop;
    EXPECT_EQ(loop, ctx->loop);
}

// Installs a logging handler on the running loop for the scope of a test body.
struct ScopedHandler {
    HandlerLog log;
    ScopedHandler() { coil_loop_set_exception_handler(coil_get_running_loop(), log_handler, &log); }
    ~ScopedHandler() { coil_loop_set_exception_handler(coil_get_running_loop(), nullptr, nullptr); }
};

void *raise_formatted(void *) { return coil_raise(-ENOENT, "open %s: %d tries", "/etc/nothing", 3); }

TEST(Exception, RaiseFormatsTheMessageAndRecordsCodeAndTaskName)
{
    coil_test::run([]() -> void * {
        coil_task *t = create_named(raise_formatted, nullptr, "opener");
        void *r = as_ptr(-1);
        EXPECT_EQ(coil_task_await(t, &r), -ENOENT) << "await returns the raised code";
        EXPECT_EQ(r, as_ptr(-1)) << "no result on failure";
        EXPECT_TRUE(coil_task_done(t));
        EXPECT_FALSE(coil_task_cancelled(t));
        const coil_exception *e = coil_task_exception(t);
        EXPECT_NE(e, nullptr);
        EXPECT_EQ(coil_exception_code(e), -ENOENT);
        EXPECT_STREQ(coil_exception_message(e), "open /etc/nothing: 3 tries");
        EXPECT_STREQ(coil_exception_task_name(e), "opener");
        EXPECT_EQ(coil_exception_payload(e), nullptr);
        EXPECT_EQ(coil_exception_count(e), 0u);
        EXPECT_EQ(coil_exception_child(e, 0), nullptr);
        EXPECT_EQ(coil_task_result(t, nullptr), -ENOENT);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Exception, WithoutAMessageTheExceptionDescribesItsCode)
{
    coil_test::run([]() -> void * {
        coil_task *t = create_named([](void *) -> void * { return coil_raise(-EIO, nullptr); }, nullptr, "quiet");
        EXPECT_EQ(coil_task_await(t, nullptr), -EIO);
        EXPECT_STREQ(coil_exception_message(coil_task_exception(t)), coil_strerror(-EIO));
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Exception, ASuccessfulOrPendingTaskHasNoException)
{
    coil_test::run([]() -> void * {
        coil_task *t = create_named([](void *) -> void * { return nullptr; }, nullptr, "fine");
        EXPECT_EQ(coil_task_exception(t), nullptr) << "pending";
        EXPECT_EQ(coil_task_await(t, nullptr), 0);
        EXPECT_EQ(coil_task_exception(t), nullptr) << "succeeded";
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Exception, ExceptionAccessorsAcceptNull)
{
    EXPECT_EQ(coil_exception_code(nullptr), 0);
    EXPECT_EQ(coil_exception_message(nullptr), nullptr);
    EXPECT_EQ(coil_exception_task_name(nullptr), nullptr);
    EXPECT_EQ(coil_exception_payload(nullptr), nullptr);
    EXPECT_EQ(coil_exception_count(nullptr), 0u);
    EXPECT_EQ(coil_exception_child(nullptr, 0), nullptr);
}

struct Payload {
    int value;
    int *freed;
};

void free_payload(void *p)
{
    auto *pl = static_cast<Payload *>(p);
    ++*pl->freed;
    delete pl;
}

void *raise_with_payload(void *arg)
{
    return coil_raise_payload(-EBADF, new Payload{1234, static_cast<int *>(arg)}, free_payload, "fd %d", 9);
}

TEST(Exception, PayloadIsKeptAndItsDestructorRunsOnceWhenTheTaskIsFreed)
{
    coil_test::run([]() -> void * {
        int freed = 0;
        coil_task *t = create_named(raise_with_payload, &freed, "payloader");
        EXPECT_EQ(coil_task_await(t, nullptr), -EBADF);
        const coil_exception *e = coil_task_exception(t);
        auto *pl = static_cast<Payload *>(coil_exception_payload(e));
        EXPECT_NE(pl, nullptr);
        if (pl) {
            EXPECT_EQ(pl->value, 1234);
        }
        EXPECT_STREQ(coil_exception_message(e), "fd 9");
        EXPECT_EQ(coil_task_await(t, nullptr), -EBADF) << "awaiting again changes nothing";
        EXPECT_EQ(freed, 0) << "the payload lives as long as the task";
        coil_task_free(t);
        EXPECT_EQ(freed, 1);
        return nullptr;
    });
}

struct Replace {
    int freed_first = 0, freed_second = 0;
    int first_freed_at_second_raise = -1;
};

void *raise_twice(void *arg)
{
    auto *r = static_cast<Replace *>(arg);
    coil_raise_payload(-EIO, new Payload{1, &r->freed_first}, free_payload, "first");
    coil_raise_payload(-EPIPE, new Payload{2, &r->freed_second}, free_payload, "second");
    r->first_freed_at_second_raise = r->freed_first;
    return nullptr;
}

TEST(Exception, RaisingAgainReplacesTheEarlierExceptionAndFreesItsPayload)
{
    coil_test::run([]() -> void * {
        Replace r;
        coil_task *t = create_named(raise_twice, &r, "twice");
        EXPECT_EQ(coil_task_await(t, nullptr), -EPIPE);
        EXPECT_EQ(r.first_freed_at_second_raise, 1);
        const coil_exception *e = coil_task_exception(t);
        EXPECT_STREQ(coil_exception_message(e), "second");
        EXPECT_EQ(static_cast<Payload *>(coil_exception_payload(e))->value, 2);
        coil_task_free(t);
        EXPECT_EQ(r.freed_first, 1);
        EXPECT_EQ(r.freed_second, 1);
        return nullptr;
    });
}

TEST(Exception, TheValueReturnedAfterARaiseIsDiscarded)
{
    coil_test::run([]() -> void * {
        coil_task *t = create_named(
            [](void *) -> void * {
                coil_raise(-EIO, "raised, then returned a value anyway");
                return as_ptr(5);
            },
            nullptr, "mixed");
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(t, &r), -EIO);
        EXPECT_EQ(r, nullptr);
        coil_task_free(t);
        return nullptr;
    });
}

TEST(Exception, RaisingANonNegativeCodeRecordsEinval)
{
    coil_test::run([]() -> void * {
        coil_task *zero = create_named([](void *) -> void * { return coil_raise(0, "zero"); }, nullptr, "z");
        coil_task *pos = create_named([](void *) -> void * { return coil_raise(EIO, "positive"); }, nullptr, "p");
        EXPECT_EQ(coil_task_await(zero, nullptr), -EINVAL);
        EXPECT_EQ(coil_task_await(pos, nullptr), -EINVAL);
        EXPECT_STREQ(coil_exception_message(coil_task_exception(pos)), "positive");
        coil_task_free(zero);
        coil_task_free(pos);
        return nullptr;
    });
}

TEST(Exception, RaiseOutsideATaskDoesNothingButStillFreesThePayload)
{
    int freed = 0;
    EXPECT_EQ(coil_raise(-EIO, "outside"), nullptr);
    EXPECT_EQ(coil_raise_payload(-EIO, new Payload{0, &freed}, free_payload, "outside"), nullptr);
    EXPECT_EQ(freed, 1);
    // Also from a plain callback of a running loop, which is not a task.
    coil_test::run([]() -> void * {
        int cb_freed = 0;
        bool ran = false;
        struct Ctx {
            int *freed;
            bool *ran;
        } c{&cb_freed, &ran};
        coil_loop_call_soon(
            coil_get_running_loop(),
            [](void *arg) -> int {
                auto *cx = static_cast<Ctx *>(arg);
                coil_raise_payload(-EIO, new Payload{0, cx->freed}, free_payload, "in callback");
                *cx->ran = true;
                return 0;
            },
            &c, nullptr);
        EXPECT_TRUE(yield_until([&] { return ran; }));
        EXPECT_EQ(cb_freed, 1);
        EXPECT_EQ(coil_task_exception(coil_current_task()), nullptr) << "the main task was not affected";
        return nullptr;
    });
}

TEST(Exception, AnExceptionNeverRetrievedReachesTheLoopHandlerWithTheTaskNameWhenFreed)
{
    coil_test::run([]() -> void * {
        ScopedHandler h;
        int freed = 0;
        coil_task *t = create_named(raise_with_payload, &freed, "forgotten");
        EXPECT_TRUE(yield_until([&] { return coil_task_done(t); })) << "coil_task_done does not retrieve";
        EXPECT_EQ(h.log.calls, 0) << "reported when freed, not when it fails";
        coil_task_free(t);
        EXPECT_EQ(h.log.calls, 1);
        EXPECT_EQ(h.log.code, -EBADF);
        EXPECT_EQ(h.log.task_name, "forgotten");
        EXPECT_EQ(h.log.exc_message, "fd 9");
        EXPECT_NE(h.log.message.find("never retrieved"), std::string::npos) << h.log.message;
        EXPECT_EQ(h.log.loop, coil_get_running_loop());
        EXPECT_EQ(freed, 1) << "the payload goes with the task, after the report";
        return nullptr;
    });
}

TEST(Exception, ADetachedTaskThatFailsIsReportedWhenItFinishes)
{
    coil_test::run([]() -> void * {
        ScopedHandler h;
        coil_task_opts o{};
        o.name = "orphan";
        EXPECT_EQ(coil_create_task(nullptr, [](void *) -> void * { return coil_raise(-EPIPE, "nobody listens"); },
                                   nullptr, &o),
                  0);
        EXPECT_TRUE(yield_until([&] { return h.log.calls > 0; }));
        EXPECT_EQ(h.log.calls, 1);
        EXPECT_EQ(h.log.code, -EPIPE);
        EXPECT_EQ(h.log.task_name, "orphan");
        return nullptr;
    });
}

TEST(Exception, ARetrievedExceptionIsNotReported)
{
    coil_test::run([]() -> void * {
        ScopedHandler h;
        coil_task *by_await = create_named(raise_formatted, nullptr, "a");
        coil_task *by_exception = create_named(raise_formatted, nullptr, "b");
        coil_task *by_result = create_named(raise_formatted, nullptr, "c");
        coil_task *by_future_result = create_named(raise_formatted, nullptr, "d");
        EXPECT_EQ(coil_task_await(by_await, nullptr), -ENOENT);
        EXPECT_TRUE(yield_until([&] {
            return coil_task_done(by_exception) && coil_task_done(by_result) && coil_task_done(by_future_result);
        }));
        EXPECT_NE(coil_task_exception(by_exception), nullptr);
        EXPECT_EQ(coil_task_result(by_result, nullptr), -ENOENT);
        EXPECT_EQ(coil_future_result(coil_task_future(by_future_result), nullptr), -ENOENT);
        for (coil_task *t : {by_await, by_exception, by_result, by_future_result})
            coil_task_free(t);
        EXPECT_EQ(h.log.calls, 0);
        return nullptr;
    });
}

TEST(Exception, RaisingECanceledEndsTheTaskCancelledAndIsNotReported)
{
    coil_test::run([]() -> void * {
        ScopedHandler h;
        coil_task *t = create_named([](void *) -> void * { return coil_raise(-ECANCELED, "giving up"); }, nullptr,
                                    "quitter");
        EXPECT_TRUE(yield_until([&] { return coil_task_done(t); }));
        EXPECT_TRUE(coil_task_cancelled(t));
        EXPECT_EQ(coil_task_result(t, nullptr), -ECANCELED);
        coil_task *u = create_named([](void *) -> void * { return coil_raise(-ECANCELED, nullptr); }, nullptr,
                                    "quitter2");
        EXPECT_EQ(coil_task_await(u, nullptr), -ECANCELED);
        EXPECT_TRUE(coil_task_cancelled(u));
        EXPECT_STREQ(coil_exception_message(coil_task_exception(u)), coil_strerror(-ECANCELED))
            << "no cancel request, no message: the code's description";
        coil_task_free(t);
        coil_task_free(u);
        EXPECT_EQ(h.log.calls, 0) << "cancellation is not an error to report";
        return nullptr;
    });
}

TEST(Exception, ErrNameAndStrerrorNameErrnoCodes)
{
    EXPECT_STREQ(coil_err_name(-ECANCELED), "ECANCELED");
    EXPECT_STREQ(coil_err_name(-ETIMEDOUT), "ETIMEDOUT");
    EXPECT_STREQ(coil_err_name(-ECONNREFUSED), "ECONNREFUSED");
    EXPECT_STREQ(coil_strerror(-ECANCELED), strerror(ECANCELED));
    EXPECT_STREQ(coil_strerror(-ENOENT), strerror(ENOENT));
    EXPECT_STREQ(coil_strerror(0), "success");
}

TEST(Exception, ErrNameNamesErrnoCodesBeyondTheCommonFew)
{
    // Socket and file code meets these; the default exception handler prints the name.
    EXPECT_STREQ(coil_err_name(-EHOSTUNREACH), "EHOSTUNREACH");
    EXPECT_STREQ(coil_err_name(-ENETUNREACH), "ENETUNREACH");
    EXPECT_STREQ(coil_err_name(-ENOTSOCK), "ENOTSOCK");
    EXPECT_STREQ(coil_err_name(-EISDIR), "EISDIR");
    EXPECT_STREQ(coil_err_name(-EADDRNOTAVAIL), "EADDRNOTAVAIL");
}

TEST(Exception, ErrNameAndStrerrorNameEveryCoilCode)
{
    const int codes[] = {COIL_EINVALSTATE, COIL_ENOTASK,      COIL_EAWAITSELF,    COIL_EWRONGLOOP,
                         COIL_ECLOSED,     COIL_ERUNNING,     COIL_ENOTHING,      COIL_ESTOPPED, COIL_EQUEUEFULL,
                         COIL_EQUEUEEMPTY, COIL_EQUEUESHUTDOWN, COIL_EINCOMPLETE, COIL_ELIMITOVERRUN,
                         COIL_EBROKENBARRIER, COIL_EGROUP,    COIL_ENOURING,      COIL_ENOSTACK};
    std::set<std::string> names, texts;
    for (int c : codes) {
        EXPECT_LE(c, -1000);
        EXPECT_GE(c, -1099) << "coil codes live in [-1099, -1000]";
        std::string name = coil_err_name(c);
        EXPECT_EQ(name.rfind("COIL_E", 0), 0u) << c << " -> " << name;
        names.insert(name);
        const char *text = coil_strerror(c);
        EXPECT_NE(text, nullptr);
        EXPECT_GT(strlen(text), 0u);
        EXPECT_STRNE(text, "unknown error") << name;
        texts.insert(text);
    }
    EXPECT_EQ(names.size(), sizeof codes / sizeof codes[0]) << "names are distinct";
    EXPECT_EQ(texts.size(), sizeof codes / sizeof codes[0]) << "descriptions are distinct";
    EXPECT_STREQ(coil_err_name(COIL_EINVALSTATE), "COIL_EINVALSTATE");
    EXPECT_STREQ(coil_err_name(COIL_ENOSTACK), "COIL_ENOSTACK");
}

TEST(Exception, UnknownCodesGetUnknownButNeverNull)
{
    for (int c : {-1099, -1050, -5000, 12345, -2147483647 - 1}) {
        EXPECT_STREQ(coil_err_name(c), "UNKNOWN") << c;
        EXPECT_NE(coil_strerror(c), nullptr) << c;
    }
}

} // namespace
