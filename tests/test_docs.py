"""The README and docs/ pages: the README stays a short page for users that links every docs page, its node table
is one rendered table naming every registered node, every table renders (header row, then separator row), and
every relative link and picture resolves, anchors included. Plain file reads, no ComfyUI, no server."""

import ast
import re
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
MAX_README_LINES = 250


def _prose(text):
    """Markdown without fenced code blocks and inline code spans (links there are not links)."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def _targets(text):
    """Link and picture targets: [text](target), ![alt](target) and <img src="target">."""
    prose = _prose(text)
    found = re.findall(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)", prose)
    found += re.findall(r"""<img\b[^>]*\bsrc=["']([^"']+)["']""", prose)
    return found


def _slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    heading = re.sub(r"`", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", heading).replace(" ", "-")


def _anchors(path):
    return {_slug(m) for m in re.findall(r"^#{1,6}\s+(.+?)\s*#*\s*$", _prose(path.read_text(encoding="utf-8")), re.M)}


def _tables(text):
    """Blocks of consecutive lines starting with '|' (outside code), as lists of rows of stripped cells."""
    blocks, current = [], []
    for line in _strip_fences(text).split("\n"):
        if line.lstrip().startswith("|"):
            current.append([c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:].removesuffix("|"))])
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _strip_fences(text):
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def _registered_display_names():
    """Display names of every node class the pack registers, read from nodes/*.py without importing them."""
    names = {}
    for module in sorted((ROOT / "nodes").glob("*.py")):
        classes, display = set(), {}
        for node in ast.parse(module.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict):
                target = [t.id for t in node.targets if isinstance(t, ast.Name)]
                if target == ["NODE_CLASS_MAPPINGS"]:
                    classes = {k.value for k in node.value.keys}
                elif target == ["NODE_DISPLAY_NAME_MAPPINGS"]:
                    display = ast.literal_eval(node.value)
        for key in classes:
            names[key] = display.get(key, key)
    return names


def test_readme_is_short_and_links_every_docs_page():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_README_LINES, f"README.md has {len(text.splitlines())} lines"
    linked = {urllib.parse.unquote(t.split("#")[0]) for t in _targets(text)}
    missing = [f"docs/{p.name}" for p in DOCS if f"docs/{p.name}" not in linked]
    assert not missing, f"README.md does not link {missing}"


def test_readme_node_table_names_every_registered_node_once():
    names = _registered_display_names()
    assert len(names) >= 16, names  # the parse found the node modules
    node_tables = [t for t in _tables(README.read_text(encoding="utf-8")) if t[0][0] == "node"]
    assert len(node_tables) == 1, f"expected one node table, found {len(node_tables)}"
    rows = [row[0] for row in node_tables[0][2:]]
    assert sorted(rows) == sorted(names.values()), (sorted(rows), sorted(names.values()))


def test_every_table_renders():
    """A table renders only when its first row is a header followed by a |---| separator of as many columns;
    a blank line inside a table starts a headerless block that shows as text."""
    for page in PAGES:
        for block in _tables(page.read_text(encoding="utf-8")):
            where = f"{page.relative_to(ROOT)}: table starting '| {' | '.join(block[0])[:60]}'"
            assert len(block) >= 2 and all(re.fullmatch(r":?-{3,}:?", c) for c in block[1]), f"{where} has no separator row"
            assert all(len(row) == len(block[0]) for row in block), f"{where} has rows of another width"


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        for target in _targets(page.read_text(encoding="utf-8")):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
                continue
            path, _, anchor = urllib.parse.unquote(target).partition("#")
            file = (page.parent / path).resolve() if path else page
            if not file.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such file)")
            elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no heading with that anchor)")
    assert not broken, "\n".join(broken)


def test_registry_metadata_is_complete_and_its_icon_is_in_the_repository():
    """[tool.comfy] as the Comfy Registry reads it: publisher, display name, and an Icon URL that names a file of this
    repository (the Repository URL's raw files on its main branch): a square PNG of at most 400 px."""
    import tomllib

    from PIL import Image

    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    comfy, project = data["tool"]["comfy"], data["project"]
    assert re.fullmatch(r"[a-z][a-z0-9-]*", comfy["PublisherId"]), comfy["PublisherId"]
    assert comfy["DisplayName"].strip() and project["version"] and project["urls"]["Repository"]
    owner_repo = urllib.parse.urlparse(project["urls"]["Repository"]).path.strip("/")
    prefix = f"https://raw.githubusercontent.com/{owner_repo}/main/"
    assert comfy["Icon"].startswith(prefix), (comfy["Icon"], prefix)
    with Image.open(ROOT / comfy["Icon"][len(prefix):]) as icon:
        assert icon.format == "PNG" and icon.width == icon.height <= 400, (icon.format, icon.size)
