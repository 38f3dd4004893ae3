// Files on io_uring (coil/file.h): each operation, its errors, the whole-file helpers, statx,
// buffers on compact stacks, and cancellation.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include "coil_test.h"

namespace {

// A real file under /tmp, removed at the end of the test.
struct TmpFile {
    std::string path;
    TmpFile()
    {
        char p[] = "/tmp/coil-file-XXXXXX";
        int fd = mkstemp(p);
        EXPECT_GE(fd, 0);
        close(fd);
        path = p;
    }
    ~TmpFile() { unlink(path.c_str()); }
};

struct TmpDir {
    std::string path;
    TmpDir()
    {
        char p[] = "/tmp/coil-dir-XXXXXX";
        EXPECT_NE(mkdtemp(p), nullptr);
        path = p;
    }
    ~TmpDir() { rmdir(path.c_str()); }
};

bool wait_flag(const bool *flag)
{
    for (int i = 0; i < 10000 && !*flag; i++)
        coil_sleep(0);
    return *flag;
}

std::string pattern(size_t n)
{
    std::string s(n, 0);
    for (size_t i = 0; i < n; i++)
        s[i] = (char)('a' + (i * 7 + i / 13) % 26);
    return s;
}

} // namespace

TEST(File, OpenWriteReadPreadPwriteCloseRoundTrip)
{
    TmpFile f;
    coil_test::run([&]() -> void * {
        int fd = -1;
        EXPECT_EQ(coil_file_open(f.path.c_str(), O_RDWR | O_TRUNC, 0, &fd), 0);
        EXPECT_GE(fd, 0);
        size_t n = 0;
        EXPECT_EQ(coil_file_write(fd, "hello world", 11, &n), 0);
        EXPECT_EQ(n, 11u);
        EXPECT_EQ(coil_file_pwrite(fd, "W", 1, 6, &n), 0);
        EXPECT_EQ(n, 1u);
        char buf[32] = {};
        EXPECT_EQ(coil_file_pread(fd, buf, sizeof buf, 0, &n), 0);
        EXPECT_EQ(std::string(buf, n), "hello World");
        // read() continues from the file position (11, after the write), so it is at EOF.
        EXPECT_EQ(coil_file_read(fd, buf, sizeof buf, &n), 0);
        EXPECT_EQ(n, 0u);
        EXPECT_EQ(lseek(fd, 0, SEEK_SET), 0);
        EXPECT_EQ(coil_file_read(fd, buf, 5, &n), 0);
        EXPECT_EQ(std::string(buf, n), "hello");
        EXPECT_EQ(coil_file_close(fd), 0);
        EXPECT_EQ(fcntl(fd, F_GETFD), -1) << "the fd must be closed";
        return nullptr;
    });
}

TEST(File, OpenAlwaysAddsCloseOnExec)
{
    TmpFile f;
    coil_test::run([&]() -> void * {
        int fd = -1;
        EXPECT_EQ(coil_file_open(f.path.c_str(), O_RDONLY, 0, &fd), 0);
        EXPECT_TRUE(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        EXPECT_EQ(coil_file_close(fd), 0);
        return nullptr;
    });
}

TEST(File, OpenCreatesWithModeAndOpenatIsRelativeToDirfd)
{
    TmpDir d;
    std::string p = d.path + "/new";
    coil_test::run([&]() -> void * {
        mode_t old = umask(022);
        int fd = -1;
        EXPECT_EQ(coil_file_open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640, &fd), 0);
        EXPECT_EQ(coil_file_close(fd), 0);
        struct stat st;
        EXPECT_EQ(stat(p.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0640u);
        EXPECT_EQ(coil_file_open(p.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0640, &fd), -EEXIST);
        int dfd = open(d.path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        EXPECT_EQ(coil_file_openat(dfd, "new", O_RDONLY, 0, &fd), 0);
        EXPECT_EQ(coil_file_close(fd), 0);
        close(dfd);
        umask(old);
        unlink(p.c_str());
        return nullptr;
    });
}

TEST(File, ErrorsAreNegatedErrnos)
{
    TmpDir d;
    coil_test::run([&]() -> void * {
        int fd = -1;
        EXPECT_EQ(coil_file_open("/tmp/coil-no-such-dir/x", O_RDONLY, 0, &fd), -ENOENT);
        EXPECT_EQ(fd, -1) << "*fd is untouched on error";
        EXPECT_EQ(coil_file_open(d.path.c_str(), O_WRONLY, 0, &fd), -EISDIR);
        // A directory opens for reading, but reading it is EISDIR.
        EXPECT_EQ(coil_file_open(d.path.c_str(), O_RDONLY, 0, &fd), 0);
        char buf[16];
        size_t n;
        EXPECT_EQ(coil_file_read(fd, buf, sizeof buf, &n), -EISDIR);
        EXPECT_EQ(coil_file_close(fd), 0);
        // A closed fd: every operation says EBADF.
        EXPECT_EQ(coil_file_read(fd, buf, sizeof buf, &n), -EBADF);
        EXPECT_EQ(coil_file_write(fd, "x", 1, &n), -EBADF);
        EXPECT_EQ(coil_file_pread(fd, buf, sizeof buf, 0, &n), -EBADF);
        EXPECT_EQ(coil_file_pwrite(fd, "x", 1, 0, &n), -EBADF);
        EXPECT_EQ(coil_file_fsync(fd), -EBADF);
        EXPECT_EQ(coil_file_fdatasync(fd), -EBADF);
        struct statx sx;
        EXPECT_EQ(coil_file_fstatx(fd, 0, &sx), -EBADF);
        EXPECT_EQ(coil_file_close(fd), -EBADF);
        EXPECT_EQ(coil_file_close(-1), -EBADF);
        EXPECT_EQ(coil_file_open(nullptr, O_RDONLY, 0, &fd), -EINVAL);
        EXPECT_EQ(coil_file_statx(nullptr, 0, 0, &sx), -EINVAL);
        return nullptr;
    });
}

TEST(File, OutsideATaskReturnsENOTASK)
{
    int fd;
    struct statx sx;
    EXPECT_EQ(coil_file_open("/tmp", O_RDONLY, 0, &fd), COIL_ENOTASK);
    EXPECT_EQ(coil_file_statx("/tmp", 0, 0, &sx), COIL_ENOTASK);
    EXPECT_EQ(coil_file_fsync(0), COIL_ENOTASK);
    char *b;
    EXPECT_EQ(coil_file_read_all("/tmp", &b, nullptr), COIL_ENOTASK);
}

TEST(File, FsyncAndFdatasyncSucceedOnAWrittenFile)
{
    TmpFile f;
    coil_test::run([&]() -> void * {
        int fd = -1;
        EXPECT_EQ(coil_file_open(f.path.c_str(), O_WRONLY, 0, &fd), 0);
        EXPECT_EQ(coil_write_all(fd, "data", 4), 0);
        EXPECT_EQ(coil_file_fsync(fd), 0);
        EXPECT_EQ(coil_write_all(fd, "more", 4), 0);
        EXPECT_EQ(coil_file_fdatasync(fd), 0);
        EXPECT_EQ(coil_file_close(fd), 0);
        return nullptr;
    });
}

TEST(File, StatxReportsSizeModeAndType)
{
    TmpFile f;
    TmpDir d;
    std::string data = pattern(12345);
    FILE *fp = fopen(f.path.c_str(), "w");
    fwrite(data.data(), 1, data.size(), fp);
    fclose(fp);
    chmod(f.path.c_str(), 0640);
    coil_test::run([&]() -> void * {
        struct statx sx;
        memset(&sx, 0, sizeof sx);
        EXPECT_EQ(coil_file_statx(f.path.c_str(), 0, STATX_SIZE | STATX_MODE | STATX_TYPE, &sx), 0);
        EXPECT_EQ(sx.stx_size, 12345u);
        EXPECT_TRUE(S_ISREG(sx.stx_mode));
        EXPECT_EQ(sx.stx_mode & 0777, 0640);
        EXPECT_EQ(coil_file_statx(d.path.c_str(), 0, 0, &sx), 0);
        EXPECT_TRUE(S_ISDIR(sx.stx_mode));
        int fd = -1;
        EXPECT_EQ(coil_file_open(f.path.c_str(), O_RDONLY, 0, &fd), 0);
        memset(&sx, 0, sizeof sx);
        EXPECT_EQ(coil_file_fstatx(fd, STATX_SIZE, &sx), 0);
        EXPECT_EQ(sx.stx_size, 12345u);
        EXPECT_EQ(coil_file_close(fd), 0);
        EXPECT_EQ(coil_file_statx("/tmp/coil-no-such-file", 0, 0, &sx), -ENOENT);
        return nullptr;
    });
}

TEST(File, ReadAllReturnsTheWholeFileNulTerminated)
{
    TmpFile f;
    std::string data = pattern(300000); // past the helper's first block, and not a power of two
    FILE *fp = fopen(f.path.c_str(), "w");
    fwrite(data.data(), 1, data.size(), fp);
    fclose(fp);
    coil_test::run([&]() -> void * {
        char *b = nullptr;
        size_t n = 0;
        EXPECT_EQ(coil_file_read_all(f.path.c_str(), &b, &n), 0);
        EXPECT_EQ(n, data.size());
        EXPECT_TRUE(b && memcmp(b, data.data(), n) == 0);
        EXPECT_EQ(b[n], 0);
        free(b);
        // An empty file is an empty, still NUL-terminated, block.
        TmpFile empty;
        EXPECT_EQ(coil_file_read_all(empty.path.c_str(), &b, &n), 0);
        EXPECT_EQ(n, 0u);
        EXPECT_EQ(b[0], 0);
        free(b);
        return nullptr;
    });
}

TEST(File, ReadAllGrowsForFilesThatReportNoSize)
{
    coil_test::run([&]() -> void * {
        // /proc files say size 0; /proc/self/maps of a test binary is well past 4 KiB.
        char *b = nullptr;
        size_t n = 0;
        EXPECT_EQ(coil_file_read_all("/proc/self/maps", &b, &n), 0);
        EXPECT_GT(n, 4096u);
        EXPECT_EQ(strlen(b), n);
        EXPECT_NE(strstr(b, "[stack]"), nullptr);
        free(b);
        return nullptr;
    });
}

TEST(File, ReadAllErrorsLeaveNothingAllocated)
{
    TmpDir d;
    coil_test::run([&]() -> void * {
        char *b = (char *)0x1;
        EXPECT_EQ(coil_file_read_all("/tmp/coil-no-such-file", &b, nullptr), -ENOENT);
        EXPECT_EQ(coil_file_read_all(d.path.c_str(), &b, nullptr), -EISDIR);
        EXPECT_EQ(b, (char *)0x1);
        EXPECT_EQ(coil_file_read_all(nullptr, &b, nullptr), -EINVAL);
        EXPECT_EQ(coil_file_read_all("/tmp", nullptr, nullptr), -EINVAL);
        return nullptr;
    });
}

TEST(File, WriteAllCreatesTruncatesAndAppends)
{
    TmpDir d;
    std::string p = d.path + "/out";
    std::string big = pattern(1 << 20);
    coil_test::run([&]() -> void * {
        EXPECT_EQ(coil_file_write_all(p.c_str(), big.data(), big.size(), 0, 0600), 0);
        char *b = nullptr;
        size_t n = 0;
        EXPECT_EQ(coil_file_read_all(p.c_str(), &b, &n), 0);
        EXPECT_EQ(n, big.size());
        EXPECT_TRUE(memcmp(b, big.data(), n) == 0);
        free(b);
        struct stat st;
        EXPECT_EQ(stat(p.c_str(), &st), 0);
        EXPECT_EQ(st.st_mode & 0777, 0600u);
        // The default truncates.
        EXPECT_EQ(coil_file_write_all(p.c_str(), "abc", 3, 0, 0), 0);
        EXPECT_EQ(coil_file_read_all(p.c_str(), &b, &n), 0);
        EXPECT_EQ(std::string(b, n), "abc");
        free(b);
        // Explicit flags: append.
        EXPECT_EQ(coil_file_write_all(p.c_str(), "def", 3, O_CREAT | O_APPEND, 0), 0);
        EXPECT_EQ(coil_file_read_all(p.c_str(), &b, &n), 0);
        EXPECT_EQ(std::string(b, n), "abcdef");
        free(b);
        // Zero bytes still creates/truncates.
        EXPECT_EQ(coil_file_write_all(p.c_str(), nullptr, 0, 0, 0), 0);
        EXPECT_EQ(stat(p.c_str(), &st), 0);
        EXPECT_EQ(st.st_size, 0);
        EXPECT_EQ(coil_file_write_all((d.path + "/no/such/dir").c_str(), "x", 1, 0, 0), -ENOENT);
        EXPECT_EQ(coil_file_write_all(p.c_str(), nullptr, 5, 0, 0), -EINVAL);
        unlink(p.c_str());
        return nullptr;
    });
}

// Two compact tasks share one stack; each keeps its path, statx buffer and read buffer in locals
// across awaits while the other runs on the same memory. Without bouncing, the kernel would read
// and write whichever task's frame happens to be there.
TEST(File, CompactTasksMayUsePathsAndBuffersOnTheirStacks)
{
    TmpFile a, b;
    std::string da = pattern(5000), db = std::string(7000, 'z');
    for (auto [p, d] : { std::pair{ &a, &da }, std::pair{ &b, &db } }) {
        FILE *fp = fopen(p->path.c_str(), "w");
        fwrite(d->data(), 1, d->size(), fp);
        fclose(fp);
    }
    coil_test::run([&]() -> void * {
        coil_task_opts o{};
        o.stack_mode = COIL_STACK_COMPACT;
        coil_task *t[2];
        const std::string *paths[2] = { &a.path, &b.path }, *datas[2] = { &da, &db };
        for (int i = 0; i < 2; i++) {
            const std::string *path = paths[i], *data = datas[i];
            EXPECT_EQ(coil_test::spawn(&t[i], [path, data]() -> void * {
                for (int round = 0; round < 20; round++) {
                    char local_path[64];
                    snprintf(local_path, sizeof local_path, "%s", path->c_str());
                    struct statx sx;
                    memset(&sx, 0, sizeof sx);
                    EXPECT_EQ(coil_file_statx(local_path, 0, STATX_SIZE, &sx), 0);
                    EXPECT_EQ(sx.stx_size, data->size());
                    int fd = -1;
                    EXPECT_EQ(coil_file_open(local_path, O_RDONLY, 0, &fd), 0);
                    char buf[8192];
                    size_t n = 0;
                    EXPECT_EQ(coil_file_pread(fd, buf, sizeof buf, 0, &n), 0);
                    EXPECT_EQ(n, data->size());
                    EXPECT_TRUE(memcmp(buf, data->data(), n) == 0);
                    EXPECT_EQ(coil_file_close(fd), 0);
                }
                return nullptr;
            }, &o), 0);
        }
        for (auto *x : t) {
            EXPECT_EQ(coil_task_await(x, nullptr), 0);
            coil_task_free(x);
        }
        return nullptr;
    });
}

// A FIFO whose only writer never writes: the read parks in the kernel until cancelled, and the
// task resumes with -ECANCELED once the kernel has let go of the buffer. The fd stays usable.
TEST(File, CancellingAReadOnAnIdleFifoReturnsECANCELED)
{
    TmpDir d;
    std::string p = d.path + "/fifo";
    ASSERT_EQ(mkfifo(p.c_str(), 0600), 0);
    coil_test::run([&]() -> void * {
        int fd = -1;
        // O_RDWR: the FIFO has a writer (this fd), so the open does not wait and read blocks.
        EXPECT_EQ(coil_file_open(p.c_str(), O_RDWR, 0, &fd), 0);
        bool reading = false;
        int rc = 1;
        coil_task *t = nullptr;
        coil_test::spawn(&t, [&]() -> void * {
            char buf[64];
            size_t n;
            reading = true;
            rc = coil_file_read(fd, buf, sizeof buf, &n);
            return nullptr;
        });
        EXPECT_TRUE(wait_flag(&reading));
        EXPECT_EQ(coil_task_cancel(t, nullptr), 1);
        coil_task_await(t, nullptr);
        coil_task_free(t);
        EXPECT_EQ(rc, -ECANCELED);
        size_t n;
        EXPECT_EQ(coil_file_write(fd, "ok", 2, &n), 0);
        char buf[4];
        EXPECT_EQ(coil_file_read(fd, buf, sizeof buf, &n), 0);
        EXPECT_EQ(std::string(buf, n), "ok");
        EXPECT_EQ(coil_file_close(fd), 0);
        return nullptr;
    });
    unlink(p.c_str());
}

TEST(File, APendingCancelIsDeliveredBeforeSubmitting)
{
    TmpFile f;
    coil_test::run([&]() -> void * {
        coil_task *self = coil_current_task();
        coil_task_cancel(self, nullptr);
        int fd = -1;
        EXPECT_EQ(coil_file_open(f.path.c_str(), O_RDONLY, 0, &fd), -ECANCELED);
        EXPECT_EQ(fd, -1);
        EXPECT_EQ(coil_task_uncancel(self), 0);
        // A close is the exception (the close rule, coil/file.h): the fd is gone and the cancel
        // comes at the next await.
        fd = open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
        coil_task_cancel(self, nullptr);
        EXPECT_EQ(coil_file_close(fd), 0);
        EXPECT_EQ(fcntl(fd, F_GETFD), -1);
        EXPECT_EQ(coil_sleep(0), -ECANCELED);
        EXPECT_EQ(coil_task_uncancel(self), 0);
        return nullptr;
    });
}
