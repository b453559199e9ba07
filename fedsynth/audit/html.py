"""One self-contained HTML file for people: verdict first, then plots and tables.

Plots are drawn with matplotlib's object API (no global pyplot state) and embedded as base64
PNG data URIs; the page loads nothing from the network. Every text taken from the report is
HTML-escaped, since column names and values come from the data suppliers.
"""

from __future__ import annotations

import base64
import io
from html import escape
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from fedsynth.audit.report import AuditReport, CheckResult, Distribution
from fedsynth.files import atomic_write_text

REAL_COLOUR = "#1f77b4"
SYNTHETIC_COLOUR = "#ff7f0e"
OUTSIDE_EDGE = "#d62728"
MAX_TICK_LABELS = 12
PRIVACY_EXPLANATIONS = {
    "Exact copies of training rows": "Share of synthetic rows identical to some training row. "
    "Copies can re-identify the person they came from.",
    "Copies of quasi-identifier-unique people": "Share of training rows that are unique on "
    "their quasi-identifiers and appear verbatim in the synthetic data: the riskiest copies.",
    "Synthetic rows closer to training than holdout": "If the generator memorised its training "
    "rows, synthetic rows sit nearer to them than to unseen holdout rows. 50% means no sign.",
    "Membership inference AUC": "How well an attacker who sees the synthetic data tells training "
    "members from non-members by closeness. 0.5 is guessing.",
    "Exact quasi-identifier matches (membership)": "Share of people whose exact combination of "
    "quasi-identifier values occurs in some synthetic row. An attacker who knows someone's "
    "values checks whether they are there; a training rate above the holdout rate tells "
    "members from non-members (the check uses the difference; attack AUC = 0.5 + difference / 2).",
    "Singling out": "Share of descriptions read off synthetic rows that fit exactly one training "
    "person; the holdout baseline column gives the same share for holdout people, for comparison.",
}

STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1200px}
h1{margin-bottom:4px} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
.verdict{font-size:1.6em;font-weight:700;padding:12px 18px;border-radius:8px;display:inline-block}
.pass{background:#d8f3dc;color:#1b4332} .fail{background:#ffd6d6;color:#7a0010}
table{border-collapse:collapse;margin:8px 0} td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top} th{background:#f3f3f3}
tr.bad td{background:#fff0f0} .grid{display:flex;flex-wrap:wrap;gap:8px}
.grid figure{margin:0} img{max-width:100%} .note{color:#555;font-size:.92em}
"""


def render_html(report: AuditReport) -> str:
    """The whole report page as a string."""
    sections = [
        _summary(report),
        _fidelity(report),
        _detection(report),
        _utility(report),
        _privacy(report),
        _coverage_validity(report),
    ]
    title = f"Synthetic data audit: {escape(report.schema_name)}"
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>" + "".join(sections) + "</body></html>\n"
    )


def write_html(report: AuditReport, path: str | Path) -> None:
    """Write the report page to `path` atomically."""
    atomic_write_text(path, render_html(report))


def _summary(report: AuditReport) -> str:
    rows = report.rows
    counts = f"{rows.real} real (training) rows, {rows.synthetic} synthetic rows" + (
        f", {rows.holdout} holdout rows" if rows.holdout is not None else ", no holdout"
    )
    failed = (
        "<p>Failed checks: " + ", ".join(escape(c.name) for c in report.failed_checks) + "</p>"
        if report.failed_checks
        else "<p>All checks passed.</p>"
    )
    notes = "".join(f"<li>{escape(n)}</li>" for n in report.notes)
    return (
        f"<div class='verdict {report.verdict}'>Verdict: {report.verdict.upper()}</div>"
        f"<p class='note'>{escape(counts)}; audited {report.created_at:%Y-%m-%d %H:%M} UTC.</p>"
        + failed
        + "<h2>Checks</h2>"
        + _checks_table(report.checks)
        + (f"<p class='note'>Notes:</p><ul class='note'>{notes}</ul>" if notes else "")
    )


def _checks_table(checks: list[CheckResult]) -> str:
    rows = "".join(
        f"<tr class='{'' if c.passed else 'bad'}'><td>{escape(c.name)}</td>"
        f"<td>{c.value:.4f}{_measure(c)}</td>"
        f"<td>{'≥' if c.direction == 'min' else '≤'} {c.threshold:g}</td>"
        f"<td>{'pass' if c.passed else 'FAIL'}</td><td>{escape(c.explanation)}</td></tr>"
        for c in checks
    )
    return (
        "<table><tr><th>check</th><th>value</th><th>required</th><th>result</th>"
        f"<th>what it means</th></tr>{rows}</table>"
    )


def _measure(check: CheckResult) -> str:
    """What a check's value is, under the value, when it is not the plain measurement."""
    if check.measure is None:
        return ""
    return f"<br><span class='note'>{escape(check.measure)}</span>"


def _fidelity(report: AuditReport) -> str:
    fid = report.fidelity
    overlays = "".join(
        f"<figure>{_img(_distribution_plot(s.column, s.metric, s.score, s.distribution))}</figure>"
        for s in fid.columns
    )
    pair_rows = "".join(
        f"<tr><td>{escape(p.columns[0])} / {escape(p.columns[1])}</td><td>{p.metric}</td>"
        f"<td>{_num(p.score)}</td></tr>"
        for p in sorted(fid.pairs, key=lambda p: (p.score is None, p.score or 0))[:15]
    )
    heatmaps = ""
    if len(fid.correlations.columns) >= 2:
        heatmaps = "<h3>Correlations (continuous columns)</h3>" + _img(_correlation_plot(report))
    return (
        "<h2>Fidelity</h2>"
        f"<p>Column shapes {_num(fid.column_shapes)}, pair trends {_num(fid.pair_trends)}, "
        f"overall {_num(fid.overall)} (1 = identical distributions; SDMetrics definitions).</p>"
        + _boundaries(report)
        + "<h3>Per-column distributions (blue real, orange synthetic)</h3>"
        "<p class='note'>Bins span the real range; hatched orange bars outside it hold the "
        "synthetic values below the real minimum or above the real maximum.</p>"
        f"<div class='grid'>{overlays}</div>{heatmaps}"
        "<h3>Weakest column pairs</h3><table><tr><th>pair</th><th>metric</th><th>score</th></tr>"
        f"{pair_rows}</table>"
    )


def _boundaries(report: AuditReport) -> str:
    """Boundary adherence: the mean, and the continuous columns with values beyond the real
    range."""
    fid = report.fidelity
    if fid.boundary_adherence is None:
        return ""
    outside = [
        s for s in fid.columns if s.boundary_adherence is not None and s.boundary_adherence < 1
    ]
    rows = "".join(
        f"<tr><td>{escape(s.column)}</td><td>{_pct(s.boundary_adherence)}</td>"
        f"<td>{_span(s.real_range)}</td><td>{_span(s.synthetic_range)}</td>"
        f"<td>{_pct(s.distribution.synthetic_below)}</td>"
        f"<td>{_pct(s.distribution.synthetic_above)}</td></tr>"
        for s in outside
    )
    table = (
        "<table><tr><th>column</th><th>within real range</th><th>real range</th>"
        "<th>synthetic range</th><th>synthetic below</th><th>synthetic above</th></tr>"
        f"{rows}</table>"
        if rows
        else "<p>Every synthetic number and date lies within the real range.</p>"
    )
    return (
        f"<p>Boundary adherence {_num(fid.boundary_adherence)}: the mean over numerical and "
        "datetime columns of the share of synthetic values within the real column's observed "
        "minimum and maximum (SDMetrics BoundaryAdherence; missing values count as outside only "
        "where the real column has none). Values beyond the real range can be implausible, and "
        "an extreme value can point at a real outlier.</p>" + table
    )


def _span(bounds: tuple[str, str] | None) -> str:
    return "n/a" if bounds is None else f"{escape(bounds[0])} to {escape(bounds[1])}"


def _detection(report: AuditReport) -> str:
    d = report.detection
    auc = "was not measured (the notes above say why)" if d.auc is None else f"<b>{d.auc:.3f}</b>"
    pmse = (
        ""
        if d.pmse is None or d.pmse_ratio is None
        else f" Propensity pMSE {d.pmse:.4g}, {d.pmse_ratio:.1%} of its maximum."
    )
    return (
        "<h2>Distinguishability</h2>"
        f"<p>A {escape(d.classifier)} trained to tell real from synthetic rows ({d.folds}-fold "
        f"cross-validated on {d.rows_real} real and {d.rows_synthetic} synthetic rows) reached "
        f"ROC AUC {auc} (0.5 = cannot tell them apart, 1 = always can).{pmse}</p>"
    )


def _utility(report: AuditReport) -> str:
    u = report.utility
    if u is None:
        return "<h2>Utility</h2><p>Not measured; the notes above say why.</p>"
    rows = "".join(
        f"<tr><td>{escape(m)}</td><td>{_num(u.tstr[m])}</td><td>{_num(u.trtr[m])}</td>"
        f"<td>{_num(u.ratio[m])}</td></tr>"
        for m in u.tstr
    )
    return (
        "<h2>Utility</h2>"
        f"<p>Predicting <b>{escape(u.target)}</b> ({u.task}) with {escape(u.model)}, trained on "
        f"{u.rows_train} rows and tested on {u.rows_test} real holdout rows. TSTR = trained on "
        "synthetic, TRTR = trained on real; a ratio near 1 means the synthetic data is as useful "
        f"for this task. Primary metric: {escape(u.primary_metric)}.</p>"
        "<table><tr><th>metric</th><th>TSTR</th><th>TRTR</th><th>ratio</th></tr>"
        f"{rows}</table>"
    )


def _privacy(report: AuditReport) -> str:
    p = report.privacy
    ident = p.identity
    rows = [
        (
            "Exact copies of training rows",
            _pct(ident.exact_match_rate),
            _pct(ident.holdout_exact_match_rate),
        ),
        (
            "Copies of quasi-identifier-unique people",
            _pct(ident.unique_match_rate),
            _pct(ident.holdout_unique_match_rate),
        ),
        (
            "Synthetic rows closer to training than holdout",
            _pct(p.distance.share_closer_to_train),
            "50% expected",
        ),
        (
            "Membership inference AUC",
            _num(p.membership.auc if p.membership else None),
            "0.5 expected",
        ),
    ]
    if p.quasi_identifier_membership is not None:
        qim = p.quasi_identifier_membership
        rows.append(
            (
                "Exact quasi-identifier matches (membership)",
                _pct(qim.member_match_rate),
                _pct(qim.non_member_match_rate),
            )
        )
    if p.singling_out is not None:
        rows.append(
            (
                "Singling out",
                _pct(p.singling_out.success_rate),
                _pct(p.singling_out.holdout_success_rate),
            )
        )
    body = "".join(
        f"<tr><td>{escape(name)}</td><td>{value}</td><td>{baseline}</td>"
        f"<td>{escape(PRIVACY_EXPLANATIONS[name])}</td></tr>"
        for name, value, baseline in rows
    )
    attribute = "".join(
        f"<tr><td>{escape(a.sensitive)}</td><td>{escape(', '.join(a.quasi_identifiers))}</td>"
        f"<td>{_pct(a.match_rate)}</td><td>{_pct(a.correct_rate)}</td>"
        f"<td>{_pct(a.baseline_accuracy)}</td><td>{_pct(a.meaningful_rate)}</td>"
        f"<td>{_pct(a.holdout_meaningful_rate)}</td></tr>"
        for a in p.attribute
    )
    attribute_table = (
        "<h3>Attribute disclosure</h3><p>An attacker who knows a person's quasi-identifiers looks "
        "up matching synthetic rows and guesses the sensitive value they share most. A guess is a "
        "<i>meaningful</i> disclosure only when it is right and the synthetic data is more sure "
        "of it than the population share of that value: otherwise the attacker learnt nothing "
        "beyond public statistics. Holdout people, never seen by the generator, show the rate "
        "that comes from statistics alone.</p>"
        "<table><tr><th>sensitive</th><th>quasi-identifiers</th><th>matched</th><th>correct</th>"
        "<th>guessing the mode</th><th>meaningful</th><th>meaningful (holdout)</th></tr>"
        f"{attribute}</table>"
        if p.attribute
        else "<p>Attribute disclosure not measured: declare quasi_identifier and sensitive "
        "roles in the schema.</p>"
    )
    return (
        "<h2>Privacy risk</h2>"
        "<table><tr><th>measure</th><th>training</th><th>holdout baseline</th>"
        f"<th>what it means</th></tr>{body}</table>"
        "<h3>Distance to closest record</h3><p>Mixed-type distance (scaled numbers, label "
        "mismatches) from each synthetic row to its nearest training and holdout row. Two "
        "overlapping histograms are good; a training histogram piled up at zero is memorisation."
        f"</p>{_img(_dcr_plot(report))}{attribute_table}"
    )


def _coverage_validity(report: AuditReport) -> str:
    cov, val = report.coverage, report.validity
    rare = "".join(
        f"<tr><td>{escape(r.column)}</td><td>{escape(r.value)}</td><td>{_pct(r.real_share)}</td>"
        f"<td>{_pct(r.synthetic_share)}</td></tr>"
        for r in cov.rare_categories
    )
    checks = "".join(
        f"<tr><td>{escape(c.name)}</td><td>{c.violations}</td></tr>" for c in val.checks
    )
    return (
        "<h2>Coverage</h2>"
        f"<p>Categories of the real data present in the synthetic data: "
        f"{_pct(cov.category_coverage)}. Rare categories (below {cov.rare_threshold:.0%} of real "
        f"rows) present: {_pct(cov.rare_present)}, within a factor 2 of their real share: "
        f"{_pct(cov.rare_in_proportion)}.</p>"
        + (
            "<table><tr><th>column</th><th>rare category</th><th>real</th><th>synthetic</th></tr>"
            f"{rare}</table>"
            if rare
            else ""
        )
        + "<h2>Validity</h2>"
        f"<p>{val.invalid_rows} of {val.rows} synthetic rows ({_pct(val.invalid_row_rate)}) break "
        "a schema bound, domain or nullability rule, or a declared constraint.</p>"
        + (f"<table><tr><th>rule</th><th>rows</th></tr>{checks}</table>" if checks else "")
    )


def _distribution_plot(column: str, metric: str, score: float | None, dist: Distribution) -> Figure:
    fig = Figure(figsize=(3.8, 2.6), dpi=80)
    fig.subplots_adjust(left=0.14, right=0.97, bottom=0.2, top=0.8)
    ax = fig.add_subplot()
    title = f"{column}\n{metric} {_num(score)}"
    if dist.edges is not None:
        edges = np.asarray(dist.edges)
        ax.stairs(dist.real, edges, fill=True, alpha=0.55, color=REAL_COLOUR)
        ax.stairs(dist.synthetic, edges, fill=True, alpha=0.55, color=SYNTHETIC_COLOUR)
        ticks = np.linspace(0, len(edges) - 1, 3).astype(int)
        ax.set_xticks(edges[ticks], [dist.labels[i] for i in ticks], fontsize=7)
        outside = _outside_bars(ax, edges, dist.synthetic_below or 0.0, dist.synthetic_above or 0.0)
        if outside:
            title += f", {outside:.1%} outside real range"
    else:
        x = np.arange(len(dist.labels))
        ax.bar(x - 0.2, dist.real, width=0.4, color=REAL_COLOUR)
        ax.bar(x + 0.2, dist.synthetic, width=0.4, color=SYNTHETIC_COLOUR)
        shown = dist.labels if len(x) <= MAX_TICK_LABELS else [""] * len(x)
        ax.set_xticks(x, shown, fontsize=7, rotation=30)
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title, fontsize=9)
    return fig


def _outside_bars(ax: Axes, edges: np.ndarray, below: float, above: float) -> float:
    """Draw the synthetic shares below and above the real range as hatched bars one bin wide,
    a gap away from it, labelled with their share; return their sum."""
    width = edges[1] - edges[0]
    for share, centre, label in (
        (below, edges[0] - 1.5 * width, "below"),
        (above, edges[-1] + 1.5 * width, "above"),
    ):
        if share > 0:
            ax.bar(
                centre,
                share,
                width=width,
                color=SYNTHETIC_COLOUR,
                alpha=0.55,
                hatch="//",
                edgecolor=OUTSIDE_EDGE,
            )
            ax.annotate(
                f"{label}\n{share:.1%}",
                (centre, share),
                ha="center",
                va="bottom",
                fontsize=6,
                color=OUTSIDE_EDGE,
            )
    if below or above:
        ax.set_ylim(top=max(ax.get_ylim()[1], 1.35 * max(below, above)))
    return below + above


LABEL_CHAR_IN = 0.05
COLORBAR_IN = 0.12
COLORBAR_LABELS_IN = 0.55
TITLE_IN = 0.35


def _correlation_plot(report: AuditReport) -> Figure:
    corr = report.fidelity.correlations
    real = _grid(corr.real)
    synthetic = _grid(corr.synthetic)
    n = len(corr.columns)
    size = min(4.5, 1.2 + 0.35 * n)
    labels = corr.columns if n <= 25 else [""] * n
    # Axes placed in inches around the longest label: a layout engine costs more than drawing.
    label_in = 0.15 + LABEL_CHAR_IN * max((len(c) for c in labels), default=0)
    panel_in = label_in + size + 0.1 + COLORBAR_IN + COLORBAR_LABELS_IN
    width, height = 3 * panel_in, label_in + size + TITLE_IN
    fig = Figure(figsize=(width, height), dpi=80)
    panels = (("real", real, "coolwarm"), ("synthetic", synthetic, "coolwarm"))
    for i, (title, grid, cmap) in enumerate((*panels, ("difference", synthetic - real, "PuOr"))):
        left = i * panel_in + label_in
        ax = fig.add_axes((left / width, label_in / height, size / width, size / height))
        image = ax.imshow(grid, vmin=-1, vmax=1, cmap=cmap)
        ax.set_title(title, fontsize=10)
        ax.set_xticks(range(n), labels, rotation=90, fontsize=7)
        ax.set_yticks(range(n), labels, fontsize=7)
        bar = ((left + size + 0.1) / width, label_in / height, COLORBAR_IN / width, size / height)
        fig.colorbar(image, cax=fig.add_axes(bar)).ax.tick_params(labelsize=7)
    return fig


def _dcr_plot(report: AuditReport) -> Figure:
    hist = report.privacy.distance.histogram
    edges = np.asarray(hist.edges)
    fig = Figure(figsize=(7, 3), dpi=80)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.17, top=0.95)
    ax = fig.add_subplot()
    ax.stairs(hist.train, edges, fill=True, alpha=0.55, color="#d62728", label="to training")
    if hist.holdout is not None:
        ax.stairs(hist.holdout, edges, fill=True, alpha=0.55, color="#2ca02c", label="to holdout")
    ax.set_xlabel("distance to closest record")
    ax.set_ylabel("synthetic rows")
    ax.legend()
    return fig


def _grid(values: list[list[float | None]]) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in values], dtype=float)


def _img(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt='plot' src='data:image/png;base64,{data}'>"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
