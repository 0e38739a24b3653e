"""Bad input ends in one line per problem and exit status 2 (or a clean run, with warnings), never a
traceback, in seconds: through the command line and through the Python API alike.

Expected values are derived by hand in the comments: int64 limits, page and KiB arithmetic, and
the kernel's and libxl's rules the scenario checks follow.
"""

from __future__ import annotations

import codecs
import signal
import textwrap
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest

from balloonsim.cli import main
from balloonsim.errors import InvalidScenario, ScenarioError, ScenarioWarning, UnknownPath
from balloonsim.scenario import load_scenario, parse_scenario
from balloonsim.scenario.model import Scenario
from balloonsim.scenario.squeeze_case import is_squeeze_test, load_squeeze_test

ROOT = Path(__file__).parent.parent
QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"

GOOD = """\
duration: 90s
host: {total: 8GiB}
domains:
  - name: a
    memory: 1GiB
events:
  - {at: 5s, domain: a, target: 512MiB}
"""


def validate(capsys, *paths: Path) -> tuple[int, list[str], list[str]]:
    """``balloonsim validate PATHS``: exit status, stdout lines, stderr lines; never a traceback."""
    status = main(["validate", *map(str, paths)])
    io = capsys.readouterr()
    assert "Traceback" not in io.err + io.out
    return status, io.out.splitlines(), io.err.splitlines()


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def problems_of(text: str, **kw) -> list[str]:
    with pytest.raises(ScenarioError) as err:
        parse_scenario(textwrap.dedent(text), "s.yaml", **kw)
    return err.value.problems


@contextmanager
def at_most(seconds: int):
    """A generous guard: the block must end within ``seconds`` (SIGALRM), not minutes."""

    def expired(*_):
        raise TimeoutError(f"took more than {seconds} s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- values beyond the model's int64 ----------------------------------------------------


def test_a_1000_year_duration_is_refused(tmp_path, capsys):
    # 1000 years = 8766000 h = 3.16e19 ns > 2**63 - 1 = 9.22e18 ns
    path = write(tmp_path, GOOD.replace("duration: 90s", "duration: 8766000h"))
    status, out, err = validate(capsys, path)
    assert (status, out) == (2, [])
    assert err == [f"{path}:1: duration: '8766000h' is too large: times must be under 292 years (int64 nanoseconds)"]


def test_the_longest_duration_is_292_years():
    # (2**63 - 1) ns / 3.6e12 ns per hour = 2562047.79 h: 2562047h fits, 2562048h does not
    assert parse_scenario(GOOD.replace("90s", "2562047h"), "s.yaml").duration == 2562047 * 3600 * 10**9
    assert problems_of(GOOD.replace("90s", "2562048h")) == [
        "s.yaml:1: duration: '2562048h' is too large: times must be under 292 years (int64 nanoseconds)"
    ]


def test_sizes_beyond_64_bit_page_counts(tmp_path, capsys):
    # 2**51 pages * 4096 = 2**63 bytes: one byte more than int64 holds
    path = write(tmp_path, GOOD.replace("memory: 1GiB", "memory: 2251799813685248 pages"))
    status, _, err = validate(capsys, path)
    assert status == 2
    assert err == [
        f"{path}:5: domains.0.memory: '2251799813685248 pages' is too large: sizes must be under 8 EiB (int64 bytes)"
    ]


def test_kib_counts_and_integers_beyond_int64():
    found = problems_of(
        GOOD.replace("target: 512MiB", "target: 9007199254740992KiB").replace(  # 2**53 KiB = 2**63 bytes
            "duration: 90s", "duration: 90s\nseed: 9223372036854775808"
        )  # 2**63
        + "  - {at: 6s, domain: a, take: 2251799813685248}\n"  # a count of 2**51 pages
        + "  - {at: 7s, domain: a, take: 99999999999999999999999999999999999999999999}\n"
    )
    assert found == [
        "s.yaml:2: seed: Input should be less than or equal to 9223372036854775807",
        "s.yaml:8: events.0.target: '9007199254740992KiB' is too large: sizes must be under 8 EiB (int64 bytes)",
        "s.yaml:9: events.1.take: 2251799813685248 is too large: sizes must be under 8 EiB (int64 bytes)",
        "s.yaml:10: events.2.take: a 147-bit number is too large: sizes must be under 8 EiB (int64 bytes)",
    ]


def test_the_back_off_cap_fits_int64_nanoseconds():
    # max_schedule_delay is seconds: (2**63 - 1) // 10**9 = 9223372036 s at most
    found = problems_of(GOOD.replace("memory: 1GiB", "memory: 1GiB\n    balloon: {max_schedule_delay: 9223372037}"))
    assert found == ["s.yaml:6: domains.0.balloon.max_schedule_delay: Input should be less than or equal to 9223372036"]


def test_a_host_whose_memory_overflows_is_refused():
    # with only `free` given the host holds free + domains + every host_free event: 2**51 - 1 + 1 GiB pages
    found = problems_of(
        GOOD.replace("host: {total: 8GiB}", "host: {free: 2251799813685247 pages}") + "  - {at: 6s, host_free: 1GiB}\n"
    )
    assert found == [
        "s.yaml:2: host.free: free plus the domains and the host_free events: sizes must be under 8 EiB (int64 bytes)"
    ]


# -- YAML that would take minutes or gigabytes ------------------------------------------


def test_deep_nesting_fails_fast(tmp_path, capsys):
    path = tmp_path / "deep.yaml"
    path.write_text("duration: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with at_most(30):
        status, _, err = validate(capsys, path)
    assert (status, err) == (2, [f"{path}:1: YAML: nested deeper than 40 levels"])


def test_an_alias_bomb_under_an_x_key_fails_before_any_large_allocation(tmp_path, capsys):
    # "billion laughs": 9 levels of 9 aliases each expand to 9**9 = 387420489 strings
    bomb = 'x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        bomb += f"x-{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]\n"
    path = tmp_path / "bomb.yaml"
    path.write_text(bomb + GOOD)
    assert len(bomb) < 500
    tracemalloc.start()
    try:
        with at_most(30):
            status, _, err = validate(capsys, path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 2
    # each list is itself a node: x-a 1 + 9 = 10, x-b 1 + 9 * 10 = 91, then 820, 7381, x-e 66430, x-f
    # 597871; with the six keys 672609 nodes; x-g's key and k aliases of 597871 pass 5000000 at k = 8
    assert err == [f"{path}:7: YAML: more than 5000000 nodes once aliases are expanded; a scenario needs far fewer"]
    assert peak < 50 << 20  # nothing was expanded


def test_an_alias_inside_the_node_it_names_is_refused():
    assert problems_of("x-loop: &a [1, *a]\n" + GOOD) == ["s.yaml:1: YAML: alias 'a' refers to a node around it"]


def test_a_scalar_yaml_cannot_convert_names_its_line():
    found = problems_of(GOOD.replace("duration: 90s", "duration: 90s\nseed: " + "1" * 5000))
    assert len(found) == 1 and found[0].startswith("s.yaml:2: YAML: cannot read '111") and found[0].endswith(" as int")


# -- text that is not UTF-8 -------------------------------------------------------------


def test_a_latin_1_file_names_its_first_bad_line(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("memory: 1GiB", "memory: 1GiB  # café").encode("latin-1"))
    status, _, err = validate(capsys, path)
    # é is byte 0xe9 in Latin-1; in UTF-8 it would start a 2-byte sequence, and the space after it cannot follow
    assert (status, err) == (2, [f"{path}:5: not UTF-8 text (byte 0xe9: invalid continuation byte); save it as UTF-8"])


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be", "utf-32-le", "utf-32-be", "utf-8"])
def test_utf_16_and_32_with_a_byte_order_mark_are_read(tmp_path, encoding):
    bom = {"utf-16-le": codecs.BOM_UTF16_LE, "utf-16-be": codecs.BOM_UTF16_BE, "utf-32-le": codecs.BOM_UTF32_LE}
    bom |= {"utf-32-be": codecs.BOM_UTF32_BE, "utf-8": codecs.BOM_UTF8}
    path = tmp_path / "s.yaml"
    path.write_bytes(bom[encoding] + f"description: café ☕\n{GOOD}".encode(encoding))
    assert load_scenario(path).description == "café ☕"


def test_utf_16_without_a_byte_order_mark_and_broken_utf_16(tmp_path, capsys):
    no_bom = tmp_path / "nobom.yaml"
    no_bom.write_bytes(GOOD.encode("utf-16-le"))
    broken = tmp_path / "broken.yaml"
    broken.write_bytes(codecs.BOM_UTF16_LE + "d\n".encode("utf-16-le") + b"\x00\xd8a\x00")  # a lone surrogate
    status, _, err = validate(capsys, no_bom, broken)
    assert status == 2
    assert err == [
        f"{no_bom}:1: not UTF-8 text (a NUL character: UTF-16 without a byte-order mark?); save it as UTF-8",
        f"{broken}:2: not UTF-16 text (byte 0x00: illegal UTF-16 surrogate); save it as UTF-8",
    ]


# -- replay traces ----------------------------------------------------------------------


def with_workloads(*workloads: str) -> str:
    """A 10 s scenario whose domain ``a`` runs these workloads (flow YAML), the first on line 7."""
    items = "".join(f"\n      - {w}" for w in workloads)
    return f"duration: 10s\nhost: {{total: 8GiB}}\ndomains:\n  - name: a\n    memory: 1GiB\n    workloads:{items}\n"


def test_trace_values_that_are_not_finite_or_do_not_fit(tmp_path, capsys):
    (tmp_path / "trace.csv").write_text("time_s,anon_kb,cache_kb\n0,1,2\n1,inf,1\n2,1,nan\n3,1e30,1\n1e300,1,1\n")
    path = write(tmp_path, with_workloads("{name: r, replay: {file: trace.csv}}"))
    status, _, err = validate(capsys, path)
    trace = tmp_path / "trace.csv"
    # 1e30 KiB = 1.02e33 bytes > 2**63; 1e300 s is far beyond 292 years
    assert (status, err) == (
        2,
        [
            f"{path}:7: domains.0.workloads.0.replay: {trace}:3: inf and nan are not sizes or times / "
            f"{trace}:4: inf and nan are not sizes or times / "
            f"{trace}:5: a size is too large: sizes must be under 8 EiB (int64 bytes) / "
            f"{trace}:6: time 1e+300 s is too large: times must be under 292 years (int64 nanoseconds)"
        ],
    )


def test_a_trace_field_beyond_csvs_limit_and_a_row_after_a_quoted_newline(tmp_path, capsys):
    # csv refuses a field over 128 KiB; a quoted field over two lines moves the rows after it down
    (tmp_path / "wide.csv").write_text("time_s,anon_kb," + "c" * 200_000 + "\n0,1,1\n")
    (tmp_path / "quoted.csv").write_text('time_s,anon_kb,cache_kb\n"1\n",1,1\nx,1,1\n')
    wide = write(tmp_path, with_workloads("{name: r, replay: {file: wide.csv}}"), "wide.yaml")
    quoted = write(tmp_path, with_workloads("{name: r, replay: {file: quoted.csv}}"), "quoted.yaml")
    status, _, err = validate(capsys, wide, quoted)
    assert (status, err) == (
        2,
        [
            f"{wide}:7: domains.0.workloads.0.replay: {tmp_path / 'wide.csv'}:1: not CSV "
            "(field larger than field limit (131072))",
            f"{quoted}:7: domains.0.workloads.0.replay: {tmp_path / 'quoted.csv'}:4: expected numbers in columns "
            "time_s, anon_kb, cache_kb",
        ],
    )


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("seed: !!bool maybe", "s.yaml:1: YAML: cannot read 'maybe' as bool"),
        ('description: "\\U00110000"', "s.yaml:1: YAML: chr() arg not in range(0x110000)"),
    ],
)
def test_yaml_scalars_ruamel_cannot_build_are_one_line(line, says):
    assert problems_of(line + "\nduration: 1s\nhost: {total: 2GiB}\ndomains: [{name: a, memory: 1GiB}]\n") == [says]


def test_a_replay_scale_that_overflows(tmp_path):
    (tmp_path / "trace.csv").write_text("time_s,anon_kb,cache_kb\n0,4096,0\n")
    # 4096 KiB = 1024 pages; 1024 * 2.2e12 = 2.25e15 pages > 2**51 - 1 = 2.2518e15
    found = problems_of(
        with_workloads(
            "{name: r, replay: {file: trace.csv, scale: 2.2e12}}", "{name: s, replay: {file: trace.csv, scale: .inf}}"
        ),
        base_dir=tmp_path,
    )
    assert found == [
        "s.yaml:7: domains.0.workloads.0.replay: scale 2.2e+12 makes the largest sample too large: "
        "sizes must be under 8 EiB (int64 bytes)",
        "s.yaml:8: domains.0.workloads.1.replay.scale: Input should be a finite number",
    ]


# -- the command line -------------------------------------------------------------------


@pytest.mark.parametrize("seed", ["-5", "9223372036854775808", "x"])
def test_run_refuses_a_seed_that_is_not_a_non_negative_int64(seed, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["run", str(QUICKSTART), "--seed", seed])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument --seed: seeds are non-negative integers (0 to 9223372036854775807), not '{seed}'" in err
    assert "Traceback" not in err


def test_validate_reports_every_file_even_after_one_it_cannot_read(tmp_path, capsys):
    missing = tmp_path / "missing.yaml"
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"name: caf\xe9\n")
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "{a: " * 50 + "}" * 50 + "\n")
    broken = write(tmp_path, "duration: [1\n", "broken.yaml")
    good = write(tmp_path, GOOD, "good.yaml")
    a_directory = tmp_path
    status, out, err = validate(capsys, missing, latin1, deep, broken, good, a_directory)
    assert status == 2
    assert out == [f"{good}: ok (1 domain(s), 1 event(s), 90 s)"]
    assert err[:3] == [
        f"{missing}: cannot read: No such file or directory",
        f"{latin1}:1: not UTF-8 text (byte 0xe9: invalid continuation byte); save it as UTF-8",
        f"{deep}:1: YAML: nested deeper than 40 levels",
    ]
    assert err[3].startswith(f"{broken}:2: YAML: ")
    assert err[4:] == [f"{a_directory}: cannot read: Is a directory"]


# -- one input path: replace and model_validate check what files check ------------------


@pytest.fixture(scope="module")
def quickstart() -> Scenario:
    return load_scenario(QUICKSTART)


def test_replace_refuses_an_event_after_the_end(quickstart):
    with pytest.raises(InvalidScenario) as err:
        quickstart.replace({"events.0.at": "200s"})  # quickstart runs 90 s
    assert err.value.problems == ["events.0.at: 200s is after the end of the run (duration 90s)"]
    assert err.value.issues == [(("events", 0, "at"), "200s is after the end of the run (duration 90s)")]


def test_replace_refuses_an_unknown_domain(quickstart):
    with pytest.raises(ScenarioError) as err:
        quickstart.replace({"events.0.domain": "ghost"})
    assert err.value.problems == ["events.0.domain: unknown domain 'ghost'; domains: shrinker, grower, stuck"]


def test_replace_names_a_bad_path_and_what_is_there(quickstart):
    with pytest.raises(UnknownPath) as err:
        quickstart.replace({"domains.vm9.memory": "1GiB"})
    assert isinstance(err.value, ScenarioError) and isinstance(err.value, KeyError)
    assert str(err.value) == "domains.vm9.memory: no item 'vm9' in domains (items 0-2; names: shrinker, grower, stuck)"
    with pytest.raises(UnknownPath, match=r"^events\.7\.at: no item '7' in events \(items 0-3\)$"):
        quickstart.replace({"events.7.at": "1s"})
    with pytest.raises(UnknownPath, match=r"^duration\.x: duration is '90s', not a mapping or a list$"):
        quickstart.replace({"duration.x": 1})
    with pytest.raises(InvalidScenario, match=r"^domains\.0\.balloon\.bogus: unknown key 'bogus'; allowed: driver,"):
        quickstart.replace({"domains.0.balloon.bogus": 1})


def test_model_validate_checks_every_cross_field_rule():
    data = {
        "duration": "10s",
        "host": {"total": "2GiB"},
        "domains": [{"name": "a", "memory": "1GiB"}, {"name": "a", "memory": "1GiB"}],
        "events": [
            {"at": "5s", "domain": "a", "target": "512MiB"},
            {"at": "1s", "domain": "a", "take": 1},
            {"at": "6s", "domain": "a", "host_free": "1GiB"},
            {"at": "7s", "take": 1},
        ],
    }
    with pytest.raises(InvalidScenario) as err:
        Scenario.model_validate({"name": "t", **data})
    assert err.value.problems == [
        "domains.1.name: duplicate domain name 'a' (also domains.0)",
        "events.1.at: 1s is before the previous event (5s); list events in time order",
        "events.2.domain: host_free acts on the host; remove 'domain'",
        "events.3: take needs a 'domain' (one of: a)",
    ]
    del data["domains"][1], data["events"][1:]
    data["domains"][0]["memory"] = "3GiB"
    with pytest.raises(InvalidScenario) as err:
        Scenario.model_validate({"name": "t", **data})
    # 3 GiB = 786432 pages; the host's 2 GiB = 524288 pages
    assert err.value.problems == [
        "host.total: the domains boot with 786432 pages (3 GiB), more than the host's 524288 pages (2 GiB)"
    ]


def test_model_validate_reports_type_errors_and_rules_together():
    with pytest.raises(InvalidScenario) as err:
        Scenario.model_validate(
            {
                "name": "t",
                "duration": "10s",
                "host": {},
                "domains": [{"name": "a", "memory": "1GB"}],
                "events": [{"at": "11s", "domain": "b", "target": "1GiB"}],
            }
        )
    assert err.value.problems == [
        "domains.0.memory: '1GB': decimal units are ambiguous; write 1GiB for a power of 1024",
        "host: give the host's total memory, its free memory at t=0, or both",
        "events.0.domain: unknown domain 'b'; domains: a",
        "events.0.at: 11s is after the end of the run (duration 10s)",
    ]


# -- what Xen, the toolstack or the kernel would refuse ---------------------------------


def domain(**fields) -> str:
    """GOOD with domain ``a`` given more fields (flow YAML values)."""
    extra = "".join(f"\n    {k}: {v}" for k, v in fields.items())
    return GOOD.replace("memory: 1GiB", f"memory: 1GiB{extra}")


@pytest.mark.parametrize(
    "fields, expected",
    [
        # 768 MiB + 512 MiB = 1280 MiB = 327680 pages > 1 GiB = 262144 pages
        (
            {"kernel": "{used_at_boot: 768MiB, slab_reclaimable: 512MiB}"},
            "s.yaml:6: domains.0.kernel.used_at_boot: used_at_boot plus slab_reclaimable is 327680 pages "
            "(1.25 GiB), more than the guest's memory (262144 pages (1 GiB))",
        ),
        # libxl writes static-max = maxmem, and an HVM guest's RAM is maxmem - videoram
        (
            {"static_max": "512MiB"},
            "s.yaml:6: domains.0.static_max: 131072 pages (512 MiB) is below memory (262144 pages (1 GiB)): "
            "libxl writes static-max from the maxmem that sizes an HVM guest's RAM, so it is never less",
        ),
        # libxl_set_memory_target: new target > static-max is ERROR_INVAL; 2 GiB = 2097152 KiB, 1 GiB = 1048576 KiB
        (
            {"initial_target": "2GiB"},
            "s.yaml:6: domains.0.initial_target: 2097152KiB is above static-max (1048576KiB): a toolstack "
            "refuses it (memory_dynamic_max must be less than or equal to memory_static_max)",
        ),
        # PAGES_PER_SECTION = 1 << (SECTION_SIZE_BITS - PAGE_SHIFT)
        (
            {"kernel": "{hotplug: {enabled: true, section: 3000 pages}}"},
            "s.yaml:6: domains.0.kernel.hotplug.section: 3000 pages is not a power of two, as "
            "PAGES_PER_SECTION always is",
        ),
        # a section holds at least one MAX_ORDER block: 2**(11 - 1) pages
        (
            {"kernel": "{hotplug: {enabled: true, section: 512 pages}}"},
            "s.yaml:6: domains.0.kernel.hotplug.section: 512 pages is less than a MAX_ORDER block (1024 pages)",
        ),
        # min_free_kbytes is an int sysctl: at most 2**31 - 1
        (
            {"kernel": "{min_free_kbytes: 2147483648}"},
            "s.yaml:6: domains.0.kernel.min_free_kbytes: Input should be less than or equal to 2147483647",
        ),
    ],
)
def test_combinations_a_real_host_refuses(fields, expected):
    assert problems_of(domain(**fields)) == [expected]


def test_a_guest_without_memory_is_refused():
    # a guest's kernel is loaded into its memory (libxl__build_dom)
    assert problems_of(GOOD.replace("memory: 1GiB", "memory: 0")) == [
        "s.yaml:5: domains.0.memory: must be more than 0: the domain builder loads the guest's kernel into it"
    ]


def test_a_pv_guest_may_have_static_max_below_memory_with_a_warning():
    with pytest.warns(ScenarioWarning) as caught:
        s = parse_scenario(domain(type="pv", static_max="512MiB"), "s.yaml")
    assert s.domains[0].static_max_pages == 131072
    assert [str(w.message) for w in caught] == [
        "s.yaml:7: domains.0.static_max: warning: 131072 pages (512 MiB) is below memory: libxl_set_memory_target "
        "will refuse every target above it"
    ]


def test_combinations_xen_accepts_are_warnings():
    # XEN_DOMCTL_max_mem takes a max_pages below tot_pages; a 32-bit lowmem past boot RAM is the oracle's
    with pytest.warns(ScenarioWarning) as caught:
        parse_scenario(domain(max_pages="512MiB", kernel="{arch: x86_32, lowmem: 2GiB}"), "s.yaml")
    assert [str(w.message) for w in caught] == [
        "s.yaml:6: domains.0.max_pages: warning: 131072 pages (512 MiB) is below memory (262144 pages (1 GiB)): "
        "Xen refuses the guest every page until it has given back enough to be under max_pages",
        "s.yaml:7: domains.0.kernel.lowmem: warning: 524288 pages (2 GiB) is beyond the guest's RAM at boot "
        "(262144 pages (1 GiB)): memory hot-added below it counts as lowmem, where a 32-bit kernel's lowmem ends "
        "with its boot RAM",
    ]


# -- legal but odd: warnings, and the run goes on ---------------------------------------


def test_validate_prints_warnings_and_says_ok(tmp_path, capsys):
    path = write(tmp_path, domain(balloon="{max_retry_count: 0, max_schedule_delay: 0}"))
    status, out, err = validate(capsys, path)
    assert (status, out) == (0, [f"{path}: ok (1 domain(s), 1 event(s), 90 s)"])
    assert err == [
        f"{path}:6: domains.0.balloon.max_retry_count: warning: 0 (retry without limit) with max_schedule_delay 0: "
        "a target that cannot be reached keeps the worker running for ever (balloonsim stops such a run as a "
        "livelock)",
        f"{path}:6: domains.0.balloon.max_schedule_delay: warning: 0: after EAGAIN the worker runs again at once, "
        "without a delay: the kernel spins",
    ]


def test_warnings_from_python_name_the_dotted_path(quickstart):
    with pytest.warns(ScenarioWarning) as caught:
        s = quickstart.replace({"domains.stuck.balloon.max_schedule_delay": 0})
    assert s.domains[2].balloon.max_schedule_delay == 0
    assert [str(w.message) for w in caught] == [
        "domains.2.balloon.max_schedule_delay: 0: after EAGAIN the worker runs again at once, without a delay: "
        "the kernel spins"
    ]
    assert caught[0].filename == __file__  # the warning points at the caller


def test_progress_every_0s_with_costs_warns_and_without_costs_does_not(recwarn):
    with pytest.warns(ScenarioWarning, match=r"^s\.yaml:1: progress_every: warning: 0s with costs: a timeline row"):
        parse_scenario("progress_every: 0s\n" + GOOD, "s.yaml")
    recwarn.clear()
    parse_scenario("progress_every: 0s\n" + domain(costs="none"), "s.yaml")
    assert not [w for w in recwarn if issubclass(w.category, ScenarioWarning)]


def test_a_boot_target_above_memory_without_hotplug_warns(recwarn):
    # no static-max: the watch's target_diff is 0 (static_max falls back to current_pages), so the
    # boot target is 2 GiB = 524288 pages, above the 262144 pages of RAM: ECANCELED without hotplug
    with pytest.warns(ScenarioWarning) as caught:
        parse_scenario(domain(static_max="absent", initial_target="2GiB"), "s.yaml")
    assert [str(w.message) for w in caught] == [
        "s.yaml:7: domains.0.initial_target: warning: the balloon target at boot is 524288 pages (2 GiB), more "
        "than the 262144 pages (1 GiB) the guest can populate without memory hotplug: the driver cuts the target "
        "and cancels (ECANCELED) at boot"
    ]
    recwarn.clear()
    hotplug = "{hotplug: {enabled: true}}"
    parse_scenario(domain(static_max="absent", initial_target="2GiB", kernel=hotplug), "s.yaml")
    # static-max 2 GiB: target_diff = 2 GiB - 1 GiB, so the boot target is 1 GiB, which the guest has
    parse_scenario(domain(static_max="2GiB", initial_target="2GiB"), "s.yaml")
    assert not [w for w in recwarn if issubclass(w.category, ScenarioWarning)]


def test_a_run_implying_millions_of_rows_warns():
    # a square wave of period 10 us over 90 s changes 2 * (9e6 + 1) + 1 = 18000003 times, plus 1 event
    with pytest.warns(ScenarioWarning) as caught:
        parse_scenario(domain(workloads="[{name: p, periodic: {period: 10us, anon: [0, 1MiB]}}]"), "s.yaml")
    assert [str(w.message) for w in caught] == [
        "s.yaml:6: domains.0.workloads.0: warning: about 18,000,004 timeline rows (one per event and per workload "
        "change; 18,000,003 from here): over 1,000,000, the tables take gigabytes to load whole (the run streams "
        "them to disk)"
    ]


def test_a_task_restarted_every_few_microseconds_warns_of_its_rows():
    # killed and started again every 50 us over 90 s: up to 90 s / 50 us = 1,800,000 restarts, each a
    # row, besides its one demand change
    with pytest.warns(ScenarioWarning) as caught:
        parse_scenario(domain(workloads="[{name: hog, constant: {anon: 2GiB}, restart_after: 50us}]"), "s.yaml")
    assert [str(w.message).split(" (")[0] for w in caught] == [
        "s.yaml:6: domains.0.workloads.0: warning: about 1,800,002 timeline rows"
    ]


def test_a_replayed_trace_counts_only_the_samples_inside_the_run(tmp_path):
    # 200 samples a microsecond apart, of which the first 11 (0 to 10 us) fall within a 10 us run
    (tmp_path / "t.csv").write_text("time_s,anon_kb\n" + "".join(f"{i / 1e6},{i % 7}\n" for i in range(200)))
    path = write(
        tmp_path,
        "duration: 10us\nhost: {total: 2GiB}\ndomains:\n  - name: a\n    memory: 1GiB\n"
        "    workloads: [{name: r, replay: {file: t.csv, cache: null}}]\n",
    )
    assert load_scenario(path).domains[0].workloads[0].changes_until(10_000) == 11


def test_example_scenarios_have_no_warnings(recwarn):
    from balloonsim.sweep.run import plan
    from balloonsim.sweep.spec import is_sweep_spec

    for path in sorted((ROOT / "scenarios").rglob("*.yaml")):
        if is_sweep_spec(path):
            plan(path)  # the spec and every point's scenario
        else:
            load_squeeze_test(path) if is_squeeze_test(path) else load_scenario(path)
    assert not [str(w.message) for w in recwarn if issubclass(w.category, ScenarioWarning)]


@pytest.mark.parametrize("value", ["0", "-5", "fast", "²", "1e3"])
def test_an_oracle_scripts_build_setting_must_be_a_positive_whole_number(value):
    from balloonsim.oracle import script_to_scenario

    script = f"# build: HZ={value}\ninit 1000 1000\nend 10\n"
    with pytest.raises(ScenarioError) as raised:
        script_to_scenario(script, "s.script")
    assert str(raised.value) == f"s.script: HZ={value} is not a positive whole number (the oracle build's HZ)"


def test_an_unknown_domain_among_thousands_is_one_short_line():
    # 4,000 guests: the message names ten of them and counts the rest, not all 4,000
    guests = ", ".join(f"{{name: g{i}, memory: 1MiB}}" for i in range(4000))
    (problem,) = problems_of(
        f"duration: 1s\nhost: {{total: 8GiB}}\ndomains: [{guests}]\nevents: [{{at: 0s, domain: ghost, target: 1MiB}}]\n"
    )
    first = ", ".join(f"g{i}" for i in range(10))
    assert problem == f"s.yaml:4: events.0.domain: unknown domain 'ghost'; domains: {first} and 3,990 more"


def test_a_domain_name_with_a_newline_keeps_the_message_on_one_line():
    name_problem, event_problem = problems_of(
        'duration: 1s\nhost: {total: 2GiB}\ndomains: [{name: "a\\nb", memory: 1GiB}]\n'
        "events: [{at: 0s, domain: c, target: 1MiB}]\n"
    )
    assert name_problem.startswith("s.yaml:3: domains.0.name: String should match pattern")
    assert event_problem == "s.yaml:4: events.0.domain: unknown domain 'c'; domains: 'a\\nb'"


def test_a_host_free_above_the_hosts_total_is_refused():
    # Xen cannot have more free memory than the host has in all
    assert problems_of(
        "duration: 2s\nhost: {total: 4GiB}\ndomains: [{name: a, memory: 1GiB}]\nevents: [{at: 1s, host_free: 100TiB}]\n"
    ) == [
        "s.yaml:4: events.0.host_free: 26843545600 pages (102400 GiB) free is more than the host's "
        "1048576 pages (4 GiB) in all"
    ]


def test_a_document_of_many_nodes_says_reading_takes_long_once(monkeypatch):
    from balloonsim.scenario import yamldoc

    monkeypatch.setattr(yamldoc, "NODES_WARNING", 10)
    # the 10th node (counted as the composer finishes each) is the list item 3 on line 2
    text = "duration: 1s\nx-k: [1, 2, 3, 4, 5, 6]\nhost: {total: 2GiB}\ndomains: [{name: a, memory: 1GiB}]\n"
    with pytest.warns(ScenarioWarning) as caught:
        parse_scenario(text, "s.yaml")
    assert [str(w.message) for w in caught] == [
        "s.yaml:2: warning: 10 YAML nodes so far: reading takes about a GiB and up to a minute per million nodes"
    ]


def test_an_unknown_manager_setting_lists_that_managers_own_settings():
    text = GOOD.replace("host: {total: 8GiB}", "host: {total: 8GiB, manager: {kind: autoballoon, target: 80}}")
    assert problems_of(text) == [
        "s.yaml:2: host.manager.target: unknown key 'target'; allowed: kind, ballooning_target, update_time, "
        "maxchange, dead_band, start_timeout"
    ]
