"""PerSAM-assisted DreamBooth (PerSAM paper, section 3.4): subject masks for the few training photos, so that
the diffusion loss ``L = mean(M↓ ⊙ ‖ε − ε_θ‖²)`` ignores the background; and the dataset folders trainers read."""

from .dataset import RESOLUTIONS, export_dataset
from .masks import feather, fill_holes, grow, latent_loss_mask, training_mask
