"""Curvature backends for natural-gradient actor-critic.

Every module in this package registers its backend on import; ``build_curvature(name, ...)``
builds one by name. See :mod:`ngac.curvature.base` for the interface.
"""

import importlib
import pkgutil

from .base import REGISTRY, Curvature, Direction, PolicyBatch, build_curvature, options, register
from .schedules import Schedule, as_schedule
from .scores import BroadcastParameter, Scores

# Import every backend module so that dropping a file into this folder is enough to add one.
HELPERS = {"base", "schedules", "scores", "conjugate", "diagnostics", "damping_fit"}
for _mod in pkgutil.iter_modules(__path__):
    if _mod.name not in HELPERS:
        importlib.import_module(f"{__name__}.{_mod.name}")

__all__ = [
    "REGISTRY",
    "BroadcastParameter",
    "Curvature",
    "Direction",
    "PolicyBatch",
    "Schedule",
    "Scores",
    "as_schedule",
    "build_curvature",
    "options",
    "register",
]
