"""Small API-format graphs the node tests queue (``{id: {"class_type", "inputs"}}``)."""


def load_diception(checkpoint="diception_tiny.pth", dtype="fp32"):
    return {"class_type": "DiceptionLoad", "inputs": {"base_model": "tiny_sd3", "checkpoint": checkpoint, "dtype": dtype}}


def perceive(image_link, task="depth", points="[]", category="none", steps=1, guidance=1.0, seed=0, resolution=64, **optional):
    return {
        "class_type": "DiceptionPerceiveTask",
        "inputs": {
            "model": ["model", 0], "image": image_link, "task": task, "category": category, "points": points,
            "steps": steps, "guidance": guidance, "seed": seed, "resolution": resolution, **optional,
        },
    }


def diception_graph(image_name, batch=1, prefix="dice", **perceive_kw):
    """LoadImage → (RepeatImageBatch) → Load DICEPTION → Perceive Task → SaveImage."""
    graph = {
        "load": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "model": load_diception(),
        "perceive": perceive(["batch", 0] if batch > 1 else ["load", 0], **perceive_kw),
        "save": {"class_type": "SaveImage", "inputs": {"images": ["perceive", 0], "filename_prefix": prefix}},
    }
    if batch > 1:
        graph["batch"] = {"class_type": "RepeatImageBatch", "inputs": {"image": ["load", 0], "amount": batch}}
    return graph
