"""Draw the layout of the dipguard workbook as a picture for the docs.

    .venv/bin/python bicep/workbooks/layout.py [out.png]

Each item of dipguard.workbook.json becomes a labelled box, in the order and at the width
the portal lays items out: an item with ``customWidth`` "50" takes half a row, beside the
next half-width item; any other item takes a whole row. Query boxes name their chart and
the metrics or log lines they read. The PNG (docs/img/workbook-layout.png by default)
records the SHA-256 of the JSON it was drawn from as its "Source" text, so
tests/bicep/test_workbook.py can tell when it needs drawing again.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
WORKBOOK = HERE / "dipguard.workbook.json"
OUT = HERE.parents[1] / "docs" / "img" / "workbook-layout.png"

KINDS = {1: "text", 3: "query", 9: "parameters", 12: "group"}
COLOURS = {
    "text": "#eef2f7",
    "parameters": "#fde9c9",
    "query": "#d6e9f8",
    "group": "#e6e6e6",
}
ROW_HEIGHT = {"text": 0.55, "parameters": 0.45, "query": 1.0, "group": 1.0}


@dataclass(frozen=True)
class Box:
    """One workbook item where the portal puts it: ``row`` counts from the top, ``column``
    and ``width`` are fractions of the workbook's width."""

    name: str
    kind: str
    label: str
    row: int
    column: float
    width: float


def _width(item: Mapping[str, Any]) -> float:
    raw = str(item.get("customWidth") or "100")
    return max(0.05, min(1.0, float(raw) / 100))


def _label(item: Mapping[str, Any]) -> str:
    content = item.get("content", {})
    kind = KINDS.get(int(item["type"]), f"type {item['type']}")
    if kind == "text":
        heading = re.search(r"^#+\s*(.+)$", str(content.get("json", "")), re.MULTILINE)
        return heading.group(1).strip() if heading else item["name"]
    if kind == "parameters":
        names = ", ".join(p["name"] for p in content.get("parameters", []))
        return f"Parameters: {names}"
    if kind == "query":
        query = str(content.get("query", ""))
        reads = sorted(set(re.findall(r'"(dipguard\.[\w.]+)"', query)))
        reads += [f"{p}*" for p in sorted(set(re.findall(r'name startswith "([\w.]+)"', query)))]
        reads += sorted(set(re.findall(r'message startswith "(\w+) "', query)))
        source = ", ".join(reads) or "query"
        return f"{content.get('title', item['name'])}\n[{content.get('visualization')}] {source}"
    return str(item.get("name", kind))


def place(items: Sequence[Mapping[str, Any]]) -> list[Box]:
    """Every item's box, in the workbook's order, wrapped into rows."""
    boxes: list[Box] = []
    row, column = 0, 0.0
    for item in items:
        width = _width(item)
        if column > 0 and column + width > 1.0 + 1e-9:
            row, column = row + 1, 0.0
        kind = KINDS.get(int(item["type"]), "group")
        boxes.append(Box(str(item["name"]), kind, _label(item), row, column, width))
        column += width
        if column >= 1.0 - 1e-9:
            row, column = row + 1, 0.0
    return boxes


def draw(workbook_path: Path = WORKBOOK, out: Path = OUT) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    raw = workbook_path.read_bytes()
    boxes = place(json.loads(raw)["items"])
    rows = max(b.row for b in boxes) + 1
    heights = [max(ROW_HEIGHT[b.kind] for b in boxes if b.row == r) for r in range(rows)]
    tops = [sum(heights[:r]) for r in range(rows)]
    total = sum(heights)

    width_in = 9.0
    fig = plt.figure(figsize=(width_in, total * 1.05 + 0.4), dpi=72)
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_xlim(0, 1)
    ax.set_ylim(total + 0.15, -0.35)
    ax.axis("off")
    ax.text(
        0.01,
        -0.17,
        "dipguard workbook (bicep/workbooks/dipguard.workbook.json)",
        fontsize=11,
        fontweight="bold",
        va="center",
    )
    pad = 0.008
    for box in boxes:
        height = heights[box.row]
        x, y = box.column + pad, tops[box.row] + pad * 4
        w, h = box.width - 2 * pad, height - pad * 8
        ax.add_patch(
            FancyBboxPatch(
                (x, y),
                w,
                h,
                boxstyle="round,pad=0,rounding_size=0.01",
                facecolor=COLOURS[box.kind],
                edgecolor="#5b6b7d",
                linewidth=0.8,
            )
        )
        chars = int(100 * box.width) - 4
        lines = [
            wrapped
            for part in box.label.split("\n")
            for wrapped in textwrap.wrap(part, chars) or [""]
        ]
        size = 8.5 if box.kind == "query" else 9.5
        weight = "bold" if box.kind == "text" else "normal"
        ax.text(
            x + 0.012,
            y + h / 2,
            "\n".join(lines[:5]),
            fontsize=size,
            va="center",
            ha="left",
            fontweight=weight,
            linespacing=1.25,
        )
    canvas = io.BytesIO()
    fig.savefig(canvas, format="png")
    plt.close(fig)
    # A few flat colours: a 32-colour palette keeps the file small (docs, under 100 KB).
    from PIL import Image
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Source", f"{workbook_path.name} sha256 {hashlib.sha256(raw).hexdigest()}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(canvas) as image:
        image.convert("RGB").quantize(colors=32).save(
            out, format="PNG", optimize=True, pnginfo=info
        )
    return out


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    print(draw(out=target))
