/* Serving on every shard and shutting down on a signal: see example_server.h. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "example_server.h"

struct opts {
    const example_server *spec;
    const char *host;
    int port, shards;
};

/* One shard's server. With several shards each has its own listening socket on the same port
 * (SO_REUSEPORT) and the kernel spreads connections across them. */
static int listen_here(struct opts *o, coil_server **srv)
{
    coil_server_opts so = { .reuse_port = o->shards > 1, .stream = o->spec->stream };
    int err = coil_start_server(o->spec->handler, NULL, o->host, o->port, &so, srv);
    if (err)
        fprintf(stderr, "%s: shard %d cannot listen on %s:%d: %s\n", o->spec->name,
                coil_shard_id() < 0 ? 0 : coil_shard_id(), o->host ? o->host : "*", o->port, coil_strerror(err));
    return err;
}

/* Serve until cancelled, then end the open connections and wait for them. The wait is on
 * wait_closed rather than serve_forever: a cancelled serve_forever waits for every handler to
 * finish by itself (asyncio 3.12+), which an idle keep-alive client would put off for good,
 * while a cancelled wait_closed returns at once and leaves the ending to us. */
static void serve_until_cancelled(coil_server *srv)
{
    coil_server_wait_closed(srv);
    coil_task_uncancel(coil_current_task());
    coil_server_close(srv);
    coil_server_close_clients(srv);
    coil_server_wait_closed(srv);
    coil_server_free(srv);
}

static void *serve_shard(void *arg)
{
    coil_server *srv;
    int err = listen_here(arg, &srv);
    if (err)
        return coil_raise(err, "listen");
    serve_until_cancelled(srv);
    return NULL;
}

static int on_signal(void *arg)
{
    coil_task_cancel(arg, "signal");
    return 0;
}

static void *serve(void *arg)
{
    struct opts *o = arg;
    coil_server *srv;
    /* Shard 0 binds first, so an ephemeral port becomes the one every other shard shares. */
    int err = listen_here(o, &srv);
    if (err)
        return coil_raise(err, "listen");
    o->port = coil_server_port(srv);
    coil_future **others = calloc((size_t)o->shards, sizeof *others);
    for (int i = 1; others && i < o->shards; i++)
        coil_submit_to((unsigned)i, serve_shard, o, &others[i]);
    coil_loop *loop = coil_get_running_loop();
    coil_loop_add_signal_handler(loop, SIGINT, on_signal, coil_current_task());
    coil_loop_add_signal_handler(loop, SIGTERM, on_signal, coil_current_task());
    printf("%s: listening on port %d (%d shard%s)\n", o->spec->name, o->port, o->shards, o->shards > 1 ? "s" : "");
    fflush(stdout);
    serve_until_cancelled(srv); /* a signal cancels us */
    for (int i = 1; others && i < o->shards; i++) {
        if (!others[i])
            continue;
        coil_future_cancel(others[i], "shutdown");
        coil_future_await(others[i], NULL);
        coil_future_free(others[i]);
    }
    free(others);
    coil_loop_remove_signal_handler(loop, SIGINT);
    coil_loop_remove_signal_handler(loop, SIGTERM);
    return NULL;
}

int example_server_main(const example_server *spec, int argc, char **argv)
{
    struct opts o = { spec, NULL, spec->default_port, 1 };
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            o.port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            o.host = argv[++i];
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            o.shards = atoi(argv[++i]);
        else if (spec->option && i + 1 < argc && spec->option(argv[i], argv[i + 1]) == 0)
            i++;
        else {
            fprintf(stderr, "usage: %s [--port N] [--host H] [--shards N]%s%s\n", argv[0],
                    spec->usage ? " " : "", spec->usage ? spec->usage : "");
            return 2;
        }
    }
    if (o.shards < 1 || o.shards > 1024) {
        fprintf(stderr, "%s: --shards must be 1..1024\n", spec->name);
        return 2;
    }
    /* SIGINT and SIGTERM are read by shard 0's loop; every other thread must block them, and
     * threads inherit the mask, so block them before any shard starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    int err;
    if (o.shards == 1) {
        coil_runner *r;
        err = coil_runner_new(&r, &(coil_runner_opts){ .no_sigint = true });
        if (!err) {
            err = coil_runner_run(r, serve, &o, NULL);
            coil_runner_close(r);
        }
    } else {
        coil_runtime *rt;
        err = coil_runtime_new(&rt, &(coil_runtime_opts){ .shards = (unsigned)o.shards });
        if (!err) {
            err = coil_runtime_run(rt, serve, &o, NULL);
            coil_runtime_free(rt);
        }
    }
    if (err && err != -ECANCELED) {
        fprintf(stderr, "%s: %s\n", spec->name, coil_strerror(err));
        return 1;
    }
    printf("%s: closed\n", spec->name);
    return 0;
}
