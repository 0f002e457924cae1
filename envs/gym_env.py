"""Building one gymnasium environment, quietly.

Every environment of this package (probe, vector copies, video viewer) is made by
:func:`make_gym_env`. The first call installs, once per process, two filters on other
libraries' output:

* MuJoCo's warning callback (``mujoco.set_mju_user_warning``). MuJoCo prints warnings to
  stdout and appends them to ``MUJOCO_LOG.TXT`` in the working directory, once per model load
  (32 identical lines for 32 environments). The callback turns each into a Python
  ``RuntimeWarning`` ("MuJoCo: ..."), which Python shows once per distinct message and which
  writes no file. The ``settotalmass`` deprecation that every HalfCheetah model load triggers
  (the model file is gymnasium's, the user cannot act on it) is dropped.
* the two INFO lines that every ``GymWrapper`` construction logs (``The info_dict_reader does
  not have specs...`` and ``check_env_specs succeeded!``) are dropped: a ``logging.Filter`` on
  the ``torchrl`` logger that matches those two messages only.

Nothing happens at import: ``mujoco`` is imported when the first environment is made (with a
broken ``MUJOCO_GL`` it fails at import, see :mod:`ngac.envs.render`).
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import gymnasium as gym

__all__ = [
    "make_gym_env",
    "install_output_filters",
    "mujoco_warning",
    "SETTOTALMASS_WARNING",
    "TORCHRL_CONSTRUCTION_LINES",
]

#: The start of the MuJoCo warning that is dropped (MuJoCo >= 3.3, gymnasium's HalfCheetah model).
SETTOTALMASS_WARNING = "compiler attribute 'settotalmass' is deprecated"

#: the starts of the torchrl log messages that are dropped
TORCHRL_CONSTRUCTION_LINES = ("check_env_specs succeeded!", "The info_dict_reader does not have specs.")


def mujoco_warning(message: str) -> None:
    """MuJoCo's warning callback: a ``RuntimeWarning``, except the ``settotalmass`` deprecation."""
    text = message.strip()
    if text.startswith(SETTOTALMASS_WARNING):
        return
    warnings.warn(f"MuJoCo: {text}", RuntimeWarning, stacklevel=2)


class _DropConstructionLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TORCHRL_CONSTRUCTION_LINES)


_TORCHRL_FILTER = _DropConstructionLines()


def install_output_filters() -> None:
    """Install the MuJoCo warning callback and the torchrl log filter (idempotent)."""
    import mujoco  # here, not at module import: see the module docstring

    if mujoco.get_mju_user_warning() is not mujoco_warning:
        mujoco.set_mju_user_warning(mujoco_warning)
    torchrl_logger = logging.getLogger("torchrl")
    if _TORCHRL_FILTER not in torchrl_logger.filters:
        torchrl_logger.addFilter(_TORCHRL_FILTER)


def make_gym_env(env_id: str, max_episode_steps: int | None = None, **kwargs: Any) -> gym.Env:
    """``gym.make(env_id, max_episode_steps=..., **kwargs)`` after :func:`install_output_filters`."""
    install_output_filters()
    if max_episode_steps is not None:
        kwargs["max_episode_steps"] = int(max_episode_steps)
    return gym.make(env_id, **kwargs)
