"""First-order MAML: MAML with the inner gradients treated as constants."""
from __future__ import annotations

from metalr.algorithms.maml import MAML

FOMAML = MAML(name="fomaml", first_order=True)
