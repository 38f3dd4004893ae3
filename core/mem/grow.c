/* coil core: growing an array by doubling (see internal.h). */
#include <stdint.h>
#include <stdlib.h>

#include "engine/internal.h"

void *coil__grow_array(void *a, size_t *cap, size_t elem, size_t first)
{
    size_t n = *cap ? *cap * 2 : first;
    if (n < *cap || n > SIZE_MAX / elem)
        return NULL;
    void *b = realloc(a, n * elem);
    if (b)
        *cap = n;
    return b;
}
