"""The notes a claim's verdict carries beside its figure (`bench.analysis.claims.Claim.evaluate`): how many
attacks converged, how well the training set itself explains the weights (the truth's own KKT fit, and how
many attacks went below it), and the budget check (the same points re-run with a longer attack)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

# A profile's budget check: the same points re-run with a longer attack (profile "<name>-budget")
BUDGET_SUFFIX = "-budget"


# the param prefixes that decide the trained classifier (not the attack's): runs that agree on them and on
# task and seed attacked the same model (budget checks, paired comparisons of stores)
CLASSIFIER_PARAMS = ("data.", "model.", "train.")


def classifier_keys(runs: pd.DataFrame) -> list[str]:
    """The columns of a runs table (`load_runs`) that decide the trained classifier: task, seed and every
    `CLASSIFIER_PARAMS` parameter present. Rows equal on them attacked the same model."""
    return [k for k in ("task", "seed") if k in runs] + sorted(
        c for c in runs if c.startswith(CLASSIFIER_PARAMS)
    )


def attack_counts(rows: pd.DataFrame) -> str:
    """' Attacks converged: c of N (s of N over the last fifth of the step-size integral) (d degraded).'
    for the rows that carry the flags, else ''."""
    from bench.analysis.verdicts import num

    if "attack/converged" not in rows or rows.empty:
        return ""
    conv = num(rows, "attack/converged")
    text = f" Attacks converged: {int((conv > 0.5).sum())} of {int(conv.notna().sum())}"
    if "attack/converged_movement" in rows:  # logged since 2026-12-05
        strict = num(rows, "attack/converged_movement")
        if strict.notna().any():
            n, k = int(strict.notna().sum()), int((strict > 0.5).sum())
            text += f" ({k} of {n} over the last fifth of the step-size integral)"
    if "attack/degraded" in rows:
        text += f" ({int((num(rows, 'attack/degraded') > 0.5).sum())} degraded)"
    return text + "."


# The share of the first layer a training set may leave unexplained for its network to count as in the KKT
# regime: the blob paper models, which the attack reconstructs fully, sit at 2-4% (docs/identifiability.md)
TRUTH_LAYER1_LIMIT = 0.05


def truth_counts(rows: pd.DataFrame) -> str:
    """' Truth's fit: median F (lo-hi), first layer median F1 (lo-hi); the attack went below it in k of N
    runs.' and, where the truth leaves much unexplained or the attack went below it in most runs, a sentence
    saying how to read the verdict; '' for rows without the truth's fit (runs before 2026-12-07)."""
    from bench.analysis.verdicts import num

    if "truth/kkt_fit" not in rows or rows.empty:
        return ""
    fit = num(rows, "truth/kkt_fit").dropna()
    if fit.empty:
        return ""

    def spread(v: pd.Series) -> str:
        return f"median {v.median():.3g} ({v.min():.3g}-{v.max():.3g})"

    text = f" Truth's own KKT fit (the training set's best multipliers, exact ReLU): {spread(fit)}"
    layer1 = num(rows, "truth/kkt_fit_layer1").dropna() if "truth/kkt_fit_layer1" in rows else fit.iloc[0:0]
    if not layer1.empty:
        text += f", first layer {spread(layer1)}"
    key = "truth/kkt_fit_clarke_layer1"  # eval.truth_clarke: the derivative free in [0, 1] on a kink
    clarke = num(rows, key).dropna() if key in rows else fit.iloc[0:0]
    if not clarke.empty:
        text += f"; in the Clarke form (a sample on a first-layer kink takes any slope), first layer {spread(clarke)}"
    below = (
        num(rows, "attack/fit_below_truth").dropna() if "attack/fit_below_truth" in rows else fit.iloc[0:0]
    )
    k = int((below > 0.5).sum())
    if not below.empty:
        text += f"; the attack's fit went below it in {k} of {len(below)} runs"
    text += "."
    if not clarke.empty and not layer1.empty and layer1.median() > TRUTH_LAYER1_LIMIT >= clarke.median():
        text += (
            f" The exact derivative leaves more than {TRUTH_LAYER1_LIMIT:.0%} of the first layer unexplained,"
            " the Clarke form does not: the rest is samples on a unit's kink, and the networks are in the"
            " regime where the KKT conditions hold (in the form they take for a non-smooth network)."
        )
    elif not layer1.empty and layer1.median() > TRUTH_LAYER1_LIMIT:
        text += (
            f" The training set itself leaves more than {TRUTH_LAYER1_LIMIT:.0%} of the first layer"
            " unexplained: these networks are outside the regime where the KKT theory holds, so the verdict"
            " measures the networks as much as the attack."
        )
    if not below.empty and k > len(below) / 2:
        text += (
            " In most runs the attack explained the weights better than the training set does: the"
            " objective's minimum is not the data there, and the candidates mix training samples with"
            " shapes that fit the weights better than the data do."
        )
    return text


def budget_check(
    runs: pd.DataFrame,
    used: pd.DataFrame,
    tasks: tuple[str, ...],
    counted: Callable[[pd.DataFrame], pd.DataFrame] | None = None,
    metric: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame | None, str]:
    """(rows at the main attack budget, the same rows with every point that was re-run with a longer attack
    replaced by that run (None if none was), a phrase saying what was compared and, given `metric`, how far
    each re-run attack moved it: the range of (longer − main budget) over the re-run points, and the median
    of its absolute value. A verdict can survive a budget check while single attacks still move; the range
    says by how much, in the metric's own units).

    The main budget is the most common `attack.steps` of `used`; the longer runs are the rows of the same
    tasks, at the same profiles or their "<profile>-budget" profiles, with more steps, that the claim
    counts (`counted`, default: the usable ones, whose classifier and attack converged; the defence claim
    counts every run), matched on the classifier they attacked (task, seed, and every data.*, model.* and
    train.* parameter). A claim whose verdict differs between the two is inconclusive (`Claim.evaluate`).
    """
    from bench.analysis.trends import usable
    from bench.analysis.verdicts import num

    if used.empty or "attack.steps" not in used:
        return used, None, "No budget check (no attack budget logged)"
    steps = num(used, "attack.steps")
    main = float(steps.mode().iloc[0])
    base = used[steps == main]
    profiles = set(map(str, used["profile"])) if "profile" in used else set()
    pool = runs[runs["task"].isin(tasks)] if "task" in runs else runs.iloc[0:0]
    if profiles and "profile" in pool:
        pool = pool[pool["profile"].isin(profiles | {p + BUDGET_SUFFIX for p in profiles})]
    longer = (
        (counted or usable)(pool[num(pool, "attack.steps") > main])
        if "attack.steps" in pool
        else pool.iloc[0:0]
    )
    if longer.empty:
        return base, None, f"No budget check (one attack budget, {main:.0f} steps)"
    # the same classifier: task, seed and every data, model and training parameter
    keys = [k for k in classifier_keys(base) if k in longer]
    longer = longer.assign(_steps=num(longer, "attack.steps")).sort_values("_steps")
    last = longer.drop_duplicates(keys, keep="last").drop(columns="_steps")
    index = pd.MultiIndex.from_frame(base[keys].astype(str))
    replace = pd.MultiIndex.from_frame(last[keys].astype(str))
    hit = index.isin(replace)
    if not hit.any():
        return base, None, f"No budget check (no point of the {main:.0f}-step runs was re-run longer)"
    matched = last[replace.isin(index)]
    if "profile" in base:  # a re-run stands in for its point: it joins that point's profile (trend groups)
        where = dict(zip(index, base["profile"], strict=True))
        matched = matched.assign(profile=[where[k] for k in replace[replace.isin(index)]])
    alt = pd.concat([base[~hit], matched], ignore_index=True)
    budgets = "/".join(f"{s:.0f}" for s in sorted(num(matched, "attack.steps").unique()))
    why = f"{len(matched)} of {len(base)} runs re-run at {budgets} steps instead of {main:.0f}"
    if metric and metric in base and metric in matched and index.is_unique:
        before = pd.Series(num(base, metric).to_numpy(), index=index)
        shift = num(matched, metric).to_numpy() - before.loc[replace[replace.isin(index)]].to_numpy()
        shift = shift[np.isfinite(shift)]
        if shift.size:
            why += (
                f" ({metric} moved by {shift.min():+.3g} to {shift.max():+.3g}, median |change| "
                f"{np.median(np.abs(shift)):.3g})"
            )
    return base, alt, why
