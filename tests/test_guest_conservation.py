"""The guest's conservation check (``GuestKernel.conservation_problem``, run after every timeline
row): each way its counts can go wrong is reported, and a consistent guest passes.

Each case breaks one count of a booted guest, keeping the others' sum where the case is about
a sign or a second ledger, and expects the message the check gives for that kind of fault."""

import pytest

from balloonsim.engine import Simulation
from conftest import make_scenario


@pytest.fixture
def guest():
    workload = {"name": "w", "constant": {"anon": "64MiB", "cache": "32MiB"}}
    sim = Simulation(make_scenario(domain={"workloads": [workload]}, duration="1s"))
    sim.run(progress=False)
    guest = sim.guests[0]
    assert guest.conservation_problem() is None
    return guest


def move_into_debt(holder, attribute, receiver, receiving, by=3):
    """Make ``holder.attribute`` -``by`` and give its pages (and ``by`` more) to
    ``receiver.receiving``, a count in the same ledgers (the guest's, and Xen's when populated):
    both sums hold, only a sign is wrong."""
    held = getattr(holder, attribute)
    setattr(holder, attribute, -by)
    setattr(receiver, receiving, getattr(receiver, receiving) + held + by)


def test_a_page_counted_twice_is_not_conserved(guest):
    guest.driver.balloon_stats.balloon_low += 1  # on the balloon list and still populated: Xen's ledger agrees
    assert guest.conservation_problem().startswith("guest pages not conserved")


FREE = (lambda g: g.mm, "free_low")  # populated: in both ledgers
BALLOONED = (lambda g: g.driver.balloon_stats, "balloon_high")  # not populated: the guest's ledger only


@pytest.mark.parametrize(
    "where, attribute, name, to",
    [
        (lambda g: g.mm, "free_high", "free_high", FREE),
        (lambda g: g.mm, "free_low", "free_low", (FREE[0], "free_high")),
        (lambda g: g.mm.programs, "pages", "programs", FREE),
        (lambda g: g.driver.balloon_stats, "balloon_low", "balloon_low", BALLOONED),
        (lambda g: g.driver.balloon_stats, "balloon_high", "balloon_high", (BALLOONED[0], "balloon_low")),
        (lambda g: g.driver, "backend_pages", "lent", BALLOONED),
        (lambda g: g.hotplug, "offline_pages", "offline", BALLOONED),
        (lambda g: g.mm.page_cache, "low", "page_cache", FREE),
        (lambda g: g.mm.slab, "low", "slab", FREE),
        (lambda g: g.tasks.tasks[0].anon, "low", "task w anon", FREE),
    ],
)
def test_a_negative_count_is_named_even_when_the_sums_hold(guest, where, attribute, name, to):
    holder = where(guest)
    assert getattr(holder, "high", 0) == 0  # a 64-bit guest has no highmem: a total is its lowmem
    move_into_debt(holder, attribute, to[0](guest), to[1])
    assert guest.conservation_problem() == f"negative page counts: {name}=-3"


def test_xen_counting_other_pages_than_the_guest_is_reported(guest):
    guest.domain.tot_pages += 1
    assert "but Xen counts tot_pages" in guest.conservation_problem()


def test_swap_entries_the_tasks_do_not_hold_are_reported(guest):
    guest.mm.swap_used += 1
    assert guest.conservation_problem() == f"swap: tasks hold 0 entries, 1 in use of {guest.mm.swap_total}"


def test_pod_entries_the_guest_has_not_left_untouched_are_reported(guest):
    guest.domain.pod.entries += 1  # tot_pages still agrees: only the PoD ledger is off
    assert "but Xen counts tot_pages" in guest.conservation_problem()


def test_negative_swap_is_named_even_when_the_tasks_agree(guest):
    guest.mm.swap_used = guest.tasks.tasks[0].swapped = -3
    assert guest.conservation_problem() == "negative page counts: swap_used=-3"
