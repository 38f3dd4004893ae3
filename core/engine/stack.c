/* coil core: stack pool, compact-mode copying and the guard-page reporter (see stack.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine/internal.h"

/* Under valgrind, every stack a task runs on must be registered, or memcheck takes each switch
 * for a wild stack-pointer jump and reports the frames on it as invalid. Outside valgrind the
 * macros are a few no-op instructions, run only when a stack is mapped or unmapped. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/memcheck.h>
#include <valgrind/valgrind.h>
#define COIL__VALGRIND 1
#endif
#endif

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#endif

/* What the process and its kernel allow, found once by whichever loop comes first. */
static size_t g_page;
static bool g_guard_regions;    /* MADV_GUARD_INSTALL works: a guard does not split its mapping */
static _Atomic bool g_no_guard_regions; /* tests: behave as a kernel without them */
static long g_max_map_count;
static long g_map_budget;       /* mappings all stack pools together may hold */
static _Atomic long g_maps_used;
static pthread_once_t g_facts_once = PTHREAD_ONCE_INIT;

const coil__stackpool *coil__loop_stacks(const struct coil_loop *loop) { return &loop->stacks; }

static void find_facts(void)
{
    long ps = sysconf(_SC_PAGESIZE);
    g_page = ps > 0 ? (size_t)ps : 4096;
    long max_map = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f) {
        if (fscanf(f, "%ld", &max_map) != 1 || max_map < 64)
            max_map = 65530;
        fclose(f);
    }
    g_max_map_count = max_map;
    /* A quarter stays with the rest of the process: libraries, heaps, threads' stacks. */
    g_map_budget = max_map - max_map / 4;
    void *m = mmap(NULL, 2 * g_page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m != MAP_FAILED) {
        g_guard_regions = madvise(m, g_page, MADV_GUARD_INSTALL) == 0;
        munmap(m, 2 * g_page);
    }
}

static size_t page_size(void)
{
    pthread_once(&g_facts_once, find_facts);
    return g_page;
}

static bool guard_regions(void)
{
    pthread_once(&g_facts_once, find_facts);
    return g_guard_regions && !atomic_load_explicit(&g_no_guard_regions, memory_order_relaxed);
}

void coil__stack_testing_no_guard_regions(bool on)
{
    atomic_store_explicit(&g_no_guard_regions, on, memory_order_relaxed);
}

long coil__stack_maps_left(void)
{
    pthread_once(&g_facts_once, find_facts);
    return g_map_budget - atomic_load_explicit(&g_maps_used, memory_order_relaxed);
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

/* Reserve n mappings of the process's budget for this pool. */
static bool take_maps(coil__stackpool *p, long n)
{
    long used = atomic_fetch_add_explicit(&g_maps_used, n, memory_order_relaxed);
    if (used + n > g_map_budget) {
        atomic_fetch_sub_explicit(&g_maps_used, n, memory_order_relaxed);
        p->why = COIL__STACK_MAPS;
        return false;
    }
    p->maps += n;
    return true;
}

static void give_maps(coil__stackpool *p, long n)
{
    atomic_fetch_sub_explicit(&g_maps_used, n, memory_order_relaxed);
    p->maps -= n;
}

/* Mappings a guard costs: none where it is a guard region; where it is an mprotect'd page it
 * splits the mapping around itself. */
static long guard_maps(bool regions) { return regions ? 0 : 2; }

static bool install_guard(void *page, bool regions)
{
    if (regions)
        return madvise(page, page_size(), MADV_GUARD_INSTALL) == 0;
    return mprotect(page, page_size(), PROT_NONE) == 0;
}

/* Fill in the header at the top of a stack whose guard page is at `guard`. */
static coil__stack *stack_at(unsigned char *guard, size_t map_size, bool in_slab, unsigned char maps)
{
    coil__stack *s = (coil__stack *)(guard + map_size - sizeof(coil__stack));
    s->next = NULL;
    s->map = guard;
    s->map_size = map_size;
    s->size = (size_t)((unsigned char *)s - (guard + page_size()));
    s->in_slab = in_slab;
    s->maps = maps;
#if defined(COIL__VALGRIND)
    s->valgrind_id = VALGRIND_STACK_REGISTER(guard + page_size(), (unsigned char *)s);
#else
    s->valgrind_id = 0;
#endif
    return s;
}

/* A stack of its own mapping: odd sizes and the shared compact stack. */
static coil__stack *map_stack(coil__stackpool *p, size_t size)
{
    size_t ps = page_size();
    size_t total = round_up(size + sizeof(coil__stack), ps) + ps;
    bool regions = guard_regions();
    long maps = 1 + (regions ? 0 : 1);
    if (!take_maps(p, maps))
        return NULL;
    unsigned char *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
        give_maps(p, maps);
        p->why = COIL__STACK_NOMEM;
        return NULL;
    }
    if (!install_guard(m, regions)) {
        munmap(m, total);
        give_maps(p, maps);
        p->why = COIL__STACK_NOMEM;
        return NULL;
    }
    p->bytes_mapped += total;
    return stack_at(m, total, false, (unsigned char)maps);
}

/* Frames that never returned (a finished task's first frame, a destroyed task's) leave their
 * redzones poisoned; whatever runs on this memory next would inherit that shadow. */
static void forget_frames(coil__stack *s)
{
#if defined(COIL__VALGRIND)
    VALGRIND_STACK_DEREGISTER(s->valgrind_id);
#endif
#if defined(COIL__ASAN)
    __asan_unpoison_memory_region(s->map, s->map_size);
#else
    (void)s;
#endif
}

static void unmap_stack(coil__stackpool *p, coil__stack *s)
{
    p->bytes_mapped -= s->map_size;
    give_maps(p, s->maps);
    unsigned char *map = s->map;
    size_t map_size = s->map_size;
    forget_frames(s);
    munmap(map, map_size);
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif
#ifndef PIDFD_SELF_THREAD
#define PIDFD_SELF_THREAD -10000 /* Linux 6.15: the calling thread, whose memory is the process's */
#endif

/* New stacks are prepared in batches: their guards installed and their top pages (where the
 * first frames go) populated with one process_madvise call each, instead of a madvise and a page
 * fault per stack (a first-touch fault costs far more than its share of a batched populate).
 * Batches start small, so a loop with a few tasks populates a few pages, and double with use. */
enum { BATCH_FIRST = 8, BATCH_MAX = 128 };
static _Atomic bool g_no_batches; /* process_madvise refused: prepare stacks one by one */

static _Atomic bool g_no_pidfd_self;

/* madvise over many ranges in one call; before PIDFD_SELF, through a pidfd of our own. */
static long advise_pages(struct iovec *iov, unsigned n, int advice)
{
    if (!atomic_load_explicit(&g_no_pidfd_self, memory_order_relaxed)) {
        long r = syscall(SYS_process_madvise, PIDFD_SELF_THREAD, iov, (size_t)n, advice, 0u);
        if (r >= 0 || errno != EBADF)
            return r;
        atomic_store_explicit(&g_no_pidfd_self, true, memory_order_relaxed);
    }
    int fd = (int)syscall(SYS_pidfd_open, getpid(), 0u);
    if (fd < 0)
        return -1;
    long r = syscall(SYS_process_madvise, fd, iov, (size_t)n, advice, 0u);
    int err = errno;
    close(fd);
    errno = err;
    return r;
}

/* Prepare the slab's next stacks from `carved` on, as many as the batch; leaves sl->prepared
 * where the guards got to (carve_stack guards any stack past it by itself). */
static void prepare_batch(coil__stackpool *p, coil__stackslab *sl)
{
    if (atomic_load_explicit(&g_no_batches, memory_order_relaxed))
        return;
    size_t ps = page_size();
    unsigned k = p->slab_stacks - sl->carved;
    if (k > p->batch)
        k = p->batch;
    struct iovec guards[BATCH_MAX], tops[BATCH_MAX];
    for (unsigned i = 0; i < k; i++) {
        unsigned char *base = sl->map + (size_t)(sl->carved + i) * p->stride;
        guards[i] = (struct iovec){ base, ps };
        tops[i] = (struct iovec){ base + p->stride - ps, ps };
    }
    long done = advise_pages(guards, k, MADV_GUARD_INSTALL);
    if (done < 0) {
        if (errno == EBADF || errno == EINVAL || errno == ENOSYS || errno == EPERM)
            atomic_store_explicit(&g_no_batches, true, memory_order_relaxed);
        return;
    }
    unsigned guarded = (unsigned)((size_t)done / ps);
    sl->prepared = sl->carved + guarded;
    /* Only an optimisation: a page it could not populate is faulted in when first used. */
    if (guarded)
        (void)advise_pages(tops, guarded, MADV_POPULATE_WRITE);
    if (p->batch < BATCH_MAX)
        p->batch *= 2;
}

/* Slabs are this big (in whole stacks): fewer, bigger mappings keep the mapping count low, and
 * the address space of a slab costs nothing until its stacks are used. */
enum { SLAB_BYTES = 32 << 20, SLAB_MIN_STACKS = 8, SLAB_MAX_STACKS = 1024 };

/* A new default-size stack from the current slab, mapping the next slab when it is used up. */
static coil__stack *carve_stack(coil__stackpool *p)
{
    coil__stackslab *sl = p->slabs;
    if (!sl || sl->carved == p->slab_stacks) {
        if (!take_maps(p, 1))
            return NULL;
        sl = malloc(sizeof *sl);
        if (sl)
            sl->map = mmap(NULL, p->stride * p->slab_stacks, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (!sl || sl->map == MAP_FAILED) {
            free(sl);
            give_maps(p, 1);
            p->why = COIL__STACK_NOMEM;
            return NULL;
        }
        sl->carved = sl->prepared = 0;
        sl->next = p->slabs;
        p->slabs = sl;
    }
    unsigned char *guard = sl->map + sl->carved * p->stride;
    bool regions = guard_regions();
    if (regions && sl->carved == sl->prepared)
        prepare_batch(p, sl);
    if (!regions || sl->carved >= sl->prepared) {
        if (!take_maps(p, guard_maps(regions)))
            return NULL;
        if (!install_guard(guard, regions)) {
            give_maps(p, guard_maps(regions));
            p->why = COIL__STACK_NOMEM;
            return NULL;
        }
        if (sl->prepared == sl->carved)
            sl->prepared++;
    }
    sl->carved++;
    p->bytes_mapped += p->stride;
    return stack_at(guard, p->stride, true, 0);
}

int coil__stackpool_init(coil__stackpool *p, size_t default_size, size_t compact_size, unsigned max,
                         unsigned keep)
{
    memset(p, 0, sizeof *p);
    p->default_size = default_size;
    p->keep = keep;
    p->max = max;
    p->stride = round_up(default_size + sizeof(coil__stack), page_size()) + page_size();
    p->batch = BATCH_FIRST;
    size_t per_slab = SLAB_BYTES / p->stride;
    p->slab_stacks = per_slab < SLAB_MIN_STACKS ? SLAB_MIN_STACKS
                     : per_slab > SLAB_MAX_STACKS ? SLAB_MAX_STACKS
                                                  : (unsigned)per_slab;
    p->pooled_size = p->stride - page_size() - sizeof(coil__stack);
    p->shared = map_stack(p, compact_size);
    return p->shared ? 0 : -ENOMEM;
}

void coil__stackpool_destroy(coil__stackpool *p)
{
    for (coil__stack *s = p->free; s; s = s->next)
        forget_frames(s);
    while (p->slabs) {
        coil__stackslab *sl = p->slabs;
        p->slabs = sl->next;
        munmap(sl->map, p->stride * p->slab_stacks);
        free(sl);
    }
    free(p->cold);
    p->cold = NULL;
    p->free = NULL;
    p->nfree = p->ncold = 0;
    if (p->shared)
        unmap_stack(p, p->shared);
    p->shared = NULL;
    /* The slabs and their guards' splits. */
    give_maps(p, p->maps);
    for (unsigned i = 0; i < COIL__SAVE_CLASSES; i++)
        coil__pool_destroy(&p->save[i]);
}

bool coil__stack_available(coil__stackpool *p)
{
    if (p->max && p->live - p->unmetered >= p->max) {
        p->why = COIL__STACK_CAP;
        return false;
    }
    if (p->free || p->ncold)
        return true;
    long need = guard_maps(guard_regions()) + (!p->slabs || p->slabs->carved == p->slab_stacks);
    if (atomic_load_explicit(&g_maps_used, memory_order_relaxed) + need > g_map_budget) {
        p->why = COIL__STACK_MAPS;
        return false;
    }
    return true;
}

void coil__stack_explain(const coil__stackpool *p, char *buf, size_t n)
{
    if (p->why == COIL__STACK_CAP)
        snprintf(buf, n, "the loop's cap of %u live stacks (coil_loop_opts.max_stacks) is reached", p->max);
    else if (p->why == COIL__STACK_MAPS)
        snprintf(buf, n,
                 "the process's memory mappings for task stacks are used up (vm.max_map_count is %ld%s); "
                 "raise vm.max_map_count, or run tasks that share no pointers to their locals as "
                 "COIL_STACK_COMPACT",
                 g_max_map_count,
                 guard_regions() ? ""
                                 : "; without guard regions (MADV_GUARD_INSTALL, Linux 6.13) each stack "
                                   "takes two mappings");
    else
        snprintf(buf, n, "mmap failed for a task stack (out of memory or address space)");
}

coil__stack *coil__stack_get(coil__stackpool *p, size_t size)
{
    coil__stack *s = NULL;
    if (p->max && p->live - p->unmetered >= p->max) {
        p->why = COIL__STACK_CAP;
        return NULL;
    }
    if (size == 0 || size == p->default_size || size == p->pooled_size) {
        if ((s = p->free)) {
            p->free = s->next;
            if (--p->nfree < p->low) {
                /* A new low: demand this window already beats the last one's estimate. */
                p->low = p->nfree;
                if (p->surplus > p->low)
                    p->surplus = p->low;
            }
        } else if (p->ncold) {
            s = p->cold[--p->ncold];
            /* Its top page went back when it was trimmed: populate it rather than fault it in. */
            (void)madvise((unsigned char *)s + sizeof *s - page_size(), page_size(), MADV_POPULATE_WRITE);
            s = stack_at((unsigned char *)s + sizeof *s - p->stride, p->stride, true, 0);
            p->bytes_mapped += p->stride;
        } else {
            s = carve_stack(p);
        }
    } else {
        s = map_stack(p, size);
    }
    if (s)
        p->live++;
    return s;
}

coil__stack *coil__stack_get_unmetered(coil__stackpool *p, size_t size)
{
    unsigned max = p->max;
    p->max = 0;
    coil__stack *s = coil__stack_get(p, size);
    p->max = max;
    if (s)
        p->unmetered++;
    return s;
}

void coil__stack_put_unmetered(coil__stackpool *p, coil__stack *s)
{
    p->unmetered--;
    coil__stack_put(p, s);
}

void coil__stack_put(coil__stackpool *p, coil__stack *s)
{
    p->live--;
    if (!s->in_slab) {
        unmap_stack(p, s);
        return;
    }
    /* Past `keep`, the surplus gives its pages back in coil__stackpool_trim when the loop is
     * idle rather than here, in the middle of whatever finished the task. */
    s->next = p->free;
    p->free = s;
    p->nfree++;
}

/* Give back the pages of up to `max` free stacks, leaving `keep` (and at least p->keep). */
static bool trim_to(coil__stackpool *p, unsigned keep, unsigned max)
{
    if (keep < p->keep)
        keep = p->keep;
    while (p->nfree > keep && max--) {
        if (p->ncold == p->cold_cap) {
            coil__stack **cold = coil__grow_array(p->cold, &p->cold_cap, sizeof *cold, 64);
            if (!cold)
                return false;
            p->cold = cold;
        }
        coil__stack *s = p->free;
        p->free = s->next;
        p->nfree--;
        forget_frames(s);
        /* The header goes with the pages: the cold list keeps the address, and reuse rebuilds it. */
        madvise(s->map + page_size(), p->stride - page_size(), MADV_DONTNEED);
        p->cold[p->ncold++] = s;
        p->bytes_mapped -= p->stride;
    }
    if (p->nfree < p->low)
        p->low = p->nfree;
    return p->nfree > keep;
}

bool coil__stackpool_trim(coil__stackpool *p, unsigned max) { return trim_to(p, p->keep, max); }

bool coil__stackpool_idle(coil__stackpool *p, uint64_t now_ns, unsigned max)
{
    /* The free list's low-water mark over a window is what the window's busiest moment left
     * unused: live + low stacks were never all needed at once. Only that many may go back, so a
     * workload whose demand stays within what it used in the last window never trims and never
     * faults; it takes a whole window below the peak for the peak's memory to start going back. */
    if (now_ns - p->window_start >= COIL__STACK_WINDOW_NS) {
        p->surplus = p->low;
        p->low = p->nfree;
        p->window_start = now_ns;
    }
    if (!p->surplus || p->nfree <= p->keep)
        return false;
    unsigned before = p->nfree;
    bool more = trim_to(p, p->surplus < p->nfree ? p->nfree - p->surplus : 0, max);
    unsigned gone = before - p->nfree;
    p->surplus = gone < p->surplus ? p->surplus - gone : 0;
    return more && p->surplus;
}

/* Under ASan the copies read and write stack memory poisoned for frames of other tasks, so they
 * go byte by byte outside instrumentation; everywhere else it is a plain memcpy. */
#if defined(COIL__ASAN)
__attribute__((no_sanitize_address)) static void raw_copy(unsigned char *dst, const unsigned char *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = src[i];
}
#else
static inline void raw_copy(unsigned char *dst, const unsigned char *src, size_t n) { memcpy(dst, src, n); }
#endif

enum { SAVE_MALLOC = COIL__SAVE_CLASSES };

/* The class whose buffers hold `bytes` (header included), and their size. */
static unsigned save_class(size_t bytes, size_t *size)
{
    if (bytes <= 1024) {
        unsigned cls = bytes <= 16 ? 0 : (unsigned)((bytes + 15) / 16) - 1;
        *size = ((size_t)cls + 1) * 16;
        return cls;
    }
    for (unsigned cls = 64; cls < COIL__SAVE_CLASSES; cls++) {
        *size = (size_t)2048 << (cls - 64);
        if (bytes <= *size)
            return cls;
    }
    *size = round_up(bytes, 64);
    return SAVE_MALLOC;
}

void coil__savebuf_free(coil__stackpool *p, coil__savebuf *b)
{
    if (!b)
        return;
    size_t size;
    unsigned cls = save_class(sizeof *b + b->cap, &size);
    if (cls == SAVE_MALLOC)
        free(b);
    else
        coil__pool_put(&p->save[cls], b);
}

void coil__stack_save(coil__stackpool *p, coil__savebuf **bufp, const void *sp, const void *top)
{
    size_t used = (size_t)((const unsigned char *)top - (const unsigned char *)sp);
    coil__savebuf *b = *bufp;
    if (!b || b->cap < used) {
        coil__savebuf_free(p, b);
        *bufp = NULL;
        size_t size;
        unsigned cls = save_class(sizeof *b + used, &size);
        if (cls == SAVE_MALLOC) {
            b = malloc(size);
        } else {
            if (COIL_UNLIKELY(p->save[cls].objsize == 0))
                coil__pool_init(&p->save[cls], size);
            b = coil__pool_get(&p->save[cls]);
        }
        if (!b) {
            /* Nowhere to put the frames and no caller to tell: fail loudly rather than corrupt. */
            fprintf(stderr, "coil: out of memory saving %zu bytes of a compact task's stack\n", used);
            abort();
        }
        b->cap = (uint32_t)(size - sizeof *b);
        *bufp = b;
    }
    b->used = (uint32_t)used;
    raw_copy(b->data, sp, used);
#if defined(COIL__ASAN)
    /* The evicted frames never return, so ASan never clears their redzones: stale poison there
     * would flag the next owner's fresh frames (whose prologues only poison redzones). */
    __asan_unpoison_memory_region((void *)(uintptr_t)sp, used);
#endif
}

void coil__stack_restore(const coil__savebuf *b, void *top)
{
    unsigned char *dst = (unsigned char *)top - b->used;
#if defined(COIL__ASAN)
    __asan_unpoison_memory_region(dst, b->used);
#endif
#if defined(COIL__VALGRIND)
    /* Memcheck marked these bytes dead when the previous owner's frames unwound off them. */
    VALGRIND_MAKE_MEM_UNDEFINED(dst, b->used);
#endif
    raw_copy(dst, b->data, b->used);
}

/* ---- debug mode's check of the compact rule ---- */

enum { CHECK_PATTERN = 0xA5 };

#if defined(COIL__ASAN)
__attribute__((no_sanitize_address))
#endif
static void raw_fill(unsigned char *dst, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = CHECK_PATTERN;
}

#if defined(COIL__ASAN)
__attribute__((no_sanitize_address))
#endif
static size_t raw_first_change(const unsigned char *top, size_t n)
{
    for (size_t i = 1; i <= n; i++)
        if (top[-(ptrdiff_t)i] != CHECK_PATTERN)
            return i;
    return 0;
}

void coil__stack_check_suspend(coil__stackpool *p, coil__savebuf **copy, const void *sp, const void *top)
{
    coil__stack_save(p, copy, sp, top);
    size_t used = (*copy)->used;
    raw_fill((unsigned char *)(uintptr_t)top - used, used);
}

size_t coil__stack_check_resume(const coil__savebuf *copy, void *top)
{
    size_t off = raw_first_change(top, copy->used);
    coil__stack_restore(copy, top);
    return off;
}

/* ---- guard pages ---- */

static struct sigaction prev_segv;
static pthread_once_t guard_once = PTHREAD_ONCE_INIT;
static __thread void *altstack_mem;

static void put_str(const char *s) { (void)!write(STDERR_FILENO, s, strlen(s)); }

static void put_num(size_t n)
{
    char buf[24];
    char *p = buf + sizeof buf;
    *--p = 0;
    do {
        *--p = (char)('0' + n % 10);
        n /= 10;
    } while (n);
    put_str(p);
}

static void on_segv(int sig, siginfo_t *si, void *uc)
{
    coil_loop *loop = coil__tls_running;
    coil_task *t = loop ? loop->current : NULL;
    unsigned char *addr = si->si_addr;
    bool shared = t && (t->tflags & (COIL__TF_COMPACT | COIL__TF_CHECKED)) == COIL__TF_COMPACT;
    coil__stack *s = !t ? NULL : shared ? loop->stacks.shared : t->stack;
    /* g_page is set (a loop found it before any task ran); pthread_once is not async-signal-safe. */
    if (s && addr >= s->map && addr < s->map + g_page * 2) {
        put_str("coil: stack overflow in task '");
        put_str(t->ext && t->ext->name ? t->ext->name : "(unnamed)");
        put_str("': it ran past the guard page of its ");
        put_num(s->size);
        put_str("-byte stack");
        put_str(shared                                   ? " (the loop's shared compact stack)"
                : (t->tflags & COIL__TF_CHECKED) ? " (debug mode's own stack for a compact task)"
                                                 : "");
        put_str("; give it a bigger stack with coil_task_opts.stack_size\n");
        signal(SIGABRT, SIG_DFL);
        abort();
    }
    /* Not ours: hand over to whoever was there before, or die as the kernel intended. */
    if (prev_segv.sa_flags & SA_SIGINFO) {
        if (prev_segv.sa_sigaction) {
            prev_segv.sa_sigaction(sig, si, uc);
            return;
        }
    } else if (prev_segv.sa_handler != SIG_DFL && prev_segv.sa_handler != SIG_IGN) {
        prev_segv.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
}

static void install(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &prev_segv);
}

void coil__stack_install_guard_handler(void)
{
#if !defined(COIL__ASAN) && !defined(COIL__TSAN)
    /* Sanitizers own SIGSEGV and already report the faulting stack. */
    pthread_once(&guard_once, install);
#else
    (void)guard_once;
    (void)install;
#endif
}

/* A thread that ran a loop keeps its alternate signal stack for the loops it may run later, and
 * gives it back when it exits: a key's destructor runs then. */
enum { ALTSTACK_SIZE = 64 * 1024 };
static pthread_key_t altstack_key;
static pthread_once_t altstack_key_once = PTHREAD_ONCE_INIT;
static bool altstack_key_ok;

static void altstack_exit(void *mem)
{
    if (mem && mem == altstack_mem)
        coil__stack_thread_altstack_free();
}

static void make_altstack_key(void) { altstack_key_ok = pthread_key_create(&altstack_key, altstack_exit) == 0; }

int coil__stack_thread_altstack(void)
{
    if (altstack_mem)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread has one already */
    pthread_once(&altstack_key_once, make_altstack_key);
    if (!altstack_key_ok)
        return -EAGAIN;
    void *m = mmap(NULL, ALTSTACK_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    stack_t ss = { .ss_sp = m, .ss_size = ALTSTACK_SIZE, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0 || pthread_setspecific(altstack_key, m) != 0) {
        int err = errno ? -errno : -ENOMEM;
        ss.ss_flags = SS_DISABLE;
        sigaltstack(&ss, NULL);
        munmap(m, ALTSTACK_SIZE);
        return err;
    }
    altstack_mem = m;
    return 0;
}

void coil__stack_thread_altstack_free(void)
{
    if (!altstack_mem)
        return;
    stack_t ss = { .ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE };
    sigaltstack(&ss, NULL);
    munmap(altstack_mem, ALTSTACK_SIZE);
    altstack_mem = NULL;
    if (altstack_key_ok)
        pthread_setspecific(altstack_key, NULL);
}
