// Segment descriptors and the IDT: each CPU's GDT and TSS, and the IDT all CPUs share.
#ifndef ACTIVEMM_GUEST_ARCH_DESCRIPTORS_H_
#define ACTIVEMM_GUEST_ARCH_DESCRIPTORS_H_

#include "guest/arch/percpu.h"

namespace activemm::guest {

// Fills the IDT with a gate for every one of the 256 vectors. CPU 0 calls it once, before the
// first checkpoint; the other CPUs load it after that checkpoint.
void BuildIdt();

// Builds and loads this CPU's GDT and TSS (IST1 = its double-fault stack), reloads the segment
// registers and sets GS_BASE to `cpu`.
void LoadCpuDescriptors(PerCpu* cpu);

// Loads the shared IDT on this CPU.
void LoadIdt();

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_ARCH_DESCRIPTORS_H_
