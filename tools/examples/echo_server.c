/* An echo server: every byte a client sends comes back.
 *   example-echo_server [--port N] [--host H] [--shards N]
 * With --shards N, N loops on N threads each listen on the port (SO_REUSEPORT). Ctrl-C (SIGINT)
 * or SIGTERM closes the servers, cancels the open connections and exits. */

#include <coil/coil.h>

#include "common/example_server.h"

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

int main(int argc, char **argv)
{
    static const example_server spec = { .name = "echo_server", .handler = echo, .default_port = 8888 };
    return example_server_main(&spec, argc, argv);
}
