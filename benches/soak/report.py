#!/usr/bin/env python3
"""Prints the markdown report of benches/soak.sh from the raw data in its work directory.

    python3 benches/soak/report.py WORKDIR

Reads `meta` (key=value), `monitor.tsv` (one row per MONITOR seconds of phase A),
`scrapes.txt` (one line per scrape of the 5 scrapers), `churn.log`, `analyze_*.txt` and
`phaseb.tsv`; any of the phase files may be missing (a run of one phase). Standard library only.
"""
import csv
import math
import os
import sys


def read_meta(path):
    meta = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            meta[k] = v
    return meta


def num(v):
    try:
        x = float(v)
    except (TypeError, ValueError):
        return math.nan
    return x


def pct(values, p):
    """Nearest-rank percentile."""
    v = sorted(values)
    if not v:
        return math.nan
    i = max(1, math.ceil(p * len(v)))
    return v[min(i, len(v)) - 1]


def mib(kb):
    return f"{kb / 1024:.1f} MiB"


def dur(seconds):
    seconds = int(round(seconds))
    m, s = divmod(seconds, 60)
    return f"{m}m{s:02d}s" if m else f"{s}s"


def ms(x, digits=2):
    return "n/a" if math.isnan(x) else f"{x:.{digits}f} ms"


def summary_lines(path):
    """The verdict lines of `analyze` (`rss: no leak; ...`), or its error."""
    if not os.path.exists(path):
        return ["(not run)"]
    with open(path) as f:
        text = f.read()
    lines = [l for l in text.splitlines() if l.startswith(("rss:", "open_fds:"))]
    return lines or [text.strip().splitlines()[-1] if text.strip() else "(no output)"]


def leak_rows(path):
    """How many table rows of `analyze` say LEAK."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        return sum(1 for l in f if " LEAK" in l)


def phase_a(work, meta):
    with open(os.path.join(work, "monitor.tsv")) as f:
        rows = [{k: num(v) for k, v in r.items()} for r in csv.DictReader(f, delimiter="\t")]
    if not rows:
        print("Phase A: no monitor rows.")
        return
    t0 = num(meta["t_start"])
    duration = num(meta["duration"])
    tck = num(meta["tck"])
    scrapes = []
    with open(os.path.join(work, "scrapes.txt")) as f:
        for line in f:
            p = line.split()
            if len(p) >= 4:
                scrapes.append((float(p[0]), float(p[1]), int(p[2]), int(p[3])))
    ok = [s for s in scrapes if s[3] == 200]
    failed = len(scrapes) - len(ok)
    lat = [s[1] for s in ok]

    started = exited = 0
    with open(os.path.join(work, "churn.log")) as f:
        for line in f:
            if line.startswith("start "):
                started += 1
            elif line.startswith("exit ") and line.split()[3] == "0":
                exited += 1

    first, last = rows[0], rows[-1]
    mid = min(rows, key=lambda r: abs(r["t"] - t0 - duration / 2))
    elapsed = last["t"] - first["t"]
    samples = last["samples"] - first["samples"]
    steady = int(meta["steady"])
    n_inspect = int(meta.get("steady_inspect", 0))

    print(
        f"Phase A, soak: {dur(elapsed)}; {steady} steady Node.js processes ({n_inspect} with "
        f"`--inspect=127.0.0.1:0`, {n_inspect} serving HTTP to themselves, the rest idle); "
        f"{started} more started over the run, one every {duration / max(started, 1):.2f} s, each "
        f"living {meta['churn_min']}-{meta['churn_max']} s ({exited} exited on their own, the rest were "
        f"killed at the end; a tenth with an inspector, a quarter serving HTTP); {meta['scrapers']} "
        f"scrapers, each GETting /metrics every {int(meta['scrape_period_ms']) / 1000:g} s over "
        f"keep-alive; the exporter read every {meta['monitor']} s. Node.js processes on the machine "
        f"during the run: {int(min(r['nodes'] for r in rows))}-{int(max(r['nodes'] for r in rows))}, "
        f"counting the churn driver and the scrapers (Node.js processes too, watched like the others) "
        f"and {meta.get('others_at_start', '?')} of other work at the start.\n"
    )

    # Over time.
    step = 300 if duration >= 1200 else (120 if duration >= 480 else 30)
    marks = [first]
    for r in rows:
        if r["t"] - marks[-1]["t"] >= step - 0.5 * num(meta["monitor"]):
            marks.append(r)
    if marks[-1] is not last:
        marks.append(last)
    print(
        "| time | node processes | our targets active / warming / exited | inspector sessions "
        "| **our RSS** | of it, leak histories | **our fds** | threads | last sample (wall) | scrapes since the row before: "
        "p50 / p99 / max | process-exporter RSS | its fds |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    def hist(r):
        # nodejs_leak_exporter_history_points: 8 bytes a point (an older build has no such metric).
        h = r.get("history_points", math.nan)
        return "n/a" if math.isnan(h) else f"{h * 8 / 1048576:.2f} MiB"

    prev_t = None
    for r in marks:
        sl = [s[1] for s in ok if (prev_t is None or s[0] > prev_t) and s[0] <= r["t"]]
        sl_txt = (
            f"{len(sl)}: {pct(sl, 0.5):.2f} / {pct(sl, 0.99):.2f} / {max(sl):.2f} ms" if sl else "-"
        )
        print(
            f"| +{dur(r['t'] - t0)} | {int(r['nodes'])} | {int(r['targets_active'])} / "
            f"{int(r['targets_warming'])} / {int(r['targets_exited'])} | {int(r['insp_connected'])} "
            f"| {mib(r['our_rss_kb'])} | {hist(r)} | {int(r['our_fds'])} | {int(r['our_threads'])} "
            f"| {ms(r['sample_dur'] * 1000)} | {sl_txt} | {mib(r['pe_rss_kb'])} | {int(r['pe_fds'])} |"
        )
        prev_t = r["t"]
    print()

    def series(key):
        return [r[key] for r in rows]

    rss, fds = series("our_rss_kb"), series("our_fds")
    pe_rss, pe_fds = series("pe_rss_kb"), series("pe_fds")
    sd = [x * 1000 for x in series("sample_dur") if not math.isnan(x)]
    pe_lat = [x * 1000 for x in series("pe_scrape_s") if x > 0]
    our_cpu = (last["our_ticks"] - first["our_ticks"]) / tck
    pe_cpu = (last["pe_ticks"] - first["pe_ticks"]) / tck
    sampler_per_sample = (last["our_sampler_ns"] - first["our_sampler_ns"]) / 1e6 / samples if samples else math.nan
    pe_scrapes = len(rows) - 1
    pe_per_scrape = (last["pe_ticks"] - first["pe_ticks"]) / tck * 1000 / pe_scrapes if pe_scrapes else math.nan
    print("| | nodejs-leak-exporter | process-exporter |")
    print("|---|---|---|")
    print(
        f"| **RSS** start / middle / end | {mib(first['our_rss_kb'])} / {mib(mid['our_rss_kb'])} / "
        f"{mib(last['our_rss_kb'])} | {mib(first['pe_rss_kb'])} / {mib(mid['pe_rss_kb'])} / {mib(last['pe_rss_kb'])} |"
    )
    print(
        f"| RSS min / max over the run; peak (VmHWM) at the end | {mib(min(rss))} / {mib(max(rss))}; "
        f"{mib(last['our_hwm_kb'])} | {mib(min(pe_rss))} / {mib(max(pe_rss))}; {mib(last['pe_hwm_kb'])} |"
    )
    print(
        f"| **open fds** start / middle / end (min / max) | {int(first['our_fds'])} / {int(mid['our_fds'])} / "
        f"{int(last['our_fds'])} ({int(min(fds))} / {int(max(fds))}) | {int(first['pe_fds'])} / "
        f"{int(mid['pe_fds'])} / {int(last['pe_fds'])} ({int(min(pe_fds))} / {int(max(pe_fds))}) |"
    )
    print(
        f"| threads start / end (max) | {int(first['our_threads'])} / {int(last['our_threads'])} "
        f"({int(max(series('our_threads')))}) | {int(first['pe_threads'])} / {int(last['pe_threads'])} "
        f"({int(max(series('pe_threads')))}) |"
    )
    print(
        f"| own metrics at the end: `nodejs_leak_exporter_process_resident_memory_bytes`, `..._open_fds` "
        f"| {last['own_rss'] / 1048576:.1f} MiB, {int(last['own_fds'])} | |"
    )
    print(
        f"| **/metrics latency** p50 / p90 / p99 / max | {pct(lat, 0.5):.2f} / {pct(lat, 0.9):.2f} / "
        f"{pct(lat, 0.99):.2f} / {max(lat):.2f} ms ({len(scrapes)} scrapes by {meta['scrapers']} "
        f"scrapers, {failed} failed; {pct([s[2] for s in ok], 0.5) / 1024:.0f} KiB each, median) "
        f"| {pct(pe_lat, 0.5):.1f} / {pct(pe_lat, 0.9):.1f} / {pct(pe_lat, 0.99):.1f} / {max(pe_lat):.1f} ms "
        f"({len(pe_lat)} scrapes, one per {meta['monitor']} s) |"
    )
    print(
        f"| samples taken; sample duration (wall) mean / p99 / max | {int(samples)}; "
        f"{sum(sd) / len(sd):.2f} / {pct(sd, 0.99):.2f} / {max(sd):.2f} ms | (reads /proc in each scrape) |"
    )
    print(
        f"| CPU over the run (whole process) | {our_cpu:.1f} s, {100 * our_cpu / elapsed:.2f}% of a core "
        f"(sampling, inspector sessions and {len(scrapes)} scrapes) | {pe_cpu:.1f} s, "
        f"{100 * pe_cpu / elapsed:.2f}% of a core ({pe_scrapes} scrapes) |"
    )
    print(
        f"| CPU per sample (ours: the sampler thread, schedstat) / per scrape (theirs, ticks) "
        f"| {ms(sampler_per_sample)} | {ms(pe_per_scrape)} |"
    )
    errors = []
    mon = os.path.join(work, "mon.prom")
    if os.path.exists(mon):
        with open(mon) as f:
            for line in f:
                if line.startswith("nodejs_leak_exporter_collector_errors_total{"):
                    labels, _, value = line.rpartition(" ")
                    errors.append(f"{int(float(value))} {labels[labels.index('{'):]}")
    print(
        f"| Node.js processes discovered over the run; collector errors | "
        f"{int(last['discovered'])}; {', '.join(errors) or 0} | |"
    )
    print()
    print(
        "The exporter's own series (RSS and open fds, one point per "
        f"{meta['monitor']} s) through `nodejs-leak-exporter analyze`:\n"
    )
    for label, our_file, pe_file in (
        ("default windows (15m, 1h, 6h; 10m grace)", "analyze_default.txt", "analyze_pe_default.txt"),
        (f"`{meta.get('short_windows', '')}`", "analyze_short.txt", "analyze_pe_short.txt"),
    ):
        our = summary_lines(os.path.join(work, our_file))
        n_leak = leak_rows(os.path.join(work, our_file))
        print(f"- {label}: **{'; '.join(our)}**" + (f" — {n_leak} rows say LEAK" if n_leak else ""))
        pe = summary_lines(os.path.join(work, pe_file))
        print(f"  - process-exporter, the same: {'; '.join(pe)}")
    print()


def phase_b(work, meta):
    with open(os.path.join(work, "phaseb.tsv")) as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    window = meta["window"]
    print(
        f"Phase B, cost per target: idle `app.js` processes, a fresh pair of exporters per size, "
        f"a warm-up, then {window} s at one cycle per {meta['interval']} s (ours samples on its timer "
        f"with its defaults and `--discovery.min-age=1s` and is scraped once per sample; "
        f"process-exporter `-threads=false -gather-smaps=false`, config `comm: node`, is scraped once "
        f"per {meta['interval']} s). CPU is utime+stime of the whole process from `/proc/PID/stat` "
        f"(10 ms ticks, every thread, exited ones too; ±1 tick per reading); in brackets the ns of "
        f"`/proc/PID/task/*/schedstat` summed over the threads alive at both ends (it misses threads "
        f"that came and went in the window). Targets: ours counts its active targets, "
        f"process-exporter `num_procs` (both include Node.js processes of other work).\n"
    )
    print(
        "| targets | **ours ms/sample** (whole process, incl. one scrape) | of which the sampler thread "
        "| **per target µs** (marginal) | sample wall time (mean) | **process-exporter ms/scrape** "
        "| per target µs (marginal) | **ratio** (theirs / ours) | RSS ours / theirs | processes on the host "
        "| machine busy |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    tck = num(meta["tck"])
    prev = None
    clamped = False
    for r in rows:
        if r["status"] != "ok":
            print(f"| {r['size']} | {r['status']} | | | | | | | | | |")
            continue
        n = int(r["our_samples"])
        targets = num(r["our_targets"])
        pe_procs = num(r["pe_procs"])
        ours = num(r["our_ticks"]) / tck * 1000 / n
        ours_ns = num(r["our_ns"]) / 1e6 / n
        sampler = num(r["our_sampler_ns"]) / 1e6 / n
        k = int(r["pe_scrapes"])
        theirs = num(r["pe_ticks"]) / tck * 1000 / k
        theirs_ns = num(r["pe_ns"]) / 1e6 / k
        # An earlier version of the script printed these through mawk's %d, which stops at 2^31.
        if r["pe_ns"] == "2147483647" or r["our_ns"] == "2147483647":
            clamped = True
        pe_ns_txt = "n/a*" if r["pe_ns"] == "2147483647" else f"{theirs_ns:.1f}"
        # Marginal: the cost of the targets added since the size before, per target.
        m_ours = m_theirs = ""
        if prev is not None and targets > prev[0] and pe_procs > prev[2]:
            m_ours = f" ({1000 * (ours - prev[1]) / (targets - prev[0]):.0f})"
            m_theirs = f" ({1000 * (theirs - prev[3]) / (pe_procs - prev[2]):.0f})"
        prev = (targets, ours, pe_procs, theirs)
        print(
            f"| {int(targets)} (of {r['size']} started) | {ours:.1f} ms [{ours_ns:.1f}] | {sampler:.1f} ms "
            f"| {1000 * ours / targets:.0f} µs{m_ours} | {num(r['sample_dur_mean']) * 1000:.1f} ms "
            f"| {theirs:.1f} ms [{pe_ns_txt}] ({int(pe_procs)} procs) | {1000 * theirs / pe_procs:.0f} µs{m_theirs} "
            f"| **{theirs / ours:.1f}×** | {mib(num(r['our_rss_kb']))} / {mib(num(r['pe_rss_kb']))} "
            f"| {r.get('scanned') or 'n/a'} | {r['busy_pct']}% |"
        )
    print()
    if clamped:
        print("\\* not recorded: this run's script clamped ns at 2^31 (fixed since).\n")


def main():
    work = sys.argv[1]
    meta = read_meta(os.path.join(work, "meta"))
    print(
        f"{meta['ncpu']} CPUs, {meta['mem_total_gib']} GiB, Linux {meta['kernel']}, node {meta['node_version']}; "
        f"run started {meta['started']} (`{meta['mode']}` mode), on a machine shared with other work.\n"
        f"Ours: {meta['our_version']}, defaults except `--discovery.min-age=1s`. "
        f"Theirs: {meta['pe_version']}, `-threads=false -gather-smaps=false`, config `comm: node`.\n"
    )
    if os.path.exists(os.path.join(work, "monitor.tsv")):
        phase_a(work, meta)
    if os.path.exists(os.path.join(work, "phaseb.tsv")):
        phase_b(work, meta)


if __name__ == "__main__":
    main()
