/* Ring-3 code. It lives in .user_text, on pages of its own that user page tables map with U=1
 * and read-only; it runs natively even where ring 0 is emulated, so heavy page touching happens
 * here. It returns to the kernel with `ud2` (rax = request, rdi/rsi = values): the CI machines'
 * hypervisor supports neither SYSCALL nor INT n from ring 3 (docs/architecture.md). */
#define SYS_EXIT_TO_KERNEL 0 /* guest/user_mode.h kSysExitToKernel */

.section .user_text, "ax"

/* user_selftest(rdi = first data page va, rsi = pages, rdx = seed)
 * Writes seed ^ va into every 8-byte word of every page, then reads all of it back.
 * Returns rdi = sum of the words read, rsi = words that read back wrong. */
.globl user_selftest
user_selftest:
    mov %rsi, %rcx
    shl $12, %rcx
    add %rdi, %rcx           /* rcx = end */
    mov %rdi, %r8
1:  mov %r8, %rax
    xor %rdx, %rax
    mov %rax, (%r8)
    add $8, %r8
    cmp %rcx, %r8
    jb 1b
    xor %r9, %r9             /* sum */
    xor %r10, %r10           /* errors */
    mov %rdi, %r8
2:  mov (%r8), %rax
    add %rax, %r9
    mov %r8, %r11
    xor %rdx, %r11
    cmp %r11, %rax
    je 3f
    inc %r10
3:  add $8, %r8
    cmp %rcx, %r8
    jb 2b
    mov %r9, %rdi
    mov %r10, %rsi
    mov $SYS_EXIT_TO_KERNEL, %eax
    ud2

/* user_fault(rdi = first data page va): writes to the page below it, which is never mapped. */
.globl user_fault
user_fault:
    movq $1, -8(%rdi)
    mov $SYS_EXIT_TO_KERNEL, %eax
    ud2
