#include "vmm/cli/command_line.h"

#include <stdint.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "fmt/core.h"

namespace activemm {
namespace {

constexpr size_t kWidth = 100;        // help lines wrap before this column
constexpr size_t kFlagColumn = 24;    // where a flag's help starts
constexpr size_t kChoiceIndent = 26;  // where a choice's name starts, under its flag

// Debian's Abseil has a string_view of its own: std::string_view does not convert to it.
absl::string_view Absl(std::string_view s) { return absl::string_view(s.data(), s.size()); }

bool Contains(const std::vector<std::string>& v, std::string_view s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// "a", "a or b", "a, b or c" (`last` is "or" or "and").
std::string JoinList(const std::vector<std::string>& items, std::string_view last) {
  if (items.size() <= 1) return items.empty() ? "" : items[0];
  std::vector<std::string> head(items.begin(), items.end() - 1);
  return absl::StrCat(absl::StrJoin(head, ", "), " ", Absl(last), " ", items.back());
}

// Appends `text` to `out`, whose last line already holds `column` characters, breaking lines
// at spaces before kWidth; continuation lines start with `indent` spaces. Ends with a newline.
void AppendWrapped(std::string* out, std::string_view text, size_t column, size_t indent) {
  bool first = true;
  for (absl::string_view word : absl::StrSplit(Absl(text), ' ', absl::SkipEmpty())) {
    if (!first && column + 1 + word.size() > kWidth && column > indent) {
      out->append("\n").append(indent, ' ');
      column = indent;
    } else if (!first) {
      out->push_back(' ');
      ++column;
    }
    out->append(word.data(), word.size());
    column += word.size();
    first = false;
  }
  out->push_back('\n');
}

// Whether `s` is a number such as -1 or -0.5 (a value or an argument, not a flag).
bool LooksNumeric(std::string_view s) {
  double d;
  return absl::SimpleAtod(Absl(s), &d);
}

bool ParseBool(std::string_view s, bool* out) {
  if (s.empty() || s == "true" || s == "1" || s == "yes") {
    *out = true;
    return true;
  }
  if (s == "false" || s == "0" || s == "no") {
    *out = false;
    return true;
  }
  return false;
}

std::string ExpectedInt(const FlagSpec& spec) {
  if (!spec.expected.empty()) return spec.expected;
  return absl::StrCat("an integer ", spec.min, "..", spec.max);
}

std::string ChoiceNames(const FlagSpec& spec) {
  std::vector<std::string> names;
  for (const FlagChoice& c : spec.choices) {
    if (!c.test_hook) names.push_back(c.name);
  }
  return JoinList(names, "or");
}

}  // namespace

bool ParsedCommandLine::Has(std::string_view flag) const { return given.contains(flag); }

std::string ParsedCommandLine::String(std::string_view flag) const {
  auto it = values.find(flag);
  return it == values.end() ? "" : it->second;
}

int64_t ParsedCommandLine::Int(std::string_view flag) const {
  int64_t v = 0;
  return absl::SimpleAtoi(String(flag), &v) ? v : 0;
}

uint64_t ParsedCommandLine::Uint64(std::string_view flag) const {
  uint64_t v = 0;
  return absl::SimpleAtoi(String(flag), &v) ? v : 0;
}

double ParsedCommandLine::Double(std::string_view flag) const {
  double v = 0;
  return absl::SimpleAtod(String(flag), &v) ? v : 0;
}

bool ParsedCommandLine::Bool(std::string_view flag) const {
  bool v = false;
  return values.contains(flag) && ParseBool(String(flag), &v) && v;
}

int EditDistance(std::string_view a, std::string_view b) {
  // d[i][j]: the distance between the first i characters of a and the first j of b.
  std::vector<std::vector<int>> d(a.size() + 1, std::vector<int>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = static_cast<int>(i);
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = static_cast<int>(j);
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t j = 1; j <= b.size(); ++j) {
      const int cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

std::string Nearest(std::string_view typed, const std::vector<std::string>& candidates) {
  const std::string t = absl::AsciiStrToLower(Absl(typed));
  // A likely typo: about one slip per three characters, at most three.
  const int limit = std::max<int>(1, std::min<int>(3, static_cast<int>(t.size()) / 3));
  std::string best;
  int best_distance = limit + 1;
  std::vector<std::string> extensions;  // candidates that `typed` is the start of
  for (const std::string& c : candidates) {
    const int d = EditDistance(t, absl::AsciiStrToLower(c));
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
    if (t.size() >= 2 && absl::StartsWith(c, t)) extensions.push_back(c);
  }
  if (extensions.size() == 1) return extensions[0];
  return best;
}

CommandLine::CommandLine(HelpTexts texts, std::vector<CommandSpec> commands,
                         std::vector<FlagSpec> flags)
    : texts_(std::move(texts)), commands_(std::move(commands)), flags_(std::move(flags)) {
  auto fail = [](const std::string& what) {
    fmt::print(stderr, "internal error: the command-line tables: {}\n", what);
    std::abort();
  };
  for (size_t i = 0; i < flags_.size(); ++i) {
    const FlagSpec& f = flags_[i];
    if (f.name.empty() || f.name == "help" || absl::StartsWith(f.name, "-")) {
      fail(absl::StrCat("bad flag name '", f.name, "'"));
    }
    if (f.commands.empty()) fail(absl::StrCat("--", f.name, " has a row for no command"));
    for (const std::string& c : f.commands) {
      if (FindCommand(c) == nullptr) fail(absl::StrCat("--", f.name, ": no command ", c));
      for (size_t j = 0; j < i; ++j) {
        if (flags_[j].name == f.name && Contains(flags_[j].commands, c)) {
          fail(absl::StrCat("--", f.name, " has two rows for ", c));
        }
      }
    }
    for (size_t j = 0; j < i; ++j) {
      if (flags_[j].name == f.name && flags_[j].kind != f.kind) {
        fail(absl::StrCat("--", f.name, " has two kinds"));
      }
    }
    if (f.kind == FlagKind::kChoice && f.choices.empty() && f.refusal.empty()) {
      fail(absl::StrCat("--", f.name, " has no choices"));
    }
    if (f.kind == FlagKind::kInt && f.min > f.max) fail(absl::StrCat("--", f.name, ": min > max"));
    if (f.refusal.empty() && !f.default_value.empty()) {
      if (std::string e = CheckValue(f, f.default_value); !e.empty()) {
        fail(absl::StrCat("the default of --", f.name, ": ", e));
      }
    }
  }
}

const CommandSpec* CommandLine::FindCommand(std::string_view name) const {
  for (const CommandSpec& c : commands_) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const FlagSpec* CommandLine::FindFlag(std::string_view command, std::string_view flag) const {
  for (const FlagSpec& f : flags_) {
    if (f.name == flag && Contains(f.commands, command)) return &f;
  }
  return nullptr;
}

std::vector<std::string> CommandLine::VisibleCommandNames() const {
  std::vector<std::string> names;
  for (const CommandSpec& c : commands_) {
    if (!c.hidden) names.push_back(c.name);
  }
  return names;
}

std::string CommandLine::CheckValue(const FlagSpec& spec, std::string_view value) {
  const std::string given = absl::StrCat("--", spec.name, "=", Absl(value));
  switch (spec.kind) {
    case FlagKind::kBool: {
      bool b;
      if (!ParseBool(value, &b)) {
        return absl::StrCat(given, ": expected true or false (or just --", spec.name, ")");
      }
      return "";
    }
    case FlagKind::kInt: {
      int64_t v;
      if (!absl::SimpleAtoi(Absl(value), &v))
        return absl::StrCat(given, ": expected ", ExpectedInt(spec));
      if (v < spec.min || v > spec.max) {
        if (!spec.expected.empty()) return absl::StrCat(given, ": expected ", spec.expected);
        return absl::StrCat(given, ": must be between ", spec.min, " and ", spec.max);
      }
      return "";
    }
    case FlagKind::kUint64: {
      uint64_t v;
      if (!absl::SimpleAtoi(Absl(value), &v)) {
        return absl::StrCat(given, ": expected ",
                            spec.expected.empty() ? "an integer >= 0" : spec.expected);
      }
      return "";
    }
    case FlagKind::kDouble: {
      double v;
      if (!absl::SimpleAtod(Absl(value), &v) || !std::isfinite(v)) {
        return absl::StrCat(given, ": expected ",
                            spec.expected.empty() ? "a number" : spec.expected);
      }
      return "";
    }
    case FlagKind::kString:
      return "";
    case FlagKind::kChoice: {
      std::vector<std::string> names;
      for (const FlagChoice& c : spec.choices) {
        if (c.name == value) return "";
        names.push_back(c.name);
      }
      std::string e = absl::StrCat(given, ": expected ", ChoiceNames(spec));
      if (std::string near = Nearest(value, names); !near.empty() && !value.empty()) {
        absl::StrAppend(&e, " (did you mean ", near, "?)");
      }
      return e;
    }
  }
  return "";
}

std::string CommandLine::NotAFlagOf(std::string_view command, std::string_view flag) const {
  const FlagSpec* row = FindFlag(command, flag);
  if (row != nullptr && !row->refusal.empty()) {
    return absl::StrCat("--", Absl(flag), ": not a flag of ", Absl(command), ": ", row->refusal);
  }
  std::vector<std::string> owners;
  for (const CommandSpec& c : commands_) {
    const FlagSpec* f = FindFlag(c.name, flag);
    if (!c.hidden && f != nullptr && f->refusal.empty()) owners.push_back(c.name + "'s");
  }
  return absl::StrCat("--", Absl(flag), ": not a flag of ", Absl(command), " (it is ",
                      JoinList(owners, "and"), ")");
}

std::string CommandLine::UnknownCommand(std::string_view typed) const {
  std::string e = absl::StrCat("unknown command '", Absl(typed), "'");
  if (std::string near = Nearest(typed, VisibleCommandNames()); !near.empty()) {
    absl::StrAppend(&e, " (did you mean ", near, "?)");
  }
  return e;
}

ParsedCommandLine CommandLine::Parse(const std::vector<std::string>& argv) const {
  ParsedCommandLine p;
  // The flags in the order given; `error` is what scanning found wrong with one already.
  struct Given {
    std::string name;  // without the dashes; with its one dash for "-x"
    std::string value;
    bool single_dash = false;
    std::string error;
  };
  std::vector<Given> flags;
  std::vector<std::string> positionals;
  auto kind_of = [this](std::string_view name) -> const FlagKind* {
    for (const FlagSpec& f : flags_) {
      if (f.name == name) return &f.kind;
    }
    return nullptr;
  };
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& a = argv[i];
    if (a == "--") {
      p.dashes = true;
      p.after_dashes.assign(argv.begin() + i + 1, argv.end());
      break;
    }
    if (a == "-h" || a == "--help") {
      p.help = true;
      continue;
    }
    if (a.size() < 2 || a[0] != '-' || LooksNumeric(a)) {
      positionals.push_back(a);
      continue;
    }
    Given g;
    if (a[1] != '-') {
      g.name = a.substr(0, a.find('='));
      g.single_dash = true;
      flags.push_back(std::move(g));
      continue;
    }
    const size_t eq = a.find('=');
    g.name = a.substr(2, eq == std::string::npos ? std::string::npos : eq - 2);
    const FlagKind* kind = kind_of(g.name);
    if (g.name == "help") {  // --help=X
      p.error = absl::StrCat("--help takes no value (", texts_.program, " help COMMAND)");
      return p;
    }
    if (eq != std::string::npos) {
      g.value = a.substr(eq + 1);
    } else if (kind != nullptr && *kind != FlagKind::kBool) {
      // `--name value`; a following flag is not a value.
      if (i + 1 < argv.size() && !absl::StartsWith(argv[i + 1], "--")) {
        g.value = argv[++i];
      } else {
        g.error = absl::StrCat("--", g.name, ": no value given");
      }
    }
    flags.push_back(std::move(g));
  }

  auto unknown_flag = [&](const Given& g, const std::vector<std::string>& candidates) {
    std::string e = absl::StrCat("unknown flag ", g.single_dash ? "" : "--", g.name);
    std::string_view typed = g.name;
    if (g.single_dash) typed.remove_prefix(1);
    if (std::string near = Nearest(typed, candidates); !near.empty()) {
      absl::StrAppend(&e, " (did you mean --", near, "?)");
    } else if (g.single_dash) {
      absl::StrAppend(&e, " (flags start with two dashes)");
    }
    return e;
  };

  if (positionals.empty()) {
    std::vector<std::string> all_flags = {"help"};
    for (const FlagSpec& f : flags_) {
      if (!Contains(all_flags, f.name)) all_flags.push_back(f.name);
    }
    for (const Given& g : flags) {
      if (g.single_dash || kind_of(g.name) == nullptr) {
        p.error = unknown_flag(g, all_flags);
        return p;
      }
    }
    if (!p.help) {
      p.error =
          absl::StrCat("no command given (commands: ", JoinList(VisibleCommandNames(), "and"), ")");
    }
    return p;
  }
  const CommandSpec* command = FindCommand(positionals[0]);
  if (command == nullptr) {
    p.error = UnknownCommand(positionals[0]);
    return p;
  }
  p.command = command->name;
  p.args.assign(positionals.begin() + 1, positionals.end());
  if (p.help) return p;

  std::vector<std::string> own_flags = {"help"};
  for (const FlagSpec& f : flags_) {
    if (f.refusal.empty() && Contains(f.commands, command->name)) own_flags.push_back(f.name);
  }
  for (const Given& g : flags) {
    const FlagSpec* spec = g.single_dash ? nullptr : FindFlag(command->name, g.name);
    if (g.single_dash || (spec == nullptr && kind_of(g.name) == nullptr)) {
      p.error = unknown_flag(g, own_flags);
    } else if (spec == nullptr || !spec->refusal.empty()) {
      p.error = NotAFlagOf(command->name, g.name);
    } else if (!g.error.empty()) {
      p.error = g.error;
      if (!spec->value_name.empty()) {
        absl::StrAppend(&p.error, " (--", g.name, "=", spec->value_name, ")");
      }
    } else {
      p.error = CheckValue(*spec, g.value);
    }
    if (!p.error.empty()) return p;
    bool b;
    p.values[g.name] =
        spec->kind == FlagKind::kBool && ParseBool(g.value, &b) ? (b ? "true" : "false") : g.value;
    p.given.insert(g.name);
  }
  for (const FlagSpec& f : flags_) {
    if (f.refusal.empty() && !f.default_value.empty() && Contains(f.commands, command->name) &&
        !p.given.contains(f.name)) {
      p.values[f.name] = f.default_value;
    }
  }
  if (command->max_args >= 0) {
    p.args.insert(p.args.end(), p.after_dashes.begin(), p.after_dashes.end());
    if (p.args.size() > static_cast<size_t>(command->max_args)) {
      p.error = absl::StrCat("unexpected argument '", p.args[command->max_args], "'");
    }
  }
  return p;
}

std::string CommandLine::Hint(std::string_view command) const {
  const CommandSpec* c = FindCommand(command);
  if (c == nullptr || c->hidden) {
    return absl::StrCat("Run '", texts_.program, " help' for the list of commands.");
  }
  return absl::StrCat("Run '", texts_.program, " help ", Absl(command),
                      "' for its usage and flags.");
}

std::string CommandLine::Help() const {
  std::string out = absl::StrCat(texts_.about, "\n\nUsage: ", texts_.program,
                                 " COMMAND [ARGUMENTS] [flags]\n       ", texts_.program,
                                 " help [COMMAND]\n\nCommands:\n");
  size_t width = 0;
  for (const CommandSpec& c : commands_) {
    if (!c.hidden) width = std::max(width, c.name.size());
  }
  const size_t column = 2 + width + 3;
  for (const CommandSpec& c : commands_) {
    if (c.hidden) continue;
    std::string head = absl::StrCat("  ", c.name);
    if (!c.args.empty()) absl::StrAppend(&head, " ", c.args);
    out += head;
    if (head.size() + 2 > column) {
      out.append("\n").append(column, ' ');
    } else {
      out.append(column - head.size(), ' ');
    }
    AppendWrapped(&out, c.summary, column, column);
  }
  out += "\n";
  AppendWrapped(&out,
                absl::StrCat("Flags are written --name=VALUE or --name VALUE, before or after the "
                             "arguments; -- ends them. '",
                             texts_.program, " help COMMAND' (or '", texts_.program,
                             " COMMAND --help') says what COMMAND does and lists its flags."),
                0, 0);
  absl::StrAppend(&out, "\n", texts_.exit_statuses);
  return out;
}

std::string CommandLine::FlagLines(std::string_view command) const {
  std::string out;
  for (const FlagSpec& f : flags_) {
    if (!f.refusal.empty() || !Contains(f.commands, command)) continue;
    std::string head = absl::StrCat("  --", f.name);
    if (f.kind != FlagKind::kBool) absl::StrAppend(&head, "=", f.value_name);
    out += head;
    if (head.size() + 2 > kFlagColumn) {
      out.append("\n").append(kFlagColumn, ' ');
    } else {
      out.append(kFlagColumn - head.size(), ' ');
    }
    bool described_choices = false;
    for (const FlagChoice& c : f.choices) described_choices |= !c.help.empty();
    std::string text = f.help;
    if (f.kind == FlagKind::kChoice && !described_choices) {
      absl::StrAppend(&text, ": ", ChoiceNames(f));
    }
    std::vector<std::string> notes;
    if (f.kind == FlagKind::kInt) notes.push_back(absl::StrCat(f.min, "..", f.max));
    const std::string& def = f.default_text.empty() ? f.default_value : f.default_text;
    if (!def.empty() && f.kind != FlagKind::kBool) notes.push_back("default: " + def);
    if (!notes.empty()) absl::StrAppend(&text, " (", absl::StrJoin(notes, "; "), ")");
    AppendWrapped(&out, text, kFlagColumn, kFlagColumn);
    if (!described_choices) continue;
    size_t width = 0;
    std::vector<std::string> hooks;
    for (const FlagChoice& c : f.choices) {
      if (!c.test_hook) width = std::max(width, c.name.size());
    }
    for (const FlagChoice& c : f.choices) {
      if (c.test_hook) {
        hooks.push_back(c.name);
        continue;
      }
      std::string line(kChoiceIndent, ' ');
      absl::StrAppend(&line, c.name, std::string(width - c.name.size() + 2, ' '));
      out += line;
      AppendWrapped(&out, c.help, line.size(), line.size());
    }
    if (!hooks.empty()) {
      const std::string line(kChoiceIndent, ' ');
      out += line;
      AppendWrapped(&out, absl::StrCat("test hooks, not for users: ", absl::StrJoin(hooks, ", ")),
                    line.size(), line.size());
    }
  }
  return out;
}

std::string CommandLine::CommandHelp(std::string_view command) const {
  const CommandSpec* c = FindCommand(command);
  if (c == nullptr || c->hidden) return "";
  const std::string flags = FlagLines(c->name);
  std::string out = absl::StrCat("Usage: ", texts_.program, " ", c->name);
  if (!c->args.empty()) absl::StrAppend(&out, " ", c->args);
  if (!flags.empty() && !absl::StrContains(c->args, "--")) out += " [flags]";
  out += "\n";
  // The description's paragraphs, wrapped to the width of the rest.
  for (absl::string_view paragraph :
       absl::StrSplit(c->description, "\n\n", absl::SkipWhitespace())) {
    out += "\n";
    AppendWrapped(&out, absl::StrReplaceAll(paragraph, {{"\n", " "}}), 0, 0);
  }
  if (!flags.empty()) absl::StrAppend(&out, "\nFlags:\n", flags);
  absl::StrAppend(&out, "\n", texts_.exit_statuses);
  return out;
}

}  // namespace activemm
