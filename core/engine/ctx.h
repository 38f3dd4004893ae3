/* coil core: the context switch. A context is just a saved stack pointer: the switch pushes the
 * callee-saved registers on the current stack, stores sp, loads the other sp and pops. Nothing
 * else is saved (no signal mask, no syscall). Implementations: ctx_x86_64.S, ctx_aarch64.S.
 *
 * Sanitizers must be told about stack switches, or ASan reports false stack overflows and TSan
 * mixes up happens-before between tasks; the coil__fiber helpers below do that and compile to
 * nothing in normal builds. */
#ifndef COIL_CORE_CTX_H
#define COIL_CORE_CTX_H

#include <stddef.h>

/* Save the current context into *save_sp and resume the one at to_sp. Returns when some later
 * switch resumes *save_sp. */
void coil__ctx_switch(void **save_sp, void *to_sp);
/* Prepare a fresh context on the stack whose top is `top`: the first switch to the returned sp
 * calls entry(a, b), which must never return. */
void *coil__ctx_make(void *top, void (*entry)(void *, void *), void *a, void *b);

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL__ASAN 1
#endif
#if __has_feature(thread_sanitizer)
#define COIL__TSAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define COIL__ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
#define COIL__TSAN 1
#endif

typedef struct coil__fiber {
    void *tsan;            /* TSan's fiber handle */
    const void *bottom;    /* ASan: the stack this context runs on */
    size_t size;
} coil__fiber;

#if defined(COIL__ASAN)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(COIL__TSAN)
#include <sanitizer/tsan_interface.h>
#endif

#if defined(COIL__ASAN)
/* The context this thread is switching away from. A task's stack is known from the start; the
 * scheduler's is whatever stack called the loop, which ASan reports to the context that lands
 * after the scheduler's first switch of a run: that context records it in the scheduler's
 * fiber, and nothing else is ever overwritten (a context landing does not know who left, so
 * what ASan reports must never go into the lander's own record). */
extern __thread coil__fiber *coil__fiber_leaving;

static inline void coil__fiber_landed(void *fake)
{
    const void *bottom = NULL;
    size_t size = 0;
    __sanitizer_finish_switch_fiber(fake, &bottom, &size);
    coil__fiber *left = coil__fiber_leaving;
    if (left && !left->bottom) {
        left->bottom = bottom;
        left->size = size;
    }
}
#endif

/* Switch from the current context to `to`. `from_dying` means the current context never runs
 * again (a finished task), so ASan may drop its fake stack. */
static inline void coil__fiber_switch(void **save_sp, void *to_sp, coil__fiber *from, const coil__fiber *to,
                                      int from_dying)
{
    (void)from;
    (void)to;
    (void)from_dying;
#if defined(COIL__TSAN)
    __tsan_switch_to_fiber(to->tsan, 0);
#endif
#if defined(COIL__ASAN)
    void *fake = NULL;
    coil__fiber_leaving = from;
    __sanitizer_start_switch_fiber(from_dying ? NULL : &fake, to->bottom, to->size);
    coil__ctx_switch(save_sp, to_sp);
    coil__fiber_landed(fake);
#else
    coil__ctx_switch(save_sp, to_sp);
#endif
}

/* First thing a fresh context does. */
static inline void coil__fiber_started(void)
{
#if defined(COIL__ASAN)
    coil__fiber_landed(NULL);
#endif
}

static inline void coil__fiber_create(coil__fiber *f, const void *bottom, size_t size)
{
    f->bottom = bottom;
    f->size = size;
#if defined(COIL__TSAN)
    f->tsan = __tsan_create_fiber(0);
#else
    f->tsan = NULL;
#endif
}

static inline void coil__fiber_destroy(coil__fiber *f)
{
#if defined(COIL__TSAN)
    if (f->tsan)
        __tsan_destroy_fiber(f->tsan);
#endif
    f->tsan = NULL;
}

static inline void coil__fiber_current(coil__fiber *f)
{
#if defined(COIL__TSAN)
    f->tsan = __tsan_get_current_fiber();
#else
    f->tsan = NULL;
#endif
    f->bottom = NULL;
    f->size = 0;
}

#endif
