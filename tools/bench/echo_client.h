/* coil-bench: the common echo load client (plain epoll, no coil), so every server meets the
 * same client: `conns` connections each send a `size`-byte message, wait for all of it to come
 * back, and repeat, for `seconds`. */
#ifndef COIL_BENCH_ECHO_CLIENT_H
#define COIL_BENCH_ECHO_CLIENT_H

#include <stdint.h>

typedef struct echo_load {
    uint64_t messages;   /* complete round trips */
    uint64_t errors;     /* connections lost or bad echoes */
    double wall_s;
} echo_load;

/* 0, or a negated errno if the connections could not be set up. */
int echo_client_run(int port, int conns, int size, double seconds, echo_load *out);

#endif
