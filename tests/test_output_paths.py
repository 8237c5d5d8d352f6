"""models/output_paths.py: every output name resolves under the output folder or is refused naming the input."""

import os

import pytest

from models.output_paths import numbered, output_prefix, output_target


def output_folder(root, name):
    """The first free name for a folder ``root/name`` (created empty, as a dataset would be renamed there)."""
    folder = next(numbered(output_target(root, name)))
    folder.mkdir(exist_ok=True)
    return folder


BAD_NAMES = {  # id: (name, what the message says)
    "empty": ("", "names the output folder itself"), "dot": (".", "names the output folder itself"),
    "dot slash dot": ("./.", "names the output folder itself"), "dot slash": ("./", "names the output folder itself"),
    "300 ASCII bytes": ("x" * 300, "255 bytes"), "blank": ("  ", "blank"), "blank component": ("a/ /b", "blank"),
    "absolute": ("/etc/x", "absolute path"), "dot dot": ("../x", "climbs out"), "dot dot deeper": ("a/../../x", "climbs out"),
    "NUL byte": ("a\x00b", "NUL byte"), "256 UTF-8 bytes": ("é" * 128, "256 bytes"), "not UTF-8": ("bad\udcff", "not valid UTF-8"),
    "None": (None, "expected a name"), "path over 4095 bytes": ("/".join(["d" * 240] * 18), "more than the 4095"),
}


@pytest.mark.parametrize("name,message", list(BAD_NAMES.values()), ids=list(BAD_NAMES))
def test_bad_names_are_refused_naming_the_input(tmp_path, name, message):
    with pytest.raises(ValueError, match=f"^folder: .*{message}"):
        output_folder(tmp_path, name)
    with pytest.raises(ValueError, match=f"^filename_prefix: .*{message}"):
        output_prefix(tmp_path, name, 10)
    assert not list(tmp_path.iterdir())


def test_symlinks_out_and_files_in_the_way_are_refused(tmp_path):
    root, outside = tmp_path / "output", tmp_path / "elsewhere"
    root.mkdir(), outside.mkdir()
    (root / "out").symlink_to(outside, target_is_directory=True)
    (root / "inside").symlink_to(root / "real", target_is_directory=True)
    (root / "a_file").write_text("mine")
    with pytest.raises(ValueError, match="folder: 'out/x' leads outside the output folder"):
        output_folder(root, "out/x")
    with pytest.raises(ValueError, match="filename_prefix: 'out/x' leads outside"):
        output_prefix(root, "out/x", 10)
    with pytest.raises(ValueError, match="folder: 'a_file' in the output folder is a file"):
        output_folder(root, "a_file/x")
    assert output_folder(root, "inside/x") == root / "real" / "x"  # a link that stays inside is fine
    assert not list(outside.iterdir()) and (root / "a_file").read_text() == "mine"


def test_taken_folders_are_numbered_and_prefixes_leave_room_for_the_number(tmp_path):
    first = output_folder(tmp_path, "db/dog")
    (first / "keep.txt").write_text("mine")
    assert output_folder(tmp_path, "db/dog") == tmp_path / "db" / "dog_001"
    assert output_folder(tmp_path, "db/empty") == output_folder(tmp_path, "db/empty")  # an empty folder is reused
    (output_folder(tmp_path, "n" * 253) / "x").write_text("x")
    with pytest.raises(ValueError, match="folder: 'n+'… is taken and a numbered name"):
        output_folder(tmp_path, "n" * 253)
    assert output_prefix(tmp_path, "depth/d", 10) == (tmp_path / "depth", "d")
    with pytest.raises(ValueError, match="filename_prefix: 'depth/' ends in a folder"):
        output_prefix(tmp_path, "depth/", 10)
    with pytest.raises(ValueError, match="with its number and extension would be 260 bytes"):
        output_prefix(tmp_path, "p" * 250, 10)
    assert (first / "keep.txt").read_text() == "mine" and os.path.isdir(tmp_path / "depth")
