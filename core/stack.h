/* coil core: task stacks.
 *
 * Dedicated stacks are mmap'd with a PROT_NONE guard page below them and come from a per-loop
 * pool, so a task that runs and finishes without suspending reuses the same warm stack. A task
 * takes its stack when it first runs and gives it back when it ends.
 *
 * Each dedicated stack costs two kernel mappings (the guard splits it), and vm.max_map_count
 * caps mappings per process (65530 by default), so the pool caps live stacks below that. Past
 * the cap, AUTO tasks run in compact mode instead:
 *
 * Compact mode: compact tasks all run on one shared stack per loop. While a compact task is
 * suspended its frames stay on the shared stack until another compact task needs it; only then
 * are the bytes it uses (from its saved sp to the top, typically a few hundred) copied into a
 * heap buffer of exactly that size, and copied back before it runs again. The hazard: while a
 * compact task is suspended, its stack addresses belong to whichever compact task runs next, so
 * NOTHING may point into a suspended compact task's stack. The runtime writes results into a
 * task's out-parameters only after the task has resumed (never from another task's completion
 * path), keeps wait-list nodes inside the task object, and bounces I/O buffers that live on a
 * compact task's stack through runtime-owned memory. */
#ifndef COIL_CORE_STACK_H
#define COIL_CORE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "pool.h"

/* Lives at the top of its own mapping. */
typedef struct coil__stack {
    struct coil__stack *next;   /* free list */
    unsigned char *map;         /* mapping start (the guard page) */
    size_t map_size;
    size_t size;                /* usable bytes, below this header */
    unsigned valgrind_id;       /* valgrind's handle for the stack (0 outside valgrind) */
    bool in_slab;               /* carved from a slab (default size), not a mapping of its own */
} coil__stack;

/* Default-size stacks are carved from slabs: one mapping for many stacks, each with a guard page
 * below it, so a new stack costs a guard install instead of mmap + mprotect + a VMA split. */
typedef struct coil__stackslab {
    struct coil__stackslab *next;
    unsigned char *map;
    unsigned carved;
} coil__stackslab;

typedef struct coil__savebuf {
    uint32_t cap, used;          /* cap + the header is exactly its size class, which it implies */
    unsigned char data[];
} coil__savebuf;

/* Save buffers come from per-size-class pools: 16-byte steps up to 1 KiB (a suspended task's
 * frames are a few hundred bytes: every byte of slack is RSS per task), then powers of two up to
 * 8 KiB; bigger ones from malloc. A pool takes memory in 2 MiB huge-page chunks, so a million
 * evicted tasks cost a few hundred page faults instead of one per 4 KiB, and taking or giving
 * back a buffer is two pointer moves. */
enum { COIL__SAVE_CLASSES = 67 };

typedef struct coil_task coil_task;

typedef struct coil__stackpool {
    coil__stack *free;
    unsigned nfree, keep;
    coil__stackslab *slabs;
    coil__stack **cold;          /* free slab stacks whose pages were given back (trimmed) */
    size_t cold_cap;
    size_t stride;               /* a slab stack with its guard page */
    unsigned live, max;          /* dedicated stacks in use, and the cap on them */
    unsigned auto_max;           /* AUTO tasks run compact once `live` reaches this */
    unsigned ncold;
    size_t default_size;
    size_t pooled_size;          /* the usable size of a default stack, after rounding */
    size_t bytes_mapped;         /* stacks that may hold pages (cold ones gave theirs back) */
    /* compact mode */
    coil__stack *shared;
    coil_task *shared_owner;     /* the compact task whose frames are on the shared stack */
    coil__pool save[COIL__SAVE_CLASSES];
} coil__stackpool;

int coil__stackpool_init(coil__stackpool *p, size_t default_size, size_t compact_size, unsigned max,
                         unsigned auto_max, unsigned keep);
void coil__stackpool_destroy(coil__stackpool *p);
/* A stack of at least `size` bytes (0 = default), or NULL when the cap is reached or mmap fails. */
coil__stack *coil__stack_get(coil__stackpool *p, size_t size);
void coil__stack_put(coil__stackpool *p, coil__stack *s);
/* Give back the pages of up to `max` free stacks beyond the pool's keep; true if more remain. */
bool coil__stackpool_trim(coil__stackpool *p, unsigned max);
/* Can another dedicated stack be had without exceeding the cap? */
bool coil__stack_available(const coil__stackpool *p);

static inline void *coil__stack_top(const coil__stack *s) { return (void *)s; }
static inline void *coil__stack_bottom(const coil__stack *s) { return (unsigned char *)s - s->size; }

/* Copy [sp, top) of the shared stack into *buf (replacing it if too small), or back. */
void coil__stack_save(coil__stackpool *p, coil__savebuf **buf, const void *sp, const void *top);
void coil__stack_restore(const coil__savebuf *buf, void *top);
void coil__savebuf_free(coil__stackpool *p, coil__savebuf *buf);

/* The SIGSEGV reporter for guard-page hits, installed once per process; each loop thread
 * gets an alternate signal stack. */
void coil__stack_install_guard_handler(void);
int coil__stack_thread_altstack(void);
void coil__stack_thread_altstack_free(void);

#endif
