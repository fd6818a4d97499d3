// activemm: Linux's mm / active_mm / lazy-TLB behaviour on real x86-64 page tables under KVM.
// The command line is parsed here only (vmm/cli/command_line.h, against the tables below) and
// passed down as config structs.
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "fmt/core.h"
#include "vmm/cli/command_line.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/kvm/unique_fd.h"
#include "vmm/model/report.h"
#include "vmm/model/scenario.h"
#include "vmm/model/scenario_run.h"
#include "vmm/replay/capture.h"
#include "vmm/replay/replay.h"
#include "vmm/tools/cost.h"
#include "vmm/tools/selftest.h"
#include "vmm/tools/timeline.h"

namespace activemm {
namespace {

// ---- the command line: commands, flags and their help ------------------------------------------

// One value of a flag that picks from a table: the table serves the parsing, the error message
// and the help alike.
template <typename T>
struct Named {
  const char* name;
  T value;
  const char* help;
  bool test_hook = false;  // FlagChoice::test_hook: named on the help's "test hooks" line only
};

// --inject for selftest: a guest failure planted on purpose (shared/abi.h Inject).
constexpr Named<abi::Inject> kSelftestInjects[] = {
    {"none", abi::Inject::kNone, "nothing planted"},
    {"kernel-fault", abi::Inject::kKernelFault,
     "CPU 0 reads an unmapped kernel address in ring 0 (#PF)"},
    {"user-fault", abi::Inject::kUserFault,
     "the last CPU's ring-3 code writes to an unmapped user page (#PF)"},
    {"spin", abi::Inject::kSpin,
     "the last CPU spins with interrupts off after reporting in (watchdog)"},
    {"panic", abi::Inject::kPanic, "CPU 0 fails a GUEST_CHECK"},
    {"verify-storm", abi::Inject::kVerifyStorm,
     "every CPU asks the host to verify, all at once, many times"},
};

// --inject for the commands that run the mm model: a bug planted in it (shared/mm_abi.h MmBug).
constexpr Named<abi::MmBug> kMmBugs[] = {
    {"none", abi::MmBug::kNone, "nothing planted"},
    {"skip-lazy-mmgrab", abi::MmBug::kSkipLazyMmgrab,
     "a user -> kernel switch takes no lazy reference"},
    {"double-mmdrop", abi::MmBug::kDoubleMmdrop, "finish_task_switch drops rq->prev_mm twice"},
    {"forget-prev-mm", abi::MmBug::kForgetPrevMm,
     "a kernel -> user switch does not park the borrowed mm in rq->prev_mm"},
    {"no-cpumask", abi::MmBug::kNoCpumask, "switch_mm_irqs_off never sets the CPU in mm_cpumask"},
    {"wrong-cr3", abi::MmBug::kWrongCr3,
     "loading init_mm keeps the previous mm's page table in CR3"},
    {"fork-shares-page", abi::MmBug::kForkSharesPage,
     "dup_mm maps the parent's first page into the child instead of a copy"},
    {"munmap-keeps-pte", abi::MmBug::kMunmapKeepsPte,
     "munmap frees the pages but leaves their PTEs in place"},
    {"skip-ipi", abi::MmBug::kSkipIpiNonLazy,
     "flush_tlb_mm_range sends no IPI to a non-lazy CPU using the mm"},
    {"no-tlb-gen-check", abi::MmBug::kNoTlbGenCheck,
     "back from lazy mode to the same mm: no tlb_gen check, no flush"},
    {"asid-no-flush", abi::MmBug::kAsidNoFlush,
     "choose_new_asid reuses a slot for another mm without a flush"},
    {"slow-steps", abi::MmBug::kSlowSteps,
     "not a bug, for tests: every step first spins about 1 ms, so a long program takes long"},
    {"stall", abi::MmBug::kStallHalfway,
     "not a bug, for tests: the guest stops making progress at the middle step (watchdog)"},
    // A hostile guest (guest/programs/hostile.h; docs/architecture.md "A hostile guest"): at the
    // middle step the guest corrupts what the host reads, to test that the host reports it and
    // survives. Test hooks, not bugs of the model.
    {"hostile-task-index", abi::MmBug::kHostileTaskIndex,
     "task and mm indices out of range in a run-queue and a task", true},
    {"hostile-mm-slot", abi::MmBug::kHostileMmSlot,
     "an mm slot whose mm_struct is outside RAM, and a slot in no known state", true},
    {"hostile-directory", abi::MmBug::kHostileDirectory, "the model directory points outside RAM",
     true},
    {"hostile-counts", abi::MmBug::kHostileCounts,
     "refcounts at INT32_MAX/MIN, tlb_gen and counters near 2^64", true},
    {"hostile-pt-self", abi::MmBug::kHostilePtSelf, "a PML4 entry pointing at its own table page",
     true},
    {"hostile-pt-cycle", abi::MmBug::kHostilePtCycle,
     "a PDPT entry pointing back at the PML4 above it", true},
    {"hostile-pt-outside", abi::MmBug::kHostilePtOutside, "a PML4 entry whose table is outside RAM",
     true},
    {"hostile-pgd", abi::MmBug::kHostilePgd, "an mm's pgd_pa outside RAM", true},
    {"hostile-cr3", abi::MmBug::kHostileCr3, "the real CR3 loaded with a root outside RAM", true},
    {"hostile-string", abi::MmBug::kHostileString,
     "log and panic strings without a terminator, counts past their arrays", true},
    {"hostile-flood", abi::MmBug::kHostileFlood, "hypercalls in a loop and no step done (watchdog)",
     true},
    {"hostile-fill", abi::MmBug::kHostileFill,
     "a fill hypercall for a range that wraps past the end of the address space", true},
};

// --lazy-tlb (shared/mm_abi.h LazyMode).
constexpr Named<abi::LazyMode> kLazyModes[] = {
    {"on", abi::LazyMode::kOn,
     "Linux today: a kernel thread borrows the previous mm, no CR3 write (lazy reference)"},
    {"off", abi::LazyMode::kOff, "no lazy TLB: kernel threads load init_mm"},
    {"shootdown", abi::LazyMode::kShootdown,
     "MMU_LAZY_TLB_SHOOTDOWN (powerpc): lazy CPUs hold no reference"},
};

template <typename T, size_t N>
std::vector<FlagChoice> Choices(const Named<T> (&table)[N]) {
  std::vector<FlagChoice> out;
  for (const Named<T>& n : table) out.push_back({n.name, n.help, n.test_hook});
  return out;
}

// The value named `name`; the parser has already refused names not in the table.
template <typename T, size_t N>
T Lookup(const Named<T> (&table)[N], const std::string& name) {
  for (const Named<T>& n : table) {
    if (name == n.name) return n.value;
  }
  return table[0].value;
}

// What each exit status means (vmm/cli/exit_codes.h), for the help.
std::string ExitStatuses() {
  static const std::pair<ExitCode, const char*> kMeanings[] = {
      {kExitOk, "everything ran and every check passed"},
      {kExitCheckFailed, "an expectation failed, or the verifier found an invariant broken"},
      {kExitUsage, "bad command line or input (a flag, a scenario, a trace folder)"},
      {kExitGuestFailed,
       "guest failure: unexpected exception, panic, triple fault, emulation failure"},
      {kExitWatchdog, "watchdog: no guest progress within --timeout"},
      {kExitNoKvm, "no usable KVM (/dev/kvm missing, no permission, unsuitable)"},
      {kExitHostError,
       "a KVM call failed unexpectedly; capture: not root, no tracefs, an I/O error"},
  };
  std::string out = "Exit status:\n";
  for (const auto& [code, meaning] : kMeanings) {
    absl::StrAppend(&out, "  ", code, "  ", meaning, "\n");
  }
  absl::StrAppend(&out,
                  "  128+N  stopped by signal N (130 SIGINT, 143 SIGTERM, 129 SIGHUP); nothing "
                  "written\n");
  return out;
}

const CommandLine& Grammar() {
  static const CommandLine* const kGrammar = [] {
    std::vector<CommandSpec> commands = {
        {.name = "selftest",
         .summary = "boot the guest on --cpus vCPUs: every CPU reports in, sends and receives an "
                    "IPI and makes a ring-3 round trip on its own page table; the host verifies "
                    "it all",
         .description =
             "Boots the guest on --cpus vCPUs. Every CPU reports in, sends an IPI to the next\n"
             "CPU and receives one, then enters ring 3 on a page table of its own, writes and\n"
             "reads back its user pages and traps back. The host checks each report: the real\n"
             "CR3 of every vCPU, the IPI ring, the ring-3 trap frame and, walking the guest's\n"
             "page tables itself, that every user page maps the page the guest reported and\n"
             "holds what ring 3 wrote. It exits 0 only if all of it happened; a guest exception,\n"
             "a failed guest check or a CPU that makes no progress is reported with that CPU's\n"
             "registers.\n"},
        {.name = "run",
         .args = "[SCENARIO.json|SCENARIO.py]",
         .summary = "run a scenario (default: the built-in one) on real vCPUs with the verifier "
                    "on; per-CPU and total counters, checks and violations",
         .description =
             "Runs a scenario (docs/scenarios.md): processes, threads, kernel threads, fork,\n"
             "exec, exit, kthread_use_mm, mmap/munmap/mprotect, switched on real vCPUs by a guest\n"
             "that follows Linux's context_switch() and switch_mm_irqs_off(); without SCENARIO,\n"
             "the built-in one. The host verifies the refcount invariants, every vCPU's CR3 and\n"
             "every mm's page tables at each check, and prints per-CPU counters: context switches\n"
             "by case, CR3 writes, INVLPGs, IPIs, lazy-TLB entries, grabs and drops.\n"
             "\n"
             "A .py scenario is run by /usr/bin/python3 and prints the JSON. It can import\n"
             "activemm_scenario from any folder: the scripts folder ($ACTIVEMM_SCRIPTS, else this\n"
             "source tree's) comes first on its PYTHONPATH.\n",
         .max_args = 1},
        {.name = "compare",
         .args = "[SCENARIO.json|SCENARIO.py]",
         .summary = "run a scenario with lazy TLB on, shootdown and off, under each PCID mode this "
                    "host has, side by side, with the CR3 writes saved",
         .description =
             "Runs the scenario (default: the built-in one) once per mode: lazy TLB on, shootdown\n"
             "and off, under each PCID mode this host has (real PCIDs where the CPU offers them,\n"
             "modeled, off; only the one --pcid names, if given), and prints the counters side by\n"
             "side with the CR3 writes each lazy mode saves against lazy TLB off\n"
             "(docs/report.md).\n",
         .max_args = 1},
        {.name = "stress",
         .summary = "generate a seeded random scenario (scripts/stress_gen.py, with parallel "
                    "blocks) and run it with the verifier after every step",
         .description =
             "Generates a random scenario of --steps model steps on --cpus CPUs, with parallel\n"
             "blocks, from --seed (scripts/stress_gen.py of $ACTIVEMM_SCRIPTS or this source\n"
             "tree; the same seed gives the same scenario), and runs it with the verifier after\n"
             "every step.\n"},
        {.name = "replay",
         .args = "DIR",
         .summary = "replay a captured Linux trace on the vCPUs and score the emulator's CR3 loads "
                    "against the kernel's own",
         .description =
             "Replays the trace folder DIR (written by capture, as in ../shared/traces) on the\n"
             "vCPUs, event by event, one vCPU per traced CPU: each pid a task, the threads of a\n"
             "tgid on one mm, fork/exec/exit and the kernel's TLB flushes replayed, the verifier\n"
             "on. It scores the emulator's CR3 loads against the kernel's own (its tlb_flush\n"
             "\"flush on task switch\" lines): precision, recall, flush accuracy and the\n"
             "disagreements by class (docs/replay.md).\n",
         .max_args = 1},
        {.name = "capture",
         .args = "OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]",
         .summary = "record a real Linux trace (ftrace: sched_switch, fork, exec, exit, "
                    "tlb_flush) while COMMAND runs, into the new folder OUT_DIR (root)",
         .description =
             "Records a real Linux trace with ftrace (sched_switch, fork, exec, exit and\n"
             "tlb_flush, with TGIDs) while COMMAND runs, into the new folder OUT_DIR: trace.txt,\n"
             "tgids.txt, kthreads.txt and kernel.txt, what replay reads. It needs root, mounts\n"
             "tracefs if it is not mounted and puts every tracefs setting back afterwards;\n"
             "COMMAND's exit status is printed and its trace kept. Everything after -- is\n"
             "COMMAND and its arguments, untouched.\n",
         .max_args = -1},
        {.name = "cost",
         .summary = "measure the guest's cost of each context-switch case, lazy TLB on and off: "
                    "TSC cycles and, where KVM counts them, ring-0 instructions",
         .description =
             "Measures in the guest the cost of one context switch per case (user -> kernel\n"
             "thread, kernel thread -> user, user -> user, ...), lazy TLB on and off (or the one\n"
             "mode --lazy-tlb names): TSC cycles and, where KVM exposes binary statistics and\n"
             "emulates ring 0, the exact number of ring-0 instructions (docs/costs.md).\n"},
        {.name = "help",
         .args = "[COMMAND]",
         .summary = "this list, or what COMMAND does and its flags",
         .description = "Prints the list of commands, or COMMAND's usage, what it does and its "
                        "flags.\n",
         .max_args = 1},
        // `activemm __prime N`: capture's own helper (vmm/replay/capture.h PrimeStep).
        {.name = "__prime", .max_args = 1, .hidden = true},
    };
    const std::vector<std::string> guest = {"selftest", "run",    "compare",
                                            "stress",   "replay", "cost"};
    const std::vector<std::string> model = {"run", "compare", "stress", "replay"};
    const std::vector<std::string> asid_model = {"run", "compare", "stress", "replay", "cost"};
    const std::vector<FlagChoice> pcid_choices = {
        {"auto", "real PCIDs where CPUID offers PCID, else modeled"},
        {"modeled", "the ASID decisions computed and counted, CR3 loaded without PCID bits"},
        {"off", "ASID 0: every mm switch flushes"},
    };
    std::vector<FlagSpec> flags = {
        {.name = "cpus",
         .kind = FlagKind::kInt,
         .value_name = "N",
         .commands = {"selftest", "stress"},
         .default_value = "4",
         .help = "number of vCPUs, the simulated CPUs",
         .min = 1,
         .max = abi::kMaxCpus},
        {.name = "cpus",
         .kind = FlagKind::kInt,
         .value_name = "N",
         .commands = {"run", "compare"},
         .default_text = "the scenario's \"cpus\"",
         .help = "number of vCPUs, the simulated CPUs",
         .min = 1,
         .max = abi::kMaxCpus},
        {.name = "cpus",
         .kind = FlagKind::kInt,
         .commands = {"replay"},
         .refusal = "replay runs one vCPU per traced CPU (the trace's #P:)"},
        {.name = "seed",
         .kind = FlagKind::kUint64,
         .value_name = "S",
         .commands = {"stress"},
         .default_value = "1",
         .help = "the generator's seed"},
        {.name = "steps",
         .kind = FlagKind::kInt,
         .value_name = "K",
         .commands = {"stress"},
         .default_value = "2000",
         .help = "model steps to generate",
         .min = 1,
         .max = 1000000},
        {.name = "lazy-tlb",
         .kind = FlagKind::kChoice,
         .value_name = "MODE",
         .commands = {"run", "stress"},
         .default_text = "the scenario's \"lazy_tlb\": on unless it says false",
         .help = "the lazy TLB mode",
         .choices = Choices(kLazyModes)},
        {.name = "lazy-tlb",
         .kind = FlagKind::kChoice,
         .value_name = "MODE",
         .commands = {"replay"},
         .default_value = "on",
         .help = "the lazy TLB mode",
         .choices = Choices(kLazyModes)},
        {.name = "lazy-tlb",
         .kind = FlagKind::kChoice,
         .value_name = "MODE",
         .commands = {"cost"},
         .default_text = "on and off, one after the other",
         .help = "measure this lazy TLB mode only",
         .choices = Choices(kLazyModes)},
        {.name = "lazy-tlb",
         .kind = FlagKind::kChoice,
         .commands = {"compare"},
         .refusal = "compare runs every lazy mode (on, shootdown, off); use run for one"},
        {.name = "pcid",
         .kind = FlagKind::kChoice,
         .value_name = "MODE",
         .commands = {"run", "stress", "replay", "cost"},
         .default_value = "auto",
         .help = "the ASID model",
         .choices = pcid_choices},
        {.name = "pcid",
         .kind = FlagKind::kChoice,
         .value_name = "MODE",
         .commands = {"compare"},
         .default_value = "auto",
         .default_text = "auto, which runs each PCID mode this host has: real PCIDs where CPUID "
                         "offers PCID, modeled, off",
         .help = "run under this ASID model only",
         .choices = pcid_choices},
        {.name = "asids",
         .kind = FlagKind::kInt,
         .value_name = "N",
         .commands = asid_model,
         .default_value = "6",
         .help = "per-CPU dynamic ASID slots (TLB_NR_DYN_ASIDS)",
         .min = 1,
         .max = 16},
        {.name = "inject",
         .kind = FlagKind::kChoice,
         .value_name = "FAILURE",
         .commands = {"selftest"},
         .default_value = "none",
         .help = "plant a guest failure, to show it is reported",
         .choices = Choices(kSelftestInjects)},
        {.name = "inject",
         .kind = FlagKind::kChoice,
         .value_name = "BUG",
         .commands = model,
         .default_value = "none",
         .help = "plant a known bug in the mm model, to show the verifier catches it",
         .choices = Choices(kMmBugs)},
        {.name = "verify",
         .kind = FlagKind::kChoice,
         .value_name = "WHEN",
         .commands = {"run", "compare", "replay"},
         .default_value = "end",
         .help = "when the host verifies, besides check and checkpoint steps",
         .choices = {{"end", "at the end of the run"}, {"every-step", "after every step"}}},
        {.name = "verify",
         .kind = FlagKind::kChoice,
         .commands = {"stress"},
         .refusal = "stress always verifies after every step"},
        {.name = "iterations",
         .kind = FlagKind::kInt,
         .value_name = "N",
         .commands = {"cost"},
         .default_value = "200",
         .help = "measured switches per case and mode",
         .min = 1,
         .max = abi::kMaxCostIterations},
        {.name = "json",
         .kind = FlagKind::kString,
         .value_name = "FILE",
         .commands = {"run", "compare", "stress"},
         .help = "also write the report as JSON to FILE (docs/report.md)"},
        {.name = "json",
         .kind = FlagKind::kString,
         .value_name = "FILE",
         .commands = {"replay"},
         .help = "also write the counts, the score and the guest run as JSON to FILE "
                 "(docs/replay.md)"},
        {.name = "json",
         .kind = FlagKind::kString,
         .value_name = "FILE",
         .commands = {"cost"},
         .help = "also write the measurements as JSON to FILE (docs/costs.md)"},
        {.name = "timeline",
         .kind = FlagKind::kString,
         .value_name = "FILE",
         .commands = {"run", "compare", "stress", "replay"},
         .help = "write a Chrome/Perfetto trace-event file (ui.perfetto.dev) with a track per "
                 "CPU: tasks, loaded mm, lazy periods, CR3 loads, IPIs"},
        {.name = "decisions",
         .kind = FlagKind::kString,
         .value_name = "FILE",
         .commands = {"replay"},
         .help = "write the emulator's decision for every sched_switch to this CSV file"},
        {.name = "plan",
         .kind = FlagKind::kString,
         .value_name = "FILE",
         .commands = {"replay"},
         .help = "write every program step it ran (with the trace line behind it) to this CSV "
                 "file"},
        {.name = "parallel",
         .kind = FlagKind::kChoice,
         .value_name = "WHEN",
         .commands = {"replay"},
         .default_value = "on",
         .help = "run independent switches of different CPUs at once",
         .choices = {{"on",
                      "switches that touch no common task or mm, in blocks (not with "
                      "--verify=every-step)"},
                     {"off", "one step at a time, in the trace's order"}}},
        {.name = "explain",
         .kind = FlagKind::kInt,
         .value_name = "N",
         .commands = {"replay"},
         .default_value = "0",
         .help = "list the first N disagreements with the trace lines around them",
         .min = 0,
         .max = 1000000},
        {.name = "mem",
         .kind = FlagKind::kString,
         .value_name = "SIZE",
         .commands = guest,
         .default_value = "256M",
         .help = "guest RAM: a multiple of 2M from 16M to 3G, suffix M or G"},
        {.name = "timeout",
         .kind = FlagKind::kDouble,
         .value_name = "SECONDS",
         .commands = guest,
         .default_value = "10",
         .help = "seconds without guest progress before the watchdog stops the run, at most "
                 "3600",
         .expected = "seconds in (0, 3600]"},
        {.name = "profile",
         .kind = FlagKind::kInt,
         .value_name = "HZ",
         .commands = {"run", "stress", "replay"},
         .default_value = "0",
         .default_text = "off",
         .help = "sample where each vCPU is HZ times a second and report the shares: modeled "
                 "kernel, step loop, interrupts, ring 3, halted, host (docs/bench.md)",
         .min = 0,
         .max = 10000},
        {.name = "verbose",
         .kind = FlagKind::kBool,
         .commands = guest,
         .help = "print the guest's log lines (on stderr)"},
        {.name = "kvm",
         .kind = FlagKind::kString,
         .value_name = "DEVICE",
         .commands = guest,
         .default_value = Kvm::kDevicePath,
         .help = "the KVM device to open"},
        {.name = "buffer-kb",
         .kind = FlagKind::kInt,
         .value_name = "N",
         .commands = {"capture"},
         .default_value = std::to_string(kDefaultCaptureBufferKb),
         .help = "the trace ring buffer per CPU, in KiB",
         .min = 1,
         .max = kMaxCaptureBufferKb,
         .expected = absl::StrCat("KiB per CPU, 1..", kMaxCaptureBufferKb)},
        {.name = "tracefs",
         .kind = FlagKind::kString,
         .value_name = "DIR",
         .commands = {"capture"},
         .default_value = kDefaultTracefs,
         .help = "advanced: where capture finds (or mounts) tracefs; tests point it elsewhere"},
        {.name = "with",
         .kind = FlagKind::kChoice,
         .value_name = "TOOL",
         .commands = {"capture"},
         .default_value = "tracefs",
         .help = "what records the trace (docs/replay.md, trace-cmd)",
         .choices = {{"tracefs", "activemm itself: trace.txt is tracefs's trace file"},
                     {"trace-cmd",
                      "trace-cmd record (Debian package trace-cmd): trace.dat, and trace.txt "
                      "its trace-cmd report -l -N"}}},
    };
    return new CommandLine(
        {.program = "activemm",
         .about = "activemm: Linux's mm, active_mm and lazy TLB on real x86-64 page tables, under "
                  "KVM (README.md).",
         .exit_statuses = ExitStatuses()},
        std::move(commands), std::move(flags));
  }();
  return *kGrammar;
}

// A command-line error: the message, then where the help is. Exit status 2.
int UsageError(const ParsedCommandLine& cl, const std::string& msg) {
  fmt::print(stderr, "activemm: {}\n{}\n", msg, Grammar().Hint(cl.command));
  return kExitUsage;
}

// An error in what the command line points at (a scenario, a script, a trace folder): the
// command line itself was fine, so no pointer to the help. Exit status 2.
int InputError(const std::string& msg) {
  fmt::print(stderr, "activemm: {}\n", msg);
  return kExitUsage;
}

// A run stopped by SIGINT, SIGTERM or SIGHUP (vmm/kvm/interrupt.h): its vCPU threads are joined;
// nothing is written, since a report of part of a run would read as the whole. Exit status
// 128 + the signal's number, as a shell reports a process the signal ended.
int Interrupted() {
  const int sig = InterruptSignal();
  fmt::print(stderr, "activemm: interrupted by {}: the run was stopped; no output written\n",
             SignalName(sig));
  return 128 + sig;
}

bool ParseMem(std::string s, uint64_t* bytes) {
  s = absl::AsciiStrToUpper(s);
  uint64_t mult = 1ull << 20;
  if (!s.empty() && (s.back() == 'M' || s.back() == 'G')) {
    if (s.back() == 'G') mult = 1ull << 30;
    s.pop_back();
  }
  uint64_t n;
  if (!absl::SimpleAtoi(s, &n) || n == 0 || n > (1ull << 40) / mult) return false;
  *bytes = n * mult;
  return true;
}

// --mem and --timeout, shared by every command that boots a guest; "" when both are fine.
std::string ParseMemAndTimeout(const ParsedCommandLine& cl, uint64_t* mem_bytes,
                               absl::Duration* timeout) {
  // The range vmm/kvm/vm.cc ValidateVmConfig holds the guest to, checked here too so that the
  // mistake is named before /dev/kvm is opened.
  const std::string range = absl::StrFormat("a multiple of 2M from %dM to %dG",
                                            abi::kMinMemBytes >> 20, abi::kMaxMemBytes >> 30);
  if (!ParseMem(cl.String("mem"), mem_bytes)) {
    return absl::StrFormat("--mem=%s: expected a size such as 256M or 1G (%s)", cl.String("mem"),
                           range);
  }
  if (*mem_bytes % (2ull << 20) != 0 || *mem_bytes < abi::kMinMemBytes ||
      *mem_bytes > abi::kMaxMemBytes) {
    return absl::StrFormat("--mem=%s: must be %s", cl.String("mem"), range);
  }
  const double seconds = cl.Double("timeout");
  if (!(seconds > 0 && seconds <= 3600)) {
    return absl::StrFormat("--timeout=%s: expected seconds in (0, 3600]", cl.String("timeout"));
  }
  *timeout = absl::Seconds(seconds);
  return "";
}

// The output files the flags `flags` name (--json, --timeline, ...) can be written: each names a
// file, not a folder, in a folder that exists and takes new files, and no two name the same one.
// Checked before the guest starts, so that a long run does not end in a write error. "" when
// they are fine, else the error.
std::string CheckOutputFiles(const ParsedCommandLine& cl,
                             std::initializer_list<const char*> flags) {
  std::vector<std::pair<std::string, const char*>> seen;  // path, flag
  for (const char* flag : flags) {
    const std::string path = cl.String(flag);
    if (path.empty()) continue;
    const std::string given = absl::StrFormat("--%s=%s", flag, path);
    for (const auto& [other, other_flag] : seen) {
      if (other == path) return absl::StrFormat("%s: --%s names the same file", given, other_flag);
    }
    seen.emplace_back(path, flag);
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return absl::StrFormat("%s: %s is a folder; name a file", given, path);
    }
    const size_t slash = path.rfind('/');
    const std::string dir =
        slash == std::string::npos ? "." : (slash == 0 ? "/" : path.substr(0, slash));
    if (stat(dir.c_str(), &st) != 0) {
      if (errno == ENOENT) return absl::StrFormat("%s: the folder %s does not exist", given, dir);
      return absl::StrFormat("%s: cannot write in %s: %s", given, dir, std::strerror(errno));
    }
    if (!S_ISDIR(st.st_mode)) return absl::StrFormat("%s: %s is not a folder", given, dir);
    if (access(dir.c_str(), W_OK | X_OK) != 0) {
      return absl::StrFormat("%s: cannot write in %s: %s", given, dir, std::strerror(errno));
    }
  }
  return "";
}

int Selftest(const ParsedCommandLine& cl) {
  SelftestOptions opt;
  opt.vm.cpus = static_cast<int>(cl.Int("cpus"));
  opt.vm.verbose = cl.Bool("verbose");
  if (std::string e = ParseMemAndTimeout(cl, &opt.vm.mem_bytes, &opt.timeout); !e.empty()) {
    return UsageError(cl, e);
  }
  opt.vm.inject = Lookup(kSelftestInjects, cl.String("inject"));

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(cl.String("kvm"));
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  absl::StatusOr<SelftestResult> r = RunSelftest(**kvm, opt);
  if (InterruptSignal() != 0) return Interrupted();
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  std::string summary = FormatSelftestSummary(*r, opt.vm, ProbeKvmHost(**kvm));
  fmt::print(r->passed ? stdout : stderr, "{}", summary);
  if (r->passed) return kExitOk;
  return r->run.outcome == Outcome::kCompleted ? kExitCheckFailed : ExitCodeFor(r->run.outcome);
}

// The project's scripts/ folder (stress_gen.py, activemm_scenario.py): $ACTIVEMM_SCRIPTS, else
// the one of the source tree this binary was built from, found from the binary's own place.
std::string ScriptsDir() {
  if (const char* env = std::getenv("ACTIVEMM_SCRIPTS"); env != nullptr) return env;
  std::error_code ec;
  const std::filesystem::path self = std::filesystem::read_symlink("/proc/self/exe", ec);
  const std::filesystem::path dir = ec ? std::filesystem::current_path(ec) : self.parent_path();
  return (dir / ACTIVEMM_SCRIPTS_FROM_BINARY).lexically_normal().string();
}

// `s` quoted for /bin/sh.
std::string ShellQuote(const std::string& s) {
  // StrCat, not "'" + string + "'": GCC 12 at -O3 warns -Wrestrict on that (a known false
  // positive, GCC bug 105329).
  return absl::StrCat("'", absl::StrReplaceAll(s, {{"'", "'\\''"}}), "'");
}

// The stress generator's scenario: scripts/stress_gen.py of this source tree (or of
// $ACTIVEMM_SCRIPTS), run by Debian's /usr/bin/python3.
absl::StatusOr<std::string> GenerateStress(int cpus, uint64_t seed, int steps) {
  const std::string script = ScriptsDir() + "/stress_gen.py";
  if (!std::ifstream(script)) {
    return absl::NotFoundError(absl::StrFormat(
        "%s not found (set ACTIVEMM_SCRIPTS to the project's scripts/ folder)", script));
  }
  std::string cmd = absl::StrFormat("/usr/bin/python3 %s --cpus %d --seed %d --steps %d",
                                    ShellQuote(script), cpus, seed, steps);
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) return absl::InternalError("cannot run /usr/bin/python3");
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  if (status != 0) {
    return absl::InternalError(absl::StrFormat("%s failed (exit status %d)", script,
                                               WIFEXITED(status) ? WEXITSTATUS(status) : status));
  }
  return out;
}

// The whole of the file `path`, or why it cannot be read ("PATH: cannot read the WHAT: No such
// file or directory").
absl::StatusOr<std::string> ReadWholeFile(const std::string& path, std::string_view what) {
  auto failed = [&](int err) {
    return absl::NotFoundError(
        absl::StrFormat("%s: cannot read the %s: %s", path, what, std::strerror(err)));
  };
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return failed(errno);
  std::string out;
  char buf[65536];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const int err = std::ferror(f) ? errno : 0;
  std::fclose(f);
  if (err != 0) return failed(err);
  return out;
}

// Why a Python scenario script failed, in one line, from what it wrote on stderr: its last line
// (a traceback ends with the exception), after "at line N: " when the traceback names a line of
// the script itself. "" when it wrote nothing.
std::string ScriptFailure(const std::string& path, const std::string& errors) {
  std::vector<absl::string_view> lines = absl::StrSplit(errors, '\n', absl::SkipWhitespace());
  if (lines.empty()) return "";
  const std::string why(absl::StripAsciiWhitespace(lines.back()));
  // Python names the script by its absolute path: '  File "/abs/s.py", line 3, in <module>'.
  const std::string frame = absl::StrCat(
      "File \"", std::filesystem::absolute(path).lexically_normal().string(), "\", line ");
  for (auto it = lines.rbegin(); it != lines.rend(); ++it) {
    const size_t at = it->find(frame);
    if (at == absl::string_view::npos) continue;
    absl::string_view number = it->substr(at + frame.size());
    number = number.substr(0, number.find(','));
    int line = 0;
    if (absl::SimpleAtoi(number, &line)) return absl::StrFormat("at line %d: %s", line, why);
    break;
  }
  return why;
}

// The scenario text: a JSON file, the JSON a Python scenario script prints (run by Debian's
// /usr/bin/python3, with the scripts folder first on PYTHONPATH so that a script anywhere can
// import activemm_scenario), or the built-in scenario.
absl::StatusOr<std::string> LoadScenarioText(const std::string& path) {
  if (path.empty()) return std::string(DefaultScenarioJson());
  if (!absl::EndsWith(path, ".py")) return ReadWholeFile(path, "scenario file");
  if (absl::StatusOr<std::string> probe = ReadWholeFile(path, "scenario script"); !probe.ok()) {
    return probe.status();
  }
  std::string python_path = ScriptsDir();
  if (const char* env = std::getenv("PYTHONPATH"); env != nullptr && *env != '\0') {
    absl::StrAppend(&python_path, ":", env);
  }
  std::string cmd =
      absl::StrCat("PYTHONPATH=", ShellQuote(python_path), " /usr/bin/python3 ", ShellQuote(path));
  // The script's stderr goes to an anonymous in-memory file (inherited by the shell, no file
  // left anywhere): a failure is reported in one line, not as a traceback.
  UniqueFd errors_fd(memfd_create("activemm-scenario-stderr", 0));
  if (errors_fd.valid()) absl::StrAppend(&cmd, " 2>&", errors_fd.get());
  FILE* p = popen(cmd.c_str(), "r");
  if (p == nullptr) {
    return absl::InternalError(absl::StrFormat("%s: cannot run /usr/bin/python3", path));
  }
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  int status = pclose(p);
  std::string errors;
  if (errors_fd.valid() && lseek(errors_fd.get(), 0, SEEK_SET) == 0) {
    ssize_t got;
    while ((got = read(errors_fd.get(), buf, sizeof buf)) > 0) errors.append(buf, got);
  }
  if (status != 0) {
    std::string why = ScriptFailure(path, errors);
    if (!why.empty()) why = (absl::StartsWith(why, "at line ") ? " " : ": ") + why;
    return absl::InvalidArgumentError(
        absl::StrFormat("%s: the scenario script failed (exit status %d)%s", path,
                        WIFEXITED(status) ? WEXITSTATUS(status) : status, why));
  }
  fmt::print(stderr, "{}", errors);  // the warnings of a script that worked
  if (absl::StripAsciiWhitespace(out).empty()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: the scenario script printed nothing: it must print the scenario's JSON on stdout "
        "(activemm_scenario's main(scenario) does)",
        path));
  }
  return out;
}

// Progress lines for long runs: on a terminal only, and never in CI (CI=true) or when the
// guest's own log is echoed.
bool ShowProgress(const ParsedCommandLine& cl) {
  return isatty(STDERR_FILENO) && std::getenv("CI") == nullptr && !cl.Bool("verbose");
}

// The flags every command that runs the mm model shares: --asids, --mem, --timeout, --pcid,
// --inject, --verbose (--verify and --lazy-tlb are read where they apply). "" when they are
// fine, else the usage error.
std::string ParseModelFlags(const ParsedCommandLine& cl, ScenarioRunOptions* ro) {
  ro->verbose = cl.Bool("verbose");
  if (ShowProgress(cl)) ro->progress_label = cl.command;
  ro->asids = static_cast<uint32_t>(cl.Int("asids"));
  if (std::string e = ParseMemAndTimeout(cl, &ro->mem_bytes, &ro->timeout); !e.empty()) return e;
  // auto is refined once /dev/kvm is open (OpenKvm)
  ro->pcid = cl.String("pcid") == "off" ? abi::PcidMode::kOff : abi::PcidMode::kModeled;
  ro->bug = Lookup(kMmBugs, cl.String("inject"));
  return "";
}

// --lazy-tlb, else `default_mode`.
abi::LazyMode LazyModeFlag(const ParsedCommandLine& cl, abi::LazyMode default_mode) {
  const std::string lazy = cl.String("lazy-tlb");
  return lazy.empty() ? default_mode : Lookup(kLazyModes, lazy);
}

absl::StatusOr<std::unique_ptr<Kvm>> OpenKvm(const ParsedCommandLine& cl, ScenarioRunOptions* ro) {
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(cl.String("kvm"));
  if (kvm.ok() && cl.String("pcid") == "auto" && (*kvm)->HasPcid()) {
    ro->pcid = abi::PcidMode::kHardware;
  }
  return kvm;
}

// `replay DIR`: a real trace on the emulator, scored against the traced kernel's CR3 loads.
int ReplayCommand(const ParsedCommandLine& cl) {
  if (cl.args.empty()) return UsageError(cl, "replay: no trace folder given (activemm replay DIR)");
  const std::string& dir_path = cl.args[0];
  ReplayOptions o;
  if (std::string e = ParseModelFlags(cl, &o.run); !e.empty()) return UsageError(cl, e);
  if (std::string e = CheckOutputFiles(cl, {"decisions", "json", "plan", "timeline"}); !e.empty()) {
    return InputError(e);
  }
  o.run.lazy = LazyModeFlag(cl, abi::LazyMode::kOn);
  o.run.profile_hz = static_cast<int>(cl.Int("profile"));
  o.run.record_step_state = !cl.String("timeline").empty();
  o.plan.verify_every_step = cl.String("verify") == "every-step";
  // The step loop's test hooks fire only between steps run one at a time.
  o.plan.parallel_blocks = cl.String("parallel") == "on" && o.run.bug < abi::MmBug::kSlowSteps;
  const int explain = static_cast<int>(cl.Int("explain"));
  const auto parse_start = std::chrono::steady_clock::now();
  absl::StatusOr<TraceDir> dir = LoadTraceDir(dir_path);
  if (!dir.ok()) return InputError(std::string(dir.status().message()));
  const double parse_seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - parse_start).count();

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(cl, &o.run);
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  const std::string traced_machine =
      ConfigureForTracedMachine(dir->machine, cl.Has("pcid"), cl.Has("lazy-tlb"), &o.run);
  absl::StatusOr<ReplayResult> r = RunReplay(**kvm, *dir, o);
  if (InterruptSignal() != 0) return Interrupted();
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  r->traced_machine = traced_machine;
  r->parse_seconds = parse_seconds;
  const bool ok = r->report.ok();
  const KvmHost host = ProbeKvmHost(**kvm);
  fmt::print(ok ? stdout : stderr, "{}host: {}\n", FormatReplay(*dir, *r), host.Summary());
  if (explain > 0) fmt::print("{}", FormatDisagreements(*dir, *r, explain));
  // Each file is made only when asked for: a long trace's timeline is hundreds of megabytes.
  const std::pair<const char*, std::function<std::string()>> outputs[] = {
      {"decisions", [&] { return DecisionsCsv(*r); }},
      {"json", [&] { return ReplayJson(*dir, *r, host); }},
      {"plan", [&] { return PlanCsv(*r, dir->trace); }},
      {"timeline", [&] { return ReplayTimeline(*dir, *r); }}};
  for (const auto& [flag, make] : outputs) {
    const std::string& path = cl.String(flag);
    if (path.empty()) continue;
    if (absl::Status s = WriteFileAtomically(path, make()); !s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  if (ok) return kExitOk;
  return r->report.run.outcome == Outcome::kCompleted ? kExitCheckFailed
                                                      : ExitCodeFor(r->report.run.outcome);
}

// run, compare and stress.
int ScenarioCommand(const ParsedCommandLine& cl) {
  const std::string& cmd = cl.command;
  const std::string path = cl.args.empty() ? "" : cl.args[0];
  const bool compare = cmd == "compare";
  const bool stress = cmd == "stress";
  ScenarioRunOptions ro;
  if (std::string e = ParseModelFlags(cl, &ro); !e.empty()) return UsageError(cl, e);
  if (std::string e = CheckOutputFiles(cl, {"json", "timeline"}); !e.empty()) return InputError(e);
  ro.record_step_state = !cl.String("timeline").empty();
  if (!compare) ro.profile_hz = static_cast<int>(cl.Int("profile"));

  absl::StatusOr<std::string> text;
  CompileOptions co;
  if (stress) {
    text = GenerateStress(static_cast<int>(cl.Int("cpus")), cl.Uint64("seed"),
                          static_cast<int>(cl.Int("steps")));
    if (!text.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(text.status().message()));
      // $ACTIVEMM_SCRIPTS pointing where there is no generator is the user's to fix.
      return absl::IsNotFound(text.status()) ? kExitUsage : kExitHostError;
    }
  } else {
    text = LoadScenarioText(path);
    if (!text.ok()) return InputError(std::string(text.status().message()));
    if (cl.Has("cpus")) co.cpus = static_cast<int>(cl.Int("cpus"));
  }
  // A stress run checks every quiet point: there is a quiet point after every step.
  co.verify_every_step = stress || cl.String("verify") == "every-step";
  absl::StatusOr<Scenario> sc = CompileScenario(*text, path.empty() ? "built-in" : path, co);
  if (!sc.ok()) return InputError(std::string(sc.status().message()));

  absl::StatusOr<std::unique_ptr<Kvm>> kvm = OpenKvm(cl, &ro);
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  // compare: every lazy mode, under each PCID mode this host has (real PCIDs where CPUID
  // offers them, the modeled decisions, none), unless --pcid picked one.
  std::vector<std::pair<abi::LazyMode, abi::PcidMode>> modes;
  if (compare) {
    std::vector<abi::PcidMode> pcids = {ro.pcid};
    if (cl.String("pcid") == "auto") {
      pcids = {abi::PcidMode::kModeled, abi::PcidMode::kOff};
      if (ro.pcid == abi::PcidMode::kHardware) pcids.insert(pcids.begin(), ro.pcid);
    }
    for (abi::PcidMode p : pcids) {
      for (abi::LazyMode m : {abi::LazyMode::kOn, abi::LazyMode::kShootdown, abi::LazyMode::kOff}) {
        modes.push_back({m, p});
      }
    }
  } else {
    modes = {{LazyModeFlag(cl, sc->lazy_tlb ? abi::LazyMode::kOn : abi::LazyMode::kOff), ro.pcid}};
  }
  std::vector<ScenarioReport> reports;
  for (const auto& [lazy, pcid] : modes) {
    ro.lazy = lazy;
    ro.pcid = pcid;
    if (!ro.progress_label.empty()) {
      ro.progress_label =
          absl::StrFormat("%s (lazy %s, PCID %s)", cmd, LazyModeName(lazy), PcidModeName(pcid));
    }
    absl::StatusOr<ScenarioReport> r = RunScenarioOnKvm(**kvm, *sc, ro);
    if (InterruptSignal() != 0) return Interrupted();  // compare: no further run either
    if (!r.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
      return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
    }
    reports.push_back(*std::move(r));
  }
  const KvmHost host = ProbeKvmHost(**kvm);
  const std::string text_out =
      compare ? FormatComparison(reports, host) : FormatRunReport(reports[0], host);
  bool all_ok = true;
  int worst = kExitOk;
  for (const ScenarioReport& r : reports) {
    if (r.ok()) continue;
    all_ok = false;
    int code = r.run.outcome == Outcome::kCompleted ? kExitCheckFailed : ExitCodeFor(r.run.outcome);
    worst = std::max(worst, code);
  }
  fmt::print(all_ok ? stdout : stderr, "{}", text_out);
  if (const std::string json_path = cl.String("json"); !json_path.empty()) {
    nlohmann::json j = compare ? ComparisonJson(reports, host) : RunReportJson(reports[0], host);
    absl::Status s = WriteFileAtomically(json_path, j.dump(2) + "\n");
    if (!s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  if (const std::string timeline = cl.String("timeline"); !timeline.empty()) {
    std::vector<TimelineRun> runs;
    for (const ScenarioReport& r : reports) {
      runs.push_back({absl::StrFormat("activemm: lazy %s, PCID %s", LazyModeName(r.lazy),
                                      PcidModeName(r.pcid)),
                      &*sc,
                      &r,
                      {}});
    }
    if (absl::Status s = WriteFileAtomically(timeline, TimelineJson(runs, nullptr, "")); !s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  return worst;
}

// `cost [--iterations N] [--json OUT]`: the guest's cost per context-switch case, lazy TLB on
// and off (or the one mode --lazy-tlb names).
int CostCommand(const ParsedCommandLine& cl) {
  CostOptions o;
  o.iterations = static_cast<int>(cl.Int("iterations"));
  o.asids = static_cast<uint32_t>(cl.Int("asids"));
  o.verbose = cl.Bool("verbose");
  if (std::string e = ParseMemAndTimeout(cl, &o.mem_bytes, &o.timeout); !e.empty()) {
    return UsageError(cl, e);
  }
  if (std::string e = CheckOutputFiles(cl, {"json"}); !e.empty()) return InputError(e);
  const std::string pcid = cl.String("pcid");
  if (pcid == "off") o.pcid = abi::PcidMode::kOff;
  if (cl.Has("lazy-tlb")) o.modes = {LazyModeFlag(cl, abi::LazyMode::kOn)};
  absl::StatusOr<std::unique_ptr<Kvm>> kvm = Kvm::Open(cl.String("kvm"));
  if (!kvm.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(kvm.status().message()));
    return kExitNoKvm;
  }
  if (pcid == "auto" && (*kvm)->HasPcid()) o.pcid = abi::PcidMode::kHardware;
  absl::StatusOr<CostReport> r = RunCostBenchmark(**kvm, o);
  if (InterruptSignal() != 0) return Interrupted();
  if (!r.ok()) {
    fmt::print(stderr, "activemm: {}\n", std::string(r.status().message()));
    return r.status().code() == absl::StatusCode::kInvalidArgument ? kExitUsage : kExitHostError;
  }
  if (!r->ok()) {
    fmt::print(stderr, "activemm cost: the guest run failed: {}\n", r->failure);
    return ExitCodeFor(r->outcome);
  }
  fmt::print("{}", FormatCostReport(*r));
  if (const std::string json_path = cl.String("json"); !json_path.empty()) {
    absl::Status s = WriteFileAtomically(json_path, CostReportJson(*r).dump(2) + "\n");
    if (!s.ok()) {
      fmt::print(stderr, "activemm: {}\n", std::string(s.message()));
      return kExitUsage;
    }
  }
  return kExitOk;
}

// `capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]`: the command is everything after "--",
// untouched.
int Capture(const ParsedCommandLine& cl) {
  constexpr const char* kSyntax = "activemm capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]";
  if (cl.args.empty()) {
    return UsageError(cl, absl::StrFormat("capture: no OUT_DIR given (%s)", kSyntax));
  }
  if (cl.args.size() > 1) {
    return UsageError(
        cl, absl::StrFormat("capture: unexpected argument '%s' (the command goes after --: %s)",
                            cl.args[1], kSyntax));
  }
  if (cl.after_dashes.empty()) {
    return UsageError(cl, absl::StrFormat("capture: no command given after -- (%s)", kSyntax));
  }
  CaptureOptions o;
  o.out_dir = cl.args[0];
  o.argv = cl.after_dashes;
  o.buffer_kb = static_cast<int>(cl.Int("buffer-kb"));
  o.tracefs = cl.String("tracefs");
  o.tool = cl.String("with") == "trace-cmd" ? CaptureTool::kTraceCmd : CaptureTool::kTracefs;
  o.progress = stderr;  // the command's stdout stays its own
  absl::Status s = CaptureTrace(o);
  if (!s.ok()) {
    fmt::print(stderr, "activemm capture: {}\n", std::string(s.message()));
    return s.code() == absl::StatusCode::kInvalidArgument ||
                   s.code() == absl::StatusCode::kAlreadyExists
               ? kExitUsage
               : kExitHostError;
  }
  return kExitOk;
}

// `help [COMMAND]`, `--help`, `-h`, `COMMAND --help`: on stdout, exit status 0.
int Help(const ParsedCommandLine& cl) {
  const CommandLine& grammar = Grammar();
  std::string topic;
  if (cl.command == "help" && !cl.args.empty()) {
    topic = cl.args[0];
  } else if (!cl.command.empty() && !(cl.command == "help" && !cl.help)) {
    topic = cl.command;
  }
  if (topic.empty()) {
    fmt::print("{}", grammar.Help());
    return kExitOk;
  }
  const std::string text = grammar.CommandHelp(topic);
  if (text.empty()) {
    ParsedCommandLine general;  // the hint points at the command list
    return UsageError(general, grammar.UnknownCommand(topic));
  }
  fmt::print("{}", text);
  return kExitOk;
}

}  // namespace
}  // namespace activemm

int main(int argc, char** argv) {
  using activemm::ParsedCommandLine;
  const ParsedCommandLine cl =
      activemm::Grammar().Parse(std::vector<std::string>(argv + 1, argv + argc));
  if (!cl.error.empty()) return activemm::UsageError(cl, cl.error);
  if (cl.help || cl.command == "help") return activemm::Help(cl);
  if (cl.command == "__prime") return activemm::PrimeStep(cl.args.empty() ? "" : cl.args[0]);
  if (cl.command == "capture") return activemm::Capture(cl);  // it forwards signals itself
  // From here on every command runs guests: a signal stops the run instead of killing it.
  activemm::InstallInterruptHandlers();
  if (cl.command == "selftest") return activemm::Selftest(cl);
  if (cl.command == "cost") return activemm::CostCommand(cl);
  if (cl.command == "replay") return activemm::ReplayCommand(cl);
  return activemm::ScenarioCommand(cl);  // run, compare, stress
}
