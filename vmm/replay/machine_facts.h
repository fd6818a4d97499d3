// What a replay must know about the traced machine and cannot read from the trace: whether its
// kernel used PCID (without it every CR3 load flushes, and a replay that models ASIDs gets the
// flushes wrong) and its lazy-TLB flavour. `activemm capture` writes them to machine.txt beside
// trace.txt; `activemm replay` configures itself from them and says what it assumed.
#ifndef ACTIVEMM_VMM_REPLAY_MACHINE_FACTS_H_
#define ACTIVEMM_VMM_REPLAY_MACHINE_FACTS_H_

#include <optional>
#include <string>
#include <string_view>

namespace activemm {

struct MachineFacts {
  bool present = false;                // the folder has a machine.txt
  std::string release;                 // uname -r
  int cpus = 0;                        // online CPUs (0: not given)
  std::optional<bool> cpu_pcid;        // /proc/cpuinfo flags: pcid
  std::optional<bool> cpu_invpcid;     // ... invpcid
  std::optional<bool> boot_nopcid;     // /proc/cmdline: nopcid
  std::optional<bool> boot_noinvpcid;  // ... noinvpcid
  // Whether the kernel ran with CR4.PCIDE: arch/x86/mm/init.c setup_pcid() sets it when the CPU
  // has PCID and PGE and the kernel was not booted with nopcid.
  std::optional<bool> kernel_pcid;
  std::string lazy_tlb;  // "refcount", "shootdown", or "" when the kernel's config was not found
  int bad_lines = 0;     // lines that are not "key: value" with a known key and a valid value
};

// machine.txt for a machine whose architecture (uname -m), /proc/cpuinfo, /proc/cmdline and
// kernel config (the text of /boot/config-RELEASE, empty when unreadable) are given.
std::string FormatMachineFacts(std::string_view release, std::string_view arch, int cpus,
                               std::string_view cpuinfo, std::string_view cmdline,
                               std::string_view kernel_config);

// machine.txt of the machine this runs on.
std::string ThisMachineFacts();

// Reads machine.txt; unknown keys and bad values count as bad lines (the rest is kept).
MachineFacts ParseMachineFacts(std::string_view text);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_MACHINE_FACTS_H_
