/* coil shards: the asymmetric fence (see fence.h), on membarrier(2).
 *
 * The process must register for the expedited barrier. While it has one thread that costs a
 * few microseconds, so it is done as the library loads; once it has more, registering waits
 * out an RCU grace period (milliseconds), so a caller that wants it later asks a thread of its
 * own to do it, and keeps to its symmetric handshake meanwhile. */
#include <fcntl.h>
#include <linux/membarrier.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fence.h"

enum { MB_UNKNOWN, MB_REGISTERING, MB_READY, MB_UNAVAILABLE };
static _Atomic int membarrier_state;

static void *membarrier_register(void *arg)
{
    (void)arg;
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    bool ok = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
              syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
    atomic_store_explicit(&membarrier_state, ok ? MB_READY : MB_UNAVAILABLE, memory_order_release);
    return NULL;
}

static unsigned threads_in_process(void)
{
    /* /proc/self/stat: "pid (comm) state ..." with num_threads the 20th field; comm may hold
     * spaces and parentheses, so count from the last ')'. */
    char buf[1024];
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, buf, sizeof buf - 1) : -1;
    if (fd >= 0)
        close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 20; field++)
        p = strchr(p + 1, ' ');
    return p ? (unsigned)strtoul(p + 1, NULL, 10) : 0;
}

__attribute__((constructor)) static void membarrier_at_load(void)
{
    if (threads_in_process() == 1) {
        atomic_store_explicit(&membarrier_state, MB_REGISTERING, memory_order_relaxed);
        membarrier_register(NULL);
    }
}

bool coil__fence_ready(void)
{
    int st = atomic_load_explicit(&membarrier_state, memory_order_acquire);
    if (__builtin_expect(st != MB_UNKNOWN, 1))
        return st == MB_READY;
    if (!atomic_compare_exchange_strong(&membarrier_state, &st, MB_REGISTERING))
        return false;
    pthread_t th;
    pthread_attr_t attr;
    bool started = pthread_attr_init(&attr) == 0;
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        started = pthread_create(&th, &attr, membarrier_register, NULL) == 0;
        pthread_attr_destroy(&attr);
    }
    if (!started)
        atomic_store_explicit(&membarrier_state, MB_UNAVAILABLE, memory_order_release);
    return false;
}

bool coil__fence_heavy(void)
{
    if (syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0) == 0)
        return true;
    atomic_store_explicit(&membarrier_state, MB_UNAVAILABLE, memory_order_relaxed);
    return false;
}
