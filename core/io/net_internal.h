/* coil core: what the socket, stream and server files share. Private to the library. */
#ifndef COIL_CORE_NET_INTERNAL_H
#define COIL_CORE_NET_INTERNAL_H

#include "coil/net.h"
#include "coil/stream.h"
#include "backend/uring/bufring.h"
#include "engine/internal.h"

/* Connect with a deadline: the loop's timer cancels the connect when timeout_ns (0 = none)
 * passes, and the call returns -ETIMEDOUT then (a cancel of the task itself stays -ECANCELED). */
int coil__sock_connect_timeout(int fd, const struct sockaddr *addr, socklen_t addrlen, uint64_t timeout_ns);
/* A stream over a connected socket it now owns. */
int coil__stream_new(coil_loop *loop, int fd, const coil_stream_opts *opts, coil_stream **out);
/* Read through multishot recv with buffers from br (the stream takes a reference). */
void coil__stream_use_bufring(coil_stream *s, coil__bufring *br);
/* A server stream whose multishot recv is armed and not being paused: it is taking data. */
bool coil__stream_reading_ahead(const coil_stream *s);
/* Tests only: while held, the resolver's threads take no queued lookup, so a test can know a
 * lookup is still queued when it cancels it. */
void coil__resolve_hold(bool hold);
/* The resolver's error for getaddrinfo's return value. */
int coil__gai_error(int rc);

#endif
