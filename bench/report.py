"""The spike benchmark's outputs: results JSON, a chart, and a Markdown summary."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["markdown", "markdown_cpu_per_dip", "write_chart", "write_reports"]

_SCRIPT_INNER = {"time", "lindex", "lpush", "ltrim", "pexpire"}
_SOURCE_COLOURS = {
    "database": "#1f77b4",
    "cache": "#2ca02c",
    "stale": "#bcbd22",
    "degraded": "#ff7f0e",
    "none": "#9467bd",
    "error": "#d62728",
}


def _fmt(value: Any, suffix: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        text = f"{value:,.1f}" if abs(value) < 1000 else f"{value:,.0f}"
        return text + suffix
    return f"{value}{suffix}"


def _sources(r: dict[str, Any]) -> str:
    parts = [f"{k} {v}" for k, v in r["sources"].items() if v]
    errors = r["timeouts"] + r["connectionErrors"]
    if errors:
        parts.append(f"no answer {errors}")
    return ", ".join(parts)


_BY_SOURCE = ("database", "cache", "stale", "degraded")


def _source_cell(lat: dict[str, Any] | None) -> str:
    if not lat or not lat.get("count"):
        return "-"
    return f"{_fmt(lat['p50Ms'])} / {_fmt(lat['p99Ms'])} ({lat['count']:,})"


def _cpu(r: dict[str, Any]) -> str:
    cpu = r.get("cpuSeconds") or {}
    rest = sum(cpu.get(k) or 0.0 for k in ("dbproxy", "azurite", "redis", "bench"))
    return (
        f"{_fmt(cpu.get('app'))} / {rest:.1f} / {_fmt(cpu.get('others'))} / "
        f"{_fmt(cpu.get('stolen'))}"
    )


def markdown_known_callers(result: dict[str, Any]) -> str:
    """Known callers who got their own record, by run, and what each warm took."""
    lines = [
        "Known callers (customers the table holds, not strangers) answered with their own "
        "record (cache, database or stale) rather than the degraded default; baseline p99 is "
        "the same run before the spike, the latency a spike is held to.",
        "",
        "| run | known callers real, whole run | at the peak | baseline p99 / spike p99 (ms) "
        "| warm: when, entities, pages, seconds, completed |",
        "|---|---|---|---|---|",
    ]
    for r in result["variants"]:
        whole, peak = r.get("knownCallers"), r.get("knownCallersAtSpike")
        if whole is None or peak is None:
            continue
        warm = r.get("warm")
        warm_cell = (
            f"{warm['when']}, {warm.get('entities', '?')}, {warm.get('pages', '?')}, "
            f"{warm.get('seconds', '?')} s, {warm.get('completed', '?')}"
            if warm
            else "-"
        )
        lines.append(
            f"| {r['name']} | {_fmt(whole['realPct'], '%')} of {whole['calls']:,} "
            f"| {_fmt(peak['realPct'], '%')} of {peak['calls']:,} "
            f"| {_fmt(r['baselineLatency']['p99Ms'])} / {_fmt(r['spikeLatency']['p99Ms'])} "
            f"| {warm_cell} |"
        )
    return "\n".join(lines)


def markdown_cpu_per_dip(result: dict[str, Any]) -> str:
    """The app's CPU per dip answered, next to the committed full run's figure."""
    m = result["machine"]
    host = (
        f"Microsoft's worker (azure-functions-runtime {m['worker']})"
        if m.get("worker")
        else "the dev host"
    )
    ours = next((r for r in result["variants"] if r["name"] == "dipguard"), None)
    text = (
        "App CPU per dip answered: "
        + (f"{_fmt(ours.get('appCpuMsPerDip'), ' ms')} for dipguard" if ours else "-")
        + f", through {host} on Python {m['python']}."
    )
    base = result.get("cpuBaseline")
    if base and base.get("appCpuMsPerDip") is not None:
        then = (
            f"Microsoft's worker (azure-functions-runtime {base['worker']})"
            if base.get("worker")
            else "the dev host calling the functions directly"
        )
        text += (
            f" The committed full run ({base['file']}, commit {base['commit']}, "
            f"Python {base['python']}, {then}) measured "
            f"{_fmt(base['appCpuMsPerDip'], ' ms')} ({base['appCpuSeconds']:g} CPU-s for "
            f"{base['answered']:,} dips)."
        )
    return text


def _verdict(r: dict[str, Any]) -> str:
    v = r["verdict"]
    if v["targets"]:
        missed = [k for k, ok in {**v["checks"], **v["performance"]}.items() if not ok]
        return "all met" if not missed else "missed: " + ", ".join(missed)
    notes = []
    if v["dbCapBreached"]:
        notes.append("cap breached")
    if v["dbSaturated"]:
        notes.append("database saturated")
    return "; ".join(notes) or "no breach, not saturated"


def markdown(result: dict[str, Any], chart: str | None) -> str:
    cfg = result["config"]
    m = result["machine"]
    lines = [
        "# Spike benchmark",
        "",
        f"Run {result['startedAt']}, {result['seconds']} s in all"
        + (" (--quick)" if result["quick"] else "")
        + ".",
        f"Machine: {m['nproc']} cores, {m['cpu']}; memory {'; '.join(m['memory'])}; "
        f"Linux {m['kernel']}; Python {m['python']}; {m['redis'].split(' sha=')[0]}; "
        f"Azurite {m['azurite'] or '?'}. Commit {m.get('commit') or '?'}"
        + (" with local changes" if m.get("appFilesChanged") else "")
        + ". Load average at start "
        f"{', '.join(f'{x:.2f}' for x in m['loadAverageAtStart'])}.",
        "",
        f"Traffic: {cfg['customers']:,} customers; baseline {cfg['baselineDipsPerS']:g} dips/s, "
        f"spike x{cfg['factor']:g} ({cfg['baselineDipsPerS'] * cfg['factor']:g} dips/s); "
        f"{cfg['calls']:,} calls per run ({cfg['drillCalls']:,} in a drill), open loop. "
        f"App: the dev host with {cfg.get('appWorkers', 1)} worker process(es) "
        f"(FUNCTIONS_WORKER_PROCESS_COUNT), "
        + (
            f"MAX_INFLIGHT_DB_READS {cfg['projectEnv']['MAX_INFLIGHT_DB_READS']} each. "
            if "MAX_INFLIGHT_DB_READS" in cfg["projectEnv"]
            else "each deriving its in-flight cap from MAX_DB_QPS and DB_READ_LATENCY_MS "
            f"{cfg['projectEnv'].get('DB_READ_LATENCY_MS', '40')}. "
        )
        + f"Database: {cfg['dbSlots']} slots x {cfg['dbServiceMs']:g} ms "
        f"= {cfg['dbCapacityPerS']} reads/s; MAX_DB_QPS {cfg['maxDbQps']}. "
        f"Drill faults start {cfg['faultAfterSpikeStartS']:g} s into the spike and last "
        f"{cfg['faultSeconds']:g} s.",
        "",
        "| run | spike p50 / p95 / p99 / max (ms) | within 2.5 s | sources | 4xx / 5xx |"
        " peak DB reads in 1 s (cap) | Redis commands / dip (round trips) | recovery | verdict |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["variants"]:
        lat = r["spikeLatency"]
        rec = r.get("recovery")
        lines.append(
            f"| {r['name']} | {_fmt(lat['p50Ms'])} / {_fmt(lat['p95Ms'])} / "
            f"{_fmt(lat['p99Ms'])} / {_fmt(lat['maxMs'])} | {_fmt(r['withinDeadlinePct'], '%')} "
            f"| {_sources(r)} | {r['status4xx']} / {r['status5xx']} | "
            f"{r['db']['peakReadsIn1s']} ({r['db']['cap']}) | {_fmt(r['redis']['perDip'])} "
            f"({_fmt(r['redis']['roundTripsPerDip'])}) | "
            f"{_fmt(rec['recoverySeconds'], ' s') if rec else '-'} | {_verdict(r)} |"
        )
    lines += [
        "",
        "Spike latency covers the calls sent during the hold at the peak; a call that got "
        "no answer counts at its timeout. Peak DB reads: the most entity reads that reached "
        "the database proxy in any 1-second sliding window. Recovery: from the fault "
        "clearing until database + cache answers are back to 80% of their rate before it.",
        "",
        "Spike latency by answer source, p50 / p99 in ms (answers). A database answer waits "
        f"for the database's own service time ({cfg['dbServiceMs']:g} ms at least); the "
        "others show what the app itself costs.",
        "",
        "| run | " + " | ".join(_BY_SOURCE) + " |",
        "|---|" + "---|" * len(_BY_SOURCE),
    ]
    for r in result["variants"]:
        by_source = r.get("spikeLatencyBySource") or {}
        cells = [_source_cell(by_source.get(s)) for s in _BY_SOURCE]
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| run | whole run p50 / p99 / max (ms) | DB reads served peak / 1 s | max queued at DB "
        "| Redis commands sent | 30-slot Genesys org could sustain | CPU s: app / rest of bench / "
        "other processes / stolen by the hypervisor | SYNs dropped at a full backlog "
        "| driver lag p99 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["variants"]:
        lat = r["latency"]
        # The commands the app sent; those valve.lua runs inside Redis are left out.
        cmds = ", ".join(
            f"{k.upper().replace('|', ' ')} {v}"
            for k, v in r["redis"]["byCommand"].items()
            if k not in _SCRIPT_INNER
        )
        lines.append(
            f"| {r['name']} | {_fmt(lat['p50Ms'])} / {_fmt(lat['p99Ms'])} / {_fmt(lat['maxMs'])}"
            f" | {r['db']['peakServedIn1s']} | {r['db']['maxQueued']} | {cmds or '-'} | "
            f"{_fmt(r['genesys30SlotDipsPerS'], ' dips/s')} | {_cpu(r)} | "
            f"{r.get('listenOverflows', '-')} | {_fmt(r['driverLagP99Ms'], ' ms')} |"
        )
    lines += ["", markdown_known_callers(result), "", markdown_cpu_per_dip(result)]
    if cfg["genesysConcurrency"]:
        lines += [
            "",
            f"Genesys concurrency cap: {cfg['genesysConcurrency']} dips in flight; "
            "calls beyond it were rejected before reaching the app.",
            "",
            "| run | offered at peak | answered at peak (what the cap allows) "
            "| rejected by the cap |",
            "|---|---|---|---|",
        ]
        for r in result["variants"]:
            lines.append(
                f"| {r['name']} | {r['spikeOfferedPerS']} dips/s | "
                f"{r['spikeAnsweredPerS']} dips/s | {r['genesysRejected']} |"
            )
    drills = [r for r in result["variants"] if r.get("recovery")]
    if drills:
        lines += [
            "",
            "| drill | fault (s from start) | good answers/s before / during / after recovery |"
            " first database answer after | first cache answer after | recovery |",
            "|---|---|---|---|---|---|",
        ]
        for r in drills:
            rec = r["recovery"]
            lines.append(
                f"| {r['name']} | {rec['faultStartS']}-{rec['faultEndS']} | "
                f"{rec['goodPerSBefore']} / {rec['goodPerSDuring']} / "
                f"{_fmt(rec.get('goodPerSAfter'), '')} | "
                f"{_fmt(rec['firstDatabaseAfterS'], ' s')} | {_fmt(rec['firstCacheAfterS'], ' s')}"
                f" | {_fmt(rec['recoverySeconds'], ' s')} |"
            )
    verdict = result["verdict"]
    lines += [
        "",
        f"Guarantees kept (deadline, no 5xx, cap, recovery): "
        f"**{'yes' if verdict['met'] else 'no'}**. All targets, p99 included: "
        f"**{'yes' if verdict['allMet'] else 'no'}**.",
    ]
    if chart:
        lines += ["", f"![spike benchmark]({chart})"]
    return "\n".join(lines) + "\n"


def write_chart(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = result["variants"]
    fig, axes = plt.subplots(
        len(runs), 3, figsize=(17, 3.1 * len(runs)), squeeze=False, constrained_layout=True
    )
    for row, r in enumerate(runs):
        tl = r["timeline"]
        t = tl["t"]
        ax_lat, ax_src, ax_db = axes[row]
        for key, style in (("p50Ms", "-"), ("p95Ms", "--"), ("p99Ms", "-"), ("maxMs", ":")):
            ax_lat.plot(
                t,
                [v if v is not None else float("nan") for v in tl[key]],
                style,
                label=key.removesuffix("Ms"),
                linewidth=1.2 if key != "p99Ms" else 1.8,
            )
        ax_lat.axhline(2500, color="red", linewidth=0.8, linestyle="--", label="2.5 s deadline")
        ax_lat.axhline(50, color="grey", linewidth=0.8, linestyle=":", label="50 ms")
        ax_lat.set_yscale("log")
        ax_lat.set_ylabel("latency (ms)")
        ax_lat.set_title(f"{r['title']}: latency", fontsize=9, loc="left")
        bottoms = [0] * len(t)
        for source, colour in _SOURCE_COLOURS.items():
            values = tl.get(f"src_{source}", [0] * len(t))
            if not any(values):
                continue
            ax_src.bar(
                t, values, width=1.0, bottom=bottoms, color=colour, label=source, align="edge"
            )
            bottoms = [a + b for a, b in zip(bottoms, values, strict=True)]
        ax_src.plot(
            [x + 0.5 for x in t], tl["offered"], color="black", linewidth=0.8, label="offered"
        )
        ax_src.set_ylabel("answers / s")
        ax_src.set_title("source mix (by send second)", fontsize=9, loc="left")
        ax_db.plot(t, tl["dbReads"], color="#1f77b4", label="reads sent to DB / s")
        ax_db.plot(t, tl["dbServed"], color="#17becf", linestyle="--", label="reads served / s")
        ax_db.axhline(r["db"]["cap"], color="red", linewidth=0.9, label="MAX_DB_QPS")
        ax_db.axhline(
            r["db"]["capacity"], color="grey", linewidth=0.9, linestyle=":", label="DB capacity"
        )
        ax_db.set_ylabel("reads / s")
        ax_db.set_title(
            f"database: peak {r['db']['peakReadsIn1s']} reads in a 1 s window, "
            f"max queue {r['db']['maxQueued']}",
            fontsize=9,
            loc="left",
        )
        rec = r.get("recovery")
        end = max((x for x, n in zip(t, tl["offered"], strict=True) if n), default=t[-1]) + 3
        for ax in (ax_lat, ax_src, ax_db):
            ax.set_xlim(0, end)
            if rec:
                ax.axvspan(rec["faultStartS"], rec["faultEndS"], color="red", alpha=0.08)
            ax.set_xlabel("seconds")
            ax.tick_params(labelsize=8)
        if row == 0:
            for ax in (ax_lat, ax_src, ax_db):
                ax.legend(fontsize=7, loc="upper right", ncol=2)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def write_reports(result: dict[str, Any], out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    json_path = out / "spike.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    chart_path = out / "spike.png"
    write_chart(result, chart_path)
    md_path = out / "spike.md"
    md_path.write_text(markdown(result, chart_path.name), encoding="utf-8")
    return [json_path, chart_path, md_path]
