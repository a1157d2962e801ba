"""The optimizer pieces every trainer here shares: the run's optimizer with a linear warm-up, and one plain step.

The RL update (`update.py`), the family's pretraining and the warm starts' SFT (priors/) all train with these.
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


def warmup(opt: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning rate rises linearly over `steps` steps, then stays constant (so a longer run never changes the
    steps before it)."""
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / steps) if steps else 1.0)


def adamw_with_warmup(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
                      warmup_steps: int = 0) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its warm-up schedule."""
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    return opt, warmup(opt, warmup_steps)


def make_optimizer(cfg, params: Iterable[torch.nn.Parameter]) -> tuple[torch.optim.Optimizer,
                                                                         torch.optim.lr_scheduler.LambdaLR]:
    """`cfg.optimizer` over `params` with the run's lr, weight decay, warm-up and its betas (AdamW) or momentum (SGD)."""
    if cfg.optimizer == "adamw":
        return adamw_with_warmup(params, cfg.lr, (cfg.adam_beta1, cfg.adam_beta2), cfg.weight_decay, cfg.warmup_steps)
    if cfg.optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
        return opt, warmup(opt, cfg.warmup_steps)
    raise ValueError(f"optimizer={cfg.optimizer!r} not in {', '.join(OPTIMIZERS)}")


def lm_step(model: torch.nn.Module, opt: torch.optim.Optimizer, loss: torch.Tensor, sched=None,
            max_grad_norm: float = 1.0) -> float:
    """One step of a language-model trainer on `loss` (its gradient clipped to `max_grad_norm`); the loss as a
    float."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    opt.step()
    if sched is not None:
        sched.step()
    return float(loss.detach())
