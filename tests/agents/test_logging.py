"""Why the agent logs through Lightning's logger API and not ``self.log``.

``self.log`` keeps a key's last value in Lightning's result collection and sends it again at every
later step where the key is not logged. A sparse metric (``charts/episode_return`` exists only for
batches in which an episode ended) would get forged points. The first test pins that Lightning
behaviour down (if an upgrade changes it, ``self.log`` becomes usable and this test says so); the
second checks that ngac's rows hold exactly what each update logged.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import rank_zero_only

from ngac.agents.base import OnPolicyAgent


class RecordingLogger(Logger):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[tuple[int | None, dict[str, float]]] = []

    @property
    def name(self) -> str:
        return "recording"

    @property
    def version(self) -> str:
        return "0"

    @rank_zero_only
    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))


class Sparse(L.LightningModule):
    """Logs ``sparse`` at the first step only, with ``self.log`` or with the logger API."""

    def __init__(self, via_self_log: bool) -> None:
        super().__init__()
        self.via_self_log = via_self_log
        self.layer = torch.nn.Linear(1, 1)
        self.automatic_optimization = False

    def training_step(self, batch, batch_idx):
        metrics = {"dense": float(batch_idx)}
        if batch_idx == 0:
            metrics["sparse"] = 1.0
        if self.via_self_log:
            self.log_dict(metrics, on_step=True, on_epoch=False, batch_size=1)
        else:
            self.logger.log_metrics(metrics, step=batch_idx)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _sparse_points(via_self_log: bool) -> int:
    logger = RecordingLogger()
    trainer = L.Trainer(max_epochs=1, logger=logger, log_every_n_steps=1, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(Sparse(via_self_log), torch.utils.data.DataLoader(torch.zeros(4, 1), batch_size=1))
    return sum("sparse" in row for _, row in logger.rows)


def test_self_log_resends_a_sparse_metric_at_later_steps():
    assert _sparse_points(via_self_log=True) > 1, "Lightning no longer re-sends stale values: self.log would do"


def test_the_logger_api_sends_a_sparse_metric_once():
    assert _sparse_points(via_self_log=False) == 1


def test_the_agent_logs_rows_through_the_logger_api():
    assert "log_dict" not in OnPolicyAgent.log_frames.__code__.co_names
