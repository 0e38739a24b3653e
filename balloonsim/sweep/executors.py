"""Where a sweep's runs are done: in this process, on a local process pool, or on a Dask cluster.

Each executor is given a ``Runs`` (the base scenario, the points' settings, the seeds: sent to
each worker once) and the runs to do, ``[(point index, seed index), ...]``, which it sends in
chunks, and yields each chunk's outcomes as it completes, in any order: ``(point index, seed index, rows)``, the small
per-run table of ``table.run_rows`` as Parquet bytes (a run that fails with a SimulationError
gives ``table.failed_rows``).  Workers send back only those rows, never timelines; the coordinator
writes.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.connection import wait as connection_wait
from typing import Any

import pandas as pd

from balloonsim.engine import Simulation
from balloonsim.errors import BalloonsimError, SimulationError, UsageError
from balloonsim.scenario.model import Scenario
from balloonsim.sweep.derived import point_scenario
from balloonsim.sweep.table import failed_rows, parquet_bytes, run_rows

Key = tuple[int, int]  # (point index, seed index)
Outcome = tuple[int, int, bytes]  # the run's rows as a Parquet file


@dataclass
class Runs:
    """What a worker needs to do any run of the sweep (pickled once per worker)."""

    base: Scenario
    settings: list[dict[str, Any]]  # per point
    seeds: list[int]  # per seed index
    scale_host: bool = False
    _cache: dict[int, Scenario] = field(default_factory=dict, repr=False)

    def scenario(self, point: int) -> Scenario:
        """The point's scenario, built once per worker (a chunk's runs are mostly of one point)."""
        scenario = self._cache.get(point)
        if scenario is None:  # (a Dask worker may run chunks in threads: only whole-dict operations here)
            if len(self._cache) >= 8:
                self._cache.clear()
            scenario = point_scenario(self.base, self.settings[point], "", scale_host=self.scale_host)
            self._cache[point] = scenario
        return scenario

    def run(self, point: int, seed_index: int) -> pd.DataFrame:
        try:
            result = Simulation(self.scenario(point), self.seeds[seed_index]).run(progress=False)
        except SimulationError as err:
            return failed_rows(str(err))
        with result:  # a long run's tables were streamed to a temporary folder: removed here
            return run_rows(result)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cache": {}}


def run_chunk(runs: Runs, chunk: Sequence[Key]) -> list[Outcome]:
    """Do a chunk of runs, each's rows as Parquet bytes (encoded here, so the coordinator only
    writes them); the coordinator already reported the scenarios' warnings, once."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [(p, j, parquet_bytes(runs.run(p, j))) for p, j in chunk]


def chunked(keys: list[Key], workers: int) -> list[list[Key]]:
    """Chunks small enough to keep every worker busy to the end (16 per worker), in run order."""
    size = max(1, len(keys) // (16 * max(1, workers)))
    return [keys[i : i + size] for i in range(0, len(keys), size)]


def serial(runs: Runs, keys: list[Key]) -> Iterator[list[Outcome]]:
    for key in keys:
        yield run_chunk(runs, [key])


# -- a local process pool -------------------------------------------------------------------
#
# Each worker has a pipe of its own and is sent its next chunk when it returns one, so a worker
# stopped at any moment (an interrupt, the OOM killer) spoils only its own pipe: nothing shared
# waits for ever on half a message (as concurrent.futures' pool does when a worker it must
# terminate was sending a result).


def _worker(runs: Runs, conn: Connection) -> None:
    """A worker: chunks in, outcomes out, until it is sent None.  Ctrl-C (sent to the whole
    terminal's process group) is the coordinator's to handle, which stops the workers."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the coordinator's handler, inherited by fork
    while (chunk := conn.recv()) is not None:
        conn.send(run_chunk(runs, chunk))


def process_pool(runs: Runs, keys: list[Key], workers: int) -> Iterator[list[Outcome]]:
    """On ``workers`` local processes (forked where the platform allows: nothing to import again)."""
    chunks = iter(chunked(keys, workers))
    busy: dict[Connection, multiprocessing.process.BaseProcess] = {}
    started = []
    finished = False
    try:
        for _ in range(workers):
            ours, theirs = multiprocessing.Pipe()
            process = multiprocessing.Process(target=_worker, args=(runs, theirs), daemon=True)
            process.start()
            theirs.close()
            started.append((process, ours))
            if not _give_next(ours, chunks):
                break
            busy[ours] = process
        while busy:
            ready = set(connection_wait([*busy, *(p.sentinel for p in busy.values())]))
            for conn, process in list(busy.items()):
                if conn in ready:
                    yield _result(conn, process)
                    if not _give_next(conn, chunks):
                        del busy[conn]
                elif process.sentinel in ready:
                    _result(conn, process)  # raises: it ended without a result
        finished = True
    finally:
        for process, conn in started:
            if not finished:  # interrupted: the runs under way are not wanted (their files never begun)
                process.terminate()
            process.join()  # (when finished, each was sent None and ends by itself)
            conn.close()


def _result(conn: Connection, process: multiprocessing.process.BaseProcess) -> list[Outcome]:
    try:
        return conn.recv()
    except EOFError:
        process.join()
        code = process.exitcode or 0
        how = f"was killed by signal {-code} (the OOM killer's is 9)" if code < 0 else f"ended with status {code}"
        raise WorkerDied(
            f"a worker process {how} before its runs were done; the runs written are kept: "
            "start the sweep again to do the others"
        ) from None


def _give_next(conn: Connection, chunks: Iterator[list[Key]]) -> bool:
    """Send the worker its next chunk, or None (stop) when there is none; whether it got one."""
    chunk = next(chunks, None)
    conn.send(chunk)
    return chunk is not None


class WorkerDied(BalloonsimError):
    """A pool's worker process ended while it had runs to do."""


def all_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# -- Dask -----------------------------------------------------------------------------------


def check_address(address: str) -> None:
    """A scheduler address dask can read (``tcp://host:8786``, ``host:8786``), else a UsageError."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port

        parse_host_port(parse_address(address)[1])
    except ImportError:  # pragma: no cover - a dependency, but an install may lack it
        return  # dask() says what is missing
    except ValueError as err:
        raise UsageError(f"--cluster {address}: {err}; give the scheduler as tcp://HOST:PORT") from None


def dask(
    runs: Runs, keys: list[Key], *, address: str | None = None, local: int | None = None
) -> Iterator[list[Outcome]]:
    """On a dask.distributed cluster at ``address``, or a LocalCluster of ``local`` one-thread worker processes."""
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:  # pragma: no cover - a dependency, but an install may lack it
        raise UsageError("--cluster and --dask-local need dask.distributed: pip install 'dask[distributed]'") from None
    cluster = (
        LocalCluster(n_workers=local, threads_per_worker=1, processes=True, dashboard_address=None) if local else None
    )
    try:
        client = Client(cluster if cluster is not None else address, timeout=30)
    except (OSError, TimeoutError, ValueError) as err:  # (ValueError: an address dask cannot parse)
        if cluster is not None:
            cluster.close()
        raise UsageError(f"cannot reach the Dask scheduler at {address}: {err}") from None
    try:
        shared = client.scatter(runs, broadcast=True)  # once per worker, not once per chunk
        workers = len(client.scheduler_info().get("workers", {})) or 1
        futures = [client.submit(run_chunk, shared, chunk, pure=False) for chunk in chunked(keys, workers)]
        for future in as_completed(futures):
            yield future.result()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
