/* coil core: a provided-buffer ring (io_uring_register_buf_ring) for multishot recv, the io_uring
 * side of backend.h's provided buffers. The kernel
 * picks a buffer per completion; the consumer copies the bytes out and hands the buffer straight
 * back, so a few dozen buffers serve any number of connections. Private to the library. */
#ifndef COIL_CORE_BUFRING_H
#define COIL_CORE_BUFRING_H

#include "backend/uring/driver.h"

typedef struct coil__uring_bufring {
    coil__bufring base;       /* refs, size: backend.h */
    struct io_uring_buf_ring *br;
    coil_loop *loop;
    unsigned char *mem;       /* entries * size bytes */
    unsigned entries, mask;
    uint16_t bgid;
} coil__uring_bufring;

/* A ring of `entries` (a power of two) buffers of `size` bytes, registered on loop's ring.
 * 0, -ENOMEM, or the kernel's error (-EINVAL on kernels without buffer rings). */
int coil__bufring_new(coil_loop *loop, unsigned entries, unsigned size, coil__uring_bufring **out);
/* coil__uring_bufring_shared (the driver's bufring_shared), _ref and _unref: backend.h. Every server on a loop (and every
 * connection they accept) draws from the one shared ring, whose buffers go back to the kernel as
 * soon as each completion is copied out. */

static inline unsigned char *coil__bufring_buf(coil__uring_bufring *b, unsigned bid)
{
    return b->mem + (size_t)bid * b->base.size;
}

/* Give buffer bid back to the kernel. */
static inline void coil__bufring_recycle(coil__uring_bufring *b, unsigned bid)
{
    io_uring_buf_ring_add(b->br, coil__bufring_buf(b, bid), b->base.size, (unsigned short)bid, (int)b->mask, 0);
    io_uring_buf_ring_advance(b->br, 1);
}

#endif
