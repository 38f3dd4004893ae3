/* coil core: the io_uring driver's private state, shared by the files of core/backend/uring/
 * only. The rest of the library sees core/backend/backend.h. */
#ifndef COIL_BACKEND_URING_DRIVER_H
#define COIL_BACKEND_URING_DRIVER_H

#include <liburing.h>

#include "engine/internal.h"

/* user_data tags: the low 3 bits of an 8-aligned pointer. */
enum {
    UD_TASK = 0,     /* a task's own operation; the CQE wakes it */
    UD_IGNORE = 1,   /* a cancel request's or a file update's own completion */
    UD_CALLBACK = 2, /* a coil__io_cb record */
    UD_WAKE = 3,     /* another thread's wake-up (MSG_RING) carrying a coil__io_cb record */
    UD_ALARM = 4,    /* the loop's alarm (coil__backend_alarm) */
};

struct coil__driver {
    struct io_uring ring;
    unsigned flags;                  /* setup flags that the kernel accepted */
    struct coil__uring_files *files; /* fixed-file slots (uring.c), made on first use */
    struct coil__uring_bufring *bufring; /* the provided buffers every multishot recv on this loop
                                      * shares (bufring.c); not a reference, cleared when freed */
    struct __kernel_timespec alarm_ts; /* what the alarm's SQEs point at until they are submitted */
    bool can_try;                    /* COIL__OPF_TRY sends are sent as tries (uring.c) */
    coil__io_cb *tried, **tried_tail; /* tries queued since the last enter that took every SQE */
    unsigned ntried;
    coil__io_cb *settling;           /* the tries that enter took, while its CQEs are handled */
};
typedef struct coil__driver coil__driver;

/* The io_uring driver's table (uring.c), and its set-up: 0, or the kernel's refusal (a negative
 * errno) with nothing printed; coil__uring_explain says on stderr why and what to change, followed
 * by `then` (NULL: nothing). */
extern const coil__backend_ops coil__uring_ops;
int coil__uring_init(coil_loop *loop, unsigned entries);
void coil__uring_explain(int err, const char *then);
int coil__uring_bufring_shared(coil_loop *loop, coil__bufring **out);

/* A fresh SQE, counted in inflight and unsubmitted, or NULL when none can be had (the queue
 * stays full even after a submit): the caller fails its operation (-EBUSY) rather than wait. */
struct io_uring_sqe *coil__uring_sqe(coil_loop *loop);

#endif
