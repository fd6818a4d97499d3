// A main() for the fuzz targets where libFuzzer is not linked in (GCC builds, build/asan): runs
// every file named on the command line, and every file in every folder named, through
// LLVMFuzzerTestOneInput once. Arguments starting with '-' are libFuzzer flags and are ignored,
// so `TARGET -runs=0 CORPUS_DIR` replays the corpus with either binary.
#include <stddef.h>
#include <stdint.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>
#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size);

namespace {

int RunFile(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "replay: cannot read %s\n", path.c_str());
    return 1;
  }
  std::vector<uint8_t> bytes((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
  // A heap copy of exactly the input's size, as libFuzzer passes it, so that a read past the
  // end is caught by AddressSanitizer here too.
  std::unique_ptr<uint8_t[]> copy(new uint8_t[bytes.size()]);
  std::copy(bytes.begin(), bytes.end(), copy.get());
  LLVMFuzzerTestOneInput(copy.get(), bytes.size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  int files = 0, failed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg.starts_with("-")) continue;
    std::vector<std::filesystem::path> paths;
    if (std::filesystem::is_directory(arg)) {
      for (const auto& entry : std::filesystem::directory_iterator(arg)) {
        if (entry.is_regular_file()) paths.push_back(entry.path());
      }
      std::sort(paths.begin(), paths.end());
    } else {
      paths.push_back(arg);
    }
    for (const std::filesystem::path& p : paths) {
      failed += RunFile(p);
      ++files;
    }
  }
  std::printf("replay: %d input(s) run, %d unreadable\n", files, failed);
  return failed == 0 && files > 0 ? 0 : 1;
}
