"""The truth's own KKT fit (bench.attack.truth): the Gram quadratic against the explicit autograd residual,
the NNLS optimum's optimality conditions, and a network trained with weight decay to stationarity, which
the KKT form describes exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.attack.kkt import Weights, kkt_fit, stationarity_residual, weight_decay_multipliers
from bench.attack.truth import layer_weights, mlp_gram_terms, residual_at, solve, truth_fit


def _net(d: int, widths: list[int], n_out: int, bias: bool, seed: int = 0) -> Weights:
    g = torch.Generator().manual_seed(seed)
    sizes = [d, *widths, n_out]
    mats = tuple(
        torch.randn(sizes[i + 1], sizes[i], generator=g, dtype=torch.float64) / sizes[i] ** 0.5
        for i in range(len(sizes) - 1)
    )
    b = torch.randn(widths[0], generator=g, dtype=torch.float64) * 0.3 if bias else None
    return Weights(mats, b)


@pytest.mark.parametrize("widths", [[12], [12, 9]])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("kind", ["binary", "max", "all"])
def test_gram_quadratic_equals_explicit_residual(widths: list[int], bias: bool, kind: str) -> None:
    """At any lambda >= 0, ||theta_l||^2 - 2 lam.b_l + lam K_l lam equals the residual formed explicitly by
    autograd (float64, 1e-10 relative), for every layer."""
    n_out = 1 if kind == "binary" else 4
    pairs = "max" if kind == "binary" else kind
    w = _net(7, widths, n_out, bias)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((10, 7))
    y = np.where(rng.random(10) < 0.5, -1.0, 1.0) if n_out == 1 else rng.integers(0, n_out, 10)
    terms = mlp_gram_terms(w, torch.as_tensor(x), y, pairs)
    lam = rng.random(terms.K.shape[1])
    lam_t = torch.as_tensor(lam)
    quad = terms.own - 2 * terms.b @ lam_t + torch.einsum("i,lij,j->l", lam_t, terms.K, lam_t)
    explicit = residual_at(w, x, y, lam, pairs)
    np.testing.assert_allclose(quad.numpy(), explicit, rtol=1e-10)
    assert terms.K.shape[1] == (10 * (n_out - 1) if kind == "all" else 10)


def test_binary_residual_matches_the_attacks_fit_at_large_alpha() -> None:
    """The truth's layer-normalised fit at its multipliers equals `kkt_fit` (the attack's fit) evaluated at
    x = the training set, c = y lam and alpha -> infinity: the same quantity the attack minimises."""
    w = _net(6, [11, 8], 1, True, seed=3)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((9, 6))
    y = np.where(np.arange(9) % 2 == 0, -1.0, 1.0)
    for norm, layers in (("layer", ()), ("theta", ()), ("layer", (1, 3))):
        tf = truth_fit(w, x, y, norm, layers)
        c = torch.as_tensor(tf.lam * y)
        attack = kkt_fit(w, torch.as_tensor(x), c, 1e12, "explicit", norm=norm, layers=layers)
        assert float(attack) == pytest.approx(tf.fit, rel=1e-9, abs=1e-14)


@pytest.mark.parametrize("kind", ["binary", "all"])
def test_solution_satisfies_the_bounded_least_squares_optimality_conditions(kind: str) -> None:
    """KKT of min lam^T Q lam - 2 q.lam over lam >= 0: gradient 0 where lam > 0, >= 0 where lam = 0."""
    n_out = 1 if kind == "binary" else 3
    w = _net(8, [15], n_out, False, seed=4)
    rng = np.random.default_rng(5)
    x = rng.standard_normal((12, 8))
    y = np.where(rng.random(12) < 0.5, -1.0, 1.0) if n_out == 1 else rng.integers(0, n_out, 12)
    terms = mlp_gram_terms(w, torch.as_tensor(x), y, "all" if kind == "all" else "max")
    out = solve(terms, "layer")
    wl = layer_weights(terms.own, "layer")
    Q = torch.einsum("l,lij->ij", wl, terms.K).numpy()
    grad = Q @ out.lam - (wl @ terms.b).numpy()
    scale = np.abs(Q).max() * np.abs(out.lam).max() + 1e-300
    active = out.lam > 0
    assert active.any() and (~active).any(), "a degenerate instance tests nothing"
    assert np.abs(grad[active]).max() < 1e-8 * scale
    assert grad[~active].min() > -1e-8 * scale
    assert out.support == int(active.sum())


def test_weight_decay_stationary_network_fits_its_own_data() -> None:
    """Trained with weight decay to a stationary point (L-BFGS, float64), the KKT form holds with
    lam_i = sigmoid(-y_i Phi_i) / (n wd) for every sample: the truth's optimal fit is at most the analytic
    multipliers' (the square of the stationarity residual) and both are tiny.

    The instance is one where the minimiser is smooth: every sample lies in a cone that no hidden unit's
    hyperplane cuts (x_0 = 4 for all). Weight decay's minimisers usually put some unit's hyperplane through
    a training sample (a kink), where no gradient vanishes (docs/identifiability.md)."""
    g = torch.Generator().manual_seed(0)
    n, d, h, wd = 12, 6, 10, 1e-3
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    x[:, 0] = 4.0
    y = torch.where(x[:, 1] > 0, 1.0, -1.0).double()
    W1 = torch.randn(h, d, generator=g, dtype=torch.float64) / d**0.5
    W1[:, 0] = W1[:, 0].abs() + 1
    W1.requires_grad_()
    W2 = (torch.randn(1, h, generator=g, dtype=torch.float64) / h**0.5).requires_grad_()
    params = [W1, W2]
    opt = torch.optim.LBFGS(
        params,
        lr=1,
        max_iter=5000,
        tolerance_grad=1e-14,
        tolerance_change=0,
        history_size=100,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        phi = (torch.relu(x @ W1.T) @ W2.T).squeeze(-1)
        penalty = sum((p * p).sum() for p in params)
        loss = torch.nn.functional.softplus(-y * phi).mean() + wd / 2 * penalty
        loss.backward()
        return loss

    opt.step(closure)
    w = Weights((W1.detach(), W2.detach()))
    lam_wd = weight_decay_multipliers(w, x, y, wd)
    stationarity = stationarity_residual(w, x, y, lam_wd)
    assert stationarity < 1e-4, "the instance did not reach its stationary point: it tests nothing"
    tf = truth_fit(w, x.numpy(), y.numpy(), "theta")
    assert tf.fit <= stationarity**2 * (1 + 1e-6) + 1e-15
    assert tf.fit < 1e-8
    assert tf.support == n  # with weight decay every sample carries a multiplier
    np.testing.assert_allclose(tf.lam, lam_wd.numpy(), rtol=1e-2)


def test_optimum_beats_the_weight_decay_multipliers_away_from_stationarity() -> None:
    """A network trained with weight decay by a few hundred GD steps (far from stationary): the optimal
    multipliers fit at least as well as the analytic ones, in both norms."""
    g = torch.Generator().manual_seed(3)
    n, wd = 14, 1e-2
    x = torch.randn(n, 5, generator=g, dtype=torch.float64)
    y = torch.where(torch.arange(n) % 2 == 0, -1.0, 1.0).double()
    params = [
        (torch.randn(16, 5, generator=g, dtype=torch.float64) * 0.5).requires_grad_(),
        torch.zeros(16, dtype=torch.float64, requires_grad=True),
        (torch.randn(1, 16, generator=g, dtype=torch.float64) * 0.5).requires_grad_(),
    ]
    opt = torch.optim.SGD(params, lr=0.5, weight_decay=wd)
    for _ in range(300):
        opt.zero_grad()
        phi = (torch.relu(x @ params[0].T + params[1]) @ params[2].T).squeeze(-1)
        torch.nn.functional.softplus(-y * phi).mean().backward()
        opt.step()
    w = Weights((params[0].detach(), params[2].detach()), params[1].detach())
    lam_wd = weight_decay_multipliers(w, x, y, wd)
    analytic = float(torch.as_tensor(residual_at(w, x.numpy(), y.numpy(), lam_wd.numpy())).sum())
    tf = truth_fit(w, x.numpy(), y.numpy(), "theta")
    assert tf.fit * float(w.sq_norm()) <= analytic * (1 + 1e-9)
    assert stationarity_residual(w, x, y, lam_wd) ** 2 == pytest.approx(analytic / float(w.sq_norm()))


# --- the truth's fit in every run ----------------------------------------------------------------------


def test_every_run_logs_the_truth_beside_the_attack() -> None:
    """A binary run's metrics hold the truth's fit (equal to `truth_fit` on the run's own classifier and
    data), its per-layer values and support, and the attack's exact fit with its comparison; the truth
    probe starts the attack at the training set."""
    from bench.experiment import attack_and_evaluate, prepare, resolve_config
    from bench.tasks import get_task

    over = {"data.n_per_class": 4, "model.width": 60, "attack.steps": 60, "attack.truth_probe": 40}
    cfg = resolve_config(get_task("blobs-rect"), "smoke", over, 25, seed=0)
    prep = prepare(cfg)
    result = attack_and_evaluate(prep)
    m = result.settings[0].metrics
    tf = truth_fit(prep.weights, prep.data.x_train - prep.mean, prep.data.y_train)
    assert m["truth/kkt_fit"] == pytest.approx(tf.fit, rel=1e-9)
    for layer in range(1, prep.weights.depth + 1):
        assert 0 <= m[f"truth/kkt_fit_layer{layer}"] <= 1.0 + 1e-9
    assert 1 <= m["truth/support"] <= 8
    assert m["attack/fit_below_truth"] == float(m["attack/fit_relu"] < m["truth/kkt_fit"])
    assert m["attack/fit_over_truth"] == pytest.approx(m["attack/fit_relu"] / m["truth/kkt_fit"])
    # the probe: the attack started at the training set (it returns its best state by the objective)
    assert m["truth_probe/steps"] == 40
    assert -1e-12 <= m["truth_probe/drift"] < 2 and np.isfinite(m["truth_probe/fit"])
    assert "truth_s" in result.timings and "truth_probe_s" in result.timings


def test_truth_probe_with_zero_steps_left_at_the_data_does_not_drift() -> None:
    """A probe of one step with a vanishing step size ends where it started: drift ~0, its exact fit the
    truth's own (the candidates are the training set, the multipliers the truth's)."""
    from bench.experiment import attack_and_evaluate, prepare, resolve_config
    from bench.tasks import get_task

    over = {
        "data.n_per_class": 4,
        "model.width": 60,
        "attack.steps": 20,
        "attack.truth_probe": 1,
        "attack.lr": 1e-12,
        "attack.lr_lambda": 1e-12,
    }
    cfg = resolve_config(get_task("blobs-rect"), "smoke", over, 25, seed=1)
    m = attack_and_evaluate(prepare(cfg)).settings[0].metrics
    assert m["truth_probe/drift"] < 1e-9
    assert m["truth_probe/fit"] == pytest.approx(m["truth/kkt_fit"], rel=1e-6)


def test_multiclass_runs_log_the_truth_in_buzaglos_form() -> None:
    """A C-class run (pairs=all): one multiplier per (sample, other class); the fit equals `truth_fit`."""
    from bench.experiment import attack_and_evaluate, prepare, resolve_config
    from bench.tasks import get_task

    cfg = resolve_config(get_task("digits-multiclass"), "smoke", {"attack.steps": 20}, None, seed=0)
    prep = prepare(cfg)
    m = attack_and_evaluate(prep).settings[0].metrics
    x = prep.data.x_train - prep.mean
    tf = truth_fit(prep.weights, x, prep.data.y_train, cfg.attack.fit_norm, (), "all")
    C = prep.weights.mats[-1].shape[0]
    assert tf.rows == len(x) * (C - 1)
    assert m["truth/kkt_fit"] == pytest.approx(tf.fit, rel=1e-9)
    assert "attack/fit_below_truth" in m


def test_fewer_candidates_than_samples() -> None:
    """attack.m_factor=0.5: m = n/2 candidates, scored like any set."""
    from bench.experiment import resolve_config, run_experiment
    from bench.tasks import get_task

    over = {"data.n_per_class": 4, "model.width": 40, "attack.steps": 10, "attack.m_factor": 0.5}
    result = run_experiment(resolve_config(get_task("blobs-rect"), "smoke", over, 25, seed=0))
    assert result.settings[0].recon.shape[0] == 4


def test_surrogate_truth_equals_the_attacks_fit_at_its_slope() -> None:
    """At a finite alpha the truth's quadratic is the attack's own fit (`kkt_fit`, surrogate slope
    sigmoid(alpha h)) at x = the training set, for the optimal multipliers."""
    w = _net(6, [11, 8], 1, True, seed=5)
    rng = np.random.default_rng(4)
    x = rng.standard_normal((9, 6))
    y = np.where(np.arange(9) % 3 == 0, -1.0, 1.0)
    tf = truth_fit(w, x, y, "layer", (), "max", alpha=7.0)
    attack = kkt_fit(w, torch.as_tensor(x), torch.as_tensor(tf.lam * y), 7.0, "explicit", norm="layer")
    assert float(attack) == pytest.approx(tf.fit, rel=1e-9)


def test_report_notes_state_the_truth_and_say_how_to_read_the_verdict() -> None:
    """The claim note gives the truth's fit (median, range), the below-truth count, and the two warnings."""
    import pandas as pd

    from bench.analysis.notes import truth_counts

    rows = pd.DataFrame(
        {
            "truth/kkt_fit": [0.10, 0.12, 0.14],
            "truth/kkt_fit_layer1": [0.20, 0.22, 0.25],
            "attack/fit_below_truth": [1.0, 1.0, 0.0],
        }
    )
    note = truth_counts(rows)
    assert "median 0.12 (0.1-0.14)" in note and "first layer median 0.22 (0.2-0.25)" in note
    assert "went below it in 2 of 3 runs" in note
    assert "outside the regime" in note and "not the data" in note
    good = rows.assign(**{"truth/kkt_fit_layer1": [0.02, 0.03, 0.04], "attack/fit_below_truth": [0.0, 0, 1]})
    quiet = truth_counts(good)
    assert "went below it in 1 of 3 runs" in quiet
    assert "outside the regime" not in quiet and "not the data" not in quiet
    assert truth_counts(rows.drop(columns=["truth/kkt_fit"])) == ""
    # eval.truth_clarke: kinks explain the excess (the kkt recipe at the paper's scale: 8-9% against 0.6-0.8%)
    kinks = truth_counts(rows.assign(**{"truth/kkt_fit_clarke_layer1": [0.006, 0.008, 0.007]}))
    assert "Clarke form (a sample on a first-layer kink takes any slope), first layer median 0.007" in kinks
    assert "outside the regime" not in kinks and "the rest is samples on a unit's kink" in kinks
    far = truth_counts(rows.assign(**{"truth/kkt_fit_clarke_layer1": [0.07, 0.08, 0.09]}))
    assert "outside the regime" in far and "unit's kink" not in far


def test_clarke_truth_relaxes_only_kink_pairs_and_never_fits_worse() -> None:
    """clarke_truth: no kink within tol 0, so the exact truth; with a tolerance, never above it."""
    from bench.attack.truth import clarke_truth

    w = _net(6, [40], 1, True, seed=7)
    rng = np.random.default_rng(8)
    x = rng.standard_normal((20, 6))
    y = np.where(np.arange(20) % 2 == 0, -1.0, 1.0)
    exact = truth_fit(w, x, y)
    none, kinks0 = clarke_truth(w, x, y, tol=0.0)
    assert kinks0 == 0 and none.fit == pytest.approx(exact.fit, rel=1e-12)
    relaxed, kinks = clarke_truth(w, x, y, tol=0.05)
    assert kinks > 0 and relaxed.fit <= exact.fit * (1 + 1e-9)
    assert relaxed.layers[1] == pytest.approx(relaxed.layers[1])  # finite


def test_kink_slopes_solve_each_units_box_least_squares() -> None:
    """The batched coordinate descent of `_kink_slopes` reaches scipy's bounded least squares per unit."""
    from scipy.optimize import lsq_linear

    from bench.attack.truth import _kink_slopes

    g = torch.Generator().manual_seed(2)
    n, H, d = 12, 5, 7
    xa = torch.randn(n, d, generator=g, dtype=torch.float64)
    coef = torch.randn(n, H, generator=g, dtype=torch.float64)
    kink = torch.rand(n, H, generator=g) < 0.4
    target = torch.randn(H, d, generator=g, dtype=torch.float64)
    out = _kink_slopes(target, coef, xa, kink, torch.full((n, H), 0.5, dtype=torch.float64), sweeps=500)
    for k in range(H):
        idx = torch.nonzero(kink[:, k]).flatten()
        if len(idx) == 0:
            assert torch.all(out[:, k] == 0.5)
            continue
        cols = (coef[idx, k][:, None] * xa[idx]).T.numpy()
        ref = lsq_linear(cols, target[k].numpy(), bounds=(0.0, 1.0), tol=1e-12).x
        np.testing.assert_allclose(out[idx, k].numpy(), ref, atol=1e-5)
        assert torch.all(out[~kink[:, k], k] == 0.5)


def test_a_run_can_log_the_clarke_truth() -> None:
    from bench.experiment import resolve_config, run_experiment
    from bench.tasks import get_task

    over = {"data.n_per_class": 4, "model.width": 60, "attack.steps": 10, "eval.truth_clarke": True}
    m = run_experiment(resolve_config(get_task("blobs-rect"), "smoke", over, 25, seed=0)).settings[0].metrics
    assert m["truth/kkt_fit_clarke"] <= m["truth/kkt_fit"] * (1 + 1e-9)
    assert m["truth/kinks_layer1"] >= 0 and 0 <= m["truth/kinks_layer1_frac"] <= 1


def test_clarke_stationarity_is_the_weight_decay_stationarity_where_no_sample_sits_on_a_kink() -> None:
    """Without kinks (tol 0) it is `stationarity_residual` at weight decay's multipliers; with kinks allowed
    it is never larger (binary), and the multiclass form (cross-entropy's multipliers) is finite."""
    from bench.attack.truth import clarke_stationarity

    w = _net(6, [30], 1, True, seed=9)
    rng = np.random.default_rng(10)
    x = rng.standard_normal((16, 6))
    y = np.where(np.arange(16) % 2 == 0, -1.0, 1.0)
    lam = weight_decay_multipliers(w, torch.as_tensor(x), torch.as_tensor(y), 1e-2)
    smooth = stationarity_residual(w, torch.as_tensor(x), torch.as_tensor(y), lam)
    assert clarke_stationarity(w, x, y, 1e-2, tol=0.0) == pytest.approx(smooth, rel=1e-9)
    assert clarke_stationarity(w, x, y, 1e-2, tol=0.05) <= smooth * (1 + 1e-9)
    wm = _net(6, [30], 3, False, seed=11)
    assert np.isfinite(clarke_stationarity(wm, x, rng.integers(0, 3, 16), 1e-2))


def test_a_tracked_series_logs_the_truth_and_counts_attacks_below_it(tracking_uri: str) -> None:
    """`bench run`'s path (MLflow, streamed curves) with restarts: every child run holds truth/* and
    attack/fit_below_truth, and the parent counts the runs below the truth."""
    from mlflow.tracking import MlflowClient

    from bench.runner import run_task
    from bench.tasks import get_task

    over = {
        "data.n_per_class": 3,
        "model.width": 40,
        "attack.steps": 20,
        "attack.restarts": 2,
        "data.blob_size": 25,
    }
    summary = run_task(get_task("blobs-rect"), "smoke", seeds=2, overrides=over, tracking_uri=tracking_uri)
    client = MlflowClient(tracking_uri)
    below = 0.0
    for run_id in summary.child_run_ids:
        metrics = client.get_run(run_id).data.metrics
        assert {"truth/kkt_fit", "truth/kkt_fit_layer1", "truth/support", "attack/fit_below_truth"} <= set(
            metrics
        )
        assert metrics["attack/restart"] in (0.0, 1.0)
        below += metrics["attack/fit_below_truth"]
    parent = client.get_run(summary.parent_run_id).data.metrics
    assert parent["runs/fit_below_truth"] == below


def test_a_named_training_recipe_sets_its_values_and_explicit_keys_win() -> None:
    from bench.errors import ConfigError
    from bench.experiment import resolve_config
    from bench.tasks import get_task

    task = get_task("mnist-parity")
    kkt = resolve_config(task, "quick", {"train.recipe": "kkt"})
    assert (kkt.train.weight_decay, kkt.train.max_epochs, kkt.train.stationary_tol) == (1e-3, 4000, 0.05)
    mine = resolve_config(task, "quick", {"train.recipe": "kkt", "train.weight_decay": "1e-2"})
    assert mine.train.weight_decay == 1e-2 and mine.train.max_epochs == 4000
    assert resolve_config(task, "kkt").train.weight_decay == 1e-3
    with pytest.raises(ConfigError, match="train.recipe.*target, kkt"):
        resolve_config(task, "quick", {"train.recipe": "fast"})


def test_the_classifier_cache_gives_the_same_classifier_and_says_so(tmp_path, monkeypatch) -> None:
    """$BENCH_CLASSIFIER_CACHE: the second prepare of one classifier config reads the first's network
    (equal weights and metrics, train_cached = 1); an attack-only change hits the cache, a train change
    does not."""
    from bench.experiment import prepare, resolve_config
    from bench.tasks import get_task

    monkeypatch.setenv("BENCH_CLASSIFIER_CACHE", str(tmp_path))
    task = get_task("blobs-rect")
    over = {"data.n_per_class": 3, "model.width": 30}
    a = prepare(resolve_config(task, "smoke", over, 25, seed=0))
    b = prepare(resolve_config(task, "smoke", over | {"attack.steps": 7}, 25, seed=0))
    assert "train_cached" not in a.timings and b.timings["train_cached"] == 1.0
    assert b.config.attack.steps == 7 and b.train_metrics == a.train_metrics
    for wa, wb in zip(a.weights.mats, b.weights.mats, strict=True):
        assert torch.equal(wa, wb)
    c = prepare(resolve_config(task, "smoke", over | {"train.lr": 0.5}, 25, seed=0))
    assert "train_cached" not in c.timings and len(list(tmp_path.glob("*.pkl"))) == 2
