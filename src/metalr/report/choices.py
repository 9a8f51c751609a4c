"""Choices ledger: every config value an experiment used, with where it comes from.

The provenance of a key is the tag that opens its comment in the config files, e.g.
``lr: 0.4  # [MAML] inner rate ...``. Files are layered in order (config/config.yaml first); a later
file's tag on a key overrides an earlier one, and a key without a tag of its own takes its nearest
tagged parent's (``download:  # [ours] retries ...`` covers ``download.attempts``). Tags map to one of
three sources: the paper, a cited reference, or our choice.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

from metalr import config as config_mod

PAPER = "paper"
OURS = "our choice"
OUR_TAGS = {"ours": "", "quick": "quick-run budget", "cpu": "CPU budget"}
CITED = {"MAML": "Finn et al. 2017"}  # tags that are short names of a reference
# sections whose children are named after datasets / algorithms / rules: only the ones the runs use count
ENTITY_SECTIONS = {"data": "datasets", "algorithms": "algorithms", "rules": "rules"}


def _registries() -> dict[str, Mapping]:
    from metalr.algorithms import ALGORITHMS
    from metalr.data.registry import DATASETS
    from metalr.steprules import RULES

    return {"datasets": DATASETS, "algorithms": ALGORITHMS, "rules": RULES}


def plugin_tag(registries: Mapping[str, Mapping], parts: list[str]) -> tuple[str, str] | None:
    """(tag, declaring module) of a plug-in setting ``<section>.<name>.<setting>`` from its SPEC's source."""
    kind = ENTITY_SECTIONS.get(parts[0])
    if kind not in ("algorithms", "rules") or len(parts) != 3 or parts[1] not in registries[kind]:
        return None
    plugin = registries[kind][parts[1]]
    tag = _SPEC_TAG.match(plugin.settings[parts[2]].source)
    return (tag["tag"].strip() if tag else ""), plugin.module

_KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_.-]+):(?P<rest>.*)$")
_TAG = re.compile(r"^#\s*\[(?P<tag>[^\]]+)\]")
_SPEC_TAG = re.compile(r"^\[(?P<tag>[^\]]+)\]")


@dataclass(frozen=True)
class Choice:
    key: str
    value: str
    tag: str  # '' when neither the key nor a parent is tagged
    source: str
    set_in: str  # the last config file that sets the value


def comment_tags(path: Path) -> dict[str, str]:
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


def source_of(tag: str) -> str:
    """'paper', 'cited reference (<name>)' or 'our choice (<why>)'; 'untagged' for ''."""
    if not tag:
        return "untagged"
    if tag == "paper":
        return PAPER
    if tag in OUR_TAGS:
        return f"{OURS} ({OUR_TAGS[tag]})" if OUR_TAGS[tag] else OURS
    return f"cited reference ({tag}, {CITED[tag]})" if tag in CITED else f"cited reference ({tag})"


def leaves(cfg: Mapping[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every non-mapping value; lists are leaves."""
    for key, value in cfg.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):
            yield from leaves(value, path + ".")
        else:
            yield path, value


def format_value(value: Any) -> str:
    """YAML flow style, as one would write it in the config."""
    return yaml.safe_dump([value], default_flow_style=True, width=10**6).strip()[1:-1]


def ledger(config_files: list[Path], used: Mapping[str, set[str]] | None = None) -> list[Choice]:
    """One Choice per leaf of the merged config, in file order. ``used`` maps 'datasets' / 'algorithms' /
    'rules' to the names the experiment ran; the settings of other datasets, algorithms and rules
    (data.<dataset>, algorithms.<name>, rules.<name>) are left out (all are kept when ``used`` is None)."""
    files = [Path(f) for f in config_files]
    cfg = config_mod.load(files)
    per_file = [(f, config_mod.read_yaml(f), comment_tags(f)) for f in files]
    known = _registries()
    out = []
    for key, value in leaves(cfg):
        parts = key.split(".")
        kind = ENTITY_SECTIONS.get(parts[0])
        if used is not None and kind and len(parts) > 2 and parts[1] in known[kind] \
                and parts[1] not in used.get(kind, set()):
            continue
        tag = ""
        for depth in range(len(parts), 0, -1):  # the key itself, then its parents
            prefix = ".".join(parts[:depth])
            found = [tags[prefix] for _, _, tags in per_file if prefix in tags]
            if found:
                tag = found[-1]
                break
        setters = [_display_path(f) for f, data, _ in per_file if config_mod.has_key(data, parts)]
        declared = plugin_tag(known, parts)
        if declared and not setters:  # a plug-in default: its source is declared in the module's SPEC
            tag, setters = declared[0], [declared[1]]
        out.append(Choice(key, format_value(value), tag, source_of(tag), setters[-1]))
    return out


def _display_path(path: Path) -> str:
    try:
        return path.resolve().relative_to(config_mod.project_root()).as_posix()
    except ValueError:
        return path.name


def counts(choices: list[Choice]) -> dict[str, int]:
    return {"all": len(choices),
            "paper": sum(c.source == PAPER for c in choices),
            "cited": sum(c.source.startswith("cited") for c in choices),
            "ours": sum(c.source.startswith(OURS) for c in choices),
            "untagged": sum(not c.tag for c in choices)}
