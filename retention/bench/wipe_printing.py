"""What ``bench_wipe`` prints at the end: one table of every path against the floor, the
goals the engine is held to with PASS or FAIL, and the statements of any transaction
that ran too long."""

from __future__ import annotations

import os
from collections.abc import Callable

from retention.bench.wipe_worker import Result

# The goals the engine is held to (issue "Wipes run").
GOAL_FLOOR_RATIO = 0.5
GOAL_UNREADABLE_S = 1.0
GOAL_TRANSACTION_MS = 250
GOAL_WORKER_MB = 64


def print_report(
    say: Callable[[str], None],
    *,
    messages: int,
    idle_mb: float,
    load_at_start: str,
    floor: Result,
    floor_statements_s: float,
    results: list[Result],
) -> None:
    floor_rate = floor.rate(floor.wall_s)
    header = (
        f"{'path':30} {'rows':>9} {'wall s':>7} {'run s':>7} {'rows/s (wall)':>13} "
        f"{'× floor':>7} {'rows/s (run)':>12} {'× floor':>7} {'batch ms':>8} "
        f"{'write ms':>8} {'read ms':>7} {'peak MB':>7} {'vs idle':>7}"
    )
    say(
        f"\nN = {messages:,}; idle worker {idle_mb:.0f} MB; load average "
        f"at the start {load_at_start}, now {load()}"
    )
    say(header)
    say("-" * len(header))
    for r in [floor, *results]:
        wall_rate, run_rate = r.rate(r.wall_s), r.rate(r.run_s)
        say(
            f"{r.label:30} {r.rows:>9,} {r.wall_s:>7.2f} {_f(r.run_s, '.2f'):>7} "
            f"{_f(wall_rate, ',.0f'):>13} {_ratio(wall_rate, floor_rate):>7} "
            f"{_f(run_rate, ',.0f'):>12} {_ratio(run_rate, floor_rate):>7} "
            f"{_f(r.longest_batch_ms, 'd'):>8} {_f(r.longest_xact_ms, '.0f'):>8} "
            f"{_f(r.longest_read_ms, '.0f'):>7} "
            f"{_f(r.worker_peak_mb, '.0f'):>7} "
            f"{_f(r.worker_peak_mb and r.worker_peak_mb - idle_mb, '+.0f'):>7}"
        )
    say(
        "\nwall: from the enqueue (restore: the do_restore_from_bin call; purge: the "
        "start_due_purges call) to the run's end, including the burst worker's start; "
        "run: Execution.started_at → finished_at. batch ms: Execution.longest_batch_ms "
        "(the longest batch transaction, COMMIT included; a purge's file deletion too); "
        "write ms / read ms: the longest transaction that wrote "
        "/ only read, seen in pg_stat_activity (sampled every 25 ms)."
    )
    say(
        f"floor without the foreign-key checks its COMMIT runs: "
        f"{floor.rows / floor_statements_s:,.0f} rows/s "
        f"({floor_statements_s:.2f} s of DELETE statements)"
    )
    _goals(say, floor_rate, results, idle_mb)
    for r in results:
        for kind, ms, statements in [
            ("write transaction", r.longest_xact_ms, r.longest_xact_statements),
            ("read-only transaction", r.longest_read_ms, r.longest_read_statements),
        ]:
            if (ms or 0) > GOAL_TRANSACTION_MS:
                listed = "\n    ".join(s[:250] for s in statements[-6:])
                say(
                    f"\nLongest {kind} seen in {r.label} ({ms:.0f} ms), statements "
                    f"sampled in it (last 6):\n    {listed}"
                )


def _goals(
    say: Callable[[str], None], floor_rate: float, results: list[Result], idle_mb: float
) -> None:
    by = {r.key: r for r in results}
    lines: list[tuple[str, bool, str]] = []
    for key, name in [
        ("move", "move"),
        ("restore", "restore"),
        ("purge", "purge"),
        ("wipe-rows", "server-side row removal"),
    ]:
        result = by[key]
        run = (result.rate(result.run_s or result.wall_s) or 0) / floor_rate
        wall = (result.rate(result.wall_s) or 0) / floor_rate
        lines.append(
            (
                f"{name} ≥ {GOAL_FLOOR_RATIO}× floor",
                run >= GOAL_FLOOR_RATIO,
                f"{run:.2f}× (run), {wall:.2f}× (wall)",
            )
        )
    unreadable = by["wipe-unreadable"]
    lines.append(
        (
            f"unreadable < {GOAL_UNREADABLE_S:g} s",
            unreadable.run_s < GOAL_UNREADABLE_S,
            f"{unreadable.run_s:.2f} s (run), {unreadable.wall_s:.2f} s (wall)",
        )
    )
    longest = max(results, key=lambda r: max(r.longest_batch_ms or 0, r.longest_xact_ms or 0))
    ms = max(longest.longest_batch_ms or 0, longest.longest_xact_ms or 0)
    lines.append(
        (
            f"no write transaction > {GOAL_TRANSACTION_MS} ms",
            ms <= GOAL_TRANSACTION_MS,
            f"longest {ms:.0f} ms ({longest.label})",
        )
    )
    reader = max(results, key=lambda r: r.longest_read_ms or 0)
    ms = reader.longest_read_ms or 0
    lines.append(
        (
            f"no read-only statement > {GOAL_TRANSACTION_MS} ms",
            ms <= GOAL_TRANSACTION_MS,
            f"longest {ms:.0f} ms ({reader.label})",
        )
    )
    peak = max(r.worker_peak_mb or 0 for r in results)
    lines.append(
        (
            f"worker peak within {GOAL_WORKER_MB} MB of idle",
            peak - idle_mb <= GOAL_WORKER_MB,
            f"peak {peak:.0f} MB, idle {idle_mb:.0f} MB (+{peak - idle_mb:.0f})",
        )
    )
    say("\nGoals (ratios judged on run time; an inline restore has no run row: wall):")
    for name, ok, figure in lines:
        say(f"  {'PASS' if ok else 'FAIL'}  {name:40} {figure}")


def load() -> str:
    """The 1, 5 and 15 minute load averages: other work on the machine skews the figures."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def _f(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _ratio(rate: float | None, floor_rate: float) -> str:
    return "—" if rate is None or not floor_rate else f"{rate / floor_rate:.2f}"
