#include <coil/coil.h>
#include <coil/stats_shm.h>
#include <sys/mman.h>
/* Reaches the entry points behind the public macros too (coil_create_task, the task group's),
 * so a shared library that hid them would fail to link here. */
static void *child(void *a) { coil_sleep(0.001); return a; }
/* The installed layout header describes the segment this process's loop publishes. */
static int segment_matches(void)
{
    char name[64];
    coil_stats_shm_name(name, sizeof name, (long)getpid());
    int fd = shm_open(name, O_RDONLY, 0);
    if (fd < 0)
        return 0;
    void *p = mmap(nullptr, sizeof(coil_stats_shm_segment), PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (p == MAP_FAILED)
        return 0;
    const coil_stats_shm_segment *s = (const coil_stats_shm_segment *)p;
    int ok = s->magic == COIL_STATS_SHM_MAGIC && s->version == COIL_STATS_SHM_VERSION &&
             s->slot_size == sizeof(coil_stats_shm_slot) && s->nslots == COIL_STATS_SHM_SLOTS &&
             s->pid == (uint64_t)getpid() && s->start_time == coil_stats_shm_proc_start_time((long)getpid());
    munmap(p, sizeof(coil_stats_shm_segment));
    return ok;
}
static void *m(void *a)
{
    coil_task *t, *u;
    coil_taskgroup *g;
    void *r = nullptr;
    if (coil_create_task(&t, child, a, 0) || coil_task_await(t, &r))
        return nullptr;
    coil_task_free(t);
    if (coil_taskgroup_new(&g) || coil_taskgroup_enter(g) || coil_taskgroup_create_task(g, &u, child, a, 0))
        return nullptr;
    int e = coil_taskgroup_exit(g, 0);
    coil_task_free(u);
    coil_taskgroup_free(g);
    return e || !segment_matches() ? nullptr : r;
}
int main(void) { void *r; int e = coil_run(m, (void *)42, &r); return e || r != (void *)42; }
