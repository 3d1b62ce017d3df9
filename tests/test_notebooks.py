"""Notebooks: committed without outputs, and each runs end to end with FAST = True.

Each notebook runs in a real kernel through nbclient, with a cell injected
after its "parameters" cell (papermill's convention) that sets FAST = True and
points it at a copy of its competition in a temporary folder.
"""

import re
import shutil

import nbformat
import pytest

from tests.conftest import REPO, prepare_module

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
# Generated competitions get a smaller replica from their own `generate`, which
# their `prepare` keeps: FAST checks that the notebook runs, not its score.
SMALL_DATA = {
    "shapes-seg": {"train": 400, "test": 40},
    "shapes-det": {"train": 200, "test": 40},
    "shapes-captions": {"train": 400, "test": 60},
    "text-normalization": {"train": 300, "test": 30},
}


def _read(path):
    return nbformat.read(path, as_version=4)


def _parameters_index(notebook):
    tagged = [i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, "one cell tagged 'parameters'"
    return tagged[0]


def test_there_is_a_template_and_a_notebook_per_finished_family():
    names = [p.stem for p in NOTEBOOKS]
    assert names[0] == "00_exam_template"
    families = ("classification", "segmentation", "detection", "retrieval", "generation", "seq2seq")
    for family in families:
        assert any(name.endswith(family) for name in names), family


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_carries_no_outputs(path):
    for number, cell in enumerate(_read(path).cells):
        if cell.cell_type == "code":
            assert not cell.outputs, f"{path.name}: cell {number} has outputs; strip them"
            assert cell.execution_count is None, f"{path.name}: cell {number} was executed"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end_with_fast(path, tmp_path):
    nbclient = pytest.importorskip("nbclient")
    notebook = _read(path)
    index = _parameters_index(notebook)
    source = notebook.cells[index].source
    assert re.search(r"^FAST = False\b", source, re.M), "FAST = False in the parameters cell"
    slug = re.search(r'COMPETITION = "\.\./competitions/([\w-]+)"', source).group(1)
    competition = tmp_path / "competitions" / slug
    shutil.copytree(
        REPO / "competitions" / slug, competition, ignore=shutil.ignore_patterns("data")
    )
    if slug in SMALL_DATA:
        prepare_module(slug).generate(competition / "data", **SMALL_DATA[slug])
    runs = tmp_path / "runs"
    injected = nbformat.v4.new_code_cell(
        f"FAST = True\nCOMPETITION = {str(competition)!r}\nRUNS = {str(runs)!r}"
    )
    injected.metadata["tags"] = ["injected-parameters"]
    notebook.cells.insert(index + 1, injected)
    client = nbclient.NotebookClient(
        notebook, timeout=900, kernel_name="python3", resources={"metadata": {"path": tmp_path}}
    )
    client.execute()  # any cell's error fails the test, with the cell and its traceback
    # several: a label-fraction grid's runs; images.zip: a generation competition's
    submissions = [*runs.rglob("submission.csv"), *runs.rglob("images.zip")]
    assert submissions and all(path.stat().st_size > 0 for path in submissions)
