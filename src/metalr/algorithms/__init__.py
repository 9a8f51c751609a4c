"""Registry of meta-learning algorithms: adding one is one module plus one line here.

An algorithm with settings (iMAML) reads them from ``algorithms.<name>`` in the config: they replace
the dataclass fields of its registry entry.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from metalr.algorithms.anil import ANIL
from metalr.algorithms.base import Algorithm
from metalr.algorithms.fomaml import FOMAML
from metalr.algorithms.imaml import IMAML
from metalr.algorithms.maml import MAML
from metalr.algorithms.reptile import Reptile

ALGORITHMS: dict[str, Algorithm] = {
    "maml": MAML(),
    "fomaml": FOMAML,
    "anil": ANIL(),
    "reptile": Reptile(),
    "imaml": IMAML(),
}


def get_algorithm(name: str, settings: Mapping[str, Any]) -> Algorithm:
    """The registered algorithm, with its ``settings[name]`` (the config's ``algorithms`` block) applied."""
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; valid: {sorted(ALGORITHMS)}")
    return dataclasses.replace(ALGORITHMS[name], **settings.get(name, {}))
