/* coil core: task stacks.
 *
 * Dedicated stacks (the default) are page-granular: each is a stretch of a big MAP_NORESERVE
 * slab with a guard below it, and costs RSS only for the pages its task touched (a sleeping task
 * touches one) plus its share of the page tables. Stacks come from a per-loop pool, so a task
 * that runs and finishes without suspending reuses the same warm stack. A task takes its stack
 * when it first runs and gives it back when it ends.
 *
 * vm.max_map_count caps mappings per process (65530 by default). Where the kernel has guard
 * regions (MADV_GUARD_INSTALL) a guard does not split its slab, so a whole slab of stacks is one
 * mapping; elsewhere the guard is an mprotect'd page and each stack costs two more. Every pool
 * of the process draws on one mapping budget below that limit; a stack that does not fit in it
 * is COIL_ENOSTACK with a message saying why, never a silent change of mode.
 *
 * Compact mode (only when asked for by name): compact tasks all run on one shared stack per
 * loop. While a compact task is suspended its frames stay on the shared stack until another
 * compact task needs it; only then are the bytes it uses (from its saved sp to the top, typically
 * a few hundred) copied into a heap buffer of exactly that size, and copied back before it runs
 * again. The hazard: while a compact task is suspended, its stack addresses belong to whichever
 * compact task runs next, so NOTHING may point into a suspended compact task's stack. The runtime
 * writes results into a task's out-parameters only after the task has resumed (never from
 * another task's completion path), keeps wait-list nodes inside the task object, and bounces I/O
 * buffers that live on a compact task's stack through runtime-owned memory. Debug mode runs
 * compact tasks on stacks of their own and checks that nothing wrote into them while they were
 * suspended (coil__stack_check_suspend and _resume). */
#ifndef COIL_CORE_STACK_H
#define COIL_CORE_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mem/pool.h"

/* The default usable size of a dedicated stack. Big enough for ordinary C (room for a 64 KiB local
 * buffer and the calls under it); small because a suspended task's address space is not free:
 * it touches one page of its stack, but its page tables cost 8 bytes per 4 KiB of the stack's
 * stride whether touched or not (1/512 of it), and that share is paid by every sleeping task. */
#define COIL__DEFAULT_STACK_SIZE ((size_t)128 * 1024)

/* Lives at the top of its own mapping. */
typedef struct coil__stack {
    struct coil__stack *next;   /* free list */
    unsigned char *map;         /* mapping start (the guard page) */
    size_t map_size;
    size_t size;                /* usable bytes, below this header */
    unsigned valgrind_id;       /* valgrind's handle for the stack (0 outside valgrind) */
    bool in_slab;               /* carved from a slab (default size), not a mapping of its own */
    unsigned char maps;         /* mappings a stack of its own holds in the process's budget */
} coil__stack;

/* Default-size stacks are carved from slabs: one mapping for many stacks, each with a guard page
 * below it, so a new stack costs a guard install instead of mmap + mprotect + a VMA split. */
typedef struct coil__stackslab {
    struct coil__stackslab *next;
    unsigned char *map;
    unsigned carved;
    unsigned prepared;           /* stacks below this have their guard and their top page already */
} coil__stackslab;

/* Why the last coil__stack_get failed. */
enum { COIL__STACK_OK, COIL__STACK_CAP, COIL__STACK_MAPS, COIL__STACK_NOMEM };

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
    unsigned slab_stacks;        /* stacks per slab */
    unsigned batch;              /* stacks prepared at once next (grows with use) */
    unsigned live, max;          /* dedicated stacks in use, and the loop's cap on them */
    unsigned unmetered;          /* of `live`, debug mode's stacks for compact tasks: not capped */
    unsigned ncold;
    /* Hysteresis (coil__stackpool_idle): the fewest free stacks seen since the window began,
     * and how many the last whole window never needed (those may go back). */
    unsigned low, surplus;
    uint64_t window_start;       /* ns, coil__now_ns's clock */
    long maps;                   /* mappings this pool holds against the process's budget */
    int why;                     /* COIL__STACK_*: why the last get failed */
    bool told;                   /* the process's limit was reported on stderr once */
    uint64_t handovers;          /* tasks started on a finished task's stack (task.c) */
    size_t default_size;
    size_t pooled_size;          /* the usable size of a default stack, after rounding */
    size_t bytes_mapped;         /* stacks that may hold pages (cold ones gave theirs back) */
    /* compact mode */
    coil__stack *shared;
    coil_task *shared_owner;     /* the compact task whose frames are on the shared stack */
    coil__pool save[COIL__SAVE_CLASSES];
} coil__stackpool;

/* max: the loop's cap on live stacks (0 = only the process's mapping budget limits them). */
int coil__stackpool_init(coil__stackpool *p, size_t default_size, size_t compact_size, unsigned max,
                         unsigned keep);
void coil__stackpool_destroy(coil__stackpool *p);
/* A stack of at least `size` bytes (0 = default), or NULL when the cap or the mapping budget is
 * reached or mmap fails (p->why says which; coil__stack_explain words it). */
coil__stack *coil__stack_get(coil__stackpool *p, size_t size);
void coil__stack_put(coil__stackpool *p, coil__stack *s);
/* The same for debug mode's stacks of compact tasks, which the loop's max_stacks does not count
 * (debug mode must not change which tasks get a stack). */
coil__stack *coil__stack_get_unmetered(coil__stackpool *p, size_t size);
void coil__stack_put_unmetered(coil__stackpool *p, coil__stack *s);
/* Give back the pages of up to `max` free stacks beyond the pool's keep now; true if more remain. */
bool coil__stackpool_trim(coil__stackpool *p, unsigned max);
/* The loop is about to block: give back the pages of up to `max` free stacks, beyond the pool's
 * keep, that went unused for a whole window (COIL__STACK_WINDOW_NS) of the loop's time. A
 * workload that comes back within the window finds its stacks warm (their pages and guards in
 * place: no fault, no syscall); memory that a burst left behind goes back within two windows of
 * the loop's idle moments. True if more may go back later. */
bool coil__stackpool_idle(coil__stackpool *p, uint64_t now_ns, unsigned max);
/* A second: far longer than a round of any steady workload or a burst's gaps, far shorter than
 * the time a memory-hungry burst's leftovers are worth holding. */
#define COIL__STACK_WINDOW_NS ((uint64_t)1000000000)
/* Can another dedicated stack be had without exceeding the cap or the mapping budget? Sets
 * p->why when not. */
bool coil__stack_available(coil__stackpool *p);
/* Say in `buf` why the pool has no stack to give (after a failed get or availability check). */
void coil__stack_explain(const coil__stackpool *p, char *buf, size_t n);

/* Debug mode's check of the compact rule on a compact task running on a stack of its own: when
 * it suspends, [sp, top) is copied into *copy and overwritten with a pattern (as compact mode
 * would hand those bytes to another task); when it resumes, the pattern is checked and the frames
 * are put back. Returns the offset below top of the highest byte that changed while the task was
 * suspended (something wrote into it through a pointer), or 0 if none did. */
void coil__stack_check_suspend(coil__stackpool *p, coil__savebuf **copy, const void *sp, const void *top);
size_t coil__stack_check_resume(const coil__savebuf *copy, void *top);

/* How many tasks of the loop started on the stack a finished task handed over (tests). */
struct coil_loop;
uint64_t coil__loop_stack_handovers(const struct coil_loop *loop);
/* The loop's stack pool, to read its counts (tests; the loop's own thread only). */
const coil__stackpool *coil__loop_stacks(const struct coil_loop *loop);

/* Tests: behave as on a kernel without guard regions (mprotect'd guard pages, two mappings a
 * stack) from now on, or as this kernel does again. */
void coil__stack_testing_no_guard_regions(bool on);
/* The mappings left in the process's stack budget. */
long coil__stack_maps_left(void);

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
