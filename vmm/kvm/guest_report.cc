#include "vmm/kvm/guest_report.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "shared/x86.h"
#include "vmm/kvm/guest_memory.h"

namespace activemm {

std::string VectorName(uint64_t vector) {
  static constexpr const char* kNames[] = {"#DE (divide error)",
                                           "#DB (debug)",
                                           "NMI",
                                           "#BP (breakpoint)",
                                           "#OF (overflow)",
                                           "#BR (bound range)",
                                           "#UD (invalid opcode)",
                                           "#NM (device not available)",
                                           "#DF (double fault)",
                                           "coprocessor segment overrun",
                                           "#TS (invalid TSS)",
                                           "#NP (segment not present)",
                                           "#SS (stack fault)",
                                           "#GP (general protection)",
                                           "#PF (page fault)",
                                           "reserved vector 15",
                                           "#MF (x87 error)",
                                           "#AC (alignment check)",
                                           "#MC (machine check)",
                                           "#XM (SIMD exception)",
                                           "#VE (virtualization exception)",
                                           "#CP (control protection)"};
  if (vector < std::size(kNames)) return kNames[vector];
  return absl::StrFormat("vector %#x", vector);
}

std::string DescribeRip(const GuestImage& image, uint64_t rip) {
  std::string sym = image.Symbolize(rip);
  if (sym.empty()) {
    uint64_t alias = image.UserTextAlias(rip);
    if (alias != 0) sym = image.Symbolize(alias);
    if (!sym.empty()) sym += ", user text";
  }
  if (sym.empty()) return absl::StrFormat("%#x", rip);
  return absl::StrFormat("%#x <%s>", rip, sym);
}

std::string DescribePtePerms(uint64_t p) {
  return absl::StrFormat("%s%s%s%s", (p & x86::Pte::kPresent) ? "" : "-",
                         (p & x86::Pte::kWritable) ? "W" : "-", (p & x86::Pte::kUser) ? "U" : "-",
                         (p & x86::Pte::kNoExecute) ? "NX" : "X");
}

std::string FormatFault(int cpu, const abi::FaultReport& f, const GuestImage& image) {
  std::string detail;
  if (f.vector == x86::kVecPageFault) {
    detail = absl::StrFormat(
        " (%s, %s, %s%s)", f.error_code & x86::kPfPresent ? "protection violation" : "not present",
        f.error_code & x86::kPfWrite ? "write" : "read",
        f.error_code & x86::kPfUser ? "user mode" : "kernel mode",
        f.error_code & x86::kPfInstruction ? ", instruction fetch" : "");
  }
  return absl::StrFormat(
      "guest exception on CPU %d: %s, error code %#x%s\n"
      "  CR2 %#x  RIP %s\n"
      "  RSP %#x  CR3 %#x  CS %#x (ring %d)  RFLAGS %#x",
      cpu, VectorName(f.vector), f.error_code, detail, f.cr2, DescribeRip(image, f.rip), f.rsp,
      f.cr3, f.cs, f.cs & 3, f.rflags);
}

std::string FormatPanic(int cpu, const abi::PanicReport& p) {
  std::string file = GuestMemory::BoundedString(p.file, sizeof p.file);
  std::string msg = GuestMemory::BoundedString(p.message, sizeof p.message);
  uint32_t n = std::min<uint32_t>(p.num_values, abi::kPanicValuesMax);
  std::string values;
  if (n > 0) {
    std::vector<std::string> v;
    for (uint32_t i = 0; i < n; ++i) v.push_back(absl::StrFormat("%#x", p.values[i]));
    values = " [values: " + absl::StrJoin(v, ", ") + "]";
  }
  return absl::StrFormat("guest panic on CPU %d at %s:%d: %s%s", cpu, file, p.line, msg, values);
}

namespace {

// The 256-bit vector set at `offset` of the APIC page: eight 32-bit registers, 16 bytes apart
// (SDM 11.8.4).
std::string VectorSet(const kvm_lapic_state& lapic, int offset) {
  std::string out;
  for (int reg = 0; reg < 8; ++reg) {
    uint32_t bits;
    std::memcpy(&bits, lapic.regs + offset + reg * 0x10, sizeof bits);
    for (int bit = 0; bit < 32; ++bit) {
      if (bits & (1u << bit))
        absl::StrAppendFormat(&out, "%s%#x", out.empty() ? "" : " ", reg * 32 + bit);
    }
  }
  return out.empty() ? "none" : out;
}

}  // namespace

std::string DescribeLapic(const kvm_lapic_state& lapic) {
  constexpr int kTpr = 0x80, kIsr = 0x100, kIrr = 0x200;
  uint32_t tpr;
  std::memcpy(&tpr, lapic.regs + kTpr, sizeof tpr);
  return absl::StrFormat("APIC: pending %s; in service %s; TPR %#x", VectorSet(lapic, kIrr),
                         VectorSet(lapic, kIsr), tpr & 0xff);
}

std::string FormatVcpuPosition(const kvm_regs& regs, const kvm_sregs& sregs, bool halted,
                               const GuestImage& image) {
  return absl::StrFormat("%s at RIP %s, RSP %#x, CR3 %#x, interrupts %s",
                         halted ? "halted" : "running", DescribeRip(image, regs.rip), regs.rsp,
                         sregs.cr3, (regs.rflags & 0x200) ? "on" : "off");
}

}  // namespace activemm
