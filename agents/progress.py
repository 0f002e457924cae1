"""Lightning's tqdm progress bar, counted in environment frames instead of batches."""

from __future__ import annotations

import math
import sys
from typing import Any

from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.callbacks.progress.tqdm_progress import Tqdm

from . import metrics as M


class FramesProgressBar(TQDMProgressBar):
    """One bar: frames done of ``total_frames``, frames per second, and the latest episode return
    (shown as ``-`` until the first episode has ended)."""

    def __init__(self, total_frames: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.total_frames = total_frames
        self.last_return = float("nan")

    def init_train_tqdm(self) -> Tqdm:
        return Tqdm(
            desc="training",
            total=self.total_frames,
            unit="frames",
            disable=self.is_disabled,
            leave=True,
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0.1,
        )

    def on_train_start(self, trainer, pl_module) -> None:
        self.train_progress_bar = self.init_train_tqdm()
        self.train_progress_bar.n = self.train_progress_bar.initial = pl_module.frames

    def on_train_epoch_start(self, trainer, *_: Any) -> None:
        pass  # one bar for the whole run, in frames

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        bar = self.train_progress_bar
        m = pl_module.last_metrics
        self.last_return = m.get(M.EPISODE_RETURN, self.last_return)
        bar.update(pl_module.frames - bar.n)
        ret = "-" if math.isnan(self.last_return) else f"{self.last_return:.1f}"
        bar.set_postfix(sps=f"{m.get(M.SPS, float('nan')):.0f}", ret=ret, refresh=False)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        pass
