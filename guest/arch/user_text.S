/* Ring-3 code. It lives in .user_text, on pages of its own that user page tables map with U=1
 * and read-only; it runs natively even where ring 0 is emulated, so heavy page touching happens
 * here. It returns to the kernel with `ud2` (rax = request, rdi/rsi = values): the software
 * hypervisor (kvm_pvm) supports neither SYSCALL nor INT n from ring 3 (docs/architecture.md). */
#define SYS_EXIT_TO_KERNEL 0 /* guest/arch/user_mode.h kSysExitToKernel */

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

/* user_burst(rdi = the control page, abi::UserControl at kUserCtlVa)
 * For each work item (abi::UserWork, 32 bytes from offset 64):
 *   kind 1: every word must read expect_tag ^ va (0 when expect_tag is 0, a fresh page);
 *           then every word is rewritten as new_tag ^ va.
 *   kind 2: verified the same way, then a write must fault (read-only page).
 *   kind 3: a read must fault (unmapped page).
 * Counts into the control page: bad_words (+8), missing_faults (+16), and the first bad word's
 * va (+24) and value (+32). The probe instructions are known to the kernel's #PF handler
 * (guest/programs/user_burst.cc): on a fault there it sets r11 = 1 and resumes after the probe. */
.globl user_burst, user_probe_read, user_probe_read_resume
.globl user_probe_write, user_probe_write_resume
user_burst:
    mov %rdi, %r12
    mov (%r12), %r13          /* num_work */
    lea 64(%r12), %r14        /* &work[0] */
    xor %r15d, %r15d
next_work:
    cmp %r13, %r15
    jae burst_done
    mov (%r14), %rsi          /* va */
    mov 8(%r14), %rdx         /* expect_tag */
    mov 16(%r14), %rcx        /* new_tag */
    mov 24(%r14), %ebx        /* kind */
    cmp $3, %ebx
    je must_fault
    xor %r8d, %r8d
verify_word:
    lea (%rsi,%r8), %r9
    mov (%r9), %r10
    xor %r11d, %r11d
    test %rdx, %rdx
    jz 1f
    mov %rdx, %r11
    xor %r9, %r11             /* expected = tag ^ va */
1:  cmp %r11, %r10
    je 2f
    cmpq $0, 8(%r12)
    jne 3f
    mov %r9, 24(%r12)
    mov %r10, 32(%r12)
3:  incq 8(%r12)
2:  add $8, %r8
    cmp $4096, %r8
    jb verify_word
    cmp $2, %ebx
    je write_probe
    xor %r8d, %r8d
rewrite_word:
    lea (%rsi,%r8), %r9
    mov %rcx, %r10
    xor %r9, %r10
    mov %r10, (%r9)
    add $8, %r8
    cmp $4096, %r8
    jb rewrite_word
    jmp advance
write_probe:
    xor %r11d, %r11d
    mov %rsi, %rax
    mov (%rax), %r10          /* write back what is there: harmless if it wrongly succeeds */
user_probe_write:
    mov %r10, (%rax)
user_probe_write_resume:
    test %r11, %r11
    jnz advance
    incq 16(%r12)
    jmp advance
must_fault:
    xor %r11d, %r11d
    mov %rsi, %rax
user_probe_read:
    mov (%rax), %r10
user_probe_read_resume:
    test %r11, %r11
    jnz advance
    incq 16(%r12)
advance:
    add $32, %r14
    inc %r15
    jmp next_work
burst_done:
    mov $SYS_EXIT_TO_KERNEL, %eax
    ud2
