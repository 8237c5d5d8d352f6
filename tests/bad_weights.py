"""Bad weight files of every kind a user (or a broken download) produces, for the loaders' tests."""

import os
import pickle
import random

import torch
import zipfile
from safetensors.torch import save_file

TENSORS = {"a": torch.zeros(3)}


class Payload:
    """Would create a folder if it were ever unpickled."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def write_bad(path, kind):
    """Write a bad file of ``kind`` at ``path``."""
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "zeros":
        path.write_bytes(b"\x00" * 64)
    elif kind == "html":
        path.write_bytes(b"<!DOCTYPE html><html><body>Rate limited</body></html>")
    elif kind == "lfs":
        path.write_bytes(b"version https://git-lfs.github.com/spec/v1\noid sha256:0\nsize 9\n")
    elif kind == "random":
        path.write_bytes(random.Random(0).randbytes(4096))
    elif kind == "plain pickle":
        path.write_bytes(pickle.dumps(TENSORS))
    elif kind == "safetensors":
        save_file(TENSORS, str(path))
    elif kind == "torch":
        torch.save(TENSORS, path)
    elif kind == "truncated torch":
        torch.save({"a": torch.zeros(1000)}, path)
        path.write_bytes(path.read_bytes()[:2000])
    elif kind == "truncated safetensors":
        save_file({"a": torch.zeros(1000)}, str(path))
        path.write_bytes(path.read_bytes()[:-100])
    elif kind == "other zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("notes.txt", "hello")
    else:
        raise ValueError(f"no bad file of kind {kind!r}")
