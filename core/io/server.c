/* coil core: servers (coil_start_server). Each listening socket keeps one multishot accept in the
 * ring; its callback record lives in the listener until the final CQE (no IORING_CQE_F_MORE)
 * and each accepted fd becomes a stream served by a new task. Out of fds, a listener drops its
 * accept and re-arms it from a timer with a doubling delay, so a full fd table costs a few
 * wake-ups a second instead of a spinning core. A server belongs to one loop; a sharded server is
 * the same server started on every shard's loop with reuse_port. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "io/net_internal.h"

#define BACKOFF_MIN_NS 100000000ull
#define BACKOFF_MAX_NS 1600000000ull

typedef struct listener {
    coil__io_cb cb;             /* first: the multishot accept's completions */
    coil__timer backoff;
    coil_server *srv;
    int fd;
    bool armed, out_of_fds;
    uint64_t delay_ns;
} listener;

typedef struct conn {
    struct conn *next, *prev;
    coil_server *srv;
    coil_stream *s;
    coil_task *task;
} conn;

struct coil_server {
    coil_loop *loop;
    coil_conn_handler handler;
    void *arg;
    coil_stream_opts sopts;
    coil_task_opts topts;
    listener *ls;
    size_t nls;
    unsigned refs;              /* the handle, each armed accept, each connection */
    bool closed, freed, is_tcp;
    char *unix_path;
    conn *conns;
    size_t nconns;
    coil__bufring *br;          /* the loop's multishot recv buffers; NULL = plain recv */
    coil__wlist forever, closers;
};

static void arm(listener *l);

static void destroy_if_done(coil_server *srv)
{
    if (srv->refs)
        return;
    coil__bufring_unref(srv->br);
    free(srv->ls);
    free(srv->unix_path);
    free(srv);
}

/* ---- connections ---- */

static void *conn_main(void *arg)
{
    conn *c = arg;
    c->srv->handler(c->s, c->srv->arg);
    return NULL;
}

static void conn_done(coil_future *f, void *arg)
{
    (void)f;
    conn *c = arg;
    coil_server *srv = c->srv;
    coil_stream_free(c->s);
    coil_task_free(c->task);
    if (c->prev)
        c->prev->next = c->next;
    else
        srv->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    srv->nconns--;
    srv->refs--;
    if (srv->closed && srv->nconns == 0)
        coil__wlist_wake_all(&srv->closers, 0);
    destroy_if_done(srv);
}

static void serve(coil_server *srv, int fd)
{
    if (srv->is_tcp) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    conn *c = calloc(1, sizeof *c);
    if (!c || coil__stream_new(srv->loop, fd, &srv->sopts, &c->s) != 0) {
        if (!c)
            close(fd);
        free(c);
        return;
    }
    c->srv = srv;
    if (srv->br)
        coil__stream_use_bufring(c->s, srv->br);
    coil_task_opts to = srv->topts;
    to.name = NULL;
    to.eager = false;
    if (coil_loop_create_task(srv->loop, &c->task, conn_main, c, &to) != 0) {
        coil_stream_free(c->s);
        free(c);
        return;
    }
    c->next = srv->conns;
    if (c->next)
        c->next->prev = c;
    srv->conns = c;
    srv->nconns++;
    srv->refs++;
    if (coil_task_add_done_callback(c->task, conn_done, c) != 0)
        coil_task_cancel(c->task, NULL); /* cannot track it: the handler still runs, then leaks nothing but c */
}

/* ---- accepting ---- */

static void backoff_fire(coil__timer *tm)
{
    listener *l = coil__container_of(tm, listener, backoff);
    arm(l);
}

static bool out_of_fds(int res) { return res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM; }

static void accepted(coil__io_cb *cb, const coil__io_done *done)
{
    listener *l = (listener *)cb;
    coil_server *srv = l->srv;
    int res = done->res;
    if (res >= 0) {
        l->delay_ns = 0;
        if (srv->closed || srv->loop->closed)
            close(res);
        else
            serve(srv, res);
    } else if (out_of_fds(res) && !srv->closed) {
        l->out_of_fds = true;
        if (done->more)
            coil__backend_cancel_cb(srv->loop, &l->cb);
    }
    if (done->more)
        return;
    l->armed = false;
    srv->refs--;
    if (srv->closed || srv->loop->closed) {
        destroy_if_done(srv);
        return;
    }
    if (l->out_of_fds) {
        l->out_of_fds = false;
        l->delay_ns = l->delay_ns ? l->delay_ns * 2 : BACKOFF_MIN_NS;
        if (l->delay_ns > BACKOFF_MAX_NS)
            l->delay_ns = BACKOFF_MAX_NS;
        if (!coil__timer_armed(&l->backoff) &&
            coil__timers_add(&srv->loop->timers, &l->backoff, coil__now_ns() + l->delay_ns) == 0)
            return;
    }
    arm(l);
}

static void arm(listener *l)
{
    coil_server *srv = l->srv;
    if (l->armed || srv->closed)
        return;
    coil__op op = { .code = COIL__OP_ACCEPT_MULTISHOT, .fd = l->fd, .arg = SOCK_CLOEXEC };
    if (coil__backend_submit_cb(srv->loop, &op, &l->cb) != 0) {
        /* The driver is full even after a submit: try again shortly rather than stop serving. */
        if (!coil__timer_armed(&l->backoff))
            coil__timers_add(&srv->loop->timers, &l->backoff, coil__now_ns() + BACKOFF_MIN_NS);
        return;
    }
    l->armed = true;
    srv->refs++;
}

/* ---- setting up ---- */

static int listen_on(coil_server *srv, const struct sockaddr *addr, socklen_t len, const coil_server_opts *o,
                     int *out)
{
    int fd;
    int err = coil_socket(addr->sa_family, SOCK_STREAM, 0, &fd);
    if (err)
        return err;
    int one = 1;
    if (addr->sa_family != AF_UNIX) {
        if (!o || o->reuse_address >= 0)
            setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (o && o->reuse_port > 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
            err = -errno;
            close(fd);
            return err;
        }
        if (addr->sa_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    }
    if (bind(fd, addr, len) != 0 || listen(fd, o && o->backlog > 0 ? o->backlog : 4096) != 0) {
        err = -errno;
        close(fd);
        return err;
    }
    (void)srv;
    *out = fd;
    return 0;
}

static int new_server(coil_conn_handler handler, void *arg, const coil_server_opts *opts, coil_server **srvp)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!handler || !srvp)
        return -EINVAL;
    coil_server *srv = calloc(1, sizeof *srv);
    if (!srv)
        return -ENOMEM;
    srv->loop = t->loop;
    srv->handler = handler;
    srv->arg = arg;
    srv->refs = 1;
    if (opts && opts->stream)
        srv->sopts = *opts->stream;
    if (opts)
        srv->topts = opts->task;
    *srvp = srv;
    return 0;
}

static int add_listener(coil_server *srv, int fd)
{
    listener *nl = realloc(srv->ls, (srv->nls + 1) * sizeof *nl);
    if (!nl)
        return -ENOMEM;
    srv->ls = nl;
    nl[srv->nls++] = (listener){ .cb.complete = accepted, .backoff.fire = backoff_fire, .fd = fd };
    return 0;
}

static void start(coil_server *srv)
{
    /* A kernel without buffer rings falls back to plain recv. */
    if (coil__bufring_shared(srv->loop, &srv->br) != 0)
        srv->br = NULL;
    for (size_t i = 0; i < srv->nls; i++) {
        srv->ls[i].srv = srv;
        arm(&srv->ls[i]);
    }
}

static void abandon(coil_server *srv)
{
    for (size_t i = 0; i < srv->nls; i++)
        close(srv->ls[i].fd);
    free(srv->ls);
    free(srv->unix_path);
    free(srv);
}

int coil_start_server(coil_conn_handler handler, void *arg, const char *host, int port, const coil_server_opts *opts,
                      coil_server **out)
{
    if (port < 0 || port > 65535 || !out)
        return -EINVAL;
    coil_server *srv;
    int err = new_server(handler, arg, opts, &srv);
    if (err)
        return err;
    srv->is_tcp = true;
    char ps[8];
    snprintf(ps, sizeof ps, "%d", port);
    struct addrinfo hints = { .ai_flags = AI_PASSIVE, .ai_family = opts ? opts->family : 0, .ai_socktype = SOCK_STREAM };
    struct addrinfo *res = NULL;
    err = coil_getaddrinfo(host, ps, &hints, &res);
    if (err) {
        abandon(srv);
        return err;
    }
    int bound_port = port;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET && ai->ai_family != AF_INET6)
            continue;
        /* An ephemeral port: give every socket the one the first got, as far as it is free. */
        if (bound_port && !port) {
            if (ai->ai_family == AF_INET)
                ((struct sockaddr_in *)(void *)ai->ai_addr)->sin_port = htons((uint16_t)bound_port);
            else
                ((struct sockaddr_in6 *)(void *)ai->ai_addr)->sin6_port = htons((uint16_t)bound_port);
        }
        int fd;
        err = listen_on(srv, ai->ai_addr, ai->ai_addrlen, opts, &fd);
        if (err == -EAFNOSUPPORT || err == -EADDRNOTAVAIL) {
            if (!host)
                continue; /* a wildcard for a family this host lacks (no IPv6, say) */
        }
        if (err)
            break;
        if ((err = add_listener(srv, fd))) {
            close(fd);
            break;
        }
        if (!bound_port) {
            struct sockaddr_storage ss;
            socklen_t sl = sizeof ss;
            getsockname(fd, (struct sockaddr *)&ss, &sl);
            bound_port = coil_sockaddr_port((struct sockaddr *)&ss);
        }
    }
    freeaddrinfo(res);
    if (!err && srv->nls == 0)
        err = -EADDRNOTAVAIL;
    if (err) {
        abandon(srv);
        return err;
    }
    start(srv);
    *out = srv;
    return 0;
}

int coil_start_unix_server(coil_conn_handler handler, void *arg, const char *path, const coil_server_opts *opts,
                           coil_server **out)
{
    if (!path || !out)
        return -EINVAL;
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    size_t n = strlen(path);
    if (n == 0)
        return -EINVAL;
    if (n >= sizeof sa.sun_path)
        return -ENAMETOOLONG;
    memcpy(sa.sun_path, path, n + 1);
    coil_server *srv;
    int err = new_server(handler, arg, opts, &srv);
    if (err)
        return err;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path); /* a stale socket from an earlier run (asyncio does the same) */
    int fd;
    err = listen_on(srv, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1), opts, &fd);
    if (!err && !(srv->unix_path = strdup(path))) {
        close(fd);
        err = -ENOMEM;
    }
    if (!err && (err = add_listener(srv, fd)))
        close(fd);
    if (err) {
        abandon(srv);
        return err;
    }
    start(srv);
    *out = srv;
    return 0;
}

/* ---- lifecycle ---- */

void coil_server_close(coil_server *srv)
{
    if (!srv || srv->closed)
        return;
    srv->closed = true;
    for (size_t i = 0; i < srv->nls; i++) {
        listener *l = &srv->ls[i];
        coil__timers_remove(&srv->loop->timers, &l->backoff);
        if (l->armed)
            coil__backend_cancel_cb(srv->loop, &l->cb);
        /* An accept in flight keeps the socket alive past close(2) until the driver's cancel
         * lands; shutting down the read side takes it out of listening now, so a connect that
         * arrives meanwhile is refused instead of queued for nobody. */
        shutdown(l->fd, SHUT_RD);
        close(l->fd);
        l->fd = -1;
    }
    if (srv->unix_path)
        unlink(srv->unix_path);
    coil__wlist_wake_all(&srv->forever, 0);
    if (srv->nconns == 0)
        coil__wlist_wake_all(&srv->closers, 0);
}

void coil_server_close_clients(coil_server *srv)
{
    for (conn *c = srv ? srv->conns : NULL; c; c = c->next)
        coil_task_cancel(c->task, NULL);
}

static const coil__wait_ops forever_wait = { "server serve_forever", coil__wlist_wait_cancel, true, NULL };
static const coil__wait_ops closed_wait = { "server wait_closed", coil__wlist_wait_cancel, true, NULL };

int coil_server_serve_forever(coil_server *srv)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!srv)
        return -EINVAL;
    if (srv->closed)
        return COIL_ECLOSED;
    int r = coil__task_check_cancel(t);
    if (!r)
        r = coil__wlist_wait(t, &srv->forever, &forever_wait, false);
    if (r == -ECANCELED) {
        /* asyncio 3.12+: close, await wait_closed(), then re-raise. A second cancel ends the
         * wait (its CancelledError propagates out of wait_closed); the server is closed either
         * way and must not be touched after the wait, whose end may be what frees it. */
        coil_server_close(srv);
        if (srv->nconns)
            (void)coil__wlist_wait(t, &srv->closers, &closed_wait, false);
    }
    return r;
}

int coil_server_wait_closed(coil_server *srv)
{
    coil_task *t = coil__running_task();
    if (!t)
        return COIL_ENOTASK;
    if (!srv)
        return -EINVAL;
    int r = coil__task_check_cancel(t);
    if (r)
        return r;
    if (srv->closed && srv->nconns == 0)
        return 0;
    return coil__wlist_wait(t, &srv->closers, &closed_wait, false);
}

bool coil_server_is_serving(const coil_server *srv) { return srv && !srv->closed; }
size_t coil_server_socket_count(const coil_server *srv) { return srv && !srv->closed ? srv->nls : 0; }

int coil_server_socket(const coil_server *srv, size_t i)
{
    return srv && !srv->closed && i < srv->nls ? srv->ls[i].fd : -1;
}

int coil_server_port(const coil_server *srv)
{
    if (!srv || !srv->nls || !srv->is_tcp || srv->ls[0].fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (getsockname(srv->ls[0].fd, (struct sockaddr *)&ss, &sl) != 0)
        return -1;
    return coil_sockaddr_port((struct sockaddr *)&ss);
}

size_t coil_server_connection_count(const coil_server *srv) { return srv ? srv->nconns : 0; }

void coil_server_free(coil_server *srv)
{
    if (!srv || srv->freed)
        return;
    srv->freed = true;
    coil_server_close(srv);
    coil_server_close_clients(srv);
    srv->refs--;
    destroy_if_done(srv);
}
