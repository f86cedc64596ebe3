"""Plan capacity for a spike: ``python -m tools.plan``.

Prints every figure with the formula behind it (always-ready, maximum burst, how an
unannounced spike ramps, Genesys concurrency, API Management limits, MAX_DB_QPS and the
in-flight caps, Redis memory, instance-hours). With a weekly call-volume profile it also
holds SCALE_SCHEDULE against it (``--check``), writes the cheapest schedule that covers it
(``--suggest``) and draws demand against scheduled capacity (``--chart``). ``--benchmark``
holds the model itself against a measured spike run.

Inputs come from flags, or from a JSON file (``--inputs``) whose keys are the long flag
names (``{"calls-per-minute": 6000, "size": "EP2"}``); flags win over the file.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from shared.scale.schedule import (
    MAX_BURST_LIMIT_DEFAULT,
    Schedule,
    ScheduleError,
    parse_schedule,
)
from shared.settings import with_local_settings
from tools.capacity import (
    INSTANCE_SIZES,
    Comparison,
    CpuBySource,
    Inputs,
    Measured,
    Plan,
    compare_with_benchmark,
    cpu_mix,
    per_instance_dips,
    plan,
)
from tools.profile import (
    Profile,
    ProfileError,
    Short,
    check,
    instance_hours,
    parse_profile,
    schedule_text,
    scheduled,
    suggest,
)

__all__ = ["main", "render_comparison", "render_plan"]

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BENCHMARK = ROOT / "docs" / "bench" / "spike.json"
# CPU per dip by how it is answered: python -m bench.cpu's committed report.
DEFAULT_CPU_REPORT = ROOT / "docs" / "bench" / "cpu.json"

# Flag name, Inputs field, type, help. The file's keys are the same flag names.
_NUMBERS: Sequence[tuple[str, str | None, type, str]] = (
    ("calls-per-minute", "calls_per_minute", float, "busy-hour calls per minute before a spike"),
    ("spike-factor", "spike_factor", float, "the spike's multiple of that (default 10)"),
    ("dips-per-call", "dips_per_call", float, "data dips each call makes (default 1)"),
    (
        "genesys-concurrency",
        "genesys_concurrency",
        int,
        "the org's data action concurrency limit (Genesys default 30)",
    ),
    ("action-timeout", "action_timeout_s", float, "the data action's timeout, seconds (3)"),
    ("utilization", "utilization", float, "plan instances to this share of CPU (0.6)"),
    ("network-ms", "network_ms", float, "Genesys to the app and back, outside the app (40)"),
    ("db-safe-qps", "db_safe_qps", int, "reads/s the customer table takes safely (200)"),
    ("db-latency-ms", "db_latency_ms", float, "a Table point read's latency (40)"),
    ("customers", "customers", int, "customers in the table (100000)"),
    ("repeat-share", "repeat_share", float, "cold read model: dips an earlier dip cached (0)"),
    ("unwarmed-share", "unwarmed_share", float, "warm: dips for customers added since (0)"),
    ("stranger-share", "stranger_share", float, "dips for numbers no customer has (0.07)"),
    ("current-always-ready", "current_always_ready", int, "always-ready now (1)"),
    ("pre-warmed", "pre_warmed", int, "pre-warmed instances (1)"),
    ("warmup-seconds", "warmup_s", float, "a new instance's start and warm-up, seconds (30)"),
    ("ramp-seconds", "ramp_s", float, "an unannounced spike reaches its peak in (150)"),
    (
        "max-burst-limit",
        "max_burst_limit",
        int,
        f"the region's maximum burst ({MAX_BURST_LIMIT_DEFAULT})",
    ),
    # Not fields of Inputs (None): the measured figures and the price are read on their own.
    ("cpu-ms-per-dip", None, float, "app CPU per dip (default: bench.cpu's, by source)"),
    ("latency-ms", None, float, "a dip's p95 in the app (default: the benchmark's)"),
    ("price-per-instance-hour", None, float, "your price of one instance-hour, for cost"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.plan",
        description="Plan capacity for a call spike, with the formula behind each figure.",
    )
    parser.add_argument("--inputs", type=Path, help="JSON file of inputs (keys: flag names)")
    for flag, _, kind, text in _NUMBERS:
        parser.add_argument(f"--{flag}", type=kind, help=text)
    parser.add_argument("--size", choices=tuple(INSTANCE_SIZES), help="Elastic Premium size (EP1)")
    parser.add_argument(
        "--cold", action="store_true", help="plan for a cold read model (no warm before)"
    )
    parser.add_argument("--profile", type=Path, help="weekly volume CSV: start,calls")
    parser.add_argument(
        "--schedule", type=Path, help="SCALE_SCHEDULE JSON file (default: local settings)"
    )
    parser.add_argument("--settings", default="local.settings.json", help=argparse.SUPPRESS)
    parser.add_argument("--check", action="store_true", help="hold the schedule to the profile")
    parser.add_argument("--suggest", action="store_true", help="write a schedule for the profile")
    parser.add_argument("--out", type=Path, help="with --suggest: write the schedule here")
    parser.add_argument("--chart", type=Path, help="PNG of demand against capacity")
    parser.add_argument(
        "--benchmark",
        type=Path,
        nargs="?",
        const=DEFAULT_BENCHMARK,
        help="hold the model to a spike benchmark result (default docs/bench/spike.json)",
    )
    parser.add_argument(
        "--measured-from",
        type=Path,
        default=DEFAULT_BENCHMARK,
        help="the spike benchmark result whose latency is the default",
    )
    parser.add_argument(
        "--cpu-from",
        type=Path,
        default=DEFAULT_CPU_REPORT,
        help="the bench.cpu result whose CPU per dip, by answer source, is the default",
    )
    return parser


def _file_values(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"--inputs {path}: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"--inputs {path}: expected a JSON object of flag names")
    known = {flag for flag, *_ in _NUMBERS} | {"size", "cold"}
    unknown = sorted(set(doc) - known - {"comment"})
    if unknown:
        raise ValueError(f"--inputs {path}: unknown input {unknown[0]!r}")
    return doc


def _read_result[T](
    path: Path, read: Callable[[Mapping[str, Any]], T], what: str, instead: str
) -> T:
    """A committed benchmark result, read by ``read``; a ValueError that says what to pass
    instead when it is missing or not what ``read`` expects."""
    try:
        return read(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError) as exc:
        raise ValueError(f"no {what} at {path} ({exc}): {instead}") from None


def _measured(args: argparse.Namespace, values: Mapping[str, Any]) -> Measured:
    cpu, latency = values.get("cpu-ms-per-dip"), values.get("latency-ms")
    if cpu is not None and latency is not None:
        return Measured(float(cpu), float(latency), "given")
    bench = _read_result(
        args.measured_from,
        Measured.from_benchmark,
        "benchmark result",
        "pass --cpu-ms-per-dip and --latency-ms",
    )
    return Measured(
        float(cpu) if cpu is not None else bench.cpu_ms_per_dip,
        float(latency) if latency is not None else bench.latency_ms,
        bench.source if cpu is None else f"given, latency from the {bench.source}",
    )


def _inputs(args: argparse.Namespace, profile: Profile | None) -> tuple[Inputs, float | None]:
    """The planner's inputs from the file, then the flags over them; and the price."""
    values = _file_values(args.inputs)
    for flag, *_ in _NUMBERS:
        given = getattr(args, flag.replace("-", "_"))
        if given is not None:
            values[flag] = given
    if args.size is not None:
        values["size"] = args.size
    if "calls-per-minute" not in values:
        if profile is None:
            raise ValueError("give --calls-per-minute, or a --profile to take its busiest interval")
        values["calls-per-minute"] = profile.peak_calls_per_minute
    numbers: dict[str, Any] = {}
    for flag, _, kind, _ in _NUMBERS:
        if flag in values:
            try:
                numbers[flag] = kind(values[flag])
            except (TypeError, ValueError):
                raise ValueError(f"{flag}: expected a number, got {values[flag]!r}") from None
    fields: dict[str, Any] = {
        field: numbers[flag] for flag, field, _, _ in _NUMBERS if field and flag in numbers
    }
    if "size" in values:
        fields["size"] = str(values["size"])
    fields["warm"] = not (args.cold or bool(values.get("cold", False)))
    inputs = Inputs(measured=_measured(args, numbers), **fields)
    if numbers.get("cpu-ms-per-dip") is None:
        # CPU per dip mixed from bench.cpu's figures by how this plan's peak is answered.
        by_source = _read_result(
            args.cpu_from, CpuBySource.from_report, "bench.cpu result", "pass --cpu-ms-per-dip"
        )
        ms, how = cpu_mix(inputs, by_source)
        latency = inputs.measured
        inputs = replace(
            inputs,
            measured=Measured(
                round(ms, 3), latency.latency_ms, f"{how}; latency from the {latency.source}"
            ),
        )
    return inputs, numbers.get("price-per-instance-hour")


def _fmt(value: float | str, unit: str) -> str:
    if isinstance(value, str):
        return value
    if unit == "share":
        return f"{value:.1%}"
    if unit == "bytes":
        return f"{value / 1e6:,.1f} MB"
    if math.isinf(value):
        return "never"
    text = f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def render_plan(result: Plan) -> str:
    i = result.inputs
    lines = [
        f"Capacity plan: {i.calls_per_minute:,.0f} calls/min x {i.spike_factor:g} spike, "
        f"{i.dips_per_call:g} dip{'' if i.dips_per_call == 1 else 's'} per call, {i.size}, "
        f"{'warm' if i.warm else 'cold'} read model",
        f"Measured per dip: {i.measured.cpu_ms_per_dip} ms CPU, p95 {i.measured.latency_ms} ms"
        f" ({i.measured.source})",
        "",
    ]
    for f in result.figures.values():
        lines.append(f"  {f.name}: {_fmt(f.value, f.unit)}")
        lines.append(f"      = {f.formula}")
        if f.note:
            lines.append(f"      ({f.note})")
    if result.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in result.warnings]
    return "\n".join(lines)


def render_comparison(comparisons: Sequence[Comparison], source: str) -> str:
    lines = [
        f"The model against {source}, at the peak:",
        "",
        "| run | figure | predicted | measured | tolerance | holds |",
        "|---|---|---:|---:|---|---|",
    ]
    for c in comparisons:
        unit = "share" if c.figure == "degradedShare" else "/s"
        lines.append(
            f"| {c.variant} | {c.figure} | {_fmt(c.predicted, unit)} | {_fmt(c.measured, unit)} "
            f"| {c.tolerance.describe()} | {'yes' if c.holds else 'NO'} |"
        )
    return "\n".join(lines)


def _schedule(args: argparse.Namespace, limit: int) -> Schedule:
    if args.schedule is not None:
        text = Path(args.schedule).read_text(encoding="utf-8")
    else:
        text = with_local_settings(args.settings, env={}).get("SCALE_SCHEDULE", "")
    if not text.strip():
        raise ValueError(
            "no schedule: pass --schedule FILE or set SCALE_SCHEDULE in local settings"
        )
    return parse_schedule(text, max_burst_limit=limit)


def _render_shorts(shorts: Sequence[Short]) -> str:
    if not shorts:
        return "Every interval is covered: always-ready plus pre-warmed run a spike at once."
    lines = [f"{len(shorts)} stretch(es) where the schedule is below the demand of a spike:"]
    for s in shorts:
        lines.append(
            f"  {s.start:%a %Y-%m-%d %H:%M} to {s.end:%a %H:%M}: demand {s.demand:,.0f} dips/s, "
            f"scheduled {s.capacity:,.0f} (alwaysReady {s.always_ready}; needs {s.needed})"
        )
    return "\n".join(lines)


def _chart(
    path: Path,
    inputs: Inputs,
    result: Plan,
    profile: Profile | None,
    schedule: Schedule | None,
    suggested: Schedule | None,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("the chart needs matplotlib: pip install matplotlib") from None
    planned = per_instance_dips(inputs)
    fig, ax = plt.subplots(figsize=(11, 4.2))
    if profile is not None:
        first = profile.intervals[0].start
        xs = [(i.start - first) / timedelta(hours=1) for i in profile.intervals]
        days = range(0, math.ceil(xs[-1]) + 1, 24)
        ax.set_xticks(list(days), [f"{first + timedelta(hours=h):%a %d %b}" for h in days])
        normal = [profile.dips_per_s(i, inputs.dips_per_call) for i in profile.intervals]
        ax.plot(xs, normal, color="#888888", lw=1, label="forecast dips/s")
        ax.plot(
            xs,
            [d * inputs.spike_factor for d in normal],
            color="#d62728",
            lw=1.2,
            label=f"a {inputs.spike_factor:g}x spike",
        )
        for sched, colour, label in (
            (schedule, "#1f77b4", "scheduled capacity"),
            (suggested, "#2ca02c", "suggested capacity"),
        ):
            if sched is not None:
                caps = [c for *_, c in scheduled(profile, sched, planned)]
                ax.step(xs, caps, where="post", color=colour, lw=1.5, label=label)
        ax.set_title("Demand against always-ready + pre-warmed capacity over the week")
    else:
        ts = [s.t for s in result.ramp]
        ax.plot(ts, [s.demand for s in result.ramp], color="#d62728", label="dips/s offered")
        ax.step(
            ts,
            [s.ready * planned for s in result.ramp],
            where="post",
            color="#1f77b4",
            label=f"serving instances x {planned:,.0f} dips/s",
        )
        ax.set_xlabel("seconds into an unannounced spike")
        ax.set_title("An unannounced spike: demand against instances serving")
    ax.set_ylabel("dips/s")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _hours(profile: Profile, schedule: Schedule, result: Plan) -> tuple[float, float]:
    """Always-ready instance-hours of ``schedule`` over the profile, and of a flat schedule
    that keeps the spike's always-ready all the time."""
    rows = scheduled(profile, schedule, per_instance_dips(result.inputs))
    ours = instance_hours([(ready, profile.step) for _, ready, _, _ in rows])
    flat = result.value("alwaysReady") * (profile.step * len(rows) / timedelta(hours=1))
    return ours, flat


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.benchmark is not None:
            result = json.loads(Path(args.benchmark).read_text(encoding="utf-8"))
            comparisons = compare_with_benchmark(result)
            commit = result.get("machine", {}).get("commit", "?")
            shown = Path(args.benchmark).resolve()
            where = shown.relative_to(ROOT) if shown.is_relative_to(ROOT) else shown
            print(render_comparison(comparisons, f"{where} (run of {commit})"))
            return 0 if all(c.holds for c in comparisons) else 1

        profile = None
        if args.profile is not None:
            profile = parse_profile(Path(args.profile).read_text(encoding="utf-8"))
            for message in profile.rejected:
                print(f"profile: {message}", file=sys.stderr)
        inputs, price = _inputs(args, profile)
        result = plan(inputs)
        print(render_plan(result))

        schedule = suggested = None
        short: list[Short] = []
        if profile is not None:
            planned = per_instance_dips(inputs)
            if args.check or args.schedule is not None:
                schedule = _schedule(args, inputs.max_burst_limit)
            if args.suggest:
                zone = schedule.timezone if schedule is not None else "UTC"
                doc = suggest(
                    profile,
                    timezone=zone,
                    planned=planned,
                    dips_per_call=inputs.dips_per_call,
                    spike_factor=inputs.spike_factor,
                    pre_warmed=inputs.pre_warmed,
                )
                text = schedule_text(doc)
                suggested = parse_schedule(text, max_burst_limit=inputs.max_burst_limit)
                print("\nSuggested SCALE_SCHEDULE:\n" + text)
                if args.out is not None:
                    args.out.write_text(text + "\n", encoding="utf-8")
            for name, sched in (("scheduled", schedule), ("suggested", suggested)):
                if sched is not None:
                    ours, flat = _hours(profile, sched, result)
                    cost = f", {ours * price:,.0f} against {flat * price:,.0f}" if price else ""
                    print(
                        f"\nAlways-ready instance-hours over the profile, {name}: {ours:,.0f}, "
                        f"against {flat:,.0f} for a flat {result.value('alwaysReady'):.0f} "
                        f"all the time ({1 - ours / flat:.0%} fewer){cost}"
                    )
            if args.check and schedule is not None:
                short = check(
                    profile,
                    schedule,
                    planned=planned,
                    dips_per_call=inputs.dips_per_call,
                    spike_factor=inputs.spike_factor,
                )
                print("\n" + _render_shorts(short))
        elif args.check or args.suggest:
            raise ValueError("--check and --suggest need a --profile")
        if args.chart is not None:
            _chart(args.chart, inputs, result, profile, schedule, suggested)
            print(f"\nChart: {args.chart}")
        return 1 if short else 0
    except (ValueError, ProfileError, ScheduleError, OSError) as exc:
        print(f"plan: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
