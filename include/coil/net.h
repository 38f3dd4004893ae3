/* coil: sockets on the loop's io_uring: socket operations, name resolution and a UDP endpoint.
 *
 * Every operation that waits suspends the running task until the kernel completes it, and every
 * one is cancellable: cancelling the task submits an async cancel, and the task resumes once the
 * kernel is done with its buffers, with -ECANCELED (or, if the operation had already completed,
 * with its result; the cancel is then delivered at the next await, see coil/task.h). Buffers and
 * addresses on a compact task's stack are bounced through runtime-owned memory. Errors are
 * negated errnos; COIL_ENOTASK outside a task. Every fd coil opens is close-on-exec.
 * Loop thread only, except where a function says otherwise. */
#ifndef COIL_NET_H
#define COIL_NET_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "api.h"

#ifdef __cplusplus
extern "C" {
#endif

struct addrinfo;

/* A socket address big enough for any family (IPv4, IPv6, Unix). */
typedef struct coil_sockaddr {
    struct sockaddr_storage ss;
    socklen_t len;
} coil_sockaddr;

/* ---- socket operations ---- */

/* socket(2) with SOCK_CLOEXEC added. Never suspends. 0 with *fd, or a negated errno. */
COIL_API int coil_socket(int domain, int type, int protocol, int *fd);
/* Connect fd to addr. Suspends until connected. -ECONNREFUSED, -ETIMEDOUT, ... */
COIL_API int coil_sock_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
/* Accept one connection (SOCK_CLOEXEC is always added to flags). Suspends until a peer
 * arrives. addr/addrlen may be NULL. -EMFILE when the process is out of fds. */
COIL_API int coil_sock_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags, int *out_fd);
/* One recv(2): *n = 0 means the peer closed its side. Suspends until data or EOF. */
COIL_API int coil_sock_recv(int fd, void *buf, size_t len, int flags, size_t *n);
/* One send(2) (MSG_NOSIGNAL is always added: a closed peer gives -EPIPE, never SIGPIPE). */
COIL_API int coil_sock_send(int fd, const void *buf, size_t len, int flags, size_t *n);
/* send until all of buf is gone. */
COIL_API int coil_sock_sendall(int fd, const void *buf, size_t len, int flags);
/* sendmsg(2)/recvmsg(2). On return from recvmsg, msg->msg_namelen, msg_controllen and msg_flags
 * are updated as recvmsg(2) does. */
COIL_API int coil_sock_sendmsg(int fd, const struct msghdr *msg, int flags, size_t *n);
COIL_API int coil_sock_recvmsg(int fd, struct msghdr *msg, int flags, size_t *n);
/* sendto/recvfrom, for datagram sockets. addr may be NULL (connected socket). */
COIL_API int coil_sock_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                              socklen_t addrlen, size_t *n);
COIL_API int coil_sock_recvfrom(int fd, void *buf, size_t len, int flags, coil_sockaddr *from, size_t *n);
/* shutdown(2) (SHUT_RD, SHUT_WR, SHUT_RDWR). Suspends. */
COIL_API int coil_sock_shutdown(int fd, int how);
/* Close fd. From a task, when this returns the fd is closed, whatever it returns: through the
 * loop's driver when it has room, else synchronously. A cancel pending at the call or arriving
 * during the close does not stop it; it is delivered at the task's next await, and this returns
 * the close's own result (0, or -errno as close(2) reports, e.g. -EIO). -EBADF for a negative fd.
 * Outside a task: COIL_ENOTASK and the fd is left alone. Suspends. Loop thread only.
 * coil_close, coil_file_close and coil_sock_close follow this same rule. */
COIL_API int coil_sock_close(int fd);

/* ---- addresses and name resolution ---- */

/* Format an address as "1.2.3.4:80", "[::1]:80" or the Unix path. Never suspends; returns buf. */
COIL_API char *coil_sockaddr_format(const struct sockaddr *addr, socklen_t len, char *buf, size_t cap);
/* The port of an IPv4/IPv6 address (host order), or -1. */
COIL_API int coil_sockaddr_port(const struct sockaddr *addr);

/* Lookups by name run on one process-wide pool of at most this many threads (started on
 * demand, gone when idle); more lookups than that wait their turn in FIFO order. */
#define COIL_RESOLVE_THREADS 16

/* getaddrinfo(3) without blocking the loop (asyncio's loop.getaddrinfo): a numeric host is
 * resolved at once, any other name on the resolver's thread pool (COIL_RESOLVE_THREADS) while
 * the task waits. `port` may be NULL, `hints` NULL (= AF_UNSPEC, SOCK_STREAM). Suspends. 0 with
 * *res (free it with freeaddrinfo), COIL_ENONAME (EAI_NONAME, EAI_SERVICE, EAI_NODATA),
 * COIL_ERESOLVE (other EAI_* errors), a negated errno for EAI_SYSTEM, -ENOMEM, -EAGAIN (no
 * thread could be started and none runs), -ECANCELED (a lookup still queued is dropped; one
 * already running finishes in the background and is discarded). Thread-safe in the sense that
 * tasks of any number of loops may resolve at once. */
COIL_API int coil_getaddrinfo(const char *host, const char *port, const struct addrinfo *hints, struct addrinfo **res);

/* ---- UDP endpoint (asyncio's create_datagram_endpoint, without protocol callbacks) ---- */

typedef struct coil_udp coil_udp;

typedef struct coil_udp_opts {
    const char *local_host;   /* bind here (NULL with local_port 0 = no explicit bind) */
    int local_port;
    const char *remote_host;  /* connect to this peer (then addr may be NULL in sendto) */
    int remote_port;
    int family;               /* AF_INET, AF_INET6 or 0 = from the addresses */
    int reuse_port;           /* SO_REUSEPORT */
    int allow_broadcast;      /* SO_BROADCAST */
} coil_udp_opts;

/* Open a datagram socket as opts says. Suspends while names resolve. 0 with *out, a resolver
 * error, or a negated errno (-EINVAL if neither a local nor a remote address is given). */
COIL_API int coil_udp_open(const coil_udp_opts *opts, coil_udp **out);
/* Send one datagram (addr NULL for a connected endpoint). Suspends until queued. Returns 0,
 * -EMSGSIZE if only part went, a negated errno, -ECANCELED, COIL_ENOTASK, or COIL_ECLOSED if
 * the endpoint was closed meanwhile. Any number of tasks may send and receive at once. */
COIL_API int coil_udp_sendto(coil_udp *u, const void *buf, size_t len, const struct sockaddr *addr, socklen_t addrlen);
/* Receive one datagram; *n is its (possibly truncated) length; from may be NULL. Suspends.
 * Returns 0, a negated errno, -ECANCELED, COIL_ENOTASK, or COIL_ECLOSED if the endpoint was
 * closed meanwhile (closing wakes it, as closing a stream wakes its reader). */
COIL_API int coil_udp_recvfrom(coil_udp *u, void *buf, size_t len, size_t *n, coil_sockaddr *from);
/* The bound address; the fd (owned by the endpoint). Never suspend. */
COIL_API int coil_udp_sockname(coil_udp *u, coil_sockaddr *out);
COIL_API int coil_udp_fd(const coil_udp *u);
/* Close the endpoint; `u` must not be used after. Operations still waiting on it end with
 * COIL_ECLOSED (a task cancelled meanwhile sees -ECANCELED); the socket is closed and the
 * memory freed once the last of them has returned, so the kernel never holds a closed fd
 * number or freed memory. Never suspends. Loop thread only. */
COIL_API void coil_udp_close(coil_udp *u);

#ifdef __cplusplus
}
#endif
#endif
