"""activemm's Python side: the scenario library and the tools around the activemm binary.

    scenario     the scenario builder scenario scripts use (documented import name:
                 activemm_scenario, scripts/activemm_scenario.py; docs/scenarios.md)
    stress_gen   seeded random scenarios for `activemm stress`
    sweep_gen    the scenario families of the parameter sweeps
    sweep        the parameter sweeps: runs, CSV, plots (docs/sweep.md)
    bench        the benchmark (docs/bench.md)
    doc_samples  the sample outputs of docs/*.md, regenerated from real runs

Each tool is run as a program through its entry point in scripts/ (`/usr/bin/python3
scripts/bench.py`), which puts this package on the import path by being beside it; the tests
import it through pytest.ini.
"""
