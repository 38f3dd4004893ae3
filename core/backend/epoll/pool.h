/* coil core: the epoll backend's thread pool for blocking system calls (interim: one worker). */
#ifndef COIL_BACKEND_EPOLL_POOL_H
#define COIL_BACKEND_EPOLL_POOL_H

#include <stdatomic.h>
#include <stdbool.h>

typedef struct coil__pool_done coil__pool_done;
typedef struct coil__pool_job {
    struct coil__pool_job *next;
    int (*run)(struct coil__pool_job *job);
    int res;
    coil__pool_done *done;
    atomic_int state;
} coil__pool_job;

struct coil__pool_done {
    _Atomic(coil__pool_job *) head;
    int efd;
};

int coil__pool_submit(coil__pool_job *job);
bool coil__pool_cancel(coil__pool_job *job);
coil__pool_job *coil__pool_take_done(coil__pool_done *d);

#endif
