"""The report (analysis.report) as a folder and in the notebook, where both look for things (analysis.paths), and
the analysis commands on records train.py really wrote."""

from __future__ import annotations

import io
import os
import re
import shutil
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
from IPython.core.inputtransformer2 import TransformerManager

from analysis import figures, paths, plan, plots, report, runs, summarize
from audiosweep.results import save_predictions, write_json_atomic
from tests.analysis_records import is_png, write_final_study, write_run, write_study
from tests.conftest import REPO, TINY

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")
NOTEBOOK = REPO / "analysis" / "report.ipynb"


def images(page: Path) -> list[str]:
    return [line[line.index("(") + 1:-1] for line in page.read_text().splitlines() if line.startswith("![")]


def test_report_script(tmp_path, capsys):
    final_study = write_final_study(tmp_path)
    study = write_study(tmp_path)
    out = tmp_path / "report"
    assert report.main([str(final_study), "--out", str(out)]) == 0
    page = Path(capsys.readouterr().out.strip())
    text = page.read_text()
    assert page == out / "report.md" and "## Per fold" in text and "| mean of fold means |" in text
    assert "79.50 ± 7.78" in text and "## All runs" in text  # no parameter varies but the fold
    assert images(page) == ["curves_final.png", "folds_final.png", "confusion_f1-t2_final.png"]
    assert all(is_png(out / name) for name in images(page))

    assert report.main([str(study), "--out", str(tmp_path / "r2")]) == 0
    text = (tmp_path / "r2" / "report.md").read_text()
    assert "## n_mels" in text and "82.00 ± 2.00" in text and "## Per fold" not in text
    assert "> warning: 1 of 6 runs left out" in text and "![accuracy by n_mels](accuracy_by_n_mels_nmels.png)" in text
    assert pd.read_csv(tmp_path / "r2" / "accuracy_by_n_mels.csv").accuracy_mean.tolist() == pytest.approx([.82, .72])


def test_report_follows_the_plan(tmp_path):
    final_study = write_final_study(tmp_path)
    df = runs.load_runs(str(final_study))
    page = report.build_report(df, tmp_path, ["arch"], run_id="f2-t1")
    titles = [line[3:] for line in page.read_text().splitlines() if line.startswith("## ")]
    sections = plan.sections(df, ["arch"], run_id="f2-t1")
    assert titles == [s.title for s in sections] == ["arch", "Per fold", "Confusion matrix"]
    assert images(page) == [f"{f.name}.png" for s in sections for f in s.figures]
    assert {p.name for p in tmp_path.glob("*.csv")} == {"accuracy_by_arch.csv", "folds.csv",
                                                      "confused_pairs_f2-t1.csv"}


def test_report_default_folder_is_under_reports(tmp_path, monkeypatch, capsys):
    study = write_study(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert report.main([str(study)]) == 0
    assert Path(capsys.readouterr().out.strip()) == Path("reports") / "nmels" / "report.md"
    assert (tmp_path / "reports" / "nmels" / "accuracy_by_n_mels_nmels.png").is_file()
    assert report.main([str(study.parent), "--sweep", "nmels"]) == 0
    assert Path(capsys.readouterr().out.strip()) == Path("reports") / "nmels" / "report.md"
    assert paths.report_dir("wandb:me/esc50") == Path("reports/esc50")
    assert paths.report_dir("wandb:me/esc50", "me/esc50/abc123") == Path("reports/abc123")


def test_notebook_paths_resolve_against_the_repository(monkeypatch, tmp_path):
    monkeypatch.delenv(paths.SOURCE_VARIABLE, raising=False)
    monkeypatch.chdir(tmp_path)
    assert paths.REPO == REPO
    assert paths.notebook_source() == str(REPO / "results")
    assert paths.notebook_source("results/smoke") == str(REPO / "results" / "smoke")
    monkeypatch.setenv(paths.SOURCE_VARIABLE, "results/final")
    assert paths.notebook_source() == str(REPO / "results" / "final")
    assert paths.notebook_source(str(tmp_path)) == str(tmp_path)  # the notebook's SOURCE wins
    monkeypatch.setenv(paths.SOURCE_VARIABLE, "wandb:me/esc50")
    assert paths.notebook_source() == "wandb:me/esc50"
    assert paths.from_repo("reports/notebook") == REPO / "reports" / "notebook"
    assert paths.from_repo(tmp_path) == tmp_path


@pytest.fixture
def repo_records():
    """A folder of records under the repository root (in git-ignored results/, hidden from other analyses),
    given to the notebook by a path relative to the root."""
    folder = Path("results") / f".test-notebook-{os.getpid()}"
    write_final_study(REPO / folder)
    yield folder
    shutil.rmtree(REPO / folder)


@pytest.mark.slow
def test_notebook_is_valid_and_runs_from_its_folder(repo_records, tmp_path, monkeypatch):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.outputs and c.execution_count is None for c in code), "clear the notebook's outputs"
    for cell in code:
        compile(TransformerManager().transform_cell(cell.source), str(NOTEBOOK), "exec")
    from nbclient import NotebookClient

    params = next(c for c in code if "parameters" in c.metadata.get("tags", []))
    assert "SOURCE = None" in params.source and 'OUT = "reports/notebook"' in params.source
    params.source = params.source.replace('OUT = "reports/notebook"', f"OUT = {str(tmp_path / 'nb')!r}")
    monkeypatch.setenv(paths.SOURCE_VARIABLE, str(repo_records))  # relative to the repo, not to analysis/
    NotebookClient(nb, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(REPO / "analysis")}}).execute()  # as Jupyter starts it
    out = tmp_path / "nb"
    assert is_png(out / "folds_final.png") and images(out / "report.md") == [
        "curves_final.png", "folds_final.png", "confusion_f1-t2_final.png"]
    shown = [o for c in code for o in c.outputs if "image/png" in o.get("data", {})]
    assert len(shown) == 3  # curves, folds, confusion matrix
    markdown = "\n".join(o["data"]["text/markdown"] for c in code for o in c.outputs
                         if "text/markdown" in o.get("data", {}))
    assert f"# Results: {REPO / repo_records}" in markdown and "| mean of fold means |" in markdown
    assert "## Confusion matrix" in markdown and "![" not in markdown  # images shown, not linked
    assert not streams(code)  # no warning (tqdm's "IProgress not found" among them), no traceback


def streams(cells) -> str:
    """What the notebook's cells printed (stdout and stderr), errors included."""
    return "".join(o.get("text", "") + "".join(o.get("traceback", [])) for c in cells for o in c.outputs
                   if o.output_type in ("stream", "error"))


def test_notebook_on_an_empty_folder_says_so_in_one_line(tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace("SOURCE = None", f"SOURCE = {str(tmp_path)!r}")
    params.source = params.source.replace('OUT = "reports/notebook"', f"OUT = {str(tmp_path / 'nb')!r}")
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()  # no CellExecutionError: the cells skip
    printed = streams(c for c in nb.cells if c.cell_type == "code")
    assert printed.startswith(f"report: no result records under {tmp_path} ") and printed.count("\n") == 1
    assert not (tmp_path / "nb").exists()


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synth_root, cache_dir) -> Path:
    """Records train.py really wrote: n_mels 32 and 40, 2 epochs each, in sweep folder 'tiny'."""
    import train

    out = tmp_path_factory.mktemp("trained") / "tiny"
    for n_mels in (32, 40):
        argv = ["--data_dir", str(synth_root), "--allow_missing", "true", "--esc10", "true", "--cache_dir",
                str(cache_dir), "--results_dir", str(out), *TINY, "--n_mels", str(n_mels), "--n_epochs", "2"]
        assert train.main(argv) == 0
    return out


@pytest.mark.slow
def test_records_written_by_train_py(trained, tmp_path, capsys):
    df = runs.load_runs(str(trained))
    assert list(df.columns) == runs.COLUMNS and sorted(df.n_mels) == [32, 40]
    assert (df.status == "finished").all() and df.sweep.unique().tolist() == ["tiny"]
    assert [len(h) for h in df.history] == [2, 2] and df.accuracy.between(0, 1).all()
    assert summarize.main([str(trained), "--by", "n_mels", "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("n_mels")
    assert table.accuracy_mean.to_dict() == pytest.approx(dict(zip(df.n_mels, df.accuracy, strict=True)))
    assert plots.main([str(trained), "--by", "n_mels", "--out", str(tmp_path)]) == 0
    confusion = next(tmp_path.glob("confusion_*.png"))
    assert is_png(confusion)
    best = plan.pick_run(df)
    assert best.accuracy == df.accuracy.max() and confusion.name == f"confusion_{best.run_id}_{best.sweep}.png"
    labels = [t.get_text() for t in figures.plot_confusion(best).axes[0].get_yticklabels()]
    assert len(labels) == 10 and "dog" in labels
    assert report.main([str(trained), "--out", str(tmp_path / "report")]) == 0
    assert "## n_mels" in (tmp_path / "report" / "report.md").read_text()


@pytest.mark.slow
def test_report_tests_each_value_and_ranks_the_keys(tmp_path):
    """A parameter's section holds its comparison against the best value (analysis.compare's table); a sweep of
    several keys gets the importance table, the heatmap of its two most important keys and parallel coordinates."""
    from analysis import compare
    from tests.analysis_records import write_paired_study
    from tests.test_analysis_importance import write_grid

    df = runs.load_runs(str(write_paired_study(tmp_path)))
    page = report.build_report(df, tmp_path / "paired-report").read_text()
    table, *_ = compare.compare_table(df, "n_mels")
    assert "against the reference n_mels=128 (best mean)" in page and "| worse" in page
    assert pd.read_csv(tmp_path / "paired-report" / "compare_n_mels.csv").p.iloc[1:].tolist() == pytest.approx(
        table.p.iloc[1:].tolist())
    assert "## Parameter importance" not in page  # one key varies

    grid = tmp_path / "grid"
    write_grid(grid)
    out = tmp_path / "grid-report"
    page = report.build_report(runs.load_runs(str(grid)), out).read_text()
    assert "## Parameter importance" in page and "Random-forest importance" in page
    assert is_png(out / "parallel_coordinates_grid.png") and is_png(out / "heatmap_n_mels_normalize_grid.png")
    assert pd.read_csv(out / "importance.csv").key.tolist()[0] == "n_mels"


def test_confusion_section_lists_the_most_confused_pairs(tmp_path):
    df = runs.load_runs(str(write_study(tmp_path)))
    out = tmp_path / "rep"
    page = report.build_report(df, out).read_text()
    assert "| rooster | rain      |     1 |          25 % |" in page
    assert pd.read_csv(out / "confused_pairs_r128-3.csv").to_dict("records") == [
        {"true": "rooster", "predicted": "rain", "clips": 1, "share_of_true": 0.25}]


HOSTILE = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "![pixel](http://example.com/t.png)",
           "a|b", "line\n# Heading\n| x | y |", "[link](javascript:alert(3))", "back\\", "`code|`"]


def cells(line: str) -> list[str]:
    """The cells of a Markdown table row, split at the pipes that no backslash escapes."""
    out, cell, escaped = [], "", False
    for c in line.strip()[1:-1]:
        if c == "|" and not escaped:
            out.append(cell)
            cell = ""
        else:
            cell += c
        escaped = c == "\\" and not escaped
    return [*out, cell]


def tables(page: str) -> list[list[str]]:
    blocks, block = [], []
    for line in [*page.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    return blocks


def test_report_escapes_every_value_it_did_not_write(tmp_path):
    folder = tmp_path / "results" / "hostile"
    for i, text in enumerate(HOSTILE):
        rec = write_run(folder, f"h{i}", 0.5 + 0.05 * i, arch=text, trial_num=i)
        rec["env"] = {"device": text, "gpu": HOSTILE[i - 1], "packages": {"torch": text}}
        write_json_atomic(folder / f"h{i}.json", rec)
    save_predictions(folder / f"h{len(HOSTILE) - 1}.preds.npz", np.eye(3)[[0, 1, 1]], np.array([0, 1, 2]),
                     ["<b>dog</b>", "rain|x", "![c](http://example.com/c.png)"], ["1.wav", "2.wav", "3.wav"])
    page = report.build_report(runs.load_runs(str(folder)), tmp_path / "rep", source="<i>src</i>").read_text()
    for raw in ("<script", "<img", "<b>", "<i>"):
        assert raw not in page
    links = re.findall(r"(?<!\\)\]\((\S+?)\)", page)  # a ]( that no backslash escapes: a link or an image
    assert links and all(not link.startswith(("http", "javascript")) for link in links)  # only the figures
    assert [line for line in page.splitlines() if line.startswith("# ")] == ["# Results: &lt;i&gt;src&lt;/i&gt;"]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "rain\\|x" in page
    shapes = [{len(cells(line)) for line in block} for block in tables(page)]
    assert len(shapes) >= 4 and all(len(s) == 1 for s in shapes)  # every row as many cells as its header


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04torn", b"not a zip at all"])
def test_an_unreadable_predictions_file_is_one_line(tmp_path, capsys, damage):
    study = write_study(tmp_path)  # r128-3 (the best run) has predictions
    (study / "r128-3.preds.npz").write_bytes(damage)
    assert report.main([str(study), "--out", str(tmp_path / "rep")]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"analysis.report: {study / 'r128-3.preds.npz'}: not a readable predictions file" in err
