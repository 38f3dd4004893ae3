// io_uring setup failure: a kernel (or sandbox) that refuses io_uring_setup gives COIL_ENOURING
// and a message that tells the user why and what to do. A seccomp filter in a child process
// stands in for the refusing kernel.
#include <gtest/gtest.h>

#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include <coil/coil.h>

namespace {

#if defined(__x86_64__)
#define COIL_TEST_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define COIL_TEST_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

// Make io_uring_setup fail with `err`; every other syscall is allowed.
bool refuse_io_uring_setup(int err)
{
    struct sock_filter prog[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, COIL_TEST_AUDIT_ARCH, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog fprog = {(unsigned short)(sizeof prog / sizeof prog[0]), prog};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return false;
    return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &fprog) == 0;
}

// In the child: refuse io_uring_setup, ask for io_uring by name (with it refused, the default
// falls back to epoll), try to make a loop, exit 0 only if that gave COIL_ENOURING and no loop.
// What the library printed goes to stderr, which EXPECT_EXIT matches.
[[noreturn]] void child(int err)
{
    if (!refuse_io_uring_setup(err))
        _exit(10);
    setenv("COIL_BACKEND", "io_uring", 1);
    coil_loop *loop = reinterpret_cast<coil_loop *>(0x1);
    int rc = coil_new_event_loop(&loop, nullptr);
    if (rc != COIL_ENOURING)
        _exit(11);
    if (loop != reinterpret_cast<coil_loop *>(0x1))
        _exit(12); // *out must be untouched on failure
    // A runner on such a kernel fails cleanly as well.
    coil_runner *r = nullptr;
    if (coil_runner_new(&r, nullptr) != 0)
        _exit(13);
    if (coil_runner_get_loop(r) != nullptr)
        _exit(14);
    int rrc = coil_runner_run(r, [](void *) -> void * { return nullptr; }, nullptr, nullptr);
    coil_runner_close(r);
    if (rrc != COIL_ENOURING)
        _exit(15);
    _exit(0);
}

TEST(UringSetupDeathTest, SeccompEnosysGivesEnouringAndAMessageNamingSeccomp)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(child(ENOSYS), ::testing::ExitedWithCode(0), "cannot set up io_uring.*seccomp");
}

TEST(UringSetupDeathTest, EpermGivesEnouringAndAMessageNamingIoUringDisabled)
{
    GTEST_FLAG_SET(death_test_style, "threadsafe");
    EXPECT_EXIT(child(EPERM), ::testing::ExitedWithCode(0), "cannot set up io_uring.*kernel\\.io_uring_disabled");
}

TEST(UringSetup, NewEventLoopWithNullOutReturnsEinval)
{
    EXPECT_EQ(coil_new_event_loop(nullptr, nullptr), -EINVAL);
}

TEST(UringSetup, ALoopCanBeCreatedHereWithoutTheFilter)
{
    // The death tests above only mean something if io_uring works outside the filter.
    coil_loop *loop = nullptr;
    ASSERT_EQ(coil_new_event_loop(&loop, nullptr), 0);
    EXPECT_EQ(coil_loop_close(loop), 0);
}

} // namespace
