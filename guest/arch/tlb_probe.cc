// The boot-time TLB probe (kvm-probes' q6 in the guest). Where the host's MMU caches
// translations (hardware KVM with EPT/NPT, nested KVM under QEMU TCG), a read right after a PTE
// changed with no flush returns the old page; where the host shadows the guest's page tables and
// traps every write to them (kvm_pvm), it returns the new one. Nothing between the PTE write and
// the read may leave the guest: an exit to the host can drop the entry (measured under TCG).
#include "guest/arch/tlb_probe.h"

#include "guest/arch/cpu.h"
#include "guest/mm/page_alloc.h"
#include "shared/mm_abi.h"
#include "shared/x86.h"

namespace activemm::guest {
namespace {

using x86::Pte;

constexpr uint64_t kPageA = abi::kTlbProbePa;
constexpr uint64_t kPageB = kPageA + x86::kPageSize;
constexpr uint64_t kPdpt = kPageB + x86::kPageSize;
constexpr uint64_t kPd = kPdpt + x86::kPageSize;
constexpr uint64_t kPt = kPd + x86::kPageSize;
constexpr uint64_t kPatternA = 0xa11ce0a11ce0a11cull;
constexpr uint64_t kPatternB = 0xb0b0b0b0b0b0b0b0ull;
// kTlbProbeVa's place in the tables.
static_assert(abi::kTlbProbeVa == (uint64_t{1} << 30));
constexpr int kPml4Index = 0, kPdptIndex = 1, kPdIndex = 0, kPtIndex = 0;

volatile uint64_t* Word(uint64_t pa) { return static_cast<volatile uint64_t*>(PhysToVirt(pa)); }

}  // namespace

abi::TlbProbe ProbeStaleTlb(uint64_t swapper_pgd_pa) {
  constexpr uint64_t kTable = Pte::kPresent | Pte::kWritable;
  constexpr uint64_t kData = Pte::kPresent | Pte::kWritable | Pte::kNoExecute;
  Word(kPageA)[0] = kPatternA;
  Word(kPageB)[0] = kPatternB;
  Word(kPd)[kPdIndex] = kPt | kTable;
  Word(kPdpt)[kPdptIndex] = kPd | kTable;
  volatile uint64_t* pml4e = Word(swapper_pgd_pa) + kPml4Index;
  volatile uint64_t* pte = Word(kPt) + kPtIndex;
  *pte = kPageA | kData;
  *pml4e = kPdpt | kTable;
  // A full flush: whatever the walk below finds, it finds fresh.
  WriteCr3(x86::Cr3::FromRaw(ReadCr3()));
  volatile uint64_t* va = reinterpret_cast<volatile uint64_t*>(abi::kTlbProbeVa);
  const uint64_t first = *va;  // the TLB now holds kTlbProbeVa -> A
  *pte = kPageB | kData;       // no flush
  const uint64_t after_change = *va;
  Invlpg(abi::kTlbProbeVa);
  const uint64_t after_invlpg = *va;
  // Gone again: init_mm's user half maps nothing (the host's verifier checks it), and no TLB
  // keeps the probe's entries.
  *pte = 0;
  *pml4e = 0;
  WriteCr3(x86::Cr3::FromRaw(ReadCr3()));
  if (first != kPatternA || after_invlpg != kPatternB) return abi::TlbProbe::kInconclusive;
  if (after_change == kPatternA) return abi::TlbProbe::kObservable;
  if (after_change == kPatternB) return abi::TlbProbe::kNotObservable;
  return abi::TlbProbe::kInconclusive;
}

}  // namespace activemm::guest
