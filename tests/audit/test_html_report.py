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
