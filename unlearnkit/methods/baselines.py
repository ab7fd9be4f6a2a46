"""Fine-tuning baselines: ``finetune`` (FT), ``gradient_ascent`` (GA / NegGrad), ``neggrad_plus`` (NegGrad+),
``random_label`` (RL) and ``amnesiac``.

``retrain`` lives in :mod:`unlearnkit.methods.retrain` because it reuses the training loop. Each baseline is a few
epochs of a standard optimiser over the forget and/or retain set. Where two seed papers configure a baseline
differently the config offers both as named recipes (``recipe="sfron"``, ``recipe="salun"``; see
:mod:`unlearnkit.methods._recipes`): every tunable field defaults to ``None`` = "the recipe's value" and an
explicit value overrides it. The recipes' values are the seed papers' (CIFAR scale, spec ``baselines.md`` and
``sfron_salun.md`` §4.3); they are given in epochs, so they scale with the size of the data without a rule.

Which seed paper compares against which baseline (spec ``baselines.md``): FT — Deep Unlearning, UNSIR, SFR-on, ∇τ;
GA — DU, UNSIR, SFR-on; NegGrad+ — DU; RL — DU, SFR-on; Amnesiac — ∇τ.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader
from tqdm.auto import tqdm

from ..errors import DataError
from ._common import cycle, loader_seed, make_generator, rebatch
from ._labels import Relabelled, draw_labels
from ._recipes import OptimRecipeConfig, epoch_lr, optimizer_step, set_lr
from .base import ANY_LOSS_TASK, RELABEL_NOTE, History, UnlearnData, register_method

__all__ = ["AmnesiacConfig", "FinetuneConfig", "GradientAscentConfig", "NegGradPlusConfig", "RandomLabelConfig"]

# Loader salts far apart: rebatch reseeds every pass with (seed + pass), so close salts would repeat orders.
_SALT_A, _SALT_B, _SALT_LABELS = 100_000, 200_000, 500_000

# The SGD settings every SFR-on / SalUn baseline shares (spec sfron_salun.md §4.3: "all use momentum 0.9").
_SGD = dict(momentum=0.9, weight_decay=5e-4, optimizer="sgd")


# ---------------------------------------------------------------------------------------------------------------
# Shared config and loop
# ---------------------------------------------------------------------------------------------------------------


def _optimizer(model: nn.Module, cfg: OptimRecipeConfig) -> torch.optim.Optimizer:
    return cfg.make_optimizer([p for p in model.parameters() if p.requires_grad])


def _passes(model: nn.Module, data: UnlearnData, cfg: OptimRecipeConfig, name: str,
            phases: list[tuple[DataLoader, str, float]], *, max_norm: float = 0.0, train_mode: bool = True,
            before_epoch: Any = None) -> History:
    """``epochs`` epochs; each runs the phases in order, one optimiser step per batch on ``sign * loss``.

    The optimiser (and its momentum) is shared by every phase, as in the official loops; the lr follows the
    schedule per epoch. ``before_epoch(epoch)`` runs first in each epoch (a fresh label draw).
    """
    hist: History = {key: [] for _, key, _ in phases}
    epochs, dev = cfg.get("epochs"), data.device
    if epochs == 0 or cfg.get("lr") == 0.0:
        return hist  # before any forward pass: not even normalisation statistics change
    opt = _optimizer(model, cfg)
    model.train(train_mode)
    for epoch in tqdm(range(epochs), desc=name, disable=not data.progress, leave=False):
        set_lr(opt, epoch_lr(cfg.get("lr"), cfg.get("schedule"), epoch, epochs))
        if before_epoch is not None:
            before_epoch(epoch)
        for loader, key, sign in phases:
            for x, y in loader:
                loss = data.task.loss(model, x.to(dev), y.to(dev))
                optimizer_step(opt, sign * loss, max_norm)
                hist[key].append(float(loss.detach()))
                data.step_done(sum(len(v) for v in hist.values()), model)
    return hist


def _loader(ds: Any, cfg: OptimRecipeConfig, salt: int) -> DataLoader:
    ds = ds.dataset if isinstance(ds, DataLoader) else ds
    return rebatch(ds, cfg.get("batch_size"), shuffle=True, seed=loader_seed(cfg.seed, salt))


# ---------------------------------------------------------------------------------------------------------------
# finetune
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class FinetuneConfig(OptimRecipeConfig):
    """Fine-tune on the retain set only (catastrophic forgetting of the forget set); recipes ``sfron``, ``salun``."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # SFR-on repository, CIFAR-10 (spec sfron_salun.md §4.3): SGD 0.01, 10 epochs, cosine, batch 128.
        "sfron": dict(epochs=10, lr=0.01, batch_size=128, schedule="cosine", **_SGD),
        # SalUn repository (spec baselines.md): 10 epochs, 0.01, constant, batch 256.
        "salun": dict(epochs=10, lr=0.01, batch_size=256, schedule="constant", **_SGD),
    }
    recipe: str = field(default="sfron", metadata={
        "help": "'sfron' (SFR-on repository: cosine, batch 128) or 'salun' (SalUn repository: constant, batch 256)."})


def finetune(model: nn.Module, data: UnlearnData, cfg: FinetuneConfig) -> History:
    r"""FT: a few epochs of SGD on the retain set only, relying on catastrophic forgetting of the forget set.

    Paper: Golatkar, Achille, Soatto, "Eternal Sunshine of the Spotless Net: Selective Forgetting in Deep Networks",
    CVPR 2020 (FT baseline); compared against by Deep Unlearning, UNSIR, SFR-on and ∇τ. Official code of the
    recipes: SFR-on https://github.com/K1nght/Unified-Unlearning-w-Remain-Geometry (``Classification/``) and SalUn
    https://github.com/OPTML-Group/Unlearn-Saliency.

    **Recipes.** ``sfron`` (default): SGD lr 0.01, momentum 0.9, weight decay 5e-4, 10 epochs, cosine per epoch,
    batch 128. ``salun``: the same SGD at a constant lr 0.01, batch 256. ∇τ's FT (its own loop with α₀ = 0) is
    ``gradtau`` with that setting, not a recipe here.

    **Deviations.** No data augmentation unless the caller's loaders apply it (the official loops augment).

    **Generation** (task ``generation``): the same loop on the task's ε-prediction loss over the remaining
    classes. The spec has no DDPM fine-tuning settings; :data:`unlearnkit.tasks.diffusion.GENERATION_DEFAULTS`
    uses the DDPM unlearning optimiser of SFR-on's and SalUn's code (Adam lr 1e-4, wd 0, batch 128, constant lr)
    for 17 remain epochs (153 steps on digits, about sfron's 150 iterations).

    Example:
        >>> import torch, unlearnkit
        >>> from torch.utils.data import DataLoader, TensorDataset
        >>> x, y = torch.randn(60, 4), torch.randint(0, 2, (60,))
        >>> m = torch.nn.Linear(4, 2)
        >>> r = unlearnkit.unlearn(m, forget=DataLoader(TensorDataset(x[:6], y[:6])),
        ...                        retain=DataLoader(TensorDataset(x[6:], y[6:])),
        ...                        config=unlearnkit.FinetuneConfig(epochs=2, batch_size=16))
        >>> len(r.history["retain_loss"])
        8
    """
    return _passes(model, data, cfg, "finetune", [(_loader(data.retain, cfg, _SALT_A), "retain_loss", +1.0)])


# ---------------------------------------------------------------------------------------------------------------
# gradient_ascent
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class GradientAscentConfig(OptimRecipeConfig):
    """Gradient ascent on the forget loss only (NegGrad); recipes ``sfron`` (eval mode, clip) and ``salun``."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"lr": 0.0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # SFR-on repository, CIFAR-10 (spec sfron_salun.md §4.3): SGD 1e-4, 9 epochs on the forget set, grad clip
        # 0.1, model in eval mode, no schedule.
        "sfron": dict(epochs=9, lr=1e-4, batch_size=128, schedule="constant", mode="eval", max_norm=0.1, **_SGD),
        # SalUn / Unlearn-Sparse repositories: SGD momentum 0.9, wd 5e-4, train mode; their example command runs
        # GA at lr 1e-4 for 5 epochs; batch 256 as their other baselines; no clipping.
        "salun": dict(epochs=5, lr=1e-4, batch_size=256, schedule="constant", mode="train", max_norm=0.0, **_SGD),
    }
    recipe: str = field(default="sfron", metadata={
        "help": "'sfron' (SFR-on repository: eval mode, clip 0.1, 9 epochs) or 'salun' (SalUn: train mode)."})
    mode: str | None = field(default=None, metadata={
        "help": "'train' or 'eval': the model's mode during the ascent (eval freezes normalisation statistics) "
                "(None: the recipe's)."})
    max_norm: float | None = field(default=None, metadata={
        "help": "Gradient-norm clip per step; 0 disables (None: the recipe's)."})

    def validate(self) -> None:
        super().validate()
        self._check_opt_choice("mode", ("train", "eval"))
        self._check_opt("max_norm", 0.0)


def gradient_ascent(model: nn.Module, data: UnlearnData, cfg: GradientAscentConfig) -> History:
    r"""GA (NegGrad): SGD steps that *increase* the mean cross-entropy on the forget set, θ ← θ + lr·∇L_f(θ).

    Paper: Thudi, Deza, Chandrasekaran, Papernot, "Unrolling SGD: Understanding Factors Influencing Machine
    Unlearning", EuroS&P 2022 (also Graves et al. 2021); compared against by Deep Unlearning, UNSIR and SFR-on.
    Official code of the recipes: SFR-on ``Classification/`` and SalUn (see :func:`finetune`).

    **Recipes.** ``sfron`` (default): SGD lr 1e-4, momentum 0.9, weight decay 5e-4, 9 epochs over the forget set,
    batch 128, total gradient norm clipped to 0.1, **model in eval mode** (normalisation layers keep their running
    statistics), constant lr. ``salun``: the same SGD in train mode, no clipping, 5 epochs, batch 256.
    Weight decay and momentum act on the ascent step as in both repositories.

    **Generation** (task ``generation``): plain ascent on the task's ε-prediction loss of the forgotten class (the
    ``ga`` forget loss of SFR-on's DDPM code without the remain step). The spec has no DDPM GA settings;
    :data:`unlearnkit.tasks.diffusion.GENERATION_DEFAULTS` uses the DDPM unlearning optimiser (Adam lr 1e-4,
    wd 0, batch 128, constant lr, clip 1.0 as SFR-on's forget step) in train mode for 150 forget epochs (150 steps
    when the class fits in one batch, as on digits).
    """
    loader = _loader(data.forget, cfg, _SALT_A)
    return _passes(model, data, cfg, "gradient_ascent", [(loader, "forget_loss", -1.0)],
                   max_norm=float(cfg.get("max_norm")), train_mode=cfg.get("mode") == "train")


# ---------------------------------------------------------------------------------------------------------------
# neggrad_plus
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class NegGradPlusConfig(OptimRecipeConfig):
    """NegGrad+: descent on the retain loss and ascent on the forget loss in one β-weighted step."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # DU's grad_ascent_descent / DeepUnlearn's NegGrad+: one retain and one forget batch per step, SGD. The
        # spec names DU's lr/momentum/wd without values: FT's SFR-on SGD (0.01, 0.9, 5e-4, batch 128) is used;
        # 5 passes over the retain set; beta = 0.999 (our choice; a retain weight close to 1 keeps the unbounded
        # ascent term from dominating).
        "du": dict(epochs=5, lr=0.01, batch_size=128, schedule="constant", beta=0.999, **_SGD),
    }
    recipe: str = field(default="du", metadata={"help": "'du' (Deep Unlearning's grad_ascent_descent loop)."})
    beta: float | None = field(default=None, metadata={
        "help": "Weight of the retain loss: loss = beta*CE_retain - (1-beta)*CE_forget (None: the recipe's)."})

    def validate(self) -> None:
        super().validate()
        self._check_opt("beta", 0.0, 1.0)


def neggrad_plus(model: nn.Module, data: UnlearnData, cfg: NegGradPlusConfig) -> History:
    r"""NegGrad+: per step, ``β·CE(retain batch) − (1 − β)·CE(forget batch)``, one SGD step.

    Paper: Kurmanji, Triantafillou, Hayes, Triantafillou, "Towards Unbounded Machine Unlearning", NeurIPS 2023
    (NegGrad+ baseline); compared against by Deep Unlearning (``grad_ascent_descent`` in
    https://github.com/sangamesh-kodge/class_forgetting) and implemented in DeepUnlearn
    (https://github.com/xcadet/deepunlearn, ``munl/unlearning``) as the β-weighted sum.

    **Loop.** Each epoch is one pass over the retain set; each retain batch is paired with the next forget batch
    (the forget loader cycles). **Defaults** (recipe ``du``): SGD lr 0.01, momentum 0.9, weight decay 5e-4,
    batch 128 for both sets, 5 epochs, β = 0.999. **Deviations**: the spec gives DU's optimiser without values
    and the DU subsets (45,000 retain / 5,000 forget) are CIFAR sizes; here the whole sets are used and the
    optimiser is FT's SFR-on SGD; β is our choice (not a published value).
    """
    hist: History = {"retain_loss": [], "forget_loss": []}
    epochs, dev, beta = cfg.get("epochs"), data.device, float(cfg.get("beta"))
    if epochs == 0 or cfg.get("lr") == 0.0:
        return hist
    retain, forget = _loader(data.retain, cfg, _SALT_A), cycle(_loader(data.forget, cfg, _SALT_B))
    opt = _optimizer(model, cfg)
    model.train()
    for epoch in tqdm(range(epochs), desc="neggrad_plus", disable=not data.progress, leave=False):
        set_lr(opt, epoch_lr(cfg.get("lr"), cfg.get("schedule"), epoch, epochs))
        for xr, yr in retain:
            xf, yf = next(forget)
            lr_ = data.task.loss(model, xr.to(dev), yr.to(dev))
            lf = data.task.loss(model, xf.to(dev), yf.to(dev))
            optimizer_step(opt, beta * lr_ - (1.0 - beta) * lf)
            hist["retain_loss"].append(float(lr_.detach()))
            hist["forget_loss"].append(float(lf.detach()))
    return hist


# ---------------------------------------------------------------------------------------------------------------
# random_label and amnesiac
# ---------------------------------------------------------------------------------------------------------------

_LABELS = ("once_wrong", "epoch_wrong", "epoch_any")


@dataclass
class RandomLabelConfig(OptimRecipeConfig):
    """Train on forget examples with random labels, with the retain set; recipes ``sfron`` and ``salun``."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # SFR-on repository, CIFAR-10 (spec sfron_salun.md §4.3): SGD 0.003, 10 epochs, cosine, batch 128; labels
        # != y drawn once per run; forget and retain mixed in one shuffled loader.
        "sfron": dict(epochs=10, lr=0.003, batch_size=128, schedule="cosine", order="mixed", labels="once_wrong",
                      **_SGD),
        # SalUn repository, CIFAR-10: each epoch all forget batches (labels redrawn by torch.randint, so they may
        # equal y) then all retain batches; 10 epochs, constant lr, batch 256 as its FT. The spec gives no lr for
        # this loop: 0.01, its FT's.
        "salun": dict(epochs=10, lr=0.01, batch_size=256, schedule="constant", order="sequential",
                      labels="epoch_any", **_SGD),
    }
    recipe: str = field(default="sfron", metadata={
        "help": "'sfron' (one mixed loader, labels drawn once) or 'salun' (forget-then-retain, labels per epoch)."})
    order: str | None = field(default=None, metadata={
        "help": "'mixed': one shuffled loader over forget and retain; 'sequential': each epoch all forget batches, "
                "then all retain batches (None: the recipe's)."})
    labels: str | None = field(default=None, metadata={
        "help": "'once_wrong': one label != y per forget example for the whole run; 'epoch_wrong' / 'epoch_any': "
                "redrawn every epoch, excluding y / over all classes (None: the recipe's)."})

    def validate(self) -> None:
        super().validate()
        self._check_opt_choice("order", ("mixed", "sequential"))
        self._check_opt_choice("labels", _LABELS)


def _relabel_run(model: nn.Module, data: UnlearnData, cfg: RandomLabelConfig, name: str) -> History:
    """The relabelling loop of ``random_label`` and ``amnesiac``: the forget set's labels are replaced by random
    ones (drawn for the whole set on a CPU generator, so every rank agrees), then epochs over the order."""
    num_classes = int(data.num_classes or 0)
    if cfg.get("epochs") == 0 or cfg.get("lr") == 0.0:
        return {"mixed_loss": []} if cfg.get("order") == "mixed" else {"forget_loss": [], "retain_loss": []}
    if num_classes < 2:
        raise DataError(f"random labels need at least 2 classes, got num_classes={data.num_classes!r}; pass "
                        "num_classes to unlearn()")
    scheme = cfg.get("labels")
    g = make_generator(loader_seed(cfg.seed, _SALT_LABELS))
    fset = data.forget.dataset  # type: ignore[union-attr]
    forget = Relabelled(fset, draw_labels(fset, num_classes, g, exclude_true=scheme != "epoch_any"))

    def redraw(epoch: int) -> None:
        if scheme != "once_wrong" and epoch > 0:  # epoch 0 uses the labels drawn above
            forget.labels.copy_(draw_labels(fset, num_classes, g, exclude_true=scheme == "epoch_wrong"))

    if cfg.get("order") == "mixed":
        phases = [(_loader(ConcatDataset([forget, data.retain.dataset]), cfg, _SALT_A), "mixed_loss", 1.0)]  # type: ignore[union-attr]
    else:
        phases = [(_loader(forget, cfg, _SALT_A), "forget_loss", 1.0),
                  (_loader(data.retain, cfg, _SALT_B), "retain_loss", 1.0)]
    return _passes(model, data, cfg, name, phases, before_epoch=redraw)


def random_label(model: nn.Module, data: UnlearnData, cfg: RandomLabelConfig) -> History:
    r"""RL: fine-tune on forget examples with random labels together with the retain set (true labels).

    Paper: Golatkar, Achille, Soatto, CVPR 2020 and Fan et al. (SalUn), ICLR 2024 (RL baseline); compared
    against by Deep Unlearning and SFR-on. Official code of the recipes: SFR-on ``Classification/`` and SalUn.

    **Recipes.** ``sfron`` (default): each forget example gets one label ≠ y drawn **once** for the run; forget
    and retain examples are **mixed in one shuffled loader**, so every forget example is seen once per epoch;
    SGD lr 0.003, momentum 0.9, weight decay 5e-4, 10 epochs, cosine per epoch, batch 128. ``salun``: each
    epoch first all forget batches (labels redrawn every epoch, uniform over all classes, so they may equal y, as
    the official ``torch.randint``), then all retain batches; lr 0.01 constant, batch 256.

    **Deviations.** SalUn's code draws labels per batch; drawing them per epoch for the whole forget set is the
    same distribution (each example is seen once per epoch) and keeps distributed ranks in agreement. The
    ``salun`` recipe's lr is not given by the spec (0.01, its FT's).
    """
    return _relabel_run(model, data, cfg, "random_label")


@dataclass
class AmnesiacConfig(RandomLabelConfig):
    """∇τ's Amnesiac baseline: forget examples with random wrong labels mixed with the retain set, Adam."""

    ZERO_STRENGTH: ClassVar[dict[str, Any]] = {"epochs": 0}
    RECIPES: ClassVar[dict[str, dict[str, Any]]] = {
        # ∇τ notebooks (spec baselines.md): random wrong labels, mixed with D_r; Adam 1e-4, 3 epochs, batch 128.
        "gradtau": dict(epochs=3, lr=1e-4, batch_size=128, schedule="constant", order="mixed", labels="once_wrong",
                        optimizer="adam", momentum=0.0, weight_decay=0.0),
    }
    recipe: str = field(default="gradtau", metadata={"help": "'gradtau' (the ∇τ paper's Amnesiac baseline)."})


def amnesiac(model: nn.Module, data: UnlearnData, cfg: AmnesiacConfig) -> History:
    r"""Amnesiac (relabelling variant): Adam on forget examples with random wrong labels mixed with D_r.

    Paper: Graves, Nagisetty, Ganesh, "Amnesiac Machine Learning", AAAI 2021 (https://arxiv.org/abs/2010.10981;
    official code https://github.com/lmgraves/AmnesiacML), as ∇τ (Trippa et al. 2024, notebooks in
    https://github.com/dnl-trpp/Nabla-Tau) runs it: the paper's relabel-and-train "unlearning", not its
    stored-update "amnesiac unlearning" (which needs the training run's batch updates).

    **Defaults** (∇τ): labels ≠ y drawn once per forget example, forget and retain mixed in one shuffled loader,
    Adam lr 1e-4 (no weight decay), 3 epochs, batch 128. Same loop as :func:`random_label`.
    """
    return _relabel_run(model, data, cfg, "amnesiac")


register_method("finetune", config_cls=FinetuneConfig, fn=finetune, is_baseline=True,
                summary="Fine-tune on the retain set only.",
                paper="Golatkar et al., Eternal Sunshine of the Spotless Net, CVPR 2020 (FT baseline)",
                requires_forget=False, supports_distributed=True, raises_forget_loss=False,
                tasks=ANY_LOSS_TASK | {"generation"},
                class_note="finetune has no forget-set term: it forgets only what fine-tuning on the kept classes "
                           "overwrites, so how much of the class remains depends on the data and the run length "
                           "(try `unlearnkit tune`)")
register_method("gradient_ascent", config_cls=GradientAscentConfig, fn=gradient_ascent, is_baseline=True,
                summary="Gradient ascent on the forget-set loss (NegGrad).",
                paper="Thudi et al., Unrolling SGD, EuroS&P 2022 (GA baseline)",
                requires_retain=False, supports_distributed=True, tasks=ANY_LOSS_TASK | {"generation"},
                class_note="the SFR-on recipe (SGD 1e-4, clip 0.1) moves a converged model too little to forget a "
                           "class, and a rate large enough to forget it has no retain term to stop the collapse of "
                           "the kept classes (try `unlearnkit tune`, which searches the rate)")
register_method("neggrad_plus", config_cls=NegGradPlusConfig, fn=neggrad_plus, is_baseline=True,
                summary="Retain descent and forget ascent in one beta-weighted step (NegGrad+).",
                paper="Kurmanji et al., Towards Unbounded Machine Unlearning, NeurIPS 2023 (NegGrad+ baseline)",
                supports_distributed=True, tasks=ANY_LOSS_TASK)
register_method("random_label", config_cls=RandomLabelConfig, fn=random_label, is_baseline=True,
                summary="Train on forget samples with random labels together with the retain set.",
                paper="Golatkar et al., CVPR 2020; Fan et al. SalUn, ICLR 2024 (RL baseline)",
                supports_distributed=True, task_note=RELABEL_NOTE)
register_method("amnesiac", config_cls=AmnesiacConfig, fn=amnesiac, is_baseline=True,
                summary="Random wrong labels on the forget set mixed with the retain set, Adam (∇τ's Amnesiac).",
                paper="Graves et al., Amnesiac Machine Learning, AAAI 2021 (as run by ∇τ)",
                supports_distributed=True, task_note=RELABEL_NOTE)
