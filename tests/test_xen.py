"""The hypervisor's accounting, xenstore watches and the toolstack's writes."""

import pytest

from balloonsim.errors import SimulationError
from balloonsim.xen.hypervisor import Host
from balloonsim.xen.toolstack import STATIC_MAX, TARGET, Toolstack
from balloonsim.xen.xenstore import XenStore


def test_populate_grants_what_the_host_and_max_pages_allow():
    host = Host(total_pages=10_000, free_pages=1_000)
    dom = host.create_domain("a", tot_pages=5_000, max_pages=5_300)
    assert host.populate_physmap(dom, 512) == 300  # max_pages - tot_pages
    assert host.populate_physmap(dom, 512) == 0  # a refusal, not an error
    dom.max_pages = 10_000
    assert host.populate_physmap(dom, 2_000) == 700  # what is free
    assert (host.free_pages, dom.tot_pages) == (0, 6_000)
    dom.max_pages = 100  # below tot_pages: nothing, never negative
    host._free = 50  # behind the accounting's back
    assert host.populate_physmap(dom, 10) == 0
    assert host.conservation_problem(full=True) is not None  # free changed behind its back


def test_domains_compete_for_free_pages():
    host = Host(total_pages=3_000, free_pages=1_000)
    a = host.create_domain("a", 1_000, 5_000)
    b = host.create_domain("b", 1_000, 5_000)
    assert host.populate_physmap(a, 800) == 800
    assert host.populate_physmap(b, 800) == 200
    assert host.decrease_reservation(a, 300) == 300
    assert host.populate_physmap(b, 800) == 300
    assert host.conservation_problem(full=True) is None


def test_host_free_events_move_memory_to_and_from_other_consumers():
    host = Host(total_pages=3_000, free_pages=1_000)
    host.create_domain("a", 1_000, 5_000)
    host.set_free_pages(0)
    assert host.other_pages == 2_000
    host.set_free_pages(2_000)
    assert host.other_pages == 0
    with pytest.raises(SimulationError, match="at most 2000 can be free"):
        host.set_free_pages(2_001)


def test_a_watch_fires_on_registration_and_on_every_write():
    xs = XenStore()
    seen = []
    xs.write(1, TARGET, "42")
    xs.watch(1, TARGET, lambda path: seen.append(xs.read(1, path)))
    xs.write(1, TARGET, "43")
    xs.write(2, TARGET, "44")  # another domain's key
    assert seen == ["42", "43"]
    assert xs.read(1, "memory/nothing") is None


def test_xl_mem_set():
    host = Host(total_pages=10_000_000, free_pages=0)
    dom = host.create_domain("a", 262_144, 262_144)
    xs = XenStore()
    ts = Toolstack(host, xs)
    assert ts.set_memory_target(dom, 524_288) == "Cannot get target memory info from memory/target"
    xs.write(dom.domid, TARGET, "1048576")
    assert ts.set_memory_target(dom, 524_288) == "Cannot get memory info from memory/static-max"
    xs.write(dom.domid, STATIC_MAX, "1048576")
    assert ts.set_memory_target(dom, 524_288) is None
    assert (xs.read(dom.domid, TARGET), dom.max_pages) == ("524288", (524_288 + 1024) // 4)
    xs.write(dom.domid, "memory/videoram", "8192")
    assert ts.set_memory_target(dom, 524_288) is None  # the target excludes video RAM
    assert (xs.read(dom.domid, TARGET), dom.max_pages) == (str(524_288 - 8192), (524_288 + 1024) // 4)
    assert "static_max" in ts.set_memory_target(dom, 2_000_000)
