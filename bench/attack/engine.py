"""The KKT residual of any positively homogeneous torch network, by autograd: the "autograd" engine.

A network Phi(theta; x) positively homogeneous of degree L in its parameters (Linear and convolution
layers without biases, except an optional bias on the first; ReLU; average or max pooling; Flatten and
Unflatten; no normalisation layer) trained to a KKT point of the max-margin problem satisfies, per layer,

    theta_l = G_l,   G_l = grad_{theta_l} sum_i u_i . Phi(theta; x_i),

with u_i = lambda_i y_i (binary) or the multiclass directions of `bench.attack.multiclass.multiclass_directions`
(Buzaglo et al.). `bench.attack.kkt` writes G_l in closed form for MLPs; this module forms it by
autograd for any such network: G = torch.func.grad of s(theta) = sum_i u_i . Phi(theta; x_i) (its graph
kept, since it runs inside the attack's own backward), the residual sum_l ||theta_l - G_l||^2 summed as
a square (the explicit form: >= 0 in any dtype), and the loss's gradient into x and lambda by ordinary
backward, which never forms the parameters' own gradients (Haim et al.'s double backward does). As in the
closed form, ReLU's derivative is sigmoid(alpha h) wherever it is differentiated and its forward values
stay exact (`bench.attack.kkt._SurrogateReLU`); on an MLP the two engines give the same residual and the
same gradients into x and lambda to rounding (tests/test_engine.py). Max pooling is positively
homogeneous (piecewise linear): its derivative is the exact selection. A population of settings is a
leading dimension: `torch.func.vmap` runs one G per setting.

`attack.engine` (bench.config.AttackConfig) picks the route: "closed" (MLPs only), "autograd", or
"auto" (the closed form where it applies, the engine elsewhere). `as_engine` applies the choice,
`layer_terms` and `loss_function_for` dispatch on the network's class, and `from_module` walks a torch
module into a `ModuleNet`, refusing (BenchInputError, exit 2 on the command line) anything that is not
positively homogeneous, by the offending layer's name.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from torch import nn

from bench.attack.kkt import (
    Weights,
    _SurrogateReLU,
    fit_from_terms,
    layer_residuals,
    loss_function,
    penalties,
    wrapped_loss,
)
from bench.attack.multiclass import (
    multiclass_directions,
    multiclass_layer_residuals,
    multiclass_loss_function,
    multiclass_penalties,
)
from bench.attack.network import Homogeneous, Network
from bench.errors import BenchInputError

ENGINES = ("auto", "closed", "autograd")
WEIGHT_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
# layers that are positively homogeneous of degree 0 in theta and 1 in their input (ReLU, max pooling) or
# linear (average pooling, reshapes): they carry no parameters
PASS_LAYERS = (
    nn.ReLU,
    nn.AvgPool1d,
    nn.AvgPool2d,
    nn.AvgPool3d,
    nn.AdaptiveAvgPool1d,
    nn.AdaptiveAvgPool2d,
    nn.MaxPool1d,
    nn.MaxPool2d,
    nn.MaxPool3d,
    nn.Flatten,
    nn.Unflatten,
    nn.Identity,
)
_ALLOWED = "Linear, Conv1d/2d/3d (a bias on the first only), ReLU, average or max pooling, Flatten, Unflatten"
_NORMS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.RMSNorm)


@dataclass(frozen=True, eq=False)
class ModuleNet(Homogeneous):
    """A positively homogeneous network as its operations in order and its parameters (detached): the
    autograd engine's `bench.attack.network.Network`.

    ops: one tuple per layer, its functional name and arguments (("linear",), ("conv2d", stride, padding,
    dilation, groups), ("relu",), ("avg_pool2d", ...), ("unflatten", dim, sizes), ...; see `_op`): plain
    values, so that torch.compile guards on them by value; the k-th "linear"/"conv" op applies
    `weights[k]`. bias: the first weight layer's bias, or None. d: input features (the input is flat,
    (m, d); an "unflatten" op shapes it for a convolution); n_out: outputs. A layer of the fit is one
    weight tensor, the first with its bias (`layer_sq_norms`).
    """

    ops: tuple[tuple, ...]
    weights: tuple[torch.Tensor, ...]
    bias: torch.Tensor | None
    d: int
    n_out: int

    @property
    def depth(self) -> int:
        return len(self.weights)

    @functools.cached_property
    def _layer_sq_norms(self) -> torch.Tensor:
        norms = [(w * w).sum() for w in self.weights]
        if self.bias is not None:
            norms[0] = norms[0] + (self.bias * self.bias).sum()
        return torch.stack(norms)

    def layer_sq_norms(self) -> torch.Tensor:
        """||theta_l||^2 of every layer (L,), the first layer's bias counted with its weight."""
        return self._layer_sq_norms

    def sq_norm(self) -> torch.Tensor:
        """||theta||^2 over all parameters (scalar)."""
        return self._layer_sq_norms.sum()

    def scaled(self, factor: float) -> ModuleNet:
        """Every parameter times `factor`: Phi scales by factor^L."""
        bias = None if self.bias is None else self.bias * factor
        return replace(self, weights=tuple(w * factor for w in self.weights), bias=bias)

    def to(self, dtype: torch.dtype, device: torch.device | str | None = None) -> ModuleNet:
        """The same network with its parameters in `dtype` (and on `device`, if given)."""
        bias = None if self.bias is None else self.bias.to(device=device, dtype=dtype)
        weights = tuple(w.to(device=device, dtype=dtype) for w in self.weights)
        return replace(self, weights=weights, bias=bias)

    def split(self) -> tuple[tuple, tuple]:
        """(structure, tensors): what `join` rebuilds the network from (torch.compile sees the tensors as
        inputs and the structure as constants)."""
        return (self.ops, self.d, self.n_out), (self.weights, self.bias)

    @classmethod
    def join(cls, structure: tuple, tensors: tuple) -> ModuleNet:
        ops, d, n_out = structure
        return cls(ops, tuple(tensors[0]), tensors[1], d, n_out)

    def params(self) -> list[torch.Tensor]:
        """[W_1, ..., W_L] and the first layer's bias last, if any: the tensors G is taken against."""
        return [*self.weights, *([self.bias] if self.bias is not None else [])]

    def phi(
        self,
        x: torch.Tensor,
        alpha: torch.Tensor | float | None = None,
        params: Sequence[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Phi(x) (m, n_out) of inputs x (m, d): with the exact ReLU (alpha None) or the surrogate
        derivative sigmoid(alpha h) (forward values exact); `params` in place of `self.params()`."""
        params = self.params() if params is None else params
        bias = params[self.depth] if self.bias is not None else None
        h, k = x, 0
        for name, *args in self.ops:
            if name == "linear" or name.startswith("conv"):
                b = bias if k == 0 else None
                h = (
                    F.linear(h, params[k], b)
                    if name == "linear"
                    else getattr(F, name)(h, params[k], b, *args)
                )
                k += 1
            elif name == "relu":
                h = torch.relu(h) if alpha is None else surrogate_relu(h, alpha)
            elif name in ("flatten", "unflatten"):
                h = getattr(h, name)(*args)
            else:  # pooling
                h = getattr(F, name)(h, *args)
        return h.reshape(h.shape[0], -1)

    def layer_residuals(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        c: torch.Tensor,
        alpha: torch.Tensor | float,
        pairs: str = "max",
    ) -> torch.Tensor:
        """||theta_l - G_l||^2 of every layer (..., L) (the first layer's bias counted with its weight),
        G_l = grad_{theta_l} sum_i u_i . Phi(x_i) by autograd, summed as a square.

        x (..., m, d) candidates; binary network: c (..., m) = lambda y (y unused); C outputs: y (m,) the
        class indices, c the multipliers ((..., m), or (..., m, C) for `pairs="all"`; see
        `multiclass_directions`). alpha: a float or broadcastable to (..., 1, 1). Each leading index is
        its own setting (its own G): vmap over them.
        """
        lead = x.shape[:-2]
        tail = 2 if self.n_out > 1 and pairs == "all" else 1
        xb = x.reshape(-1, *x.shape[-2:])
        cb = c.broadcast_to((*lead, *c.shape[c.dim() - tail :])).reshape(-1, *c.shape[c.dim() - tail :])
        a = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
        a = a.broadcast_to((*lead, 1, 1)).reshape(-1)
        params, L = self.params(), self.depth

        def one(x1: torch.Tensor, c1: torch.Tensor, a1: torch.Tensor) -> torch.Tensor:
            def s(p: list[torch.Tensor]) -> torch.Tensor:
                out = self.phi(x1, a1, p)
                u = c1.unsqueeze(-1) if self.n_out == 1 else multiclass_directions(out, y, c1, pairs)
                return (u * out).sum()

            grads = torch.func.grad(s)(params)
            terms = [((p - g) ** 2).sum() for p, g in zip(params[:L], grads[:L], strict=True)]
            if self.bias is not None:
                terms[0] = terms[0] + ((params[L] - grads[L]) ** 2).sum()
            return torch.stack(terms)

        return torch.func.vmap(one)(xb, cb, a).reshape(*lead, L)


def surrogate_relu(h: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """relu(h) in value, derivative sigmoid(alpha h), second derivative alpha sigmoid'(alpha h): the closed
    form's `_SurrogateReLU` (whose slope input is itself differentiated). Under torch.compile, which cannot
    trace a custom autograd.Function under vmap, the same function as `smooth_surrogate_relu`."""
    if torch.compiler.is_compiling():
        return smooth_surrogate_relu(h, alpha)
    return _SurrogateReLU.apply(h, torch.sigmoid(alpha * h))


def smooth_surrogate_relu(h: torch.Tensor, alpha: torch.Tensor | float) -> torch.Tensor:
    """`surrogate_relu` from plain operations: q(h) = softplus(alpha h) / alpha has q' = sigmoid(alpha h);
    q - q.detach() is exactly 0 in value and carries q's derivatives. softplus is linear above its
    threshold, here 50: sigmoid(50) is 1 in float64 (torch.logaddexp's double backward gives NaN where
    e^{alpha h} underflows; softplus's does not). ~1.7x the eager cost of the custom Function (CNN step)."""
    q = F.softplus(alpha * h, threshold=50.0) / alpha
    return torch.relu(h).detach() + (q - q.detach())


def leaves(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """The layers of `module` in the order they apply, with their names in `module` (for messages).

    `module` is an nn.Sequential (nested ones are flattened) or has a `sequential()` method returning one
    (bench's MLP and CNN); a module with children and a forward of its own is refused: its order of
    application cannot be read from it.
    """
    names = {id(mod): name for name, mod in module.named_modules()}
    out: list[tuple[str, nn.Module]] = []

    def walk(mod: nn.Module) -> None:
        seq = mod.sequential() if hasattr(mod, "sequential") else mod
        if isinstance(seq, nn.Sequential):
            for child in seq:
                walk(child)
        elif any(True for _ in seq.children()):
            name = names.get(id(seq), type(seq).__name__)
            raise BenchInputError(
                f"model layer '{name}' ({type(seq).__name__}) is a module with its own forward: the attack "
                "reads a network as layers applied in order; fix: write it as an nn.Sequential of "
                f"{_ALLOWED}"
            )
        else:
            out.append((names.get(id(seq), f"#{len(out)}"), seq))

    walk(module)
    return out


def from_module(module: nn.Module, d: int | None = None) -> ModuleNet:
    """Walk a trained torch network into a `ModuleNet`, refusing anything not positively homogeneous.

    Allowed: Linear and Conv1d/2d/3d layers (zero padding; a bias on the first weight layer only), ReLU,
    average and max pooling, Flatten, Unflatten, Identity. Anything else (a bias in a later layer, a
    normalisation layer, another activation, a custom block) raises BenchInputError naming the layer and
    the fix. `d`: input features (default: the first layer's in_features, when it is a Linear). The input
    is flat: a convolutional network starts with an Unflatten.
    """
    layers = leaves(module)
    ops: list[tuple] = []
    weights: list[torch.Tensor] = []
    bias = None
    for name, leaf in layers:
        kind = type(leaf).__name__
        if isinstance(leaf, WEIGHT_LAYERS):
            if leaf.bias is not None:
                if weights:
                    raise BenchInputError(
                        f"model layer '{name}' ({kind}) has a bias: only the first weight layer may have one "
                        "(a bias further in breaks the positive homogeneity the KKT attack rests on); fix: "
                        "build it with bias=False"
                    )
                bias = leaf.bias.detach()
            weights.append(leaf.weight.detach())
        elif not isinstance(leaf, PASS_LAYERS):
            raise BenchInputError(f"model layer '{name}' ({kind}) {_why_not(leaf)}; allowed: {_ALLOWED}")
        op = _op(leaf, name)
        if op is not None:
            ops.append(op)
    if not weights:
        raise BenchInputError("the model has no Linear or convolution layer: there is nothing to attack")
    if d is None:
        first = layers[0][1]
        if not isinstance(first, nn.Linear):
            raise BenchInputError(
                "from_module: give d (input features) for a network that starts with a reshape"
            )
        d = first.in_features
    probe = torch.zeros(2, d, dtype=weights[0].dtype, device=weights[0].device)
    net = ModuleNet(tuple(ops), tuple(weights), bias, d, 0)
    with torch.no_grad():
        try:
            n_out = net.phi(probe).shape[-1]
        except RuntimeError as e:
            raise BenchInputError(f"the model does not take flat inputs of {d} features: {e}") from None
    return replace(net, n_out=int(n_out))


def _op(leaf: nn.Module, name: str) -> tuple | None:
    """The functional form of an allowed layer (see `ModuleNet.ops`); None for Identity."""
    kind = type(leaf).__name__
    if isinstance(leaf, nn.Linear):
        return ("linear",)
    if isinstance(leaf, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        if leaf.padding_mode != "zeros":
            raise BenchInputError(
                f"model layer '{name}' ({kind}) pads with '{leaf.padding_mode}'; fix: padding_mode='zeros'"
            )
        return (f"conv{kind[-2]}d", leaf.stride, leaf.padding, leaf.dilation, leaf.groups)
    if isinstance(leaf, nn.ReLU):
        return ("relu",)
    if isinstance(leaf, (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d)):
        if leaf.return_indices:
            raise BenchInputError(f"model layer '{name}' ({kind}) returns indices; fix: return_indices=False")
        return (
            f"max_pool{kind[-2]}d",
            leaf.kernel_size,
            leaf.stride,
            leaf.padding,
            leaf.dilation,
            leaf.ceil_mode,
        )
    if isinstance(leaf, nn.AvgPool1d):
        return (
            "avg_pool1d",
            leaf.kernel_size,
            leaf.stride,
            leaf.padding,
            leaf.ceil_mode,
            leaf.count_include_pad,
        )
    if isinstance(leaf, (nn.AvgPool2d, nn.AvgPool3d)):
        args = (leaf.kernel_size, leaf.stride, leaf.padding, leaf.ceil_mode, leaf.count_include_pad)
        return (f"avg_pool{kind[-2]}d", *args, leaf.divisor_override)
    if isinstance(leaf, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        return (f"adaptive_avg_pool{kind[-2]}d", leaf.output_size)
    if isinstance(leaf, nn.Flatten):
        return ("flatten", leaf.start_dim, leaf.end_dim)
    if isinstance(leaf, nn.Unflatten):
        return ("unflatten", leaf.dim, tuple(leaf.unflattened_size))
    return None  # nn.Identity


def _why_not(leaf: nn.Module) -> str:
    """Why a layer is refused, in words."""
    if isinstance(leaf, _NORMS):
        return (
            "is a normalisation layer: it divides by a statistic of its input and shifts by a learnt bias, "
            "so the network is not positively homogeneous; fix: remove it"
        )
    if type(leaf).__module__ == nn.modules.activation.__name__:
        return (
            "is not a ReLU: the attack's network is positively homogeneous with ReLU activations (the "
            "surrogate derivative is ReLU's); fix: use nn.ReLU"
        )
    return "is not a layer the attack knows to be positively homogeneous; fix: remove or replace it"


def network_of(model: nn.Module, d: int) -> Network:
    """The attack's view of a trained network of d input features: closed-form `Weights` for an MLP, a
    `ModuleNet` for anything else (validated by `from_module`)."""
    return as_engine(from_module(model, d), "auto")


def module_of(w: Weights) -> nn.Sequential:
    """The MLP of closed-form weights as a torch module (Linear, ReLU, ..., Linear), sharing no memory."""
    layers: list[nn.Module] = []
    for i, mat in enumerate(w.mats):
        has_bias = i == 0 and w.bias is not None
        lin = nn.Linear(mat.shape[1], mat.shape[0], bias=has_bias, dtype=mat.dtype, device=mat.device)
        with torch.no_grad():
            lin.weight.copy_(mat)
            if has_bias:
                lin.bias.copy_(w.bias)
        layers += [lin, nn.ReLU()] if i < w.depth - 1 else [lin]
    return nn.Sequential(*layers)


def closed_form(net: ModuleNet) -> Weights | None:
    """The same network as closed-form `Weights` when it is an MLP (Linear, ReLU, ..., Linear), else None."""
    mlp = tuple(("linear",) if i % 2 == 0 else ("relu",) for i in range(2 * net.depth - 1))
    return Weights(net.weights, net.bias) if net.ops == mlp else None


def as_engine(w: Network, engine: str) -> Network:
    """The network in the form `engine` ("auto" | "closed" | "autograd") computes on: `Weights` for the
    closed form (an MLP only; BenchInputError otherwise), a `ModuleNet` for the autograd engine; "auto":
    the closed form where it applies."""
    if engine not in ENGINES:
        raise BenchInputError(
            f"bad value {engine!r} for 'attack.engine': expected one of {', '.join(ENGINES)}"
        )
    if isinstance(w, Weights):
        return from_module(module_of(w)) if engine == "autograd" else w
    if not isinstance(w, ModuleNet) or engine == "autograd":
        return w
    closed = closed_form(w)
    if closed is None and engine == "closed":
        raise BenchInputError(
            "attack.engine=closed: the closed form covers MLPs (Linear, ReLU, ..., Linear) only, not this "
            "network; fix: --set attack.engine=auto (or autograd)"
        )
    return closed if closed is not None else w


def layer_terms(
    w: Network,
    x: torch.Tensor,
    y: torch.Tensor,
    c: torch.Tensor,
    alpha: torch.Tensor | float,
    pairs: str = "max",
    method: str = "explicit",
) -> torch.Tensor:
    """||theta_l - G_l||^2 of every layer (..., L) by the network's own route: the closed form of
    `bench.attack.kkt` / `bench.attack.multiclass` for `Weights` (`method` for the binary one), autograd
    for a `ModuleNet`. Binary: c = lambda y; C outputs: y class indices, c multipliers (see
    `ModuleNet.layer_residuals`)."""
    if isinstance(w, Weights):
        if w.n_out == 1:
            return layer_residuals(w, x, c, alpha, method)
        return multiclass_layer_residuals(w, x, y, c, alpha, pairs)
    return w.layer_residuals(x, y, c, alpha, pairs)


def autograd_attack_loss(
    w: ModuleNet,
    x: torch.Tensor,
    l: torch.Tensor,
    y: torch.Tensor,
    *,
    lam_scale: torch.Tensor | float,
    lam_min: torch.Tensor | float,
    alpha: torch.Tensor | float,
    lo: torch.Tensor,
    hi: torch.Tensor,
    lam_penalty: float = 5.0,
    box_penalty: float = 1.0,
    theta_sq: torch.Tensor | None = None,
    pairs: str = "max",
    norm: str = "theta",
    layer_sq: torch.Tensor | None = None,
    layers: tuple[int, ...] = (),
    method: str = "explicit",
) -> tuple[torch.Tensor, torch.Tensor]:
    """`bench.attack.kkt.attack_loss` (binary) or `multiclass_attack_loss` (C outputs) with the residual
    by autograd: (loss (...,), fit (...,)). The residual is always explicit (`method` is accepted for the
    attack loop's sake)."""
    binary = w.n_out == 1
    c = l * lam_scale * y if binary else l * lam_scale
    fit = fit_from_terms(w.layer_residuals(x, y, c, alpha, pairs), w, norm, theta_sq, layer_sq, layers)
    if binary:
        pen = penalties(x, l, lam_min, lo, hi, lam_penalty, box_penalty)
    else:
        pen = multiclass_penalties(x, l, y, lam_min, lo, hi, lam_penalty, box_penalty, pairs)
    return fit + pen, fit


def loss_function_for(w: Network) -> Callable[[bool, bool], Callable[..., tuple[torch.Tensor, torch.Tensor]]]:
    """(mixed, compiled) -> the attack loop's loss for `w`'s engine (see `bench.attack.kkt.loss_function`)."""
    if isinstance(w, Weights):
        return loss_function if w.n_out == 1 else multiclass_loss_function
    return autograd_loss_function


def autograd_loss_function(
    mixed: bool = False, compiled: bool = False
) -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """`autograd_attack_loss` as the attack loop calls it: bf16 autocast (`mixed`), torch.compile."""
    return wrapped_loss(autograd_attack_loss, mixed, compiled)
