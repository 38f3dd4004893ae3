/* coil core: stack pool, compact-mode copying and the guard-page reporter (see stack.h). */
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

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

static size_t page_size(void)
{
    static size_t ps;
    if (!ps)
        ps = (size_t)sysconf(_SC_PAGESIZE);
    return ps;
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102 /* Linux 6.13 */
#endif

/* Guard regions (MADV_GUARD_INSTALL) fault like PROT_NONE without splitting the slab's VMA;
 * older kernels refuse them once and get mprotect from then on. */
static _Atomic bool no_guard_regions;

static bool install_guard(void *page)
{
    if (!atomic_load_explicit(&no_guard_regions, memory_order_relaxed)) {
        if (madvise(page, page_size(), MADV_GUARD_INSTALL) == 0)
            return true;
        if (errno == EINVAL)
            atomic_store_explicit(&no_guard_regions, true, memory_order_relaxed);
    }
    return mprotect(page, page_size(), PROT_NONE) == 0;
}

/* Fill in the header at the top of a stack whose guard page is at `guard`. */
static coil__stack *stack_at(unsigned char *guard, size_t map_size, bool in_slab)
{
    coil__stack *s = (coil__stack *)(guard + map_size - sizeof(coil__stack));
    s->next = NULL;
    s->map = guard;
    s->map_size = map_size;
    s->size = (size_t)((unsigned char *)s - (guard + page_size()));
    s->in_slab = in_slab;
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
    unsigned char *m = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (mprotect(m, ps, PROT_NONE) != 0) {
        munmap(m, total);
        return NULL;
    }
    p->bytes_mapped += total;
    return stack_at(m, total, false);
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
    unsigned char *map = s->map;
    size_t map_size = s->map_size;
    forget_frames(s);
    munmap(map, map_size);
}

enum { SLAB_STACKS = 32 };

/* A new default-size stack from the current slab, mapping the next slab when it is used up. */
static coil__stack *carve_stack(coil__stackpool *p)
{
    coil__stackslab *sl = p->slabs;
    if (!sl || sl->carved == SLAB_STACKS) {
        sl = malloc(sizeof *sl);
        if (!sl)
            return NULL;
        sl->map = mmap(NULL, p->stride * SLAB_STACKS, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (sl->map == MAP_FAILED) {
            free(sl);
            return NULL;
        }
        sl->carved = 0;
        sl->next = p->slabs;
        p->slabs = sl;
    }
    unsigned char *guard = sl->map + sl->carved * p->stride;
    if (!install_guard(guard))
        return NULL;
    sl->carved++;
    p->bytes_mapped += p->stride;
    return stack_at(guard, p->stride, true);
}

static unsigned default_max_stacks(void)
{
    long max_map = 65530;
    FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
    if (f) {
        if (fscanf(f, "%ld", &max_map) != 1)
            max_map = 65530;
        fclose(f);
    }
    /* Two mappings per stack where guard pages split them; leave a quarter of the budget to the
     * rest of the process. */
    long n = max_map * 3 / 8;
    return n < 16 ? 16 : (unsigned)n;
}

int coil__stackpool_init(coil__stackpool *p, size_t default_size, size_t compact_size, unsigned max,
                         unsigned auto_max, unsigned keep)
{
    memset(p, 0, sizeof *p);
    p->default_size = default_size;
    p->keep = keep;
    p->max = max ? max : default_max_stacks();
    p->auto_max = auto_max < p->max ? auto_max : p->max;
    p->stride = round_up(default_size + sizeof(coil__stack), page_size()) + page_size();
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
        munmap(sl->map, p->stride * SLAB_STACKS);
        free(sl);
    }
    free(p->cold);
    p->cold = NULL;
    p->free = NULL;
    p->nfree = p->ncold = 0;
    if (p->shared)
        unmap_stack(p, p->shared);
    p->shared = NULL;
    for (unsigned i = 0; i < COIL__SAVE_CLASSES; i++)
        coil__pool_destroy(&p->save[i]);
}

bool coil__stack_available(const coil__stackpool *p) { return p->live < p->max; }

coil__stack *coil__stack_get(coil__stackpool *p, size_t size)
{
    coil__stack *s = NULL;
    if (p->live >= p->max)
        return NULL;
    if (size == 0 || size == p->default_size || size == p->pooled_size) {
        if ((s = p->free)) {
            p->free = s->next;
            p->nfree--;
        } else if (p->ncold) {
            s = p->cold[--p->ncold];
            s = stack_at((unsigned char *)s + sizeof *s - p->stride, p->stride, true);
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

bool coil__stackpool_trim(coil__stackpool *p, unsigned max)
{
    while (p->nfree > p->keep && max--) {
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
    return p->nfree > p->keep;
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
    coil__stack *s = !t ? NULL : (t->tflags & COIL__TF_COMPACT) ? loop->stacks.shared : t->stack;
    if (s && addr >= s->map && addr < s->map + page_size() * 2) {
        put_str("coil: stack overflow in task '");
        put_str(t->ext && t->ext->name ? t->ext->name : "(unnamed)");
        put_str("': it ran past the guard page of its ");
        put_num(s->size);
        put_str("-byte stack");
        put_str((t->tflags & COIL__TF_COMPACT) ? " (the loop's shared compact stack)" : "");
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

int coil__stack_thread_altstack(void)
{
    if (altstack_mem)
        return 0;
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE))
        return 0; /* the thread has one already */
    size_t size = 64 * 1024;
    void *m = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED)
        return -ENOMEM;
    stack_t ss = { .ss_sp = m, .ss_size = size, .ss_flags = 0 };
    if (sigaltstack(&ss, NULL) != 0) {
        munmap(m, size);
        return -errno;
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
    munmap(altstack_mem, 64 * 1024);
    altstack_mem = NULL;
}
