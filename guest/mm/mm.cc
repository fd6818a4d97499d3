// mm_struct life cycle (kernel/fork.c: mm_alloc, dup_mm, __mmput, __mmdrop;
// include/linux/sched/mm.h: mmgrab, mmdrop, mmget, mmput and the lazy-TLB variants) and the
// user mappings of an mm on its real page table.
#include "guest/arch/hypercall.h"
#include "guest/arch/user_mode.h"
#include "guest/kernel/model.h"
#include "guest/lib/lib.h"
#include "guest/mm/kernel_map.h"
#include "shared/page_table.h"
#include "shared/x86.h"

namespace activemm::guest {

constinit ModelConfig model;
constinit abi::MmSlot mm_slots[abi::kMaxMms] = {};

namespace {

using x86::Pte;

constexpr uint64_t kUserText = Pte::kUser;  // read-only, executable
constexpr uint64_t kUserRw = Pte::kUser | Pte::kWritable | Pte::kNoExecute;
constexpr uint64_t kUserRo = Pte::kUser | Pte::kNoExecute;

// mm->context.ctx_id: unique for ever (init_mm has 1, as last_mm_ctx_id starts there).
constinit uint64_t last_ctx_id = 1;

uint64_t DataVa(uint32_t i) { return abi::kUserDataVa + uint64_t{i} * x86::kPageSize; }

// Table pages of an mm's user half come from the page allocator and are recorded in the mm.
struct MmTableMem {
  MmStruct* mm;
  uint64_t* Table(uint64_t pa) { return static_cast<uint64_t*>(PhysToVirt(pa)); }
  uint64_t AllocTable() {
    GUEST_CHECK_VALUES(mm->nr_tables < abi::kMaxMmTables, 1, uint64_t{mm->nr_tables});
    uint64_t pa = AllocPage();
    if (pa != 0) mm->tables[mm->nr_tables++] = pa;
    return pa;
  }
};

struct MmTables {
  MmTableMem mem;
  PageTable<MmTableMem> pt;
  explicit MmTables(MmStruct* mm) : mem{mm}, pt(mem, mm->pgd_pa) {}
};

void MapOrPanic(MmStruct* mm, uint64_t va, uint64_t pa, uint64_t flags) {
  MmTables t(mm);
  PtStatus s = t.pt.Map(va, pa, flags);
  GUEST_CHECK_VALUES(s == PtStatus::kOk, 2, va, static_cast<uint64_t>(s));
}

uint64_t AllocPageOrPanic() {
  uint64_t pa = AllocPage();
  GUEST_CHECK(pa != 0);
  return pa;
}

// A new mm_struct in slot `slot` with its page table, user text, control page and stack.
MmStruct* NewMm(int32_t slot) {
  GUEST_CHECK_VALUES(slot > abi::kInitMm && slot < static_cast<int32_t>(abi::kMaxMms) &&
                         mm_slots[slot].state == static_cast<uint32_t>(abi::SlotState::kUnused),
                     1, static_cast<uint64_t>(slot));
  uint64_t page = AllocPageOrPanic();
  auto* mm = static_cast<MmStruct*>(PhysToVirt(page));
  mm->magic = abi::kMmMagic;
  mm->mm_users = 1;
  mm->mm_count = 1;
  mm->pgd_pa = AllocPgdWithKernelHalf(guest_info->swapper_pgd_pa);
  GUEST_CHECK(mm->pgd_pa != 0);
  mm->ctx_id = __atomic_add_fetch(&last_ctx_id, 1, __ATOMIC_RELAXED);
  mm->tlb_gen = 0;  // init_new_context()
  mm->cpumask = 0;
  mm->nr_pages = 0;
  mm->generation = 0;
  mm->nr_tables = 0;
  uint64_t text_pa = reinterpret_cast<uint64_t>(__user_text_start) - abi::kKernelTextBase;
  uint64_t text_size = static_cast<uint64_t>(__user_text_end - __user_text_start);
  for (uint64_t off = 0; off < text_size; off += x86::kPageSize) {
    MapOrPanic(mm, abi::kUserTextVa + off, text_pa + off, kUserText);
  }
  mm->ctl_pa = AllocPageOrPanic();
  MapOrPanic(mm, abi::kUserCtlVa, mm->ctl_pa, kUserRw);
  mm->stack_pa = AllocPageOrPanic();
  MapOrPanic(mm, abi::kUserStackTopVa - x86::kPageSize, mm->stack_pa, kUserRw);
  mm_slots[slot].pa = page;
  // Published last: the host reads only live slots.
  __atomic_store_n(&mm_slots[slot].state, static_cast<uint32_t>(abi::SlotState::kLive),
                   __ATOMIC_RELEASE);
  return mm;
}

abi::UserPage& AddPage(MmStruct* mm, uint64_t pa, uint64_t tag, uint32_t prot) {
  GUEST_CHECK_VALUES(mm->nr_pages < abi::kMaxUserPages, 1, uint64_t{mm->nr_pages});
  abi::UserPage& p = mm->pages[mm->nr_pages];
  p.va = DataVa(mm->nr_pages);
  p.pa = pa;
  p.tag = tag;
  p.state = static_cast<uint32_t>(abi::PageState::kMapped);
  p.prot = prot;
  ++mm->nr_pages;
  MapOrPanic(mm, p.va, pa, prot & abi::kPageWritable ? kUserRw : kUserRo);
  return p;
}

bool Mapped(const abi::UserPage& p) {
  return p.state == static_cast<uint32_t>(abi::PageState::kMapped);
}

// __mmput -> exit_mmap: tear down the user address space. The order is Linux's mmu_gather:
// detach the user half, flush every CPU that may hold translations or cached walks of it
// (freed_tables: lazy CPUs included, they leave the mm), and only then free the pages. Freed
// first, a page-table page could be reused while another CPU's walker still read it.
void exit_mmap(int32_t slot) {
  MmStruct* mm = Mm(slot);
  memset(PhysToVirt(mm->pgd_pa), 0, abi::kFirstKernelPml4Index * sizeof(uint64_t));
  flush_tlb_mm(slot);
  for (uint32_t i = 0; i < mm->nr_tables; ++i) FreePage(mm->tables[i]);
  mm->nr_tables = 0;
  for (uint32_t i = 0; i < mm->nr_pages; ++i) {
    if (Mapped(mm->pages[i])) FreePage(mm->pages[i].pa);
  }
  mm->nr_pages = 0;
  FreePage(mm->ctl_pa);
  FreePage(mm->stack_pa);
  mm->ctl_pa = 0;
  mm->stack_pa = 0;
}

// __mmdrop: the pgd and the mm_struct go back to the allocator, poisoned. The pgd keeps its
// kernel half: a CPU that wrongly still has this mm loaded (a refcount bug) keeps running, so
// the host's verifier can report the use after free by rule instead of the guest dying.
void __mmdrop(int32_t slot) {
  GUEST_CHECK_VALUES(slot != abi::kInitMm, 1, static_cast<uint64_t>(slot));
  MmStruct* mm = Mm(slot);
  if (model.lazy == abi::LazyMode::kShootdown) cleanup_lazy_tlbs(slot);
  __atomic_store_n(&mm_slots[slot].state, static_cast<uint32_t>(abi::SlotState::kFreed),
                   __ATOMIC_RELEASE);
  FreePage(mm->pgd_pa, x86::kPageSize / 2);
  FreePage(mm_slots[slot].pa);
}

}  // namespace

void init_mm_setup() {
  uint64_t page = AllocPageOrPanic();
  auto* mm = static_cast<MmStruct*>(PhysToVirt(page));
  mm->magic = abi::kMmMagic;
  mm->mm_users = 1;
  mm->mm_count = 1;
  mm->pgd_pa = guest_info->swapper_pgd_pa;
  mm->ctx_id = 1;
  mm_slots[abi::kInitMm].pa = page;
  mm_slots[abi::kInitMm].state = static_cast<uint32_t>(abi::SlotState::kLive);
}

void mm_alloc(int32_t slot, uint32_t pages) {
  MmStruct* mm = NewMm(slot);
  // Fresh pages are zero: tag 0 tells ring 3 to expect zeroes.
  for (uint32_t i = 0; i < pages; ++i) AddPage(mm, AllocPageOrPanic(), 0, abi::kPageWritable);
}

void dup_mm(int32_t slot, int32_t old_slot) {
  MmStruct* mm = NewMm(slot);
  const MmStruct* old = Mm(old_slot);
  for (uint32_t i = 0; i < old->nr_pages; ++i) {
    const abi::UserPage& src = old->pages[i];
    if (!Mapped(src)) {
      // An unmapped hole stays a hole: the child must fault there too.
      abi::UserPage& p = mm->pages[mm->nr_pages++];
      p = src;
      continue;
    }
    if (i == 0 && Bug(abi::MmBug::kForkSharesPage)) {
      AddPage(mm, src.pa, src.tag, src.prot);  // planted bug: parent and child share a page
      continue;
    }
    // A private copy now (no copy-on-write): the child's page must never be the parent's.
    uint64_t pa = AllocPageOrPanic();
    memcpy(PhysToVirt(pa), PhysToVirt(src.pa), x86::kPageSize);
    AddPage(mm, pa, src.tag, src.prot);
  }
  // dup_mmap ends with flush_tlb_mm(oldmm): Linux write-protects the parent's pages for
  // copy-on-write. Pages are copied eagerly here, but the flush and its IPIs are the same.
  flush_tlb_mm(old_slot);
}

void mmgrab(int32_t mm) { __atomic_add_fetch(&Mm(mm)->mm_count, 1, __ATOMIC_RELAXED); }

void mmdrop(int32_t mm) {
  int32_t left = __atomic_sub_fetch(&Mm(mm)->mm_count, 1, __ATOMIC_ACQ_REL);
  if (left == 0) __mmdrop(mm);
}

void mmget(int32_t mm) { __atomic_add_fetch(&Mm(mm)->mm_users, 1, __ATOMIC_RELAXED); }

void mmput(int32_t mm) {
  MmStruct* m = Mm(mm);
  if (__atomic_sub_fetch(&m->mm_users, 1, __ATOMIC_ACQ_REL) == 0) {
    exit_mmap(mm);  // __mmput
    mmdrop(mm);
  }
}

void mmgrab_lazy_tlb(int32_t mm) {
  if (!LazyRefs()) return;  // CONFIG_MMU_LAZY_TLB_REFCOUNT=n: no reference
  mmgrab(mm);
  ++counters().lazy_grabs;
}

void mmdrop_lazy_tlb(int32_t mm) {
  if (!LazyRefs()) return;
  ++counters().lazy_drops;
  mmdrop(mm);
}

void do_mmap(int32_t slot, uint32_t pages) {
  MmStruct* mm = Mm(slot);
  for (uint32_t i = 0; i < pages; ++i) AddPage(mm, AllocPageOrPanic(), 0, abi::kPageWritable);
  // A new mapping needs no flush: nothing can have cached a translation for it.
}

void do_munmap(int32_t slot, uint32_t pages) {
  MmStruct* mm = Mm(slot);
  GUEST_CHECK_VALUES(pages <= abi::kMaxUserPages, 1, uint64_t{pages});
  uint64_t freed[abi::kMaxUserPages];
  uint64_t first_va = 0, end_va = 0;
  uint32_t done = 0;
  for (uint32_t i = mm->nr_pages; i-- > 0 && done < pages;) {
    abi::UserPage& p = mm->pages[i];
    if (!Mapped(p)) continue;
    if (!Bug(abi::MmBug::kMunmapKeepsPte)) {
      Pte old;
      MmTables t(mm);
      PtStatus s = t.pt.Unmap(p.va, &old);
      GUEST_CHECK_VALUES(s == PtStatus::kOk && old.addr() == p.pa, 2, p.va,
                         static_cast<uint64_t>(s));
    }
    freed[done] = p.pa;  // freed after the flush, as tlb_finish_mmu does
    p.pa = 0;
    p.tag = 0;
    p.state = static_cast<uint32_t>(abi::PageState::kUnmapped);
    if (end_va == 0) end_va = p.va + x86::kPageSize;
    first_va = p.va;
    ++done;
  }
  GUEST_CHECK_VALUES(done == pages, 2, uint64_t{done}, uint64_t{pages});
  // Until every CPU has flushed, one may still reach the old pages through its TLB: they go
  // back to the allocator only after the shootdown has completed.
  flush_tlb_mm_range(slot, first_va, end_va);
  for (uint32_t i = 0; i < done; ++i) FreePage(freed[i]);
}

void do_mprotect(int32_t slot, uint32_t pages, uint32_t prot) {
  MmStruct* mm = Mm(slot);
  uint64_t first_va = 0, end_va = 0;
  uint32_t done = 0;
  for (uint32_t i = mm->nr_pages; i-- > 0 && done < pages;) {
    abi::UserPage& p = mm->pages[i];
    if (!Mapped(p)) continue;
    Pte old;
    bool writable = prot & abi::kPageWritable;
    MmTables t(mm);
    PtStatus s =
        t.pt.SetLeafFlags(p.va, writable ? Pte::kWritable : 0, writable ? 0 : Pte::kWritable, &old);
    GUEST_CHECK_VALUES(s == PtStatus::kOk, 2, p.va, static_cast<uint64_t>(s));
    p.prot = prot;
    if (end_va == 0) end_va = p.va + x86::kPageSize;
    first_va = p.va;
    ++done;
  }
  GUEST_CHECK_VALUES(done == pages, 2, uint64_t{done}, uint64_t{pages});
  flush_tlb_mm_range(slot, first_va, end_va);
}

}  // namespace activemm::guest
