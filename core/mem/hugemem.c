/* coil core: big tables on huge pages (see hugemem.h). */
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "mem/hugemem.h"

/* Whole huge pages from here up: a table this big is worth 2 MiB of RSS to fault in one go. */
enum { HUGE_FROM = 512 * 1024 };

static size_t mapped_size(size_t bytes) { return (bytes + COIL__HUGE_PAGE - 1) & ~(size_t)(COIL__HUGE_PAGE - 1); }

void *coil__huge_alloc(size_t bytes)
{
    if (bytes < HUGE_FROM)
        return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (bytes > SIZE_MAX - 2 * COIL__HUGE_PAGE)
        return NULL;
    bytes = mapped_size(bytes);
    /* Huge pages need 2 MiB alignment: over-map and trim. */
    unsigned char *m = mmap(NULL, bytes + COIL__HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    uintptr_t start = ((uintptr_t)m + COIL__HUGE_PAGE - 1) & ~(uintptr_t)(COIL__HUGE_PAGE - 1);
    size_t head = start - (uintptr_t)m;
    if (head)
        munmap(m, head);
    munmap((unsigned char *)start + bytes, COIL__HUGE_PAGE - head);
    madvise((void *)start, bytes, MADV_HUGEPAGE);
    return (void *)start;
}

void coil__huge_free(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes < HUGE_FROM)
        free(p);
    else
        munmap(p, mapped_size(bytes));
}
