"""OneTrainer: a concepts file (``onetrainer_concepts.json``, the format of ``training_concepts/concepts.json``) and a
training preset (``onetrainer_preset.json``, the format of ``training_presets/*.json``: a partial TrainConfig).

OneTrainer reads a concept folder (non-recursively with "include subdirectories" off, its default), takes every
image but ``*-masklabel.png`` as a photo, ``NAME-masklabel.png`` as its mask (1 channel, white = subject) when
"Masked Training" is on, and the prompt from ``NAME.txt`` (prompt source "sample"). A concept's ``balancing`` with
strategy ``REPEATS`` shows each photo that many times per epoch (mgds VariationSorting: ``floor(len × balancing)``
samples); ``SAMPLES`` takes that many samples per epoch whatever the folder holds.

Masked training lives in the training config, not the concepts file, and is off by default: the preset switches it
on with ``unmasked_weight`` 0 (OneTrainer's default 0.1 still trains 10 % of the background; the PerSAM paper's masked
loss is weight 0) and ``unmasked_probability`` 0 (its default 0.1 trains one step in ten on the whole picture).
A photo without a mask file gets a mask of ones (GenerateImageLike before LoadImage), so class images need none.

Class images are a second STANDARD concept with the class prompt, ``SAMPLES`` balancing of as many samples per
epoch as the photos get (the prior-preservation loss of DreamBooth, as kohya's ``is_reg``), its loss weighted by the
concept's ``loss_weight``.
"""

CONCEPT_VERSION = 2  # ConceptConfig's config_version
TRAIN_CONFIG_VERSION = 11  # TrainConfig's config_version: the preset is written in this format (no migration runs)
UNMASKED_WEIGHT = 0.0
UNMASKED_PROBABILITY = 0.0


def concept(name: str, path: str, balancing: float, strategy: str = "REPEATS", loss_weight: float = 1.0) -> dict:
    return {
        "__version": CONCEPT_VERSION, "name": name, "path": path, "enabled": True, "type": "STANDARD",
        "include_subdirectories": False, "balancing": balancing, "balancing_strategy": strategy,
        "loss_weight": loss_weight, "text": {"prompt_source": "sample"},
    }


def concepts(name: str, path: str, repeats: float = 10.0, class_path: str = None, class_samples: int = 0,
             prior_loss_weight: float = 1.0) -> list:
    """The subject's concept on the folder ``path`` (absolute), prompts from the captions beside the photos; and the
    class images' concept on ``class_path`` with ``class_samples`` samples per epoch, when given."""
    found = [concept(name, path, float(repeats))]
    if class_path:
        found.append(concept(f"{name} (class images)", class_path, float(class_samples), "SAMPLES", float(prior_loss_weight)))
    return found


def training_preset(concepts_file: str, resolution: int) -> dict:
    """The training settings the dataset needs, in OneTrainer's TrainConfig format: masked training on, the
    concepts file, the resolution. Everything else (model, method, optimizer) keeps OneTrainer's defaults or the
    model preset it is applied on top of (scripts/train.py ``--preset-path``, then this as ``--config-path``)."""
    return {
        "__version": TRAIN_CONFIG_VERSION,
        "concept_file_name": concepts_file,
        "resolution": str(resolution),
        "masked_training": True,
        "unmasked_weight": UNMASKED_WEIGHT,
        "unmasked_probability": UNMASKED_PROBABILITY,
    }
