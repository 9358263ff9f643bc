"""Every ```python block of README.md and docs/*.md runs as written.

Blocks of one file run in order in one fresh namespace (a later block may use
names an earlier one defined), inside a temporary working directory. A block
preceded by a line ``<!-- skip -->`` is not run; keep those rare. New files in
docs/ are picked up automatically.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SKIP_MARK = "<!-- skip -->"
FENCE = re.compile(r"^```(\S*)\s*$")


def python_blocks(text: str):
    """[(line number, code, skipped)] of every ```python block, in order."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        lang, start = m.group(1), i
        i += 1
        body = []
        while i < len(lines) and not FENCE.match(lines[i]):
            body.append(lines[i])
            i += 1
        if i == len(lines):
            raise AssertionError(f"line {start + 1}: code fence is never closed")
        i += 1
        if lang == "python":
            before = next((ln.strip() for ln in reversed(lines[:start]) if ln.strip()), "")
            blocks.append((start + 1, "\n".join(body) + "\n", before == SKIP_MARK))
    return blocks


def test_block_parser():
    text = "a\n```python\nx = 1\n```\n<!-- skip -->\n\n```python\nraise SystemExit\n```\n```bash\nls\n```\n"
    assert python_blocks(text) == [(2, "x = 1\n", False), (7, "raise SystemExit\n", True)]


def test_docs_exist():
    names = {p.name for p in DOC_FILES}
    for name in ("README.md", "index.md", "quickstart.md", "configuration.md", "model.md", "presets.md",
                 "readouts.md", "fields.md", "troubleshooting.md", "scope.md"):
        assert name in names, name


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.relative_to(ROOT).as_posix() for p in DOC_FILES])
def test_python_blocks_run(path, tmp_path, monkeypatch):
    blocks = python_blocks(path.read_text())
    skipped = sum(skip for _, _, skip in blocks)
    assert skipped <= max(1, len(blocks) // 4), f"{path.name}: too many skipped blocks ({skipped})"
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": f"docs_{path.stem}"}
    try:
        for line, code, skip in blocks:
            if skip:
                continue
            exec(compile(code, f"{path.relative_to(ROOT)}:{line}", "exec"), namespace)
    finally:
        import matplotlib.pyplot as plt
        plt.close("all")


LINK = re.compile(r"\]\(([^)#\s]+)(#[^)]*)?\)")


@pytest.mark.parametrize("path", DOC_FILES, ids=[p.relative_to(ROOT).as_posix() for p in DOC_FILES])
def test_relative_links_resolve(path):
    for target, _ in LINK.findall(path.read_text()):
        if "://" in target or target.startswith("mailto:"):
            continue
        assert (path.parent / target).exists(), f"{path.name} links to missing {target}"


def test_index_links_every_core_page():
    index = (ROOT / "docs" / "index.md").read_text()
    for name in ("quickstart.md", "configuration.md", "model.md", "presets.md", "readouts.md", "fields.md",
                 "troubleshooting.md", "scope.md"):
        assert f"({name})" in index, name


def test_configuration_page_documents_every_parameter():
    """docs/configuration.md has a section per Configuration method whose heading
    lists exactly the method's parameters, and each one (but ensemble's, which
    ensembles.md documents) appears in that section's table."""
    import inspect

    import jaxfne as jtfne

    text = (ROOT / "docs" / "configuration.md").read_text()
    methods = ["runtime", "column", "cell_types", "connectivity", "set_emitter", "drive", "probes", "stimulus",
               "ensemble"]
    public = sorted(name for name, member in vars(jtfne.Configuration).items()
                    if inspect.isfunction(member) and not name.startswith("_")
                    and name not in ("to_dict", "config_hash"))
    assert public == sorted(methods), "a new Configuration method needs a section in docs/configuration.md"
    for method in methods:
        params = [p for p in inspect.signature(getattr(jtfne.Configuration, method)).parameters if p != "self"]
        heading = f"## `{method}({', '.join(params)})`"
        assert heading in text, f"docs/configuration.md needs the heading {heading}"
        if method == "ensemble":
            continue
        section = text.split(heading, 1)[1].split("\n## ", 1)[0]
        for p in params:
            assert f"| `{p}` |" in section, f"docs/configuration.md: {method}({p}=...) is not in its table"
