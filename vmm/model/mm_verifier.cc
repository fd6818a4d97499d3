#include "vmm/model/mm_verifier.h"

#include <map>
#include <set>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "shared/page_table.h"
#include "shared/x86.h"
#include "vmm/kvm/guest_report.h"

namespace activemm {
namespace {

using x86::Pte;

constexpr uint64_t kUserHalfEnd = 1ull << 47;
constexpr uint64_t kWalkBudget = 1 << 16;  // present entries per mm; far above any real mm
constexpr size_t kMaxMappingReports = 4;   // per mm, so one broken table does not flood

bool Alive(const abi::TaskStruct& t) {
  return t.state == static_cast<uint32_t>(abi::TaskState::kRunnable) ||
         t.state == static_cast<uint32_t>(abi::TaskState::kRunning);
}

// StrCat, not "[" + string + "]": GCC 12 at -O3 warns -Wrestrict on that (a known false
// positive, GCC bug 105329).
std::string CpuList(const std::vector<int>& cpus) {
  return absl::StrCat("[", absl::StrJoin(cpus, ", "), "]");
}

struct Mapping {
  uint64_t pa;
  uint64_t perms;  // Pte::kPermMask bits
};

}  // namespace

std::string MmVerifier::MmName(int32_t slot) const {
  if (slot >= 0 && slot < static_cast<int32_t>(scenario_.mm_names.size())) {
    return "'" + scenario_.mm_names[slot] + "'";
  }
  return absl::StrFormat("#%d", slot);
}

std::string MmVerifier::TaskName(int32_t index) const {
  if (index >= 0 && index < static_cast<int32_t>(scenario_.task_names.size())) {
    return "'" + scenario_.task_names[index] + "'";
  }
  return absl::StrFormat("#%d", index);
}

std::vector<Violation> MmVerifier::VerifyAll(GuestMemory& mem, const ModelSnapshot& s,
                                             const std::vector<kvm_sregs>& sregs,
                                             const std::vector<bool>& present) const {
  std::vector<Violation> out;
  for (const std::string& p : s.problems) out.push_back({"guest-state", p});
  CheckReferences(s, out);
  CheckRefcounts(s, out);
  CheckCpus(s, sregs, present, out);
  CheckPageTables(mem, s, out);
  return out;
}

void MmVerifier::CheckReferences(const ModelSnapshot& s, std::vector<Violation>& out) const {
  const int32_t num_mms = static_cast<int32_t>(s.mms.size());
  // `who` names the holder only when there is something to report: this runs after every step
  // of a long run, over every task it ever had.
  auto check_ref = [&](auto who, const char* field, int32_t slot) {
    if (slot == abi::kNoMm) return;
    if (slot < 0 || slot >= num_mms || s.mms[slot].state == abi::SlotState::kUnused) {
      out.push_back({"reference", absl::StrFormat("%s: %s is %d, not an mm", who(), field, slot)});
    } else if (s.Freed(slot)) {
      out.push_back({"use-after-free", absl::StrFormat("%s: %s is mm %s, which was freed", who(),
                                                       field, MmName(slot))});
    }
  };
  for (int32_t i = 0; i < static_cast<int32_t>(s.tasks.size()); ++i) {
    const abi::TaskStruct& t = s.tasks[i];
    auto who = [&] { return "task " + TaskName(i); };
    if (t.state == static_cast<uint32_t>(abi::TaskState::kDead)) {
      if (t.mm != abi::kNoMm || t.active_mm != abi::kNoMm) {
        out.push_back({"exit", absl::StrFormat("%s exited but still has mm %d, active_mm %d", who(),
                                               t.mm, t.active_mm)});
      }
      continue;
    }
    if (!Alive(t)) continue;
    check_ref(who, "mm", t.mm);
    check_ref(who, "active_mm", t.active_mm);
    if (t.mm != abi::kNoMm && t.active_mm != t.mm) {
      out.push_back({"active_mm", absl::StrFormat("%s owns mm %s but its active_mm is %s", who(),
                                                  MmName(t.mm), MmName(t.active_mm))});
    }
  }
  for (int c = 0; c < static_cast<int>(s.cpus.size()); ++c) {
    const abi::CpuMmState& cpu = s.cpus[c];
    const std::string who = absl::StrFormat("CPU %d", c);
    check_ref([&] { return who; }, "cpu_tlbstate.loaded_mm", cpu.loaded_mm);
    if (cpu.prev_mm != abi::kNoMm) {
      out.push_back({"prev_mm", absl::StrFormat("%s: rq->prev_mm is still %s between steps "
                                                "(finish_task_switch did not drop it)",
                                                who, MmName(cpu.prev_mm))});
    }
    if (cpu.curr < 0 || cpu.curr >= static_cast<int32_t>(s.tasks.size())) {
      out.push_back({"rq", absl::StrFormat("%s: rq->curr is %d", who, cpu.curr)});
      continue;
    }
    const abi::TaskStruct& curr = s.tasks[cpu.curr];
    if (curr.state != static_cast<uint32_t>(abi::TaskState::kRunning) || curr.on_cpu != c) {
      out.push_back({"rq", absl::StrFormat("%s: rq->curr %s has state %d, on_cpu %d", who,
                                           TaskName(cpu.curr), curr.state, curr.on_cpu)});
    }
    // x86 does not keep active_mm and loaded_mm equal in one case: a lazy CPU that a flush IPI
    // moved to init_mm (leave_mm) while its kernel thread still borrows active_mm.
    const bool left_lazily = curr.mm == abi::kNoMm && cpu.loaded_mm == abi::kInitMm;
    if (curr.active_mm != cpu.loaded_mm && !left_lazily) {
      out.push_back(
          {"active_mm-loaded",
           absl::StrFormat("%s: current task %s has active_mm %s but loaded_mm is %s", who,
                           TaskName(cpu.curr), MmName(curr.active_mm), MmName(cpu.loaded_mm))});
    }
  }
}

void MmVerifier::CheckRefcounts(const ModelSnapshot& s, std::vector<Violation>& out) const {
  const bool lazy_refs = config_.lazy == abi::LazyMode::kOn;
  // init_mm (slot 0) follows the same mm_count rule: its idle tasks and the kernel threads
  // that borrow it hold lazy references, and its own users count as one. Only its mm_users is
  // not derived from tasks (no task owns init_mm), and borrowing it is what lazy-off does.
  // What the tasks hold, per slot, in one pass over them (a long run has thousands of tasks and
  // mms, and this runs after every step).
  struct Holders {
    int users = 0, lazy = 0, holds = 0;
  };
  const int32_t num_mms = static_cast<int32_t>(s.mms.size());
  std::vector<Holders> held(num_mms);
  for (const abi::TaskStruct& t : s.tasks) {
    if (!Alive(t)) continue;
    if (t.mm >= 0 && t.mm < num_mms) {
      ++((t.flags & abi::kPfUsingMm) ? held[t.mm].holds : held[t.mm].users);
    } else if (t.mm == abi::kNoMm && t.active_mm >= 0 && t.active_mm < num_mms) {
      ++held[t.active_mm].lazy;
    }
  }
  for (int32_t slot = 0; slot < num_mms; ++slot) {
    if (!s.Live(slot)) continue;
    const abi::MmStruct& mm = s.Mm(slot);
    const bool init = slot == abi::kInitMm;
    int users = held[slot].users, parked = 0;
    const int lazy = held[slot].lazy, holds = held[slot].holds;
    // Named only for a report.
    auto borrowers = [&] {
      std::vector<std::string> names;
      for (int32_t i = 0; i < static_cast<int32_t>(s.tasks.size()); ++i) {
        const abi::TaskStruct& t = s.tasks[i];
        if (Alive(t) && t.mm == abi::kNoMm && t.active_mm == slot) names.push_back(TaskName(i));
      }
      return names;
    };
    for (const abi::CpuMmState& c : s.cpus) parked += c.prev_mm == slot;
    if (init) users = mm.mm_users;
    if (mm.mm_users != users) {
      out.push_back({"mm_users", absl::StrFormat("mm %s: mm_users is %d, but %d live tasks own it",
                                                 MmName(slot), mm.mm_users, users)});
    }
    if (!init && config_.lazy == abi::LazyMode::kOff && lazy > 0) {
      out.push_back(
          {"lazy-tlb-off", absl::StrFormat("mm %s is borrowed by %s with lazy TLB off",
                                           MmName(slot), absl::StrJoin(borrowers(), ", "))});
    }
    const int want = (users > 0) + (lazy_refs ? lazy + parked : 0) + holds;
    if (mm.mm_count != want) {
      out.push_back(
          {"mm_count",
           absl::StrFormat(
               "mm %s: mm_count is %d, expected %d = (mm_users > 0: %d) + "
               "lazy borrowers %d%s + parked rq->prev_mm %d + "
               "kthread_use_mm holds %d",
               MmName(slot), mm.mm_count, want, users > 0 ? 1 : 0, lazy_refs ? lazy : 0,
               lazy == 0 || !lazy_refs ? "" : " (" + absl::StrJoin(borrowers(), ", ") + ")",
               lazy_refs ? parked : 0, holds)});
    }
    if (mm.mm_users > 0 && mm.mm_count < 1) {
      out.push_back({"mm_count", absl::StrFormat("mm %s: mm_users %d > 0 but mm_count %d",
                                                 MmName(slot), mm.mm_users, mm.mm_count)});
    } else if (mm.mm_count <= 0) {
      out.push_back({"mm_count", absl::StrFormat("mm %s: mm_count is %d but the mm was not freed",
                                                 MmName(slot), mm.mm_count)});
    }
  }
}

void MmVerifier::CheckCpus(const ModelSnapshot& s, const std::vector<kvm_sregs>& sregs,
                           const std::vector<bool>& present, std::vector<Violation>& out) const {
  for (int c = 0; c < static_cast<int>(s.cpus.size()); ++c) {
    const abi::CpuMmState& cpu = s.cpus[c];
    const int32_t loaded = cpu.loaded_mm;
    if (!s.Live(loaded)) continue;  // reported by CheckReferences
    const abi::MmStruct& mm = s.Mm(loaded);
    if (loaded != abi::kInitMm && !cpu.is_lazy && !(mm.cpumask & (1ull << c))) {
      out.push_back({"mm_cpumask",
                     absl::StrFormat("CPU %d has mm %s loaded and is not lazy, but is not in its "
                                     "mm_cpumask %#x",
                                     c, MmName(loaded), mm.cpumask)});
    }
    // After every shootdown has completed, a CPU that runs on the mm (not lazy) has caught up
    // with its generation; only lazy CPUs may be behind, until their next switch to it, and a
    // CPU whose flush IPI has not landed yet (a replayed trace shows it switching first).
    if (loaded != abi::kInitMm && !cpu.is_lazy && !cpu.late_ipi_pending &&
        cpu.loaded_mm_asid < abi::kMaxAsids && cpu.ctxs[cpu.loaded_mm_asid].tlb_gen != mm.tlb_gen) {
      out.push_back({"tlb_gen", absl::StrFormat("CPU %d runs on mm %s (not lazy) with its ASID %d "
                                                "at tlb_gen %d, but the mm is at %d: a flush "
                                                "was missed",
                                                c, MmName(loaded), cpu.loaded_mm_asid,
                                                cpu.ctxs[cpu.loaded_mm_asid].tlb_gen, mm.tlb_gen)});
    }
    if (cpu.loaded_mm_asid >= abi::kMaxAsids || cpu.ctxs[cpu.loaded_mm_asid].ctx_id != mm.ctx_id) {
      out.push_back({"asid", absl::StrFormat("CPU %d: ASID %d does not hold mm %s (ctx_id %d)", c,
                                             cpu.loaded_mm_asid, MmName(loaded), mm.ctx_id)});
    }
    if (c < static_cast<int>(present.size()) && present[c]) {
      const uint16_t pcid = config_.pcid == abi::PcidMode::kHardware ? cpu.loaded_mm_asid + 1 : 0;
      const x86::Cr3 want = x86::Cr3::Make(mm.pgd_pa, pcid, false);
      const x86::Cr3 real = x86::Cr3::FromRaw(sregs[c].cr3);
      if (real.root() != want.root() || real.pcid() != want.pcid()) {
        out.push_back(
            {"cr3", absl::StrFormat("CPU %d: real CR3 (KVM_GET_SREGS) is %#x, but "
                                    "loaded_mm %s needs %#x (pgd %#x, PCID %d)",
                                    c, sregs[c].cr3, MmName(loaded), want.raw(), mm.pgd_pa, pcid)});
      }
    }
  }
}

void MmVerifier::CheckPageTables(GuestMemory& mem, const ModelSnapshot& s,
                                 std::vector<Violation>& out) const {
  const uint64_t* swapper = mem.Table(config_.swapper_pgd_pa);
  if (swapper == nullptr) {
    out.push_back({"page-tables", absl::StrFormat("init_mm's pgd %#x is not in guest RAM",
                                                  config_.swapper_pgd_pa)});
    return;
  }
  const uint64_t text_va = abi::kUserTextVa;
  const uint64_t text_pa = image_.UserTextAlias(text_va) - abi::kKernelTextBase;
  const uint64_t text_size = image_.user_text_size();
  std::map<uint64_t, std::string> page_owner;  // data page pa -> "mm 'A' va 0x..."
  std::vector<uint64_t> words(x86::kPageSize / 8);
  for (int32_t slot = 0; slot < static_cast<int32_t>(s.mms.size()); ++slot) {
    if (!s.Live(slot)) continue;
    const abi::MmStruct& mm = s.Mm(slot);
    const std::string name = MmName(slot);
    const uint64_t* pgd = mem.Table(mm.pgd_pa);
    if (pgd == nullptr) {
      out.push_back({"page-tables", absl::StrFormat("mm %s: pgd %#x is not a page in guest RAM",
                                                    name, mm.pgd_pa)});
      continue;
    }
    for (int i = abi::kFirstKernelPml4Index; i < x86::kEntriesPerTable; ++i) {
      if (pgd[i] != swapper[i]) {
        out.push_back(
            {"kernel-half", absl::StrFormat("mm %s: PML4 entry %d is %#x, init_mm has %#x", name, i,
                                            pgd[i], swapper[i])});
        break;
      }
    }
    // What the mm's own list says is mapped.
    std::map<uint64_t, Mapping> want;
    if (slot != abi::kInitMm && mm.ctl_pa != 0) {
      for (uint64_t off = 0; off < text_size; off += x86::kPageSize) {
        want[text_va + off] = {text_pa + off, Pte::kUser};
      }
      const uint64_t rw = Pte::kUser | Pte::kWritable | Pte::kNoExecute;
      want[abi::kUserCtlVa] = {mm.ctl_pa, rw};
      want[abi::kUserStackTopVa - x86::kPageSize] = {mm.stack_pa, rw};
      for (uint32_t i = 0; i < mm.nr_pages; ++i) {
        const abi::UserPage& p = mm.pages[i];
        if (p.state != static_cast<uint32_t>(abi::PageState::kMapped)) continue;
        want[p.va] = {p.pa, Pte::kUser | Pte::kNoExecute |
                                ((p.prot & abi::kPageWritable) ? Pte::kWritable : 0)};
      }
    }
    // What the page table really maps.
    std::map<uint64_t, Mapping> have;
    PageTable<GuestMemory> pt(mem, mm.pgd_pa);
    PtStatus st = pt.ForEachLeaf(0, kUserHalfEnd, kWalkBudget, [&](uint64_t va, Pte e, int level) {
      have[va] = {e.addr(),
                  (e.raw() & Pte::kPermMask & ~Pte::kPresent) | (level > 1 ? Pte::kHuge : 0)};
      return true;
    });
    if (st != PtStatus::kOk) {
      out.push_back({"page-tables",
                     absl::StrFormat("mm %s: walking the user half: %s", name, PtStatusName(st))});
      continue;
    }
    size_t reported = 0;
    for (const auto& [va, m] : want) {
      auto it = have.find(va);
      if (reported >= kMaxMappingReports) break;
      if (it == have.end()) {
        out.push_back({"mapping",
                       absl::StrFormat("mm %s: va %#x should map pa %#x (%s) but is "
                                       "not mapped",
                                       name, va, m.pa, DescribePtePerms(m.perms | Pte::kPresent))});
        ++reported;
      } else if (it->second.pa != m.pa || it->second.perms != m.perms) {
        out.push_back(
            {"mapping", absl::StrFormat("mm %s: va %#x maps pa %#x (%s), its list says "
                                        "pa %#x (%s)",
                                        name, va, it->second.pa,
                                        DescribePtePerms(it->second.perms | Pte::kPresent), m.pa,
                                        DescribePtePerms(m.perms | Pte::kPresent))});
        ++reported;
      }
    }
    for (const auto& [va, m] : have) {
      if (reported >= kMaxMappingReports) break;
      if (want.count(va) == 0) {
        out.push_back({"mapping",
                       absl::StrFormat("mm %s: va %#x maps pa %#x (%s), which is not "
                                       "in its mapping list (left behind by munmap or "
                                       "exit?)",
                                       name, va, m.pa, DescribePtePerms(m.perms | Pte::kPresent))});
        ++reported;
      }
    }
    // Contents and ownership of the data pages.
    for (uint32_t i = 0; i < mm.nr_pages; ++i) {
      const abi::UserPage& p = mm.pages[i];
      if (p.state != static_cast<uint32_t>(abi::PageState::kMapped)) continue;
      const std::string where = absl::StrFormat("mm %s va %#x", name, p.va);
      auto [it, inserted] = page_owner.emplace(p.pa, where);
      if (!inserted) {
        out.push_back({"page-shared", absl::StrFormat("pa %#x is mapped by %s and by %s", p.pa,
                                                      it->second, where)});
      }
      if (!mem.ReadBytes(p.pa, words.data(), x86::kPageSize).ok()) {
        out.push_back({"mapping", absl::StrFormat("%s: pa %#x outside RAM", where, p.pa)});
        continue;
      }
      for (size_t w = 0; w < words.size(); ++w) {
        const uint64_t va = p.va + w * 8;
        const uint64_t expect = p.tag == 0 ? 0 : (p.tag ^ va);
        if (words[w] != expect) {
          out.push_back({"page-content",
                         absl::StrFormat("%s: word at va %#x holds %#x, its last writer left %#x",
                                         where, va, words[w], expect)});
          break;
        }
      }
    }
  }
}

std::vector<Violation> MmVerifier::Evaluate(const HostCheck& check, const ModelSnapshot& s) const {
  std::vector<Violation> out;
  if (!check.AppliesTo(config_.lazy, config_.pcid)) return out;
  const std::string where = absl::StrFormat(
      "step %d (%s)", check.step_index,
      check.step_index >= 0 && check.step_index < static_cast<int>(scenario_.step_ops.size())
          ? scenario_.step_ops[check.step_index]
          : "final");
  auto fail = [&](const std::string& msg) {
    out.push_back({"check", where + ": " + msg, check.step_index});
  };
  if (check.kind == HostCheck::Kind::kCounters) {
    abi::MmCounters c;
    std::string scope = "totals";
    if (check.cpu.has_value()) {
      if (*check.cpu < 0 || *check.cpu >= static_cast<int>(s.cpus.size())) {
        fail(absl::StrFormat("no CPU %d", *check.cpu));
        return out;
      }
      c = s.cpus[*check.cpu].counters;
      scope = absl::StrFormat("CPU %d", *check.cpu);
    } else {
      c = TotalCounters(s);
    }
    const std::vector<std::string>& names = MmCounterNames();
    for (const auto& [name, value] : check.counters) {
      for (int i = 0; i < static_cast<int>(names.size()); ++i) {
        if (names[i] != name) continue;
        const uint64_t got = CounterValue(c, i);
        if (got != value)
          fail(absl::StrFormat("%s %s is %d, expected %d", scope, name, got, value));
      }
    }
    return out;
  }
  if (check.kind != HostCheck::Kind::kCheck) return out;

  int32_t slot = abi::kNoMm;
  std::string subject;
  if (check.mm_slot.has_value()) {
    slot = *check.mm_slot;
    subject = "mm " + MmName(slot);
  } else if (check.task.has_value()) {
    const int32_t t = *check.task;
    if (t < 0 || t >= static_cast<int32_t>(s.tasks.size())) {
      fail(absl::StrFormat("task %s is not in the guest", TaskName(t)));
      return out;
    }
    slot = s.tasks[t].active_mm;
    if (slot == abi::kNoMm) {
      fail(absl::StrFormat("task %s has no active_mm", TaskName(t)));
      return out;
    }
    subject = absl::StrFormat("mm %s (active_mm of task %s)", MmName(slot), TaskName(t));
  }
  if (slot < 0 || slot >= static_cast<int32_t>(s.mms.size())) {
    fail(subject + " does not exist in the guest");
    return out;
  }
  const bool freed = s.Freed(slot);
  if (check.freed.has_value() && *check.freed != freed) {
    fail(absl::StrFormat("%s is %s, expected %s", subject, freed ? "freed" : "not freed",
                         *check.freed ? "freed" : "not freed"));
  }
  const int64_t users = freed ? 0 : s.Mm(slot).mm_users;
  const int64_t count = freed ? 0 : s.Mm(slot).mm_count;
  if (!freed && !s.Live(slot)) {
    fail(subject + " is not readable");
    return out;
  }
  if (check.mm_users.has_value() && *check.mm_users != users) {
    fail(absl::StrFormat("%s: mm_users is %d, expected %d", subject, users, *check.mm_users));
  }
  if (check.mm_count.has_value() && *check.mm_count != count) {
    fail(absl::StrFormat("%s: mm_count is %d, expected %d", subject, count, *check.mm_count));
  }
  std::vector<int> loaded, lazy;
  for (int c = 0; c < static_cast<int>(s.cpus.size()); ++c) {
    if (s.cpus[c].loaded_mm != slot) continue;
    loaded.push_back(c);
    if (s.cpus[c].is_lazy) lazy.push_back(c);
  }
  if (check.loaded_on.has_value() && *check.loaded_on != loaded) {
    fail(absl::StrFormat("%s is loaded on CPUs %s, expected %s", subject, CpuList(loaded),
                         CpuList(*check.loaded_on)));
  }
  if (check.lazy_on.has_value() && *check.lazy_on != lazy) {
    fail(absl::StrFormat("%s is lazily loaded on CPUs %s, expected %s", subject, CpuList(lazy),
                         CpuList(*check.lazy_on)));
  }
  return out;
}

}  // namespace activemm
