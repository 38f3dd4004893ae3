/* coil core: memory for big per-loop tables (pool chunks, gather's wait nodes, the timer
 * arrays). A big one is a 2 MiB-aligned mapping advised for transparent huge pages:
 * every 4 KiB first-touch fault is a trip into the kernel, so a table filled by 100k tasks
 * would fault thousands of times instead of a few. Requests from 512 KiB up are rounded up to
 * whole 2 MiB pages; smaller ones come from malloc, 64-byte aligned. The caller passes the size back when freeing.
 * Neither is zeroed.
 *
 * A big table given back with coil__huge_free_warm is kept, pages and all, for the next request
 * of the same mapped size (a gather of as many tasks, a loop's pool chunk on the next loop): on a
 * VM a page touched for the first time can cost far more than a trip into the kernel, a warm one
 * a cache miss. What is kept is bounded per process (COIL__HUGE_KEEP_BYTES, the most recently
 * freed first); anything beyond goes back to the kernel at once, so an idle process holds at most
 * that much. coil__huge_free gives a table back at once: for one that will not be asked for at
 * that size again (an array outgrown by its copy), which kept would only be resident memory.
 * Thread-safe. */
#ifndef COIL_CORE_HUGEMEM_H
#define COIL_CORE_HUGEMEM_H

#include <stddef.h>

enum { COIL__HUGE_PAGE = 2 * 1024 * 1024 };

void *coil__huge_alloc(size_t bytes);
void coil__huge_free(void *p, size_t bytes);
void coil__huge_free_warm(void *p, size_t bytes);

/* Enough for the big tables of a busy loop or two (a gather of a million tasks is more, and maps
 * afresh), small beside what such a process uses. */
#define COIL__HUGE_KEEP_BYTES ((size_t)64 << 20)
/* Bytes of freed big tables kept warm right now (tests). */
size_t coil__huge_cached_bytes(void);

#endif
