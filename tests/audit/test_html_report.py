"""The HTML report: self-contained, every plot embedded, supplier-provided text escaped."""

from __future__ import annotations

import base64
import re

import numpy as np
import pandas as pd

from fedsynth.audit import run
from fedsynth.audit.html import render_html, write_html
from fedsynth.schema import TableSchema

IMG = re.compile(r"<img [^>]*src='([^']*)'")


def test_report_page_embeds_every_plot_and_loads_nothing_remote(
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    independent: pd.DataFrame,
    schema: TableSchema,
    tmp_path,
) -> None:
    report = run(train, independent, schema, holdout=holdout, target="diagnosis")
    path = tmp_path / "report.html"
    write_html(report, path)
    page = path.read_text(encoding="utf-8")
    sources = IMG.findall(page)
    overlays = len(report.fidelity.columns)
    assert len(sources) == overlays + 2  # + correlation heatmaps + DCR histogram
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        assert base64.b64decode(source.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", page)
    assert "@import" not in page and "<link" not in page and "<script" not in page
    assert page.index("Verdict: PASS") < page.index("<h2>Fidelity")
    for heading in ("Utility", "Privacy risk", "Distance to closest record", "Attribute"):
        assert heading in page


def test_hostile_column_names_and_categories_are_escaped() -> None:
    attack = "<script>alert(1)</script>"
    category = "<img src=x onerror=alert(2)>"
    schema = TableSchema.model_validate(
        {
            "name": "<b>t</b>",
            "columns": [
                {"name": attack, "kind": "numerical"},
                {"name": "c", "kind": "categorical", "domain": [category, "ok"]},
            ],
        }
    )
    rng = np.random.default_rng(0)

    def table(n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                attack: rng.normal(size=n),
                "c": [category] * 3 + ["ok"] * (n - 3),
            }
        )

    page = render_html(run(table(400), table(400), schema, holdout=table(400)))
    assert attack not in page and category not in page and "<b>t</b>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page


def _check_rows(page: str) -> dict[str, str]:
    table = page[page.index("<h2>Checks</h2>") : page.index("<h2>Fidelity")]
    return {
        m.group(1): m.group(0) for m in re.finditer(r"<tr[^>]*><td>([a-z_.]+)</td>.*?</tr>", table)
    }


def test_checks_judged_against_the_holdout_are_labelled_as_excess_over_it(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    report = run(train, independent, schema, holdout=holdout, target="diagnosis")
    rows = _check_rows(render_html(report))
    excess = "training rate minus holdout rate (excess over people never seen)"
    for name in (
        "privacy.singling_out",
        "privacy.attribute_disclosure",
        "privacy.unique_match_rate",
        "privacy.qi_membership_advantage",
    ):
        assert excess in rows[name], name
    assert "worst sensitive column &#x27;diagnosis&#x27;" in rows["privacy.attribute_disclosure"]
    assert "beyond the holdout" in rows["privacy.exact_match_rate"]
    assert "minus" not in rows["privacy.membership_auc"]
    assert "minus" not in rows["fidelity.column_shapes"]
    measured = {c.name: c.measure for c in report.checks}
    assert measured["privacy.singling_out"] == excess


def test_without_a_holdout_privacy_rates_are_not_called_excess(
    train: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    rows = _check_rows(render_html(run(train, independent, schema)))
    assert "holdout" not in rows["privacy.singling_out"]
    assert "holdout" not in rows["privacy.unique_match_rate"]


def test_privacy_table_points_to_the_holdout_column_not_to_brackets(
    train: pd.DataFrame, holdout: pd.DataFrame, independent: pd.DataFrame, schema: TableSchema
) -> None:
    page = render_html(run(train, independent, schema, holdout=holdout))
    assert "in brackets" not in page
    assert "the holdout baseline column gives the same share for holdout people" in page
    assert "<th>holdout baseline</th>" in page
