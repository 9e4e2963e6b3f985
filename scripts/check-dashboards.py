#!/usr/bin/env python3
"""Checks the dashboards under dashboards/ against Grafana's dashboard model, as the Grafana
Foundation SDK (PyPI grafana-foundation-sdk, pinned by scripts/install-test-deps.sh) defines it.

For each file: the SDK loads it (Dashboard.from_json, with the SDK's panel and query plugins
registered, so panel options, field config and Prometheus queries are decoded by their own
models) and writes it back; every value of the file must come back unchanged. A key the model does
not know, a misspelt option or a value of the wrong type is dropped or changed on the way and
fails the check. Then the schema version must be the SDK's, and the files must be what
dashboards/generate.py makes (generate.py --check).

Usage: target/py/bin/python scripts/check-dashboards.py [FILE.json ...]
"""

import json
import pathlib
import subprocess
import sys

from grafana_foundation_sdk.cog import plugins
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dm

ROOT = pathlib.Path(__file__).resolve().parent.parent


def lost(original, back, path="$"):
    """Paths where `original` has a value that `back` does not carry unchanged. Defaults the model
    adds on the way back (keys absent from the original) are not differences."""
    if isinstance(original, dict):
        if not isinstance(back, dict):
            return [f"{path}: an object became {json.dumps(back)[:80]}"]
        out = []
        for k, v in original.items():
            if k not in back:
                out.append(f"{path}.{k}: not in the model (dropped)")
            else:
                out.extend(lost(v, back[k], f"{path}.{k}"))
        return out
    if isinstance(original, list):
        if not isinstance(back, list) or len(back) != len(original):
            return [f"{path}: a list of {len(original)} came back as {json.dumps(back)[:80]}"]
        out = []
        for i, (a, b) in enumerate(zip(original, back)):
            out.extend(lost(a, b, f"{path}[{i}]"))
        return out
    if original != back or type(original) is not type(back):
        return [f"{path}: {json.dumps(original)} came back as {json.dumps(back)}"]
    return []


def check(path: pathlib.Path) -> list[str]:
    data = json.loads(path.read_text())
    model = dm.Dashboard.from_json(data)
    back = json.loads(JSONEncoder().encode(model))
    problems = lost(data, back)
    sdk_schema = dm.Dashboard().schema_version
    if data.get("schemaVersion") != sdk_schema:
        problems.append(f"$.schemaVersion: {data.get('schemaVersion')}, the model's is {sdk_schema}")
    # Panels whose type has no model in the SDK would only have been carried as opaque data.
    for panel in data.get("panels", []):
        if panel["type"] != "row" and plugins.cogruntime.panelcfg_config(panel["type"]) is None:
            problems.append(f"panel {panel.get('id')}: type {panel['type']!r} has no model")
    name = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    return [f"{name}: {p}" for p in problems]


def main() -> int:
    plugins.register_default_plugins()
    files = [pathlib.Path(a).resolve() for a in sys.argv[1:]] or sorted((ROOT / "dashboards").glob("*.json"))
    if not files:
        print("no dashboards found", file=sys.stderr)
        return 1
    problems = []
    for f in files:
        problems.extend(check(f))
    fresh = subprocess.run([sys.executable, str(ROOT / "dashboards/generate.py"), "--check"], capture_output=True, text=True)
    if fresh.returncode != 0:
        problems.append(fresh.stderr.strip() or fresh.stdout.strip())
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        return 1
    print(f"{len(files)} dashboards match Grafana's dashboard model (schemaVersion {dm.Dashboard().schema_version})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
