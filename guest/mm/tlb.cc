// arch/x86/mm/tlb.c: switch_mm_irqs_off, choose_new_asid, enter_lazy_tlb, flush_tlb_mm_range
// and initialize_tlbstate_and_flush, on this CPU's cpu_tlbstate (CpuMmState).
//
// Every instruction here is emulated where ring 0 is (kvm_pvm, ~1 us each): the paths that write no
// CR3 (same mm, not lazy; lazy with an up-to-date tlb_gen) return after a handful of loads.
#include "guest/arch/apic.h"
#include "guest/arch/cpu.h"
#include "guest/arch/hypercall.h"
#include "guest/arch/traps.h"
#include "guest/kernel/model.h"
#include "shared/asid.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

// tlb_single_page_flush_ceiling: above this many pages a full flush is cheaper.
constexpr uint64_t kSinglePageFlushCeiling = 33;

// The planted kAsidNoFlush bug: a slot is taken over for another mm without the flush, so
// the slot still names its old mm (and its stale TLB entries would serve the new one).
NewAsid ChooseNewAsidBuggy(CpuMmState* rq, const MmStruct* next, uint64_t next_tlb_gen) {
  NewAsid ns = ChooseNewAsid(*rq, model.num_asids, model.pcid, next->ctx_id, next_tlb_gen);
  if (rq->ctxs[ns.asid].ctx_id != next->ctx_id) ns.need_flush = false;
  return ns;
}

constexpr uint64_t kFlushAll = ~uint64_t{0};

void load_new_mm_cr3(int32_t prev, int32_t next, uint16_t asid, bool need_flush) {
  uint64_t pgd = Mm(next)->pgd_pa;
  if (Bug(abi::MmBug::kWrongCr3) && next == abi::kInitMm && prev != abi::kInitMm) {
    pgd = Mm(prev)->pgd_pa;  // planted bug: init_mm "loaded", the old page table kept
  }
  WriteCr3(BuildCr3(pgd, asid, model.pcid, need_flush));
  // The scenario step's result (guest/programs/scenario.cc): every CR3 write of the CPU while it
  // runs a step is the step's.
  this_cpu()->step_result |=
      need_flush ? abi::kStepCr3Load | abi::kStepCr3Flush : abi::kStepCr3Load;
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
  if (model.pcid == abi::PcidMode::kHardware) {
    // CR4.PCIDE may only be set while CR3's PCID is 0 (SDM 4.10.1), which it is since boot;
    // then, as initialize_tlbstate_and_flush, load init_mm with ASID 0 (PCID 1), flushing.
    GUEST_CHECK(CpuHasPcid());
    WriteCr4(ReadCr4() | x86::kCr4Pcide);
    WriteCr3(BuildCr3(init->pgd_pa, 0, model.pcid, /*need_flush=*/true));
  }
  // Otherwise CR3 already holds init_mm's pgd, loaded at boot: nothing to reload.
}

void switch_mm_irqs_off(int32_t next) {
  CpuMmState* rq = this_rq();
  const int32_t prev = rq->loaded_mm;
  const uint16_t prev_asid = rq->loaded_mm_asid;
  const bool was_lazy = rq->is_lazy;
  // Same mm, not lazy (another thread of the process): the common case returns here after a
  // few loads; every ring-0 instruction is emulated on kvm_pvm.
  if (prev == next && !was_lazy) return;
  MmStruct* n = Mm(next);
  if (was_lazy) rq->is_lazy = 0;

  NewAsid ns;
  uint64_t next_tlb_gen;
  if (prev == next) {
    // Back from lazy mode to the mm this CPU kept.
    if (Bug(abi::MmBug::kNoTlbGenCheck)) return;  // planted bug: trust a TLB that may be stale
    // While lazy this CPU got no flush IPIs for the mm (should_flush_tlb skips lazy CPUs), so
    // its TLB may be behind: compare generations. Reading tlb_gen after clearing is_lazy pairs
    // with flush_tlb_mm_range's increment-then-check: either the flusher sees us non-lazy and
    // IPIs us, or we see its new generation here, or both.
    next_tlb_gen = __atomic_load_n(&n->tlb_gen, __ATOMIC_SEQ_CST);
    if (rq->ctxs[prev_asid].tlb_gen == next_tlb_gen) return;
    ns = {prev_asid, true};
  } else {
    // While CR3, loaded_mm and mm_cpumask disagree, a flusher must assume the worst:
    // should_flush_tlb IPIs a CPU whose loaded_mm reads LOADED_MM_SWITCHING. Without it, a
    // flusher could see our new mask bit but the old loaded_mm, skip the IPI, and we could load
    // the mm at a generation it has already left behind.
    __atomic_store_n(&rq->loaded_mm, abi::kLoadedMmSwitching, __ATOMIC_SEQ_CST);
    // Join mm_cpumask before reading tlb_gen. The race: a concurrent flush_tlb_mm_range
    // increments tlb_gen and then reads mm_cpumask. With this order either it sees our bit (and
    // IPIs us) or we read its new tlb_gen (and flush), never neither. init_mm is never flushed
    // by shootdowns, so it keeps no mask.
    const uint64_t bit = uint64_t{1} << this_cpu()->cpu;
    if (next != abi::kInitMm && !(n->cpumask & bit) && !Bug(abi::MmBug::kNoCpumask)) {
      __atomic_or_fetch(&n->cpumask, bit, __ATOMIC_SEQ_CST);
    }
    next_tlb_gen = __atomic_load_n(&n->tlb_gen, __ATOMIC_SEQ_CST);
    ns = Bug(abi::MmBug::kAsidNoFlush)
             ? ChooseNewAsidBuggy(rq, n, next_tlb_gen)
             : ChooseNewAsid(*rq, model.num_asids, model.pcid, n->ctx_id, next_tlb_gen);
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

namespace {

// flush_tlb_func: bring this CPU's TLB for f.mm up to f.new_tlb_gen.
void flush_tlb_func(const PerCpu::FlushInfo& f, bool local) {
  CpuMmState* rq = this_rq();
  abi::MmCounters& c = counters();
  if (!local) ++c.ipis_received;
  const int32_t loaded = rq->loaded_mm;
  if (f.mm != loaded) {
    // Left in the mask when this CPU switched away (the bit is never cleared then): clear it
    // now, so later shootdowns skip this CPU.
    __atomic_and_fetch(&Mm(f.mm)->cpumask, ~(uint64_t{1} << this_cpu()->cpu), __ATOMIC_SEQ_CST);
    return;
  }
  if (loaded == abi::kInitMm) return;
  if (rq->is_lazy) {
    // Lazy on a mm whose page tables changed under it: switching to init_mm is barely dearer
    // than a flush and stops speculative walks of freed tables (leave_mm).
    ++c.leave_mm;
    __atomic_or_fetch(&percpu[f.initiator].step_leave_mm, uint64_t{1} << this_cpu()->cpu,
                      __ATOMIC_RELAXED);
    switch_mm_irqs_off(abi::kInitMm);
    return;
  }
  abi::TlbContext& ctx = rq->ctxs[rq->loaded_mm_asid];
  const uint64_t local_gen = ctx.tlb_gen;
  if (f.new_tlb_gen <= local_gen) return;  // a later flush already caught this CPU up
  const uint64_t mm_gen = __atomic_load_n(&Mm(loaded)->tlb_gen, __ATOMIC_SEQ_CST);
  if (local_gen == mm_gen) return;
  // Partial only when this flush is exactly the one generation missing and the newest: any
  // other gap needs a full flush to keep "caught up to tlb_gen" true.
  if (f.end != kFlushAll && f.new_tlb_gen == local_gen + 1 && f.new_tlb_gen == mm_gen) {
    for (uint64_t va = f.start; va < f.end; va += x86::kPageSize) Invlpg(va);
    c.invlpg += (f.end - f.start) / x86::kPageSize;
  } else {
    WriteCr3(x86::Cr3::FromRaw(ReadCr3()));  // reloading CR3 flushes this PCID's entries
    ++c.full_flushes;
  }
  ctx.tlb_gen = mm_gen;
}

// should_flush_tlb: lazy CPUs catch up at their next switch (switch_mm_irqs_off compares
// tlb_gen), so they are skipped unless page tables were freed.
bool should_flush_tlb(uint32_t cpu, const PerCpu::FlushInfo& f) {
  const CpuMmState& rq = cpu_mm[cpu];
  if (f.freed_tables) return true;
  if (__atomic_load_n(&rq.is_lazy, __ATOMIC_SEQ_CST)) return false;
  const int32_t loaded = __atomic_load_n(&rq.loaded_mm, __ATOMIC_SEQ_CST);
  return loaded == f.mm || loaded == abi::kLoadedMmSwitching;
}

}  // namespace

// do_shoot_lazy_tlb (kernel/fork.c): a CPU whose current task still has mm as active_mm moves
// it to init_mm, because mm is about to be freed and lazy users hold no reference on it.
void do_shoot_lazy_tlb(int32_t mm, uint32_t initiator) {
  TaskStruct* cur = current();
  if (cur->active_mm != mm) return;
  GUEST_CHECK(cur->mm == abi::kNoMm);
  cur->active_mm = abi::kInitMm;
  if (this_rq()->loaded_mm != abi::kInitMm) {
    ++counters().leave_mm;
    __atomic_or_fetch(&percpu[initiator].step_leave_mm, uint64_t{1} << this_cpu()->cpu,
                      __ATOMIC_RELAXED);
    switch_mm_irqs_off(abi::kInitMm);
  }
}

namespace {

// Sends the request in this CPU's flush_info to `targets` and waits until each has handled
// it. The wait has interrupts on, as smp_call_function's does: a CPU that is itself waiting
// for this one must get its IPI handled, or both would wait for ever.
void CallOnCpus(uint64_t targets) {
  if (targets == 0) return;
  PerCpu* self = this_cpu();
  self->step_ipi_cpus |= targets;
  abi::MmCounters& c = counters();
  __atomic_store_n(&self->flush_acks_pending, targets, __ATOMIC_SEQ_CST);
  for (uint64_t t = targets; t != 0; t &= t - 1) {
    const uint32_t cpu = static_cast<uint32_t>(__builtin_ctzll(t));
    __atomic_or_fetch(&percpu[cpu].flush_requests, uint64_t{1} << self->cpu, __ATOMIC_SEQ_CST);
    ApicSendIpi(percpu[cpu].apic_id, kVecFlushTlb);
    ++c.ipis_sent;
  }
  while (__atomic_load_n(&self->flush_acks_pending, __ATOMIC_ACQUIRE) != 0) {
    asm volatile("sti; pause; cli" ::: "memory");
  }
}

}  // namespace

void flush_tlb_ipi() {
  PerCpu* self = this_cpu();
  uint64_t from = __atomic_exchange_n(&self->flush_requests, 0, __ATOMIC_SEQ_CST);
  while (from != 0) {
    const uint32_t initiator = static_cast<uint32_t>(__builtin_ctzll(from));
    from &= from - 1;
    const PerCpu::FlushInfo& f = percpu[initiator].flush_info;
    if (f.shoot_lazy) {
      ++counters().ipis_received;
      do_shoot_lazy_tlb(f.mm, initiator);
    } else {
      flush_tlb_func(f, /*local=*/false);
    }
    // Acknowledge last: the initiator may free the pages as soon as every target has flushed.
    __atomic_and_fetch(&percpu[initiator].flush_acks_pending, ~(uint64_t{1} << self->cpu),
                       __ATOMIC_RELEASE);
  }
}

void flush_tlb_late_ipi() {
  PerCpu* self = this_cpu();
  CpuMmState* rq = this_rq();
  if (!rq->late_ipi_pending) return;
  flush_tlb_func(self->late_flush, /*local=*/false);
  rq->late_ipi_pending = 0;
}

void flush_tlb_mm_range_begin(int32_t mm, uint64_t start, uint64_t end, bool freed_tables) {
  MmStruct* m = Mm(mm);
  ++counters().shootdowns;
  // Increment first, then read the mask (see switch_mm_irqs_off for the other half of the race).
  const uint64_t new_tlb_gen = __atomic_add_fetch(&m->tlb_gen, 1, __ATOMIC_SEQ_CST);
  PerCpu::FlushInfo& f = this_cpu()->flush_info;
  f.mm = mm;
  f.initiator = this_cpu()->cpu;
  const bool full = (end - start) / x86::kPageSize > kSinglePageFlushCeiling;
  f.start = full ? 0 : start;
  f.end = full ? kFlushAll : end;
  f.new_tlb_gen = new_tlb_gen;
  f.freed_tables = freed_tables;
  f.shoot_lazy = false;
}

void flush_tlb_mm_range_finish(uint64_t late) {
  PerCpu* self = this_cpu();
  const uint64_t me = uint64_t{1} << self->cpu;
  PerCpu::FlushInfo& f = self->flush_info;
  const int32_t mm = f.mm;
  MmStruct* m = Mm(mm);
  const uint64_t mask = __atomic_load_n(&m->cpumask, __ATOMIC_SEQ_CST);
  if (mask & ~me) {
    // flush_tlb_multi: every CPU of the mask that should_flush_tlb, this one included.
    uint64_t targets = 0;
    for (uint64_t t = mask & ~me; t != 0; t &= t - 1) {
      const uint32_t cpu = static_cast<uint32_t>(__builtin_ctzll(t));
      if (!should_flush_tlb(cpu, f)) continue;
      if (Bug(abi::MmBug::kSkipIpiNonLazy)) continue;  // planted bug: the IPI is never sent
      targets |= uint64_t{1} << cpu;
    }
    if ((mask & me) && should_flush_tlb(self->cpu, f)) flush_tlb_func(f, /*local=*/true);
    // The late ones get their own copy: this CPU's flush_info may be reused before they run.
    // A second late flush before the first was handled merges into a full one (it catches the
    // CPU up to the newer generation, which covers both).
    for (uint64_t t = targets & late; t != 0; t &= t - 1) {
      PerCpu& target = percpu[__builtin_ctzll(t)];
      PerCpu::FlushInfo copy = f;
      if (cpu_mm[target.cpu].late_ipi_pending) copy.end = kFlushAll;
      // Published before the target's next step begins: the step loop's release/acquire on
      // next_step orders it (late IPIs are a replay feature: no parallel blocks there).
      target.late_flush = copy;
      cpu_mm[target.cpu].late_ipi_pending = 1;  // the verifier sees it too
      ++counters().ipis_sent;
      self->step_ipi_cpus |= uint64_t{1} << target.cpu;
    }
    CallOnCpus(targets & ~late);
  } else if (this_rq()->loaded_mm == mm) {
    flush_tlb_func(f, /*local=*/true);
  }
}

void flush_tlb_mm_range(int32_t mm, uint64_t start, uint64_t end, bool freed_tables,
                        uint64_t late) {
  flush_tlb_mm_range_begin(mm, start, end, freed_tables);
  flush_tlb_mm_range_finish(late);
}

void flush_tlb_mm(int32_t mm) { flush_tlb_mm_range(mm, 0, 1ull << 47, /*freed_tables=*/true); }

void cleanup_lazy_tlbs(int32_t mm) {
  PerCpu* self = this_cpu();
  const uint64_t me = uint64_t{1} << self->cpu;
  const uint64_t mask = __atomic_load_n(&Mm(mm)->cpumask, __ATOMIC_SEQ_CST);
  PerCpu::FlushInfo& f = self->flush_info;
  f.mm = mm;
  f.initiator = self->cpu;
  f.shoot_lazy = true;
  if (mask & me) do_shoot_lazy_tlb(mm, self->cpu);
  CallOnCpus(mask & ~me);
}

}  // namespace activemm::guest
