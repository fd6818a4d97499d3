// What the fuzz targets share: a broken promise as a crash, and an input cut into the texts of
// the files a target reads.
#ifndef ACTIVEMM_TESTS_FUZZ_FUZZ_INPUT_H_
#define ACTIVEMM_TESTS_FUZZ_FUZZ_INPUT_H_

#include <stddef.h>

#include <string_view>
#include <vector>

// A broken promise is a crash, which libFuzzer reports with the input.
#define FUZZ_CHECK(cond)           \
  do {                             \
    if (!(cond)) __builtin_trap(); \
  } while (0)

namespace activemm::fuzz {

// Up to `n` NUL-separated parts of `text`; the last holds the rest, missing ones are empty.
inline std::vector<std::string_view> SplitInput(std::string_view text, size_t n) {
  std::vector<std::string_view> parts;
  while (parts.size() + 1 < n) {
    size_t nul = text.find('\0');
    if (nul == std::string_view::npos) break;
    parts.push_back(text.substr(0, nul));
    text.remove_prefix(nul + 1);
  }
  parts.push_back(text);
  parts.resize(n);
  return parts;
}

}  // namespace activemm::fuzz

#endif  // ACTIVEMM_TESTS_FUZZ_FUZZ_INPUT_H_
