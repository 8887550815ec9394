"""What the attack needs of the attacked network, whichever engine forms its KKT residual.

Two classes implement it: `bench.attack.kkt.Weights` (an MLP's weight matrices, the closed form) and
`bench.attack.engine.ModuleNet` (any positively homogeneous torch network, by autograd). The attack loop
(`bench.attack.reconstruct`) and its float64 check (`bench.attack.check`) use this interface only; which
residual a network gets is `bench.attack.engine.layer_terms`'s choice, by its class.

A layer is one weight tensor (a Linear or convolution's weight), with the first layer's optional bias
counted with it; `depth` L is the number of weight layers, the degree of homogeneity: scaling every
parameter by a scales Phi by a^L.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

import torch

N = TypeVar("N", bound="Network")


class Network(Protocol):
    """The attacked network's parameters, detached (the attack never changes them)."""

    @property
    def depth(self) -> int:
        """L, the number of weight layers."""
        ...

    @property
    def n_out(self) -> int:
        """Outputs: 1 (binary, Haim et al.) or C >= 2 (multiclass, Buzaglo et al.)."""
        ...

    @property
    def d(self) -> int:
        """Input features (a flattened input)."""
        ...

    def sq_norm(self) -> torch.Tensor:
        """||theta||^2 over all parameters (scalar)."""
        ...

    def layer_sq_norms(self) -> torch.Tensor:
        """||theta_l||^2 of every layer (L,)."""
        ...

    def scaled(self: N, factor: float) -> N:
        """Every parameter times `factor`: Phi scales by factor^L."""
        ...

    def margin_normalized(self: N, min_margin: float) -> N: ...

    def to(self: N, dtype: torch.dtype, device: torch.device | str | None = None) -> N: ...

    def split(self) -> tuple[Any, tuple]:
        """(structure, tensors): plain values and the parameter tensors, which `join` rebuilds it from."""
        ...

    @classmethod
    def join(cls: type[N], structure: Any, tensors: tuple) -> N: ...


class Homogeneous:
    """The margin normalisation shared by every `Network` (needs `scaled` and `depth`)."""

    def margin_normalized(self, min_margin: float):  # type: ignore[no-untyped-def]
        """Rescaled so the smallest training margin (y Phi(x); multiclass Phi_y - max_{j != y} Phi_j) is 1,
        the max-margin problem's normalisation: every parameter times min_margin^(-1/L). Unchanged when
        `min_margin` <= 0 (the data is not separated: there is no such point)."""
        return self.scaled(min_margin ** (-1.0 / self.depth)) if min_margin > 0 else self  # type: ignore[attr-defined]
