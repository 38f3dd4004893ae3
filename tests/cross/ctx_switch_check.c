/* Standalone check of coil's context switch on AArch64: ping-pong between two contexts,
 * callee-saved registers (general and FP) survive, a fresh context gets its two arguments. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include "engine/ctx.h"
static void *main_sp, *co_sp;
static long counter;
static void entry(void *a, void *b) {
    long k = (long)(intptr_t)a + (long)(intptr_t)b;   /* 40 + 2 */
    double acc = 0.5;
    for (int i = 0; i < 1000; i++) { counter += k; acc *= 1.0001; coil__ctx_switch(&co_sp, main_sp); }
    printf("co: acc %.6f\n", acc);
    coil__ctx_switch(&co_sp, main_sp);
    abort();
}
int main(void) {
    static char stack[65536] __attribute__((aligned(16)));
    co_sp = coil__ctx_make(stack + sizeof stack, entry, (void *)40, (void *)2);
    register double keep = 3.25; volatile long local = 7;
    for (int i = 0; i < 1000; i++) { coil__ctx_switch(&main_sp, co_sp); keep += 1.0; }
    coil__ctx_switch(&main_sp, co_sp);
    printf("counter %ld (want 42000) keep %.2f (want 1003.25) local %ld\n", counter, keep, (long)local);
    return counter == 42000 && keep == 1003.25 ? 0 : 1;
}
