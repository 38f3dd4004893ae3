/* An echo server: every byte a client sends comes back.
 *   example-echo_server [--port N] [--host H] [--shards N]
 * Ctrl-C (SIGINT) or SIGTERM closes the server, cancels the open connections and exits. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil/coil.h>

static void echo(coil_stream *s, void *arg)
{
    (void)arg;
    char buf[16384];
    for (;;) {
        size_t n;
        if (coil_stream_read(s, buf, sizeof buf, &n) != 0 || n == 0)
            return;
        if (coil_stream_write(s, buf, n) != 0 || coil_stream_drain(s) != 0)
            return;
    }
}

struct opts {
    const char *host;
    int port, shards;
};

static int on_signal(void *arg)
{
    coil_task_cancel(arg, "signal");
    return 0;
}

static void *serve(void *arg)
{
    struct opts *o = arg;
    coil_server *srv;
    int err = coil_start_server(echo, NULL, o->host, o->port, NULL, &srv);
    if (err) {
        fprintf(stderr, "echo_server: cannot listen on %s:%d: %s\n", o->host ? o->host : "*", o->port,
                coil_strerror(err));
        return coil_raise(err, "listen");
    }
    coil_loop *loop = coil_get_running_loop();
    coil_loop_add_signal_handler(loop, SIGINT, on_signal, coil_current_task());
    coil_loop_add_signal_handler(loop, SIGTERM, on_signal, coil_current_task());
    printf("echo_server: listening on port %d\n", coil_server_port(srv));
    fflush(stdout);
    coil_server_serve_forever(srv); /* returns when a signal cancels us */
    coil_task_uncancel(coil_current_task());
    coil_server_close_clients(srv);
    coil_server_wait_closed(srv);
    coil_server_free(srv);
    coil_loop_remove_signal_handler(loop, SIGINT);
    coil_loop_remove_signal_handler(loop, SIGTERM);
    return NULL;
}

int main(int argc, char **argv)
{
    struct opts o = { NULL, 8888, 1 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            o.port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            o.host = argv[++i];
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            o.shards = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--port N] [--host H] [--shards N]\n", argv[0]);
            return 2;
        }
    }
    if (o.shards != 1) {
        fprintf(stderr, "echo_server: --shards %d: only 1 shard is supported until the multi-shard runtime "
                        "(coil/runtime.h) exists\n", o.shards);
        return 2;
    }
    /* SIGINT is ours (a signal handler on the loop), not the runner's. */
    coil_runner *r;
    int err = coil_runner_new(&r, &(coil_runner_opts){ .no_sigint = true });
    if (!err) {
        err = coil_runner_run(r, serve, &o, NULL);
        coil_runner_close(r);
    }
    if (err && err != -ECANCELED) {
        fprintf(stderr, "echo_server: %s\n", coil_strerror(err));
        return 1;
    }
    printf("echo_server: closed\n");
    return 0;
}
