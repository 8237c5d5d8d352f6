"""PerSAM-F's scale-aware fine-tuning: two weights mixing SAM's three multimask outputs.

The mixed logit is ``(1 − a − b)·m₀ + a·m₁ + b·m₂`` (a = b = 1/3 at the start, no softmax), fitted with
dice + sigmoid focal loss on the reference image against its mask. SAM stays frozen, so the decoder's logits
are constant: they are computed once, not re-run at every one of the 1000 iterations as the official code does.
"""

import torch
import torch.nn.functional as F


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid().flatten(1)
    return (1 - (2 * (p * target).sum(-1) + 1) / (p.sum(-1) + target.sum(-1) + 1)).sum()


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha=0.25, gamma=2.0) -> torch.Tensor:
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    p_t = p * target + (1 - p) * (1 - target)
    loss = ce * (1 - p_t) ** gamma
    loss = (alpha * target + (1 - alpha) * (1 - target)) * loss
    return loss.mean(1).sum()


def mixing_weights(ab: torch.Tensor) -> torch.Tensor:
    """(2, 1) learnable [a, b] → (3, 1) weights [1 − a − b, a, b]."""
    return torch.cat((1 - ab.sum(0, keepdim=True), ab), dim=0)


def weighted_logits(logits: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(3, H, W) multimask logits mixed with (3,) weights → (H, W)."""
    return (logits * weights.reshape(-1, 1, 1).to(logits)).sum(0)


def scale_aware_weights(multimask_logits: torch.Tensor, target_mask: torch.Tensor, iterations=1000, lr=1e-3,
                        callback=None):
    """Fit the 2 scale-aware parameters on constant (3, H, W) logits against the (H, W) reference mask.
    Returns (weights (3,), per-iteration losses (iterations,))."""
    # Hosts such as ComfyUI run nodes under inference mode; the fit needs autograd on normal tensors.
    with torch.inference_mode(False), torch.enable_grad():
        logits = multimask_logits.detach().flatten(1).float().clone()
        target = target_mask.reshape(1, -1).float().to(logits.device).clone()
        ab = torch.nn.Parameter(torch.ones(2, 1, device=logits.device) / 3)
        optimizer = torch.optim.AdamW([ab], lr=lr, eps=1e-4)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, iterations)
        losses = torch.empty(iterations)
        for i in range(iterations):
            mixed = (logits * mixing_weights(ab)).sum(0, keepdim=True)
            loss = dice_loss(mixed, target) + sigmoid_focal_loss(mixed, target)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            schedule.step()
            losses[i] = loss.detach()
            if callback:
                callback(i + 1, iterations)
    return mixing_weights(ab).detach().flatten(), losses
