// init_mm's page table (the guest's swapper_pg_dir): the direct map of all RAM and the kernel
// image, built by CPU 0 on the host's minimal boot mapping. Every later address space shares
// its kernel half (PML4 entries 256..511) by copying those top-level entries, as Linux's
// pgd_alloc() / clone_pgd_range() does, so kernel mappings are the same in every mm.
#ifndef ACTIVEMM_GUEST_MM_KERNEL_MAP_H_
#define ACTIVEMM_GUEST_MM_KERNEL_MAP_H_

#include <stdint.h>

#include "guest/mm/page_alloc.h"
#include "shared/page_table.h"

namespace activemm::guest {

// Reaches table pages through the direct map; valid once init_mm's page table is loaded.
struct DirectMapMem {
  uint64_t* Table(uint64_t pa) { return static_cast<uint64_t*>(PhysToVirt(pa)); }
  uint64_t AllocTable() { return AllocPage(); }
};

// Builds init_mm's page table and returns its root. CPU 0 only, before any CPU loads it.
uint64_t BuildSwapperPgd(uint64_t mem_bytes, uint64_t image_end_pa);

// A new top-level table whose kernel half is init_mm's; 0 when out of memory.
uint64_t AllocPgdWithKernelHalf(uint64_t swapper_pgd_pa);

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_MM_KERNEL_MAP_H_
