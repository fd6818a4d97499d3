#include "guest/page_alloc.h"

#include "guest/lib.h"

#include "guest/hypercall.h"
#include "guest/percpu.h"
#include "guest/spinlock.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

constinit SpinLock lock;
constinit uint64_t next_pa = 0;  // bump pointer
constinit uint64_t end = 0;
constinit uint64_t free_list = 0;  // pa of the first free page; its first word links the next

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
    pa = free_list;
    if (pa != 0) {
      free_list = *static_cast<uint64_t*>(PhysToVirt(pa));
    } else {
      pa = BumpLocked();
      if (pa == 0) return 0;
      ++guest_info->pages_allocated;
      return pa;
    }
    ++guest_info->pages_allocated;
  }
  memset(PhysToVirt(pa), 0, x86::kPageSize);
  return pa;
}

void FreePage(uint64_t pa) {
  GUEST_CHECK_VALUES(pa != 0 && pa % x86::kPageSize == 0 && pa < end, 1, pa);
  void* page = PhysToVirt(pa);
  memset(page, kPagePoison, x86::kPageSize);
  SpinLockGuard g(lock);
  *static_cast<uint64_t*>(page) = free_list;
  free_list = pa;
  ++guest_info->pages_freed;
}

}  // namespace activemm::guest
