/* AArch64 (AAPCS64) context switch: callee-saved x19-x28, fp, lr and d8-d15. See ctx.h. */
#if defined(__aarch64__)
    .text
    .globl  coil__ctx_switch
    .hidden coil__ctx_switch
    .type   coil__ctx_switch, %function
    .p2align 4
coil__ctx_switch:
    sub     sp, sp, #160
    stp     x19, x20, [sp, #0]
    stp     x21, x22, [sp, #16]
    stp     x23, x24, [sp, #32]
    stp     x25, x26, [sp, #48]
    stp     x27, x28, [sp, #64]
    stp     x29, x30, [sp, #80]
    stp     d8, d9, [sp, #96]
    stp     d10, d11, [sp, #112]
    stp     d12, d13, [sp, #128]
    stp     d14, d15, [sp, #144]
    mov     x2, sp
    str     x2, [x0]
    mov     sp, x1
    ldp     x19, x20, [sp, #0]
    ldp     x21, x22, [sp, #16]
    ldp     x23, x24, [sp, #32]
    ldp     x25, x26, [sp, #48]
    ldp     x27, x28, [sp, #64]
    ldp     x29, x30, [sp, #80]
    ldp     d8, d9, [sp, #96]
    ldp     d10, d11, [sp, #112]
    ldp     d12, d13, [sp, #128]
    ldp     d14, d15, [sp, #144]
    add     sp, sp, #160
    ret
    .size   coil__ctx_switch, .-coil__ctx_switch

/* A fresh context lands here with the entry function in x19 and its arguments in x20, x21. */
    .globl  coil__ctx_trampoline
    .hidden coil__ctx_trampoline
    .type   coil__ctx_trampoline, %function
    .p2align 4
coil__ctx_trampoline:
    mov     x29, #0
    mov     x0, x20
    mov     x1, x21
    blr     x19
    brk     #0
    .size   coil__ctx_trampoline, .-coil__ctx_trampoline
#endif
    .section .note.GNU-stack,"",%progbits
