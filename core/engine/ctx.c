/* coil core: building a fresh context's first frame (the switch itself is assembly). */
#include <stdint.h>
#include <string.h>

#include "engine/ctx.h"

void coil__ctx_trampoline(void);

#if defined(COIL__ASAN)
__thread coil__fiber *coil__fiber_leaving;
#endif

void *coil__ctx_make(void *top, void (*entry)(void *, void *), void *a, void *b)
{
    uintptr_t t = (uintptr_t)top & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* Mirrors what coil__ctx_switch pops: fp control word slot, r15..r12, rbx, rbp, return. */
    uint64_t *sp = (uint64_t *)(t - 64);
    memset(sp, 0, 64);
    uint32_t mxcsr = 0x1f80;    /* the ABI's initial values: all exceptions masked, round nearest */
    uint16_t fcw = 0x037f;
    memcpy((char *)sp, &mxcsr, 4);
    memcpy((char *)sp + 4, &fcw, 2);
    sp[3] = (uint64_t)(uintptr_t)b;     /* r13 */
    sp[4] = (uint64_t)(uintptr_t)a;     /* r12 */
    sp[5] = (uint64_t)(uintptr_t)entry; /* rbx */
    sp[7] = (uint64_t)(uintptr_t)coil__ctx_trampoline;
    return sp;
#elif defined(__aarch64__)
    uint64_t *sp = (uint64_t *)(t - 160);
    memset(sp, 0, 160);
    sp[0] = (uint64_t)(uintptr_t)entry;                /* x19 */
    sp[1] = (uint64_t)(uintptr_t)a;                    /* x20 */
    sp[2] = (uint64_t)(uintptr_t)b;                    /* x21 */
    sp[11] = (uint64_t)(uintptr_t)coil__ctx_trampoline; /* x30 */
    return sp;
#else
#error "coil: no context switch for this CPU (x86-64 and aarch64 are supported)"
#endif
}
