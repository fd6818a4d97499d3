#include "guest/mm/page_alloc.h"

#include "guest/lib/lib.h"

#include "guest/arch/hypercall.h"
#include "guest/arch/percpu.h"
#include "guest/arch/spinlock.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

constinit SpinLock lock;
constinit uint64_t next_pa = 0;  // bump pointer
constinit uint64_t end = 0;
// Freed pages form a FIFO list through their first word (which is therefore not poisoned).
constinit uint64_t free_head = 0;
constinit uint64_t free_tail = 0;

uint64_t BumpLocked() {
  if (next_pa >= end) return 0;
  uint64_t pa = next_pa;
  next_pa += x86::kPageSize;
  return pa;
}

}  // namespace

void PageAllocInit(uint64_t start_pa, uint64_t end_pa) {
  next_pa = start_pa;
  end = end_pa;
  guest_info->alloc_start_pa = start_pa;
  guest_info->alloc_end_pa = end_pa;
}

uint64_t BootAllocPage() {
  SpinLockGuard g(lock);
  uint64_t pa = BumpLocked();
  // Only the boot window is reachable before the direct map exists.
  GUEST_CHECK_VALUES(pa != 0 && pa + x86::kPageSize <= boot_params->boot_window_bytes, 2, pa,
                     boot_params->boot_window_bytes);
  ++guest_info->pages_allocated;
  return pa;  // RAM the guest never touched is zero (fresh anonymous host memory)
}

uint64_t AllocPage() {
  uint64_t pa;
  {
    SpinLockGuard g(lock);
    pa = free_head;
    if (pa != 0) {
      free_head = *static_cast<uint64_t*>(PhysToVirt(pa));
      if (free_head == 0) free_tail = 0;
    } else {
      pa = BumpLocked();
      if (pa == 0) return 0;
      ++guest_info->pages_allocated;
      return pa;
    }
    ++guest_info->pages_allocated;
  }
  // Not by the host (FillPhys): the page may become a page table, and a shadow-paging
  // hypervisor (kvm_pvm) tracks a page table's writes only when the guest makes them; the
  // host's would leave its shadow stale (ring 3 then reached pages munmap had removed).
  memset(PhysToVirt(pa), 0, x86::kPageSize);
  return pa;
}

uint64_t AllocContiguous(uint64_t pages) {
  SpinLockGuard g(lock);
  if (next_pa + pages * x86::kPageSize > end) return 0;
  uint64_t pa = next_pa;
  next_pa += pages * x86::kPageSize;
  guest_info->pages_allocated += pages;
  return pa;
}

void FreePage(uint64_t pa, uint64_t poison_bytes) {
  GUEST_CHECK_VALUES(pa != 0 && pa % x86::kPageSize == 0 && pa < end, 1, pa);
  auto* page = static_cast<uint64_t*>(PhysToVirt(pa));
  memset(page, kPagePoison, poison_bytes < x86::kPageSize ? poison_bytes : x86::kPageSize);
  page[0] = 0;  // the list link
  SpinLockGuard g(lock);
  if (free_tail != 0) {
    *static_cast<uint64_t*>(PhysToVirt(free_tail)) = pa;
  } else {
    free_head = pa;
  }
  free_tail = pa;
  ++guest_info->pages_freed;
}

}  // namespace activemm::guest
