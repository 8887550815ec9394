"""`bench report`: every claim of `bench.analysis.claims` judged on the runs of a tracking store.

`bench.tracking.load_runs` reads the finished child runs (all experiments, some, or the children of
given parent runs) into the runs table of `bench.analysis.verdicts` (tracking.py is the one module that
talks to MLflow; the report reads runs and curves through it); `build_report` judges every claim and draws the
figures (pure: a table and curves in, a `Report` out); `write_report` writes `report.md` (figures as PNG
files beside it), a self-contained `report.html` (figures inline as base64 PNG) and `report.json`
(every verdict with all its run ids); `run_report` does all of it and logs the files to the MLflow
experiment `report`. A claim without runs is `no runs`, never an error.
"""

from __future__ import annotations

import base64
import html
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.analysis import defences
from bench.analysis.claims import BLOB_METRICS, CLAIMS
from bench.analysis.report_figures import Curve, blob_figure, png, steps_figure
from bench.analysis.verdicts import VERDICTS, Verdict, num
from bench.errors import BenchInputError
from bench.tracking import load_runs, metric_history

__all__ = ["Report", "build_report", "load_curves", "load_runs", "run_report", "write_report"]

CURVE_KEYS = ("attack/ncc_dist_mean", "attack/error")  # the monitor curve shown against attack steps
MAX_IDS_MD = 12
DEFENCE_NOTE = (
    "The defence grid (`bench run TASK --profile defences`, docs/defences.md): mean [95% CI over seeds]; "
    "ε: the target of DP gradient descent (∞: clipping without noise; no DP: plain training); achieved ε: "
    "Opacus's accountant for the σ and steps used; stop: train.max_epochs / train.dp_epochs; attack steps: "
    "the attack's budget (a budget check's longer attacks have rows of their own). Every run counts."
)  # run ids listed per claim in report.md (report.json has them all)


@dataclass
class Report:
    """Verdicts in claim order, figures (name -> PNG bytes), the runs table and where it came from."""

    verdicts: list[Verdict]
    figures: dict[str, bytes] = field(default_factory=dict)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = ""


def load_curves(client: Any, runs: pd.DataFrame, max_seeds: int = 5) -> tuple[dict[str, list[Curve]], str]:
    """The monitor curve (CURVE_KEYS, first found) of the runs at one point per n: the blob task of the
    paper's design with most runs, its middle blob size, setting 0, up to `max_seeds` seeds."""
    blobs = runs[runs["task"].astype(str).str.startswith("blobs-")] if "task" in runs else runs.iloc[0:0]
    if blobs.empty:
        return {}, CURVE_KEYS[0]
    paper = blobs[~blobs["task"].str.endswith("-shuffled")]
    blobs = paper if not paper.empty else blobs
    task = blobs["task"].value_counts().index[0]
    rows = blobs[(blobs["task"] == task) & (blobs["setting"].astype(str) == "0")]
    curves: dict[str, list[Curve]] = {}
    key = next((k for k in CURVE_KEYS if k in rows), CURVE_KEYS[0])
    n_col = num(rows, "data.n_per_class").fillna(-1)
    for n in sorted(n_col.unique()):
        at_n = rows[n_col == n]
        sizes = np.sort(num(at_n, "data.blob_size").dropna().unique())
        if not len(sizes):
            continue
        size = sizes[len(sizes) // 2]
        point = at_n[num(at_n, "data.blob_size") == size].sort_values("seed").head(max_seeds)
        lines = []
        for r in point.itertuples():
            steps, values = metric_history(client, r.run_id, key)
            if len(steps):
                lines.append((steps, values, f"seed {r.seed}"))
        curves[f"{task} n={n:g}, blob {size:g}"] = lines
    return curves, key


def build_report(runs: pd.DataFrame, curves: dict[str, list[Curve]] | None = None, key: str = "") -> Report:
    """Judge every claim on `runs` and draw the figures (blob metrics per design and n; quality vs steps)."""
    verdicts = [c.evaluate(runs) for c in CLAIMS]
    figures: dict[str, bytes] = {}
    if not runs.empty and "task" in runs:
        from bench.analysis.judges import select
        from bench.analysis.trends import usable

        for shape in ("rect", "walk"):
            tasks = (f"blobs-{shape}", f"blobs-{shape}-shuffled")
            sub, _ = select(runs, tasks, "study")
            fig = blob_figure(usable(sub), tasks, BLOB_METRICS) if not sub.empty else None
            if fig:
                figures[f"blobs-{shape}.png"] = fig
    fig = steps_figure(curves or {}, key or CURVE_KEYS[0])
    if fig:
        figures["attack-steps.png"] = fig
    for task, rows in defence_runs(runs).items():
        fig = defences.figure(rows, f"{task}: defences")
        if fig is not None:
            figures[f"defences-{task}.png"] = png(fig)
    return Report(verdicts, figures, runs)


def defence_runs(runs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The runs of the defence grid (profile `defences`), per task."""
    if runs.empty or "profile" not in runs or "task" not in runs:
        return {}
    sub = runs[runs["profile"] == defences.PROFILE]
    return {str(t): g for t, g in sub.groupby("task", sort=True)}


DEFENCE_HEAD = ["task", "attack steps", "weight decay", "stop", "ε", "seeds", "achieved ε", "test accuracy"]
DEFENCE_HEAD += ["memorised/frac", "membership AUC", "gain over held-out", "converged"]


def defence_rows(runs: pd.DataFrame) -> list[list[str]]:
    """The defence grid as table rows: mean [95% CI over seeds] per (task, attack budget, cell, ε); every
    run counts."""

    def ci(r: Any, m: str) -> str:
        return f"{r[m]:.3g} [{r[m + ' lo']:.3g}, {r[m + ' hi']:.3g}]" if np.isfinite(r[m]) else "–"

    out = []
    for task, rows in defence_runs(runs).items():
        tab = defences.defence_table(rows.assign(task=task))
        for r in tab.to_dict("records"):
            eps = f"{r['achieved epsilon']:.3g}" if np.isfinite(r["achieved epsilon"]) else "–"
            out.append(
                [task, str(r["attack steps"]) if r["attack steps"] > 0 else "–", f"{r['weight_decay']:g}"]
                + [r["stop"], r["epsilon"], str(r["seeds"]), eps]
                + [ci(r, m) for m, _, _ in defences.METRICS]
                + [f"{r['converged']:.2f}"]
            )
    return out


# --- rendering ----------------------------------------------------------------------------------------------


def _summary_rows(report: Report) -> list[list[str]]:
    claims = {c.id: c for c in CLAIMS}
    return [
        [v.claim, claims[v.claim].source, v.paper, v.bench, v.verdict, v.profile or "–"]
        for v in report.verdicts
    ]


SUMMARY_HEAD = ["claim", "source", "paper", "bench (95% CI over seeds)", "verdict", "profile"]
RUNS_HEAD = [
    "task",
    "profile",
    "runs",
    "seeds",
    "classifier unconverged",
    "attack hit the cap",
    "attack steps",
]


def run_counts(runs: pd.DataFrame) -> list[list[str]]:
    """Per (task, profile): runs, seeds, runs whose classifier did not converge, runs whose attack hit the
    cap unconverged (`attack/converged` = 0 under a stopping rule, `attack/stop_rule` = 1; '–' for runs
    with a fixed step budget), and the median [min, max] attack steps run."""
    if runs.empty or "task" not in runs:
        return []
    out = []
    for (task, profile), g in runs.groupby(["task", "profile"], sort=True):
        steps = num(g, "attack/steps_run").dropna()
        span = f"{steps.median():.0f} [{steps.min():.0f}, {steps.max():.0f}]" if len(steps) else "–"
        train = str(int((num(g, "train/converged") < 0.5).sum())) if "train/converged" in g else "–"
        ruled = num(g, "attack/stop_rule").fillna(1.0) > 0.5 if "attack/stop_rule" in g else g["seed"].notna()
        capped = str(int((num(g, "attack/converged")[ruled] < 0.5).sum())) if ruled.any() else "–"
        out.append([task, profile, str(len(g)), str(g["seed"].nunique()), train, capped, span])
    return out


DETAIL_HEAD = ["task", "group", "metric", "verdict", "bench"]


def _sections(report: Report) -> list[dict[str, Any]]:
    """Per claim: title, the labelled lines, the detail table and run ids (shared by md and html)."""
    out = []
    for claim, v in zip(CLAIMS, report.verdicts, strict=True):
        lines = [
            ("statement", claim.statement),
            ("source", claim.source),
            ("tested by", "; ".join(f"`{c}`" for c in claim.commands())),
            ("metric", f"{claim.metric}; asserted: {claim.direction}"),
            ("paper", v.paper),
            ("bench", v.bench),
            ("verdict", f"**{v.verdict}**, rule: {v.rule}"),
        ]
        if v.note:
            lines.append(("note", v.note))
        details = [[str(r.get(k, "")) for k in DETAIL_HEAD] for r in v.rows]
        out.append(
            {"id": claim.id, "verdict": v.verdict, "lines": lines, "details": details, "ids": v.run_ids}
        )
    return out


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def render_markdown(report: Report) -> str:
    counts = ", ".join(f"{sum(v.verdict == w for v in report.verdicts)} {w}" for w in VERDICTS)
    parts = [
        "# bench report: the paper's claims, judged on bench's runs\n",
        f"{len(report.runs)} finished child runs ({report.source}). Verdicts: {counts}.\n",
        "## Summary\n",
        _md_table(SUMMARY_HEAD, _summary_rows(report)),
        "\n## Runs\n",
        _md_table(RUNS_HEAD, run_counts(report.runs)),
        "\n## Claims\n",
    ]
    drows = defence_rows(report.runs)
    if drows:
        parts[-1:-1] = ["\n## Defences\n", DEFENCE_NOTE + "\n", _md_table(DEFENCE_HEAD, drows)]
    for s in _sections(report):
        parts.append(f"### {s['id']}: {s['verdict']}\n")
        parts.extend(f"- {k}: {text}" for k, text in s["lines"])
        ids = list(s["ids"])
        more = f" (+{len(ids) - MAX_IDS_MD} more in report.json)" if len(ids) > MAX_IDS_MD else ""
        parts.append(f"- runs ({len(ids)}): " + (", ".join(ids[:MAX_IDS_MD]) or "–") + more)
        if s["details"]:
            parts.append("\n" + _md_table(DETAIL_HEAD, s["details"]))
        parts.append("")
    if report.figures:
        parts.append("## Figures\n")
        for name in report.figures:
            parts.append(f"![{name}](figures/{name})\n")
    return "\n".join(parts) + "\n"


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def render_html(report: Report) -> str:
    """The same content as report.md, one file, figures inline."""
    style = (
        "body{font-family:sans-serif;max-width:1200px;margin:2em auto;font-size:14px}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
        "vertical-align:top;font-size:12px}.reproduced{color:#070}.opposite{color:#b00}"
    )
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>bench report</title><style>{style}</style>"
    ]
    parts.append("</head><body><h1>bench report: the paper's claims, judged on bench's runs</h1>")
    parts.append(
        f"<p>{len(report.runs)} finished child runs ({html.escape(report.source)}).</p><h2>Summary</h2>"
    )
    parts.append(_html_table(SUMMARY_HEAD, _summary_rows(report)))
    parts.append("<h2>Runs</h2>" + _html_table(RUNS_HEAD, run_counts(report.runs)))
    drows = defence_rows(report.runs)
    if drows:
        parts.append(
            f"<h2>Defences</h2><p>{html.escape(DEFENCE_NOTE)}</p>" + _html_table(DEFENCE_HEAD, drows)
        )
    for s in _sections(report):
        parts.append(
            f"<h3 id='{s['id']}'>{s['id']}: <span class='{s['verdict']}'>{s['verdict']}</span></h3><ul>"
        )
        for k, text in s["lines"]:
            parts.append(f"<li><b>{k}</b>: {html.escape(text).replace('**', '')}</li>")
        ids = ", ".join(s["ids"]) or "–"
        parts.append(f"<li><b>runs ({len(s['ids'])})</b>: <small>{html.escape(ids)}</small></li></ul>")
        if s["details"]:
            parts.append(_html_table(DETAIL_HEAD, s["details"]))
    for name, data in report.figures.items():
        b64 = base64.b64encode(data).decode()
        parts.append(f"<h2>{html.escape(name)}</h2><img alt='{name}' src='data:image/png;base64,{b64}'>")
    return "\n".join(parts) + "</body></html>\n"


def write_report(report: Report, out: Path) -> list[Path]:
    """report.md (+ figures/*.png), report.html and report.json in `out` (created); the paths written."""
    try:
        (out / "figures").mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchInputError(f"cannot create report folder '{out}': {e}; fix: pass another --out") from None
    paths = [out / "report.md", out / "report.html", out / "report.json"]
    paths[0].write_text(render_markdown(report), encoding="utf-8")
    paths[1].write_text(render_html(report), encoding="utf-8")
    doc = [asdict(v) | {"rows": [_plain(r) for r in v.rows], "head": _plain(v.head)} for v in report.verdicts]
    paths[2].write_text(
        json.dumps({"source": report.source, "verdicts": doc}, indent=1, default=str), "utf-8"
    )
    for name, data in report.figures.items():
        (out / "figures" / name).write_bytes(data)
        paths.append(out / "figures" / name)
    return paths


def _plain(d: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, np.floating | np.integer) else v) for k, v in d.items()}


def run_report(
    out: Path,
    tracking_uri: str | None = None,
    experiments: Sequence[str] | None = None,
    parents: Sequence[str] | None = None,
    log: bool = True,
) -> tuple[Report, list[Path], str | None]:
    """Read the runs, judge every claim, write the files to `out`; log them to experiment `report`.
    Returns the report, the paths written and the MLflow run id of the report (None if not logged)."""
    from bench.tracking import Tracker

    start = time.perf_counter()
    tracker = Tracker(tracking_uri, must_exist=True)  # reading a store that is not there is bad input
    tracker.experiment("report")  # reaches the store first: a bad URI is bad input, said once
    runs = load_runs(tracker.client, experiments, parents)
    curves, key = load_curves(tracker.client, runs) if not runs.empty else ({}, "")
    report = build_report(runs, curves, key)
    scope = f"parents {', '.join(parents)}" if parents else f"experiments {', '.join(experiments or ['all'])}"
    report.source = f"{tracker.uri}, {scope}"
    paths = write_report(report, Path(out))
    run_id = None
    if log:
        exp = tracker.experiment("report")
        with tracker.run(exp, "report", {"bench.kind": "report"}) as rlog:
            for p in paths:
                rlog.artifact(p, "figures" if p.parent.name == "figures" else None)
            counts = {
                f"claims/{w.replace(' ', '_')}": sum(v.verdict == w for v in report.verdicts)
                for w in VERDICTS
            }
            rlog.metrics(counts | {"runs/total": float(len(runs)), "seconds": time.perf_counter() - start})
            rlog.tags(
                {f"claim.{v.claim}": v.verdict for v in report.verdicts} | {"bench.source": report.source}
            )
            run_id = rlog.run_id
    return report, paths, run_id


def claims_listing() -> str:
    """Every declared claim, one block each (for `bench report --claims`)."""
    blocks = []
    for c in CLAIMS:
        blocks.append(
            f"{c.id}  [{c.source}]\n  {c.statement}\n  paper: {c.paper}\n  tested by: {', '.join(c.tasks)} "
            f"(profile {c.profile}); metric: {c.metric}; asserted: {c.direction}"
        )
    return "\n".join(blocks)
