"""Plug-in registries: step-size rules, algorithms and backbones, each one module declaring itself.

A plug-in module carries, at its top, a literal ``SPEC = {...}``:

    SPEC = {
        "label": "MLPLR",                      # its name in tables and figures
        "learned": False,                      # flags its kind defines (rules: learned; algorithms: ...)
        "settings": {                          # its knobs: config keys <section>.<name>.<setting>
            "lr_max": {"default": 1.0, "source": "[ours] the paper gives none", "doc": "...",
                       "exclusive_minimum": 0,
                       "tune": {"low": 0.1, "high": 10.0, "log": True, "source": "[ours] ..."}},
        },
    }

The registry reads SPEC from the module's source with ``ast.literal_eval`` without importing the module
(as setuptools reads ``__version__``), so validating a config and planning a workflow never import
torch; the implementation is imported only when a job asks for it (``Plugin.load``). A test checks that
the source-read SPEC equals the imported module's.

Settings feed everything that used to repeat them: the config defaults (``defaults``), the config
schema (``settings_schema``), the choices ledger (``source``), the benchmark and the tuning search
space (``tune``: a numeric range, log-scaled where it spans decades, or a list of choices).
"""
from __future__ import annotations

import ast
import functools
import importlib
import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

SETTING_KEYS = {"default", "source", "doc", "choices", "minimum", "exclusive_minimum", "maximum", "tune"}
TUNE_KEYS = {"low", "high", "log", "choices", "source"}


class PluginError(ValueError):
    """A plug-in module's SPEC is missing or malformed (a programming error, named with its module)."""


@dataclass(frozen=True)
class TuneSpace:
    """The range tuning searches for one setting: [low, high] (log-uniform if ``log``) or ``choices``."""

    low: float | None
    high: float | None
    log: bool
    choices: tuple | None
    source: str

    @classmethod
    def parse(cls, raw: Mapping[str, Any], where: str) -> "TuneSpace":
        unknown = set(raw) - TUNE_KEYS
        if unknown or "source" not in raw:
            raise PluginError(f"{where}.tune: keys {sorted(raw)}; allowed {sorted(TUNE_KEYS)}, 'source' required")
        if "choices" in raw:
            return cls(None, None, False, tuple(raw["choices"]), raw["source"])
        low, high = float(raw["low"]), float(raw["high"])
        if not low < high or (raw.get("log", False) and low <= 0):
            raise PluginError(f"{where}.tune: need low < high (and low > 0 on a log scale), got {low}, {high}")
        return cls(low, high, bool(raw.get("log", False)), None, raw["source"])

    def describe(self) -> str:
        """The range in words: 'one of a, b' or '0.001 to 1, log scale'."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        return f"{self.low:g} to {self.high:g}" + (", log scale" if self.log else "")

    def as_dict(self) -> dict[str, Any]:
        if self.choices is not None:
            return {"choices": list(self.choices), "source": self.source}
        return {"low": self.low, "high": self.high, "log": self.log, "source": self.source}


@dataclass(frozen=True)
class Setting:
    """One knob of a plug-in: its default, where the default comes from, and what it means."""

    name: str
    default: Any
    source: str
    doc: str
    choices: tuple | None = None
    minimum: float | None = None
    exclusive_minimum: float | None = None
    maximum: float | None = None
    tune: TuneSpace | None = None

    @classmethod
    def parse(cls, name: str, raw: Mapping[str, Any], where: str) -> "Setting":
        unknown = set(raw) - SETTING_KEYS
        missing = {"default", "source", "doc"} - set(raw)
        if unknown or missing:
            raise PluginError(f"{where}: unknown keys {sorted(unknown)} / missing keys {sorted(missing)}")
        fields = {k: raw[k] for k in ("minimum", "exclusive_minimum", "maximum") if k in raw}
        choices = tuple(raw["choices"]) if "choices" in raw else None
        tune = TuneSpace.parse(raw["tune"], where) if "tune" in raw else None
        return cls(name, raw["default"], raw["source"], raw["doc"], choices, tune=tune, **fields)

    def schema(self) -> dict[str, Any]:
        """The JSON schema of the setting's value, from its default's type and its declared bounds."""
        if self.choices is not None:
            return {"enum": list(self.choices)}
        kind = {bool: "boolean", int: "integer", float: "number", str: "string"}[type(self.default)]
        schema: dict[str, Any] = {"type": kind}
        for key, bound in (("minimum", self.minimum), ("exclusiveMinimum", self.exclusive_minimum),
                           ("maximum", self.maximum)):
            if bound is not None:
                schema[key] = bound
        return schema


@dataclass(frozen=True)
class Plugin:
    """A registered plug-in: its name, where its implementation lives, and its parsed SPEC."""

    kind: str
    name: str
    module: str
    attribute: str
    spec: Mapping[str, Any]

    @property
    def label(self) -> str:
        return self.spec["label"]

    @functools.cached_property
    def settings(self) -> dict[str, Setting]:
        where = f"{self.module}.SPEC.settings"
        return {k: Setting.parse(k, v, f"{where}.{k}") for k, v in self.spec.get("settings", {}).items()}

    def flag(self, name: str) -> bool:
        return bool(self.spec[name])

    def defaults(self) -> dict[str, Any]:
        return {k: s.default for k, s in self.settings.items()}

    @property
    def constraints(self) -> list[tuple[str, str, str]]:
        """The SPEC's ``constraints``: ``[lower, "<=", upper]`` triples between two settings."""
        constraints = [tuple(c) for c in self.spec.get("constraints", [])]
        if any(len(c) != 3 or c[1] != "<=" for c in constraints):
            raise PluginError(f"{self.module}.SPEC constraints must be [setting, '<=', setting] triples: {constraints}")
        return constraints

    def violations(self, settings: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The constraints ``settings`` breaks, as (lower, upper) setting names."""
        return [(low, high) for low, _, high in self.constraints if settings[low] > settings[high]]

    def constrain(self, point: Mapping[str, Any]) -> dict[str, Any]:
        """``point`` with each violated constraint ``a <= b`` met by setting a to b (tuning's rule)."""
        point = dict(point)
        for low, _, high in self.constraints:
            if low in point and high in point and point[low] > point[high]:
                point[low] = point[high]
        return point

    def load(self) -> Any:
        """The implementation (imports the module, and with it torch)."""
        return getattr(importlib.import_module(self.module), self.attribute)


def read_spec(module: str) -> dict[str, Any]:
    """The literal ``SPEC`` assigned at the top of ``module``, read from its source without importing it."""
    found = importlib.util.find_spec(module)
    if found is None or found.origin is None:
        raise PluginError(f"plug-in module {module} not found")
    tree = ast.parse(Path(found.origin).read_text(encoding="utf-8"), filename=found.origin)
    for node in tree.body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["SPEC"]:
            try:
                return ast.literal_eval(node.value)
            except ValueError as exc:
                raise PluginError(f"{module}.SPEC must be a literal (numbers, strings, lists, dicts): {exc}") from exc
    raise PluginError(f"plug-in module {module} has no top-level literal SPEC = {{...}}")


class Registry(Mapping[str, Plugin]):
    """Plug-ins of one kind by name; ``entries`` maps each name to ``"module:attribute"``."""

    def __init__(self, kind: str, entries: Mapping[str, str], required_flags: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._entries = dict(entries)
        self.required_flags = required_flags

    @functools.cached_property
    def _plugins(self) -> dict[str, Plugin]:
        plugins = {}
        for name, target in self._entries.items():
            module, attribute = target.split(":")
            spec = read_spec(module)
            missing = {"label", *self.required_flags} - set(spec)
            if missing:
                raise PluginError(f"{module}.SPEC lacks {sorted(missing)} (every {self.kind} declares them)")
            plugins[name] = Plugin(self.kind, name, module, attribute, spec)
        return plugins

    def __getitem__(self, name: str) -> Plugin:
        if name not in self._entries:
            raise KeyError(f"unknown {self.kind} {name!r}; valid: {sorted(self._entries)}")
        return self._plugins[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def defaults(self) -> dict[str, dict[str, Any]]:
        """``{name: {setting: default}}`` for every plug-in with settings: the config's defaults."""
        return {name: plugin.defaults() for name, plugin in self._plugins.items() if plugin.settings}

    def settings_schema(self) -> dict[str, Any]:
        """JSON schema of the config section holding these plug-ins' settings (``rules``, ``algorithms``)."""
        properties = {
            name: {"type": "object", "additionalProperties": False, "required": sorted(plugin.settings),
                   "properties": {k: s.schema() for k, s in plugin.settings.items()}}
            for name, plugin in self._plugins.items() if plugin.settings
        }
        return {"type": "object", "additionalProperties": False, "properties": properties}
