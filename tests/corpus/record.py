#!/usr/bin/env python3
"""Records real traces for the corpus: starts Node.js apps (tests/fixtures/apps/service.js in
several modes) with an inspector on loopback, runs the exporter at a 5 s sample interval, and
writes one CSV per app with the exporter's view of it at every sample.

Usage: record.py --exporter BIN --minutes 75 --out tests/corpus/recorded [--only NAME ...]

The columns are those `nodejs-leak-exporter analyze` reads (see tests/corpus/README.md):
time (unix seconds of the sample), heap_used, heap_used_after_gc, major_gcs, heap_total,
heap_limit, rss, external, open_fds, sockets, active_resources.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SERVICE = os.path.join(ROOT, "tests/fixtures/apps/service.js")

# name -> service.js arguments. The label (leak or healthy, and on which signal) is in the name
# and in tests/corpus/README.md.
APPS = {
    "leak-heap-map-1mib": ["leak=map", "rps=50", "leak_bytes=300"],
    "leak-heap-map-slow": ["leak=map", "rps=50", "leak_bytes=60"],
    "leak-heap-listeners": ["leak=listeners", "rps=10"],
    "leak-sockets-pool": ["leak=pool", "rps=50", "error_rate=0.005"],
    "leak-external-buffer": ["leak=buffer", "rps=50", "leak_bytes=400"],
    "healthy-fixed": ["leak=none", "rps=50"],
    "healthy-bursty": ["leak=none", "rps=40", "pattern=bursty"],
    "healthy-warmup": ["leak=none", "rps=50", "pattern=warmup", "cache_max=15000"],
    "healthy-low-traffic": ["leak=none", "rps=5"],
}

COLUMNS = ["time", "heap_used", "heap_used_after_gc", "major_gcs", "heap_total", "heap_limit", "rss",
           "external", "open_fds", "sockets", "active_resources"]
SUMMED = {
    "nodejs_heap_size_used_bytes": "heap_used",
    "nodejs_heap_size_used_after_gc_bytes": "heap_used_after_gc",
    "nodejs_heap_size_total_bytes": "heap_total",
    "nodejs_heap_size_limit_bytes": "heap_limit",
    "process_resident_memory_bytes": "rss",
    "nodejs_external_memory_bytes": "external",
    "process_open_fds": "open_fds",
    "nodejs_process_open_sockets": "sockets",
    "nodejs_active_resources": "active_resources",
}
LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)')
PID = re.compile(r'pid="(\d+)"')


def scrape(url):
    with urllib.request.urlopen(url, timeout=5) as r:
        return r.read().decode()


def parse(text, pids):
    stamp = None
    rows = {pid: {} for pid in pids}
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, value = m.group(1), m.group(2) or "", float(m.group(3))
        if name == "nodejs_leak_exporter_last_sample_timestamp_seconds":
            stamp = value
            continue
        p = PID.search(labels)
        if not p or int(p.group(1)) not in rows:
            continue
        row = rows[int(p.group(1))]
        if name in SUMMED:
            col = SUMMED[name]
            row[col] = row.get(col, 0.0) + value
        elif name == "nodejs_gc_duration_seconds_count" and 'kind="major"' in labels:
            row["major_gcs"] = value
    return stamp, rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--exporter", required=True)
    ap.add_argument("--minutes", type=float, default=75)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests/corpus/recorded"))
    ap.add_argument("--port", type=int, default=19331)
    ap.add_argument("--node", default="node")
    ap.add_argument("--only", nargs="*")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    names = a.only or list(APPS)
    procs = {}
    for name in names:
        p = subprocess.Popen([a.node, "--inspect=127.0.0.1:0", SERVICE] + APPS[name],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = p.stdout.readline()
        if not line.startswith("ready"):
            sys.exit(f"{name} did not start: {line!r}")
        procs[p.pid] = (name, p)
    pids = list(procs)
    args = [a.exporter, f"--web.listen-address=127.0.0.1:{a.port}", "--sample.interval=5s",
            "--discovery.min-age=0s", "--no-collector.logs"] + [f"--discovery.pid={pid}" for pid in pids]
    exporter = subprocess.Popen(args, stderr=subprocess.DEVNULL)
    files = {}
    for pid, (name, _) in procs.items():
        f = open(os.path.join(a.out, name + ".csv"), "w")
        f.write("# " + " ".join(["service.js"] + APPS[name]) + "\n")
        f.write(",".join(COLUMNS) + "\n")
        files[pid] = f
    url = f"http://127.0.0.1:{a.port}/metrics"
    end = time.time() + a.minutes * 60
    last = None
    try:
        while time.time() < end:
            time.sleep(1)
            try:
                stamp, rows = parse(scrape(url), pids)
            except OSError:
                continue
            if stamp is None or stamp == last:
                continue
            last = stamp
            for pid, row in rows.items():
                if "rss" not in row:
                    continue
                cells = [f"{stamp:.3f}"] + [("%.0f" % row[c]) if c in row else "" for c in COLUMNS[1:]]
                files[pid].write(",".join(cells) + "\n")
                files[pid].flush()
    finally:
        exporter.send_signal(signal.SIGTERM)
        for _, p in procs.values():
            p.kill()
        for f in files.values():
            f.close()


if __name__ == "__main__":
    main()
