// x86-64 architectural values used by both the host and the guest.
//
// Hardware values are types (Pte, Cr3) so that no code outside this file assembles bits by hand.
// Section numbers cite the Intel SDM, volume 3A.
#ifndef ACTIVEMM_SHARED_X86_H_
#define ACTIVEMM_SHARED_X86_H_

#include <stdint.h>

namespace activemm::x86 {

inline constexpr uint64_t kPageSize = 4096;
inline constexpr uint64_t kPageShift = 12;
inline constexpr uint64_t kHugePageSize = 2ull << 20;  // 2 MiB, a PDE with PS=1
inline constexpr int kEntriesPerTable = 512;
// Bits 51:12 of an entry hold the physical address (SDM 4.5.4, MAXPHYADDR <= 52).
inline constexpr uint64_t kPhysAddrMask = 0x000ffffffffff000ull;

// CR0 / CR4 / EFER bits (SDM 2.5, 2.2.1).
inline constexpr uint64_t kCr0Pe = 1ull << 0;
inline constexpr uint64_t kCr0Mp = 1ull << 1;
inline constexpr uint64_t kCr0Et = 1ull << 4;
inline constexpr uint64_t kCr0Ne = 1ull << 5;
inline constexpr uint64_t kCr0Wp = 1ull << 16;
inline constexpr uint64_t kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5;
inline constexpr uint64_t kCr4Pge = 1ull << 7;
inline constexpr uint64_t kCr4Osfxsr = 1ull << 9;
inline constexpr uint64_t kCr4Osxmmexcpt = 1ull << 10;
inline constexpr uint64_t kCr4Pcide = 1ull << 17;
inline constexpr uint64_t kEferLme = 1ull << 8;
inline constexpr uint64_t kEferLma = 1ull << 10;
inline constexpr uint64_t kEferNxe = 1ull << 11;

// MSRs (SDM vol. 4; x2APIC registers SDM 11.12.1.2).
inline constexpr uint32_t kMsrApicBase = 0x1b;
inline constexpr uint64_t kApicBaseEnable = 1ull << 11;
inline constexpr uint64_t kApicBaseX2apic = 1ull << 10;
inline constexpr uint32_t kMsrGsBase = 0xc0000101;
inline constexpr uint32_t kMsrX2apicId = 0x802;
inline constexpr uint32_t kMsrX2apicEoi = 0x80b;
inline constexpr uint32_t kMsrX2apicSvr = 0x80f;
inline constexpr uint32_t kMsrX2apicIcr = 0x830;
inline constexpr uint64_t kApicSvrEnable = 1ull << 8;

// Exception vectors (SDM 6.15).
inline constexpr int kVecDivide = 0;
inline constexpr int kVecInvalidOpcode = 6;
inline constexpr int kVecDoubleFault = 8;
inline constexpr int kVecGeneralProtection = 13;
inline constexpr int kVecPageFault = 14;
inline constexpr int kNumExceptionVectors = 32;

// Page-fault error code bits (SDM 4.7).
inline constexpr uint64_t kPfPresent = 1ull << 0;
inline constexpr uint64_t kPfWrite = 1ull << 1;
inline constexpr uint64_t kPfUser = 1ull << 2;
inline constexpr uint64_t kPfInstruction = 1ull << 4;

// Segment selectors of the guest's GDT (same numbers on every CPU). The user selectors carry
// RPL 3; 64-bit user code follows user data so the layout also suits SYSRET on real hardware.
inline constexpr uint16_t kKernelCs = 0x08;
inline constexpr uint16_t kKernelDs = 0x10;
inline constexpr uint16_t kUserDs = 0x18 | 3;
inline constexpr uint16_t kUserCs = 0x20 | 3;
inline constexpr uint16_t kTss = 0x28;

// A page-table entry at any level (SDM tables 4-15 to 4-20).
class Pte {
 public:
  static constexpr uint64_t kPresent = 1ull << 0;
  static constexpr uint64_t kWritable = 1ull << 1;
  static constexpr uint64_t kUser = 1ull << 2;
  static constexpr uint64_t kWriteThrough = 1ull << 3;
  static constexpr uint64_t kCacheDisable = 1ull << 4;
  static constexpr uint64_t kAccessed = 1ull << 5;
  static constexpr uint64_t kDirty = 1ull << 6;
  static constexpr uint64_t kHuge = 1ull << 7;  // PS in a PDE or PDPTE
  static constexpr uint64_t kGlobal = 1ull << 8;
  static constexpr uint64_t kNoExecute = 1ull << 63;
  // Permission bits the page-table code compares; A and D are set by the CPU.
  static constexpr uint64_t kPermMask = kPresent | kWritable | kUser | kNoExecute;

  constexpr Pte() = default;
  constexpr explicit Pte(uint64_t raw) : raw_(raw) {}
  static constexpr Pte Make(uint64_t pa, uint64_t flags) {
    return Pte((pa & kPhysAddrMask) | flags);
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr uint64_t addr() const { return raw_ & kPhysAddrMask; }
  constexpr uint64_t flags() const { return raw_ & ~kPhysAddrMask; }
  constexpr bool present() const { return raw_ & kPresent; }
  constexpr bool writable() const { return raw_ & kWritable; }
  constexpr bool user() const { return raw_ & kUser; }
  constexpr bool huge() const { return raw_ & kHuge; }
  constexpr bool no_execute() const { return raw_ & kNoExecute; }
  friend constexpr bool operator==(Pte a, Pte b) { return a.raw_ == b.raw_; }

 private:
  uint64_t raw_ = 0;
};
static_assert(sizeof(Pte) == 8);

// The value loaded into CR3 (SDM 4.5.2, table 4-13 and 4.10.4.1). With CR4.PCIDE=1 bits 11:0 are
// the PCID and bit 63 set means "do not invalidate this PCID's TLB entries" on the load; bit 63 is
// never stored in CR3 and is reserved (a #GP) while CR4.PCIDE=0. Linux builds these values in
// build_cr3() / build_cr3_noflush() with PCID = ASID + 1, PCID 0 being reserved for non-PCID use.
class Cr3 {
 public:
  static constexpr uint64_t kNoFlush = 1ull << 63;
  static constexpr uint64_t kPcidMask = 0xfff;

  constexpr Cr3() = default;
  static constexpr Cr3 FromRaw(uint64_t raw) { return Cr3(raw); }
  static constexpr Cr3 Make(uint64_t root_pa, uint16_t pcid, bool noflush) {
    return Cr3((root_pa & kPhysAddrMask) | (pcid & kPcidMask) | (noflush ? kNoFlush : 0));
  }

  constexpr uint64_t raw() const { return raw_; }
  constexpr uint64_t root() const { return raw_ & kPhysAddrMask; }
  constexpr uint16_t pcid() const { return static_cast<uint16_t>(raw_ & kPcidMask); }
  constexpr bool noflush() const { return raw_ & kNoFlush; }
  // What a later read of CR3 returns after this value was loaded.
  constexpr Cr3 as_read_back() const { return Cr3(raw_ & ~kNoFlush); }
  friend constexpr bool operator==(Cr3 a, Cr3 b) { return a.raw_ == b.raw_; }

 private:
  constexpr explicit Cr3(uint64_t raw) : raw_(raw) {}
  uint64_t raw_ = 0;
};
static_assert(sizeof(Cr3) == 8);

// Index of a virtual address in the table of each level (level 4 = PML4 ... level 1 = PT).
constexpr int TableIndex(uint64_t va, int level) {
  return static_cast<int>((va >> (kPageShift + 9 * (level - 1))) & 0x1ff);
}
// A canonical 48-bit virtual address has bits 63:47 all equal (SDM 3.3.7.1).
constexpr bool IsCanonical(uint64_t va) {
  uint64_t top = va >> 47;
  return top == 0 || top == 0x1ffff;
}

}  // namespace activemm::x86

#endif  // ACTIVEMM_SHARED_X86_H_
