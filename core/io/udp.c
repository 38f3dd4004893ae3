/* coil core: a UDP endpoint (coil_udp_*): a datagram socket bound and/or connected as asked,
 * with sendto/recvfrom through the ring (sock.c's sendmsg/recvmsg). */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "io/net_internal.h"

/* Operations in flight are counted by the tasks that run them: close cancels each one's
 * request (as a stream's close cancels its reader) and the last to return closes the fd and
 * frees the endpoint, so neither goes while the kernel may still name them. */
struct coil_udp {
    int fd;
    bool closing;
    unsigned nops, cap;
    coil_task **ops; /* the tasks with an operation on this endpoint */
};

static void destroy(coil_udp *u)
{
    close(u->fd);
    free(u->ops);
    free(u);
}

static int op_begin(coil_udp *u, coil_task **out)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (u->closing)
        return COIL_ECLOSED;
    if (u->nops == u->cap) {
        unsigned cap = u->cap ? 2 * u->cap : 2;
        coil_task **ops = realloc(u->ops, cap * sizeof *ops);
        if (!ops)
            return -ENOMEM;
        u->ops = ops;
        u->cap = cap;
    }
    u->ops[u->nops++] = t;
    *out = t;
    return 0;
}

/* The operation has returned err. cancels: the task's cancel requests when it began. */
static int op_end(coil_udp *u, coil_task *t, uint16_t cancels, int err)
{
    for (unsigned i = 0; i < u->nops; i++)
        if (u->ops[i] == t) {
            u->ops[i] = u->ops[--u->nops];
            break;
        }
    if (!u->closing)
        return err;
    if (!u->nops)
        destroy(u);
    /* Our close cut it short, unless the task itself was cancelled meanwhile. */
    return err == -ECANCELED && t->cancel_requests != cancels ? err : COIL_ECLOSED;
}

static int resolve(const char *host, int port, int family, bool passive, struct addrinfo **res)
{
    if (port < 0 || port > 65535)
        return -EINVAL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_flags = passive ? AI_PASSIVE : 0, .ai_family = family, .ai_socktype = SOCK_DGRAM };
    return coil_getaddrinfo(host, ps, &hints, res);
}

int coil_udp_open(const coil_udp_opts *o, coil_udp **out)
{
    if (!o || !out)
        return -EINVAL;
    bool local = o->local_host || o->local_port;
    bool remote = o->remote_host != NULL;
    if (!local && !remote)
        return -EINVAL;
    struct addrinfo *lres = NULL, *rres = NULL;
    int err = 0;
    if (local && (err = resolve(o->local_host, o->local_port, o->family, true, &lres)))
        return err;
    if (remote && (err = resolve(o->remote_host, o->remote_port, lres ? lres->ai_family : o->family, false, &rres))) {
        if (lres)
            freeaddrinfo(lres);
        return err;
    }
    int family = lres ? lres->ai_family : rres->ai_family;
    int fd = -1;
    err = coil_socket(family, SOCK_DGRAM, 0, &fd);
    int one = 1;
    if (!err && o->reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one))
        err = -errno;
    if (!err && o->allow_broadcast && setsockopt(fd, SOL_SOCKET, SO_BROADCAST, &one, sizeof one))
        err = -errno;
    if (!err && lres && bind(fd, lres->ai_addr, lres->ai_addrlen))
        err = -errno;
    if (!err && rres)
        err = coil_sock_connect(fd, rres->ai_addr, rres->ai_addrlen);
    if (lres)
        freeaddrinfo(lres);
    if (rres)
        freeaddrinfo(rres);
    coil_udp *u = NULL;
    if (!err && !(u = malloc(sizeof *u)))
        err = -ENOMEM;
    if (err) {
        if (fd >= 0)
            close(fd);
        return err;
    }
    *u = (coil_udp){ .fd = fd };
    *out = u;
    return 0;
}

int coil_udp_sendto(coil_udp *u, const void *buf, size_t len, const struct sockaddr *addr, socklen_t addrlen)
{
    if (!u)
        return -EINVAL;
    coil_task *t;
    int err = op_begin(u, &t);
    if (err)
        return err;
    uint16_t cancels = t->cancel_requests;
    size_t n = 0;
    err = coil_sock_sendto(u->fd, buf, len, 0, addr, addrlen, &n);
    err = op_end(u, t, cancels, err);
    return err ? err : n == len ? 0 : -EMSGSIZE;
}

int coil_udp_recvfrom(coil_udp *u, void *buf, size_t len, size_t *n, coil_sockaddr *from)
{
    if (!u)
        return -EINVAL;
    coil_task *t;
    int err = op_begin(u, &t);
    if (err)
        return err;
    uint16_t cancels = t->cancel_requests;
    err = coil_sock_recvfrom(u->fd, buf, len, 0, from, n);
    return op_end(u, t, cancels, err);
}

int coil_udp_sockname(coil_udp *u, coil_sockaddr *out)
{
    if (!u || !out)
        return -EINVAL;
    out->len = sizeof out->ss;
    return getsockname(u->fd, (struct sockaddr *)&out->ss, &out->len) ? -errno : 0;
}

int coil_udp_fd(const coil_udp *u) { return u ? u->fd : -1; }

void coil_udp_close(coil_udp *u)
{
    if (!u || u->closing)
        return;
    u->closing = true;
    if (!u->nops) {
        destroy(u);
        return;
    }
    for (unsigned i = 0; i < u->nops; i++) {
        coil_task *t = u->ops[i];
        coil__backend_cancel_task(t->loop, t);
    }
}
