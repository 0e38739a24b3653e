"""balloonsim: a discrete-event simulation study tool for the Linux Xen balloon driver.

>>> import balloonsim
>>> scenario = balloonsim.load_scenario("scenarios/quickstart.yaml")
>>> result = balloonsim.run(scenario, seed=1)
>>> result.timeline.head()
>>> balloonsim.compare(scenario, a={"balloon.max_retry_count": 4}, b={"balloon.max_retry_count": 1}).changed
>>> balloonsim.sweep("scenarios/sweeps/overcommit.yaml")   # a DataFrame: point x seed x guest
"""

__version__ = "0.4.0"

from balloonsim import sweep  # noqa: E402  (a package you can call: balloonsim.sweep(spec) runs a sweep)
from balloonsim.comparison import Comparison, compare  # noqa: E402
from balloonsim.engine import run  # noqa: E402
from balloonsim.results.result import Result  # noqa: E402
from balloonsim.scenario import Scenario, load_scenario, parse_scenario  # noqa: E402

__all__ = [
    "Comparison",
    "Result",
    "Scenario",
    "__version__",
    "compare",
    "load_scenario",
    "parse_scenario",
    "run",
    "sweep",
]
