"""`cryptopipe bench soak`: a short run on the real servers has every field, balanced books and windows."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from typing import Any

import psutil
import pytest

from cryptopipe.measure.soak import (
    MemoryTrace,
    TreeMemory,
    same_address_space,
    slope_per_hour,
    tree_memory,
    window_percentiles_ms,
)
from cryptopipe.observability import Scrape


def test_the_slope_is_least_squares_in_mb_per_hour() -> None:
    assert slope_per_hour([(0.0, 100.0), (1800.0, 105.0), (3600.0, 110.0)]) == 10.0
    assert slope_per_hour([(0.0, 100.0), (60.0, 100.0)]) == 0.0
    assert slope_per_hour([(0.0, 100.0)]) is None


def test_memory_after_the_warm_up_is_what_the_slope_sees() -> None:
    def at(rss: float, pss: float, processes: int = 1) -> TreeMemory:
        return TreeMemory(rss, pss, processes)

    # A tree whose RSS jumps when a forked worker shares its parent's pages, while PSS does not.
    trace = MemoryTrace(
        {"ingest": [(0.0, at(50, 40)), (10.0, at(90, 80)), (20.0, at(150, 81, 2)), (30.0, at(91, 82))]}
    )
    report = trace.report(warmup_s=10.0)["ingest"]
    assert (report["rss_start_mb"], report["rss_end_mb"], report["rss_max_mb"]) == (90.0, 91.0, 150.0)
    assert (report["pss_start_mb"], report["pss_end_mb"], report["pss_max_mb"]) == (80.0, 82.0, 82.0)
    assert report["pss_slope_mb_per_h"] == 360.0  # 2 MB over 20 s after the warm-up
    assert report["processes_max"] == 2
    assert (report["peak_at_s"], report["peak_processes"]) == (30.0, 1)  # PSS's peak, not RSS's
    assert "parts" not in report  # one process: nothing to split


def test_a_tree_s_parts_have_slopes_of_their_own() -> None:
    # A JVM whose collector swings by 60 MB hides a driver that grows 1 MB every 10 s; the parts
    # show it. A worker that came and went has its own short series.
    def at(driver: float, jvm: float, worker: float | None = None) -> TreeMemory:
        parts = {"self": driver, "java": jvm, **({"python3": worker} if worker is not None else {})}
        total = sum(parts.values())
        return TreeMemory(total, total, len(parts), parts)

    points = [(0.0, at(100, 900)), (10.0, at(101, 960, 50)), (20.0, at(102, 900, 50)), (30.0, at(103, 840))]
    report = MemoryTrace({"alerting": points}).report(warmup_s=0.0)["alerting"]
    assert report["pss_slope_mb_per_h"] < 0  # the tree as a whole seems to shrink
    parts = report["parts"]
    assert parts["self"] == {"pss_start_mb": 100.0, "pss_end_mb": 103.0, "pss_slope_mb_per_h": 360.0}
    assert (parts["java"]["pss_start_mb"], parts["java"]["pss_end_mb"]) == (900.0, 840.0)
    assert parts["python3"] == {"pss_start_mb": 50.0, "pss_end_mb": 50.0, "pss_slope_mb_per_h": 0.0}


def test_a_process_tree_s_memory_counts_its_children_and_pss_splits_shared_pages() -> None:
    # A parent that touches 64 MB, then forks: the child shares those pages (copy-on-write).
    source = (
        "import os, sys, time; b = bytearray(64 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); "
        "pid = os.fork()\n"
        "if pid == 0: time.sleep(60)\n"
        "print('ready', flush=True); time.sleep(60)"
    )
    proc = subprocess.Popen([sys.executable, "-c", source], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        memory = tree_memory(proc.pid)
        assert memory is not None
        assert memory.processes == 2
        assert memory.pss is not None
        assert memory.rss > 2 * 64  # the shared 64 MB counted once per process
        assert memory.pss < memory.rss - 50  # and split between them by PSS
        # Its parts: the parent and its child, a Python of the same name; they add up to the tree.
        assert set(memory.parts) == {"self", psutil.Process(proc.pid).children()[0].name()}
        assert sum(memory.parts.values()) == pytest.approx(memory.pss)
    finally:
        for child in psutil.Process(proc.pid).children():
            os.kill(child.pid, 9)
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert tree_memory(proc.pid) is None


def test_a_task_in_the_same_address_space_is_told_from_a_forked_child() -> None:
    # A thread shares the process's address space, as a vfork or posix_spawn child does until its
    # exec (the JVM's way to run a command): its memory figures are the process's own, whole.
    started, done = threading.Event(), threading.Event()
    native: list[int] = []

    def run() -> None:
        native.append(threading.get_native_id())
        started.set()
        done.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    try:
        assert started.wait(10)
        assert same_address_space(os.getpid(), native[0])
    finally:
        done.set()
        thread.join()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert not same_address_space(os.getpid(), child.pid)
    finally:
        child.kill()
        child.wait()


def test_a_window_is_the_histograms_delta() -> None:
    def scrape(counts: tuple[int, int, int]) -> Scrape:
        le = ("0.001", "0.002", "+Inf")
        return Scrape.from_text(
            "# TYPE cryptopipe_system_latency_seconds histogram\n"
            + "".join(
                f'cryptopipe_system_latency_seconds_bucket{{symbol="X",le="{b}"}} {c}\n'
                for b, c in zip(le, counts, strict=True)
            )
        )

    # 100 fast trades before the window; in it, 100 trades all between 1 and 2 ms.
    window = window_percentiles_ms(
        scrape((100, 100, 100)), scrape((100, 200, 200)), "cryptopipe_system_latency_seconds"
    )
    assert window["p50"] is not None
    assert 1.0 <= window["p50"] <= 2.0
    assert window == {"p50": 1.5, "p95": 1.95, "p99": 1.99}
    empty = window_percentiles_ms(scrape((5, 5, 5)), scrape((5, 5, 5)), "cryptopipe_system_latency_seconds")
    assert empty == {"p50": None, "p95": None, "p99": None}


@pytest.mark.slow
def test_a_short_soak_reports_memory_windows_and_balanced_books(run_bench: Any) -> None:
    _, figures = run_bench(
        "soak", "--duration", "16", "--window", "5", "--warmup", "4", "--sample-every", "1",
        "--rate", "200", "--no-alerting", "--no-dashboard", "--no-prometheus",
        timeout=240,
    )  # fmt: skip
    assert figures["lost"] == figures["unwritten"] == 0
    assert figures["alerting_unread"] is None  # no Spark job in this run
    assert figures["reconciliation"]["balanced"] is True
    assert figures["trades_published"] > 0
    components = figures["components"]
    assert {"replay-exchange", "ingest", "prices-consumer"} <= set(components)
    for name, memory in components.items():
        assert memory["rss_end_mb"] > 0, name
        assert memory["rss_slope_mb_per_h"] is not None, name
    windows = figures["windows"]
    assert len(windows) >= 3
    starts = [w["start_s"] for w in windows]
    assert starts == sorted(starts)
    assert sum(w["trades_written"] for w in windows) > 0
    busy = [w for w in windows if w["trades_written"]]
    assert all(w["system_latency_ms"]["p99"] is not None for w in busy)
    assert all(w["e2e_latency_ms"]["p50"] is not None for w in busy)
