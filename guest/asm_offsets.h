// Offsets into PerCpu used by assembly (entry.S). percpu.h static_asserts each against the struct.
#ifndef ACTIVEMM_GUEST_ASM_OFFSETS_H_
#define ACTIVEMM_GUEST_ASM_OFFSETS_H_

#define PERCPU_SELF 0
#define PERCPU_RESUME_RSP 8
#define PERCPU_TSS_RSP0 20 /* PerCpu::tss (offset 16) + Tss::rsp0 (offset 4) */

#define BOOT_STACK_SIZE 16384

#endif  // ACTIVEMM_GUEST_ASM_OFFSETS_H_
