"""``unsir``: UNSIR, error-maximising noise followed by impair and repair (class forgetting, zero-glance).

Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE Transactions on Neural
Networks and Learning Systems (TNNLS) 2023; arXiv 2111.08947 (https://arxiv.org/abs/2111.08947).
Official code: https://github.com/vikram2000b/Fast-Machine-Unlearning (``Machine Unlearning.ipynb``).
Specification followed: ``shared/specs/unsir.md``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from ..distributed import all_reduce_mean
from ..errors import ConfigError, DataError, IncompatibleModelError, UnlearnError, UnsupportedRequestError
from ._common import loader_seed, make_generator, rebatch, takes_token_ids
from .base import History, UnlearnConfig, UnlearnData, _default_validate_model, register_method

__all__ = ["UnsirConfig"]

# Salts for loader_seed: one independent, reproducible random stream per purpose.
_SALT_SUBSET, _SALT_IMPAIR, _SALT_REPAIR, _SALT_NOISE = 10, 11, 12, 1000
# Rows of noise per forward pass while learning the noise (bounds memory for many classes / large inputs).
_NOISE_CHUNK = 1024


# ---------------------------------------------------------------------------------------------------------------
# Config
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class UnsirConfig(UnlearnConfig):
    """Hyperparameters of :func:`unsir`; defaults are the official notebook's (spec §1-§2).

    ``legacy=False`` (default) is the corrected behaviour; ``legacy=True`` reproduces the three bugs of the
    official notebook listed in spec §4 (see :func:`unsir` for the details).
    """

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"impair_epochs": 0, "repair_epochs": 0}

    noise_batch: int = field(default=256, metadata={
        "help": "Noise images learned per forgotten class (official: 256, the training batch size)."})
    noise_steps: int = field(default=40, metadata={
        "help": "Adam steps on the noise (official: 5 'epochs' x 8 steps on the same tensor = 40)."})
    noise_lr: float = field(default=0.1, metadata={"help": "Adam learning rate of the noise (official: 0.1)."})
    noise_l2: float = field(default=0.1, metadata={
        "help": "Weight lambda of the squared-L2 penalty mean_b(sum N^2) on each noise image (official: 0.1)."})
    noise_copies: int = field(default=20, metadata={
        "help": "Copies of each class's noise in the impair set (official num_batches: 20)."})
    noise_clamp: tuple[float, float] | None = field(default=None, metadata={
        "help": "Optional (low, high) range the noise is clamped to after every step (None: no clamp, as "
                "the official code; inputs live in normalised space)."})
    retain_per_class: int | None = field(default=1000, metadata={
        "help": "Retain samples per remaining class in the retain subset (official: 1000); None uses all."})
    retain_selection: str = field(default="random", metadata={
        "help": "'random' (seeded draw per class) or 'first' (first samples per class in dataset order, as "
                "the official notebook)."})
    impair_lr: float = field(default=0.02, metadata={"help": "Learning rate of the impair step (official: 0.02)."})
    impair_epochs: int = field(default=1, metadata={"help": "Passes over noise + retain subset (official: 1)."})
    repair_lr: float = field(default=0.01, metadata={"help": "Learning rate of the repair step (official: 0.01)."})
    repair_epochs: int = field(default=1, metadata={"help": "Passes over the retain subset (official: 1)."})
    batch_size: int = field(default=256, metadata={"help": "Mini-batch size of impair and repair (official: 256)."})
    optimizer: str = field(default="adam", metadata={
        "help": "Optimiser of impair and repair: 'adam' (official) or 'sgd' (momentum 0.9). The noise is "
                "always learned with Adam."})
    legacy: bool = field(default=False, metadata={
        "help": "Reproduce the official notebook's bugs: only C noise images per class (C = first input "
                "dimension), every noise labelled class 0, noise learned in train mode (BN statistics updated)."})

    def validate(self) -> None:
        super().validate()
        self._check_range("noise_batch", 1, integer=True)
        self._check_range("noise_steps", 0, integer=True)
        self._check_range("noise_lr", 0.0)
        self._check_range("noise_l2", 0.0)
        self._check_range("noise_copies", 0, integer=True)
        if self.noise_clamp is not None:
            ok = (isinstance(self.noise_clamp, (tuple, list)) and len(self.noise_clamp) == 2
                  and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in self.noise_clamp)
                  and float(self.noise_clamp[0]) < float(self.noise_clamp[1]))
            if not ok:
                raise ConfigError(f"UnsirConfig.noise_clamp must be None or (low, high) with low < high, "
                                  f"got {self.noise_clamp!r}")
            self.noise_clamp = (float(self.noise_clamp[0]), float(self.noise_clamp[1]))
        if self.retain_per_class is not None:
            self._check_range("retain_per_class", 1, integer=True)
        self._check_choice("retain_selection", ("random", "first"))
        self._check_range("impair_lr", 0.0)
        self._check_range("impair_epochs", 0, integer=True)
        self._check_range("repair_lr", 0.0)
        self._check_range("repair_epochs", 0, integer=True)
        self._check_range("batch_size", 1, integer=True)
        self._check_choice("optimizer", ("adam", "sgd"))
        if not isinstance(self.legacy, bool):
            raise ConfigError(f"UnsirConfig.legacy must be True or False, got {self.legacy!r}")


# ---------------------------------------------------------------------------------------------------------------
# Retain subset
# ---------------------------------------------------------------------------------------------------------------


def dataset_labels(ds: Dataset) -> torch.Tensor:
    """Integer labels of every item of ``ds`` (fast path for datasets with a ``y`` tensor and their Subsets)."""
    y = getattr(ds, "y", None)
    if isinstance(y, torch.Tensor) and y.ndim == 1 and len(y) == len(ds):  # type: ignore[arg-type]
        return y.detach().cpu().long()
    if isinstance(ds, torch.utils.data.Subset):
        return dataset_labels(ds.dataset)[torch.as_tensor(list(ds.indices), dtype=torch.long)]
    return torch.tensor([int(ds[i][1]) for i in range(len(ds))], dtype=torch.long)  # type: ignore[arg-type]


def retain_subset_indices(labels: torch.Tensor, forget_classes: Sequence[int], per_class: int | None,
                          selection: str, seed: int) -> torch.Tensor:
    """Indices of the retain subset: up to ``per_class`` samples of every class that is not forgotten.

    Samples of a forgotten class are always excluded, even if the caller's retain set holds some (the Deep
    Unlearning re-implementation excluded only the first forgotten class, spec §4.5). ``selection="first"`` takes
    the first samples in dataset order (official notebook); ``"random"`` draws them with a generator seeded by
    ``seed``, so the subset is identical on every rank and every run.
    """
    g = make_generator(seed)
    forgotten = set(int(c) for c in forget_classes)
    picked = []
    for c in sorted(set(labels.tolist()) - forgotten):
        idx = torch.nonzero(labels == c).flatten()
        if per_class is not None and len(idx) > per_class:
            if selection == "random":
                idx = idx[torch.randperm(len(idx), generator=g)[:per_class]].sort().values
            else:
                idx = idx[:per_class]
        picked.append(idx)
    if not picked:
        return torch.zeros(0, dtype=torch.long)
    return torch.cat(picked).sort().values


# ---------------------------------------------------------------------------------------------------------------
# Error-maximising noise
# ---------------------------------------------------------------------------------------------------------------


def _unwrap(model: nn.Module) -> nn.Module:
    # Noise learning never goes through DistributedDataParallel: its reducer expects weight gradients after
    # every forward with grad enabled, and we only want input gradients (reduced by hand below).
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def _noise_step(model: nn.Module, noise: torch.Tensor, labels: torch.Tensor, per_class: int, l2: float,
                loss_fn: Callable[..., torch.Tensor]) -> tuple[torch.Tensor, float, float]:
    """Gradient of ``sum_c [ -mean_{i in c} loss_i + l2 * mean_{i in c} ||N_i||^2 ]`` w.r.t. ``noise``.

    All classes have ``per_class`` rows, so the per-class means are sums scaled by ``1/per_class`` and the
    gradient of each class's rows equals the gradient of that class's own objective (spec §1 step 2). Only input
    gradients are computed (``torch.autograd.grad``): parameter ``.grad`` fields are never touched.
    Returns the gradient, the mean objective per class and the mean loss on the noise.
    """
    grad = torch.zeros_like(noise)
    total_obj = 0.0
    total_ce = 0.0
    n_cls = noise.shape[0] // per_class
    for s in range(0, noise.shape[0], _NOISE_CHUNK):
        leaf = noise[s:s + _NOISE_CHUNK].detach().requires_grad_(True)
        ce = loss_fn(model(leaf), labels[s:s + _NOISE_CHUNK], reduction="none")
        sq = leaf.pow(2).flatten(1).sum(1)
        obj = (-ce + l2 * sq).sum() / per_class
        (g,) = torch.autograd.grad(obj, leaf)
        grad[s:s + _NOISE_CHUNK] = g
        total_obj += float(obj.detach())
        total_ce += float(ce.detach().sum())
    return grad, total_obj / n_cls, total_ce / noise.shape[0]


def _initial_noise(c: int, cfg: UnsirConfig, input_shape: Sequence[int], dtype: torch.dtype) -> torch.Tensor:
    # randn init (official), drawn on the CPU from a per-class seed: the noise of class c does not depend on the
    # device nor on which other classes are forgotten in the same request.
    g = make_generator(loader_seed(cfg.seed, _SALT_NOISE + int(c)))
    return torch.randn(cfg.noise_batch, *input_shape, generator=g).to(dtype)


def learn_noise(model: nn.Module, forget_classes: Sequence[int], input_shape: Sequence[int], cfg: UnsirConfig, *,
                device: torch.device | str, loss_fn: Callable[..., torch.Tensor],
                dtype: torch.dtype = torch.float32, progress: bool = False) -> tuple[dict[int, torch.Tensor], History]:
    """Learn one error-maximising noise tensor ``(noise_batch, *input_shape)`` per forgotten class.

    Minimises ``-loss(f(N_c), c) + noise_l2 * mean_b ||N_c[b]||^2`` with Adam (spec §1 step 2).

    Default (``cfg.legacy=False``): the model is put in eval mode for the whole noise optimisation, so
    normalisation running statistics are never updated and dropout is off, and its training flags are restored
    afterwards. The noise of all classes is optimised jointly, in one pass (a single Adam over the stacked
    tensors): the objective is a sum of per-class terms and in eval mode samples do not interact, while Adam is
    element-wise, so this equals one optimisation per class up to floating-point summation order. Under
    ``torch.distributed`` every rank holds the same model and the same seeded initial noise, and the noise
    gradient is additionally averaged over ranks (``all_reduce_mean``) at every step, so every rank learns the
    identical noise.

    ``cfg.legacy=True``: as the official notebook, the model stays in train mode and each class is optimised on
    its own, so every forward pass on noise updates BatchNorm running statistics (spec §4.3).

    Returns:
        ``({class: noise tensor on device}, history)`` with ``noise_loss`` (objective per class, mean over classes)
        and ``noise_ce`` (loss of the model on the noise) per step.
    """
    net = _unwrap(model)
    device = torch.device(device)
    classes = [int(c) for c in forget_classes]
    hist: History = {"noise_loss": [], "noise_ce": []}
    groups = [classes] if not cfg.legacy else [[c] for c in classes]
    flags = [(m, m.training) for m in net.modules()]
    net.train(cfg.legacy)
    out: dict[int, torch.Tensor] = {}
    try:
        for group in groups:
            noise = torch.cat([_initial_noise(c, cfg, input_shape, dtype) for c in group]).to(device)
            labels = torch.cat([torch.full((cfg.noise_batch,), c, dtype=torch.long) for c in group]).to(device)
            noise.requires_grad_(True)
            opt = torch.optim.Adam([noise], lr=cfg.noise_lr)
            desc = "unsir noise" if len(group) > 1 else f"unsir noise (class {group[0]})"
            for _ in tqdm(range(cfg.noise_steps), desc=desc, disable=not progress, leave=False):
                grad, obj, ce = _noise_step(net, noise, labels, cfg.noise_batch, cfg.noise_l2, loss_fn)
                noise.grad = all_reduce_mean(grad)
                opt.step()
                if cfg.noise_clamp is not None:
                    with torch.no_grad():
                        noise.clamp_(*cfg.noise_clamp)
                hist["noise_loss"].append(obj)
                hist["noise_ce"].append(ce)
            noise = noise.detach()
            for k, c in enumerate(group):
                out[c] = noise[k * cfg.noise_batch:(k + 1) * cfg.noise_batch].clone()
    finally:
        for m, was in flags:
            m.training = was
    return out, hist


# ---------------------------------------------------------------------------------------------------------------
# Impair set: noise (with its labels) + retain subset, without materialising the copies
# ---------------------------------------------------------------------------------------------------------------


class NoiseRetainDataset(Dataset):
    """Items ``copies`` times over every noise row (each with its label), followed by the retain subset.

    Copies are index arithmetic, not tensor copies, so memory does not grow with ``copies`` (spec §4.8).
    Labels are returned as int64 scalars whatever the retain dataset returns, so default collation works.
    """

    def __init__(self, noise: torch.Tensor, noise_labels: torch.Tensor, copies: int, retain: Dataset | None) -> None:
        self.noise = noise
        self.noise_labels = noise_labels.long()
        self.copies = int(copies)
        self.retain = retain
        self.n_noise = self.copies * int(noise.shape[0])

    def __len__(self) -> int:
        return self.n_noise + (len(self.retain) if self.retain is not None else 0)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if i < 0:
            i += len(self)
        if i < self.n_noise:
            j = i % self.noise.shape[0]
            return self.noise[j], self.noise_labels[j]
        x, y = self.retain[i - self.n_noise][:2]  # type: ignore[index]
        return x, torch.as_tensor(y, dtype=torch.long)


def impair_noise(noise: dict[int, torch.Tensor], cfg: UnsirConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The noise rows and labels that enter the impair set (once; :class:`NoiseRetainDataset` repeats them).

    Default: all ``noise_batch`` rows of every class, each labelled with its own class (the paper's intent).
    Legacy: the official loop ``for i in range(batch[0].size(0))`` runs over the first dimension of *one* noise
    image, i.e. the channel count C, so only rows ``0..C-1`` of each class are used (spec §4.1), and
    ``class_num = 0`` is never updated, so every noise row is labelled 0 (spec §4.2).
    """
    xs, ys = [], []
    for c in sorted(noise):
        n = noise[c]
        if cfg.legacy:
            n = n[: min(int(n.shape[1]), n.shape[0])]
            label = 0
        else:
            label = c
        xs.append(n)
        ys.append(torch.full((n.shape[0],), label, dtype=torch.long))
    return torch.cat(xs), torch.cat(ys)


# ---------------------------------------------------------------------------------------------------------------
# Impair / repair passes
# ---------------------------------------------------------------------------------------------------------------


def _optimizer(model: nn.Module, name: str, lr: float) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9)
    return torch.optim.Adam(params, lr=lr)


def _train_pass(model: nn.Module, loader: DataLoader, data: UnlearnData, cfg: UnsirConfig, lr: float, epochs: int,
                name: str) -> list[float]:
    """``epochs`` passes of plain training in train mode (official: a fresh optimiser per phase, BN in train)."""
    losses: list[float] = []
    opt = _optimizer(model, cfg.optimizer, lr)
    model.train()
    for epoch in tqdm(range(epochs), desc=f"unsir {name}", disable=not data.progress, leave=False):
        sampler = getattr(loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        for x, y in loader:
            x, y = x.to(data.device), y.to(data.device)
            loss = data.task.loss(model, x, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    return losses


# ---------------------------------------------------------------------------------------------------------------
# The method
# ---------------------------------------------------------------------------------------------------------------


def unsir(model: nn.Module, data: UnlearnData, cfg: UnsirConfig) -> History:
    r"""UNSIR: forget whole classes with error-maximising noise, an impair pass and a repair pass.

    Paper: Tarun, Chundawat, Mandal & Kankanhalli, "Fast Yet Effective Machine Unlearning", IEEE TNNLS 2023,
    arXiv 2111.08947 (https://arxiv.org/abs/2111.08947); official code
    https://github.com/vikram2000b/Fast-Machine-Unlearning (notebook ``Machine Unlearning.ipynb``).

    **Algorithm.** UNSIR is "zero-glance": it never looks at a forget sample, only at the forgotten class ids, the
    model and a small labelled retain subset. For every forgotten class ``c`` it learns a batch of inputs ``N_c``
    that *maximise* the model's loss for label ``c`` under a squared-L2 penalty that keeps the noise bounded. Then
    it trains the model for one pass, at a high learning rate, on the noise (labelled ``c``) mixed with the retain
    subset ("impair"): fitting inputs that are maximally unlike class ``c`` to label ``c`` destroys the features
    that recognise ``c``. A final pass on the retain subset alone ("repair") restores the remaining classes.

    **Update rules.** Noise (Adam, lr ``noise_lr``, ``noise_steps`` steps, the model frozen):

    .. math:: N_c \leftarrow \arg\min_N\; -\ell(f(N), c) + \lambda\,\tfrac1B\textstyle\sum_b \lVert N_b\rVert_2^2

    Impair: ``impair_epochs`` passes of ``optimizer`` at ``impair_lr`` minimising ``loss_fn`` on
    ``noise_copies`` copies of every ``(N_c[b], c)`` plus the retain subset, shuffled, batch ``batch_size``, model in
    train mode. Repair: ``repair_epochs`` passes at ``repair_lr`` on the retain subset alone.

    **Defaults and sources** (spec §1-§2, official notebook): ``noise_batch=256`` (noise tensor
    ``(256, *input_shape)``, randn init), ``noise_steps=40`` (5 "epochs" x 8 steps), ``noise_lr=0.1`` (Adam),
    ``noise_l2=0.1``, ``noise_copies=20`` (``num_batches``), ``retain_per_class=1000``, ``impair_lr=0.02``,
    ``impair_epochs=1``, ``repair_lr=0.01``, ``repair_epochs=1``, ``batch_size=256``, ``optimizer="adam"``.
    ``noise_clamp=None`` (the official code does not clamp; spec §4.4 suggests offering one).

    **Corrected behaviour (default) vs ``legacy=True``** (spec §4.1-§4.3):

    1. *Noise samples used.* Official: the impair set is built with ``for i in range(batch[0].size(0))``, which
       loops over the channel count C of one image, so only the first C = 3 noise images of each class enter the
       impair set (x 20 copies = 60 samples per class). Default: all ``noise_batch`` images (x ``noise_copies``),
       as the paper intends. Legacy: the first C rows, C being the first dimension of the input shape.
    2. *Noise labels.* Official: ``class_num = 0`` is never updated, so all noise is labelled 0 whatever its class
       (GitHub issue vikram2000b/Fast-Machine-Unlearning#2). Default: each noise image carries its own class.
       Legacy: every noise label is 0.
    3. *Normalisation statistics.* Official: noise is learned with the model in train mode, so 40 forward passes
       on noise per class update BatchNorm running statistics (and dropout is active). Default: the model is in
       eval mode while the noise is learned, so every buffer is left untouched, and parameter gradients are never
       computed. Legacy: train mode, one class after the other.

    **Other choices and deviations.**

    * The retain subset is drawn from ``data.retain``: up to ``retain_per_class`` samples of every class present
      there, excluding every forgotten class even if the caller's retain set contains some (fixing the Deep
      Unlearning re-implementation's single-class exclusion, spec §4.5). The official notebook takes the *first*
      1000 per class (``retain_selection="first"``); the default ``"random"`` draws them with a generator seeded
      by ``seed``, so the subset does not depend on the dataset's order and is the same on every rank.
    * Noise shape is taken from the first retain sample (the official code hard-codes 3x32x32), in whatever input
      space the data is (normalised space, as the official notebook). Noise dtype and placement follow the data.
    * Multi-class requests run in one pass: the noise of all forgotten classes is optimised jointly (see
      :func:`learn_noise`, equal to per-class optimisation) and impair/repair are single passes whatever the
      number of classes (spec §4.5).
    * A phase with 0 epochs or learning rate 0 is skipped entirely (no forward pass in train mode), so zero
      impair and repair return bit-identical weights *and* buffers; noise is not learned when impair is skipped,
      since nothing would use it.
    * The official notebook's parameter-gradient accumulation during noise learning is not reproduced even in
      legacy mode: the impair optimiser's ``zero_grad`` cleared it, so it had no effect.
    * The loss is ``data.task``'s (cross-entropy on logits by default; pass an NLL loss for log-softmax models,
      spec §4.7). The noise is always learned with Adam; ``optimizer`` applies to impair and repair.
    * Scale. The defaults are the official notebook's, for ResNet18 on CIFAR-10 (5000 images per class). On
      small datasets they are far too strong: on ``digits`` (about 126 images per class) the defaults left 17-80%
      test accuracy on the remaining classes. With the corrected labels, an impair set dominated by noise labelled
      ``c`` (20 x 256 noise images against about 1100 retain images) teaches the model to predict ``c`` almost
      everywhere, and one repair epoch cannot undo it. Scale ``noise_batch`` with the class size, and lower the
      learning rates for models not trained with Adam; the CLI presets do this for ``digits`` and ``shapes``.
    * Distributed: noise learning runs on the unwrapped module with identical seeded inputs on every rank and
      all-reduced noise gradients, so all ranks learn the same noise; impair and repair shard their data with
      a seeded ``DistributedSampler`` and go through the (DDP) model as given.

    Args:
        model: the trained classifier, edited in place.
        data: needs ``forget_classes`` and ``retain`` (``forget`` is ignored and may be ``None``).
        cfg: an :class:`UnsirConfig`.

    Returns:
        History with ``noise_loss``/``noise_ce`` per noise step, ``impair_loss`` and ``repair_loss`` per batch,
        and the wall time of each phase (``seconds_noise``, ``seconds_impair``, ``seconds_repair``; CPU clock, not
        CUDA-synchronised).

    Raises:
        UnsupportedRequestError: no forgotten class ids were given, or no retain data.
        DataError: a forgotten class is out of range, the retain set holds only forgotten classes, or the inputs
            are not floating point (noise is learned in input space).

    Example:
        >>> import torch, unlearnkit
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
        >>> x, y = torch.randn(60, 3, 2, 2), torch.arange(60) % 3
        >>> keep = y != 1
        >>> retain = DataLoader(TensorDataset(x[keep], y[keep]), batch_size=16)
        >>> cfg = unlearnkit.UnsirConfig(noise_batch=8, noise_steps=5, noise_copies=2, batch_size=16)
        >>> res = unlearnkit.unlearn(net, forget=None, retain=retain, forget_classes=[1], config=cfg)
        >>> sorted(res.history)
        ['impair_loss', 'noise_ce', 'noise_loss', 'repair_loss', 'seconds_impair', 'seconds_noise', 'seconds_repair']
    """
    classes = tuple(sorted({int(c) for c in (data.forget_classes or ())}))
    if not classes:
        raise UnsupportedRequestError("unsir forgets whole classes: pass forget_classes=[...] (it cannot serve "
                                      f"random-subset requests); got forget_classes={data.forget_classes!r}")
    if data.num_classes is not None and (classes[0] < 0 or classes[-1] >= data.num_classes):
        raise DataError(f"forget_classes {list(classes)} out of range: valid classes are "
                        f"0..{data.num_classes - 1}")
    if classes[0] < 0:
        raise DataError(f"forget_classes must be non-negative class ids, got {list(classes)}")
    if data.retain is None:
        raise UnsupportedRequestError("unsir needs a labelled retain subset for impair and repair: pass "
                                      "retain=DataLoader")

    hist: History = {"noise_loss": [], "noise_ce": [], "impair_loss": [], "repair_loss": [],
                     "seconds_noise": [], "seconds_impair": [], "seconds_repair": []}
    do_impair = cfg.impair_epochs > 0 and cfg.impair_lr > 0.0
    do_repair = cfg.repair_epochs > 0 and cfg.repair_lr > 0.0
    if not (do_impair or do_repair):
        return hist

    # --- retain subset ---------------------------------------------------------------------------------------
    retain_ds: Dataset = data.retain.dataset
    labels = dataset_labels(retain_ds)
    idx = retain_subset_indices(labels, classes, cfg.retain_per_class, cfg.retain_selection,
                                loader_seed(cfg.seed, _SALT_SUBSET))
    if len(idx) == 0:
        raise DataError(f"the retain set holds no sample outside the forgotten classes {list(classes)}: pass "
                        "retain data of the remaining classes")
    subset = torch.utils.data.Subset(retain_ds, idx.tolist())
    x0 = subset[0][0]
    if not isinstance(x0, torch.Tensor) or not x0.is_floating_point():
        raise DataError("unsir learns noise in input space and needs floating-point tensor inputs; got "
                        f"{type(x0).__name__}{'' if not isinstance(x0, torch.Tensor) else ' ' + str(x0.dtype)}")
    input_shape = tuple(x0.shape)

    # --- impair: error-maximising noise + retain subset at a high learning rate ------------------------------
    if do_impair:
        t0 = time.perf_counter()
        noise, nh = learn_noise(model, classes, input_shape, cfg, device=data.device, loss_fn=data.task.output_loss,
                                dtype=x0.dtype, progress=data.progress)
        hist.update(nh)
        t1 = time.perf_counter()
        nx, ny = impair_noise(noise, cfg)
        # Noise items are collated with retain items, so they live where the retain tensors live.
        impair_ds = NoiseRetainDataset(nx.to(x0.device), ny.to(x0.device), cfg.noise_copies, subset)
        loader = rebatch(impair_ds, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, _SALT_IMPAIR))
        hist["impair_loss"] = _train_pass(model, loader, data, cfg, cfg.impair_lr, cfg.impair_epochs, "impair")
        hist["seconds_noise"], hist["seconds_impair"] = [t1 - t0], [time.perf_counter() - t1]

    # --- repair: retain subset only ----------------------------------------------------------------------------
    if do_repair:
        t0 = time.perf_counter()
        repair_ds = NoiseRetainDataset(torch.zeros(0, *input_shape), torch.zeros(0, dtype=torch.long), 0, subset)
        loader = rebatch(repair_ds, cfg.batch_size, shuffle=True, seed=loader_seed(cfg.seed, _SALT_REPAIR))
        hist["repair_loss"] = _train_pass(model, loader, data, cfg, cfg.repair_lr, cfg.repair_epochs, "repair")
        hist["seconds_repair"] = [time.perf_counter() - t0]
    return hist


def _validate_model(model: nn.Module) -> list[UnlearnError]:
    if takes_token_ids(model):
        return [IncompatibleModelError(
            "unsir learns error-maximising noise in the model's input space by gradient ascent, but this model "
            "takes discrete token ids (discrete_inputs=True), which have no input gradient; use another method "
            "(e.g. gradtau, sfron, salun, finetune) for text models")]
    return _default_validate_model(model)


register_method(
    "unsir", config_cls=UnsirConfig, fn=unsir,
    summary="Error-maximising noise per forgotten class, then impair (noise + retain, high lr) and repair.",
    paper="Tarun et al., Fast Yet Effective Machine Unlearning, IEEE TNNLS 2023 (arXiv 2111.08947)",
    requires_forget=False, requires_forget_classes=True, requires_retain=True,
    supported_requests={"class"}, supports_distributed=True, stochastic=True, validate_model=_validate_model)
