/* coil core: memory for big per-loop tables (pool chunks, gather's wait nodes, the timer
 * arrays). A big one is a 2 MiB-aligned mapping advised for transparent huge pages: on
 * every 4 KiB first-touch fault is a trip into the kernel, so a table filled by 100k tasks
 * would fault thousands of times instead of a few. Requests from 512 KiB up are rounded up to
 * whole 2 MiB pages; smaller ones come from malloc, 64-byte aligned. The caller passes the size back when freeing. */
#ifndef COIL_CORE_HUGEMEM_H
#define COIL_CORE_HUGEMEM_H

#include <stddef.h>

enum { COIL__HUGE_PAGE = 2 * 1024 * 1024 };

void *coil__huge_alloc(size_t bytes);
void coil__huge_free(void *p, size_t bytes);

#endif
