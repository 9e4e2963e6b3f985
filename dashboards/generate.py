#!/usr/bin/env python3
"""Generates the Grafana dashboards of nodejs-leak-exporter with the Grafana Foundation SDK.

Writes dashboards/nodejs-leak-fleet.json and dashboards/nodejs-leak-process.json (the files that
are shipped: imported as they are, loaded by file provisioning or the kube-prometheus-stack
sidecar). `--check` writes nothing and fails when a committed file differs from what this script
makes. The SDK is pinned in scripts/install-test-deps.sh (its v11.6 branch: schemaVersion 41).

Every query has a selector built from the dashboard variables (`sel()`), every panel and query the
`${datasource}` reference, and every panel a place on the grid from `Grid`, so none of the three
can be forgotten or overlap. Queries never fall back to a constant (`or vector(0)`): a panel with
nothing to show says "No data".
"""

import argparse
import json
import pathlib
import sys

from grafana_foundation_sdk.builders import bargauge, common, dashboard, prometheus, stat, statetimeline, table
from grafana_foundation_sdk.builders import timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models import prometheus as pm

HERE = pathlib.Path(__file__).resolve().parent
DS = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
FLEET_UID = "nodejs-leak-fleet"
PROCESS_UID = "nodejs-leak-process"
TAGS = ["nodejs", "nodejs-leak-exporter"]
# The series every Node.js process has: the exporter's identity series of a watched process, and
# prom-client's version series of an app that exports prom-client's default metrics itself.
NODE_SERIES = '__name__=~"nodejs_process_info|nodejs_version_info"'


def sel(*extra: str) -> str:
    """The variables' selector, then `extra` matchers. `.*` (All) also matches a missing label,
    so series without `app` or `pid` (prom-client apps, log-only counts) stay in."""
    return "{" + ", ".join(['instance=~"$instance"', 'app=~"$app"', 'pid=~"$pid"', *extra]) + "}"


HEAP = sel('signal="heap_used"')


def query(expr: str, legend: str = "", instant: bool = False, table_format: bool = False):
    q = prometheus.Dataquery().expr(expr).datasource(DS)
    if legend:
        q = q.legend_format(legend)
    if instant:
        q = q.instant()
    else:
        q = q.range()
    if table_format:
        q = q.format(pm.PromQueryFormat.TABLE)
    return q


class Grid:
    """Places panels left to right in rows of 24 columns; a row header starts a new line."""

    def __init__(self) -> None:
        self.x = 0
        self.y = 0
        self.line_height = 0
        self.next_id = 1

    def _newline(self) -> None:
        self.y += self.line_height
        self.x = 0
        self.line_height = 0

    def place(self, w: int, h: int) -> tuple[int, dm.GridPos]:
        if self.x + w > 24:
            self._newline()
        pos = dm.GridPos(h=h, w=w, x=self.x, y=self.y)
        self.x += w
        self.line_height = max(self.line_height, h)
        panel_id = self.next_id
        self.next_id += 1
        return panel_id, pos

    def row(self, title: str):
        if self.x:
            self._newline()
        panel_id, pos = self.place(24, 1)
        self._newline()
        return dashboard.Row(title).id(panel_id).grid_pos(pos)


def add(builder, grid: Grid, w: int, h: int, title: str, description: str, targets: list):
    panel_id, pos = grid.place(w, h)
    builder = builder.id(panel_id).title(title).description(description).datasource(DS).grid_pos(pos)
    for i, t in enumerate(targets):
        builder = builder.with_target(t.ref_id(chr(ord("A") + i)))
    return builder


def legend(placement=cm.LegendPlacement.BOTTOM, calcs=None):
    l = common.VizLegendOptions().show_legend(True).placement(placement)
    if calcs:
        return l.display_mode(cm.LegendDisplayMode.TABLE).calcs(calcs)
    return l.display_mode(cm.LegendDisplayMode.LIST)


def ts(unit: str, stacked: bool = False, steps: bool = False, calcs=None):
    p = (
        timeseries.Panel()
        .unit(unit)
        .line_width(1)
        .fill_opacity(30 if stacked else 0)
        .legend(legend(calcs=calcs))
        .tooltip(common.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
    )
    if stacked:
        p = p.stacking(common.StackingConfig().mode(cm.StackingMode.NORMAL))
    if steps:
        p = p.line_interpolation(cm.LineInterpolation.STEP_AFTER)
    return p


def overrides(panel, rules: list[tuple[str, list[tuple[str, object]]]]):
    """Overrides by field-name regex: (regex, [(property id, value), ...])."""
    for regex, props in rules:
        panel = panel.override_by_regexp(regex, [dm.DynamicConfigValue(id_val=k, value=v) for k, v in props])
    return panel


DASHED = {"fill": "dash", "dash": [10, 10]}
DOTTED = {"fill": "dot", "dash": [2, 6]}


def fixed(color: str) -> dict:
    return {"mode": "fixed", "fixedColor": color}


def big(unit: str, thresholds: list[tuple[float | None, str]], mappings=None):
    p = (
        stat.Panel()
        .unit(unit)
        .graph_mode(cm.BigValueGraphMode.NONE)
        .color_mode(cm.BigValueColorMode.BACKGROUND)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(threshold_steps(thresholds))
    )
    if mappings:
        p = p.mappings(mappings)
    return p


def threshold_steps(steps: list[tuple[float | None, str]]):
    return (
        dashboard.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def bars(unit: str):
    return (
        bargauge.Panel()
        .unit(unit)
        .orientation(cm.VizOrientation.HORIZONTAL)
        .display_mode(cm.BarGaugeDisplayMode.GRADIENT)
        .reduce_options(common.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(threshold_steps([(None, "blue")]))
        .min(0)
    )


VERDICT_MAPPINGS = [
    dm.ValueMap(
        options={
            "0": dm.ValueMappingResult(text="ok", color="green", index=0),
            "1": dm.ValueMappingResult(text="LEAK", color="red", index=1),
        }
    )
]


def variables(d):
    d = d.with_variable(dashboard.DatasourceVariable("datasource").label("Data source").type("prometheus"))
    for name, label, q in [
        ("instance", "Instance", f"label_values({{{NODE_SERIES}}}, instance)"),
        ("app", "App", f'label_values({{{NODE_SERIES}, instance=~"$instance"}}, app)'),
        ("pid", "PID", 'label_values(nodejs_process_info{instance=~"$instance", app=~"$app"}, pid)'),
    ]:
        d = d.with_variable(
            dashboard.QueryVariable(name)
            .label(label)
            .datasource(DS)
            # qryType 5: a classic query, the label_values() text as written.
            .query({"qryType": 5, "query": q, "refId": "PrometheusVariableQueryEditor-VariableQuery"})
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED)
            .sort(dm.VariableSort.ALPHABETICAL_ASC)
            .multi(True)
            .include_all(True)
            # `.*` rather than the list of values: it also matches series without the label.
            .all_value(".*")
            .current(dm.VariableOption(selected=True, text="All", value="$__all"))
        )
    return d


def base(uid: str, title: str, description: str):
    d = (
        dashboard.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(TAGS)
        .editable()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .link(
            dashboard.DashboardLink("Node.js leaks")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags(["nodejs-leak-exporter"])
            .as_dropdown(False)
            .include_vars(True)
            .keep_time(True)
        )
        .annotation(
            dashboard.AnnotationQuery()
            .name("Annotations & Alerts")
            .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
            .built_in(1)
            .enable(True)
            .hide(True)
            .icon_color("rgba(0, 211, 255, 1)")
            .type("dashboard")
        )
    )
    return variables(d)


def alert_annotations(d, pid_matcher: bool):
    alerts_sel = 'alertstate="firing", alertname=~"Nodejs.*", instance=~"$instance", app=~"$app"'
    if pid_matcher:
        alerts_sel += ', pid=~"$pid"'
    restarts = 'nodejs_process_restarts_total{instance=~"$instance", app=~"$app"}'
    return d.annotation(
        dashboard.AnnotationQuery()
        .name("Leak alerts")
        .datasource(DS)
        .enable(True)
        .icon_color("red")
        .expr(f"ALERTS{{{alerts_sel}}}")
    ).annotation(
        dashboard.AnnotationQuery()
        .name("Restarts")
        .datasource(DS)
        .enable(True)
        .icon_color("orange")
        # As the restart-loop alert counts them: an increase, or the series appearing with the
        # first restart (a counter born at 1 has no increase).
        .expr(f"(increase({restarts}[1m]) > 0) or ({restarts} unless {restarts} offset 1m)")
    )


# --- Fleet ---------------------------------------------------------------------------------------


def fleet():
    g = Grid()
    d = base(
        FLEET_UID,
        "Node.js leaks / Fleet",
        "Which Node.js processes leak now, how fast, and how long until they hit a limit; warnings, "
        "heap-OOM crashes, cgroup OOM kills and restarts by app. From nodejs-leak-exporter.",
    )
    d = alert_annotations(d, pid_matcher=True)
    leaking = f"(max by (job, instance, pid, app, signal) (nodejs_leak_suspected{sel()}) == 1)"
    on = "on (job, instance, pid, signal)"

    d = d.with_row(g.row("Leaking now"))
    d = d.with_panel(
        add(
            big("short", [(None, "green"), (1, "red")]),
            g, 6, 4, "Leaking processes",
            "Processes with at least one leak verdict (nodejs_leak_suspected) at 1.",
            [query(f"sum(max by (job, instance, pid, app) (nodejs_leak_suspected{sel()}))", instant=True)],
        )
    )
    d = d.with_panel(
        add(
            big("s", [(None, "red"), (14400, "orange"), (86400, "green")]),
            g, 6, 4, "Nearest limit in",
            "The shortest time, over all processes, until a heap floor reaches the heap limit or memory "
            "reaches the cgroup or PM2 limit at the current growth (nodejs_leak:limit_eta_seconds:min). "
            "No data: nothing is growing towards a limit.",
            [query(f"min(nodejs_leak:limit_eta_seconds:min{sel()})", instant=True)],
        )
    )
    d = d.with_panel(
        add(
            big("short", [(None, "blue")]),
            g, 6, 4, "Watched processes",
            "Node.js processes the exporter watches (nodejs_process_info).",
            [query(f"count(nodejs_process_info{sel()})", instant=True)],
        )
    )
    d = d.with_panel(
        add(
            big("short", [(None, "blue")]),
            g, 6, 4, "Heap readable",
            "Processes whose inspector is connected, so their V8 heap is measured and judged.",
            [query(f"sum(nodejs_inspector_connected{sel()})", instant=True)],
        )
    )

    link = (
        dashboard.DashboardLink("Process dashboard")
        .type(dm.DashboardLinkType.LINK)
        .url(
            f"/d/{PROCESS_UID}/?${{datasource:queryparam}}&var-instance=${{__data.fields.instance}}"
            "&var-app=${__data.fields.app}&var-pid=${__data.fields.pid}&${__url_time_range}"
        )
    )
    leak_table = (
        table.Panel()
        .sort_by([common.TableSortByFieldState().display_name("Limit in").desc(False)])
        .with_transformation(dm.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            dm.DataTransformerConfig(
                id_val="organize",
                options={
                    "excludeByName": {"Time": True, "job": True},
                    "indexByName": {
                        "app": 0, "pid": 1, "instance": 2, "signal": 3, "Value #A": 4, "Value #B": 5,
                        "Value #C": 6, "Value #D": 7, "Value #E": 8,
                    },
                    "renameByName": {
                        "Value #A": "Verdict",
                        "Value #B": "Floor growth",
                        "Value #C": "Count growth",
                        "Value #D": "Confidence",
                        "Value #E": "Limit in",
                    },
                },
            )
        )
        .data_links([link])
        .thresholds(threshold_steps([(None, "green"), (1, "red")]))
    )
    leak_table = overrides(
        leak_table,
        [
            ("Floor growth", [("unit", "Bps"), ("decimals", 1)]),
            ("Count growth", [("unit", "suffix:/s"), ("decimals", 3)]),
            ("Confidence", [("unit", "percentunit"), ("decimals", 0)]),
            ("Limit in", [("unit", "s"), ("decimals", 1)]),
            # Only this column maps 1 to LEAK: a confidence of 1 is 100%.
            (
                "Verdict",
                [
                    ("mappings", json.loads(JSONEncoder().encode(VERDICT_MAPPINGS))),
                    ("custom.cellOptions", {"type": "color-background"}),
                    ("color", {"mode": "thresholds"}),
                ],
            ),
        ],
    )
    d = d.with_panel(
        add(
            leak_table,
            g, 24, 9, "Which processes leak now",
            "One row per process and leaking signal: the verdict, the growth of the signal's floor "
            "(fastest window; bytes/s for heap, RSS and external memory, per second for fds, sockets and "
            "active resources), the confidence that it rises, and the time until the process's nearest "
            "limit (heap, cgroup or PM2). Sorted by that time, nearest first. Only leaking processes are "
            "listed; a row links to the process dashboard.",
            [
                query(leaking, instant=True, table_format=True),
                query(
                    f"max by (job, instance, pid, app, signal) (nodejs_leak:memory_growth_bytes_per_second:max{sel()})"
                    f" and {on} {leaking}",
                    instant=True, table_format=True,
                ),
                query(
                    f"max by (job, instance, pid, app, signal) (nodejs_leak:count_growth_per_second:max{sel()})"
                    f" and {on} {leaking}",
                    instant=True, table_format=True,
                ),
                query(
                    f"max by (job, instance, pid, app, signal) (nodejs_leak_confidence_ratio{sel()})"
                    f" and {on} {leaking}",
                    instant=True, table_format=True,
                ),
                query(
                    f"0 * {leaking} + on (job, instance, pid) group_left "
                    f"min by (job, instance, pid) (nodejs_leak:limit_eta_seconds:min{sel()})",
                    instant=True, table_format=True,
                ),
            ],
        )
    )

    d = d.with_row(g.row("Growth"))
    d = d.with_panel(
        add(
            bars("Bps"),
            g, 12, 8, "Fastest-growing memory floors",
            "The ten fastest-growing floors of heap used, RSS and external memory (the lows the GC "
            "sawtooth leaves), fastest window per process: nodejs_leak:memory_growth_bytes_per_second:max.",
            [
                query(
                    f"topk(10, nodejs_leak:memory_growth_bytes_per_second:max{sel()})",
                    legend="{{app}} {{pid}} {{signal}}", instant=True,
                )
            ],
        )
    )
    d = d.with_panel(
        add(
            bars("suffix:/s"),
            g, 12, 8, "Fastest-growing handle counts",
            "The ten fastest-growing floors of open fds, sockets and active resources (per second), "
            "fastest window per process: nodejs_leak:count_growth_per_second:max.",
            [
                query(
                    f"topk(10, nodejs_leak:count_growth_per_second:max{sel()})",
                    legend="{{app}} {{pid}} {{signal}}", instant=True,
                )
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("Bps"),
            g, 12, 8, "Heap floor growth",
            "Growth of each process's heap floor over time (fastest window).",
            [
                query(
                    "nodejs_leak:memory_growth_bytes_per_second:max" + HEAP,
                    legend="{{app}} {{pid}}",
                )
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("s").scale_distribution(common.ScaleDistributionConfig().type(cm.ScaleDistribution.LOG).log(10)),
            g, 12, 8, "Time to the nearest limit",
            "Per process, the time until its heap floor or memory reaches a limit at the current growth "
            "(log scale). A line falling towards zero is a process about to crash.",
            [query(f"nodejs_leak:limit_eta_seconds:min{sel()}", legend="{{app}} {{pid}}")],
        )
    )

    d = d.with_row(g.row("Warnings, crashes and restarts (counts since the exporter started)"))
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 12, 8, "Process warnings by app",
            "nodejs_warnings_total by app and warning name, from the inspector and the logs (each warning "
            "once). A step up is a new warning.",
            [query(f"sum by (app, name) (nodejs_warnings_total{sel()})", legend="{{app}} {{name}}")],
        )
    )
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 12, 8, "MaxListenersExceededWarning by app",
            "Node warns once per emitter and event, so every step is one more emitter past its limit: "
            "usually a listener added per request and never removed.",
            [
                query(
                    f"sum by (app, event, emitter) (nodejs_max_listeners_exceeded_warnings_total{sel()})",
                    legend="{{app}} '{{event}}' on {{emitter}}",
                )
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 8, 8, "Heap OOM crashes by app",
            "Processes that died of 'JavaScript heap out of memory', from their logs.",
            [query(f"sum by (app) (nodejs_heap_out_of_memory_crashes_total{sel()})", legend="{{app}}")],
        )
    )
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 8, 8, "cgroup OOM kills by app",
            "Processes of each app's cgroup killed by the kernel's OOM killer (the cgroup's count, so the "
            "largest per app).",
            [query(f"max by (app) (nodejs_cgroup_oom_kills_total{sel()})", legend="{{app}}")],
        )
    )
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 8, 8, "Restarts by app",
            "Restarts of a PM2 app instance or a pod container (nodejs_process_restarts_total).",
            [query(f"sum by (app) (nodejs_process_restarts_total{sel()})", legend="{{app}}")],
        )
    )
    return d


# --- Process -------------------------------------------------------------------------------------


def process():
    g = Grid()
    d = base(
        PROCESS_UID,
        "Node.js leaks / Process",
        "One Node.js process (or several) in detail: its V8 heap against the heap limit with the floor "
        "and its slope, heap spaces, RSS against the memory limit, external memory, handles, GC pauses "
        "and warnings. The memory panels also work for apps that export prom-client's default metrics.",
    )
    d = alert_annotations(d, pid_matcher=True)
    who = "{{app}} {{pid}}"

    d = d.with_row(g.row("Verdict"))
    d = d.with_panel(
        add(
            statetimeline.Panel()
            .mappings(VERDICT_MAPPINGS)
            .show_value(cm.VisibilityMode.NEVER)
            .merge_values(True)
            .thresholds(threshold_steps([(None, "green"), (1, "red")]))
            .legend(legend()),
            g, 12, 7, "Leak verdict per signal",
            "nodejs_leak_suspected per signal: red while the signal's floor rises with confidence, with "
            "hysteresis. The heap is judged only while the inspector is connected.",
            [query(f"nodejs_leak_suspected{sel()}", legend=who + " {{signal}}")],
        )
    )
    d = d.with_panel(
        add(
            big("s", [(None, "red"), (14400, "orange"), (86400, "green")]),
            g, 4, 7, "Heap exhausted in",
            "Time until the heap floor reaches the heap limit at its current growth "
            "(nodejs_heap_exhaustion_eta_seconds). No data: the floor is not growing.",
            [query(f"nodejs_heap_exhaustion_eta_seconds{sel()}", legend=who, instant=True)],
        )
    )
    d = d.with_panel(
        add(
            big("s", [(None, "red"), (14400, "orange"), (86400, "green")]),
            g, 4, 7, "Memory limit reached in",
            "Time until the cgroup's usage (or the RSS, for PM2's max_memory_restart) reaches the limit at "
            "the current RSS growth (nodejs_memory_limit_eta_seconds). No data: no limit, or not growing.",
            [query(f"nodejs_memory_limit_eta_seconds{sel()}", legend=who + " {{source}}", instant=True)],
        )
    )
    d = d.with_panel(
        add(
            big(
                "none",
                [(None, "orange"), (1, "green")],
                [
                    dm.ValueMap(
                        options={
                            "0": dm.ValueMappingResult(text="no", color="orange", index=0),
                            "1": dm.ValueMappingResult(text="connected", color="green", index=1),
                        }
                    )
                ],
            ),
            g, 4, 7, "Inspector",
            "Whether the exporter's inspector session is open and answering, so the heap metrics are live.",
            [query(f"nodejs_inspector_connected{sel()}", legend=who, instant=True)],
        )
    )

    d = d.with_row(g.row("V8 heap"))
    d = d.with_panel(
        add(
            overrides(
                ts("bytes"),
                [
                    (".*limit$", [("custom.lineStyle", DASHED), ("color", fixed("red"))]),
                    (".*floor$", [("custom.lineWidth", 2), ("color", fixed("orange"))]),
                    (".*slope.*", [("unit", "Bps"), ("custom.axisPlacement", "right"), ("custom.lineStyle", DOTTED)]),
                ],
            ),
            g, 24, 9, "Heap used against the heap limit, with the floor and its slope",
            "Heap used and total; the limit (--max-old-space-size); the floor: heap used right after the "
            "last full GC, which a leak raises; and its slope per window (right axis, bytes/s), the growth "
            "the verdict and the ETA are computed from. prom-client apps show used and total.",
            [
                query(f"nodejs_heap_size_used_bytes{sel()}", legend=who + " used"),
                query(f"nodejs_heap_size_total_bytes{sel()}", legend=who + " total"),
                query(f"nodejs_heap_size_limit_bytes{sel()}", legend=who + " limit"),
                query(f"nodejs_heap_size_used_after_gc_bytes{sel()}", legend=who + " floor"),
                query(
                    "nodejs_memory_growth_bytes_per_second" + HEAP,
                    legend=who + " slope {{window}}",
                ),
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("bytes", stacked=True),
            g, 12, 8, "Heap spaces (used, stacked)",
            "nodejs_heap_space_size_used_bytes by space: a leak of long-lived objects grows old space; "
            "large strings and arrays grow large_object space.",
            [query(f"nodejs_heap_space_size_used_bytes{sel()}", legend=who + " {{space}}")],
        )
    )
    d = d.with_panel(
        add(
            ts("bytes"),
            g, 12, 8, "External memory and array buffers",
            "Memory V8 accounts outside its heap (Buffers, native addons): a Buffer leak grows here while "
            "the heap is flat.",
            [
                query(f"nodejs_external_memory_bytes{sel()}", legend=who + " external"),
                query(f"nodejs_array_buffers_bytes{sel()}", legend=who + " array buffers"),
            ],
        )
    )

    d = d.with_row(g.row("Process memory"))
    d = d.with_panel(
        add(
            overrides(
                ts("bytes"),
                [
                    (".* (anon|file|shmem)$", [("custom.stacking", {"mode": "normal", "group": "rss"}), ("custom.fillOpacity", 30)]),
                    (".*limit$", [("custom.lineStyle", DASHED), ("color", fixed("red"))]),
                ],
            ),
            g, 16, 9, "RSS and what it is made of, against the memory limit",
            "Resident memory stacked by kind (anon grows with heap and native leaks; file is mapped code), "
            "the RSS, the cgroup's usage (what its limit applies to) and the limit that will stop the "
            "process: the cgroup's or PM2's max_memory_restart. prom-client apps show the RSS.",
            [
                query(f"nodejs_process_resident_memory_breakdown_bytes{sel()}", legend=who + " {{type}}"),
                query(f"process_resident_memory_bytes{sel()}", legend=who + " RSS"),
                query(f"nodejs_cgroup_memory_usage_bytes{sel()}", legend=who + " cgroup usage"),
                query(f"nodejs_memory_limit_bytes{sel()}", legend=who + " {{source}} limit"),
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("Bps"),
            g, 8, 9, "Floor growth per signal and window",
            "nodejs_memory_growth_bytes_per_second: the Theil-Sen slope of each memory signal's floor over "
            "each window.",
            [query(f"nodejs_memory_growth_bytes_per_second{sel()}", legend=who + " {{signal}} {{window}}")],
        )
    )

    d = d.with_row(g.row("Handles"))
    d = d.with_panel(
        add(
            ts("short"),
            g, 8, 8, "Open file descriptors and sockets",
            "A connection pool that never releases grows both.",
            [
                query(f"process_open_fds{sel()}", legend=who + " fds"),
                query(f"nodejs_process_open_sockets{sel()}", legend=who + " {{protocol}} sockets"),
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("short", stacked=True),
            g, 8, 8, "Active resources by type",
            "nodejs_active_resources: what keeps the event loop alive (timers, sockets, ...). Timers or "
            "handles never cleared grow here.",
            [query(f"nodejs_active_resources{sel()}", legend=who + " {{type}}")],
        )
    )
    d = d.with_panel(
        add(
            ts("suffix:/s"),
            g, 8, 8, "Handle count growth per signal and window",
            "nodejs_count_growth_per_second: the slope of the floor of open fds, sockets and active "
            "resources over each window.",
            [query(f"nodejs_count_growth_per_second{sel()}", legend=who + " {{signal}} {{window}}")],
        )
    )

    d = d.with_row(g.row("Garbage collection"))
    d = d.with_panel(
        add(
            ts("s"),
            g, 12, 8, "GC pause, 99th percentile by kind",
            "From the nodejs_gc_duration_seconds histogram. Long major pauses near the heap limit are the "
            "last sign before an out-of-memory crash.",
            [
                query(
                    "histogram_quantile(0.99, sum by (job, instance, pid, app, kind, le) "
                    f"(rate(nodejs_gc_duration_seconds_bucket{sel()}[$__rate_interval])))",
                    legend=who + " {{kind}}",
                )
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("percentunit", stacked=True),
            g, 12, 8, "Time spent in GC by kind",
            "Share of wall time spent in GC pauses: rate of nodejs_gc_duration_seconds_sum.",
            [
                query(
                    "sum by (job, instance, pid, app, kind) "
                    f"(rate(nodejs_gc_duration_seconds_sum{sel()}[$__rate_interval]))",
                    legend=who + " {{kind}}",
                )
            ],
        )
    )

    d = d.with_row(g.row("Warnings (counts since the exporter first attached)"))
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 12, 8, "MaxListenersExceededWarning by event and emitter",
            "Node warns once per emitter and event: each step is one more emitter past its listener limit, "
            "e.g. 'close' on IncomingMessage when a listener is added per request.",
            [
                query(
                    f"nodejs_max_listeners_exceeded_warnings_total{sel()}",
                    legend=who + " '{{event}}' on {{emitter}}",
                )
            ],
        )
    )
    d = d.with_panel(
        add(
            ts("short", steps=True),
            g, 12, 8, "Process warnings by name",
            "nodejs_warnings_total by warning name (DeprecationWarning, MaxListenersExceededWarning, ...).",
            [query(f"nodejs_warnings_total{sel()}", legend=who + " {{name}}")],
        )
    )
    return d


def render(builder) -> str:
    return JSONEncoder(sort_keys=True, indent=2).encode(builder.build()) + "\n"


DASHBOARDS = {"nodejs-leak-fleet.json": fleet, "nodejs-leak-process.json": process}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when a committed file is not up to date")
    args = parser.parse_args()
    stale = []
    for name, make in DASHBOARDS.items():
        text = render(make())
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {path.relative_to(HERE.parent)}")
    if stale:
        print(f"not up to date: {', '.join(stale)}; run: target/py/bin/python dashboards/generate.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
