"""Typed run configuration with dotted overrides (`--set attack.lr=0.05`).

A run's configuration is a tree of dataclasses: `RunConfig` holds the task's data config (a dataclass
declared by the task family) and the shared model, training, attack and evaluation configs. Overrides are
strings `dotted.key=value`; the value is parsed by the field's declared type and every config checks its
ranges in `check()`, so a typo or an impossible value fails before any work starts, naming the key.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from bench.errors import ConfigError


@dataclass
class ModelConfig:
    """The attacked network: a homogeneous ReLU MLP or CNN with 1 output (binary) or C (multiclass).

    `arch` "mlp": d -> width^(depth-1) -> n_out; `depth` counts weight layers (2 = one hidden layer).
    `arch` "cnn" (image data only): per entry of `channels`, a `kernel` x `kernel` convolution ("same"
    zero padding, stride 1) -> ReLU -> a 2x2 `pool` ("avg", "max" or "none"), then a bias-free linear
    head; len(channels) + 1 weight layers (`depth` and `width` unused). Average pooling is linear, max
    pooling positively homogeneous, so the network stays homogeneous of degree `n_layers`, and the attack
    forms its residual by autograd (bench.attack.engine). `arch` "module": the network a function in a
    Python file builds, `module` = "FILE.py:FUNCTION" with FUNCTION(d, n_out, image_shape) -> a torch
    module from flat inputs (n, d) to logits (n, n_out) (e.g. an nn.Sequential starting with
    nn.Unflatten); refused before training, naming the layer, unless positively homogeneous
    (bench.attack.engine.from_module). `bias` (mlp, cnn): "none" makes the network exactly homogeneous;
    "first" keeps a bias on the first layer only, as in Haim et al.'s code (the network stays
    homogeneous jointly in (W1, b1, W2, ...), and the KKT sums include the bias gradient).
    """

    depth: int = 3
    width: int = 1000
    bias: Literal["none", "first"] = "none"
    arch: Literal["mlp", "cnn", "module"] = "mlp"
    channels: tuple[int, ...] = (64,)
    kernel: int = 3
    pool: Literal["avg", "max", "none"] = "none"
    module: str = ""

    @property
    def n_layers(self) -> int | None:
        """Weight layers L: the degree of homogeneity, and the layers `attack.fit_layers` numbers (None
        for `arch` "module": known once the network is built)."""
        return {"mlp": self.depth, "cnn": len(self.channels) + 1}.get(self.arch)

    def check(self) -> None:
        require(self.depth >= 2, "model.depth", self.depth, "an integer >= 2 (weight layers)")
        require(self.width >= 1, "model.width", self.width, "a positive integer")
        require(
            len(self.channels) >= 1 and all(c >= 1 for c in self.channels),
            "model.channels",
            self.channels,
            "one or more positive channel counts, one per convolution, e.g. 32,32",
        )
        require(
            self.kernel >= 1 and self.kernel % 2 == 1,
            "model.kernel",
            self.kernel,
            "an odd kernel side >= 1 (same padding keeps the image size), e.g. 3",
        )
        require(
            self.arch != "module" or ":" in self.module,
            "model.module",
            self.module,
            "FILE.py:FUNCTION with model.arch=module, e.g. my_net.py:build",
        )


@dataclass
class TrainConfig:
    """Full-batch gradient descent on the logistic loss, from a small first-layer init.

    `init_scale`: std of the N(0, init_scale^2) init of the first layer; deeper layers keep PyTorch's
    default (Kaiming-uniform) init, as in Haim et al., times `init_hidden` (1: as Haim et al.). Training
    stops at `target_loss` or `max_epochs`.
    `weight_decay`: L2 coefficient wd on every parameter (biases too): gradient descent on
    mean logistic loss + (wd/2) ||theta||^2 (the logged loss is the data term alone). With wd > 0 the data
    loss may never reach `target_loss`; the target also counts as reached once the regularised objective
    is stationary, ||grad|| <= `stationary_tol` * wd ||theta|| (checked every `log_every` epochs), or, at the
    end, stationary in the Clarke sense (`train_stationarity_clarke`: samples on a first-layer kink may take
    any derivative in [0, 1]; weight decay's minimisers put many there, where the gradient never vanishes;
    bench.attack.truth.clarke_stationarity).
    `extra_epochs`: epochs of training after the target is reached (the margin keeps growing); they are
    not bounded by `max_epochs`, which bounds the search for the target.
    Early stopping as a defence is `max_epochs` (a stated number of epochs, see docs/defences.md).
    `recipe`: a named set of these values (`TRAIN_RECIPES`; keys given explicitly, by a profile or
    `--set`, win): "target" (the defaults: to `target_loss`, Haim et al.'s regime) or "kkt" (weight decay
    1e-3 for 4,000 epochs, to a stationary point in the Clarke sense: the network the KKT attack assumes,
    docs/identifiability.md).

    `dp`: differentially private full-batch gradient descent instead (bench.train.dp_gradient): each
    sample's gradient clipped to L2 norm `dp_clip`, Gaussian noise N(0, (sigma dp_clip)^2) added to their
    sum, divided by n; exactly `dp_epochs` steps (the accountant's count; `target_loss` and `max_epochs`
    do not stop it). sigma is calibrated by Opacus (`get_noise_multiplier`, accountant `dp_accountant`,
    sampling rate 1) so that the run is (`dp_epsilon`, `dp_delta`)-DP; `dp_epsilon` = inf means no noise
    (clipping only), `dp_clip` = inf no clipping (only with `dp_epsilon` = inf). `dp_delta` must be
    below 1/n (n = training set size; checked when the data are known, before training).
    """

    recipe: Literal["target", "kkt"] = "target"
    lr: float = 1.0
    init_scale: float = 1e-4
    init_hidden: float = 1.0
    target_loss: float = 1e-4
    max_epochs: int = 20000
    dtype: Literal["float32", "float64"] = "float64"
    log_every: int = 10
    weight_decay: float = 0.0
    stationary_tol: float = 1e-3
    extra_epochs: int = 0
    dp: bool = False
    dp_epsilon: float = 1.0
    dp_delta: float = 1e-5
    dp_clip: float = 1.0
    dp_epochs: int = 100
    dp_accountant: Literal["rdp", "prv"] = "rdp"

    def check(self) -> None:
        require(self.lr > 0, "train.lr", self.lr, "a positive learning rate")
        require(self.init_scale > 0, "train.init_scale", self.init_scale, "a positive std, e.g. 1e-4")
        require(
            self.init_hidden > 0,
            "train.init_hidden",
            self.init_hidden,
            "a positive factor on PyTorch's default init of the layers after the first, e.g. 1 or 0.01",
        )
        require(self.target_loss > 0, "train.target_loss", self.target_loss, "a positive loss")
        require(self.max_epochs >= 1, "train.max_epochs", self.max_epochs, "a positive integer")
        require(self.log_every >= 1, "train.log_every", self.log_every, "a positive integer")
        require(self.weight_decay >= 0, "train.weight_decay", self.weight_decay, "a number >= 0, e.g. 1e-3")
        require(self.stationary_tol > 0, "train.stationary_tol", self.stationary_tol, "a positive number")
        require(self.extra_epochs >= 0, "train.extra_epochs", self.extra_epochs, "an integer >= 0")
        eps, clip = self.dp_epsilon, self.dp_clip
        fix = "; fix: --set train.dp_"
        require(eps > 0, "train.dp_epsilon", eps, f"a privacy budget > 0{fix}epsilon=1 (inf: no noise)")
        require(clip > 0, "train.dp_clip", clip, f"a clipping norm > 0{fix}clip=1 (inf: no clipping)")
        require(0 < self.dp_delta < 1, "train.dp_delta", self.dp_delta, f"in (0, 1/n){fix}delta=1e-5")
        require(
            self.dp_epochs >= 1,
            "train.dp_epochs",
            self.dp_epochs,
            "a positive number of steps; fix: --set train.dp_epochs=100",
        )
        require(
            math.isfinite(clip) or not math.isfinite(eps),
            "train.dp_clip",
            clip,
            f"a finite clipping norm with train.dp_epsilon={eps:g} (the noise is sigma * dp_clip); fix: --set train.dp_clip=1",
        )


# Named training recipes (`train.recipe`): the train.* values each one sets (docs/identifiability.md)
TRAIN_RECIPES: dict[str, dict[str, Any]] = {
    "target": {},
    "kkt": {"train.weight_decay": 1e-3, "train.max_epochs": 4000, "train.stationary_tol": 0.05},
}


def expand_recipe(steps: dict[str, Any]) -> dict[str, Any]:
    """`steps` with the keys of its `train.recipe` put first, so that keys given explicitly win; an unknown
    recipe is left for the config's own check (exit 2 naming the recipes)."""
    recipe = TRAIN_RECIPES.get(str(steps.get("train.recipe", "")).strip())
    return {**recipe, **steps} if recipe else steps


@dataclass
class AttackConfig:
    """Haim et al.'s reconstruction: candidates x and multipliers lambda fitted to the KKT condition.

    `m_factor`: candidates per training sample (m = round(m_factor * n), at least 2; labels balanced +-1). `init_scale`:
    std of the N(0, init_scale^2) init of x (centred data scale). `lam_min`: lower bound on the
    normalised multipliers l (lambda = s * l, s = ||theta||^2 / (L m), see bench.attack.kkt).
    `alpha`: slope of the sigmoid that replaces the ReLU derivative. `optimizer`: "adam" or "sgd"
    (momentum 0.9, as in the reference code). `beta2`: Adam's second-moment decay (0.99: where a gradient
    grows after a calm stretch, the update reaches up to 2.1x the step size; at 0.999, 6.6x, and the
    fit spikes). `eval_every`: steps between DSSIM/L2 monitor points.
    `dtype`: "bfloat16" keeps x, lambda and the optimiser in float32 and runs the matrix products in
    bfloat16 (CPU autocast; fast where the CPU has AMX or AVX512-BF16).
    `normalize`: "margin" rescales the weights so the smallest training margin is 1 (the normalisation
    of the max-margin problem whose KKT point the attack fits); "none" uses the weights as trained.
    `stop`: "plateau" ends a setting once it has stopped improving: at a monitor point (every
    `eval_every` steps), the improvement of the best float64 objective and of the best monitored error
    over the last `stop_window` steps are both below `stop_tol`: the error's relative to itself, the
    objective's relative to max(its value, `stop_floor`), i.e. with the default floor 1 in units of
    ||theta||^2 (as scipy's L-BFGS-B `ftol`; see bench.attack.reconstruct.plateau; `stop_floor` 0 is the
    rule before 2026-12-04, relative to the objective itself); `steps` is then the cap. "none" runs
    all `steps`; the same rule, applied at the last step, still reports whether the attack had converged.
    `stop_window` 0 (the default) is a fifth of `steps` (1,000 of 5,000): a window as long as the run
    would judge the attack against its random start, where no attack that moved is ever converged; the
    rule holds only where a monitor point after step 0 lies before the window (`plateau_window`).
    The monitored error uses the training data: the rule is a benchmark's privilege, not an attacker's.
    `compile`: run the loss and the optimiser step through torch.compile (fused elementwise work; ~2x a
    bf16 step on a CPU at the paper's scale, after ~10-30 s of compilation per process; see
    bench.attack.kkt.loss_function and bench.attack.optim.Optimizer).
    `fit_norm`: "layer" (default) averages every layer's residual divided by that layer's ||theta_l||^2;
    "theta" divides the summed residual by ||theta||^2 (Haim et al.; see bench.attack.kkt.kkt_fit).
    `fit_layers`: the layers (1-based, e.g. "1,3") the fit is made of; empty: all. `residual`: how the
    steps compute it: "auto" (the default: explicit in bfloat16, else the cheaper route per layer, which
    is "gram" at the paper's 784-1000-1000-1 with m = 200; see bench.attack.kkt.residual_routes),
    "explicit" (a sum of squares: its rounding error is relative to the residual) or "gram" (expanded
    through m x m Gram matrices: fewer FLOPs when m is small, rounding error relative to ||theta||^2;
    the float64 check below guards it, and a flagged run goes on explicit).
    `schedule`: the step size over the run: "cosine" (default: decay to 0 at `steps`), "constant", or
    "step" (x0.1 after two thirds of `steps`); after `warmup` steps of linear warm-up (at most a tenth of
    `steps`). `alpha_final`: > 0 anneals the surrogate's slope geometrically from `alpha` to
    `alpha_final` over `steps` (0: constant alpha). The defaults (layer norm, Adam with beta2 0.99, lr
    0.03, cosine, warm-up 100) won benchmarks/attack_convergence.py: at the paper's scale (3 blob sizes
    x 3 seeds, 5,000 bf16 steps) they reach what the previous attack (theta norm, lr 0.01, constant)
    reaches in 20,000 float32 steps on 9 of 9 points, by a median step 1,000, and end 0.114 lower in
    ncc_dist on average; with beta2 0.999 and lr 0.02 (the defaults before) 4 of 9 (docs/attack.md).
    Soundness (bench.attack.reconstruct): at every monitor point the state is re-scored in float64 with
    the explicit residual; a fast path (bfloat16, compile, the Gram route) whose fit is off by more than
    `fit_check_tol` (relative) is flagged and the attack falls back to the exact path (float32, explicit)
    from its best state. The attack returns its best monitor point by that float64 objective (an
    attacker's criterion: no training data); a run that ends worse than its best by more than
    `degrade_tol` (relative) is `attack/degraded`, and never `attack/converged`.
    The reference's protocol (bench.attack.protocol): `pool` > 0 draws that many settings from the sweep
    distribution `pool_dist` ("reference": Haim et al.'s ranges; "bench": ranges for bench's normalised
    attack), runs them as one population, and pools the candidates of the best `pool_keep` settings (0:
    every setting that did not diverge), chosen by `pool_select`: "kkt" (the float64 KKT objective with
    the true ReLU derivative: an attacker's criterion) or "oracle" (Haim et al.'s extraction score, which
    reads the training set). Both selections are logged; `pool_select` is the one reported.
    `pairs` (multiclass networks only, bench.attack.multiclass): "max" fits Buzaglo et al.'s
    theta = sum_i lambda_i grad(Phi_y - max_{j != y} Phi_j), one multiplier per candidate; "all" the full
    KKT sum over every other class j, one multiplier per (candidate, j): the default, since it is a
    smooth objective ("max" switches j* between near-tied classes) and reconstructs more on real MNIST
    (docs/multiclass.md). The two are the same problem at C = 2.
    `engine`: how the residual is formed (bench.attack.engine): "closed" the closed form of
    bench.attack.kkt (MLPs only), "autograd" double backward through the network (any homogeneous network:
    CNNs; always the explicit residual, whatever `residual` says), "auto" the closed form where it applies.
    On an MLP the two agree to rounding (tests/test_engine.py).
    `truth_probe`: > 0 also runs the attack for that many steps started AT the truth (candidates = the
    training set, multipliers = the truth's optimal ones, m = n; bench.experiment.truth_probe), logging
    `truth_probe/fit` and `truth_probe/drift`: whether the data is a stable point of the objective.
    `restarts`: random starts per setting, the one with the lowest float64 objective kept (an attacker's
    criterion). Priors an attacker has (bench.attack.priors; weights, 0 = off): `tv` total variation of the
    image, `floor` an L1 pull of every pixel towards the data's floor, `repel` a penalty on candidates of one
    label that nearly coincide (cosine > 0.9). Sample splitting (Shen et al. 2026; bench.attack.splitting):
    every `split_every` steps (0: off) the `split_frac` share of candidates whose split most lowers the fit
    (top eigenvalue of their curvature block, by `split_iters` power iterations) are split at +-`split_eps`
    ||x_i||, each into the slot of the same-label candidate with the smallest multiplier.
    """

    steps: int = 1000
    m_factor: float = 2.0
    lr: float = 3e-2
    lr_lambda: float = 1e-2
    init_scale: float = 1e-3
    lam_min: float = 0.1
    alpha: float = 100.0
    lam_penalty: float = 5.0
    box_penalty: float = 1.0
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = 0.9
    beta2: float = 0.99
    dtype: Literal["float32", "float64", "bfloat16"] = "float32"
    normalize: Literal["margin", "none"] = "margin"
    eval_every: int = 100
    stop: Literal["none", "plateau"] = "none"
    stop_window: int = 0
    stop_tol: float = 0.01
    stop_floor: float = 1.0
    compile: bool = False
    fit_norm: Literal["theta", "layer"] = "layer"
    residual: Literal["auto", "explicit", "gram"] = "auto"
    fit_layers: tuple[int, ...] = ()
    schedule: Literal["constant", "cosine", "step"] = "cosine"
    warmup: int = 100
    alpha_final: float = 0.0
    fit_check_tol: float = 0.01
    degrade_tol: float = 0.01
    pool: int = 0
    pool_dist: Literal["reference", "bench"] = "bench"
    pool_select: Literal["kkt", "oracle"] = "kkt"
    pool_keep: int = 0
    pairs: Literal["max", "all"] = "all"
    engine: Literal["auto", "closed", "autograd"] = "auto"
    truth_probe: int = 0
    restarts: int = 1
    tv: float = 0.0
    floor: float = 0.0
    repel: float = 0.0
    split_every: int = 0
    split_frac: float = 0.05
    split_eps: float = 0.05
    split_iters: int = 10

    def plateau_window(self) -> int:
        """The plateau rule's window in steps: `stop_window`, or a fifth of `steps` where it is 0."""
        return self.stop_window or max(1, self.steps // 5)

    def check(self) -> None:
        require(self.steps >= 1, "attack.steps", self.steps, "a positive integer")
        require(
            self.stop_window >= 0,
            "attack.stop_window",
            self.stop_window,
            "0 (a fifth of attack.steps) or a positive number of steps; fix: --set attack.stop_window=0",
        )
        require(
            self.stop_window < self.steps,
            "attack.stop_window",
            self.stop_window,
            f"fewer steps than attack.steps ({self.steps}): the plateau rule compares the best state before"
            " the window with the best at its end, and a window as long as the run leaves only the random"
            " start before it; fix: --set attack.stop_window=0 (a fifth of the steps)",
        )
        require(self.stop_tol >= 0, "attack.stop_tol", self.stop_tol, "a number >= 0, e.g. 0.01")
        require(
            self.stop_floor >= 0,
            "attack.stop_floor",
            self.stop_floor,
            "a number >= 0: 1 (the objective's drop in units of ||theta||^2) or 0 (relative to itself); fix: --set attack.stop_floor=1",
        )
        require(
            self.m_factor > 0,
            "attack.m_factor",
            self.m_factor,
            "candidates per training sample, > 0 (m = round(m_factor * n), at least 2), e.g. 0.5, 1 or 2",
        )
        for key in ("lr", "lr_lambda", "init_scale", "alpha"):
            require(getattr(self, key) > 0, f"attack.{key}", getattr(self, key), "a positive number")
        require(self.lam_min >= 0, "attack.lam_min", self.lam_min, "a number >= 0")
        require(0 <= self.momentum < 1, "attack.momentum", self.momentum, "a number in [0, 1)")
        require(0 < self.beta2 < 1, "attack.beta2", self.beta2, "a number in (0, 1), e.g. 0.999")
        require(self.eval_every >= 1, "attack.eval_every", self.eval_every, "a positive integer")
        require(self.warmup >= 0, "attack.warmup", self.warmup, "an integer >= 0 (steps of linear warm-up)")
        require(self.alpha_final >= 0, "attack.alpha_final", self.alpha_final, "0 (off) or a positive slope")
        require(self.pool >= 0, "attack.pool", self.pool, "0 (off) or the number of settings to draw")
        require(
            0 <= self.pool_keep <= max(self.pool, 1),
            "attack.pool_keep",
            self.pool_keep,
            "0 (every setting) or a number of settings <= attack.pool",
        )
        require(self.restarts >= 1, "attack.restarts", self.restarts, "a positive number of random starts")
        require(
            self.split_every >= 0, "attack.split_every", self.split_every, "0 (off) or steps between splits"
        )
        require(
            0 < self.split_frac <= 0.5,
            "attack.split_frac",
            self.split_frac,
            "a share of candidates in (0, 0.5]",
        )
        require(self.split_eps > 0, "attack.split_eps", self.split_eps, "a positive relative step, e.g. 0.05")
        require(
            self.split_iters >= 1, "attack.split_iters", self.split_iters, "a positive number of iterations"
        )
        for key in ("tv", "floor", "repel"):
            require(getattr(self, key) >= 0, f"attack.{key}", getattr(self, key), "a weight >= 0 (0: off)")
        require(
            self.truth_probe >= 0,
            "attack.truth_probe",
            self.truth_probe,
            "0 (off) or the steps of the attack started at the truth, e.g. 1000",
        )
        for key in ("fit_check_tol", "degrade_tol"):
            require(
                getattr(self, key) > 0, f"attack.{key}", getattr(self, key), "a positive relative tolerance"
            )


@dataclass
class EvalConfig:
    """Matching of reconstructions to training samples (see bench.evaluate).

    `rescale`: "minmax" maps every image to [0, 1] before comparison (Haim et al.); "clip" clips to the
    data range (tabular data). `ssim_window`: odd SSIM window side in pixels. `ssim_threshold`: a
    training sample counts as reconstructed when its best SSIM exceeds it. `primary`: the metric that
    series summaries and tuning call "the error". `truth`: compute the truth's own KKT fit (the training
    set's best multipliers, bench.attack.truth) for every run, the reference the attack's fit is read
    against (`truth/kkt_fit`, `attack/fit_below_truth`); a few seconds at the paper's scale.
    `truth_clarke`: also the truth's fit with the first hidden layer's derivative free in [0, 1] where a
    training sample sits on a unit's kink (`truth/kkt_fit_clarke`, `truth/kinks_layer1`; the KKT conditions'
    Clarke form, bench.attack.truth.clarke_truth; seconds to a minute).
    """

    rescale: Literal["minmax", "clip"] = "minmax"
    ssim_window: int = 3
    ssim_threshold: float = 0.4
    top_k: int = 10
    primary: str = "dssim_mean"
    truth: bool = True
    truth_clarke: bool = False

    def check(self) -> None:
        odd = self.ssim_window >= 3 and self.ssim_window % 2 == 1
        require(odd, "eval.ssim_window", self.ssim_window, "an odd integer >= 3")
        require(0 < self.ssim_threshold < 1, "eval.ssim_threshold", self.ssim_threshold, "in (0, 1)")
        require(self.top_k >= 1, "eval.top_k", self.top_k, "a positive integer")


@dataclass
class LogConfig:
    """What goes into the tracking store besides metrics (which are always logged).

    `arrays`: raw arrays (`arrays/*`: training data, reconstructions) and the model (`model/weights.pt`);
    `images`: image grids of training data and reconstructions. Set both false for patient data on a
    shared server (`--set log.arrays=false --set log.images=false`). `grid_pairs`: the most (training,
    reconstruction) pairs `reconstructions.png` shows; `grid_order`: which, when there are more:
    "best_worst" (the best and the worst halves) or "best" (the best `grid_pairs`, as Haim et al.'s figures).
    """

    arrays: bool = True
    images: bool = True
    grid_pairs: int = 24
    grid_order: Literal["best_worst", "best"] = "best_worst"

    def check(self) -> None:
        require(self.grid_pairs >= 1, "log.grid_pairs", self.grid_pairs, "a positive integer, e.g. 40")


@dataclass
class RunConfig:
    """Everything one (series point, seed) run needs. `data` is the task family's own dataclass.

    `device`: auto | cpu | cuda | cuda:N | mps (auto = the first CUDA device, else the CPU; see
    bench.device). `threads`: CPU threads for torch (0 = chosen from the machine; the number used is
    logged as the run's `threads` tag).
    """

    data: Any
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    attack: AttackConfig = field(default_factory=AttackConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    log: LogConfig = field(default_factory=LogConfig)
    seed: int = 0
    device: str = "auto"
    threads: int = 0

    def check(self) -> None:
        from bench.device import valid_device_name

        for part in (self.data, self.model, self.train, self.attack, self.eval, self.log):
            if hasattr(part, "check"):
                part.check()
        primary_ok = self.eval.primary in PRIMARY_METRICS
        require(primary_ok, "eval.primary", self.eval.primary, f"one of {sorted(PRIMARY_METRICS)}")
        require(valid_device_name(self.device), "device", self.device, "auto, cpu, cuda, cuda:N or mps")
        require(self.threads >= 0, "threads", self.threads, "an integer >= 0 (0 = chosen from the machine)")
        layers = self.attack.fit_layers
        n_layers = self.model.n_layers or max(layers, default=1)
        ok = all(1 <= i <= n_layers for i in layers) and len(set(layers)) == len(layers)
        expected = f"distinct layer numbers in 1..{n_layers} (the model's weight layers), e.g. 1,{n_layers}"
        require(ok, "attack.fit_layers", layers, expected + "; empty = all")
        arch, mlp = self.model.arch, self.model.arch == "mlp"
        why = f"for model.arch={arch} (the {{}} is written for MLPs only)"
        clarke, engine = self.eval.truth_clarke, self.attack.engine
        require(not clarke or mlp, "eval.truth_clarke", clarke, "false " + why.format("Clarke truth"))
        require(
            engine != "closed" or mlp,
            "attack.engine",
            engine,
            "auto or autograd " + why.format("closed form"),
        )
        require(self.seed >= 0, "seed", self.seed, "an integer >= 0")


# Metrics that may serve as "the error" (lower is better), computed by bench.evaluate.
PRIMARY_METRICS = {"ncc_dist_mean", "dssim_mean", "dssim_topk", "l2_mean", "l2_255_mean", "mae_mean"}


def require(ok: bool, key: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"bad value {value!r} for '{key}': expected {expected}")


def to_dict(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Flatten a config tree to {'attack.lr': 0.01, ...} (for logging and printing)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(to_dict(value, key + "."))
        else:
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


# dotted overrides (`--set key=value`) live in bench.overrides; re-exported here, where callers look
from bench.overrides import apply_overrides, coerce, parse_assignment  # noqa: E402, F401
