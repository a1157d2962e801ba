"""The optimizer pieces every trainer here shares: AdamW with a linear warm-up, and one plain step.

The RL update (`update.py`), the family's pretraining and the warm starts' SFT (priors/) all train with these.
"""

from __future__ import annotations

import torch


def adamw_with_warmup(params, lr: float, betas: tuple[float, float] = (0.9, 0.999), weight_decay: float = 0.0,
                      warmup: int = 0) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its schedule: the learning rate rises linearly over `warmup` steps, then stays constant (so a
    longer run never changes the steps before it)."""
    opt = torch.optim.AdamW(params, lr=lr, betas=betas, weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warmup) if warmup else 1.0)
    return opt, sched


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
