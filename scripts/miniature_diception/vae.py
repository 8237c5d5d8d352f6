"""The miniature DICEPTION's VAE: diffusers' ``AutoencoderKL`` with SD3's 16 latent channels and an 8× downsampling,
trained as an autoencoder on crops of the world's images and of the answers it must also carry (``targets.py``).
``train.py vae`` drives the training; this module holds the model, its data and one step."""

import numpy as np
import torch

from scripts.miniature_diception import targets
from scripts.miniature_diception.world import scene

SIZE = 128
VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=16, block_out_channels=[16, 32, 64, 64], layers_per_block=1,
    norm_num_groups=8, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    use_quant_conv=False, use_post_quant_conv=False, sample_size=SIZE,
)
VAE_STEPS, VAE_BATCH, VAE_CROP, VAE_LR, VAE_KL = 1600, 8, 64, 1e-3, 1e-6


def vae_image(seed: int, kind: int) -> np.ndarray:
    """A training image of the VAE: the scene (kind 0, 1) or one of its answers (2: depth, 3: normal, 4: entity, 5: a mask)."""
    s = scene(seed, SIZE)
    if kind <= 1:
        return s.rgb.astype(np.float32) / 255
    if kind == 2:
        return targets.depth_image(s.depth)
    if kind == 3:
        return targets.normal_image(s.normals)
    if kind == 4:
        return targets.entity_image(s)
    return targets.mask_image(s.instance == (1 + seed % max(1, len(s.objects))))


def vae_batch(step: int):
    g = np.random.default_rng(1_000_003 * 7 + step)
    out = []
    for i in range(VAE_BATCH):
        image = vae_image(int(g.integers(0, 500_000)), int(g.integers(0, 6)))
        y, x = (int(v) * 8 for v in g.integers(0, (SIZE - VAE_CROP) // 8 + 1, 2))
        out.append(image[y : y + VAE_CROP, x : x + VAE_CROP])
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2) * 2 - 1


def build_vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(**VAE_CONFIG, scaling_factor=1.0, shift_factor=0.0)


def vae_loss(vae, pixels, generator):
    posterior = vae.encode(pixels).latent_dist
    z = posterior.sample(generator)
    recon = vae.decode(z).sample
    rec = (recon - pixels).abs().mean() + ((recon - pixels) ** 2).mean()
    return rec + VAE_KL * posterior.kl().mean(), rec


def vae_step(step: int, vae, optimiser) -> float:
    """One VAE training step → its reconstruction loss (before the update), rounded as the log keeps it."""
    for group in optimiser.param_groups:
        group["lr"] = VAE_LR * min(1.0, (step + 1) / 50) * (0.1 if step >= 0.8 * VAE_STEPS else 1.0)
    loss, rec = vae_loss(vae, vae_batch(step), torch.Generator().manual_seed(step))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
    optimiser.step()
    return round(rec.item(), 6)


def vae_optimiser(vae):
    return torch.optim.AdamW(vae.parameters(), lr=VAE_LR, weight_decay=0.0)


def full_images(seeds, kind):
    return torch.from_numpy(np.stack([vae_image(s, kind) for s in seeds])).permute(0, 3, 1, 2) * 2 - 1
