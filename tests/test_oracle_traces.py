"""balloonsim against the kernel's own balloon.c, compiled in the oracle harness.

``fixtures/oracle/*.script`` are the oracle's example scripts and
``fixtures/oracle/fuzz/`` random scripts over every verb, HZ 100-1000 and
several section sizes; each ``.csv`` beside them is what the unmodified
kernel code printed for that script (``.exit``: the oracle stopped with that
status, a livelock of the kernel's own loops).  Every row and every column
must be equal.
"""

from pathlib import Path

import pytest
from ruamel.yaml import YAML

from balloonsim.errors import ScenarioError, SimulationError
from balloonsim.oracle import compare_with_csv, script_to_scenario
from balloonsim.scenario import load_scenario
from balloonsim.scenario.model import Scenario
from conftest import run

FIXTURES = Path(__file__).parent / "fixtures" / "oracle"
SCENARIOS = Path(__file__).parent.parent / "scenarios" / "oracle"
EXAMPLES = sorted(FIXTURES.glob("*.script"))
FUZZ = sorted((FIXTURES / "fuzz").glob("*.script"))
# the kthread builds (v5.15.100 and 6.1.192 give the same traces): driver v5.16
KTHREAD_EXAMPLES = sorted((FIXTURES / "kthread-examples").glob("*.script"))
KTHREAD_FUZZ = sorted((FIXTURES / "kthread").glob("*.script"))
# without a boot target the boot wait returns at once: v5.15 (no boot wait) must print the same
NO_BOOT_TARGET = [p for p in KTHREAD_EXAMPLES + KTHREAD_FUZZ if "boot_target=" not in p.read_text()]


def check_against_oracle(script: Path, scenario: Scenario) -> None:
    exit_file = script.with_suffix(".exit")
    if exit_file.exists() and exit_file.read_text().strip() == "4":
        with pytest.raises(SimulationError, match="livelock"):
            run(scenario)
        return
    problems = compare_with_csv(run(scenario), script.with_suffix(".csv").read_text())
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("script", EXAMPLES, ids=lambda p: p.stem)
def test_oracle_examples(script):
    # the committed scenario is the one a user reads; it must be what the converter makes
    committed = load_scenario(SCENARIOS / f"{script.stem}.yaml")
    converted = Scenario.model_validate(script_to_scenario(script.read_text(), script.stem))
    assert committed == converted
    check_against_oracle(script, committed)


@pytest.mark.parametrize("script", FUZZ, ids=lambda p: p.stem)
def test_oracle_random_scripts(script):
    check_against_oracle(script, Scenario.model_validate(script_to_scenario(script.read_text(), script.stem)))


@pytest.mark.parametrize("script", KTHREAD_EXAMPLES + KTHREAD_FUZZ, ids=lambda p: p.stem)
def test_oracle_kthread_scripts(script):
    scenario = Scenario.model_validate(script_to_scenario(script.read_text(), script.stem))
    assert scenario.domains[0].balloon.driver == "v5.16"
    check_against_oracle(script, scenario)


@pytest.mark.parametrize("script", NO_BOOT_TARGET, ids=lambda p: p.stem)
def test_oracle_kthread_scripts_on_v5_15(script):
    scenario = Scenario.model_validate(script_to_scenario(script.read_text(), script.stem))
    check_against_oracle(script, scenario.replace({"domains.guest.balloon.driver": "v5.15"}))


def test_the_kthread_fixtures_cover_the_boot_wait_panics_and_livelocks():
    statuses = [p.with_suffix(".exit").read_text().strip() for p in KTHREAD_FUZZ if p.with_suffix(".exit").exists()]
    assert len(KTHREAD_FUZZ) >= 200 and "4" in statuses and "5" in statuses
    assert len(NO_BOOT_TARGET) >= 80
    texts = [p.read_text() for p in KTHREAD_FUZZ]
    assert any("oracle-kthread-hotplug" in t for t in texts) and any("balloon_boot_timeout=" in t for t in texts)
    for hz in (100, 250, 300, 1000):
        assert any(f"HZ={hz}" in t for t in texts)


def test_a_panic_ends_the_comparison_and_the_domain_is_destroyed():
    # k3: ECANCELED at 3500 (3500 = 0 + 2 + 4 + 8 s of back-off at HZ 250); the boot wait panics at its
    # first poll at or after 20 s * 250 = 5000 jiffies since the credit last changed (at 0)
    script = FIXTURES / "kthread-examples" / "k3_boot_panic.script"
    result = run(Scenario.model_validate(script_to_scenario(script.read_text(), script.stem)))
    tl = result.timeline
    panic = tl[tl["cause"] == "panic"]
    assert list(panic["jiffies"]) == [5000]
    after = tl[tl["time_ns"] > 0].iloc[-2:]
    assert list(after["cause"]) == ["destroyed", "end"] and list(after["dom_pages"]) == [0, 0]
    assert after["host_free"].iloc[-1] == 262144  # all the guest's pages went back to Xen
    kinds = list(result.events["kind"])
    assert "panic" in kinds and "domain_destroyed" in kinds
    assert result.summary.iloc[0]["crashed"] and not result.summary.iloc[0]["target_reached"]


def test_the_fixtures_cover_every_verb_and_both_builds():
    text = "\n".join(p.read_text() for p in [*EXAMPLES, *FUZZ])
    for verb in (
        "target",
        "host_free",
        "max_pages",
        "take",
        "give",
        "totalreserve",
        "mem_available",
        "alloc_ballooned",
        "free_ballooned",
        "hotplug_unpopulated",
        "online",
        "max_retry",
        "max_delay",
    ):
        assert f" {verb}" in text, verb
    assert "oracle-hotplug" in text and "# oracle: oracle\n" in text
    for hz in (100, 250, 300, 1000):
        assert f"HZ={hz}" in text


def test_a_difference_is_reported():
    script = FIXTURES / "b_backoff_host_short.script"
    scenario = Scenario.model_validate(script_to_scenario(script.read_text(), "b"))
    csv_text = script.with_suffix(".csv").read_text().replace(",EAGAIN,", ",DONE,", 1)
    problems = compare_with_csv(run(scenario), csv_text)
    assert problems and "state: oracle DONE, balloonsim EAGAIN" in problems[0]


def test_converted_scenarios_are_valid_yaml(tmp_path):
    data = script_to_scenario((FIXTURES / "d_highmem_order.script").read_text(), "d")
    path = tmp_path / "d.yaml"
    YAML().dump(data, path)
    assert load_scenario(path).domains[0].kernel.arch == "arm32"


@pytest.mark.parametrize(
    "script, message",
    [
        ("init pages=x\nend 5\n", "s:1: not a number (invalid literal for int() with base 10: 'x')"),
        ("init pages=100\nat 1 tgt 5\nend 5\n", "s:2: unknown verb 'tgt'"),
        ("init pages=100\nat 1 online 5\nend 5\n", "s:2: online: wrong number of arguments"),
        ("at 1 target 5\n", "s:1: the first statement must be 'init'"),
        ("init pages=100 colour=blue\nend 1\n", "s:1: init: unknown setting 'colour=blue'"),
        ("init pages=100\n", "s: a script needs 'init ...' and 'end J'"),
    ],
)
def test_bad_scripts_are_reported_by_line(script, message):
    with pytest.raises(ScenarioError) as err:
        script_to_scenario(script, "s")
    assert err.value.problems == [message]
