// A user task's run in ring 3 (see user_burst in guest/arch/user_text.S): the hardware walks the
// task's loaded page table for every page it owns, so a wrong CR3, a page shared between parent
// and child after fork, a mapping left behind by munmap or a write allowed by mprotect shows up
// as a wrong word or a missing fault, which the guest reports.
#include "guest/arch/hypercall.h"
#include "guest/arch/user_mode.h"
#include "guest/kernel/model.h"
#include "shared/x86.h"

extern "C" char user_burst[], user_probe_read[], user_probe_read_resume[];
extern "C" char user_probe_write[], user_probe_write_resume[];

namespace activemm::guest {
namespace {

uint64_t UserVa(const char* symbol) {
  return abi::kUserTextVa + static_cast<uint64_t>(symbol - __user_text_start);
}

// What every word of page `index` holds after this burst: unique per mm (ctx_id), page and
// burst, so a word from another mm or an older burst never passes for the right one.
uint64_t MakeTag(const MmStruct* mm, uint32_t index) {
  return (mm->ctx_id << 40) | (uint64_t{index} << 32) | mm->generation;
}

}  // namespace

bool HandleUserProbeFault(TrapFrame& f, uint64_t cr2) {
  // Only the two probe instructions, and only for the address they probe.
  if (cr2 != f.rax) return false;
  if (f.rip == UserVa(user_probe_read)) {
    f.rip = UserVa(user_probe_read_resume);
  } else if (f.rip == UserVa(user_probe_write)) {
    f.rip = UserVa(user_probe_write_resume);
  } else {
    return false;
  }
  f.r11 = 1;
  return true;
}

void run_user_burst() {
  TaskStruct* t = current();
  const int32_t slot = t->mm;
  MmStruct* mm = Mm(slot);
  GUEST_CHECK_VALUES(this_rq()->loaded_mm == slot, 2, static_cast<uint64_t>(slot),
                     static_cast<uint64_t>(this_rq()->loaded_mm));
  auto* ctl = static_cast<abi::UserControl*>(PhysToVirt(mm->ctl_pa));
  ++mm->generation;
  uint32_t n = 0;
  for (uint32_t i = 0; i < mm->nr_pages; ++i) {
    abi::UserPage& p = mm->pages[i];
    abi::UserWork& w = ctl->work[n++];
    w.va = p.va;
    w.expect_tag = p.tag;
    if (p.state == static_cast<uint32_t>(abi::PageState::kUnmapped)) {
      w.kind = static_cast<uint32_t>(abi::UserWorkKind::kMustFault);
    } else if (p.prot & abi::kPageWritable) {
      w.kind = static_cast<uint32_t>(abi::UserWorkKind::kVerifyAndRewrite);
      p.tag = w.new_tag = MakeTag(mm, i);
    } else {
      w.kind = static_cast<uint32_t>(abi::UserWorkKind::kVerifyOnly);
      w.new_tag = p.tag;
    }
  }
  ctl->num_work = n;
  ctl->bad_words = 0;
  ctl->missing_faults = 0;
  RunUser(UserEntry{.rip = UserVa(user_burst),
                    .rsp = abi::kUserStackTopVa,
                    .rdi = abi::kUserCtlVa,
                    .rsi = 0,
                    .rdx = 0});
  ++counters().user_bursts;
  if (ctl->bad_words != 0) {
    Panic(__FILE__, __LINE__,
          "ring 3 read wrong words from its pages (mm slot, bad words, va, value)", 4,
          static_cast<uint64_t>(slot), ctl->bad_words, ctl->first_bad_va, ctl->first_bad_value);
  }
  if (ctl->missing_faults != 0) {
    Panic(__FILE__, __LINE__,
          "ring 3 accessed unmapped or read-only pages without a fault (mm slot, count)", 2,
          static_cast<uint64_t>(slot), ctl->missing_faults);
  }
}

}  // namespace activemm::guest
