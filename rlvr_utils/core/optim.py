"""The optimizer a run steps with.

- `adamw` (default): Adam's step is about lr per coordinate whatever the gradient's scale (its second moment
  divides the scale out; eps = 1e-8 is far below a typical |g|), so the loss's normalisation (`loss_norm`) and
  how many samples a step keeps barely change how far a step moves.
- `sgd`: SGD with momentum (heavy ball, `momentum`): the step is lr times the (averaged) gradient, so a loss
  divided by all samples' tokens moves less when few samples are kept, as `loss_norm=all` intends.
"""

from __future__ import annotations

from typing import Iterable

import torch

OPTIMIZERS = ("adamw", "sgd")


def make_optimizer(cfg, params: Iterable[torch.nn.Parameter]) -> torch.optim.Optimizer:
    """`cfg.optimizer` over `params` with the run's lr, weight decay and its betas (AdamW) or momentum (SGD)."""
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=(cfg.adam_beta1, cfg.adam_beta2), weight_decay=cfg.weight_decay)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    raise ValueError(f"optimizer={cfg.optimizer!r} not in {', '.join(OPTIMIZERS)}")
