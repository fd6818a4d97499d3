// The command line of a tool made of commands (`activemm run ...`): a table of its commands and
// a table of its flags, the parser that checks a command line against them, and the help text
// built from the same tables, so what is accepted and what is documented cannot drift apart.
//
// Flags are written `--name=value` or `--name value`; a boolean one is just `--name` (or
// `--name=true|false`). `-h` and `--help` ask for help. `--` ends the flags: everything after it
// is kept untouched (a command to run, or file names that start with a dash).
#ifndef ACTIVEMM_VMM_CLI_COMMAND_LINE_H_
#define ACTIVEMM_VMM_CLI_COMMAND_LINE_H_

#include <stdint.h>

#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace activemm {

enum class FlagKind {
  kBool,    // --name, or --name=true|false
  kInt,     // a decimal integer in [min, max]
  kUint64,  // a decimal integer in [0, 2^64)
  kDouble,  // a number; the program checks its range
  kString,  // any text; the program checks it
  kChoice,  // one of `choices`
};

// One accepted value of a kChoice flag.
struct FlagChoice {
  std::string name = {};  // as typed: "every-step"
  std::string help = {};  // what it means; "" lists the choice by name only
  // A test hook, not a user's choice: accepted, but the help names it only on one "test hooks"
  // line after the choices, and the error for an unknown value leaves it out.
  bool test_hook = false;
};

// One row of the flag table: a flag as users type it, for the commands that take it. A flag may
// have several rows with disjoint commands (a default, a range or a help per command); a
// command has at most one row per flag, and every row of a flag has the same kind. Every member
// has an initializer, so that a row written with designated initializers names only what it sets.
struct FlagSpec {
  // As typed, without the dashes: "lazy-tlb".
  std::string name = {};
  FlagKind kind = FlagKind::kString;
  // The value in the help: N in --cpus=N.
  std::string value_name = {};
  // The commands this row is for.
  std::vector<std::string> commands = {};
  // What an absent flag means, written as a user would type it; "" for none.
  std::string default_value = {};
  // The default as the help shows it, e.g. "the scenario's own"; "" shows default_value.
  std::string default_text = {};
  // What it does: one phrase, no final period.
  std::string help = {};
  // kInt: the accepted range, inclusive (the help shows it).
  int64_t min = 0;
  int64_t max = 0;
  // kInt, kDouble: how errors name what is accepted, e.g. "KiB per CPU, 1..1024"; "" for "an
  // integer MIN..MAX" and "must be between MIN and MAX".
  std::string expected = {};
  // kChoice: the accepted values, in the order the help lists them.
  std::vector<FlagChoice> choices = {};
  // Non-empty: `commands` refuse this flag, and this says why ("replay runs one vCPU per traced
  // CPU"). Such a row is not in the help.
  std::string refusal = {};
};

// One command: `activemm NAME ARGS [flags]`.
struct CommandSpec {
  std::string name = {};
  std::string args = {};         // its arguments in the synopsis: "[SCENARIO.json|SCENARIO.py]"
  std::string summary = {};      // its line in the command list
  std::string description = {};  // `help NAME`: what it does; paragraphs end with a blank line
  int max_args = 0;              // positional arguments it takes; -1: it checks them itself
  bool hidden = false;           // internal: not in the help, never suggested
};

// A parsed command line. `error` non-empty is a usage error: the rest is then incomplete.
struct ParsedCommandLine {
  std::string error;                      // what is wrong, without the program name
  std::string command;                    // the command, when known ("" otherwise)
  bool help = false;                      // -h or --help was given
  std::vector<std::string> args;          // positional arguments after the command; those after
                                          // "--" too, unless the command checks its own
  bool dashes = false;                    // "--" was given
  std::vector<std::string> after_dashes;  // everything after the first "--", untouched

  // Whether the flag was given on the command line.
  bool Has(std::string_view flag) const;
  // The flag's value: as given, else its default for the command ("", 0 or false when it has
  // none). The value was checked against the flag's kind when it was parsed.
  std::string String(std::string_view flag) const;
  int64_t Int(std::string_view flag) const;
  uint64_t Uint64(std::string_view flag) const;
  double Double(std::string_view flag) const;
  bool Bool(std::string_view flag) const;

  std::map<std::string, std::string, std::less<>> values;  // given, else the default
  std::set<std::string, std::less<>> given;
};

// The texts around the tables in the help.
struct HelpTexts {
  std::string program;        // "activemm"
  std::string about;          // the first line of the command list: what the program is
  std::string exit_statuses;  // "Exit status:" lines, shown in every help page
};

class CommandLine {
 public:
  // Aborts with a message when the tables contradict themselves: a row for an unknown command,
  // two rows of one flag for the same command, rows of one flag with different kinds.
  CommandLine(HelpTexts texts, std::vector<CommandSpec> commands, std::vector<FlagSpec> flags);

  // Parses argv without the program name. The first positional argument is the command; flags
  // may come before or after it. With -h or --help and a known command, the flags are not
  // checked (the help is all that is asked for).
  ParsedCommandLine Parse(const std::vector<std::string>& argv) const;

  // `PROGRAM help`: what the program is, its commands, how flags are written, exit statuses.
  std::string Help() const;
  // `PROGRAM help COMMAND`: the synopsis, what it does, its flags with their defaults, exit
  // statuses. "" for an unknown command.
  std::string CommandHelp(std::string_view command) const;
  // The hint printed after a command-line error: where the help for `command` is.
  std::string Hint(std::string_view command) const;
  // "unknown command 'X'", with the nearest command suggested when one is close.
  std::string UnknownCommand(std::string_view typed) const;

  const CommandSpec* FindCommand(std::string_view name) const;
  // The row of `flag` for `command` (a refusal row too), or nullptr.
  const FlagSpec* FindFlag(std::string_view command, std::string_view flag) const;

 private:
  // "" when `value` is a valid value of `spec`, else the error.
  static std::string CheckValue(const FlagSpec& spec, std::string_view value);
  // The error for a flag `command` does not take.
  std::string NotAFlagOf(std::string_view command, std::string_view flag) const;
  std::string FlagLines(std::string_view command) const;
  std::vector<std::string> VisibleCommandNames() const;

  HelpTexts texts_;
  std::vector<CommandSpec> commands_;
  std::vector<FlagSpec> flags_;
};

// The optimal string alignment distance: insertions, deletions, substitutions and swaps of two
// neighbouring characters, each counting 1.
int EditDistance(std::string_view a, std::string_view b);

// The candidate `typed` is the start of, if only one; else the one nearest to `typed` when it is
// near enough to be a likely typo; else "". Case does not matter.
std::string Nearest(std::string_view typed, const std::vector<std::string>& candidates);

}  // namespace activemm

#endif  // ACTIVEMM_VMM_CLI_COMMAND_LINE_H_
