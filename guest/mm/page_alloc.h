// The physical page allocator over guest RAM: a bump pointer over never-used pages plus a free
// list of returned ones, both O(1) (no per-page initialisation, which would cost a
// microsecond per instruction where ring 0 is emulated, kvm_pvm). Freed pages are poisoned so a use
// after free reads an unmistakable pattern.
#ifndef ACTIVEMM_GUEST_MM_PAGE_ALLOC_H_
#define ACTIVEMM_GUEST_MM_PAGE_ALLOC_H_

#include <stdint.h>

#include "shared/abi.h"

namespace activemm::guest {

inline constexpr uint8_t kPagePoison = 0x6b;  // as Linux's POISON_FREE

// [start_pa, end_pa) page aligned. Called once by CPU 0.
void PageAllocInit(uint64_t start_pa, uint64_t end_pa);

// Before init_mm's page table is loaded only bump allocation through the boot window works
// (BootAllocPage); after it, AllocPage returns a zeroed page or 0 when memory is exhausted.
uint64_t BootAllocPage();
uint64_t AllocPage();
// `pages` physically contiguous never-used pages (kernel stacks); 0 when memory is exhausted.
uint64_t AllocContiguous(uint64_t pages);
// Returns a page to the allocator, poisoning its first `poison_bytes` bytes (all by default).
// Freed pages are reused first in, first out, so a stale reference to a just-freed page keeps
// reading poison for a while instead of someone else's fresh data.
void FreePage(uint64_t pa, uint64_t poison_bytes = 4096);

inline void* PhysToVirt(uint64_t pa) { return reinterpret_cast<void*>(pa + abi::kDirectMapBase); }

}  // namespace activemm::guest

#endif  // ACTIVEMM_GUEST_MM_PAGE_ALLOC_H_
