/* The part every example server shares: options (--port, --host, --shards), one server per
 * shard on a shared port (SO_REUSEPORT), and a clean shutdown on SIGINT or SIGTERM. */
#ifndef COIL_EXAMPLE_SERVER_H
#define COIL_EXAMPLE_SERVER_H

#include <coil/coil.h>

typedef struct example_server {
    const char *name;                            /* for messages: "echo_server" */
    void (*handler)(coil_stream *s, void *arg);  /* one task per connection runs this */
    int default_port;
    const coil_stream_opts *stream;              /* per-connection stream options, or NULL */
    /* The server's own "--name value" options, or NULL: 0 if taken, -1 if unknown or bad. */
    int (*option)(const char *name, const char *value);
    const char *usage;                           /* those options, for the usage line */
} example_server;

/* Parse the options, serve on every shard until SIGINT or SIGTERM, close the servers and the
 * open connections; returns the process exit status. */
int example_server_main(const example_server *spec, int argc, char **argv);

#endif
