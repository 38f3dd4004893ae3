/* coil core: socket operations through the ring (coil/net.h).
 *
 * As in fdio.c, the waiting task is the operation record. What the kernel reads at submission
 * (an address, a msghdr) or writes at completion (a buffer, an accepted peer's address) must not
 * live on the shared stack of compact tasks: it is bounced through a heap block here. */
#include <errno.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "io/net_internal.h"

static int begin(coil_task **out, int fd)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (fd < 0)
        return -EBADF;
    *out = t;
    return coil__task_check_cancel(t);
}

/* Must memory [p, p+n) be copied off the stack before the task suspends? */
static bool needs_bounce(coil_task *t, const void *p, size_t n)
{
    return p && n && (t->tflags & COIL__TF_COMPACT) && coil__on_shared_stack(t->loop, p, n);
}

int coil_socket(int domain, int type, int protocol, int *fd)
{
    if (!fd)
        return -EINVAL;
    int s = socket(domain, type | SOCK_CLOEXEC, protocol);
    if (s < 0)
        return -errno;
    *fd = s;
    return 0;
}

/* ---- connect, with an optional deadline on the loop's timer heap ---- */

static void connect_deadline(coil__timer *tm)
{
    /* The task waits on its connect, so its timer slot (shared with the wait node) is free. */
    coil_task *t = coil__container_of(tm, coil_task, timer);
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe)
        return;
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)t | COIL__UD_TASK, 0);
    io_uring_sqe_set_data64(sqe, COIL__UD_IGNORE);
}

int coil__sock_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen, uint64_t timeout_ns)
{
    coil_task *t;
    int err = begin(&t, fd);
    if (err)
        return err;
    if (!addr || addrlen == 0 || addrlen > sizeof(struct sockaddr_storage))
        return -EINVAL;
    /* The kernel copies the address when it takes the SQE, after this task has switched out. */
    struct sockaddr_storage *copy = NULL;
    if (needs_bounce(t, addr, addrlen)) {
        copy = malloc(sizeof *copy);
        if (!copy)
            return -ENOMEM;
        memcpy(copy, addr, addrlen);
        addr = (const struct sockaddr *)copy;
    }
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe) {
        free(copy);
        return -EBUSY;
    }
    io_uring_prep_connect(sqe, fd, addr, addrlen);
    uint16_t cancels = t->cancel_requests;
    bool timed = timeout_ns != 0;
    if (timed) {
        t->timer.fire = connect_deadline;
        t->timer.idx = 0;
        uint64_t now = coil__now_ns();
        if (coil__timers_add(&t->loop->timers, &t->timer, timeout_ns > UINT64_MAX - now ? UINT64_MAX : now + timeout_ns)) {
            /* The SQE is already taken: turn it into a no-op that wakes nobody. */
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, COIL__UD_IGNORE);
            free(copy);
            return -ENOMEM;
        }
    }
    int res = coil__io_submit_wait(t, sqe);
    bool fired = false;
    if (timed) {
        fired = !coil__timer_armed(&t->timer);
        if (!fired)
            coil__timers_remove(&t->loop->timers, &t->timer);
    }
    free(copy);
    if (res == -ECANCELED && fired && t->cancel_requests == cancels)
        return -ETIMEDOUT;
    return res < 0 ? res : 0;
}

int coil_sock_connect(int fd, const struct sockaddr *addr, socklen_t addrlen)
{
    return coil__sock_connect_timeout(fd, addr, addrlen, 0);
}

/* ---- accept ---- */

struct accept_bounce {
    struct sockaddr_storage addr;
    socklen_t len;
};

int coil_sock_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags, int *out_fd)
{
    coil_task *t;
    int err = begin(&t, fd);
    if (err)
        return err;
    if (!out_fd || (addr && !addrlen))
        return -EINVAL;
    struct accept_bounce *b = NULL;
    struct sockaddr *kaddr = addr;
    socklen_t *klen = addrlen;
    if (addr && (needs_bounce(t, addr, *addrlen) || needs_bounce(t, addrlen, sizeof *addrlen))) {
        b = malloc(sizeof *b);
        if (!b)
            return -ENOMEM;
        b->len = sizeof b->addr;
        kaddr = (struct sockaddr *)&b->addr;
        klen = &b->len;
    }
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe) {
        free(b);
        return -EBUSY;
    }
    io_uring_prep_accept(sqe, fd, kaddr, klen, flags | SOCK_CLOEXEC);
    int res = coil__io_submit_wait(t, sqe);
    if (res >= 0 && klen) {
        coil__kernel_wrote(klen, sizeof *klen);
        coil__kernel_wrote(kaddr, *klen);
    }
    if (b) {
        if (res >= 0) {
            memcpy(addr, &b->addr, b->len < *addrlen ? b->len : *addrlen);
            *addrlen = b->len;
        }
        free(b);
    }
    if (res < 0)
        return res;
    *out_fd = res;
    return 0;
}

/* ---- recv / send ---- */

static int xfer(bool out, int fd, void *buf, size_t len, int flags, size_t *n)
{
    coil_task *t;
    int err = begin(&t, fd);
    if (err)
        return err;
    if (!buf && len)
        return -EFAULT;
    if (len > 0x7ffff000u)
        len = 0x7ffff000u;
    void *bounce = NULL, *kbuf = buf;
    if (needs_bounce(t, buf, len)) {
        bounce = malloc(len);
        if (!bounce)
            return -ENOMEM;
        if (out)
            memcpy(bounce, buf, len);
        kbuf = bounce;
    }
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe) {
        free(bounce);
        return -EBUSY;
    }
    if (out)
        io_uring_prep_send(sqe, fd, kbuf, len, flags | MSG_NOSIGNAL);
    else
        io_uring_prep_recv(sqe, fd, kbuf, len, flags);
    int res = coil__io_submit_wait(t, sqe);
    if (!out && res > 0)
        coil__kernel_wrote(kbuf, (size_t)res);
    if (bounce) {
        if (!out && res > 0)
            memcpy(buf, bounce, (size_t)res);
        free(bounce);
    }
    if (res < 0)
        return res;
    if (n)
        *n = (size_t)res;
    return 0;
}

int coil_sock_recv(int fd, void *buf, size_t len, int flags, size_t *n) { return xfer(false, fd, buf, len, flags, n); }

int coil_sock_send(int fd, const void *buf, size_t len, int flags, size_t *n)
{
    return xfer(true, fd, (void *)buf, len, flags, n);
}

int coil_sock_sendall(int fd, const void *buf, size_t len, int flags)
{
    const char *p = buf;
    while (len) {
        size_t n = 0;
        int err = coil_sock_send(fd, p, len, flags, &n);
        if (err)
            return err;
        p += n;
        len -= n;
    }
    return 0;
}

/* ---- sendmsg / recvmsg ----
 * A compact task's msghdr, iovec array, name, control and data are all copied into one heap
 * block (the kernel reads the header at submission and the buffers until completion). */

struct msg_bounce {
    struct msghdr m;
    size_t total;
    unsigned char mem[];
};

static struct msg_bounce *bounce_msg(const struct msghdr *msg, bool out)
{
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        total += msg->msg_iov[i].iov_len;
    size_t size = sizeof(struct iovec) + msg->msg_namelen + msg->msg_controllen + total + 16;
    struct msg_bounce *b = malloc(sizeof *b + size);
    if (!b)
        return NULL;
    unsigned char *p = b->mem;
    struct iovec *iov = (struct iovec *)(void *)p;
    p += sizeof *iov;
    b->m = *msg;
    b->total = total;
    b->m.msg_iov = iov;
    b->m.msg_iovlen = 1;
    if (msg->msg_name) {
        b->m.msg_name = p;
        if (out)
            memcpy(p, msg->msg_name, msg->msg_namelen);
        p += msg->msg_namelen;
    }
    p = (unsigned char *)(((uintptr_t)p + 15) & ~(uintptr_t)15);
    if (msg->msg_control) {
        b->m.msg_control = p;
        if (out)
            memcpy(p, msg->msg_control, msg->msg_controllen);
        p += msg->msg_controllen;
    }
    iov->iov_base = p;
    iov->iov_len = total;
    if (out)
        for (size_t i = 0; i < msg->msg_iovlen; i++) {
            memcpy(p, msg->msg_iov[i].iov_base, msg->msg_iov[i].iov_len);
            p += msg->msg_iov[i].iov_len;
        }
    return b;
}

static void unbounce_msg(struct msg_bounce *b, struct msghdr *msg, size_t got)
{
    const unsigned char *p = b->m.msg_iov[0].iov_base;
    for (size_t i = 0; i < msg->msg_iovlen && got; i++) {
        size_t k = msg->msg_iov[i].iov_len < got ? msg->msg_iov[i].iov_len : got;
        memcpy(msg->msg_iov[i].iov_base, p, k);
        p += k;
        got -= k;
    }
    if (msg->msg_name) {
        memcpy(msg->msg_name, b->m.msg_name, b->m.msg_namelen < msg->msg_namelen ? b->m.msg_namelen : msg->msg_namelen);
        msg->msg_namelen = b->m.msg_namelen;
    }
    if (msg->msg_control) {
        memcpy(msg->msg_control, b->m.msg_control, b->m.msg_controllen);
        msg->msg_controllen = b->m.msg_controllen;
    }
    msg->msg_flags = b->m.msg_flags;
}

static int msg_op(bool out, int fd, struct msghdr *msg, int flags, size_t *n)
{
    coil_task *t;
    int err = begin(&t, fd);
    if (err)
        return err;
    if (!msg || (msg->msg_iovlen && !msg->msg_iov))
        return -EFAULT;
    struct msg_bounce *b = NULL;
    struct msghdr *kmsg = msg;
    if (t->tflags & COIL__TF_COMPACT) {
        b = bounce_msg(msg, out);
        if (!b)
            return -ENOMEM;
        kmsg = &b->m;
    }
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe) {
        free(b);
        return -EBUSY;
    }
    if (out)
        io_uring_prep_sendmsg(sqe, fd, kmsg, (unsigned)(flags | MSG_NOSIGNAL));
    else
        io_uring_prep_recvmsg(sqe, fd, kmsg, (unsigned)flags);
    int res = coil__io_submit_wait(t, sqe);
    if (!out && res >= 0) {
        size_t left = (size_t)res;
        for (size_t i = 0; i < kmsg->msg_iovlen && left; i++) {
            size_t k = kmsg->msg_iov[i].iov_len < left ? kmsg->msg_iov[i].iov_len : left;
            coil__kernel_wrote(kmsg->msg_iov[i].iov_base, k);
            left -= k;
        }
        coil__kernel_wrote(kmsg, sizeof *kmsg);
        if (kmsg->msg_name)
            coil__kernel_wrote(kmsg->msg_name, kmsg->msg_namelen);
        if (kmsg->msg_control)
            coil__kernel_wrote(kmsg->msg_control, kmsg->msg_controllen);
    }
    if (b) {
        if (!out && res >= 0)
            unbounce_msg(b, msg, (size_t)res);
        free(b);
    }
    if (res < 0)
        return res;
    if (n)
        *n = (size_t)res;
    return 0;
}

int coil_sock_sendmsg(int fd, const struct msghdr *msg, int flags, size_t *n)
{
    return msg_op(true, fd, (struct msghdr *)msg, flags, n);
}

int coil_sock_recvmsg(int fd, struct msghdr *msg, int flags, size_t *n) { return msg_op(false, fd, msg, flags, n); }

int coil_sock_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr, socklen_t addrlen,
                     size_t *n)
{
    struct iovec iov = { (void *)buf, len };
    struct msghdr m = { .msg_name = (void *)addr, .msg_namelen = addr ? addrlen : 0, .msg_iov = &iov, .msg_iovlen = 1 };
    return coil_sock_sendmsg(fd, &m, flags, n);
}

int coil_sock_recvfrom(int fd, void *buf, size_t len, int flags, coil_sockaddr *from, size_t *n)
{
    struct iovec iov = { buf, len };
    struct sockaddr_storage ss;
    struct msghdr m = { .msg_name = from ? &ss : NULL, .msg_namelen = from ? sizeof ss : 0, .msg_iov = &iov, .msg_iovlen = 1 };
    int err = coil_sock_recvmsg(fd, &m, flags, n);
    if (!err && from) {
        memcpy(&from->ss, &ss, m.msg_namelen <= sizeof ss ? m.msg_namelen : sizeof ss);
        from->len = m.msg_namelen;
    }
    return err;
}

int coil_sock_shutdown(int fd, int how)
{
    coil_task *t;
    int err = begin(&t, fd);
    if (err)
        return err;
    if (how != SHUT_RD && how != SHUT_WR && how != SHUT_RDWR)
        return -EINVAL;
    struct io_uring_sqe *sqe = coil__uring_sqe(t->loop);
    if (!sqe)
        return -EBUSY;
    io_uring_prep_shutdown(sqe, fd, how);
    int res = coil__io_submit_wait(t, sqe);
    return res < 0 ? res : 0;
}

int coil_sock_close(int fd) { return coil_close(fd); }

/* ---- addresses ---- */

char *coil_sockaddr_format(const struct sockaddr *addr, socklen_t len, char *buf, size_t cap)
{
    if (!buf || !cap)
        return buf;
    buf[0] = 0;
    if (!addr || len < sizeof(sa_family_t))
        return buf;
    char host[INET6_ADDRSTRLEN];
    if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)addr;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(buf, cap, "%s:%u", host, ntohs(a->sin_port));
    } else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)addr;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(buf, cap, "[%s]:%u", host, ntohs(a->sin6_port));
    } else if (addr->sa_family == AF_UNIX) {
        const struct sockaddr_un *a = (const struct sockaddr_un *)(const void *)addr;
        size_t n = len - offsetof(struct sockaddr_un, sun_path);
        if (n > sizeof a->sun_path)
            n = sizeof a->sun_path;
        snprintf(buf, cap, "%.*s", (int)strnlen(a->sun_path, n), a->sun_path);
    }
    return buf;
}

int coil_sockaddr_port(const struct sockaddr *addr)
{
    if (!addr)
        return -1;
    if (addr->sa_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)(const void *)addr)->sin_port);
    if (addr->sa_family == AF_INET6)
        return ntohs(((const struct sockaddr_in6 *)(const void *)addr)->sin6_port);
    return -1;
}
