// Refusing io_uring the way a sandbox does: a seccomp filter (prctl(PR_SET_NO_NEW_PRIVS), then a
// BPF program; no privileges needed) that makes chosen io_uring system calls fail with a chosen
// errno (ENOSYS: no such call, as under a profile that does not know them; EPERM: forbidden, as
// kernel.io_uring_disabled or a policy answers) while every other call goes through.
//
// A filter stays with a process for good and is inherited by its children, so it is only ever
// installed in a forked child: seccomp_refuse() in a child that then runs coil in-process,
// spawn_refused() for a child that execs a program (an example server) under the filter.
#ifndef COIL_TEST_SECCOMP_REFUSE_H
#define COIL_TEST_SECCOMP_REFUSE_H

#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

extern char **environ;

namespace coil_test {

// Which io_uring system calls to refuse.
enum : unsigned {
    REFUSE_SETUP = 1,    // io_uring_setup: no ring can be made
    REFUSE_ENTER = 2,    // io_uring_enter: a ring is made but cannot be used
    REFUSE_REGISTER = 4, // io_uring_register
    REFUSE_IO_URING = REFUSE_SETUP | REFUSE_ENTER | REFUSE_REGISTER,
};

// Install, in the calling process, a filter that makes each io_uring call in `which` fail with
// `err`; every other call (and every call of another architecture's ABI, which the numbers
// below do not name) is allowed. Async-signal-safe (usable between fork and exec). Returns false
// when no filter could be installed here (no seccomp, or a CPU this helper does not know).
inline bool seccomp_refuse(unsigned which, int err)
{
#if defined(__x86_64__)
    const unsigned arch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
    const unsigned arch = AUDIT_ARCH_AARCH64;
#else
    (void)which;
    (void)err;
    return false;
#endif
#if defined(__x86_64__) || defined(__aarch64__)
    unsigned nrs[3], k = 0;
    if (which & REFUSE_SETUP)
        nrs[k++] = __NR_io_uring_setup;
    if (which & REFUSE_ENTER)
        nrs[k++] = __NR_io_uring_enter;
    if (which & REFUSE_REGISTER)
        nrs[k++] = __NR_io_uring_register;
    // Load the ABI, allow any other; load the call's number; one check per refused call, each
    // jumping (over the checks after it and the allow) to the refusal, the last instruction.
    struct sock_filter prog[4 + 3 + 2];
    unsigned short n = 0;
    prog[n++] = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    prog[n++] = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, arch, 1, 0);
    prog[n++] = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[n++] = BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (unsigned i = 0; i < k; i++)
        prog[n++] = BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, nrs[i], (unsigned char)(k - i), 0);
    prog[n++] = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    prog[n++] = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA));
    struct sock_fprog fprog = { n, prog };
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return false;
    return prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &fprog) == 0;
#endif
}

// A program started under the filter by spawn_refused.
struct Refused {
    pid_t pid = -1;      // the child, running the program; -1 when it did not start
    int out = -1;        // read end of its stdout
    int err = -1;        // read end of its stderr
    bool no_filter = false; // it did not start because no filter could be installed here (skip)
    int exec_errno = 0;  // it did not start because execve failed with this
};

// Fork a child that refuses the io_uring calls in `which` with `err`, then execs argv (argv[0]
// is the program's path) with this process's environment changed by `env` ("NAME=value" sets,
// "NAME" alone removes), its stdout and stderr on pipes whose read ends come back (close them;
// reap the child). Everything the child needs is built before the fork, so the child calls only
// async-signal-safe functions, whatever threads this process runs.
inline Refused spawn_refused(const std::vector<std::string> &argv, int err, unsigned which = REFUSE_IO_URING,
                             const std::vector<std::string> &env = {})
{
    Refused r;
    std::vector<std::string> envs;
    for (char **e = environ; *e; e++) {
        std::string kv = *e;
        bool changed = false;
        for (const std::string &c : env)
            changed |= kv.rfind(c.substr(0, c.find('=')) + "=", 0) == 0;
        if (!changed)
            envs.push_back(kv);
    }
    for (const std::string &c : env)
        if (c.find('=') != std::string::npos)
            envs.push_back(c);
    std::vector<char *> av, ev;
    for (const std::string &a : argv)
        av.push_back(const_cast<char *>(a.c_str()));
    av.push_back(nullptr);
    for (const std::string &e : envs)
        ev.push_back(const_cast<char *>(e.c_str()));
    ev.push_back(nullptr);
    int out[2], errp[2], st[2]; // st: the child's word on why it did not start (EOF: it did)
    if (pipe2(out, O_CLOEXEC) != 0)
        return r;
    if (pipe2(errp, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        return r;
    }
    if (pipe2(st, O_CLOEXEC) != 0) {
        close(out[0]);
        close(out[1]);
        close(errp[0]);
        close(errp[1]);
        return r;
    }
    fflush(nullptr);
    pid_t pid = fork();
    if (pid == 0) {
        int why[2] = { 0, 0 };
        if (dup2(out[1], 1) < 0 || dup2(errp[1], 2) < 0) {
            why[0] = 'D';
        } else if (!seccomp_refuse(which, err)) {
            why[0] = 'F';
        } else {
            execve(av[0], av.data(), ev.data());
            why[0] = 'E';
            why[1] = errno;
        }
        (void)!write(st[1], why, sizeof why);
        _exit(127);
    }
    close(out[1]);
    close(errp[1]);
    close(st[1]);
    if (pid < 0) {
        close(out[0]);
        close(errp[0]);
        close(st[0]);
        return r;
    }
    int why[2] = { 0, 0 };
    ssize_t n;
    do
        n = read(st[0], why, sizeof why);
    while (n < 0 && errno == EINTR);
    close(st[0]);
    if (n > 0) {
        r.no_filter = why[0] == 'F';
        r.exec_errno = why[0] == 'E' ? why[1] : 0;
        close(out[0]);
        close(errp[0]);
        waitpid(pid, nullptr, 0);
        return r;
    }
    r.pid = pid;
    r.out = out[0];
    r.err = errp[0];
    return r;
}

} // namespace coil_test

#endif
