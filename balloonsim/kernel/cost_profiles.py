"""Named cost profiles: what each unit of the balloon driver's work costs, and where that comes from.

A scenario picks one with ``costs: NAME`` or ``costs: {profile: NAME, ...overrides}``;
``runtime`` is the default.  Only whole-guest speeds have been published, so every
per-page figure below is such a speed split by estimate; the derivations say which
part is measured and which is estimated.

Guest side (both profiles; estimates, no published measurement):
  alloc_page 200 ns and free_page 200 ns (the page allocator's fast path);
  scrub_page 1 us: clearing 4 KiB at ~4 GB/s.  A qube clearing all its RAM at boot ran at
  0.75-3.4 GB/s (QubesOS/qubes-issues #8228: 4 GB in 3.6 s, 16 GB in 4.7 s), 1.2-5.4 us a page;
  hypercall 10 us per XENMEM memory_op (one per batch of 512 pages on x86);
  pv_page 1 us (PV only: the p2m and mapping update of each page);
  reclaim_page 1 us (direct reclaim of a clean cache page); cond_resched 0.

``runtime``: a running guest without populate-on-demand.
  The published whole-guest speeds bracket it:
  - slower: ballooning 16 GB "in one go" kept the worker busy >= 64 s (the workqueue
    lockup in Linux commit 8480ed9c2bbd's message; the direction is not said): <= 256 MiB/s;
  - faster: a Qubes qube booted at 4000 MB with a 400 MB target (a PoD boot, which also
    faults every page in) balloons down in "a few seconds" (QubesOS/qubes-issues #7956);
    the dmesg of #4736 shows ~5 s for the 3600 MB: ~700 MiB/s;
  - expected: qmemman abandons a VM start when free memory grows slower than 100 MB/s
    (qubes-core-admin qmemman/systemstate.py CHECK_MB_S); XenServer's Windows PV driver
    counts inflation below 10,000 pages/s (39 MiB/s) abnormal (win-xenbus balloon.c).
  Balloon-down is set at the geometric mean of the two observed ends, sqrt(256 x 700)
  ~ 420 MiB/s, ~9.2 us a page: alloc 0.2 + scrub 1 + Xen's release (decrease_reservation:
  p2m removal, TLB flush, free to the heap, no scrub for a live domain) 8 us.
  Balloon-up costs less (no guest scrub or allocation, no TLB flush in Xen): Xen's
  populate_physmap (heap allocation, p2m insertion) is taken as half the release, 4 us,
  with free_page 0.2 us: ~930 MiB/s, between the balloon-down speed and the ~1.7 GB/s of
  virtio-balloon, a batched balloon without Xen's p2m work (LKML, Wei Wang, 2017).
  pod_fault 4 us: a PoD guest faulting a page in on the hosts of #4736, where the whole PoD
  balloon-down took ~5.5 us a page (5.1 s / 921,600 pages); with runtime's release this
  profile makes such a boot 13.2 us a page, ~2.4x slower than #4736 saw.
  Uncertainty: down 48 MiB/s (a dom0 qmemman flagged as not reacting, #1136) to
  ~700 MiB/s (#4736), i.e. a factor of ~9 below to ~1.7 above; up ~2x either way.

``pod-boot``: an HVM guest booted with memory below maxmem (populate-on-demand) ballooning
  down at boot, where scrubbing each untouched page first faults it in from the PoD pool.
  Calibrated on QubesOS/qubes-issues #10723 (Qubes 4.3): 4 GB -> ~400 MB at boot in
  ~79 s (dmesg 7.49 s -> 86.58 s).  3696 MiB are 946,176 pages: 79 s / 946,176 = 83.5 us
  a page.  The runtime costs account for 0.2 + 1 + 8 + 10/512 = 9.2 us of it; the PoD
  fault is the rest, 74 us.  Linux commit 197ecb3802c0's message agrees in size: faulting
  in and scrubbing 1.5 GB slowed a nested-virtualisation boot by 15-30 s, 38-76 us a page.
  Uncertainty: one measurement; other PoD boots of the same size take a few seconds
  (#4736, #7956): pod_fault 4-74 us, this profile is the slow end.

``none``: every cost zero, the exact (timeless) model of the core driver.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CostProfile:
    """A named set of per-unit costs (as scenario times, e.g. "8us"), with its sources."""

    costs: dict[str, str]
    source: str
    uncertainty: str


#: the guest's own work: the same on every host (estimates, see the module docstring)
_GUEST = {
    "alloc_page": "200ns",
    "free_page": "200ns",
    "scrub_page": "1us",
    "pv_page": "1us",
    "hypercall": "10us",
    "cond_resched": "0s",
    "reclaim_page": "1us",
}
_RUNTIME_XEN = {"xen_page_out": "8us", "xen_page_in": "4us"}

PROFILES = {
    "runtime": CostProfile(
        costs={**_GUEST, **_RUNTIME_XEN, "pod_fault": "4us"},
        source="published whole-guest speeds: Linux 8480ed9c2bbd (16 GB >= 64 s), Qubes #4736/#7956 "
        "(PoD boot in a few seconds), qmemman's 100 MB/s, XenServer's 10,000 pages/s",
        uncertainty="down 48-700 MiB/s (central 420), up ~2x either way",
    ),
    "pod-boot": CostProfile(
        costs={**_GUEST, **_RUNTIME_XEN, "pod_fault": "74us"},
        source="QubesOS/qubes-issues #10723: a PoD boot, 4 GB -> 400 MB in ~79 s; "
        "split as Linux 197ecb3802c0 (38-76 us a page for fault and scrub)",
        uncertainty="one measurement; PoD boots of the same size elsewhere take a few seconds (pod_fault 4-74 us)",
    ),
    "none": CostProfile(
        costs=dict.fromkeys([*_GUEST, *_RUNTIME_XEN, "pod_fault"], "0s"),
        source="no time: the exact model the oracle checks",
        uncertainty="none",
    ),
}

DEFAULT_PROFILE = "runtime"
