// Offsets into PerCpu used by assembly (entry.S). percpu.h static_asserts each against the struct.
#ifndef ACTIVEMM_GUEST_ARCH_ASM_OFFSETS_H_
#define ACTIVEMM_GUEST_ARCH_ASM_OFFSETS_H_

#define PERCPU_SELF 0
#define PERCPU_RESUME_RSP 8
#define PERCPU_TSS_RSP0 20 /* PerCpu::tss (offset 16) + Tss::rsp0 (offset 4) */

#define PERCPU_KICKS_TAKEN 192 /* PerCpu::kicks_taken */

#define BOOT_STACK_SIZE 16384

/* Vectors entry.S gives their own entry points (guest/arch/traps.h defines its constants from
 * these). */
#define VEC_INVALID_OPCODE 6
#define VEC_KICK 0xf1
#define MSR_X2APIC_EOI 0x80b

#endif  // ACTIVEMM_GUEST_ARCH_ASM_OFFSETS_H_
