"""``ngac train --help``: the config groups and every key, with the meaning its YAML file gives it.

The comments in ``configs/`` are the documentation: a comment on a key's line, or the comment
lines right above it, is shown beside the key. Group choices on the command line are honoured
(``ngac train curvature=kfac --help`` lists K-FAC's keys).
"""

from __future__ import annotations

import re
from pathlib import Path

GROUP_ORDER = ("env", "curvature", "agent", "trainer", "logger", "algo", "experiment")
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w.]*):(?P<value>[^#]*?)\s*(?:#\s?(?P<comment>.*))?$")


def documented_keys(path: Path, prefix: str = "") -> list[tuple[str, str, str]]:
    """``(dotted key, value, meaning)`` for every leaf key of one YAML config file."""
    rows: list[tuple[str, str, str]] = []
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            if not stripped.startswith("# @package"):
                above.append(stripped.lstrip("#").strip())
            continue
        m = KEY_LINE.match(line)
        if not m or line.lstrip().startswith("-") or m["key"] in ("defaults", "hydra"):
            above = [] if not stripped else above
            if m and m["key"] in ("defaults", "hydra"):
                stack = [(len(m["indent"]), "\0skip")]
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if any(name == "\0skip" for _, name in stack):
            above = []
            continue
        key = ".".join([*(name for _, name in stack), m["key"]])
        value = m["value"].strip()
        meaning = " ".join(filter(None, [" ".join(above), m["comment"] or ""]))
        if value:
            rows.append((f"{prefix}{key}", value, meaning))
        else:
            stack.append((indent, m["key"]))
        above = []
    return rows


def _defaults(config_dir: Path) -> dict[str, str]:
    chosen = {}
    for line in (config_dir / "config.yaml").read_text().splitlines():
        m = re.match(r"^\s*-\s*(\w+):\s*(\w+)", line)
        if m and m[1] in GROUP_ORDER:
            chosen[m[1]] = m[2]
    return chosen


def render_help(config_dir: Path, overrides: list[str]) -> str:
    chosen = _defaults(config_dir)
    for ov in overrides:
        key, _, value = ov.partition("=")
        if key in GROUP_ORDER and value:
            chosen[key] = value
    lines = [
        "usage: ngac train [GROUP=OPTION ...] [KEY=VALUE ...] [-m]",
        "",
        "config groups (one option each; -m with a comma list sweeps them):",
    ]
    for group in GROUP_ORDER:
        options = sorted(p.stem for p in (config_dir / group).glob("*.yaml"))
        lines.append(f"  {group:<11} {', '.join(options)}  (now: {chosen.get(group, 'null')})")
    lines += ["", "keys (KEY=VALUE), with their current values:"]
    rows = documented_keys(config_dir / "config.yaml")
    for group in ("env", "curvature", "agent", "trainer", "logger"):
        option = chosen.get(group)
        path = config_dir / group / f"{option}.yaml"
        if option and option != "null" and path.is_file():
            is_global = path.read_text().startswith("# @package _global_")
            rows += documented_keys(path, prefix="" if is_global else f"{group}.")
    width = min(max((len(k) + len(v) for k, v, _ in rows), default=20) + 3, 44)
    for key, value, meaning in rows:
        head = f"  {key} = {value}"
        lines.append(f"{head:<{width}} {meaning}".rstrip())
    lines += ["", "`ngac train --cfg job` prints the composed config; Hydra's own flags: ngac train --hydra-help"]
    return "\n".join(lines)
