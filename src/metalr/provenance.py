"""Where each config value comes from, recorded by content beside the resolved config.

The source of a key is the tag that opens its comment in the config files, e.g.
``lr: 0.4  # [MAML] inner rate ...``. Files are layered in order (config/config.yaml first); a later
file's tag on a key overrides an earlier one, and a key without a tag of its own takes its nearest
tagged parent's (``download:  # [ours] retries ...`` covers ``download.attempts``).

A plug-in setting (``rules.<rule>.<key>``, ``algorithms.<algorithm>.<key>``) that no file sets takes the
tag opening its ``source`` in the plug-in's SPEC (metalr.plugins).

``sources(files)`` gives, for every leaf of the resolved config, its tag and the layer that set its value
(0: the defaults, config/config.yaml or a plug-in's SPEC, then named in ``declared_in``; k: the k-th file
over config/config.yaml). The config stage writes it to ``results/<experiment>/config-sources.yaml`` and
the report's choices ledger reads it from there, so the report depends on what the files and SPECs say,
never on the files' names or places.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable, Mapping

from metalr import config as config_mod

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")
_TAG = re.compile(r"^#\s*\[(?P<tag>[^\]]+)\]")
_SPEC_TAG = re.compile(r"^\[(?P<tag>[^\]]+)\]")


def comment_tags(path: str | Path) -> dict[str, str]:
    """Dotted key path -> the tag opening its inline comment, for every tagged key of one YAML file."""
    tags: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        m = _KEY_LINE.match(line)
        if not m:  # blank, comment-only, or a list item of the previous key's value
            continue
        indent = len(m["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, m["key"]))
        rest = m["rest"]
        hash_at = re.search(r"(^|\s)#", rest)
        tag = _TAG.match(rest[hash_at.start():].lstrip()) if hash_at else None
        if tag:
            tags[".".join(k for _, k in stack)] = tag["tag"].strip()
    return tags


def leaves(cfg: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every non-mapping value; lists are leaves."""
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from leaves(value, path + ".")
        else:
            yield path, value


def plugin_source(parts: list[str]) -> dict[str, Any] | None:
    """Tag and module of a plug-in setting ``<rules|algorithms>.<name>.<key>``, from the plug-in's SPEC."""
    from metalr.algorithms import ALGORITHMS
    from metalr.steprules import RULES

    registry = {"rules": RULES, "algorithms": ALGORITHMS}.get(parts[0])
    if registry is None or len(parts) != 3 or parts[1] not in registry:
        return None
    plugin = registry[parts[1]]
    tag = _SPEC_TAG.match(plugin.settings[parts[2]].source)
    return {"tag": tag["tag"].strip() if tag else "", "layer": 0, "declared_in": plugin.module}


def sources(config_files: list[str | Path], cfg: Mapping[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """For every leaf of the resolved config (dotted key, in config order): ``{"tag": <tag or "">, "layer": k}``,
    and ``declared_in`` for a plug-in's default. ``config_files``: config/config.yaml first, then the layered
    files; ``cfg``: their resolved config, when the caller has it already."""
    files = [Path(f) for f in config_files]
    cfg = config_mod.load(files) if cfg is None else cfg
    per_file = [(config_mod.read_yaml(f), comment_tags(f)) for f in files]
    out = {}
    for key, _ in leaves(cfg):
        parts = key.split(".")
        setters = [index for index, (data, _) in enumerate(per_file) if config_mod.has_key(data, parts)]
        declared = None if setters else plugin_source(parts)
        if declared:
            out[key] = declared
            continue
        tag = ""
        for depth in range(len(parts), 0, -1):  # the key itself, then its parents
            found = [tags[".".join(parts[:depth])] for _, tags in per_file if ".".join(parts[:depth]) in tags]
            if found:
                tag = found[-1]
                break
        out[key] = {"tag": tag, "layer": max(setters, default=0)}
    return out
