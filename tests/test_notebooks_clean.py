"""The notebooks are committed clean: no outputs, no execution counts, kernel python3.
(The test command also runs each of them, through nbmake.)"""

from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_six_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == [
        "01-quickstart", "02-guest-pressure", "03-what-if", "04-kernel-versions", "05-host-managers", "06-sweep",
    ]  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stripped_and_uses_python3(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    # no model code of their own: they use balloonsim
    assert all("class " not in c.source for c in code)
    assert any("import balloonsim" in c.source for c in code)
