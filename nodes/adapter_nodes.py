"""ComfyUI nodes that teach DICEPTION a new task: Load DICEPTION Examples, Train / Save / Load DICEPTION Adapter."""

import logging
import os
import re
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import folder_paths

from ..models.diception.adapter import DEFAULT_PRESET, DEFAULT_RANK, MAX_RANK, MAX_STEPS, PRESET_SHARE_SD3_MEDIUM, TARGET_PRESETS
from ..models.diception.adapter_examples import image_files, read_image
from ..models.diception.adapter_file import check_file_name, load_adapter, save_adapter
from ..models.output_paths import check_name, contained
from . import comfy_adapter
from .diception_nodes import DiceptionModel

BUILT_IN_SETS = Path(__file__).resolve().parent.parent / "workflows" / "images"  # e.g. diception_examples/red_objects
ADAPTER_FOLDER = ("loras", "diception")  # under the output folder, as core's Save LoRA writes into output
NO_RESUME = "none"
log = logging.getLogger(__name__)


class LoadDiceptionExamples:
    DESCRIPTION = (
        "Example pairs for teaching DICEPTION a new task, from a folder under ComfyUI's input folder: images/ holds the "
        "example images, targets/ the answers, paired by file name (a.png ↔ a.png or a.jpg), in sorted name order. "
        "Sizes may differ between pairs; a target must have its image's aspect ratio. The pack's built-in example set "
        "diception_examples/red_objects is found when no such folder is in the input folder."
    )
    CATEGORY = "DICEPTION/adapters"
    FUNCTION = "load"
    RETURN_TYPES = ("DICEPTION_EXAMPLES", "INT")
    RETURN_NAMES = ("examples", "count")
    OUTPUT_TOOLTIPS = ("the (image, target) pairs, for Train DICEPTION Adapter", "how many pairs")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"folder": ("STRING", {"default": "diception_examples/red_objects", "tooltip": "a folder under ComfyUI's input folder with images/ and targets/ (or a built-in example set)"})}}

    def load(self, folder):
        example = "diception_examples/red_objects"
        parts = check_name(folder, "folder", example, "input folder")
        for root in (Path(os.path.realpath(folder_paths.get_input_directory())), BUILT_IN_SETS):
            where = contained(root, root.joinpath(*parts), folder, "folder", example, "input folder")
            if where.is_dir():
                break
        else:
            raise ValueError(f"folder: {folder!r} is not a folder under the input folder {folder_paths.get_input_directory()} "
                             f"(nor a built-in example set such as {example!r})")
        images, targets = image_files(where / "images", "images"), image_files(where / "targets", "targets")
        for stem in images:
            if stem not in targets:
                raise ValueError(f"folder: images/{images[stem]} has no target: expected targets/{stem}.png (or another image type)")
        for stem in targets:
            if stem not in images:
                raise ValueError(f"folder: targets/{targets[stem]} has no image: expected images/{stem}.png (or another image type)")
        if not images:
            raise ValueError(f"folder: {folder!r} has no example images in images/; expected pairs images/NAME.png + targets/NAME.png")
        pairs = [(stem, read_image(where / "images" / images[stem]), read_image(where / "targets" / targets[stem])) for stem in images]
        return (pairs, len(pairs))


def loss_curve(losses) -> torch.Tensor:
    """The loss of every step as a 512×256 line plot (an IMAGE), as core's Plot Loss Graph draws it."""
    from PIL import ImageDraw

    width, height, margin = 512, 256, 20
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    low, high = min(losses), max(losses)
    span = (high - low) or 1.0
    points = [
        (margin + i * (width - 2 * margin) / max(1, len(losses) - 1), height - margin - (v - low) * (height - 2 * margin) / span)
        for i, v in enumerate(losses)
    ]
    draw.line([(margin, margin), (margin, height - margin), (width - margin, height - margin)], fill="black")
    if len(points) > 1:
        draw.line(points, fill="blue", width=2)
    draw.text((margin + 4, 4), f"loss {losses[0]:.4f} → {losses[-1]:.4f} ({len(losses)} steps)", fill="black")
    return torch.from_numpy(np.asarray(image, dtype=np.float32) / 255)[None]


class TrainDiceptionAdapter:
    DESCRIPTION = (
        "Teaches DICEPTION a new task from example pairs (the paper: about 50) with a low-rank adapter (by default rank "
        "8 on the attention projections, the feed-forward layers and the adaLN modulation = 0.72 % of SD3-medium). Returns a model that "
        "answers the new task (Perceive Task: type its name into task_name) and every built-in task exactly as before; the loaded model itself is not changed. Targets of another size than "
        "their image are resized when the aspect ratio is the same, refused otherwise."
    )
    CATEGORY = "DICEPTION/adapters"
    FUNCTION = "train"
    RETURN_TYPES = ("DICEPTION_MODEL", "DICEPTION_ADAPTER", "IMAGE")
    RETURN_NAMES = ("model", "adapter", "loss_curve")
    OUTPUT_TOOLTIPS = ("DICEPTION with the new task's adapter (built-in tasks unchanged)", "the adapter, for Save DICEPTION Adapter", "the training loss of every step")

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("DICEPTION_MODEL", {"tooltip": "from Load DICEPTION"}),
                "task_name": ("STRING", {"default": "highlight", "tooltip": "the new task's name, chosen in Perceive Task's task_name"}),
                "prompt": ("STRING", {"default": "[[image2highlight]]", "tooltip": "the new task's prompt (free text), encoded once through the prompt cache"}),
                "steps": ("INT", {"default": 300, "min": 1, "max": MAX_STEPS, "tooltip": "training steps (one batch each)"}),
                "learning_rate": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 1e-5, "tooltip": "AdamW learning rate; 0 = chosen for the model's width: 1e-4 on SD3-medium (diffusers' SD3 LoRA rate), 1.2e-3 on the miniature (the rate used is printed when training starts)"}),
                "rank": ("INT", {"default": DEFAULT_RANK, "min": 1, "max": MAX_RANK, "tooltip": f"adapter rank: {DEFAULT_RANK} with the default target = {PRESET_SHARE_SD3_MEDIUM[DEFAULT_PRESET]} of SD3-medium's transformer"}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64, "tooltip": "example pairs per step"}),
                "resolution": ("INT", {"default": 768, "min": 16, "max": 2048, "step": 16, "tooltip": "examples are resized to resolution x resolution (DICEPTION works at 768)"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF, "tooltip": "same seed and device: the same adapter"}),
            },
            "optional": {
                "examples": ("DICEPTION_EXAMPLES", {"tooltip": "from Load DICEPTION Examples (or give images and targets)"}),
                "images": ("IMAGE", {"tooltip": "example images (a batch), with targets"}),
                "targets": ("IMAGE", {"tooltip": "the target answers, one per image, in the same order"}),
                "gradient_checkpointing": ("BOOLEAN", {"default": True, "tooltip": "recompute each block in the backward pass: much less memory, about a third slower"}),
                "target": (list(TARGET_PRESETS), {"default": DEFAULT_PRESET, "tooltip": "which layers the adapter trains: "
                           + "; ".join(f"{k}: {v} of SD3-medium at rank {DEFAULT_RANK}" for k, v in PRESET_SHARE_SD3_MEDIUM.items())
                           + " (the share for this model and rank is printed when training starts)"}),
                "resume_from": ([NO_RESUME] + adapter_files(), {"default": NO_RESUME, "tooltip": "continue training a saved adapter (or a checkpoint of an interrupted run); rank and target must be its own"}),
                "checkpoint_every": ("INT", {"default": 500, "min": 0, "max": MAX_STEPS, "tooltip": "save the adapter so far every N steps to output/loras/diception/TASK_checkpoint_…, crash-safe (0: never); an interrupt or crash loses at most N steps: continue with resume_from"}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def train(self, model, task_name, prompt, steps, learning_rate, rank, batch_size, resolution, seed,
              examples=None, images=None, targets=None, gradient_checkpointing=True, target=DEFAULT_PRESET,
              resume_from=NO_RESUME, checkpoint_every=500, unique_id=None):
        if examples is not None:
            pairs_images, pairs_targets = [p[1] for p in examples], [p[2] for p in examples]
        elif images is not None or targets is not None:
            if images is None or targets is None:
                raise ValueError("images, targets: give both the example images and their targets (or connect examples)")
            pairs_images, pairs_targets = list(images), list(targets)
        else:
            raise ValueError("examples: no examples; connect Load DICEPTION Examples, or images and targets")
        from ..models.diception.finetune import TrainingSettings, auto_learning_rate, train_adapter  # diffusers: loaded on first use

        if target not in TARGET_PRESETS:
            raise ValueError(f"target: expected one of {list(TARGET_PRESETS)}, got {target!r}")
        settings = TrainingSettings(steps=steps, learning_rate=learning_rate, rank=rank, batch_size=batch_size,
                                    resolution=resolution, seed=seed, checkpointing=gradient_checkpointing,
                                    targets=TARGET_PRESETS[target], checkpoint_every=checkpoint_every)
        resume = None
        if resume_from != NO_RESUME:
            resume = load_adapter(find_adapter(resume_from), model.pipeline.base_transformer, task_name)
        share = trainable_share(model.pipeline.base_transformer, rank, TARGET_PRESETS[target])
        rate = learning_rate or auto_learning_rate(model.pipeline.base_transformer)
        report = LossReport(steps, unique_id, f"{target}, rank {rank}: {share:.2%} of the transformer's parameters; "
                            f"learning rate {rate:.2g}{'' if learning_rate else ' (for its width)'}")
        saver = CheckpointSaver(task_name)
        host = model.pipeline.host  # ComfyUI's progress bar and interrupt

        def step(done, total, loss):
            report(done, loss)
            host.progress(done, total)

        pipeline, adapter, losses = train_adapter(
            model.pipeline, pairs_images, pairs_targets, task_name.strip(), prompt, settings,
            callback=step, resume=resume, checkpoint=saver,
        )
        saver.finished()
        return (DiceptionModel(pipeline), adapter, loss_curve(losses))


def trainable_share(transformer, rank, targets) -> float:
    from ..models.diception.adapter import lora_parameter_count

    total = sum(p.numel() for n, p in transformer.named_parameters() if ".lora_" not in n)
    return lora_parameter_count(transformer, rank, targets) / total


class LossReport:
    """The loss while training runs: a console line every ~5 % of the steps, and the node's progress text where the
    server can show it (ComfyUI v0.8.0's send_progress_text)."""

    def __init__(self, steps: int, node_id, what: str):
        self.steps, self.node_id, self.every = steps, node_id, max(1, steps // 20)
        self.recent = []
        self.say(f"Train DICEPTION Adapter: {steps} steps on {what}")

    def say(self, text: str) -> None:
        log.info(text)
        comfy_adapter.progress_text(text, self.node_id)

    def __call__(self, done: int, loss: float) -> None:
        self.recent.append(loss)
        if done % self.every == 0 or done == self.steps:
            mean = sum(self.recent) / len(self.recent)
            self.say(f"Train DICEPTION Adapter: step {done}/{self.steps}, loss {loss:.4f} (mean of the last {len(self.recent)}: {mean:.4f})")
            self.recent = []


class CheckpointSaver:
    """Saves the adapter so far as output/loras/diception/TASK_checkpoint_NNNNN.safetensors (crash-safe, as every
    adapter file), and removes the run's previous checkpoint once the new one is complete; the last one is removed when
    the run finishes (the adapter itself is then saved by Save DICEPTION Adapter)."""

    def __init__(self, task: str):
        self.name = (re.sub(r"[^\w\-]+", "_", task).strip("_.")[:100] or "adapter") + "_checkpoint"
        self.last = None

    def __call__(self, adapter) -> None:
        root = Path(os.path.realpath(folder_paths.get_output_directory()))
        folder = contained(root, root.joinpath(*ADAPTER_FOLDER), "/".join(ADAPTER_FOLDER), "checkpoint_every", "500")
        path = save_adapter(adapter, folder, self.name, "checkpoint_every")
        log.info("Train DICEPTION Adapter: checkpoint after %s steps: %s", adapter.settings.get("steps_done"), path)
        self.finished()
        self.last = path

    def finished(self) -> None:
        if self.last is not None:
            self.last.unlink(missing_ok=True)
            self.last = None


def output_adapter_folder() -> str:
    return os.path.join(folder_paths.get_output_directory(), *ADAPTER_FOLDER)


class SaveDiceptionAdapter:
    DESCRIPTION = (
        "Saves a trained adapter to output/loras/diception/NAME_00001.safetensors (the next free number; never "
        "overwrites) in diffusers' SD3 LoRA format with the task prompt and training settings as metadata."
    )
    CATEGORY = "DICEPTION/adapters"
    FUNCTION = "save"
    OUTPUT_NODE = True
    RETURN_TYPES = ("STRING",)
    RETURN_NAMES = ("path",)
    OUTPUT_TOOLTIPS = ("where the adapter was written, relative to the output folder (also shown on the node)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "adapter": ("DICEPTION_ADAPTER", {"tooltip": "from Train DICEPTION Adapter"}),
                "name": ("STRING", {"default": "highlight", "tooltip": "file name (no folders); a number is appended"}),
            }
        }

    def save(self, adapter, name):
        name = name.strip()
        if len(check_name(name, "name", "highlight")) != 1:
            raise ValueError(f"name: expected a plain file name such as 'highlight' (no folders), got {name!r}")
        check_file_name(name)
        root = Path(os.path.realpath(folder_paths.get_output_directory()))
        # output/loras may be a symbolic link: the adapter is written only if its folder stays inside the output folder
        folder = contained(root, root.joinpath(*ADAPTER_FOLDER), "/".join(ADAPTER_FOLDER), "name", "highlight")
        path = save_adapter(adapter, folder, name)
        written = path.relative_to(root).as_posix()
        return {"ui": {"text": [written]}, "result": (written,)}


def adapter_files() -> list:
    """Adapter files from ComfyUI's LoRA folders, and those of output/loras/diception it does not list already
    (ComfyUI v0.8.0 adds output/loras to its LoRA folders; older builds do not), prefixed ``output/``."""
    found = [f for f in folder_paths.get_filename_list("loras") if f.lower().endswith(".safetensors")]
    folder = output_adapter_folder()
    if os.path.isdir(folder):
        listed = {os.path.realpath(p) for p in (folder_paths.get_full_path("loras", f) for f in found) if p}
        found += ["output/" + f for f in sorted(os.listdir(folder)) if f.endswith(".safetensors") and not f.startswith(".")
                  and os.path.realpath(os.path.join(folder, f)) not in listed]
    return found


def find_adapter(choice: str) -> str:
    if choice.startswith("output/"):
        path = os.path.join(output_adapter_folder(), choice[len("output/"):])
    else:
        path = folder_paths.get_full_path("loras", choice)
    if not path or not os.path.isfile(path):
        raise ValueError(f"adapter: {choice!r} is not in models/loras or output/loras/diception")
    return path


class LoadDiceptionAdapter:
    DESCRIPTION = (
        "Adds a saved DICEPTION adapter (from models/loras or output/loras/diception) to a model: Perceive Task then "
        "answers its task (task_name) too, built-in tasks unchanged. Refuses LoRAs for other models or layouts."
    )
    CATEGORY = "DICEPTION/adapters"
    FUNCTION = "load"
    RETURN_TYPES = ("DICEPTION_MODEL",)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("DICEPTION with the adapter's task added",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("DICEPTION_MODEL", {"tooltip": "from Load DICEPTION (or another Load / Train DICEPTION Adapter)"}),
                "adapter": (adapter_files(), {"tooltip": "an adapter saved by Save DICEPTION Adapter"}),
                "strength": ("FLOAT", {"default": 1.0, "min": -4.0, "max": 4.0, "step": 0.05, "tooltip": "scale of the adapter (1 = as trained)"}),
            },
            "optional": {
                "task_name": ("STRING", {"default": "", "tooltip": "name of its task in Perceive Task; empty: the name it was trained with"}),
            },
        }

    def load(self, model, adapter, strength, task_name=""):
        pipeline = model.pipeline
        loaded = load_adapter(find_adapter(adapter), pipeline.base_transformer, task_name).with_strength(strength)
        others = [a for _, a in pipeline.adapters.values() if a.task != loaded.task]
        return (DiceptionModel(pipeline.with_adapters(others + [loaded])),)


NODE_CLASS_MAPPINGS = {
    "DiceptionLoadExamples": LoadDiceptionExamples,
    "DiceptionTrainAdapter": TrainDiceptionAdapter,
    "DiceptionSaveAdapter": SaveDiceptionAdapter,
    "DiceptionLoadAdapter": LoadDiceptionAdapter,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "DiceptionLoadExamples": "Load DICEPTION Examples",
    "DiceptionTrainAdapter": "Train DICEPTION Adapter",
    "DiceptionSaveAdapter": "Save DICEPTION Adapter",
    "DiceptionLoadAdapter": "Load DICEPTION Adapter",
}
