/* kcoro context switch, aarch64 AAPCS64.
 *
 * void kc__ctx_switch(void **save_sp, void *new_sp)
 *   Saves the callee-saved registers x19-x28, the frame pointer x29, the
 *   link register x30, the low halves d8-d15 of v8-v15 and FPCR (rounding
 *   mode and flush-to-zero: preserved across calls by the ABI) in a 176-byte
 *   frame on the current stack, stores sp in *save_sp, loads new_sp and
 *   restores the same frame from it, returning through x30.
 *
 * Frame at the saved sp: +0 x19..x28 (80) +80 x29 +88 x30 +96 d8..d15 (64)
 *   +160 fpcr +168 pad.
 * A new context (kc_sched.c) is this frame with x19 = argument, x20 = entry
 * function, x30 = kc__ctx_trampoline.
 */
#if defined(__aarch64__)
    .text
    .globl  kc__ctx_switch
    .hidden kc__ctx_switch
    .type   kc__ctx_switch, %function
    .p2align 4
kc__ctx_switch:
    .cfi_startproc
    sub     sp, sp, #176
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
    mrs     x9, fpcr
    str     x9, [sp, #160]
    mov     x9, sp
    str     x9, [x0]
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
    ldr     x9, [sp, #160]
    msr     fpcr, x9
    add     sp, sp, #176
    ret
    .cfi_endproc
    .size   kc__ctx_switch, .-kc__ctx_switch

/* First code of a new context: calls x20(x19); never returns. */
    .globl  kc__ctx_trampoline
    .hidden kc__ctx_trampoline
    .type   kc__ctx_trampoline, %function
    .p2align 4
kc__ctx_trampoline:
    .cfi_startproc
    .cfi_undefined x30
    mov     x0, x19
    blr     x20
    brk     #0
    .cfi_endproc
    .size   kc__ctx_trampoline, .-kc__ctx_trampoline
#endif
    .section .note.GNU-stack,"",%progbits
