/* Guest entry points: the image header, the boot entry of every CPU, the trap stubs for all 256
 * vectors, and the two halves of a ring-3 round trip. Everything else is C++. */
#include "guest/arch/asm_offsets.h"
#include "shared/abi_asm.h"

/* ---- Image header (shared/abi.h GuestImageHeader), checked by the host before loading ---- */
.section .header, "a"
.quad ACTIVEMM_IMAGE_MAGIC
.long ACTIVEMM_ABI_VERSION
.long 48
.quad ACTIVEMM_IMAGE_LOAD_PA
.quad __image_start
.quad _start
.quad __image_end

/* ---- Boot: every vCPU starts here in long mode, on the host's boot page table ----
 * rdi = cpu index, rsi = BootParams (virtual). The host leaves rsp undefined: the guest picks
 * its own boot stack from the cpu index, so the host needs to know nothing about the image. */
.section .text.entry, "ax"
.globl _start
_start:
    cli
    cld
    lea boot_stacks(%rip), %rsp
    mov %rdi, %rax
    inc %rax
    shl $14, %rax            /* (cpu + 1) * BOOT_STACK_SIZE */
    add %rax, %rsp
    xor %ebp, %ebp
    call guest_main          /* never returns */
1:  hlt
    jmp 1b

.section .bss
.balign 4096
.globl boot_stacks
boot_stacks:
    .skip 64 * BOOT_STACK_SIZE

/* ---- Trap stubs: 16 bytes each, vector n at trap_stubs + 16 * n ----
 * Each pushes a zero error code where the CPU pushes none (all but 8, 10-14, 17, 21, 29, 30),
 * then the vector, so trap_common sees one frame layout (guest/arch/traps.h TrapFrame). */
.text
.balign 16
.globl trap_stubs
trap_stubs:
vector = 0
.rept 256
    .balign 16
    .if (vector == 8) || (vector >= 10 && vector <= 14) || (vector == 17) || (vector == 21) || (vector == 29) || (vector == 30)
    .else
    pushq $0
    .endif
    pushq $vector
    jmp trap_common
    vector = vector + 1
.endr

/* The CPU aligned rsp to 16 before pushing its 5-word frame; with error code, vector and 15
 * registers the frame is 176 bytes, so rsp is 16-aligned again at the call, as the ABI wants. */
trap_common:
    push %rax
    push %rbx
    push %rcx
    push %rdx
    push %rsi
    push %rdi
    push %rbp
    push %r8
    push %r9
    push %r10
    push %r11
    push %r12
    push %r13
    push %r14
    push %r15
    cld
    mov %rsp, %rdi
    call trap_dispatch
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %r11
    pop %r10
    pop %r9
    pop %r8
    pop %rbp
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rcx
    pop %rbx
    pop %rax
    add $16, %rsp            /* vector and error code */
    iretq

/* ---- Two vectors with their own entry, because a scenario step takes them all the time and
 * every ring-0 instruction costs about a microsecond where ring 0 is emulated (kvm_pvm). The
 * IDT points them here (guest/arch/descriptors.cc); anything unusual goes on to trap_common. */

/* The kick (VEC_KICK): count it and end the interrupt; the CPU goes back to the step loop,
 * which looks at the program again. */
.globl kick_entry
kick_entry:
    push %rax
    /* Taken inside STI's shadow at SafeHaltThenCli's HLT (an emulator's quirk): trap_dispatch
     * moves the frame past the HLT and counts it, so the general path takes it from here. */
    lea safe_halt_hlt(%rip), %rax
    cmp %rax, 8(%rsp)                  /* the interrupted rip */
    je 1f
    mov %gs:PERCPU_KICKS_TAKEN, %rax
    test %rax, %rax
    jz 1f                              /* not the scenario program: the general path says so */
    lock incl (%rax)
    push %rcx
    push %rdx
    mov $MSR_X2APIC_EOI, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    pop %rdx
    pop %rcx
    pop %rax
    iretq
1:  pop %rax
    jmp trap_stubs + 16 * VEC_KICK

/* #UD (VEC_INVALID_OPCODE, no error code). From ring 3 it is how user code comes back to the
 * kernel (`ud2` with rax = kSysExitToKernel; no SYSCALL on the software hypervisor): nothing of
 * ring 3 is resumed after it, so no register needs saving. user_ud_trap checks the request
 * and calls resume_kernel; it returns only when the #UD is not one, and the general path
 * reports it (from the CPU's frame: the registers it clobbered are not reported). */
.globl ud_entry
ud_entry:
    testb $3, 8(%rsp)                  /* the frame's CS: from ring 3? */
    jz 1f
    mov %rsi, %rdx                     /* user_ud_trap(rax, rdi, rsi, frame) */
    mov %rdi, %rsi
    mov %rax, %rdi
    mov %rsp, %rcx
    sub $8, %rsp                       /* the CPU's 5-word frame left rsp 8 off 16 */
    cld
    call user_ud_trap
    add $8, %rsp
1:  jmp trap_stubs + 16 * VEC_INVALID_OPCODE

/* uint64_t enter_user(const UserEntry* e)  (guest/arch/user_mode.h)
 * Saves the kernel's callee-saved registers, records where to resume, points TSS.RSP0 just
 * below them and IRETs to ring 3 with e->rip, e->rsp and arguments e->rdi, e->rsi, e->rdx.
 * It "returns" when the ring-3 code traps back and the kernel calls resume_kernel(). RSP0 must
 * be below the saved registers: the trap that ends ring 3 pushes its frame at RSP0, and it
 * must not overwrite what resume_kernel pops. */
.globl enter_user
enter_user:
    push %rbx
    push %rbp
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, %gs:PERCPU_RESUME_RSP
    mov %rsp, %gs:PERCPU_TSS_RSP0
    pushq $0x1b              /* ss: user data, RPL 3 (x86::kUserDs) */
    pushq 8(%rdi)            /* rsp */
    pushq $0x202             /* rflags: IF, as user code runs in Linux */
    pushq $0x23              /* cs: 64-bit user code, RPL 3 (x86::kUserCs) */
    pushq 0(%rdi)            /* rip */
    mov 32(%rdi), %rdx
    mov 24(%rdi), %rsi
    mov 16(%rdi), %rdi
    /* No kernel value leaks to ring 3. */
    xor %eax, %eax
    xor %ebx, %ebx
    xor %ecx, %ecx
    xor %ebp, %ebp
    xor %r8d, %r8d
    xor %r9d, %r9d
    xor %r10d, %r10d
    xor %r11d, %r11d
    xor %r12d, %r12d
    xor %r13d, %r13d
    xor %r14d, %r14d
    xor %r15d, %r15d
    iretq

/* [[noreturn]] void resume_kernel(uint64_t result): back into enter_user's caller, which sees
 * `result` as enter_user's return value. Called from the trap handler, on the trap stack that
 * lies below the saved registers; that stack is simply abandoned. */
.globl resume_kernel
resume_kernel:
    mov %rdi, %rax
    mov %gs:PERCPU_RESUME_RSP, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbp
    pop %rbx
    ret

/* void __switch_to_asm(uint64_t* prev_sp, uint64_t next_sp)  (arch/x86/entry/entry_64.S)
 * Saves the callee-saved registers on prev's kernel stack, records prev's stack pointer,
 * switches to next's stack and restores next's registers. The `ret` returns into whatever
 * next was doing when it was switched out: its own earlier __switch_to_asm call, or
 * ret_from_fork_asm for a task that never ran. */
.globl __switch_to_asm
__switch_to_asm:
    push %rbp
    push %rbx
    push %r12
    push %r13
    push %r14
    push %r15
    mov %rsp, (%rdi)
    mov %rsi, %rsp
    pop %r15
    pop %r14
    pop %r13
    pop %r12
    pop %rbx
    pop %rbp
    ret

/* The first "return" of a new task (task_create builds its stack so that the pops of
 * __switch_to_asm land here). The stack is 16-byte aligned at this point. */
.globl ret_from_fork_asm
ret_from_fork_asm:
    xor %ebp, %ebp
    call ret_from_fork
1:  hlt
    jmp 1b

/* ---- sti; hlt; cli (guest/arch/cpu.h SafeHaltThenCli): one HLT at a known address, so that an
 * interrupt an emulator delivers inside STI's shadow resumes after it (trap_dispatch). ---- */
.section .text, "ax"
.globl safe_halt_then_cli
safe_halt_then_cli:
    sti
.globl safe_halt_hlt
safe_halt_hlt:
    hlt
    cli
    ret
