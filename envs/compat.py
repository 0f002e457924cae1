"""The private attributes of other libraries that ngac still reads or writes, in one place.

Exact resume needs the state that TorchRL's ``Collector`` carries from one batch to the next:
the root tensordict of the current step of every env (observation, episode statistics, done
flags), which the collector keeps in ``_carrier``. TorchRL 0.14 has no public accessor for it
(``Collector.state_dict()`` holds the env's transform buffers, the frame and iteration counters
and the trajectory-id pool, not the carrier).

Everything else that exact resume touches goes through public APIs (see
:mod:`ngac.envs.snapshot` and :mod:`ngac.envs.wrappers`).

:data:`PRIVATE_ATTRIBUTES` lists each one; ``tests/envs/test_compat.py`` checks that each still
exists with the expected type, and the accessors raise :class:`LibraryCompatError` naming the
library and its version when an upgrade moves one.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from tensordict import TensorDictBase

__all__ = ["LibraryCompatError", "PrivateAttribute", "PRIVATE_ATTRIBUTES", "collector_carrier", "set_collector_carrier"]


class LibraryCompatError(RuntimeError):
    """A private attribute ngac relies on is gone or changed type (a library upgrade)."""


@dataclass(frozen=True)
class PrivateAttribute:
    """One private attribute of another library that ngac uses."""

    library: str  #: distribution name, for its version
    owner: str  #: the class that holds it
    name: str  #: the attribute
    expected: type  #: the type its value must have
    purpose: str  #: what ngac needs it for

    def get(self, obj: Any) -> Any:
        """``obj.<name>``, or a one-line :class:`LibraryCompatError` when it is missing or of another type."""
        value = getattr(obj, self.name, _MISSING)
        if value is _MISSING or not isinstance(value, self.expected):
            got = "missing" if value is _MISSING else f"a {type(value).__name__}"
            raise LibraryCompatError(
                f"{self.library} {_version(self.library)}: {self.owner}.{self.name} is {got}, expected a "
                f"{self.expected.__name__} ({self.purpose}); this {self.library} version is not supported by "
                "ngac's exact resume, see ngac/envs/compat.py"
            )
        return value


_MISSING = object()

COLLECTOR_CARRIER = PrivateAttribute(
    library="torchrl",
    owner="torchrl.collectors.Collector",
    name="_carrier",
    expected=TensorDictBase,
    purpose="the current step of every env, saved and restored for exact resume",
)

#: every private attribute of another library that ngac uses
PRIVATE_ATTRIBUTES: tuple[PrivateAttribute, ...] = (COLLECTOR_CARRIER,)


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "(version unknown)"


def collector_carrier(collector: Any) -> TensorDictBase:
    """A copy of the tensordict the collector starts its next batch from (``Collector._carrier``)."""
    return COLLECTOR_CARRIER.get(collector).clone()


def set_collector_carrier(collector: Any, td: TensorDictBase) -> None:
    """Overwrite, in place, the tensordict the collector starts its next batch from with ``td``.

    ``td`` must have the carrier's keys and shapes (a :func:`collector_carrier` of a collector over
    an env with the same config).
    """
    COLLECTOR_CARRIER.get(collector).update_(td)
