"""Stacked denoising autoencoder (SDAE) reducer, after Danaee et al. 2017, in torch.

Architecture: encoder ``n_features -> hidden[0] -> ... -> hidden[-1] -> n_components`` with sigmoid
activations on every layer, so the **code is sigmoid, in (0, 1)** (the same range as min-max scaled
features). The decoder mirrors it; its output layer is sigmoid when the training data lies in [0, 1]
(``output="auto"``, the usual case after min-max scaling) and linear otherwise.

Training (our choice, documented): **end-to-end** training of the whole stack to reconstruct the clean
input from a corrupted copy, mean-squared error, Adam. Corruption is **masking noise** by default (each
input value set to 0 with probability ``noise``, as in Vincent et al. / Danaee et al.); ``noise_type=
"gaussian"`` adds N(0, noise^2) instead. Optionally ``pretrain_epochs > 0`` first does greedy layer-wise
pretraining (each layer as a one-layer denoising autoencoder on the previous layer's clean codes), as in
the original SDAE recipe, before the end-to-end fine-tuning.

Determinism: weights, noise and batch order come from ``seed`` through a private CPU torch generator (the
draws are moved to the device), so a given seed draws the same numbers on every device, and gives the same
result on the same device and thread count. The global torch RNG is untouched.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin
from torch import nn

from bench.errors import BenchInputError

NOISE_TYPES = ("mask", "gaussian")
OUTPUTS = ("auto", "sigmoid", "linear")


def _stack(sizes: list[int], last_sigmoid: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2 or last_sigmoid:
            layers.append(nn.Sigmoid())
    return nn.Sequential(*layers)


class SDAE(BaseEstimator, TransformerMixin):
    """Stacked denoising autoencoder; ``transform`` gives the (n, n_components) code as float64.

    Args:
        n_components: code size.
        hidden: encoder hidden-layer sizes (decoder mirrors them).
        noise: masking probability (``mask``) or Gaussian std (``gaussian``).
        noise_type: ``mask`` or ``gaussian``.
        epochs: end-to-end training epochs.
        pretrain_epochs: greedy layer-wise pretraining epochs per layer (0 = none).
        lr: Adam learning rate.
        batch_size: minibatch size.
        weight_decay: Adam weight decay.
        output: decoder output activation, ``auto`` / ``sigmoid`` / ``linear``.
        seed: seed for init, noise and batch order.
        device: torch device, e.g. ``cpu`` or ``cuda`` (None: the run's device, `bench.device.configure`).

    Fitted attributes: ``encoder_``, ``decoder_`` (torch modules), ``loss_history_`` (clean-input
    reconstruction MSE after each end-to-end epoch; index 0 is before training), ``output_``.
    """

    def __init__(
        self,
        n_components: int = 784,
        hidden: tuple[int, ...] = (2000, 1000),
        noise: float = 0.1,
        noise_type: str = "mask",
        epochs: int = 50,
        pretrain_epochs: int = 0,
        lr: float = 1e-3,
        batch_size: int = 64,
        weight_decay: float = 0.0,
        output: str = "auto",
        seed: int = 0,
        device: str | None = None,
    ):
        self.n_components = n_components
        self.hidden = hidden
        self.noise = noise
        self.noise_type = noise_type
        self.epochs = epochs
        self.pretrain_epochs = pretrain_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.output = output
        self.seed = seed
        self.device = device

    # ------------------------------------------------------------------ helpers
    def _corrupt(self, x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        if self.noise <= 0:
            return x
        r = torch.rand(x.shape, generator=gen).to(x.device)
        if self.noise_type == "mask":
            return x * (r >= self.noise).to(x.dtype)
        return x + self.noise * torch.randn(x.shape, generator=gen).to(x.device)

    def _train(self, enc: nn.Module, dec: nn.Module, data: torch.Tensor, epochs: int, gen: torch.Generator):
        params = list(enc.parameters()) + list(dec.parameters())
        opt = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)
        n, bs = data.shape[0], max(1, int(self.batch_size))
        losses = [self._mse(enc, dec, data)]
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(data.device)
            for s in range(0, n, bs):
                xb = data[perm[s : s + bs]]
                loss = torch.mean((dec(enc(self._corrupt(xb, gen))) - xb) ** 2)
                opt.zero_grad()
                loss.backward()
                opt.step()
            losses.append(self._mse(enc, dec, data))
        return losses

    @staticmethod
    @torch.no_grad()
    def _mse(enc: nn.Module, dec: nn.Module, data: torch.Tensor) -> float:
        return float(torch.mean((dec(enc(data)) - data) ** 2))

    def _check(self, X: np.ndarray, fitted: bool) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        n_feat = self.n_features_in_ if fitted else None
        if X.ndim != 2 or X.shape[0] == 0 or (n_feat is not None and X.shape[1] != n_feat):
            raise BenchInputError(
                f"SDAE: X has shape {X.shape}"
                + (f", fitted on {n_feat} features" if n_feat else "")
                + "; fix: pass (n_samples, n_features) with the training features"
            )
        if not np.isfinite(X).all():
            raise BenchInputError("SDAE: X has NaN/inf values; fix: impute or drop them before reduction")
        return X

    # ------------------------------------------------------------------ API
    def fit(self, X: np.ndarray, y: np.ndarray | None = None) -> SDAE:
        """X (n_samples, n_features), ideally min-max scaled to [0, 1]; y is ignored."""
        X = self._check(X, fitted=False)
        if self.noise_type not in NOISE_TYPES:
            raise BenchInputError(
                f"SDAE noise_type={self.noise_type!r}: fix: use one of {', '.join(NOISE_TYPES)}"
            )
        if self.output not in OUTPUTS:
            raise BenchInputError(f"SDAE output={self.output!r}: fix: use one of {', '.join(OUTPUTS)}")
        self.output_ = self.output
        if self.output == "auto":
            self.output_ = "sigmoid" if X.min() >= 0.0 and X.max() <= 1.0 else "linear"
        from bench.device import current_device, resolve_device

        dev = current_device() if self.device is None else resolve_device(self.device)
        self.device_ = dev
        gen = torch.Generator()  # on the CPU: every device draws the same numbers
        gen.manual_seed(int(self.seed))
        sizes = [X.shape[1], *[int(h) for h in self.hidden], int(self.n_components)]
        with torch.random.fork_rng(devices=[]):  # weights are initialised on the CPU, then moved
            torch.manual_seed(int(self.seed))
            enc = _stack(sizes, last_sigmoid=True).to(dev, torch.float32)
            dec = _stack(sizes[::-1], last_sigmoid=self.output_ == "sigmoid").to(dev, torch.float32)
        data = torch.as_tensor(X, dtype=torch.float32, device=dev)
        if self.pretrain_epochs > 0:
            enc_lin = [m for m in enc if isinstance(m, nn.Linear)]
            dec_lin = [m for m in dec if isinstance(m, nn.Linear)][::-1]
            h = data
            for k, (e, d) in enumerate(zip(enc_lin, dec_lin, strict=True)):
                out_sig = k > 0 or self.output_ == "sigmoid"
                e_mod = nn.Sequential(e, nn.Sigmoid())
                d_mod = nn.Sequential(d, nn.Sigmoid()) if out_sig else d
                self._train(e_mod, d_mod, h, int(self.pretrain_epochs), gen)
                with torch.no_grad():
                    h = e_mod(h)
        self.encoder_, self.decoder_ = enc, dec
        self.loss_history_ = self._train(enc, dec, data, int(self.epochs), gen)
        enc.eval()
        dec.eval()
        self.n_features_in_ = X.shape[1]
        return self

    @torch.no_grad()
    def transform(self, X: np.ndarray) -> np.ndarray:
        """(n, n_features) -> (n, n_components) float64 code in (0, 1)."""
        X = self._check(X, fitted=True)
        z = self.encoder_(torch.as_tensor(X, dtype=torch.float32, device=self.device_))
        return z.cpu().numpy().astype(np.float64)

    @torch.no_grad()
    def inverse_transform(self, Z: np.ndarray) -> np.ndarray:
        """(n, n_components) code -> (n, n_features) float64 reconstruction."""
        Z = np.asarray(Z, dtype=np.float64)
        if Z.ndim != 2 or Z.shape[1] != int(self.n_components):
            raise BenchInputError(
                f"SDAE.inverse_transform: Z has shape {Z.shape}; fix: pass codes of width {self.n_components}"
            )
        x = self.decoder_(torch.as_tensor(Z, dtype=torch.float32, device=self.device_))
        return x.cpu().numpy().astype(np.float64)

    def reconstruction_error(self, X: np.ndarray) -> float:
        """Mean squared error of ``inverse_transform(transform(X))`` against X."""
        X = self._check(X, fitted=True)
        return float(np.mean((self.inverse_transform(self.transform(X)) - X) ** 2))
