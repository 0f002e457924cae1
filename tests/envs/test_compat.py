"""The private attributes of other libraries that ngac uses still exist, with the expected type.

After a library upgrade that moves one, the accessor raises a LibraryCompatError naming the
library, its version and the attribute, and these tests fail with that message.
"""

from __future__ import annotations

from importlib.metadata import version

import pytest
import torch
from torchrl.collectors import Collector
from torchrl.envs.utils import RandomPolicy

from ngac.envs import env_state, load_env_state, make_env
from ngac.envs.compat import (
    COLLECTOR_CARRIER,
    PRIVATE_ATTRIBUTES,
    LibraryCompatError,
    collector_carrier,
    set_collector_carrier,
)
from tests.envs.envtest_utils import load_env_cfg

CFG = {"id": "Pendulum-v1", "num_envs": 2, "max_episode_steps": 5}


def _collector(env) -> Collector:
    return Collector(env, RandomPolicy(env.action_spec), frames_per_batch=2 * 4, total_frames=-1)


def _owners() -> dict[str, object]:
    """A live instance of every class that holds one of PRIVATE_ATTRIBUTES."""
    return {"torchrl.collectors.Collector": _collector(make_env(CFG, seed=0))}


@pytest.mark.parametrize("attr", PRIVATE_ATTRIBUTES, ids=lambda a: f"{a.owner}.{a.name}")
def test_private_attribute_still_there(attr):
    owner = _owners()[attr.owner]
    assert isinstance(attr.get(owner), attr.expected)


def test_moved_attribute_names_library_version_and_attribute():
    class Upgraded:  # what a Collector without _carrier would look like
        pass

    with pytest.raises(LibraryCompatError) as err:
        collector_carrier(Upgraded())
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"torchrl {version('torchrl')}: torchrl.collectors.Collector._carrier is missing")
    assert "ngac/envs/compat.py" in msg
    wrong = Upgraded()
    wrong._carrier = {"observation": torch.zeros(2, 3)}  # a plain dict: wrong type
    with pytest.raises(LibraryCompatError, match=r"_carrier is a dict, expected a TensorDictBase"):
        COLLECTOR_CARRIER.get(wrong)


def test_carrier_copy_and_in_place_write():
    collector = _collector(make_env(CFG, seed=0))
    first = next(iter(collector))
    carrier = collector_carrier(collector)
    assert set(carrier.keys()) >= {"observation", "episode_return", "episode_length", "done"}
    # the root of the step after the batch's last one (4 steps: no episode of 5 steps ended)
    assert not first["next", "done"].any()
    assert torch.equal(carrier["observation"], first[:, -1]["next", "observation"])
    carrier["observation"].add_(1.0)
    assert not torch.equal(collector_carrier(collector)["observation"], carrier["observation"])  # a copy
    set_collector_carrier(collector, carrier)
    assert torch.equal(collector_carrier(collector)["observation"], carrier["observation"])  # written in place
    second = next(iter(collector))
    assert torch.equal(second[:, 0]["observation"], carrier["observation"])  # the next batch starts from it


def test_collector_resume_through_the_carrier():
    """Batch 2 of an uninterrupted collector == batch 2 of a collector over a restored env and carrier.

    A collector built after load_env_state already starts from the same carrier (its first reset is
    the env's no-op "resume" reset), apart from TorchRL's trajectory ids under "collector" and the
    last action, which the policy overwrites before it is used.
    """
    cfg = load_env_cfg("pendulum", num_envs=2, max_episode_steps=6)
    a_env = make_env(cfg, seed=0)
    a = _collector(a_env)
    it = iter(a)
    torch.manual_seed(0)
    next(it)
    state, carrier = env_state(a_env), collector_carrier(a)
    torch.manual_seed(1)
    expected = next(it)

    b_env = make_env(cfg, seed=7)
    load_env_state(b_env, state)
    b = _collector(b_env)
    own = collector_carrier(b)
    assert set(carrier.keys(True, True)) - set(own.keys(True, True)) == {"action"}
    for key in own.keys(True, True):
        if key[0] != "collector":
            assert torch.equal(own[key], carrier[key]), key
    set_collector_carrier(b, carrier)
    torch.manual_seed(1)
    got = next(iter(b))
    assert expected["next", "done"].any()  # the batch crosses an episode end
    for key in expected.keys(True, True):
        if key[0] != "collector":
            assert torch.equal(got[key], expected[key]), key
