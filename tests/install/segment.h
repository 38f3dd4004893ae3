/* Built as C (main.c) and as C++ (main.cc): the installed <coil/stats_shm.h> compiles in both
 * and describes the segment this process's loop publishes. */
#ifndef INSTALL_SEGMENT_H
#define INSTALL_SEGMENT_H

#include <coil/coil.h>
#include <coil/stats_shm.h>
#include <sys/mman.h>

static int segment_matches(void)
{
    char name[64];
    coil_stats_shm_name(name, sizeof name, (long)getpid());
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return 0;
    void *p = mmap(NULL, sizeof(coil_stats_shm_segment), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return 0;
    const coil_stats_shm_segment *s = (const coil_stats_shm_segment *)p;
    int ok = s->magic == COIL_STATS_SHM_MAGIC && s->version == COIL_STATS_SHM_VERSION &&
             s->slot_size == sizeof(coil_stats_shm_slot) && s->nslots == COIL_STATS_SHM_SLOTS &&
             s->pid == (uint64_t)getpid() && s->start_time == coil_stats_shm_proc_start_time((long)getpid());
    /* The running loop's slot names the backend it runs on. */
    const char *backend = coil_loop_backend(coil_get_running_loop());
    int named = 0;
    for (unsigned i = 0; ok && backend && i < COIL_STATS_SHM_SLOTS; i++)
        named |= s->slots[i].in_use && strncmp(s->slots[i].backend, backend, sizeof s->slots[i].backend) == 0;
    munmap(p, sizeof(coil_stats_shm_segment));
    return ok && named;
}

#endif
