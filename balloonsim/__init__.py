"""balloonsim: a discrete-event simulation study tool for the Linux Xen balloon driver.

>>> import balloonsim
>>> scenario = balloonsim.load_scenario("scenarios/quickstart.yaml")
>>> result = balloonsim.run(scenario, seed=1)
>>> result.timeline.head()
"""

__version__ = "0.2.0"

from balloonsim.engine import run  # noqa: E402
from balloonsim.results.result import Result  # noqa: E402
from balloonsim.scenario import Scenario, load_scenario, parse_scenario  # noqa: E402

__all__ = ["Result", "Scenario", "__version__", "load_scenario", "parse_scenario", "run"]
