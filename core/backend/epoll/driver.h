/* coil core: the epoll driver's entry points, for backend.c. Its state is private to
 * core/backend/epoll/. */
#ifndef COIL_BACKEND_EPOLL_DRIVER_H
#define COIL_BACKEND_EPOLL_DRIVER_H

#include "engine/internal.h"

extern const coil__backend_ops coil__epoll_ops;
/* Set up loop->io on epoll. 0, -ENOMEM, or the kernel's error (a negative errno). `entries` sizes
 * the first batch of events taken per wait. */
int coil__epoll_init(coil_loop *loop, unsigned entries);

#endif
