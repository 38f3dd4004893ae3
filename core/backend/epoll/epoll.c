#include <errno.h>
#include "backend/epoll/driver.h"
int coil__epoll_init(coil_loop *loop, unsigned entries)
{
    (void)loop;
    (void)entries;
    return -ENOSYS;
}
