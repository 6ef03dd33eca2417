import sys
import time

import pytest

from kdfair_cli.data import registry

#: A test not marked slow may spend at most this much CPU (this process, all threads) in its call
#: phase: one that trains a model, runs a sweep or a SLURM job must carry @pytest.mark.slow, so
#: that `pytest -m "not slow"` stays fast. CPU time, not wall time: robust to a loaded machine; 3 s
#: leaves room for the first import of a heavy module, which falls on whichever test comes first.
FAST_CPU_SECONDS = 3.0


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    fast = item.get_closest_marker("slow") is None
    # A fast test runs torch on one thread: OpenMP workers spin while they wait for a core, so on a
    # loaded machine two threads can bill several times the work done (a fresh-clone run beside a
    # training job failed eight fast tests at 5-9 s of CPU that take about 1 s alone).
    torch = sys.modules.get("torch") if fast else None
    threads = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    start = time.process_time()
    try:
        yield
    finally:
        if torch is not None:
            torch.set_num_threads(threads)
    spent = time.process_time() - start
    if spent > FAST_CPU_SECONDS and fast:
        pytest.fail(f"{item.nodeid} spent {spent:.1f}s of CPU but is not marked slow (limit "
                    f"{FAST_CPU_SECONDS:g}s): mark it @pytest.mark.slow if it trains, sweeps or submits jobs")


@pytest.fixture
def blobs(monkeypatch, tmp_path):
    """Register the in-memory 'blobs' dataset; returns a data path to pass as --data."""
    monkeypatch.setitem(registry.DATASETS, "blobs", "tests.fakes:open_blobs")
    monkeypatch.setitem(registry.DATASETS, "blobs-noval", "tests.fakes:open_blobs_noval")
    return str(tmp_path)
