// `capture`: a real Linux trace recorded while a command runs (docs/replay.md).
#include <string>

#include "absl/strings/str_format.h"
#include "fmt/core.h"
#include "vmm/cli/command_util.h"
#include "vmm/cli/commands.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/flags.h"
#include "vmm/kvm/interrupt.h"
#include "vmm/kvm/kvm.h"
#include "vmm/kvm/kvm_host.h"
#include "vmm/replay/capture.h"

namespace activemm {

// `capture OUT_DIR [--buffer-kb N] -- COMMAND [ARGS...]`: the command is everything after "--",
// untouched.
int CaptureCommand(const ParsedCommandLine& cl) {
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
  if (!s.ok()) return Failed(s, "activemm capture");
  return kExitOk;
}

}  // namespace activemm
