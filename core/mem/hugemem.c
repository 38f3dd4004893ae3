/* coil core: big tables on huge pages (see hugemem.h). */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "mem/hugemem.h"

/* Whole huge pages from here up: a table this big is worth 2 MiB of RSS to fault in one go. */
enum { HUGE_FROM = 512 * 1024 };

static size_t mapped_size(size_t bytes) { return (bytes + COIL__HUGE_PAGE - 1) & ~(size_t)(COIL__HUGE_PAGE - 1); }

/* Freed mappings kept warm, oldest first. A few slots: the tables worth keeping are few and big. */
enum { KEEP_SLOTS = 16 };
static struct kept {
    void *p;
    size_t bytes;
} kept[KEEP_SLOTS];
static unsigned nkept;
static size_t kept_bytes;
static pthread_mutex_t kept_lock = PTHREAD_MUTEX_INITIALIZER;

/* The most recently freed mapping of exactly `bytes`, or NULL. */
static void *take_kept(size_t bytes)
{
    void *p = NULL;
    pthread_mutex_lock(&kept_lock);
    for (unsigned i = nkept; i-- > 0;) {
        if (kept[i].bytes != bytes)
            continue;
        p = kept[i].p;
        kept_bytes -= bytes;
        for (nkept--; i < nkept; i++)
            kept[i] = kept[i + 1];
        break;
    }
    pthread_mutex_unlock(&kept_lock);
    return p;
}

/* Keep a freed mapping, handing the oldest ones back to the kernel to stay within the bound. */
static void keep(void *p, size_t bytes)
{
    struct kept out[KEEP_SLOTS + 1];
    unsigned nout = 0;
    if (bytes > COIL__HUGE_KEEP_BYTES) {
        out[nout++] = (struct kept){ p, bytes };
    } else {
        pthread_mutex_lock(&kept_lock);
        while (nkept && (nkept == KEEP_SLOTS || kept_bytes + bytes > COIL__HUGE_KEEP_BYTES)) {
            out[nout++] = kept[0];
            kept_bytes -= kept[0].bytes;
            nkept--;
            for (unsigned i = 0; i < nkept; i++)
                kept[i] = kept[i + 1];
        }
        kept[nkept++] = (struct kept){ p, bytes };
        kept_bytes += bytes;
        pthread_mutex_unlock(&kept_lock);
    }
    for (unsigned i = 0; i < nout; i++)
        munmap(out[i].p, out[i].bytes);
}

size_t coil__huge_cached_bytes(void)
{
    pthread_mutex_lock(&kept_lock);
    size_t n = kept_bytes;
    pthread_mutex_unlock(&kept_lock);
    return n;
}

void *coil__huge_alloc(size_t bytes)
{
    if (bytes < HUGE_FROM)
        return aligned_alloc(64, (bytes + 63) & ~(size_t)63);
    if (bytes > SIZE_MAX - 2 * COIL__HUGE_PAGE)
        return NULL;
    bytes = mapped_size(bytes);
    void *warm = take_kept(bytes);
    if (warm)
        return warm;
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

void coil__huge_free_warm(void *p, size_t bytes)
{
    if (!p)
        return;
    if (bytes < HUGE_FROM)
        free(p);
    else
        keep(p, mapped_size(bytes));
}
