"""The rules that judge claims (see `bench.analysis.claims`): pure functions of a claim and a runs table.

Each `judge_*(claim, runs) -> Verdict` receives only the rows of the claim's tasks (converged runs) and
reads the claim's `id`, `rule`, `paper`, `tasks` and `metric`. Tables and statistics: bench.analysis.verdicts.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from bench.analysis.verdicts import (
    MIN_SEEDS,
    Verdict,
    _oriented,
    combine,
    disagreement,
    has,
    judge,
    mean_effect,
    num,
    seed_values,
    trend,
    two_groups,
)

IMAGE_TASKS = ("medmnist-pair", "digits-pair", "faces-pair")
GENETIC_TASKS = ("genetic-grid", "genetic-deg", "genetic-pca", "genetic-kpca", "genetic-sdae")
Claim = Any  # bench.analysis.claims.Claim (not imported: claims imports this module)


def select(runs: pd.DataFrame, tasks: tuple[str, ...], profile: str | None) -> tuple[pd.DataFrame, str]:
    """Rows of `tasks`, each task at `profile` if it has runs there, else at its most-run profile other than
    `defences` (and a note saying so); `profile` None keeps every profile."""
    if runs.empty or "task" not in runs:
        return runs.iloc[0:0], ""
    parts, notes = [], []
    for task in tasks:
        rows = runs[runs["task"] == task]
        if rows.empty or profile is None or "profile" not in rows:
            parts.append(rows)
            continue
        if not (rows["profile"] == profile).any():
            # the defence grid's models are defended on purpose: never a stand-in for another profile
            rows = rows[rows["profile"] != "defences"]
            if rows.empty:
                parts.append(rows)
                continue
            other = rows["profile"].value_counts().index[0]
            notes.append(f"{task}: no '{profile}' runs, '{other}' used.")
            parts.append(rows[rows["profile"] == other])
        else:
            parts.append(rows[rows["profile"] == profile])
    sub = pd.concat(parts) if parts else runs.iloc[0:0]
    return sub, " ".join(notes)


def declared_axis(tasks: tuple[str, ...]) -> str | None:
    """The trend axis declared by the first of `tasks` that is a built-in task with one (`Task.trend_axis`:
    e.g. `data.blob_size` for the blob tasks, `class_var/ratio` for the image pairs)."""
    from bench.tasks import BUILTIN

    axes = {t.name: t.trend_axis for t in BUILTIN}
    return next((axes[t] for t in tasks if axes.get(t)), None)


def _too_few_seeds(head: dict) -> str:
    """Why an inconclusive headline is inconclusive when it has fewer than MIN_SEEDS seeds, else ''."""
    n = int(head.get("n_seeds") or 0)
    if head.get("verdict") != "inconclusive" or not 0 < n < MIN_SEEDS:
        return ""
    return f"Only {n} seed{'s' if n > 1 else ''}: a verdict needs >= {MIN_SEEDS} (fix: --seeds {MIN_SEEDS})."


def _verdict(claim: Claim, head: dict, rows: list[dict], note: str = "") -> Verdict:
    extra = " ".join(p for p in (_too_few_seeds(head), disagreement(rows, head["verdict"])) if p)
    return Verdict(
        claim.id,
        head["verdict"],
        claim.rule,
        claim.paper,
        head["bench"],
        head.get("value", head.get("diff", np.nan)),
        head.get("lo", head.get("diff_lo", np.nan)),
        head.get("hi", head.get("diff_hi", np.nan)),
        head["n_seeds"],
        note=" ".join(p for p in (note, extra) if p),
        rows=rows,
    )


def _inconclusive(claim: Claim, why: str) -> Verdict:
    return Verdict(claim.id, "inconclusive", claim.rule, claim.paper, note=why)


# --- trends over a config axis (blob size, width, weight decay, extra epochs) ----------------------------


# Config keys held fixed within a trend (besides task, profile and n per class): the swept factors.
HOLD = ("model.width", "model.depth", "train.weight_decay", "train.extra_epochs")


def trend_rows(runs: pd.DataFrame, x: str, metrics: tuple, min_effect: float) -> list[dict[str, Any]]:
    """One detail row per (task, profile, n per class, held keys, metric) in which column `x` takes >= 2
    values: the metric's trend against `x` (`bench.analysis.verdicts.trend`). Held keys (`HOLD`, less x)
    keep e.g. a weight-decay sweep out of a width trend; a held key that varies in a task is named in the
    row's `group`."""
    out = []
    hold = [k for k in HOLD if k != x and k in runs]
    table = runs.assign(_n=num(runs, "data.n_per_class").fillna(-1), _x=num(runs, x))
    table = table.assign(**{f"_h{i}": table[k].astype(str) for i, k in enumerate(hold)})
    if "profile" not in table:
        table["profile"] = ""
    keys = ["task", "profile", "_n", *(f"_h{i}" for i in range(len(hold)))]
    for values, rows in table.groupby(keys, sort=False):
        task, profile, n, held = values[0], values[1], values[2], values[3:]
        if rows["_x"].nunique() < 2:
            continue
        varying = table[table["task"] == task]
        label = [f"n={n:g}"] if n >= 0 else []
        label += [
            f"{k.split('.')[-1]}={v}" for k, v in zip(hold, held, strict=True) if varying[k].nunique() > 1
        ]
        for metric, sign in metrics:
            if has(rows, metric):
                t = trend(rows, "_x", metric, sign, min_effect, label=x)
                row = {"task": task, "profile": profile, "n": n, "group": " ".join(label), "metric": metric}
                row["x"] = x
                out.append(t | row | {"n_rows": len(rows)})
    return out


def judge_trend(
    claim: Claim, runs: pd.DataFrame, x: str | None, metrics: tuple, min_effect: float
) -> Verdict:
    """Headline: `claim.metric` in the first of the claim's tasks with runs that vary `x` (None: the axis
    the claim's tasks declare, `declared_axis`), at the claim's profile if it has such runs, at the
    largest n per class (then the group with most runs); the other tasks' verdicts in the same group go in
    the note. Runs that do not vary `x` are `inconclusive`, the note saying which values they have."""
    x = x or declared_axis(claim.tasks) or ""
    rows = trend_rows(runs, x, metrics, min_effect)
    if not rows:
        return _inconclusive(claim, _one_value(runs, x))
    heads = [r for r in rows if r["metric"] == claim.metric]
    for task in claim.tasks:
        mine = [r for r in heads if r["task"] == task]
        if mine:
            pick = [r for r in mine if r["profile"] == claim.profile] or mine
            head = max(pick, key=lambda r: (r["n"], r["n_rows"]))
            at = (head["profile"], head["group"])
            same = [r for r in rows if r["task"] == task and (r["profile"], r["group"]) == at]
            others = [r for r in heads if r["task"] != task and (r["profile"], r["group"]) == at]
            note = "; ".join(f"same group in {r['task']}: {r['verdict']} ({r['bench']})" for r in others)
            v = _verdict(claim, head | {"bench": f"{task} {head['group']}: {head['bench']}"}, same, note)
            v.rows, v.profile, v.head = rows, head["profile"], head
            return v
    return _inconclusive(claim, f"no run has both {x} and {claim.metric}")


def _one_value(runs: pd.DataFrame, x: str) -> str:
    """Why runs give no trend against `x`: it is missing, or it has one value (per task and n)."""
    values = num(runs, x).dropna().unique() if x else []
    if not len(values):
        return f"The {len(runs)} runs do not record {x or 'the axis'}: no trend to judge."
    shown = ", ".join(f"{v:g}" for v in sorted(values)[:5]) + (", ..." if len(values) > 5 else "")
    return (
        f"Only one value of {x} in each task and n of the {len(runs)} runs (values: {shown}); a trend needs "
        "at least 2 (fix: run the claim's series, e.g. its profile without --set on the axis)."
    )


def judge_blob_linear(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Falls (as blob-error-falls) and the per-size means lie on a line: R² >= 0.8."""
    v = judge_trend(claim, runs, None, ((claim.metric, -1),), 0.31)
    head = v.head
    if not head:
        return v
    xs, means = np.asarray(head["xs"], dtype=float), np.asarray(head["means"], dtype=float)
    r2 = float(np.corrcoef(xs, means)[0, 1] ** 2) if len(xs) >= 3 and np.ptp(means) > 0 else float("nan")
    v.bench += f"; linear R² of the per-size means {r2:.2f}" if np.isfinite(r2) else "; R² needs 3 sizes"
    if v.verdict == "reproduced" and not r2 >= 0.8:
        v.verdict = "not reproduced" if np.isfinite(r2) else "inconclusive"
        v.note = (v.note + " Error falls, but not on a line (R² < 0.8).").strip()
    return v


# --- group comparisons ----------------------------------------------------------------------------------


def judge_baselines(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Per class and baseline (mean image, held-out): baseline ncc_dist - attack ncc_dist > 0."""
    rows = []
    for task, sub in runs.groupby("task", sort=False):
        for cls in (0, 1):
            for base in ("mean", "heldout"):
                attack, ref = f"class{cls}/ncc_dist_mean", f"baseline/{base}/class{cls}/ncc_dist_mean"
                if not (has(sub, attack) and has(sub, ref)):
                    continue
                vals = seed_values(sub, num(sub, ref) - num(sub, attack))
                level = float(np.nanmean(num(sub, ref)))
                r = mean_effect(vals, 1, 0.1 * abs(level), f"class {cls} gain over {base}")
                rows.append(r | {"task": task, "group": f"class{cls}", "metric": f"gain/{base}"})
    for task in claim.tasks:
        mine = [r for r in rows if r["task"] == task]
        if mine:
            head = min(mine, key=lambda r: r["value"]) | {"verdict": combine([r["verdict"] for r in mine])}
            head["bench"] = f"{task}: smallest of 4 gains, {head['bench']}"
            others = {r["task"] for r in rows} - {task}
            note = "" if task == "medmnist-pair" else "No MedMNIST runs: stand-in data."
            note += "".join(
                f" {t}: {combine([r['verdict'] for r in rows if r['task'] == t])}." for t in sorted(others)
            )
            v = _verdict(claim, head, [], note.strip())
            v.rows = rows
            return v
    return _inconclusive(claim, "runs lack the per-class baseline metrics")


def judge_steadiness(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Per seed: steadiness(DSSIM) - steadiness(L2) > 0; also worsening(L2) - worsening(DSSIM) > 0."""
    rows = []
    for task, sub in runs.groupby("task", sort=False):
        for metric, a, b in (
            ("steadiness", "steadiness/dssim", "steadiness/l2"),
            ("worsening", "worsening/l2", "worsening/dssim"),
        ):
            if has(sub, a) and has(sub, b):
                r = mean_effect(seed_values(sub, num(sub, a) - num(sub, b)), 1, 0.1, f"{a} − {b}")
                rows.append(r | {"task": task, "group": "", "metric": metric})
    heads = [r for t in claim.tasks for r in rows if r["task"] == t and r["metric"] == "steadiness"]
    if not heads:
        return _inconclusive(claim, "runs lack steadiness/dssim and steadiness/l2")
    v = _verdict(claim, heads[0], [r for r in rows if r["task"] == heads[0]["task"]])
    v.rows = rows
    return v


def judge_interclass(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Quality against each pair's mean inter-class variance ratio (pairs ordered by it)."""
    axis = declared_axis(claim.tasks) or "class_var/ratio"
    if not has(runs, axis):
        return _inconclusive(claim, f"runs lack {axis}")
    ratio = num(runs, axis).groupby(runs["series_value"].astype(str)).mean()
    rows = runs.assign(**{"pair_ratio": runs["series_value"].astype(str).map(ratio)})
    metrics = (("gain/heldout/ncc_dist", 1), ("ncc_dist_mean", -1), ("memorised/frac", 1))
    return judge_trend(claim, rows, "pair_ratio", metrics, 0.1)


def _by_selection(runs: pd.DataFrame, y: str, a: str, b: str) -> np.ndarray:
    """Per seed: mean over reducers of y(selection a) - y(selection b)."""
    t = pd.DataFrame(
        {
            "seed": runs["seed"],
            "red": runs.get("data.reduce.name", "-"),
            "sel": runs.get("data.selection", "-"),
            "y": num(runs, y),
        }
    ).dropna()
    cells = t.groupby(["seed", "red", "sel"])["y"].mean().unstack("sel")
    if a not in cells or b not in cells:
        return np.array([])
    return (cells[a] - cells[b]).groupby("seed").mean().dropna().to_numpy(dtype=float)


def judge_selection(claim: Claim, runs: pd.DataFrame, metrics: tuple) -> Verdict:
    """Per seed, dissimilar minus random selection of `metrics` ((name, sign), first is the headline)."""
    rows = []
    for metric, sign in metrics:
        vals = _by_selection(runs, metric, "dissimilar", "random")
        if len(vals):
            level = float(np.nanmean(num(runs[runs.get("data.selection") == "random"], metric)))
            r = mean_effect(vals, sign, 0.1 * abs(level), f"{metric}, dissimilar − random")
            rows.append(r | {"task": "genetic", "group": "", "metric": metric})
    if not rows or rows[0]["metric"] != metrics[0][0]:
        return _inconclusive(
            claim, "needs runs of both random and dissimilar selection with " + metrics[0][0]
        )
    return _verdict(claim, rows[0], rows)


def judge_best_cell(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """PCA x dissimilar has the lowest mae_mean of all (reducer, selection) cells; per seed vs the runner-up."""
    red = runs.get("data.reduce.name", pd.Series("-", index=runs.index)).astype(str)
    cell = red + "/" + runs.get("data.selection", pd.Series("-", index=runs.index)).astype(str)
    runs = runs.assign(_cell=cell, _mae=num(runs, "mae_mean"))
    means = runs.groupby("_cell")["_mae"].mean().dropna().sort_values()
    if "pca/dissimilar" not in means or len(means) < 2:
        return _inconclusive(claim, "needs pca/dissimilar and at least one other (reducer, selection) cell")
    rival = means.drop("pca/dissimilar").index[0]
    per = runs.groupby(["seed", "_cell"])["_mae"].mean().unstack("_cell")
    vals = (per["pca/dissimilar"] - per[rival]).dropna().to_numpy(dtype=float)
    head = mean_effect(vals, -1, 0.1 * abs(means[rival]), f"mae_mean pca/dissimilar − {rival}")
    pd_rows = runs[runs["_cell"] == "pca/dissimilar"]
    extra = ", ".join(
        f"{k} {np.nanmean(v):.3g}"
        for k, v in (
            ("MAE", num(pd_rows, "mae_mean")),
            ("train error", 1 - num(pd_rows, "train_accuracy")),
            ("test error", 1 - num(pd_rows, "test_accuracy")),
        )
    )
    head["bench"] = f"pca/dissimilar: {extra}; best cell {means.index[0]}; {head['bench']}"
    return _verdict(claim, head, [])


def judge_modalities(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Genetic runs' ncc_dist_mean minus image runs' ((task, seed) units), and the gain over held-out."""
    rows = []
    for metric, sign in (("ncc_dist_mean", 1), ("gain/heldout/ncc_dist", -1)):
        if not has(runs, metric):
            continue
        units = runs.assign(_y=num(runs, metric)).groupby(["task", "seed"])["_y"].mean().reset_index()
        gen = units[units["task"].isin(GENETIC_TASKS)]["_y"].to_numpy(dtype=float)
        img = units[units["task"].isin(IMAGE_TASKS)]["_y"].to_numpy(dtype=float)
        diff, lo, hi = two_groups(gen, img)
        a_lo, a_hi = _oriented(lo, hi, sign)
        word = judge(a_lo, a_hi, min(len(gen), len(img)), 0.1 * abs(np.nanmean(img)) if len(img) else np.nan)
        text = (
            f"{metric}: genetic − images {diff:+.3g} [{lo:+.3g}, {hi:+.3g}] ({len(gen)} vs {len(img)} runs)"
        )
        rows.append({"verdict": word, "value": diff, "lo": lo, "hi": hi, "bench": text, "task": "all",
                     "group": "", "metric": metric, "n_seeds": min(len(gen), len(img))})  # fmt: skip
    if not rows:
        return _inconclusive(claim, "runs lack ncc_dist_mean")
    if not rows[0]["n_seeds"]:
        return _inconclusive(claim, "needs runs of a genetic and an image task")
    return _verdict(claim, rows[0], rows)


def judge_margin(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Per seed: mean over runs of margin/spearman (Spearman of per-sample margin vs distance) > 0."""
    if not has(runs, "margin/spearman"):
        return _inconclusive(
            claim, "no run logs margin/spearman (Spearman ρ of per-sample margin vs distance)"
        )
    rows = []
    for task, sub in runs.groupby("task", sort=False):
        r = mean_effect(seed_values(sub, num(sub, "margin/spearman")), 1, 0.1, "Spearman ρ(margin, distance)")
        rows.append(r | {"task": task, "group": "", "metric": "margin/spearman"})
    return _verdict(claim, next(r for t in claim.tasks for r in rows if r["task"] == t), rows)


# --- how much of a training set one attack recovers --------------------------------------------------------

SSIM_GT = "ssim_gt_0.4"  # bench.evaluate.ssim_key at the default eval.ssim_threshold


def judge_reconstructs(claim: Claim, runs: pd.DataFrame) -> Verdict:
    """Per seed: memorised/frac − 0.5 > 0 (headline; 0.5 is what a candidate set that knows only the
    distribution scores against an equally large held-out set), membership/auc − 0.5 > 0, and the SSIM > 0.4
    fraction's gain over the held-out and mean-image baselines > 0. The headline's text gives the SSIM > 0.4
    count and fraction beside the baselines', and the test accuracy."""
    specs = (
        ("memorised/frac", "memorised/frac", -0.5, "memorised/frac − 0.5"),
        ("membership/auc", "membership/auc", -0.5, "membership/auc − 0.5"),
        (f"gain/heldout/{SSIM_GT}", f"gain/heldout/{SSIM_GT}", 0.0, f"{SSIM_GT}/frac, attack − held-out"),
        (f"gain/mean/{SSIM_GT}", f"gain/mean/{SSIM_GT}", 0.0, f"{SSIM_GT}/frac, attack − mean image"),
    )
    rows = []
    for task, sub in runs.groupby("task", sort=False):
        for metric, col, shift, what in specs:
            if has(sub, col):
                r = mean_effect(seed_values(sub, num(sub, col) + shift), 1, 0.1, what)
                rows.append(r | {"task": task, "group": "", "metric": metric})
    heads = [r for t in claim.tasks for r in rows if r["task"] == t and r["metric"] == "memorised/frac"]
    if not heads:
        return _inconclusive(claim, "runs lack memorised/frac")
    head = dict(heads[0])
    task = head["task"]
    sub = runs[runs["task"] == task]

    def mean(col: str) -> float:
        return float(np.nanmean(num(sub, col))) if has(sub, col) else float("nan")

    parts, note = [], ""
    if has(sub, f"{SSIM_GT}/count"):
        attack, held, image = (
            mean(f"{p}{SSIM_GT}/frac") for p in ("", "baseline/heldout/", "baseline/mean/")
        )
        parts.append(
            f"SSIM > 0.4: {mean(f'{SSIM_GT}/count'):.1f} of {mean('data/n_train_distinct'):.0f} training "
            f"images ({attack:.2f}; held-out {held:.2f}, mean image {image:.2f})"
        )
        beaten = [n for n, v in (("held-out samples", held), ("the mean image", image)) if v >= attack]
        if beaten:
            note = (
                f"SSIM > 0.4 does not tell the attack from {' or '.join(beaten)}: window-3 SSIM rewards an "
                "exact-zero background and punishes noise there (docs/metrics.md), so the count alone says "
                "little about what is recovered; read it beside memorised/frac."
            )
    for col, name in (("membership/auc", "membership AUC"), ("test_accuracy", "test accuracy")):
        if has(sub, col):
            parts.append(f"{name} {mean(col):.3g}")
    head["bench"] = f"{task}: " + "; ".join([*parts, head["bench"]])
    v = _verdict(claim, head, [r for r in rows if r["task"] == task], note)
    v.rows = rows
    return v
