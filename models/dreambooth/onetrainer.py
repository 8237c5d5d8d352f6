"""OneTrainer: a concepts file (``onetrainer_concepts.json``, the format of ``training_concepts/concepts.json``).

OneTrainer reads a concept folder (non-recursively with "include subdirectories" off, its default), takes every
image but ``*-masklabel.png`` as a photo, ``NAME-masklabel.png`` as its mask (1 channel, white = subject) when
"Masked Training" is on, and the prompt from ``NAME.txt`` (prompt source "sample"). Its "Unmasked Weight" defaults
to 0.1; the PerSAM paper's masked loss is weight 0.
"""

CONCEPT_VERSION = 2  # ConceptConfig's config_version


def concepts(name: str, path: str, repeats: float = 10.0) -> list:
    """One concept on the folder ``path`` (absolute), prompts from the captions beside the photos."""
    return [{
        "__version": CONCEPT_VERSION, "name": name, "path": path, "enabled": True, "type": "STANDARD",
        "include_subdirectories": False, "balancing": repeats, "balancing_strategy": "REPEATS",
        "text": {"prompt_source": "sample"},
    }]
