/* coil core: provided-buffer rings (see bufring.h). liburing 2.3 has no io_uring_setup_buf_ring,
 * so the ring memory is mapped here and registered by hand. */
#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "backend/uring/bufring.h"

/* Group ids only need to be unique within one io_uring; a loop lives on one thread. */
static __thread uint16_t next_bgid;

static void bufring_release(coil__bufring *base);

int coil__bufring_new(coil_loop *loop, unsigned entries, unsigned size, coil__uring_bufring **out)
{
    if (!entries || (entries & (entries - 1)) || entries > 32768 || !size)
        return -EINVAL;
    coil__uring_bufring *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    size_t ring_bytes = (size_t)entries * sizeof(struct io_uring_buf);
    void *ring = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    b->mem = malloc((size_t)entries * size);
    if (ring == MAP_FAILED || !b->mem) {
        if (ring != MAP_FAILED)
            munmap(ring, ring_bytes);
        free(b->mem);
        free(b);
        return -ENOMEM;
    }
    b->br = ring;
    b->loop = loop;
    b->entries = entries;
    b->base.size = size;
    b->base.refs = 1;
    b->base.release = bufring_release;
    b->mask = (unsigned)io_uring_buf_ring_mask(entries);
    io_uring_buf_ring_init(b->br);
    int err = -EEXIST;
    for (int tries = 0; tries < 64 && err == -EEXIST; tries++) {
        struct io_uring_buf_reg reg = { .ring_addr = (uint64_t)(uintptr_t)ring, .ring_entries = entries,
                                        .bgid = next_bgid++ };
        b->bgid = reg.bgid;
        err = io_uring_register_buf_ring(&loop->io.drv->ring, &reg, 0);
    }
    if (err) {
        munmap(ring, ring_bytes);
        free(b->mem);
        free(b);
        return err;
    }
    for (unsigned i = 0; i < entries; i++)
        io_uring_buf_ring_add(b->br, coil__bufring_buf(b, i), size, (unsigned short)i, (int)b->mask, (int)i);
    io_uring_buf_ring_advance(b->br, (int)entries);
    *out = b;
    return 0;
}

/* 64 x 16 KiB: each completion is copied out and its buffer returned at once, so the ring
 * only runs dry when more than 64 receives complete between two reaps; a multishot recv that
 * finds it empty ends with -ENOBUFS and is armed again when its reader next waits. */
int coil__uring_bufring_shared(coil_loop *loop, coil__bufring **out)
{
    coil__uring_bufring *b = loop->io.drv->bufring;
    if (b) {
        b->base.refs++;
        *out = &b->base;
        return 0;
    }
    int err = coil__bufring_new(loop, 64, 16384, &b);
    if (err)
        return err;
    loop->io.drv->bufring = b;
    *out = &b->base;
    return 0;
}

static void bufring_release(coil__bufring *base)
{
    coil__uring_bufring *b = (coil__uring_bufring *)base;
    coil__driver *u = b->loop->io.drv; /* NULL once the loop's ring is gone */
    if (u && u->bufring == b)
        u->bufring = NULL;
    if (u && !b->loop->closed)
        io_uring_unregister_buf_ring(&u->ring, b->bgid);
    munmap(b->br, (size_t)b->entries * sizeof(struct io_uring_buf));
    free(b->mem);
    free(b);
}
