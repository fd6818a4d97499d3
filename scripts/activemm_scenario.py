"""The scenario library under the name scenario scripts import it by (docs/scenarios.md):

    from activemm_scenario import Scenario, main

activemm runs a scenario script with scripts/ on PYTHONPATH, so this name and the activemm
package beside it are found. The library itself is activemm.scenario
(scripts/activemm/scenario.py).
"""
from activemm.scenario import *  # noqa: F401,F403 (the library's public names)
