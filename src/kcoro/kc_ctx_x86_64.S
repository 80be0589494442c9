/* kcoro context switch, x86-64 System V.
 *
 * void kc__ctx_switch(void **save_sp, void *new_sp)
 *   Pushes the callee-saved registers (rbp, rbx, r12-r15) and the FP control
 *   words (MXCSR, x87 control word: both callee-saved by the ABI) on the
 *   current stack, stores the stack pointer in *save_sp, loads new_sp and
 *   pops the same frame from it. Caller-saved registers need no saving: the
 *   switch is an ordinary call for the compiler.
 *
 * Frame at the saved sp (low to high):
 *   +0 mxcsr (4) +4 x87 cw (2, padded)  +8 r15 +16 r14 +24 r13 +32 r12
 *   +40 rbx +48 rbp +56 return address
 * A new context (kc_sched.c) is this frame with r12 = argument, r13 = entry
 * function and the return address kc__ctx_trampoline.
 */
#if defined(__x86_64__)
    .text
    .globl  kc__ctx_switch
    .hidden kc__ctx_switch
    .type   kc__ctx_switch, @function
    .p2align 4
kc__ctx_switch:
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
    movl    (%rsp), %eax
    movzwl  4(%rsp), %ecx
    movq    %rsp, (%rdi)
    movq    %rsi, %rsp
    /* Loading MXCSR and the x87 control word costs more than comparing:
     * almost every context runs with the same words, so load only what
     * differs (rax, rcx are caller-saved: free to use). */
    cmpl    (%rsp), %eax
    jne     1f
2:  cmpw    4(%rsp), %cx
    jne     3f
4:  addq    $8, %rsp
    popq    %r15
    popq    %r14
    popq    %r13
    popq    %r12
    popq    %rbx
    popq    %rbp
    ret
1:  ldmxcsr (%rsp)
    jmp     2b
3:  fldcw   4(%rsp)
    jmp     4b
    .cfi_endproc
    .size   kc__ctx_switch, .-kc__ctx_switch

/* First code of a new context: calls r13(r12). The entry function never
 * returns (it switches away for good); ud2 catches a bug if it does. */
    .globl  kc__ctx_trampoline
    .hidden kc__ctx_trampoline
    .type   kc__ctx_trampoline, @function
    .p2align 4
kc__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined rip
    movq    %r12, %rdi
    callq   *%r13
    ud2
    .cfi_endproc
    .size   kc__ctx_trampoline, .-kc__ctx_trampoline
    .section .note.GNU-stack,"",@progbits
#else
    .section .note.GNU-stack,"",%progbits
#endif
