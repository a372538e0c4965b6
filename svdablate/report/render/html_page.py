"""`report --format html`: one self-contained page (inline CSS, figures as base64 PNGs).

The table with its legend and notes, the claims with their verdicts, then, for a study read
from MLflow (`page.StudyPage`), the κ and error figures, the recipe its trials ran and the
parent run's provenance. No external CSS, script, font or image: it reads offline.
"""

from __future__ import annotations

import base64

import pandas as pd

from svdablate.report.render.html_table import (
    claims_html,
    esc,
    legend_html,
    notes_html,
    rank_css,
    table_html,
)
from svdablate.report.render.page import StudyPage
from svdablate.report.tables.recipe import MAX_LISTED, Recipe
from svdablate.report.tables.table import ReportTable

CSS = """
:root { --ink:#1b1b1b; --muted:#595959; --rule:#d6d6d6; --band:#f4f4f1; }
* { box-sizing:border-box; }
body { margin:0; background:#fff; color:var(--ink);
  font:15px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif; }
main { max-width:1240px; margin:0 auto; padding:28px 36px 56px; }
header { border-bottom:2px solid var(--ink); padding-bottom:12px; margin-bottom:18px; }
.kicker { margin:0; color:var(--muted); font-size:12px; letter-spacing:.08em;
  text-transform:uppercase; }
h1 { font-size:23px; line-height:1.3; margin:4px 0 6px; }
h2 { font-size:17px; margin:34px 0 10px; padding-bottom:4px; border-bottom:1px solid var(--rule); }
h3 { font-size:14px; margin:18px 0 6px; color:var(--muted); text-transform:uppercase;
  letter-spacing:.05em; }
.meta { margin:0; color:var(--muted); font-size:14px; }
.meta b { color:var(--ink); font-weight:600; }
.scroll { overflow-x:auto; }
table { border-collapse:collapse; font-variant-numeric:tabular-nums; }
th, td { padding:5px 10px; border-bottom:1px solid #ececec; vertical-align:top; }
thead th { font-weight:600; border-bottom:2px solid var(--ink); white-space:nowrap; }
thead tr.groups th { border-bottom:1px solid #9a9a9a; text-align:center; }
table.svdablate-report td, table.svdablate-report th { white-space:nowrap; }
th.row { text-align:left; font-weight:600; }
.num { text-align:right; }
.paper, .diff { color:var(--muted); font-style:italic; }
tr.section th { background:var(--band); text-align:left; font-weight:700; }
td.trend { letter-spacing:-1px; }
sup.rank { font-size:10px; margin-left:2px; font-weight:700; }
.legend { font-size:13.5px; color:var(--ink); margin:10px 0 4px; }
.legend > span { margin-right:14px; }
.key { display:inline-block; min-width:20px; padding:0 5px; text-align:center; font-size:12px; }
.notes { font-size:13px; color:var(--muted); padding-left:18px; margin:8px 0 0; }
.notes li { margin:2px 0; }
.small { font-size:13px; color:var(--muted); }
table.svdablate-claims { font-size:14px; }
table.svdablate-claims th { text-align:left; }
.verdict { display:inline-block; padding:1px 8px; border:1px solid #9a9a9a; border-radius:10px;
  font-weight:600; white-space:nowrap; background:#f2f2f2; }
.note { font-size:12.5px; color:var(--muted); margin-top:3px; }
.figures { display:flex; flex-wrap:wrap; gap:18px; }
figure { margin:0; flex:1 1 520px; max-width:600px; }
figure img { width:100%; height:auto; border:1px solid var(--rule); }
figcaption { font-size:13px; color:var(--muted); margin-top:4px; }
dl.pairs { display:grid; grid-template-columns:max-content 1fr; gap:2px 18px; margin:0;
  font-size:14px; }
dl.pairs.two { grid-template-columns:max-content minmax(0,1fr) max-content minmax(0,1fr); }
dl.pairs dt { color:var(--muted); }
dl.pairs dd { margin:0; font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;
  font-size:13px; word-break:break-all; }
table.kv td, table.kv th { font-size:13.5px; text-align:left; }
table.kv td { font-family:ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace;
  font-size:12.5px; }
footer { margin-top:40px; font-size:12px; color:var(--muted); }
"""


TWO_COLUMNS_FROM = 8  # label: value pairs


def _header(table: ReportTable) -> list[str]:
    done = ", ".join(f"{n} {status}" for status, n in table.statuses.items())
    meta = [f"<b>{esc(table.metric)}</b>-epoch validation error"]
    if done:
        meta.append(f"runs: {esc(done)}")
    return [
        "<header>",
        f'<p class="kicker">svdablate report · {esc(table.name)}</p>',
        f"<h1>{esc(table.title)}</h1>",
        f'<p class="meta">{" · ".join(meta)}</p>',
        "</header>",
    ]


def _figures(page: StudyPage) -> list[str]:
    if not page.figures:
        return []
    lines = ["<h2>Over training</h2>", '<div class="figures">']
    for fig in page.figures:
        data = base64.b64encode(fig.png).decode("ascii")
        lines.append(
            f'<figure><img src="data:image/png;base64,{data}" alt="{esc(fig.caption)}">'
            f"<figcaption>{esc(fig.caption)}</figcaption></figure>"
        )
    return [*lines, "</div>"]


def _pairs(pairs: dict[str, str]) -> str:
    """Label: value lines, two pairs to a line when there are many."""
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs.items())
    wide = " two" if len(pairs) > TWO_COLUMNS_FROM else ""
    return f'<dl class="pairs{wide}">{items}</dl>'


def _frame_table(frame: pd.DataFrame, index_name: str) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in [index_name, *frame.columns])
    body = "".join(
        f'<tr><th class="row" scope="row">{esc(i)}</th>'
        + "".join(f"<td>{esc(v)}</td>" for v in values)
        + "</tr>"
        for i, values in zip(frame.index, frame.itertuples(index=False), strict=True)
    )
    return (
        f'<div class="scroll"><table class="kv"><thead><tr>{head}</tr></thead>'
        f"<tbody>{body}</tbody></table></div>"
    )


def _recipe(recipe: Recipe) -> list[str]:
    if not recipe.trials:
        return []
    lines = [
        "<h2>Recipe</h2>",
        f'<p class="small">The params of the study\'s {recipe.trials} trial run(s), as MLflow '
        "holds them.</p>",
    ]
    if not recipe.per_row.empty:
        lines += ["<h3>What tells the rows apart</h3>", _frame_table(recipe.per_row, "row")]
    if recipe.per_trial:
        varying = {
            name: ", ".join(values[:MAX_LISTED]) + (" …" if len(values) > MAX_LISTED else "")
            for name, values in recipe.per_trial.items()
        }
        lines += ["<h3>Varies between the trials of a row</h3>", _pairs(varying)]
    if recipe.shared:
        lines += ["<h3>The same in every trial</h3>", _pairs(recipe.shared)]
    return lines


def _provenance(frame: pd.DataFrame) -> list[str]:
    if frame.empty:
        return []
    if frame.shape[1] == 1:
        return ["<h2>Provenance</h2>", _pairs(dict(frame.iloc[:, 0]))]
    return ["<h2>Provenance</h2>", _frame_table(frame, "parent run")]


def html_page(table: ReportTable, page: StudyPage | None = None) -> str:
    """The whole page: the table, its legend, notes and claims, then `page`'s figures, recipe
    and provenance (absent without one: `render(table, 'html')`)."""
    page = page or StudyPage()
    body = [
        *_header(table),
        "<section>",
        *table_html(table),
        *legend_html(table),
        *notes_html(table),
        "</section>",
        *claims_html(table),
        *_figures(page),
        *_recipe(page.recipe),
        *_provenance(page.provenance),
        "<footer>Made by <code>svdablate report --format html</code> from the study's MLflow "
        "runs; self-contained (no network needed).</footer>",
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(table.title)}</title>",
            f"<style>{CSS}{rank_css()}\n</style>",
            "</head>",
            "<body><main>",
            *body,
            "</main></body>",
            "</html>",
            "",
        ]
    )


def to_html(table: ReportTable) -> str:
    """The page of the table alone (no figures, recipe or provenance)."""
    return html_page(table)
