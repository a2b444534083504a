#!/usr/bin/env python3
"""The settings table of docs/configuration.md, from infra/cdk/lib/settings.json (the one list).

    python3 infra/settings_doc.py           print the table
    python3 infra/settings_doc.py --write   rewrite it in docs/configuration.md, between the markers
"""

import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DOC = os.path.join(os.path.dirname(HERE), "docs", "configuration.md")
BEGIN, END = "<!-- settings: begin (python3 infra/settings_doc.py --write) -->", "<!-- settings: end -->"


def table() -> str:
    settings = json.load(open(os.path.join(HERE, "cdk", "lib", "settings.json")))["settings"]
    rows = ["| variable | CDK (`-c meshca:<name>`, prop) | Terraform variable | default | meaning |", "|---|---|---|---|---|"]
    for s in settings:
        cdk, tf = (f"`{s['cdk']}`" if s["cdk"] else "—"), (f"`{s['terraform']}`" if s["terraform"] else "—")
        if s["mapping"] == "deployment":
            cdk, tf = (f"from {cdk}" if s["cdk"] else "set by the deployment"), (f"from {tf}" if s["terraform"] else "set by the deployment")
        default = f"`{s['default']}`" if s["default"] is not None else "—"
        rows.append(f"| `{s['env']}` | {cdk} | {tf} | {default} | {s['doc']} |")
    return "\n".join(rows) + "\n"


def section(text: str) -> str:
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    return text[start:end].strip("\n") + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        text = open(DOC).read()
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        open(DOC, "w").write(text[:start] + "\n" + table() + text[end:])
    else:
        sys.stdout.write(table())
