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
from bench.analysis.report_figures import Curve, blob_figure, effects_figure, png, steps_figure
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
    """Verdicts in claim order, figures (name -> PNG bytes), the figure shown beside each claim the runs
    test (claim id -> figure name), the runs table and where it came from."""

    verdicts: list[Verdict]
    figures: dict[str, bytes] = field(default_factory=dict)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)
    source: str = ""
    claim_figures: dict[str, str] = field(default_factory=dict)


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
    beside = {}
    for claim, v in zip(CLAIMS, verdicts, strict=True):
        if not tested(v):
            continue
        name = _own_figure(claim, figures)
        if name is None or name in beside.values():  # its detail rows (or its headline) as intervals
            rows = v.rows or [{"metric": claim.metric, "value": v.value, "lo": v.lo, "hi": v.hi,
                               "verdict": v.verdict}]  # fmt: skip
            fig = effects_figure(rows, f"{claim.id}: {claim.direction}")
            name = f"claim-{claim.id}.png" if fig else None
            if fig:
                figures[name] = fig
        if name:
            beside[claim.id] = name
    return Report(verdicts, figures, runs, claim_figures=beside)


def tested(v: Verdict) -> bool:
    """Whether the runs test the claim: a verdict from detail rows or a number, not `no runs` nor runs
    that give nothing to compare (e.g. one value of the claim's axis)."""
    return v.verdict != "no runs" and (bool(v.rows) or bool(np.isfinite(v.value)))


def _own_figure(claim: Any, figures: dict[str, bytes]) -> str | None:
    """The report's figure drawn for the claim's design, if there is one: the blob study's metrics against
    blob size (the blob claims), the defence grid (the claims judged on it)."""
    if claim.profile == "study" and f"{claim.tasks[0]}.png" in figures:
        return f"{claim.tasks[0]}.png"
    if defences.PROFILE in (claim.profile, *claim.keep_unconverged):
        return next((f"defences-{t}.png" for t in claim.tasks if f"defences-{t}.png" in figures), None)
    return None


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
    """One row per claim the runs test: claim, verdict, bench's headline, profile."""
    return [[v.claim, v.verdict, v.bench, v.profile or "–"] for v in report.verdicts if tested(v)]


SUMMARY_HEAD = ["claim", "verdict", "bench (95% CI over seeds)", "profile"]
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
    """Per claim the runs test, in claim order: title, the labelled lines (what the claim says and what
    bench found first; the rule last), the detail table, run ids and the figure beside it."""
    out = []
    for claim, v in zip(CLAIMS, report.verdicts, strict=True):
        if not tested(v):
            continue
        lines = [
            ("statement", claim.statement),
            ("bench", v.bench),
            ("paper", f"{v.paper} ({claim.source})"),
            ("metric", f"{claim.metric}; asserted: {claim.direction}"),
        ]
        if v.note:
            lines.append(("note", v.note))
        lines.append(("tested by", "; ".join(f"`{c}`" for c in claim.commands())))
        details = [[str(r.get(k, "")) for k in DETAIL_HEAD] for r in v.rows]
        out.append(
            {
                "id": claim.id,
                "verdict": v.verdict,
                "lines": lines,
                "rule": v.rule,
                "details": details,
                "ids": v.run_ids,
                "figure": report.claim_figures.get(claim.id),
            }  # fmt: skip
        )
    return out


def _untested(report: Report) -> list[dict[str, str]]:
    """The claims the runs do not test, in claim order: id, source, statement, why (the verdict, with
    its note where the runs exist but give nothing to compare) and the command that would run it."""
    out = []
    for claim, v in zip(CLAIMS, report.verdicts, strict=True):
        if tested(v):
            continue
        why = "no runs" if v.verdict == "no runs" else f"{v.verdict}: {v.note}"
        command = claim.commands()[0]
        also = f" (or the same for {', '.join(claim.tasks[1:])})" if len(claim.tasks) > 1 else ""
        out.append(
            {
                "id": claim.id,
                "source": claim.source,
                "statement": claim.statement,
                "why": why,
                "command": command,
                "also": also,
            }
        )
    return out


def _counts(report: Report) -> str:
    """'6 claims tested: 1 reproduced, 2 opposite, 3 inconclusive; 11 not tested by these runs (listed at
    the end).'"""
    judged = [v for v in report.verdicts if tested(v)]
    words = ", ".join(f"{n} {w}" for w in VERDICTS if (n := sum(v.verdict == w for v in judged)))
    rest = len(report.verdicts) - len(judged)
    return (
        f"{len(judged)} claim{'s' if len(judged) != 1 else ''} tested"
        + (f": {words}" if words else "")
        + (
            f"; {rest} not tested by these runs (listed at the end, each with the command that runs it)."
            if rest
            else "."
        )
    )


def _md_table(head: list[str], rows: list[list[str]]) -> str:
    def cell(s: str) -> str:
        return str(s).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def render_markdown(report: Report) -> str:
    """report.md: the claims the runs test (summary table, then each with its figure), the runs, the
    defence grid, the other figures, and last the claims the runs do not test with their commands."""
    parts = [
        "# bench report: the paper's claims, judged on bench's runs\n",
        f"{len(report.runs)} finished child runs ({report.source}). {_counts(report)}\n",
    ]
    sections = _sections(report)
    if sections:
        parts += ["## Summary\n", _md_table(SUMMARY_HEAD, _summary_rows(report)), "\n## Claims\n"]
    for s in sections:
        parts.append(f"### {s['id']}: {s['verdict']}\n")
        if s["figure"]:
            parts.append(f"![{s['id']}](figures/{s['figure']})\n")
        parts.extend(f"- {k}: {text}" for k, text in s["lines"])
        parts.append(f"- verdict: **{s['verdict']}**, rule: {s['rule']}")
        ids = list(s["ids"])
        more = f" (+{len(ids) - MAX_IDS_MD} more in report.json)" if len(ids) > MAX_IDS_MD else ""
        parts.append(f"- runs ({len(ids)}): " + (", ".join(ids[:MAX_IDS_MD]) or "–") + more)
        if s["details"]:
            parts.append("\n" + _md_table(DETAIL_HEAD, s["details"]))
        parts.append("")
    parts += ["## Runs\n", _md_table(RUNS_HEAD, run_counts(report.runs))]
    drows = defence_rows(report.runs)
    if drows:
        parts += ["\n## Defences\n", DEFENCE_NOTE + "\n", _md_table(DEFENCE_HEAD, drows)]
    others = [n for n in report.figures if n not in set(report.claim_figures.values())]
    if others:
        parts.append("\n## Other figures\n")
        parts.extend(f"![{name}](figures/{name})\n" for name in others)
    untested = _untested(report)
    if untested:
        parts.append("\n## Claims these runs do not test\n")
        for u in untested:
            parts.append(
                f"- **{u['id']}** ({u['source']}): {u['statement']} Run: `{u['command']}`{u['also']}. "
                f"_{u['why']}_"
            )
    return "\n".join(parts) + "\n"


def _html_table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{body}</table>"


def _img(report: Report, name: str) -> str:
    b64 = base64.b64encode(report.figures[name]).decode()
    return f"<img alt='{html.escape(name)}' src='data:image/png;base64,{b64}'>"


STYLE = (
    "body{font-family:sans-serif;max-width:1250px;margin:2em auto;font-size:14px;line-height:1.35}"
    "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;padding:3px 6px;"
    "vertical-align:top;font-size:12px}.reproduced{color:#070}.opposite{color:#b00}"
    ".not-reproduced{color:#b60}.inconclusive{color:#666}"
    ".claim{border-top:1px solid #ddd;padding-top:.3em;margin-top:1.2em}"
    ".claim .row{display:flex;gap:1.5em;align-items:flex-start}.claim .text{flex:1 1 50%;min-width:0}"
    ".claim figure{flex:0 1 48%;margin:0}.claim figure img{max-width:100%}"
    ".claim ul{margin:.3em 0;padding-left:1.2em}details{margin:.3em 0}summary{cursor:pointer;color:#555}"
    "code{font-size:12px;background:#f4f4f4;padding:0 3px}.untested li{margin:.3em 0}"
)


def render_html(report: Report) -> str:
    """The same content as report.md, one file, figures inline: each claim the runs test with its figure
    beside it, the claims they do not test as one list at the end."""
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>bench report</title><style>{STYLE}</style>",
        "</head><body><h1>bench report: the paper's claims, judged on bench's runs</h1>",
        f"<p>{len(report.runs)} finished child runs ({html.escape(report.source)}). "
        f"{html.escape(_counts(report))}</p>",
    ]
    sections = _sections(report)
    if sections:
        rows = [
            f"<tr><td><a href='#{r[0]}'>{r[0]}</a></td><td class='{r[1].replace(' ', '-')}'>{r[1]}</td>"
            + "".join(f"<td>{html.escape(c)}</td>" for c in r[2:])
            + "</tr>"
            for r in _summary_rows(report)
        ]
        head = "".join(f"<th>{h}</th>" for h in SUMMARY_HEAD)
        parts.append(f"<h2>Summary</h2><table><tr>{head}</tr>{''.join(rows)}</table><h2>Claims</h2>")
    for s in sections:
        parts.append(
            f"<section class='claim'><h3 id='{s['id']}'>{s['id']}: "
            f"<span class='{s['verdict'].replace(' ', '-')}'>{s['verdict']}</span></h3><div class='row'><div class='text'><ul>"
        )
        for k, text in s["lines"]:
            text = html.escape(text).replace("**", "")
            parts.append(f"<li><b>{k}</b>: {_code(text)}</li>")
        parts.append("</ul><details><summary>rule, detail rows and run ids</summary>")
        parts.append(f"<p><b>rule</b>: {html.escape(s['rule'])}</p>")
        if s["details"]:
            parts.append(_html_table(DETAIL_HEAD, s["details"]))
        ids = ", ".join(s["ids"]) or "–"
        parts.append(
            f"<p><b>runs ({len(s['ids'])})</b>: <small>{html.escape(ids)}</small></p></details></div>"
        )
        if s["figure"]:
            parts.append(f"<figure>{_img(report, s['figure'])}</figure>")
        parts.append("</div></section>")
    parts.append("<h2>Runs</h2>" + _html_table(RUNS_HEAD, run_counts(report.runs)))
    drows = defence_rows(report.runs)
    if drows:
        parts.append(
            f"<h2>Defences</h2><p>{html.escape(DEFENCE_NOTE)}</p>" + _html_table(DEFENCE_HEAD, drows)
        )
    for name in report.figures:
        if name not in set(report.claim_figures.values()):
            parts.append(f"<h3>{html.escape(name)}</h3>{_img(report, name)}")
    untested = _untested(report)
    if untested:
        parts.append("<h2>Claims these runs do not test</h2><ul class='untested'>")
        for u in untested:
            parts.append(
                f"<li id='{u['id']}'><b>{u['id']}</b> ({html.escape(u['source'])}): {html.escape(u['statement'])} "
                f"Run: <code>{html.escape(u['command'])}</code>{html.escape(u['also'])}. "
                f"<i>{html.escape(u['why'])}</i></li>"
            )
        parts.append("</ul>")
    return "\n".join(parts) + "</body></html>\n"


def _code(text: str) -> str:
    """`...` spans of an escaped text as <code>."""
    bits = text.split("`")
    return "".join(f"<code>{b}</code>" if i % 2 else b for i, b in enumerate(bits))


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
