// The command-line parser and its help, on a small table of its own: the forms a flag is written
// in, "--", positional arguments, flags a command does not take, bad values, the suggestions for
// typos, and help pages that list a command's own flags only.
#include "vmm/cli/command_line.h"

#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace activemm {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

const CommandLine& Tool() {
  static const CommandLine* const kTool = new CommandLine(
      {.program = "tool", .about = "tool: a test.", .exit_statuses = "Exit status:\n  0  ok\n"},
      {
          {.name = "run",
           .args = "[FILE]",
           .summary = "run FILE",
           .description = "Runs.\n",
           .max_args = 1},
          {.name = "cost", .summary = "measure", .description = "Measures.\n"},
          {.name = "replay",
           .args = "DIR",
           .summary = "replay",
           .description = "Replays.\n",
           .max_args = 1},
          {.name = "capture",
           .args = "OUT -- COMMAND",
           .summary = "capture",
           .description = "Captures.\n",
           .max_args = -1},
          {.name = "help",
           .args = "[COMMAND]",
           .summary = "help",
           .description = "Helps.\n",
           .max_args = 1},
          {.name = "__secret", .max_args = 1, .hidden = true},
      },
      {
          {.name = "cpus",
           .kind = FlagKind::kInt,
           .value_name = "N",
           .commands = {"run"},
           .default_text = "the file's own",
           .help = "vCPUs",
           .min = 1,
           .max = 64},
          {.name = "cpus",
           .kind = FlagKind::kInt,
           .commands = {"replay"},
           .refusal = "one per traced CPU"},
          {.name = "lazy-tlb",
           .kind = FlagKind::kChoice,
           .value_name = "MODE",
           .commands = {"run", "replay"},
           .default_value = "on",
           .help = "the mode",
           .choices = {{"on", "lazy"}, {"off", "not lazy"}}},
          {.name = "iterations",
           .kind = FlagKind::kInt,
           .value_name = "N",
           .commands = {"cost"},
           .default_value = "200",
           .help = "switches per case",
           .min = 1,
           .max = 100000},
          {.name = "seed",
           .kind = FlagKind::kUint64,
           .value_name = "S",
           .commands = {"run"},
           .default_value = "1",
           .help = "the seed"},
          {.name = "timeout",
           .kind = FlagKind::kDouble,
           .value_name = "SECONDS",
           .commands = {"run", "cost"},
           .default_value = "10",
           .help = "the watchdog",
           .expected = "seconds"},
          {.name = "json",
           .kind = FlagKind::kString,
           .value_name = "FILE",
           .commands = {"run", "cost", "replay"},
           .help = "the report"},
          {.name = "verbose",
           .kind = FlagKind::kBool,
           .commands = {"run", "cost", "replay"},
           .help = "log lines"},
          {.name = "buffer-kb",
           .kind = FlagKind::kInt,
           .value_name = "N",
           .commands = {"capture"},
           .default_value = "16",
           .help = "KiB",
           .min = 1,
           .max = 64,
           .expected = "KiB per CPU, 1..64"},
      });
  return *kTool;
}

ParsedCommandLine Parse(std::vector<std::string> argv) { return Tool().Parse(argv); }

TEST(CommandLineTest, TakesBothFlagFormsAndBooleans) {
  ParsedCommandLine p = Parse({"run", "--cpus=4", "--json", "out.json", "--verbose", "x.json"});
  ASSERT_EQ(p.error, "");
  EXPECT_EQ(p.command, "run");
  EXPECT_THAT(p.args, ElementsAre("x.json"));
  EXPECT_EQ(p.Int("cpus"), 4);
  EXPECT_EQ(p.String("json"), "out.json");
  EXPECT_TRUE(p.Bool("verbose"));
  EXPECT_TRUE(p.Has("cpus"));
  EXPECT_FALSE(p.Has("lazy-tlb"));

  p = Parse({"--verbose=false", "run", "--timeout", "2.5", "--seed=18446744073709551615"});
  ASSERT_EQ(p.error, "");
  EXPECT_FALSE(p.Bool("verbose"));
  EXPECT_EQ(p.Double("timeout"), 2.5);
  EXPECT_EQ(p.Uint64("seed"), 18446744073709551615u);
}

TEST(CommandLineTest, AbsentFlagsHaveTheirDefaultsForTheCommand) {
  ParsedCommandLine p = Parse({"run"});
  ASSERT_EQ(p.error, "");
  EXPECT_EQ(p.String("lazy-tlb"), "on");
  EXPECT_EQ(p.Double("timeout"), 10);
  EXPECT_FALSE(p.Has("cpus"));
  EXPECT_EQ(p.Int("cpus"), 0);  // no default
  EXPECT_FALSE(p.Bool("verbose"));
  EXPECT_EQ(Parse({"cost"}).Int("iterations"), 200);
}

TEST(CommandLineTest, TheLastOfARepeatedFlagWins) {
  EXPECT_EQ(Parse({"run", "--cpus=2", "--cpus", "3"}).Int("cpus"), 3);
}

TEST(CommandLineTest, DashesEndTheFlagsAndKeepTheRestUntouched) {
  ParsedCommandLine p =
      Parse({"capture", "out", "--buffer-kb", "8", "--", "ls", "--help", "-l", "--", "x"});
  ASSERT_EQ(p.error, "");
  EXPECT_FALSE(p.help);
  EXPECT_TRUE(p.dashes);
  EXPECT_THAT(p.args, ElementsAre("out"));
  EXPECT_THAT(p.after_dashes, ElementsAre("ls", "--help", "-l", "--", "x"));
  EXPECT_EQ(p.Int("buffer-kb"), 8);

  // A command that checks its own arguments sees "--" with nothing after it.
  p = Parse({"capture", "out", "--"});
  ASSERT_EQ(p.error, "");
  EXPECT_TRUE(p.dashes);
  EXPECT_THAT(p.after_dashes, IsEmpty());

  // For the others, what follows "--" are arguments, even when they look like flags.
  p = Parse({"run", "--", "--odd-name.json"});
  ASSERT_EQ(p.error, "");
  EXPECT_THAT(p.args, ElementsAre("--odd-name.json"));
  EXPECT_EQ(Parse({"run", "a", "--", "b"}).error, "unexpected argument 'b'");
}

TEST(CommandLineTest, NumbersAreArgumentsAndValuesNotFlags) {
  ParsedCommandLine p = Parse({"__secret", "-3"});
  ASSERT_EQ(p.error, "");
  EXPECT_THAT(p.args, ElementsAre("-3"));
  EXPECT_EQ(Parse({"run", "--cpus", "-1"}).error, "--cpus=-1: must be between 1 and 64");
}

TEST(CommandLineTest, CountsArguments) {
  EXPECT_EQ(Parse({"cost", "extra"}).error, "unexpected argument 'extra'");
  EXPECT_EQ(Parse({"run", "a", "b"}).error, "unexpected argument 'b'");
  EXPECT_EQ(Parse({"capture", "a", "b", "c"}).error, "");  // it checks its own
}

TEST(CommandLineTest, RefusesFlagsOfOtherCommandsNamingTheirOwners) {
  EXPECT_EQ(Parse({"run", "--iterations=3"}).error,
            "--iterations: not a flag of run (it is cost's)");
  EXPECT_EQ(Parse({"capture", "--json=x"}).error,
            "--json: not a flag of capture (it is run's, cost's and replay's)");
  EXPECT_EQ(Parse({"replay", "d", "--cpus=2"}).error,
            "--cpus: not a flag of replay: one per traced CPU");
}

TEST(CommandLineTest, SuggestsTheNearestFlag) {
  EXPECT_EQ(Parse({"run", "--lazy-tbl=off"}).error,
            "unknown flag --lazy-tbl (did you mean --lazy-tlb?)");
  EXPECT_EQ(Parse({"run", "--lazy_tlb=off"}).error,
            "unknown flag --lazy_tlb (did you mean --lazy-tlb?)");
  EXPECT_EQ(Parse({"cost", "--iter=3"}).error, "unknown flag --iter (did you mean --iterations?)");
  EXPECT_EQ(Parse({"run", "--CPUS=2"}).error, "unknown flag --CPUS (did you mean --cpus?)");
  EXPECT_EQ(Parse({"run", "--hepl"}).error, "unknown flag --hepl (did you mean --help?)");
  EXPECT_EQ(Parse({"run", "-cpus=2"}).error, "unknown flag -cpus (did you mean --cpus?)");
  EXPECT_EQ(Parse({"run", "--frobnicate"}).error, "unknown flag --frobnicate");
  // Flags given before the command, and with no command at all.
  EXPECT_EQ(Parse({"--lazy-tbl=off", "run"}).error,
            "unknown flag --lazy-tbl (did you mean --lazy-tlb?)");
  EXPECT_EQ(Parse({"--lazy-tbl=off"}).error, "unknown flag --lazy-tbl (did you mean --lazy-tlb?)");
}

TEST(CommandLineTest, SuggestsTheNearestCommandButNeverAHiddenOne) {
  EXPECT_EQ(Parse({"rnu"}).error, "unknown command 'rnu' (did you mean run?)");
  EXPECT_EQ(Parse({"replya", "d"}).error, "unknown command 'replya' (did you mean replay?)");
  EXPECT_EQ(Parse({"cap"}).error, "unknown command 'cap' (did you mean capture?)");
  EXPECT_EQ(Parse({"frobnicate"}).error, "unknown command 'frobnicate'");
  EXPECT_EQ(Parse({"__secre"}).error, "unknown command '__secre'");
  EXPECT_EQ(Parse({"__secret", "1"}).error, "");
  EXPECT_EQ(Parse({"--verbose"}).error,
            "no command given (commands: run, cost, replay, capture "
            "and help)");
  EXPECT_EQ(Parse({}).error, "no command given (commands: run, cost, replay, capture and help)");
}

TEST(CommandLineTest, NamesBadValuesAndWhatIsExpected) {
  EXPECT_EQ(Parse({"run", "--cpus=abc"}).error, "--cpus=abc: expected an integer 1..64");
  EXPECT_EQ(Parse({"run", "--cpus=65"}).error, "--cpus=65: must be between 1 and 64");
  EXPECT_EQ(Parse({"run", "--cpus"}).error, "--cpus: no value given (--cpus=N)");
  EXPECT_EQ(Parse({"run", "--json", "--verbose"}).error, "--json: no value given (--json=FILE)");
  EXPECT_EQ(Parse({"run", "--lazy-tlb=maybe"}).error, "--lazy-tlb=maybe: expected on or off");
  EXPECT_EQ(Parse({"run", "--lazy-tlb=of"}).error,
            "--lazy-tlb=of: expected on or off (did you mean off?)");
  EXPECT_EQ(Parse({"run", "--timeout=soon"}).error, "--timeout=soon: expected seconds");
  EXPECT_EQ(Parse({"run", "--seed=-1"}).error, "--seed=-1: expected an integer >= 0");
  EXPECT_EQ(Parse({"run", "--verbose=maybe"}).error,
            "--verbose=maybe: expected true or false (or just --verbose)");
  EXPECT_EQ(Parse({"capture", "--buffer-kb=0"}).error,
            "--buffer-kb=0: expected KiB per CPU, 1..64");
  EXPECT_EQ(Parse({"run", "--help=run"}).error, "--help takes no value (tool help COMMAND)");
}

TEST(CommandLineTest, HelpIsAskedWithDashHOrDashDashHelp) {
  for (const std::vector<std::string>& argv :
       std::vector<std::vector<std::string>>{{"-h"}, {"--help"}}) {
    ParsedCommandLine p = Parse(argv);
    EXPECT_EQ(p.error, "");
    EXPECT_TRUE(p.help);
    EXPECT_EQ(p.command, "");
  }
  // With a command, the flags are not checked: help is all that is asked for.
  ParsedCommandLine p = Parse({"run", "--lazy-tbl=off", "-h"});
  EXPECT_EQ(p.error, "");
  EXPECT_TRUE(p.help);
  EXPECT_EQ(p.command, "run");
  EXPECT_EQ(Parse({"nosuch", "--help"}).error, "unknown command 'nosuch'");
}

TEST(CommandLineTest, TheCommandListNamesEveryVisibleCommand) {
  const std::string help = Tool().Help();
  EXPECT_THAT(help, HasSubstr("tool: a test."));
  EXPECT_THAT(help, HasSubstr("  run [FILE]"));
  EXPECT_THAT(help, HasSubstr("  capture OUT -- COMMAND"));
  EXPECT_THAT(help, HasSubstr("  cost"));
  EXPECT_THAT(help, Not(HasSubstr("__secret")));
  EXPECT_THAT(help, HasSubstr("Exit status:\n  0  ok\n"));
}

TEST(CommandLineTest, ACommandsHelpListsItsOwnFlagsWithTheirDefaults) {
  const std::string run = Tool().CommandHelp("run");
  EXPECT_THAT(run, HasSubstr("Usage: tool run [FILE] [flags]\n\nRuns.\n"));
  EXPECT_THAT(run, HasSubstr("  --cpus=N              vCPUs (1..64; default: the file's own)\n"));
  EXPECT_THAT(run, HasSubstr("  --lazy-tlb=MODE       the mode (default: on)\n"));
  EXPECT_THAT(run, HasSubstr("off  not lazy\n"));
  EXPECT_THAT(run, HasSubstr("  --verbose             log lines\n"));
  EXPECT_THAT(run, Not(HasSubstr("--iterations")));
  EXPECT_THAT(run, Not(HasSubstr("--buffer-kb")));
  // A refused flag is not listed.
  EXPECT_THAT(Tool().CommandHelp("replay"), Not(HasSubstr("--cpus")));
  EXPECT_THAT(Tool().CommandHelp("cost"), HasSubstr("--iterations=N"));
  EXPECT_EQ(Tool().CommandHelp("nosuch"), "");
  EXPECT_EQ(Tool().CommandHelp("__secret"), "");
}

TEST(CommandLineTest, HintsPointAtTheCommandsHelp) {
  EXPECT_EQ(Tool().Hint("run"), "Run 'tool help run' for its usage and flags.");
  EXPECT_EQ(Tool().Hint(""), "Run 'tool help' for the list of commands.");
}

TEST(EditDistanceTest, CountsASwapOfNeighboursAsOne) {
  EXPECT_EQ(EditDistance("lazy-tbl", "lazy-tlb"), 1);
  EXPECT_EQ(EditDistance("", "abc"), 3);
  EXPECT_EQ(EditDistance("kitten", "sitting"), 3);
  EXPECT_EQ(EditDistance("same", "same"), 0);
}

TEST(NearestTest, SuggestsOnlyLikelyTypos) {
  const std::vector<std::string> names = {"timeout", "timeline", "cpus", "verbose", "verify"};
  EXPECT_EQ(Nearest("cpu", names), "cpus");
  EXPECT_EQ(Nearest("timeotu", names), "timeout");
  EXPECT_EQ(Nearest("ver", names), "");  // the start of two, and far from both
  EXPECT_EQ(Nearest("veri", names), "verify");
  EXPECT_EQ(Nearest("verb", names), "verbose");
  EXPECT_EQ(Nearest("xyz", names), "");
}

}  // namespace
}  // namespace activemm
