#include "vmm/tools/selftest.h"

#include <set>

#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "fmt/core.h"
#include "fmt/format.h"
#include "shared/page_table.h"
#include "shared/x86.h"
#include "vmm/kvm/guest_report.h"

namespace activemm {
namespace {

using x86::Pte;

absl::Status Violation(absl::string_view msg) { return absl::FailedPreconditionError(msg); }

absl::Status ExpectLeaf(PageTable<GuestMemory>& pt, uint64_t va, uint64_t want_pa, int want_level,
                        uint64_t want_perms, const std::string& what) {
  WalkResult w = pt.Walk(va);
  if (w.status != PtStatus::kOk) {
    return Violation(absl::StrFormat("%s: va %#x in page table %#x: %s", what, va, pt.root(),
                                     PtStatusName(w.status)));
  }
  if (w.pa != want_pa || w.level != want_level ||
      (w.leaf.raw() & Pte::kPermMask) != (want_perms | Pte::kPresent)) {
    return Violation(absl::StrFormat(
        "%s: va %#x in page table %#x maps pa %#x (level %d, %s), expected pa %#x (level %d, %s)",
        what, va, pt.root(), w.pa, w.level, DescribePtePerms(w.leaf.raw()), want_pa, want_level,
        DescribePtePerms(want_perms | Pte::kPresent)));
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status SelftestVerifier::OnCheckpoint(const CheckpointView& view) {
  switch (view.id) {
    case abi::kCheckpointKernelTables:
      return CheckKernelTables(view);
    case abi::kCheckpointOnline:
      return CheckOnline(view);
    case abi::kCheckpointSelftest:
      return CheckSelftest(view);
    default:
      return Violation(absl::StrFormat("unknown self-test checkpoint %d", view.id));
  }
}

absl::Status SelftestVerifier::CheckKernelTables(const CheckpointView& view) {
  absl::StatusOr<abi::GuestInfo> info = view.memory.Read<abi::GuestInfo>(abi::kGuestInfoPa);
  if (!info.ok()) return info.status();
  swapper_pgd_pa_ = info->swapper_pgd_pa;
  if (view.memory.Table(swapper_pgd_pa_) == nullptr) {
    return Violation(
        absl::StrFormat("init_mm's pgd %#x is not a page inside guest RAM", swapper_pgd_pa_));
  }
  // The direct map covers all RAM with 2 MiB supervisor, writable, no-execute pages, and the
  // image window maps the guest image where it was linked.
  PageTable<GuestMemory> pt(view.memory, swapper_pgd_pa_);
  for (uint64_t pa = 0; pa < view.memory.size(); pa += x86::kHugePageSize) {
    absl::Status s = ExpectLeaf(pt, abi::kDirectMapBase + pa, pa, 2,
                                Pte::kWritable | Pte::kNoExecute, "init_mm direct map");
    if (!s.ok()) return s;
  }
  const abi::GuestImageHeader& h = image_.header();
  return ExpectLeaf(pt, h.entry_va, h.entry_va - abi::kKernelTextBase, 2, Pte::kWritable,
                    "init_mm kernel image");
}

absl::Status SelftestVerifier::CheckRealCr3(const CheckpointView& view) {
  for (int cpu = 0; cpu < cpus_; ++cpu) {
    if (!view.present[cpu]) continue;
    x86::Cr3 cr3 = x86::Cr3::FromRaw(view.sregs[cpu].cr3);
    if (cr3.root() != swapper_pgd_pa_) {
      return Violation(
          absl::StrFormat("CPU %d: real CR3 (KVM_GET_SREGS) is %#x, expected init_mm's pgd %#x",
                          cpu, view.sregs[cpu].cr3, swapper_pgd_pa_));
    }
  }
  return absl::OkStatus();
}

absl::Status SelftestVerifier::CheckOnline(const CheckpointView& view) {
  absl::StatusOr<abi::GuestInfo> info = view.memory.Read<abi::GuestInfo>(abi::kGuestInfoPa);
  if (!info.ok()) return info.status();
  if (info->cpus_online != static_cast<uint32_t>(cpus_)) {
    return Violation(absl::StrFormat("%d of %d CPUs reported in", info->cpus_online, cpus_));
  }
  std::set<uint32_t> apic_ids;
  for (int cpu = 0; cpu < cpus_; ++cpu) {
    absl::StatusOr<abi::SelftestReport> rep = view.memory.Read<abi::SelftestReport>(
        abi::MailboxPa(cpu) + offsetof(abi::CpuMailbox, selftest));
    if (!rep.ok()) return rep.status();
    if (rep->online != 1) return Violation(absl::StrFormat("CPU %d did not report in", cpu));
    // KVM's in-kernel local APIC takes the vCPU id as its APIC id.
    if (rep->apic_id != static_cast<uint32_t>(cpu) || !apic_ids.insert(rep->apic_id).second) {
      return Violation(absl::StrFormat("CPU %d reports APIC id %d", cpu, rep->apic_id));
    }
  }
  return CheckRealCr3(view);
}

absl::Status SelftestVerifier::CheckUserAddressSpace(GuestMemory& mem, int cpu,
                                                     const abi::SelftestReport& rep,
                                                     SelftestCpuRow& row) {
  const std::string who = absl::StrFormat("CPU %d user page table", cpu);
  uint64_t* user_pgd = mem.Table(rep.user_pgd_pa);
  uint64_t* kernel_pgd = mem.Table(swapper_pgd_pa_);
  if (user_pgd == nullptr || rep.user_pgd_pa == swapper_pgd_pa_) {
    return Violation(absl::StrFormat("%s: root %#x is not a page of its own in guest RAM", who,
                                     rep.user_pgd_pa));
  }
  // The kernel half is init_mm's, entry for entry.
  for (int i = abi::kFirstKernelPml4Index; i < x86::kEntriesPerTable; ++i) {
    if (user_pgd[i] != kernel_pgd[i]) {
      return Violation(absl::StrFormat("%s: PML4 entry %d is %#x, init_mm has %#x", who, i,
                                       user_pgd[i], kernel_pgd[i]));
    }
  }
  PageTable<GuestMemory> pt(mem, rep.user_pgd_pa);
  uint64_t text_alias = image_.UserTextAlias(abi::kUserTextVa);
  absl::Status s = ExpectLeaf(pt, abi::kUserTextVa, text_alias - abi::kKernelTextBase, 1,
                              Pte::kUser, who + ", user text");
  if (!s.ok()) return s;
  if (rep.user_pages != abi::kSelftestPages) {
    return Violation(absl::StrFormat("%s: %d data pages, expected %d", who, rep.user_pages,
                                     abi::kSelftestPages));
  }
  // Every data page maps the page the guest reported, and holds what ring 3 wrote through
  // that mapping: seed ^ va in every word. The host recomputes the checksum ring 3 read back.
  uint64_t sum = 0;
  std::vector<uint64_t> page(x86::kPageSize / 8);
  for (uint32_t i = 0; i < rep.user_pages; ++i) {
    uint64_t va = abi::kUserDataVa + i * x86::kPageSize;
    s = ExpectLeaf(pt, va, rep.data_pa[i], 1, Pte::kUser | Pte::kWritable | Pte::kNoExecute,
                   who + ", data page");
    if (!s.ok()) return s;
    s = mem.ReadBytes(rep.data_pa[i], page.data(), x86::kPageSize);
    if (!s.ok()) return s;
    for (size_t w = 0; w < page.size(); ++w) {
      uint64_t want = abi::UserPattern(rep.user_seed, va + w * 8);
      if (page[w] != want) {
        return Violation(absl::StrFormat("%s: word at va %#x (pa %#x) holds %#x, ring 3 wrote %#x",
                                         who, va + w * 8, rep.data_pa[i] + w * 8, page[w], want));
      }
      sum += want;
    }
    ++row.pages_verified;
  }
  if (rep.user_errors != 0 || rep.user_checksum != sum) {
    return Violation(
        absl::StrFormat("CPU %d: ring 3 read back %d wrong words, checksum %#x, expected 0 and %#x",
                        cpu, rep.user_errors, rep.user_checksum, sum));
  }
  return absl::OkStatus();
}

absl::Status SelftestVerifier::CheckSelftest(const CheckpointView& view) {
  rows_.clear();
  std::set<uint64_t> data_pages;
  for (int cpu = 0; cpu < cpus_; ++cpu) {
    absl::StatusOr<abi::SelftestReport> rep = view.memory.Read<abi::SelftestReport>(
        abi::MailboxPa(cpu) + offsetof(abi::CpuMailbox, selftest));
    if (!rep.ok()) return rep.status();
    SelftestCpuRow row;
    row.cpu = cpu;
    row.apic_id = rep->apic_id;
    row.ipi_target = rep->ipi_target;
    row.ipi_sender = rep->ipi_sender;
    row.ipis_received = rep->ipis_received;
    row.trap_cs = rep->user_trap_cs;
    row.user_pgd_pa = rep->user_pgd_pa;
    const uint32_t next = (cpu + 1) % cpus_, prev = (cpu + cpus_ - 1) % cpus_;
    if (rep->ipi_target != next || rep->ipis_received != 1 || rep->ipi_sender != prev) {
      // The sender's own count tells whose the extra IPI was: one ICR write received twice was
      // delivered twice by the hypervisor (seen under nested KVM on QEMU TCG: docs/hosts.md).
      absl::StatusOr<abi::SelftestReport> from = view.memory.Read<abi::SelftestReport>(
          abi::MailboxPa(prev) + offsetof(abi::CpuMailbox, selftest));
      std::string sent =
          from.ok()
              ? absl::StrFormat("; CPU %d's code made %d ICR write(s)%s", prev, from->ipis_sent,
                                from->ipis_sent == 1 && rep->ipis_received > 1
                                    ? ": the hypervisor delivered one IPI more than once"
                                    : "")
              : "";
      return Violation(absl::StrFormat(
          "CPU %d: sent its IPI to CPU %d and received %d from CPU %d; expected one each way "
          "(to %d, from %d)%s",
          cpu, rep->ipi_target, rep->ipis_received, rep->ipi_sender, next, prev, sent));
    }
    if (rep->user_trap_cs != x86::kUserCs || image_.UserTextAlias(rep->user_trap_rip) == 0) {
      return Violation(absl::StrFormat(
          "CPU %d: the trap back from user mode came from CS %#x at RIP %#x, expected ring-3 "
          "CS %#x inside the user text",
          cpu, rep->user_trap_cs, rep->user_trap_rip, x86::kUserCs));
    }
    absl::Status s = CheckUserAddressSpace(view.memory, cpu, *rep, row);
    if (!s.ok()) return s;
    for (uint32_t i = 0; i < rep->user_pages; ++i) {
      if (!data_pages.insert(rep->data_pa[i]).second) {
        return Violation(
            absl::StrFormat("CPU %d: user page %#x is also another CPU's", cpu, rep->data_pa[i]));
      }
    }
    rows_.push_back(row);
  }
  return CheckRealCr3(view);
}

absl::StatusOr<SelftestResult> RunSelftest(const Kvm& kvm, const SelftestOptions& options) {
  absl::StatusOr<GuestImage> image = GuestImage::Embedded();
  if (!image.ok()) return image.status();
  VmConfig config = options.vm;
  config.program = abi::Program::kSelftest;
  absl::StatusOr<std::unique_ptr<Vm>> vm = Vm::Create(kvm, *image, config);
  if (!vm.ok()) return vm.status();
  SelftestVerifier verifier((*vm)->image(), config.cpus);
  RunOptions run_options;
  run_options.timeout = options.timeout;
  run_options.verbose = config.verbose;
  run_options.on_checkpoint = [&verifier](const CheckpointView& v) {
    return verifier.OnCheckpoint(v);
  };
  Runner runner(**vm, run_options);
  SelftestResult result;
  result.run = runner.Run();
  result.cpus = verifier.rows();
  result.passed = result.run.outcome == Outcome::kCompleted && result.run.checkpoints_passed == 3 &&
                  result.cpus.size() == static_cast<size_t>(config.cpus);
  if (result.run.outcome == Outcome::kCompleted && !result.passed) {
    result.run.report = absl::StrFormat("the guest finished after %d of 3 self-test checkpoints",
                                        result.run.checkpoints_passed);
  }
  return result;
}

std::string FormatSelftestSummary(const SelftestResult& r, const VmConfig& config,
                                  const KvmHost& host) {
  std::string out = fmt::format("activemm selftest: {} CPUs, {} MiB guest RAM\nhost: {}\n",
                                config.cpus, config.mem_bytes >> 20, host.Summary());
  if (!r.cpus.empty()) {
    out += fmt::format("{:>4} {:>5} {:>7} {:>8} {:>12} {:>12} {:>13}\n", "cpu", "apic", "ipi to",
                       "ipi from", "user trap cs", "user pgd", "pages checked");
    for (const SelftestCpuRow& c : r.cpus) {
      out += fmt::format("{:>4} {:>5} {:>7} {:>8} {:>#12x} {:>#12x} {:>13}\n", c.cpu, c.apic_id,
                         c.ipi_target, c.ipi_sender, c.trap_cs, c.user_pgd_pa, c.pages_verified);
    }
  }
  if (r.passed) {
    int pages = 0, ipis = 0;
    for (const SelftestCpuRow& c : r.cpus) {
      pages += c.pages_verified;
      ipis += static_cast<int>(c.ipis_received);
    }
    out += fmt::format(
        "selftest passed in {:.2f} s: {}/{} CPUs reported in, {} IPIs delivered, {} ring-3 round "
        "trips, {} user pages verified by host page-table walks\n",
        r.run.seconds, r.cpus.size(), config.cpus, ipis, r.cpus.size(), pages);
    out += TlbProbeSummary(r.run.tlb_probe) + "\n";
  } else {
    out += fmt::format("selftest FAILED ({}) after {:.2f} s:\n{}\n", OutcomeName(r.run.outcome),
                       r.run.seconds, r.run.report);
  }
  return out;
}

}  // namespace activemm
