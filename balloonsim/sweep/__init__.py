"""Sweeps and Monte Carlo: one base scenario run over a grid or random samples of settings, with
several seeds each, on this process, a local process pool or a Dask cluster (``balloonsim sweep``).

Modules, one job each: ``spec`` (the SPEC.yaml schema), ``points`` (points and seeds),
``derived`` (a point's scenario: dotted settings, guests, overcommit), ``executors`` (where runs
are done), ``store`` (the folder, resume), ``table`` (the tidy table), ``figures``, ``run`` (all
of it in order), ``bench`` (the speed-up on 2 workers).
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pandas as pd


def sweep(spec: str | Path | dict[str, Any], *, progress: bool | None = False, **options: Any) -> pd.DataFrame:
    """Run a sweep and return its table (one row per point, seed and guest), as ``balloonsim sweep`` does.

    ``spec``: a SPEC.yaml path, or the same as a dict (its ``scenario`` relative to ``base_dir``,
    default the current directory).  Written to ``out`` (default ``results/sweeps/<name>/``) and
    resumed there if interrupted.  Executors: a process pool of ``workers`` (default: all cores),
    ``serial=True``, a Dask scheduler at ``cluster="tcp://..."``, or a LocalCluster of
    ``dask_local=N`` workers.  ``force``, ``figures``: as ``--force``, ``--no-figures``
    (``run.run_sweep`` has every option).
    """
    from balloonsim.sweep.run import run_sweep

    return run_sweep(spec, progress=progress, **options).table


class _CallablePackage(types.ModuleType):
    """``balloonsim.sweep(spec)`` calls ``sweep`` while ``balloonsim.sweep`` stays this package, so
    ``import balloonsim.sweep.run as r`` keeps working (a function of the same name would hide it)."""

    def __call__(self, spec: str | Path | dict[str, Any], **options: Any) -> pd.DataFrame:
        return sweep(spec, **options)


sys.modules[__name__].__class__ = _CallablePackage

__all__ = ["sweep"]
