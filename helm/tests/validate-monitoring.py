#!/usr/bin/env python3
"""Validates Prometheus-operator resources (monitoring.coreos.com/v1) against their schemas.

Usage: validate-monitoring.py FILE...   (each file one resource, YAML or JSON)

kubernetes-validate knows only the built-in kinds (for others it warns and passes), so the chart
test sends the monitoring.coreos.com kinds here. The schemas come from the PyPI package
cloudcoil-models-prometheus-operator: pydantic models generated from prometheus-operator's CRD
OpenAPI schemas (types, required fields, enums, patterns). Their JSON schema is made strict the
way kubernetes-validate's --strict schemas are: an object with listed properties admits no other
(a misspelt field fails, as the API server's strict field validation refuses it). A kind or
version with no model fails: nothing passes unvalidated.

Prints one line per file (OK or ERROR with the path of each error); exits 1 if any failed.
"""

import json
import sys

import jsonschema
import yaml
from cloudcoil.models.prometheus_operator import v1
from cloudcoil.resources import Resource

API_VERSION = "monitoring.coreos.com/v1"


def strict(node):
    """Adds additionalProperties: false to every object schema that lists properties and says
    nothing of others (maps keep their additionalProperties)."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)
    return node


def models():
    """kind -> model, for every resource kind of monitoring.coreos.com/v1."""
    found = {}
    for name in dir(v1):
        cls = getattr(v1, name)
        if isinstance(cls, type) and issubclass(cls, Resource) and cls is not Resource:
            found[cls.model_fields["kind"].default] = cls
    return found


def main(paths):
    kinds = models()
    schemas = {}
    failed = False
    for path in paths:
        with open(path) as f:
            resource = yaml.safe_load(f)
        kind = resource.get("kind")
        name = (resource.get("metadata") or {}).get("name")
        api_version = resource.get("apiVersion")
        if api_version != API_VERSION or kind not in kinds:
            print(f"ERROR {path}: no schema for kind {kind} in {api_version}")
            failed = True
            continue
        if kind not in schemas:
            schema = kinds[kind].model_json_schema(by_alias=True, mode="validation")
            schemas[kind] = jsonschema.Draft202012Validator(strict(schema))
        errors = sorted(schemas[kind].iter_errors(resource), key=lambda e: list(e.absolute_path))
        if errors:
            failed = True
            for e in errors:
                where = ".".join(str(p) for p in e.absolute_path)
                print(f"ERROR {path}: {kind}/{name}: {where}: {e.message}")
        else:
            print(f"OK {path}: {kind}/{name} against {API_VERSION}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
