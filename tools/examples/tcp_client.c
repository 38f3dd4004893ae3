/* A TCP client: connects, sends each message as a line, prints what comes back.
 *   example-tcp_client [--host H] [--port N] [--count K] [--timeout S] [MESSAGE...]
 * With no MESSAGE it sends "hello". Against example-echo_server it prints each line back.
 * --shards is accepted for symmetry with the servers; a client runs on one loop (--shards 1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil/coil.h>

struct opts {
    const char *host;
    int port, count;
    double timeout;
    char **msgs;
    int nmsgs;
};

static void *client(void *arg)
{
    struct opts *o = arg;
    coil_stream *s;
    coil_stream_opts so = { .connect_timeout = o->timeout };
    int err = coil_open_connection(o->host, o->port, &so, &s);
    if (err) {
        fprintf(stderr, "tcp_client: cannot connect to %s:%d: %s\n", o->host, o->port, coil_strerror(err));
        return coil_raise(err, "connect");
    }
    coil_sockaddr peer;
    char name[128];
    coil_stream_get_extra_info(s, "peername", &peer, sizeof peer);
    printf("connected to %s\n", coil_sockaddr_format((struct sockaddr *)&peer.ss, peer.len, name, sizeof name));
    for (int round = 0; round < o->count && !err; round++) {
        for (int i = 0; i < o->nmsgs && !err; i++) {
            struct iovec line[2] = { { o->msgs[i], strlen(o->msgs[i]) }, { "\n", 1 } };
            err = coil_stream_writelines(s, line, 2);
            if (!err)
                err = coil_stream_drain(s);
            char buf[4096];
            size_t n = 0;
            if (!err)
                err = coil_stream_readline(s, buf, sizeof buf, &n);
            if (!err && n == 0) {
                fprintf(stderr, "tcp_client: the server closed the connection\n");
                err = -ECONNRESET;
            }
            if (!err)
                printf("%.*s", (int)n, buf);
        }
    }
    coil_stream_write_eof(s);
    coil_stream_close(s);
    coil_stream_wait_closed(s);
    coil_stream_free(s);
    if (err)
        return coil_raise(err, "talking to the server");
    return NULL;
}

int main(int argc, char **argv)
{
    static char *hello[] = { "hello" };
    struct opts o = { "127.0.0.1", 8888, 1, 5.0, hello, 1 };
    int shards = 1;
    int i = 1;
    for (; i < argc && argv[i][0] == '-' && argv[i][1] == '-'; i++) {
        if (!strcmp(argv[i], "--port") && i + 1 < argc)
            o.port = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--host") && i + 1 < argc)
            o.host = argv[++i];
        else if (!strcmp(argv[i], "--count") && i + 1 < argc)
            o.count = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
            o.timeout = atof(argv[++i]);
        else if (!strcmp(argv[i], "--shards") && i + 1 < argc)
            shards = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--host H] [--port N] [--count K] [--timeout S] [MESSAGE...]\n", argv[0]);
            return 2;
        }
    }
    if (shards != 1) {
        fprintf(stderr, "tcp_client: --shards %d: a client runs on one loop; use --shards 1\n", shards);
        return 2;
    }
    if (i < argc) {
        o.msgs = argv + i;
        o.nmsgs = argc - i;
    }
    int err = coil_run(client, &o, NULL);
    return err ? 1 : 0;
}
