/* coil core: opening client streams (asyncio's open_connection / open_unix_connection): resolve
 * off the loop, try each address in turn with the per-address connect timeout, wrap the first
 * socket that connects in a stream. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "io/net_internal.h"

static void nodelay(int fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int coil_open_connection(const char *host, int port, const coil_stream_opts *opts, coil_stream **out)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!host || !out || port < 0 || port > 65535)
        return -EINVAL;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_family = opts ? opts->family : 0, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    int err = coil_getaddrinfo(host, ps, &hints, &res);
    if (err)
        return err;
    uint64_t tmo = opts && opts->connect_timeout > 0 ? (uint64_t)(opts->connect_timeout * 1e9) : 0;
    if (opts && opts->connect_timeout > 0 && tmo == 0)
        tmo = 1;
    err = COIL_ENONAME;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd;
        err = coil_socket(ai->ai_family, SOCK_STREAM, 0, &fd);
        if (err)
            continue;
        if (ai->ai_family == AF_INET || ai->ai_family == AF_INET6)
            nodelay(fd);
        err = coil__sock_connect_timeout(fd, ai->ai_addr, ai->ai_addrlen, tmo);
        if (err == 0) {
            freeaddrinfo(res);
            return coil__stream_new(t->loop, fd, opts, out);
        }
        close(fd);
        if (err == -ECANCELED)
            break; /* the task was cancelled: do not go on to the next address */
    }
    freeaddrinfo(res);
    return err;
}

int coil_open_unix_connection(const char *path, const coil_stream_opts *opts, coil_stream **out)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!path || !out)
        return -EINVAL;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t n = strlen(path);
    if (n >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, n + 1);
    int fd;
    int err = coil_socket(AF_UNIX, SOCK_STREAM, 0, &fd);
    if (err)
        return err;
    uint64_t tmo = opts && opts->connect_timeout > 0 ? (uint64_t)(opts->connect_timeout * 1e9) + 1 : 0;
    err = coil__sock_connect_timeout(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1), tmo);
    if (err) {
        close(fd);
        return err;
    }
    return coil__stream_new(t->loop, fd, opts, out);
}

