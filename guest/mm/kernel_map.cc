#include "guest/mm/kernel_map.h"

#include "guest/arch/hypercall.h"
#include "shared/abi.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

// Reaches table pages through the host's boot window (physical 0 .. image end + scratch mapped
// at the kernel text base); used only while init_mm's page table is being built.
struct BootWindowMem {
  uint64_t* Table(uint64_t pa) { return reinterpret_cast<uint64_t*>(pa + abi::kKernelTextBase); }
  uint64_t AllocTable() { return BootAllocPage(); }
};

}  // namespace

uint64_t BuildSwapperPgd(uint64_t mem_bytes, uint64_t image_end_pa) {
  BootWindowMem mem;
  uint64_t root = BootAllocPage();
  GUEST_CHECK(root != 0);
  PageTable<BootWindowMem> pt(mem, root);
  constexpr uint64_t kData = x86::Pte::kWritable | x86::Pte::kNoExecute;
  for (uint64_t pa = 0; pa < mem_bytes; pa += x86::kHugePageSize) {
    PtStatus s = pt.Map(abi::kDirectMapBase + pa, pa, kData, x86::kHugePageSize);
    GUEST_CHECK_VALUES(s == PtStatus::kOk, 2, pa, static_cast<uint64_t>(s));
  }
  // The image window is writable and executable as one region: .data and .bss share 2 MiB
  // pages with .text, and nothing here defends against the guest's own code.
  for (uint64_t pa = 0; pa < image_end_pa; pa += x86::kHugePageSize) {
    PtStatus s = pt.Map(abi::kKernelTextBase + pa, pa, x86::Pte::kWritable, x86::kHugePageSize);
    GUEST_CHECK_VALUES(s == PtStatus::kOk, 2, pa, static_cast<uint64_t>(s));
  }
  return root;
}

uint64_t AllocPgdWithKernelHalf(uint64_t swapper_pgd_pa) {
  // init_mm's kernel half uses only a few of its 256 top-level entries (direct map, image) and
  // never changes after boot, so those are found once and copied alone: a loop over all 256
  // costs over a thousand emulated instructions on every mm creation where ring 0 is emulated
  // (kvm_pvm). The rest of a fresh page is already zero.
  static constinit int present[abi::kFirstKernelPml4Index] = {};
  static constinit int num_present = -1;
  const auto* src = static_cast<const uint64_t*>(PhysToVirt(swapper_pgd_pa));
  if (__atomic_load_n(&num_present, __ATOMIC_ACQUIRE) < 0) {
    int n = 0;
    for (int i = abi::kFirstKernelPml4Index; i < x86::kEntriesPerTable; ++i) {
      if (src[i] != 0) present[n++] = i;
    }
    __atomic_store_n(&num_present, n, __ATOMIC_RELEASE);  // idempotent if CPUs race here
  }
  uint64_t pgd = AllocPage();
  if (pgd == 0) return 0;
  auto* dst = static_cast<uint64_t*>(PhysToVirt(pgd));
  for (int k = 0; k < num_present; ++k) dst[present[k]] = src[present[k]];
  return pgd;
}

}  // namespace activemm::guest
