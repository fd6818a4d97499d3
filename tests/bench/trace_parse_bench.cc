// Host-side micro-benchmarks (Google Benchmark): how fast a trace parses and plans. Not a test
// and not run by the test command: timings depend on the host; tests assert only exact values.
//
//   build/tests/bench/activemm_bench [--benchmark_filter=...]
//
// The traces are ../shared/traces beside the source tree (ACTIVEMM_SHARED_TRACES).
#include <fstream>
#include <iterator>
#include <string>

#include "benchmark/benchmark.h"
#include "vmm/replay/trace.h"

namespace activemm {
namespace {

std::string ReadTrace(const std::string& name) {
  std::ifstream in(std::string(ACTIVEMM_SHARED_TRACES) + "/" + name + "/trace.txt",
                   std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// ParseTrace on a whole shared trace; counters: bytes and trace events per second.
void BM_ParseTrace(benchmark::State& state, const std::string& name) {
  const std::string text = ReadTrace(name);
  if (text.empty()) {
    state.SkipWithError(("no trace " + name + " in " ACTIVEMM_SHARED_TRACES).c_str());
    return;
  }
  int64_t events = 0;
  for (auto _ : state) {
    Trace t = ParseTrace(text);
    events += t.stats.events;
    benchmark::DoNotOptimize(t);
  }
  state.SetBytesProcessed(static_cast<int64_t>(text.size()) * state.iterations());
  state.counters["events/s"] =
      benchmark::Counter(static_cast<double>(events), benchmark::Counter::kIsRate);
}
BENCHMARK_CAPTURE(BM_ParseTrace, pipe_proc, std::string("pipe-proc"))
    ->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_ParseTrace, make, std::string("make"))->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace activemm

BENCHMARK_MAIN();
