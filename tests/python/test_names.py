"""Names the C++ side defines and the Python side needs too, checked against their one source:
the counters (shared/mm_abi.h ACTIVEMM_MM_COUNTERS), the exit statuses (vmm/cli/exit_codes.h)
and the lazy TLB modes (vmm/cli/flags.h kLazyModes). A name added, renamed or reordered in C++
fails here until the Python copy follows. Pure Python: no KVM needed.
"""

from __future__ import annotations

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from activemm import scenario as activemm_scenario
import pytest_helpers
from activemm import sweep


def read(path: str) -> str:
    with open(os.path.join(ROOT, path)) as f:
        return f.read()


def cpp_counter_names() -> list[str]:
    text = read("shared/mm_abi.h")
    macro = re.search(r"#define ACTIVEMM_MM_COUNTERS\(X\)(.*?)\n\n", text, re.S)
    assert macro, "ACTIVEMM_MM_COUNTERS not found in shared/mm_abi.h"
    return re.findall(r"\bX\((\w+)\)", macro.group(1))


def cpp_exit_codes() -> dict[str, int]:
    text = read("vmm/cli/exit_codes.h")
    enum = re.search(r"enum ExitCode : int \{(.*?)\};", text, re.S)
    assert enum, "enum ExitCode not found in vmm/cli/exit_codes.h"
    return {name: int(value) for name, value in re.findall(r"(kExit\w+) = (\d+)", enum.group(1))}


def test_counter_names_are_the_abis():
    names = cpp_counter_names()
    assert len(names) == 18  # static_assert(sizeof(MmCounters) == 18 * 8) in shared/mm_abi.h
    assert list(activemm_scenario.COUNTER_NAMES) == names


def test_exit_codes_are_the_commands():
    codes = cpp_exit_codes()
    # kExitOk -> EXIT_OK, kExitCheckFailed -> EXIT_CHECK_FAILED, ...
    for name, value in codes.items():
        py = "EXIT_" + re.sub(r"(?<!^)(?=[A-Z])", "_", name[len("kExit"):]).upper()
        assert getattr(pytest_helpers, py) == value, (name, py)
    assert sorted(sweep.EXIT_MEANING) == sorted(v for v in codes.values() if v != 0)


def test_lazy_modes_are_the_commands():
    table = re.search(r"kLazyModes\[\] = \{(.*?)\n\};", read("vmm/cli/flags.h"), re.S)
    assert table, "kLazyModes not found in vmm/cli/flags.h"
    names = re.findall(r'\{"([a-z]+)", abi::LazyMode::', table.group(1))
    assert sorted(activemm_scenario.LAZY_MODES) == sorted(names)
