"""PerSAM-F's scale-aware fine-tuning: two weights mixing SAM's three multimask outputs.

The mixed logit is ``(1 − a − b)·m₀ + a·m₁ + b·m₂`` (a = b = 1/3 at the start, no softmax), fitted with
dice (+1 smoothing) + sigmoid focal loss (α 0.25, γ 2) on the reference image against its mask, by AdamW
(lr 1e-3, eps 1e-4, weight decay 0.01) with a cosine schedule.

SAM stays frozen, so the decoder's logits are constant: they are computed once instead of at every one of
the 1000 iterations as the official code does. With only two parameters, the loss and its gradient are
written out in closed form over the pixels (``loss_and_gradient``); ``dice_loss`` + ``sigmoid_focal_loss``
are the reference definitions it is tested against.
"""

import math

import torch
import torch.nn.functional as F

ALPHA, GAMMA = 0.25, 2.0
BETAS, EPS, WEIGHT_DECAY = (0.9, 0.999), 1e-4, 1e-2


def dice_loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = logits.sigmoid().flatten(1)
    return (1 - (2 * (p * target).sum(-1) + 1) / (p.sum(-1) + target.sum(-1) + 1)).sum()


def sigmoid_focal_loss(logits: torch.Tensor, target: torch.Tensor, alpha=ALPHA, gamma=GAMMA) -> torch.Tensor:
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


class MixedLoss:
    """Dice + focal loss of the mixed logit as a function of (a, b), with its exact gradient.

    Per pixel, with m the mixed logit and z = −(2t − 1)·m: focal = α_t·softplus(z)·q², q = sigmoid(z) = 1 − p_t;
    both come from one exp(−|z|) and one log1p. The sums are dot products over the pixels.
    """

    def __init__(self, multimask_logits: torch.Tensor, target_mask: torch.Tensor):
        logits = multimask_logits.detach().float().flatten(1)
        t = target_mask.reshape(-1).float().to(logits.device)
        self.base, self.d1, self.d2 = logits[0], logits[1] - logits[0], logits[2] - logits[0]
        self.t, self.positive, self.neg_sign = t, t > 0, 1 - 2 * t
        self.alpha_t = ALPHA * t + (1 - ALPHA) * (1 - t)
        self.sum_t, self.n = float(t.sum()), t.numel()

    def __call__(self, a: float, b: float):
        z = torch.add(self.base, self.d1, alpha=a).add_(self.d2, alpha=b).mul_(self.neg_sign)
        e = z.abs().neg_().exp_()
        inv = (e + 1).reciprocal_()
        q = torch.where(z >= 0, inv, e.mul(inv))  # sigmoid(z) = 1 − p_t
        softplus = z.clamp(min=0).add_(torch.log1p(e))
        p = torch.where(self.positive, 1 - q, q)
        numerator = 2 * float(torch.dot(p, self.t)) + 1
        denominator = float(p.sum()) + self.sum_t + 1
        aq2 = q.mul(q).mul_(self.alpha_t)
        loss = 1 - numerator / denominator + float(torch.dot(aq2, softplus)) / self.n
        # d(dice)/dm = (N − 2t·D)/D² · p(1 − p);  d(focal)/dm = −sign·α_t·q²·(q + 2·softplus·(1 − q)) / n
        grad_m = (self.t * (-2 / denominator) + numerator / denominator**2).mul_(p).mul_(1 - p)
        focal = softplus.mul_(1 - q).mul_(2).add_(q).mul_(aq2).mul_(self.neg_sign).div_(self.n)
        grad_m.add_(focal)
        return loss, float(torch.dot(grad_m, self.d1)), float(torch.dot(grad_m, self.d2))


def scale_aware_weights(multimask_logits: torch.Tensor, target_mask: torch.Tensor, iterations=1000, lr=1e-3,
                        callback=None):
    """Fit the 2 scale-aware parameters on constant (3, H, W) logits against the (H, W) reference mask.
    Returns (weights (3,), per-iteration losses (iterations,))."""
    loss_fn = MixedLoss(multimask_logits, target_mask)
    params, first, second = [1 / 3, 1 / 3], [0.0, 0.0], [0.0, 0.0]
    losses = []
    for i in range(iterations):
        loss, *grads = loss_fn(*params)
        losses.append(loss)
        step_lr = lr * (1 + math.cos(math.pi * i / iterations)) / 2  # CosineAnnealingLR, closed form
        for k, g in enumerate(grads):  # AdamW, as torch.optim.AdamW
            params[k] *= 1 - step_lr * WEIGHT_DECAY
            first[k] = BETAS[0] * first[k] + (1 - BETAS[0]) * g
            second[k] = BETAS[1] * second[k] + (1 - BETAS[1]) * g * g
            denom = math.sqrt(second[k]) / math.sqrt(1 - BETAS[1] ** (i + 1)) + EPS
            params[k] -= step_lr / (1 - BETAS[0] ** (i + 1)) * first[k] / denom
        if callback:
            callback(i + 1, iterations)
    a, b = params
    return torch.tensor([1 - a - b, a, b]), torch.tensor(losses)
