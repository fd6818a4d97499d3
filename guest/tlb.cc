// arch/x86/mm/tlb.c: switch_mm_irqs_off, choose_new_asid, enter_lazy_tlb, flush_tlb_mm_range
// and initialize_tlbstate_and_flush, on this CPU's cpu_tlbstate (CpuMmState).
//
// Every instruction here is emulated on the CI machines (~1 us each): the paths that write no
// CR3 (same mm, not lazy; lazy with an up-to-date tlb_gen) return after a handful of loads.
#include "guest/cpu.h"
#include "guest/hypercall.h"
#include "guest/model.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

// tlb_single_page_flush_ceiling: above this many pages a full flush is cheaper.
constexpr uint64_t kSinglePageFlushCeiling = 33;

struct NewAsid {
  uint16_t asid;
  bool need_flush;
};

NewAsid choose_new_asid(CpuMmState* rq, const MmStruct* next, uint64_t next_tlb_gen) {
  if (model.pcid == abi::PcidMode::kOff) return {0, true};
  for (uint16_t asid = 0; asid < model.num_asids; ++asid) {
    if (rq->ctxs[asid].ctx_id != next->ctx_id) continue;
    return {asid, rq->ctxs[asid].tlb_gen < next_tlb_gen};
  }
  // No slot holds this mm: take the next one round-robin, wrapping to slot 0.
  uint16_t asid = rq->next_asid++;
  if (asid >= model.num_asids) {
    asid = 0;
    rq->next_asid = 1;
  }
  return {asid, true};
}

void load_new_mm_cr3(int32_t prev, int32_t next, uint16_t asid, bool need_flush) {
  uint64_t pgd = Mm(next)->pgd_pa;
  if (Bug(abi::MmBug::kWrongCr3) && next == abi::kInitMm && prev != abi::kInitMm) {
    pgd = Mm(prev)->pgd_pa;  // planted bug: init_mm "loaded", the old page table kept
  }
  // Only with real PCIDs do the PCID bits and the no-flush bit reach CR3; modeled PCID computes
  // the same decision but loads a plain CR3 (every load flushes on such a CPU).
  bool hardware = model.pcid == abi::PcidMode::kHardware;
  WriteCr3(x86::Cr3::Make(pgd, hardware ? static_cast<uint16_t>(asid + 1) : 0,
                          hardware && !need_flush));
  abi::MmCounters& c = counters();
  ++c.cr3_writes;
  if (need_flush) {
    ++c.cr3_writes_flush;
  } else {
    ++c.cr3_writes_noflush;
  }
}

}  // namespace

void initialize_tlbstate() {
  CpuMmState* rq = this_rq();
  const MmStruct* init = Mm(abi::kInitMm);
  rq->loaded_mm = abi::kInitMm;
  rq->loaded_mm_asid = 0;
  rq->next_asid = 1;
  rq->is_lazy = 0;
  rq->ctxs[0] = {init->ctx_id, init->tlb_gen};
  for (uint32_t i = 1; i < abi::kMaxAsids; ++i) rq->ctxs[i] = {0, 0};
  rq->counters = {};
  // CR3 already holds init_mm's pgd with PCID 0 (loaded at boot, ASID 0 = PCID 0 without
  // PCIDE): nothing to reload.
}

void switch_mm_irqs_off(int32_t next) {
  CpuMmState* rq = this_rq();
  const int32_t prev = rq->loaded_mm;
  const uint16_t prev_asid = rq->loaded_mm_asid;
  const bool was_lazy = rq->is_lazy;
  MmStruct* n = Mm(next);
  const uint32_t cpu = this_cpu()->cpu;
  if (was_lazy) rq->is_lazy = 0;

  NewAsid ns;
  uint64_t next_tlb_gen;
  if (prev == next) {
    // Another thread of the same process, or back from lazy mode to the mm we kept.
    if (!was_lazy) return;
    // While lazy this CPU got no flush IPIs for the mm (should_flush_tlb skips lazy CPUs), so
    // its TLB may be behind: compare generations. Reading tlb_gen after clearing is_lazy pairs
    // with flush_tlb_mm_range's increment-then-check: either the flusher sees us non-lazy and
    // IPIs us, or we see its new generation here, or both.
    next_tlb_gen = __atomic_load_n(&n->tlb_gen, __ATOMIC_SEQ_CST);
    if (rq->ctxs[prev_asid].tlb_gen == next_tlb_gen) return;
    ns = {prev_asid, true};
  } else {
    // Join mm_cpumask before reading tlb_gen. The race: a concurrent flush_tlb_mm_range
    // increments tlb_gen and then reads mm_cpumask. With this order either it sees our bit (and
    // IPIs us) or we read its new tlb_gen (and flush), never neither. init_mm is never flushed
    // by shootdowns, so it keeps no mask.
    const uint64_t bit = uint64_t{1} << cpu;
    if (next != abi::kInitMm && !(n->cpumask & bit) && !Bug(abi::MmBug::kNoCpumask)) {
      __atomic_or_fetch(&n->cpumask, bit, __ATOMIC_SEQ_CST);
    }
    next_tlb_gen = __atomic_load_n(&n->tlb_gen, __ATOMIC_SEQ_CST);
    ns = choose_new_asid(rq, n, next_tlb_gen);
  }
  if (ns.need_flush) rq->ctxs[ns.asid] = {n->ctx_id, next_tlb_gen};
  load_new_mm_cr3(prev, next, ns.asid, ns.need_flush);
  // CR3 first, then loaded_mm: code that trusts loaded_mm (the flush IPI handler) must never
  // see the new mm while the old page table is still in CR3.
  asm volatile("" ::: "memory");
  rq->loaded_mm = next;
  rq->loaded_mm_asid = ns.asid;
}

void enter_lazy_tlb(int32_t /*mm*/) {
  CpuMmState* rq = this_rq();
  if (rq->loaded_mm == abi::kInitMm) return;  // nothing to be lazy about
  if (rq->is_lazy) return;
  rq->is_lazy = 1;
  ++counters().lazy_entries;
}

void flush_tlb_mm_range(int32_t mm, uint64_t start, uint64_t end) {
  MmStruct* m = Mm(mm);
  const uint64_t new_tlb_gen = __atomic_add_fetch(&m->tlb_gen, 1, __ATOMIC_SEQ_CST);
  CpuMmState* rq = this_rq();
  if (rq->loaded_mm != mm) return;
  // flush_tlb_func on the initiating CPU: a partial flush only when this one generation is all
  // this CPU is missing, else a full flush; both catch the ASID slot up to new_tlb_gen.
  abi::TlbContext& ctx = rq->ctxs[rq->loaded_mm_asid];
  const uint64_t pages = (end - start) / x86::kPageSize;
  if (pages <= kSinglePageFlushCeiling && new_tlb_gen == ctx.tlb_gen + 1) {
    for (uint64_t va = start; va < end; va += x86::kPageSize) Invlpg(va);
    counters().invlpg += pages;
  } else {
    WriteCr3(x86::Cr3::FromRaw(ReadCr3()));  // reloading CR3 flushes this PCID's entries
    ++counters().full_flushes;
  }
  ctx.tlb_gen = new_tlb_gen;
}

}  // namespace activemm::guest
