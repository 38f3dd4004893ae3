/* x86-64 System V context switch: callee-saved rbx, rbp, r12-r15 and the MXCSR / x87 control
 * words (their control bits are callee-saved too). See ctx.h. */
#if defined(__x86_64__)
    .text
    .globl  coil__ctx_switch
    .hidden coil__ctx_switch
    .type   coil__ctx_switch, @function
    .p2align 4
coil__ctx_switch:
    .cfi_startproc
    pushq   %rbp
    pushq   %rbx
    pushq   %r12
    pushq   %r13
    pushq   %r14
    pushq   %r15
    subq    $8, %rsp
    stmxcsr (%rsp)
    fnstcw  4(%rsp)
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    ldmxcsr (%rsp)
    fldcw   4(%rsp)
    addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
    .cfi_endproc
    .size   coil__ctx_switch, .-coil__ctx_switch

/* A fresh context lands here with the entry function in rbx and its arguments in r12, r13. */
    .globl  coil__ctx_trampoline
    .hidden coil__ctx_trampoline
    .type   coil__ctx_trampoline, @function
    .p2align 4
coil__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    movq    %r13, %rsi
    callq   *%rbx
    ud2
    .cfi_endproc
    .size   coil__ctx_trampoline, .-coil__ctx_trampoline
#endif
    .section .note.GNU-stack,"",@progbits
