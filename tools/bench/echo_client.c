/* coil-bench: the echo load client (see echo_client.h). One thread, one epoll set; each
 * connection has one message in flight, as in the workload's definition. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "bench.h"
#include "echo_client.h"

typedef struct conn {
    int fd;
    int got;
} conn;

int echo_client_run(int port, int nconns, int size, double seconds, echo_load *out)
{
    memset(out, 0, sizeof *out);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return -errno;
    conn *cs = calloc((size_t)nconns, sizeof *cs);
    char *msg = malloc((size_t)size), *buf = malloc(65536);
    if (!cs || !msg || !buf) {
        free(cs);
        free(msg);
        free(buf);
        close(ep);
        return -ENOMEM;
    }
    memset(msg, 'e', (size_t)size);
    struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int err = 0;
    for (int i = 0; i < nconns; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0) {
            err = -errno;
            if (fd >= 0)
                close(fd);
            nconns = i;
            break;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        cs[i].fd = fd;
        struct epoll_event ev = { .events = EPOLLIN, .data.ptr = &cs[i] };
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    uint64_t t0 = bench_now_ns(), end = t0 + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < nconns && !err; i++)
        if (send(cs[i].fd, msg, (size_t)size, MSG_NOSIGNAL) != size)
            out->errors++;
    struct epoll_event evs[64];
    while (!err) {
        uint64_t now = bench_now_ns();
        if (now >= end)
            break;
        int n = epoll_wait(ep, evs, 64, (int)((end - now) / 1000000) + 1);
        for (int i = 0; i < n; i++) {
            conn *c = evs[i].data.ptr;
            ssize_t k = recv(c->fd, buf, 65536, MSG_DONTWAIT);
            if (k <= 0) {
                if (k < 0 && errno == EAGAIN)
                    continue;
                out->errors++;
                epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
                continue;
            }
            c->got += (int)k;
            if (c->got < size)
                continue;
            if (c->got > size)
                out->errors++;
            c->got = 0;
            out->messages++;
            if (send(c->fd, msg, (size_t)size, MSG_NOSIGNAL) != size)
                out->errors++;
        }
    }
    out->wall_s = (double)(bench_now_ns() - t0) / 1e9;
    for (int i = 0; i < nconns; i++)
        close(cs[i].fd);
    close(ep);
    free(cs);
    free(msg);
    free(buf);
    return err;
}
