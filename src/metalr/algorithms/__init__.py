"""Registry of meta-learning algorithms: adding one is one module plus one line here."""
from __future__ import annotations

from metalr.algorithms.anil import ANIL
from metalr.algorithms.base import Algorithm
from metalr.algorithms.fomaml import FOMAML
from metalr.algorithms.maml import MAML
from metalr.algorithms.reptile import Reptile

ALGORITHMS: dict[str, Algorithm] = {
    "maml": MAML(),
    "fomaml": FOMAML,
    "anil": ANIL(),
    "reptile": Reptile(),
}


def get_algorithm(name: str) -> Algorithm:
    if name not in ALGORITHMS:
        raise KeyError(f"unknown algorithm {name!r}; valid: {sorted(ALGORITHMS)}")
    return ALGORITHMS[name]
