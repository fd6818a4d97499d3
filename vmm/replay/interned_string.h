// Names a trace repeats millions of times (a task's COMM, the flags column, prev_state), each
// stored once in a StringPool and referred to by a pointer. A sched_switch line names three
// tasks; a minute of a busy machine has millions of them and a few hundred distinct names, so
// a pointer per name instead of a std::string per name keeps a 1,000,000-switch trace's events
// in a quarter of the memory.
//
// An InternedString is valid while its pool lives: a Trace owns the pool of its events' names
// (shared by copies of the Trace), so an event must not outlive every copy of its Trace.
#ifndef ACTIVEMM_VMM_REPLAY_INTERNED_STRING_H_
#define ACTIVEMM_VMM_REPLAY_INTERNED_STRING_H_

#include <cstddef>
#include <ostream>
#include <string>
#include <string_view>

#include "absl/container/node_hash_set.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"

namespace activemm {

class InternedString {
 public:
  InternedString() : s_(&Empty()) {}

  const std::string& str() const { return *s_; }
  operator const std::string&() const { return *s_; }  // NOLINT: reads as the string it is
  bool empty() const { return s_->empty(); }
  size_t size() const { return s_->size(); }
  char operator[](size_t i) const { return (*s_)[i]; }
  bool starts_with(std::string_view p) const { return s_->starts_with(p); }

  // Pointers are equal for strings of one pool; strings of two pools compare by content.
  friend bool operator==(const InternedString& a, const InternedString& b) {
    return a.s_ == b.s_ || *a.s_ == *b.s_;
  }
  friend bool operator==(const InternedString& a, std::string_view b) { return *a.s_ == b; }
  friend std::ostream& operator<<(std::ostream& os, const InternedString& s) { return os << *s.s_; }
  // absl::StrFormat("%s", s), with width and precision as for a std::string.
  friend absl::FormatConvertResult<absl::FormatConversionCharSet::kString> AbslFormatConvert(
      const InternedString& s, const absl::FormatConversionSpec& spec, absl::FormatSink* sink) {
    sink->PutPaddedString(*s.s_, spec.width(), spec.precision(), spec.has_left_flag());
    return {true};
  }

 private:
  friend class StringPool;
  explicit InternedString(const std::string* s) : s_(s) {}
  static const std::string& Empty() {
    static const std::string* const kEmpty = new std::string();
    return *kEmpty;
  }

  const std::string* s_;
};

// The strings behind InternedStrings. A node set: a string's address never changes as the set
// grows.
class StringPool {
 public:
  InternedString Intern(std::string_view s) {
    if (s.empty()) return InternedString();
    // absl's heterogeneous lookup takes its own string_view (Debian's absl does not alias it to
    // std::string_view).
    auto it = set_.find(absl::string_view(s.data(), s.size()));
    if (it == set_.end()) it = set_.emplace(std::string(s)).first;
    return InternedString(&*it);
  }
  size_t size() const { return set_.size(); }

 private:
  absl::node_hash_set<std::string> set_;
};

}  // namespace activemm

#endif  // ACTIVEMM_VMM_REPLAY_INTERNED_STRING_H_
