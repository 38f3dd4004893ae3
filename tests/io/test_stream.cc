// Streams (coil/stream.h): reading, writing with flow control, half-close, errors, cancellation.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>

#include "coil_test.h"

// Internal (core/net_internal.h): whether a server stream's multishot recv is taking data.
extern "C" bool coil__stream_reading_ahead(const coil_stream *s);

namespace {

// A connected TCP pair on 127.0.0.1 made with plain syscalls: *a for the stream, *b the peer.
void tcp_pair(int *a, int *b)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(l, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(bind(l, (sockaddr *)&sa, sizeof sa), 0);
    ASSERT_EQ(listen(l, 4), 0);
    socklen_t sl = sizeof sa;
    getsockname(l, (sockaddr *)&sa, &sl);
    *a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_EQ(connect(*a, (sockaddr *)&sa, sizeof sa), 0);
    *b = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
    ASSERT_GE(*b, 0);
    close(l);
}

int listener(int *port)
{
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(l, (sockaddr *)&sa, sizeof sa);
    listen(l, 16);
    socklen_t sl = sizeof sa;
    getsockname(l, (sockaddr *)&sa, &sl);
    *port = ntohs(sa.sin_port);
    return l;
}

// Wait (bounded) until a task has set *flag right before its await; it suspends in that same
// step, so once the flag is seen the task is parked in the call under test.
bool wait_flag(const bool *flag)
{
    for (int i = 0; i < 10000 && !*flag; i++)
        coil_sleep(0);
    return *flag;
}

void send_str(int fd, const std::string &s) { ASSERT_EQ(send(fd, s.data(), s.size(), MSG_NOSIGNAL), (ssize_t)s.size()); }

// Wait (bounded) until the stream has received `n` unread bytes. A reader that needs more than
// that receives them and waits again in the same step, so it is parked once this returns true.
bool wait_buffered(const coil_stream *s, size_t n)
{
    for (int i = 0; i < 100000 && coil_stream_read_buffer_size(s) < n; i++)
        coil_sleep(0);
    return coil_stream_read_buffer_size(s) >= n;
}

} // namespace

TEST(Stream, ReadReturnsWhatArrivedThenZeroAtEof)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_stream_from_fd(a, nullptr, &s), 0);
        send_str(b, "hello");
        char buf[64];
        size_t n = 0;
        EXPECT_EQ(coil_stream_read(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "hello");
        close(b);
        EXPECT_EQ(coil_stream_read(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 0u);
        EXPECT_TRUE(coil_stream_at_eof(s));
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReadAllReadsUntilEof)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task *peer = nullptr;
        coil_test::spawn(&peer, [b]() -> void * {
            std::string chunk(100000, 'z');
            for (int i = 0; i < 5; i++)
                EXPECT_EQ(coil_sock_sendall(b, chunk.data(), chunk.size(), 0), 0);
            close(b);
            return nullptr;
        });
        char *data = nullptr;
        size_t len = 0;
        EXPECT_EQ(coil_stream_read_all(s, &data, &len), 0);
        EXPECT_EQ(len, 500000u);
        EXPECT_EQ(data[len], 0);
        free(data);
        coil_task_await(peer, nullptr);
        coil_task_free(peer);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReadexactlyAtEofReturnsIncompleteWithThePartialData)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        send_str(b, "abcdef");
        char buf[16];
        size_t got = 0;
        EXPECT_EQ(coil_stream_readexactly(s, buf, 4, &got), 0);
        EXPECT_EQ(std::string(buf, 4), "abcd");
        close(b);
        EXPECT_EQ(coil_stream_readexactly(s, buf, 10, &got), COIL_EINCOMPLETE);
        EXPECT_EQ(got, 2u);
        EXPECT_EQ(std::string(buf, got), "ef");
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReaduntilReturnsThroughTheSeparatorAcrossReads)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task *peer = nullptr;
        coil_test::spawn(&peer, [b, s]() -> void * {
            // The separator straddles two arrivals: the reader has "one-" and waits for more.
            send_str(b, "one-");
            EXPECT_TRUE(wait_buffered(s, 4));
            send_str(b, "-two--three");
            return nullptr;
        });
        char buf[64];
        size_t n;
        EXPECT_EQ(coil_stream_readuntil(s, "--", 2, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "one--");
        EXPECT_EQ(coil_stream_readuntil(s, "--", 2, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "two--");
        close(b);
        EXPECT_EQ(coil_stream_readuntil(s, "--", 2, buf, sizeof buf, &n), COIL_EINCOMPLETE);
        EXPECT_EQ(std::string(buf, n), "three");
        coil_task_await(peer, nullptr);
        coil_task_free(peer);
        coil_stream_free(s);
        return nullptr;
    });
}

// Near misses before the match: a separator whose start repeats, one cut short, one longer
// than the short-separator search handles, and one ending the buffered data exactly.
TEST(Stream, ReaduntilFindsTheSeparatorPastNearMisses)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        const std::string longsep = "<-- a separator longer than sixteen bytes -->";
        const std::string data = "x\r\n\r\r\n\r\n" "aaab" "q<-- a separator<-- a separator longer than sixteen bytes -->" "end!";
        send_str(b, data.c_str());
        char buf[128];
        size_t n;
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n\r\n", 4, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "x\r\n\r\r\n\r\n");
        EXPECT_EQ(coil_stream_readuntil(s, "aab", 3, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "aaab");
        EXPECT_EQ(coil_stream_readuntil(s, longsep.data(), longsep.size(), buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "q<-- a separator" + longsep);
        EXPECT_TRUE(wait_buffered(s, 4));
        close(b);
        EXPECT_EQ(coil_stream_readuntil(s, "end!", 4, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "end!");
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReaduntilPastTheLimitFailsAndLeavesTheBufferIntact)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream_opts o{};
        o.limit = 1024;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        std::string big(3000, 'q');
        send_str(b, big + "\n");
        static char buf[8192];
        size_t n = 0;
        EXPECT_EQ(coil_stream_readuntil(s, "\n", 1, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        // Nothing was consumed: every byte is still there to read.
        EXPECT_EQ(coil_stream_readexactly(s, buf, 3001, &n), 0);
        EXPECT_EQ(std::string(buf, 3000), big);
        // A caller buffer smaller than the limit bounds it too.
        send_str(b, "0123456789\n");
        char small[4];
        EXPECT_EQ(coil_stream_readuntil(s, "\n", 1, small, sizeof small, &n), COIL_ELIMITOVERRUN);
        EXPECT_EQ(coil_stream_readuntil(s, "\n", 1, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 11u);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReadlineReturnsLinesThenThePartialLastLine)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        send_str(b, "first\nsecond\nlast");
        close(b);
        char buf[64];
        size_t n;
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "first\n");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "second\n");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "last");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 0u);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReadlinePastTheLimitDropsTheLine)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream_opts o{};
        o.limit = 16;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        send_str(b, std::string(40, 'x') + "\nok\n");
        char buf[64];
        size_t n;
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "ok\n");
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ReadlineDropsTheRestOfAnOverlongLineThatArrivesInPieces)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream_opts o{};
        o.limit = 16;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        char buf[64];
        size_t n = 0;
        // The first piece of a 50-byte line: past the limit, with no '\n' yet.
        send_str(b, std::string(40, 'x'));
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        // Its tail arrives later, in two more pieces; it is not a line of its own.
        send_str(b, "yyyy");
        send_str(b, "yyyyyy\nok\n");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "ok\n");
        // A line that fits after all of that is read as usual.
        send_str(b, "fine\n");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "fine\n");
        // Another read call in between takes the bytes as they are: the pending drop is off.
        send_str(b, std::string(20, 'z'));
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        send_str(b, "tail\nnext\n");
        EXPECT_EQ(coil_stream_readexactly(s, buf, 2, &n), 0);
        EXPECT_EQ(std::string(buf, 2), "ta");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "il\n");
        // An overlong line cut off by EOF: the drop reaches EOF, and readline reports EOF.
        send_str(b, std::string(30, 'w'));
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "next\n");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        send_str(b, "www");
        close(b);
        n = 99;
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 0u);
        EXPECT_TRUE(coil_stream_at_eof(s));
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, SkipuntilDropsThroughASeparatorSplitAcrossArrivals)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream_opts o{};
        o.limit = 16;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        std::string junk(100000, 'j');
        send_str(b, junk + "\r");
        coil_task *peer = nullptr;
        bool parked = false;
        coil_test::spawn(&peer, [b, &parked]() -> void * {
            // The rest of the separator comes once the skipper has dropped the junk and waits.
            EXPECT_TRUE(wait_flag(&parked));
            send_str(b, "\nline\r\n");
            return nullptr;
        });
        char buf[64];
        size_t n = 0, skipped = 0;
        // readuntil past the limit leaves the data (as asyncio); skipuntil drops it.
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n", 2, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        EXPECT_GE(coil_stream_read_buffer_size(s), 17u);
        coil_task *skipper = nullptr;
        coil_test::spawn(&skipper, [s, &skipped, &parked]() -> void * {
            parked = false;
            int err = coil_stream_skipuntil(s, "\r\n", 2, &skipped);
            return (void *)(intptr_t)err;
        });
        // Parked once the whole junk is gone except the '\r' that may start the separator.
        for (int i = 0; i < 100000 && coil_stream_read_buffer_size(s) != 1; i++)
            coil_sleep(0);
        EXPECT_EQ(coil_stream_read_buffer_size(s), 1u);
        parked = true;
        void *r = (void *)1;
        EXPECT_EQ(coil_task_await(skipper, &r), 0);
        EXPECT_EQ((intptr_t)r, 0);
        EXPECT_EQ(skipped, junk.size() + 2);
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n", 2, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "line\r\n");
        coil_task_await(peer, nullptr);
        coil_task_free(peer);
        coil_task_free(skipper);
        // At EOF without the separator: everything is dropped, COIL_EINCOMPLETE.
        send_str(b, "abc");
        close(b);
        EXPECT_EQ(coil_stream_skipuntil(s, "\r\n", 2, &skipped), COIL_EINCOMPLETE);
        EXPECT_EQ(skipped, 3u);
        EXPECT_TRUE(coil_stream_at_eof(s));
        EXPECT_EQ(coil_stream_skipuntil(s, "", 0, &skipped), -EINVAL);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, TheLimitBoundsTheDataBeforeTheSeparatorNotTheSeparator)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream_opts o{};
        o.limit = 16;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        char buf[64];
        size_t n = 0;
        // asyncio: a line of exactly `limit` bytes and its separator is accepted...
        send_str(b, std::string(16, 'a') + "\n");
        EXPECT_EQ(coil_stream_readline(s, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 17u);
        send_str(b, std::string(16, 'b') + "\r\n");
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n", 2, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), std::string(16, 'b') + "\r\n");
        // ...one byte more is not, whether the separator is already there or not.
        send_str(b, std::string(17, 'c') + "\r\n");
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n", 2, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        EXPECT_EQ(coil_stream_skipuntil(s, "\r\n", 2, &n), 0);
        // Absent, as asyncio counts it: the separator could start no earlier than 17 bytes in.
        send_str(b, std::string(18, 'd'));
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n", 2, buf, sizeof buf, &n), COIL_ELIMITOVERRUN);
        send_str(b, "\r\n");
        EXPECT_EQ(coil_stream_skipuntil(s, "\r\n", 2, &n), 0);
        // 16 bytes and half of a two-byte separator: still within the limit, so it waits.
        send_str(b, std::string(16, 'e') + "\r");
        coil_task *peer = nullptr;
        bool waiting = false;
        coil_test::spawn(&peer, [b, &waiting]() -> void * {
            EXPECT_TRUE(wait_flag(&waiting));
            send_str(b, "\n");
            return nullptr;
        });
        waiting = true;
        EXPECT_EQ(coil_stream_readuntil(s, "\r\n", 2, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 18u);
        coil_task_await(peer, nullptr);
        coil_task_free(peer);
        // The caller's buffer must still hold the data and the separator.
        send_str(b, std::string(16, 'f') + "\n");
        EXPECT_EQ(coil_stream_readuntil(s, "\n", 1, buf, 16, &n), COIL_ELIMITOVERRUN);
        EXPECT_EQ(coil_stream_readuntil(s, "\n", 1, buf, 17, &n), 0);
        EXPECT_EQ(n, 17u);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, ASecondReaderWhileOneWaitsGetsEbusy)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task *first = nullptr;
        bool started = false;
        coil_test::spawn(&first, [s, &started]() -> void * {
            char c;
            size_t n = 0;
            started = true;
            int err = coil_stream_read(s, &c, 1, &n);
            return (void *)(intptr_t)(err ? err : c);
        });
        EXPECT_TRUE(wait_flag(&started));
        char c;
        size_t n = 0;
        EXPECT_EQ(coil_stream_read(s, &c, 1, &n), -EBUSY);
        char line[8];
        EXPECT_EQ(coil_stream_readline(s, line, sizeof line, &n), -EBUSY);
        send_str(b, "Q");
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(first, &r), 0);
        EXPECT_EQ((intptr_t)r, 'Q');
        coil_task_free(first);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

namespace {

// A server-side stream the test can look at while its handler holds off reading.
struct Hoard {
    coil_stream *s = nullptr;
    coil_event *go = nullptr, *finished = nullptr;
    bool ready = false, done = false;
    size_t total = 0, bad_at = SIZE_MAX;
};

unsigned char pattern(size_t i) { return (unsigned char)(i * 7 + i / 4099); }

void hoarding_handler(coil_stream *s, void *arg)
{
    auto *h = static_cast<Hoard *>(arg);
    unsigned char first;
    // One read starts the stream receiving; then the handler holds off until told.
    if (coil_stream_readexactly(s, &first, 1, nullptr) != 0)
        return;
    if (first != pattern(0))
        h->bad_at = 0;
    h->s = s;
    h->ready = true;
    coil_event_wait(h->go);
    size_t at = 1;
    static unsigned char buf[65536];
    for (;;) {
        size_t n = 0;
        if (coil_stream_read(s, buf, sizeof buf, &n) != 0 || n == 0)
            break;
        for (size_t i = 0; i < n; i++)
            if (buf[i] != pattern(at + i) && h->bad_at == SIZE_MAX)
                h->bad_at = at + i;
        at += n;
    }
    h->total = at;
    h->s = nullptr;
    h->done = true;
    coil_event_set(h->finished);
}

} // namespace

TEST(Stream, AServerStreamBuffersAboutTwiceItsLimitForAReaderThatHoldsOff)
{
    coil_test::run([]() -> void * {
        const size_t limit = 8192, total = 4u << 20;
        Hoard h;
        EXPECT_EQ(coil_event_new(&h.go), 0);
        EXPECT_EQ(coil_event_new(&h.finished), 0);
        coil_stream_opts so{};
        so.limit = limit;
        coil_server_opts o{};
        o.stream = &so;
        coil_server *srv = nullptr;
        EXPECT_EQ(coil_start_server(hoarding_handler, &h, "127.0.0.1", 0, &o, &srv), 0);
        coil_stream *c = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", coil_server_port(srv), nullptr, &c), 0);
        std::string data(total, '\0');
        for (size_t i = 0; i < total; i++)
            data[i] = (char)pattern(i);
        EXPECT_EQ(coil_stream_write(c, data.data(), data.size()), 0);
        EXPECT_EQ(coil_stream_write_eof(c), 0);
        // Wait until the server stream stops taking data (or has clearly taken too much).
        const size_t bound = 2 * limit + 16384; // 2 x limit and one provided buffer
        double until = coil_loop_time(coil_get_running_loop()) + 5;
        while (coil_loop_time(coil_get_running_loop()) < until &&
               !(h.ready && (!coil__stream_reading_ahead(h.s) || coil_stream_read_buffer_size(h.s) > bound)))
            coil_sleep(0);
        EXPECT_TRUE(h.ready);
        if (h.ready) {
            EXPECT_FALSE(coil__stream_reading_ahead(h.s));
            size_t held = coil_stream_read_buffer_size(h.s);
            EXPECT_LE(held, bound) << "buffered " << held << " bytes for a reader that holds off";
            EXPECT_GE(held, limit);
            // Paused means paused: more loop turns bring nothing in.
            for (int i = 0; i < 100; i++)
                coil_sleep(0);
            EXPECT_EQ(coil_stream_read_buffer_size(h.s), held);
        }
        EXPECT_LT(coil_stream_write_buffer_size(c), total); // the client was not simply stuck
        // Once the handler reads, everything arrives, in order.
        coil_event_set(h.go);
        EXPECT_EQ(coil_event_wait(h.finished), 0);
        EXPECT_TRUE(h.done);
        EXPECT_EQ(h.total, total);
        EXPECT_EQ(h.bad_at, SIZE_MAX);
        coil_stream_free(c);
        coil_server_free(srv);
        coil_event_free(h.go);
        coil_event_free(h.finished);
        return nullptr;
    }, 30);
}

TEST(Stream, PeerResetDuringAReadReturnsEconnreset)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task *peer = nullptr;
        bool reading = false;
        coil_test::spawn(&peer, [b, &reading]() -> void * {
            EXPECT_TRUE(wait_flag(&reading)); // the reader is blocked in its recv
            linger lg{1, 0};
            setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
            close(b);
            return nullptr;
        });
        char buf[16];
        size_t n;
        reading = true; // set right before the read, which suspends in the same step
        EXPECT_EQ(coil_stream_read(s, buf, sizeof buf, &n), -ECONNRESET);
        // The error sticks for the read side.
        EXPECT_EQ(coil_stream_read(s, buf, sizeof buf, &n), -ECONNRESET);
        coil_task_await(peer, nullptr);
        coil_task_free(peer);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, WriteEofHalfClosesAndThePeerCanStillSend)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        EXPECT_TRUE(coil_stream_can_write_eof(s));
        EXPECT_EQ(coil_stream_write(s, "request", 7), 0);
        EXPECT_EQ(coil_stream_write_eof(s), 0);
        EXPECT_EQ(coil_stream_write(s, "more", 4), COIL_ECLOSED);
        // The peer reads the request, then EOF, then answers on its still-open side.
        char buf[64];
        size_t n = 0, total = 0;
        while (coil_sock_recv(b, buf + total, sizeof buf - total, 0, &n) == 0 && n > 0)
            total += n;
        EXPECT_EQ(std::string(buf, total), "request");
        EXPECT_EQ(coil_sock_sendall(b, "reply", 5, 0), 0);
        close(b);
        EXPECT_EQ(coil_stream_readexactly(s, buf, 5, &n), 0);
        EXPECT_EQ(std::string(buf, 5), "reply");
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, SlowReaderKeepsTheWriteBufferNearTheHighWaterMark)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        int small = 4096;
        setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(b, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        coil_stream_opts o{};
        o.high_water = 32768;
        o.low_water = 8192;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        struct State {
            coil_stream *s;
            size_t max_buffered = 0;
            int writes = 0;
            bool blocked = false;
        } st{s};
        coil_task *writer = nullptr;
        coil_test::spawn(&writer, [&st]() -> void * {
            std::string chunk(4096, 'w');
            for (;;) {
                if (coil_stream_write(st.s, chunk.data(), chunk.size()) != 0)
                    break;
                st.writes++;
                size_t b = coil_stream_write_buffer_size(st.s);
                if (b > st.max_buffered)
                    st.max_buffered = b;
                st.blocked = true;
                int r = coil_stream_drain(st.s);
                st.blocked = false;
                if (r != 0)
                    return (void *)(intptr_t)r;
            }
            return nullptr;
        });
        // The reader never reads: once the kernel's buffers are full (the socket no longer
        // writable) the writer must be stuck in drain above the low-water mark, within a bound.
        auto stuck = [&st, a, &o] {
            pollfd p{ a, POLLOUT, 0 };
            return st.blocked && poll(&p, 1, 0) == 0 && coil_stream_write_buffer_size(st.s) > o.low_water;
        };
        double until = coil_loop_time(coil_get_running_loop()) + 5;
        while (!stuck() && coil_loop_time(coil_get_running_loop()) < until)
            coil_sleep(0);
        EXPECT_TRUE(stuck()) << "the writer never settled in drain";
        // Stuck for good: more loop turns (sends retried as the kernel allows) change nothing.
        int writes = st.writes;
        for (int i = 0; i < 200; i++)
            coil_sleep(0);
        EXPECT_EQ(st.writes, writes);
        EXPECT_TRUE(st.blocked);
        // What the writer holds stays bounded by the high-water mark (plus the one write that
        // crossed it), however long the reader sleeps.
        EXPECT_LE(st.max_buffered, o.high_water + 4096);
        coil_task_cancel(writer, nullptr);
        void *r = nullptr;
        EXPECT_EQ(coil_task_await(writer, &r), 0);
        EXPECT_EQ((intptr_t)r, -ECANCELED);
        coil_task_free(writer);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, DrainResumesOnceTheReaderCatchesUp)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream_opts o{};
        o.high_water = 16384;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        std::string big(4 << 20, 'd');
        EXPECT_EQ(coil_stream_write(s, big.data(), big.size()), 0);
        EXPECT_GT(coil_stream_write_buffer_size(s), o.high_water);
        coil_task *reader = nullptr;
        coil_test::spawn(&reader, [b]() -> void * {
            static char buf[65536];
            size_t total = 0, n;
            while (total < (4u << 20) && coil_sock_recv(b, buf, sizeof buf, 0, &n) == 0 && n > 0)
                total += n;
            return (void *)total;
        });
        EXPECT_EQ(coil_stream_drain(s), 0);
        EXPECT_LE(coil_stream_write_buffer_size(s), o.high_water / 4);
        void *total;
        coil_task_await(reader, &total);
        EXPECT_EQ((size_t)total, big.size());
        coil_task_free(reader);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

// A write made while the previous one is still in flight joins the next send, which starts when
// that one completes. The writer then waits for an answer that the peer only sends once it has
// both writes, so nothing else will wake the loop: the first send's completion must be taken
// before the loop sleeps (on io_uring it is a try, completed by the driver after the submission).
TEST(Stream, AWriteQueuedBehindASendInFlightGoesOutBeforeTheLoopSleeps)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_stream_from_fd(a, nullptr, &s), 0);
        // A first exchange settles the stream in (its fd registered with the driver, whose own
        // completion would otherwise wake the loop).
        send_str(b, "hi");
        char hi[2];
        size_t n = 0;
        EXPECT_EQ(coil_stream_readexactly(s, hi, 2, &n), 0);
        EXPECT_EQ(coil_stream_write(s, "hello", 5), 0);
        EXPECT_EQ(coil_stream_drain(s), 0);
        std::string got;
        std::thread peer([b, &got] {
            char buf[64];
            ssize_t skip = 0;
            while (skip < 5) { // "hello"
                ssize_t k = recv(b, buf, (size_t)(5 - skip), 0);
                if (k <= 0)
                    break;
                skip += k;
            }
            for (;;) {
                pollfd p = { b, POLLIN, 0 };
                if (got.size() >= 11 || poll(&p, 1, 5000) != 1)
                    break;
                ssize_t n = recv(b, buf, sizeof buf, 0);
                if (n <= 0)
                    break;
                got.append(buf, (size_t)n);
            }
            (void)!send(b, "ack", 3, MSG_NOSIGNAL); // whatever arrived: the reader must not hang
        });
        EXPECT_EQ(coil_stream_write(s, "first", 5), 0);
        EXPECT_EQ(coil_stream_write(s, "second", 6), 0);
        char buf[3];
        EXPECT_EQ(coil_stream_readexactly(s, buf, 3, &n), 0);
        peer.join();
        EXPECT_EQ(got, "firstsecond");
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, WriteAfterThePeerResetReportsTheError)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        linger lg{1, 0};
        setsockopt(b, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(b);
        pollfd p{ a, POLLIN, 0 }; // the reset has arrived once the socket reports it
        EXPECT_EQ(poll(&p, 1, 5000), 1);
        EXPECT_TRUE(p.revents & (POLLERR | POLLHUP)) << p.revents;
        int err = 0;
        std::string chunk(65536, 'x');
        for (int i = 0; i < 100 && !err; i++) {
            err = coil_stream_write(s, chunk.data(), chunk.size());
            if (!err)
                err = coil_stream_drain(s);
        }
        EXPECT_TRUE(err == -ECONNRESET || err == -EPIPE) << err;
        coil_stream_free(s);
        return nullptr;
    });
}

// Stream sockets sit in fixed-file slots of the loop's ring, a table sized once (by the fd limit
// when the first stream appears). Streams past the last slot must still work, and closing any
// stream must close its socket (a slot holds a reference the fd close alone does not drop).
TEST(Stream, StreamsPastTheFixedFileSlotsWorkAndEveryCloseReachesThePeer)
{
    coil_test::run([]() -> void * {
        rlimit saved{};
        EXPECT_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
        int probe = dup(0); // the lowest free fd: how many this process holds now
        close(probe);
        enum { N = 40 };
        // A small limit while the loop sizes its table: fewer slots than the streams below.
        rlimit small = saved;
        small.rlim_cur = (rlim_t)probe + 8;
        EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &small), 0);
        int a[N], b[N];
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, &a[0]), 0);
        b[0] = a[1];
        coil_stream *s[N] = {};
        EXPECT_EQ(coil_stream_from_fd(a[0], nullptr, &s[0]), 0);
        EXPECT_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
        for (int i = 1; i < N; i++) {
            int sv[2];
            EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
            a[i] = sv[0];
            b[i] = sv[1];
            EXPECT_EQ(coil_stream_from_fd(a[i], nullptr, &s[i]), 0);
        }
        for (int i = 0; i < N; i++) {
            char out = (char)('A' + i), in = 0;
            EXPECT_EQ(coil_stream_write(s[i], &out, 1), 0);
            send_str(b[i], std::string(1, out));
            size_t n = 0;
            EXPECT_EQ(coil_stream_readexactly(s[i], &in, 1, &n), 0) << i;
            EXPECT_EQ(in, out) << i;
        }
        for (int i = 0; i < N; i++)
            coil_stream_free(s[i]);
        coil_sleep(0); // one loop iteration submits what the frees queued
        for (int i = 0; i < N; i++) {
            char got[2] = {};
            pollfd p{ b[i], POLLIN, 0 };
            EXPECT_EQ(poll(&p, 1, 2000), 1) << i;
            EXPECT_EQ(recv(b[i], got, 2, MSG_DONTWAIT), 1) << i; // the byte the stream wrote
            EXPECT_EQ(got[0], (char)('A' + i)) << i;
            EXPECT_EQ(poll(&p, 1, 2000), 1) << i;
            EXPECT_EQ(recv(b[i], got, 2, MSG_DONTWAIT), 0) << i; // then EOF: the socket is closed
            close(b[i]);
        }
        return nullptr;
    });
}

TEST(Stream, ReadIsCancellable)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task *r = nullptr;
        static bool started;
        started = false;
        coil_test::spawn(&r, [s]() -> void * {
            char buf[8];
            size_t n;
            started = true;
            return (void *)(intptr_t)coil_stream_read(s, buf, sizeof buf, &n);
        });
        EXPECT_TRUE(wait_flag(&started));
        coil_task_cancel(r, nullptr);
        void *res;
        coil_task_await(r, &res);
        EXPECT_EQ((intptr_t)res, -ECANCELED);
        coil_task_free(r);
        // The stream still works after the cancelled read.
        send_str(b, "after");
        char buf[8];
        size_t n;
        EXPECT_EQ(coil_stream_readexactly(s, buf, 5, &n), 0);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, DrainAndWaitClosedAreCancellable)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        int small = 4096;
        setsockopt(a, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
        setsockopt(b, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        coil_stream_opts o{};
        o.high_water = 1024;
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, &o, &s);
        std::string big(4 << 20, 'x');
        coil_stream_write(s, big.data(), big.size());
        coil_task *d = nullptr;
        static bool started;
        started = false;
        coil_test::spawn(&d, [s]() -> void * {
            started = true;
            return (void *)(intptr_t)coil_stream_drain(s);
        });
        EXPECT_TRUE(wait_flag(&started));
        EXPECT_FALSE(coil_task_done(d));
        coil_task_cancel(d, nullptr);
        void *res;
        coil_task_await(d, &res);
        EXPECT_EQ((intptr_t)res, -ECANCELED);
        coil_task_free(d);
        // close waits for the buffer to flush, so wait_closed blocks while the peer reads nothing.
        coil_stream_close(s);
        EXPECT_TRUE(coil_stream_is_closing(s));
        coil_task *w = nullptr;
        started = false;
        coil_test::spawn(&w, [s]() -> void * {
            started = true;
            return (void *)(intptr_t)coil_stream_wait_closed(s);
        });
        EXPECT_TRUE(wait_flag(&started));
        EXPECT_FALSE(coil_task_done(w));
        coil_task_cancel(w, nullptr);
        coil_task_await(w, &res);
        EXPECT_EQ((intptr_t)res, -ECANCELED);
        coil_task_free(w);
        close(b); // the flush fails now, which completes the close
        EXPECT_EQ(coil_stream_wait_closed(s), 0);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, CloseWakesABlockedReaderWithEclosed)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task *r = nullptr;
        static bool started;
        started = false;
        coil_test::spawn(&r, [s]() -> void * {
            char buf[8];
            size_t n;
            started = true;
            return (void *)(intptr_t)coil_stream_read(s, buf, sizeof buf, &n);
        });
        EXPECT_TRUE(wait_flag(&started));
        coil_stream_close(s);
        void *res;
        coil_task_await(r, &res);
        EXPECT_EQ((intptr_t)res, COIL_ECLOSED);
        coil_task_free(r);
        EXPECT_EQ(coil_stream_wait_closed(s), 0);
        coil_stream_free(s);
        close(b);
        return nullptr;
    });
}

TEST(Stream, OpenConnectionConnectsAndReportsExtraInfo)
{
    coil_test::run([]() -> void * {
        int port;
        int l = listener(&port);
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &s), 0);
        int b = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
        coil_sockaddr peer, self;
        EXPECT_EQ(coil_stream_get_extra_info(s, "peername", &peer, sizeof peer), 0);
        EXPECT_EQ(coil_sockaddr_port((sockaddr *)&peer.ss), port);
        EXPECT_EQ(coil_stream_get_extra_info(s, "sockname", &self, sizeof self), 0);
        char txt[64];
        EXPECT_STREQ(coil_sockaddr_format((sockaddr *)&peer.ss, peer.len, txt, sizeof txt),
                     ("127.0.0.1:" + std::to_string(port)).c_str());
        int fd = -1;
        EXPECT_EQ(coil_stream_get_extra_info(s, "socket", &fd, sizeof fd), 0);
        EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        EXPECT_EQ(coil_stream_get_extra_info(s, "nonsense", &fd, sizeof fd), -ENOENT);
        EXPECT_EQ(coil_stream_get_extra_info(s, "peername", &fd, sizeof fd), -EINVAL);
        coil_stream_free(s);
        close(b);
        close(l);
        return nullptr;
    });
}

TEST(Stream, OpenConnectionResolvesNamesOffTheLoopAndTriesEveryAddress)
{
    coil_test::run([]() -> void * {
        // Only 127.0.0.1 listens: if "localhost" yields ::1 first, that one is refused and the
        // next address must be tried.
        int port;
        int l = listener(&port);
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_connection("localhost", port, nullptr, &s), 0);
        coil_stream_free(s);
        close(l);
        return nullptr;
    });
}

TEST(Stream, OpenConnectionReportsRefusalAndBadNames)
{
    coil_test::run([]() -> void * {
        int port;
        int l = listener(&port);
        close(l); // nothing listens there now
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, nullptr, &s), -ECONNREFUSED);
        EXPECT_EQ(coil_open_connection("127.0.0.1", 70000, nullptr, &s), -EINVAL);
        EXPECT_EQ(coil_open_connection(nullptr, 80, nullptr, &s), -EINVAL);
        addrinfo *res;
        EXPECT_EQ(coil_getaddrinfo("127.0.0.1", "no-such-service-xyz", nullptr, &res), COIL_ENONAME);
        return nullptr;
    });
}

TEST(Stream, ConnectTimeoutGivesEtimedout)
{
    coil_test::run([]() -> void * {
        // A listener whose accept queue is full drops further SYNs, so a connect hangs.
        int port;
        int l = listener(&port);
        listen(l, 0);
        sockaddr_in sa{};
        sa.sin_family = AF_INET;
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        sa.sin_port = htons((uint16_t)port);
        int fillers[4];
        for (int &f : fillers) {
            f = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
            connect(f, (sockaddr *)&sa, sizeof sa);
        }
        coil_stream_opts o{};
        o.connect_timeout = 0.2;
        coil_stream *s = nullptr;
        double t0 = coil_loop_time(coil_get_running_loop());
        EXPECT_EQ(coil_open_connection("127.0.0.1", port, &o, &s), -ETIMEDOUT);
        double dt = coil_loop_time(coil_get_running_loop()) - t0;
        EXPECT_GE(dt, 0.19);
        EXPECT_LT(dt, 2.0);
        for (int f : fillers)
            close(f);
        close(l);
        return nullptr;
    });
}

TEST(Stream, UnixConnectionCarriesData)
{
    coil_test::run([]() -> void * {
        std::string path = "/tmp/coil-test-stream-" + std::to_string(getpid()) + ".sock";
        unlink(path.c_str());
        int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_un sa{};
        sa.sun_family = AF_UNIX;
        strcpy(sa.sun_path, path.c_str());
        EXPECT_EQ(bind(l, (sockaddr *)&sa, sizeof sa), 0);
        listen(l, 4);
        coil_stream *s = nullptr;
        EXPECT_EQ(coil_open_unix_connection(path.c_str(), nullptr, &s), 0);
        int b = accept4(l, nullptr, nullptr, SOCK_CLOEXEC);
        EXPECT_EQ(coil_stream_write(s, "unix", 4), 0);
        char buf[8];
        size_t n = 0;
        EXPECT_EQ(coil_sock_recv(b, buf, sizeof buf, 0, &n), 0);
        EXPECT_EQ(n, 4u);
        EXPECT_TRUE(coil_stream_can_write_eof(s));
        coil_stream_free(s);
        close(b);
        close(l);
        unlink(path.c_str());
        EXPECT_EQ(coil_open_unix_connection(std::string(200, 'p').c_str(), nullptr, &s), -ENAMETOOLONG);
        return nullptr;
    });
}

TEST(Stream, CompactTasksReadIntoStackBuffers)
{
    coil_test::run([]() -> void * {
        int a = -1, b = -1;
        tcp_pair(&a, &b);
        coil_stream *s = nullptr;
        coil_stream_from_fd(a, nullptr, &s);
        coil_task_opts to{};
        to.stack_mode = COIL_STACK_COMPACT;
        coil_task *r = nullptr, *other = nullptr;
        // Steps the tasks wait on (static: a compact task must not point into another's stack).
        static bool reading, scribbled, read_done;
        reading = scribbled = read_done = false;
        coil_test::spawn(&r, [s]() -> void * {
            char line[64];
            size_t n;
            reading = true; // set right before the call, which suspends in the same step
            int err = coil_stream_readline(s, line, sizeof line, &n);
            read_done = true;
            return err ? nullptr : new std::string(line, n);
        }, &to);
        // Another compact task uses the shared stack while r is suspended, and stays suspended
        // itself while r resumes.
        coil_test::spawn(&other, []() -> void * {
            char junk[4096];
            memset(junk, 0x5a, sizeof junk);
            scribbled = true;
            wait_flag(&read_done);
            return (void *)(uintptr_t)junk[100];
        }, &to);
        EXPECT_TRUE(wait_flag(&reading));
        EXPECT_TRUE(wait_flag(&scribbled));
        send_str(b, "compact line\n");
        void *res;
        coil_task_await(r, &res);
        auto *str = static_cast<std::string *>(res);
        EXPECT_NE(str, nullptr);
        if (!str)
            return nullptr;
        EXPECT_EQ(*str, "compact line\n");
        delete str;
        coil_task_await(other, nullptr);
        coil_task_free(r);
        coil_task_free(other);
        close(b);
        coil_stream_free(s);
        return nullptr;
    });
}

TEST(Stream, CallsOutsideATaskFail)
{
    int a, b;
    tcp_pair(&a, &b);
    char buf[4];
    size_t n;
    coil_stream *s;
    EXPECT_EQ(coil_open_connection("127.0.0.1", 1, nullptr, &s), COIL_ENOTASK);
    close(a);
    close(b);
    EXPECT_EQ(coil_stream_read(nullptr, buf, 4, &n), COIL_ENOTASK);
}
