"""`report --format html`: one self-contained page a reader can use without the terminal."""

from __future__ import annotations

import base64
import re

import pandas as pd
import pytest
from mlflow import MlflowClient
from test_report import store  # noqa: F401  (store: the fixture)

from svdablate.report import layout_table, load_runs, make_report, render
from svdablate.report.tables.recipe import split_recipe

#: One `store` for the module's tests (test_report.py's `pytestmark` says why).
pytestmark = pytest.mark.xdist_group("report-page")

PROVENANCE = {
    "mlflow.user": "ada",
    "mlflow.source.git.commit": "0123456789abcdef0123456789abcdef01234567",
    "svdablate.version.torch": "2.9.9",
    "svdablate.host": "node-7",
    "svdablate.python": "3.11.7",
}
# A ranked cell: its rank class and the superscript that names the rank without colour.
RANKED = re.compile(r'<td class="[^"]*\br(\d)\b[^"]*"[^>]*>([^<]*)<sup class="rank">(\d)</sup>')


@pytest.fixture(scope="module")
def page(store, tmp_path_factory):  # noqa: F811
    client = MlflowClient(store["uri"])
    for key, value in PROVENANCE.items():
        client.set_tag(store["parent"], key, value)
    out = tmp_path_factory.mktemp("page") / "t4.html"
    report = make_report(store["uri"], store["parent"], fmt="html", out=out, log_artifacts=False)
    assert out.read_text() == report.text
    return report.text


def test_the_page_is_self_contained(page):
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    for external in (r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", r"url\(", r"@import", r"<link"):
        assert not re.search(external, page, re.IGNORECASE), external
    assert "<script" not in page
    images = re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(images) == 2  # κ and validation error over epochs
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)


def test_the_page_shows_the_claims_the_recipe_and_the_provenance(page):
    assert "Claims of the papers that these rows test" in page
    assert "NOG lowers the error vs SVD" in page
    assert '<span class="verdict v-supported">✓ supported</span>' in page
    recipe = page[page.index("<h2>Recipe</h2>") : page.index("<h2>Provenance</h2>")]
    assert "<dt>seed</dt><dd>0, 1, 2</dd>" in recipe  # varies between the trials of a row
    assert "<dt>dataset</dt><dd>cifar100</dd>" in recipe  # the same in every trial
    provenance = page[page.index("<h2>Provenance</h2>") :]
    for label, value in {
        "user": "ada",
        "git commit": PROVENANCE["mlflow.source.git.commit"],
        "torch version": "2.9.9",
        "host": "node-7",
        "python": "3.11.7",
        "preset": "eccv22-dbn-cifar100",
    }.items():
        assert f"<dt>{label}</dt><dd>{value}</dd>" in provenance


def test_rank_marks_read_without_colour_and_have_a_legend(store):  # noqa: F811
    runs = load_runs(store["uri"], store["parent"])
    table = layout_table(runs, runs.attrs["rows"], "eccv22-t4", metric="final")
    html = render(table, "html")
    cells = RANKED.findall(html)
    assert all(cls == sup for cls, _, sup in cells)  # every tinted cell names its rank
    marks = table.marked()
    expected = sorted(int(r) for r in marks.to_numpy().ravel() if r)
    assert sorted(int(sup) for _, _, sup in cells) == expected and set(expected) == {1, 2, 3, 4}
    assert '>19.43 ± 0.15<sup class="rank">1</sup>' in html  # NS (final epoch): the best
    legend = re.search(r'<p class="legend">(.*?)</p>', html).group(1)
    for rank, word in enumerate(("best", "second", "third", "fourth"), start=1):
        assert f'<span class="key r{rank}">{rank}</span> {word}' in legend
    assert "the number the paper prints" in legend  # the paper's columns beside ours
    assert 'class="num paper"' in html and "cyan" not in html.split("</style>")[0]
    assert "red, blue, green, cyan" not in html  # the terminal's colour note gives way
    assert "<h2>Over training</h2>" not in html  # a table alone has no study to plot


def test_recipe_splits_shared_per_row_and_per_trial_params():
    params = pd.DataFrame(
        {
            "row": ["SVD", "SVD", "NS", "NS"],
            "seed": ["0", "10", "0", "2"],
            "method": ["svd", "svd", "ns", "ns"],
            "lr": ["0.05"] * 4,
            "label": ["SVD", "SVD", "NS", "NS"],  # repeats the row: says nothing
        }
    )
    recipe = split_recipe(params, ["NS", "SVD"])
    assert recipe.shared == {"lr": "0.05"}
    assert recipe.per_trial == {"seed": ["0", "2", "10"]}  # numbers in numeric order
    assert recipe.per_row.to_dict() == {"method": {"NS": "ns", "SVD": "svd"}}
    assert list(recipe.per_row.index) == ["NS", "SVD"] and recipe.trials == 4
