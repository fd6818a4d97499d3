#include "vmm/cli/flags.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "shared/cost_abi.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/kvm/kvm.h"
#include "vmm/replay/capture.h"

namespace activemm {
namespace {

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

}  // namespace

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

}  // namespace activemm
