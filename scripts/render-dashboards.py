#!/usr/bin/env python3
"""Draws the dashboards under dashboards/ as static pages from their own JSON and a real
Prometheus's answers, and screenshots each with headless Chromium: the pictures in the README.

Not Grafana (which cannot be installed here): the project's own rendering of the same panels, the
same queries (variables and $__rate_interval/$__interval/$__range substituted as Grafana does),
the same grid, units, legends, stacking, right axes, value mappings, thresholds, the table's merge
and sort, and the annotations as vertical marks. Run it while a fleet runs, e.g. from the
dashboards test: RENDER_DASHBOARDS=docs/img cargo test --test it -- dashboards::every_panel

Usage: render-dashboards.py --prometheus=http://HOST:PORT --start=UNIX --out=DIR
                            [--process-vars=instance=..,app=..,pid=..] [--chromium=/usr/bin/chromium]
Uses only the standard library and Debian's chromium package.
"""

import argparse
import html
import json
import math
import pathlib
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
COL = 62  # pixels per grid column (24 columns)
ROW = 30  # pixels per grid row unit
PALETTE = ["#73bf69", "#f2cc0c", "#5794f2", "#ff780a", "#b877d9", "#f2495c", "#8ab8ff", "#ffb357", "#96d98d",
           "#ca95e5", "#fade2a", "#ff7383", "#37872d", "#1f60c4", "#c4162a", "#fa6400"]
COLORS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "blue": "#5794f2", "yellow": "#fade2a"}


def color(name: str) -> str:
    return COLORS.get(name, name)


# --- Prometheus --------------------------------------------------------------------------------


class Prom:
    def __init__(self, url: str, start: float, end: float, step: float):
        self.url, self.start, self.end, self.step = url.rstrip("/"), start, end, step

    def get(self, path: str, params: dict) -> dict:
        with urllib.request.urlopen(f"{self.url}{path}?{urllib.parse.urlencode(params)}", timeout=30) as r:
            return json.load(r)

    def query(self, expr: str, instant: bool) -> list[tuple[dict, list[tuple[float, float]]]]:
        if instant:
            data = self.get("/api/v1/query", {"query": expr, "time": self.end})
            return [(s["metric"], [(float(s["value"][0]), float(s["value"][1]))]) for s in data["data"]["result"]]
        data = self.get(
            "/api/v1/query_range", {"query": expr, "start": self.start, "end": self.end, "step": self.step}
        )
        return [(s["metric"], [(float(t), float(v)) for t, v in s["values"]]) for s in data["data"]["result"]]


def regex_value(v: str) -> str:
    return re.sub(r"([$^*{}\[\]'+?.()|\\])", r"\\\\\1", v)


def expand(expr: str, variables: dict[str, str | None], prom: Prom) -> str:
    rate = max(4 * 1.0, prom.step + 1.0)
    expr = (
        expr.replace("$__rate_interval", f"{int(max(rate, 10))}s")
        .replace("$__interval", f"{int(prom.step)}s")
        .replace("$__range", f"{int(prom.end - prom.start)}s")
    )
    for name, value in variables.items():
        v = ".*" if value is None else regex_value(value)
        expr = expr.replace("${" + name + "}", v).replace("$" + name, v)
    return expr


def legend(fmt: str, labels: dict) -> str:
    if not fmt:
        return "{" + ", ".join(f'{k}="{v}"' for k, v in labels.items() if k != "__name__") + "}"
    return re.sub(r"\{\{\s*(\w+)\s*\}\}", lambda m: labels.get(m.group(1), ""), fmt).strip()


# --- Units -------------------------------------------------------------------------------------


def fmt(value: float | None, unit: str, decimals: int | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    d = 1 if decimals is None else decimals
    if unit in ("bytes", "Bps"):
        suffix = "/s" if unit == "Bps" else ""
        v, i = abs(value), 0
        names = ["B", "KiB", "MiB", "GiB", "TiB"]
        while v >= 1024 and i < len(names) - 1:
            v, i = v / 1024, i + 1
        return f"{'-' if value < 0 else ''}{v:.{d}f} {names[i]}{suffix}"
    if unit == "s":
        v = abs(value)
        for size, name in [(86400, "day"), (3600, "hour"), (60, "min")]:
            if v >= size:
                return f"{value / size:.{d}f} {name}"
        return f"{value:.{d}f} s" if v >= 1 or v == 0 else f"{value * 1000:.{d}f} ms"
    if unit == "percentunit":
        return f"{value * 100:.{0 if decimals is None else decimals}f}%"
    if unit.startswith("suffix:"):
        return f"{value:.{3 if decimals is None else decimals}g}{unit[7:]}"
    v = abs(value)
    for size, name in [(1e9, "B"), (1e6, "M"), (1e3, "K")]:
        if v >= size:
            return f"{value / size:.{d}f}{name}"
    return f"{value:.{0 if value == int(value) else 2}f}" if decimals is None else f"{value:.{d}f}"


def mapped(value: float, mappings: list) -> tuple[str, str] | None:
    for m in mappings or []:
        for k, r in m.get("options", {}).items():
            if m.get("type") == "value" and float(k) == value:
                return r.get("text", k), color(r.get("color", ""))
    return None


def threshold_color(value: float, thresholds: dict | None) -> str:
    c = "#5794f2"
    for step in (thresholds or {}).get("steps", []):
        if step["value"] is None or value >= step["value"]:
            c = color(step["color"])
    return c


# --- Panels ------------------------------------------------------------------------------------


def field_props(panel: dict, name: str) -> dict:
    """Defaults, custom defaults and the overrides whose regex matches `name`, flattened."""
    defaults = panel.get("fieldConfig", {}).get("defaults", {})
    props = {k: v for k, v in defaults.items() if k != "custom"}
    props.update({f"custom.{k}": v for k, v in defaults.get("custom", {}).items()})
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        m = o["matcher"]
        if (m["id"] == "byRegexp" and re.fullmatch(m["options"], name)) or (m["id"] == "byName" and m["options"] == name):
            props.update({p["id"]: p["value"] for p in o["properties"]})
    return props


def nice_ticks(lo: float, hi: float, n: int = 4) -> list[float]:
    if hi <= lo:
        hi = lo + (abs(lo) or 1)
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((s * mag for s in (1, 2, 2.5, 5, 10) if s * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    ticks = [start]
    while ticks[-1] < hi - step * 0.001:
        ticks.append(ticks[-1] + step)
    return ticks


def timeseries(panel, results, w, h, prom, marks) -> str:
    series = []  # (name, points, props)
    for q, rs in results:
        for labels, pts in rs:
            name = legend(q.get("legendFormat", ""), labels)
            series.append((name, pts, field_props(panel, name)))
    if not series:
        return '<div class="nodata">No data</div>'
    legend_h = 18 * min(6, math.ceil(len(series) / 3)) + 6
    pw, ph = w - 90, h - legend_h - 24
    x0 = 60
    t0, t1 = prom.start, prom.end
    # Stacking per group.
    stacks: dict[str, dict[float, float]] = {}
    drawn = []
    for i, (name, pts, props) in enumerate(series):
        stacking = props.get("custom.stacking", {}) or {}
        if stacking.get("mode") == "normal":
            base = stacks.setdefault(stacking.get("group", "A"), {})
            stacked = []
            for t, v in pts:
                b = base.get(t, 0.0)
                if not math.isnan(v):
                    base[t] = b + v
                stacked.append((t, b + v, b))
            drawn.append((i, name, stacked, props, True))
        else:
            drawn.append((i, name, [(t, v, None) for t, v in pts], props, False))
    axes = {"left": [], "right": []}
    for d in drawn:
        axes["right" if d[3].get("custom.axisPlacement") == "right" else "left"].append(d)
    svg = [f'<svg width="{w}" height="{h - legend_h}" class="ts">']
    scales = {}
    for side, ds in axes.items():
        vals = [v for d in ds for _, v, _ in d[2] if not math.isnan(v)] + [
            b for d in ds for _, _, b in d[2] if b is not None]
        if not vals:
            continue
        lo, hi = min(vals), max(vals)
        scale_type = ds[0][3].get("custom.scaleDistribution", {}).get("type", "linear")
        unit = ds[0][3].get("unit", "short")
        if scale_type == "log":
            lo, hi = max(min(v for v in vals if v > 0) if any(v > 0 for v in vals) else 1, 1e-9), max(hi, 1e-9)
            llo, lhi = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
            lhi = max(lhi, llo + 1)
            y = lambda v, llo=llo, lhi=lhi: 8 + ph - (math.log10(max(v, 1e-12)) - llo) / (lhi - llo) * ph
            ticks = [10 ** e for e in range(llo, lhi + 1)]
        else:
            lo = min(lo, 0) if lo >= 0 and lo < hi * 0.5 else lo
            ticks = nice_ticks(lo, hi)
            tlo, thi = ticks[0], ticks[-1] if ticks[-1] > ticks[0] else ticks[0] + 1
            y = lambda v, tlo=tlo, thi=thi: 8 + ph - (v - tlo) / (thi - tlo) * ph
        scales[side] = y
        for tv in ticks:
            ty = y(tv)
            if side == "left":
                svg.append(f'<line x1="{x0}" x2="{x0 + pw}" y1="{ty:.1f}" y2="{ty:.1f}" class="grid"/>')
                svg.append(f'<text x="{x0 - 6}" y="{ty + 4:.1f}" text-anchor="end">{html.escape(fmt(tv, unit, 1 if tv % 1 else 0))}</text>')
            else:
                svg.append(f'<text x="{x0 + pw + 6}" y="{ty + 4:.1f}">{html.escape(fmt(tv, unit, 1 if tv % 1 else 0))}</text>')
    x = lambda t: x0 + (t - t0) / (t1 - t0) * pw
    for k in range(5):
        t = t0 + (t1 - t0) * k / 4
        svg.append(f'<text x="{x(t):.1f}" y="{ph + 24}" text-anchor="middle">{time.strftime("%H:%M:%S", time.localtime(t))}</text>')
    for t, c, label in marks:
        if t0 <= t <= t1:
            svg.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="6" y2="{ph + 8}" stroke="{color(c)}" stroke-dasharray="3,3"><title>{html.escape(label)}</title></line>')
    colors = {}
    for i, name, pts, props, is_stacked in drawn:
        y = scales["right" if props.get("custom.axisPlacement") == "right" else "left"]
        c = props.get("color", {}).get("fixedColor") if props.get("color", {}).get("mode") == "fixed" else None
        c = color(c) if c else PALETTE[i % len(PALETTE)]
        colors[name] = c
        style = props.get("custom.lineStyle", {}) or {}
        dash = f' stroke-dasharray="{",".join(map(str, style["dash"]))}"' if style.get("fill") in ("dash", "dot") else ""
        width = props.get("custom.lineWidth", 1)
        segments, cur = [], []
        for t, v, b in pts:
            if math.isnan(v):
                if cur:
                    segments.append(cur)
                cur = []
            else:
                cur.append((x(t), y(v), y(b) if b is not None else None))
        if cur:
            segments.append(cur)
        step = props.get("custom.lineInterpolation") == "stepAfter"
        for seg in segments:
            line = []
            for k, (px, py, _) in enumerate(seg):
                if step and k:
                    line.append(f"{px:.1f},{seg[k - 1][1]:.1f}")
                line.append(f"{px:.1f},{py:.1f}")
            if is_stacked or props.get("custom.fillOpacity", 0):
                bottom = [f"{px:.1f},{(pb if pb is not None else 8 + ph):.1f}" for px, _, pb in reversed(seg)]
                svg.append(f'<polygon points="{" ".join(line + bottom)}" fill="{c}" fill-opacity="0.25" stroke="none"/>')
            svg.append(f'<polyline points="{" ".join(line)}" fill="none" stroke="{c}" stroke-width="{width}"{dash}/>')
    svg.append("</svg>")
    items = "".join(
        f'<span class="li"><i style="background:{colors[name]}"></i>{html.escape(name)}</span>'
        for _, name, _, _, _ in drawn
    )
    return "".join(svg) + f'<div class="legend" style="max-height:{legend_h}px">{items}</div>'


def stat(panel, results, w, h) -> str:
    values = [(legend(q.get("legendFormat", ""), l), pts[-1][1]) for q, rs in results for l, pts in rs if pts]
    if not values:
        return '<div class="nodata">No data</div>'
    d = panel["fieldConfig"]["defaults"]
    cells = []
    for name, v in values[:4]:
        m = mapped(v, d.get("mappings"))
        text, bg = m if m else (fmt(v, d.get("unit", "short"), d.get("decimals")), threshold_color(v, d.get("thresholds")))
        sub = f'<div class="statname">{html.escape(name)}</div>' if len(values) > 1 or panel["targets"][0].get("legendFormat") else ""
        cells.append(f'<div class="stat" style="background:{bg}"><div class="statv">{html.escape(text)}</div>{sub}</div>')
    return f'<div class="stats">{"".join(cells)}</div>'


def bargauge(panel, results, w, h) -> str:
    values = sorted(
        ((legend(q.get("legendFormat", ""), l), pts[-1][1]) for q, rs in results for l, pts in rs if pts),
        key=lambda nv: -nv[1],
    )
    if not values:
        return '<div class="nodata">No data</div>'
    d = panel["fieldConfig"]["defaults"]
    top = max(max(v for _, v in values), 1e-12)
    rows = []
    for name, v in values[: max(1, (h - 10) // 24)]:
        pct = max(0.0, v / top) * 100
        rows.append(
            f'<div class="bar"><span class="bn">{html.escape(name)}</span><span class="bt">'
            f'<span class="bf" style="width:{pct:.1f}%"></span></span>'
            f'<span class="bv">{html.escape(fmt(v, d.get("unit", "short")))}</span></div>'
        )
    return "".join(rows)


def table_panel(panel, results, w, h) -> str:
    """Grafana's merge (rows joined on equal labels), then organize (exclude, order, rename) and sort."""
    rows: dict[tuple, dict] = {}
    for q, rs in results:
        col = f"Value #{q['refId']}"
        for labels, pts in rs:
            key = tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))
            rows.setdefault(key, dict(key))[col] = pts[-1][1]
    org = next((t["options"] for t in panel.get("transformations", []) if t["id"] == "organize"), {})
    names = sorted({k for r in rows.values() for k in r}, key=lambda k: org.get("indexByName", {}).get(k, 99))
    names = [n for n in names if not org.get("excludeByName", {}).get(n)]
    rename = org.get("renameByName", {})
    sort = (panel.get("options", {}).get("sortBy") or [{}])[0]
    inv = {rename.get(n, n): n for n in names}
    key = inv.get(sort.get("displayName"))
    ordered = sorted(rows.values(), key=lambda r: (r.get(key) is None, r.get(key, 0)), reverse=False)
    if sort.get("desc"):
        ordered.reverse()
    if not ordered:
        return '<div class="nodata">No data</div>'
    head = "".join(f"<th>{html.escape(rename.get(n, n))}</th>" for n in names)
    body = []
    for r in ordered:
        cells = []
        for n in names:
            v = r.get(n)
            shown = rename.get(n, n)
            props = field_props(panel, shown)
            if isinstance(v, float):
                m = mapped(v, props.get("mappings"))
                text = m[0] if m else fmt(v, props.get("unit", "short"), props.get("decimals"))
                style = ""
                if (props.get("custom.cellOptions") or {}).get("type") == "color-background":
                    style = f' style="background:{m[1] if m else threshold_color(v, props.get("thresholds"))}"'
                cells.append(f"<td{style}>{html.escape(text)}</td>")
            else:
                cells.append(f"<td>{html.escape(v or '')}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def state_timeline(panel, results, w, h, prom) -> str:
    series = [(legend(q.get("legendFormat", ""), l), pts) for q, rs in results for l, pts in rs]
    if not series:
        return '<div class="nodata">No data</div>'
    d = panel["fieldConfig"]["defaults"]
    label_w = 210
    band = max(8, min(22, (h - 30) // max(1, len(series)) - 2))
    pw = w - label_w - 16
    x = lambda t: label_w + (t - prom.start) / (prom.end - prom.start) * pw
    svg = [f'<svg width="{w}" height="{len(series) * (band + 2) + 22}" class="ts">']
    for i, (name, pts) in enumerate(series):
        y = 4 + i * (band + 2)
        svg.append(f'<text x="{label_w - 6}" y="{y + band * 0.7:.1f}" text-anchor="end">{html.escape(name)}</text>')
        for k, (t, v) in enumerate(pts):
            t_next = pts[k + 1][0] if k + 1 < len(pts) else prom.end
            m = mapped(v, d.get("mappings"))
            c = m[1] if m else threshold_color(v, d.get("thresholds"))
            svg.append(f'<rect x="{x(t):.1f}" y="{y}" width="{max(0.5, x(t_next) - x(t)):.1f}" height="{band}" fill="{c}"/>')
    yb = len(series) * (band + 2) + 16
    for k in range(5):
        t = prom.start + (prom.end - prom.start) * k / 4
        svg.append(f'<text x="{x(t):.1f}" y="{yb}" text-anchor="middle">{time.strftime("%H:%M:%S", time.localtime(t))}</text>')
    svg.append("</svg>")
    return "".join(svg)


CSS = """
body { background:#111217; color:#ccccdc; font:13px/1.3 'DejaVu Sans', sans-serif; margin:0; }
.top { padding:10px 16px; border-bottom:1px solid #2a2d35; }
.top h1 { font-size:18px; margin:0 0 4px; color:#fff; font-weight:500; }
.note { color:#ff9830; font-size:12px; }
.vars span { display:inline-block; background:#181b1f; border:1px solid #2a2d35; padding:3px 8px; margin:6px 6px 0 0; }
.grid { position:relative; margin:8px; }
.panel { position:absolute; background:#181b1f; border:1px solid #2a2d35; border-radius:2px; overflow:hidden; }
.panel h2 { font-size:13px; margin:0; padding:6px 8px; color:#fff; font-weight:500; white-space:nowrap; overflow:hidden; }
.row { position:absolute; font-size:15px; color:#fff; padding-top:6px; border-bottom:1px solid #2a2d35; }
svg.ts text { fill:#9fa3ad; font-size:10px; }
svg .grid { stroke:#2a2d35; }
.legend { font-size:11px; padding:0 8px; overflow:hidden; }
.li { display:inline-block; margin-right:12px; white-space:nowrap; }
.li i { display:inline-block; width:12px; height:3px; margin-right:4px; vertical-align:middle; }
.nodata { color:#7b7f87; text-align:center; margin-top:20%; }
.stats { display:flex; gap:4px; height:calc(100% - 34px); padding:0 6px 6px; }
.stat { flex:1; display:flex; flex-direction:column; justify-content:center; align-items:center; color:#fff; border-radius:2px; }
.statv { font-size:30px; font-weight:500; } .statname { font-size:11px; }
.bar { display:flex; align-items:center; margin:3px 8px; font-size:11px; }
.bn { width:38%; white-space:nowrap; overflow:hidden; } .bt { flex:1; background:#22252b; height:14px; margin:0 6px; }
.bf { display:block; height:100%; background:linear-gradient(90deg,#1f60c4,#5794f2); } .bv { width:90px; text-align:right; }
table { border-collapse:collapse; width:calc(100% - 12px); margin:0 6px; font-size:12px; }
th { text-align:left; color:#6e9fff; font-weight:500; border-bottom:1px solid #2a2d35; padding:4px; }
td { padding:4px; border-bottom:1px solid #22252b; }
"""


def page(d: dict, variables: dict, prom: Prom, source: str) -> tuple[str, int, int]:
    marks = []
    for a in d.get("annotations", {}).get("list", []):
        if not a.get("expr") or not a.get("enable"):
            continue
        for labels, pts in prom.query(expand(a["expr"], variables, prom), False):
            prev = None
            for t, _ in pts:
                if prev is None or t - prev > prom.step * 1.5:
                    marks.append((t, a.get("iconColor", "red"), f"{a['name']}: {legend('', labels)}"))
                prev = t
    body = []
    bottom = 0
    for p in d["panels"]:
        g = p["gridPos"]
        left, top, w, h = g["x"] * COL, g["y"] * ROW, g["w"] * COL - 6, g["h"] * ROW - 6
        bottom = max(bottom, top + h + 6)
        if p["type"] == "row":
            body.append(f'<div class="row" style="left:{left}px;top:{top}px;width:{w}px">{html.escape(p["title"])}</div>')
            continue
        results = [(t, prom.query(expand(t["expr"], variables, prom), t.get("instant", False))) for t in p["targets"]]
        inner_h = h - 30
        if p["type"] == "timeseries":
            inner = timeseries(p, results, w, inner_h, prom, marks)
        elif p["type"] == "stat":
            inner = stat(p, results, w, inner_h)
        elif p["type"] == "bargauge":
            inner = bargauge(p, results, w, inner_h)
        elif p["type"] == "table":
            inner = table_panel(p, results, w, inner_h)
        elif p["type"] == "state-timeline":
            inner = state_timeline(p, results, w, inner_h, prom)
        else:
            raise SystemExit(f"no renderer for panel type {p['type']}")
        body.append(
            f'<div class="panel" style="left:{left}px;top:{top}px;width:{w}px;height:{h}px">'
            f'<h2>{html.escape(p["title"])}</h2>{inner}</div>'
        )
    shown = "".join(f"<span>{k} = {html.escape(v if v is not None else 'All')}</span>" for k, v in variables.items())
    span = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(prom.start))} to {time.strftime('%H:%M:%S', time.localtime(prom.end))}"
    doc = (
        f"<!doctype html><html><head><meta charset='utf-8'><style>{CSS}</style></head><body>"
        f"<div class='top'><h1>{html.escape(d['title'])}</h1>"
        f"<div class='note'>Not a Grafana screenshot: scripts/render-dashboards.py drew {html.escape(source)}'s "
        f"panels from their own queries, answered by a real Prometheus scraping the exporter watching real Node.js "
        f"processes ({span}).</div><div class='vars'><span>datasource = Prometheus</span>{shown}</div></div>"
        f"<div class='grid' style='height:{bottom}px'>{''.join(body)}</div></body></html>"
    )
    return doc, 24 * COL + 16, bottom + 110


def screenshot(chromium: str, html_path: pathlib.Path, png: pathlib.Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [
                chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
                f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={png}",
                html_path.as_uri(),
            ],
            check=True, capture_output=True, timeout=120,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prometheus", required=True)
    ap.add_argument("--start", type=float, required=True)
    ap.add_argument("--end", type=float, default=None)
    ap.add_argument("--out", required=True)
    ap.add_argument("--process-vars", default="", help="instance=..,app=..,pid=.. for the process dashboard")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    end = args.end or time.time()
    prom = Prom(args.prometheus, args.start, end, step=max(2.0, round((end - args.start) / 300)))
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    picked = dict(kv.split("=", 1) for kv in args.process_vars.split(",") if kv)
    jobs = [
        ("nodejs-leak-fleet.json", "dashboard-fleet", {"instance": None, "app": None, "pid": None}),
        ("nodejs-leak-process.json", "dashboard-process", {k: picked.get(k) or None for k in ("instance", "app", "pid")}),
    ]
    for file, stem, variables in jobs:
        d = json.loads((ROOT / "dashboards" / file).read_text())
        doc, width, height = page(d, variables, prom, f"dashboards/{file}")
        html_path = out / f"{stem}.html"
        html_path.write_text(doc)
        png = out / f"{stem}.png"
        screenshot(args.chromium, html_path.resolve(), png.resolve(), width, height)
        html_path.unlink()
        print(f"wrote {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
