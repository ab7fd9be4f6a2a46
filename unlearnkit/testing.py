"""A public test oracle: :func:`check_method_contract` checks that a registered method honours the contract.

Users who register their own method can run the same battery the built-in methods pass::

    from unlearnkit.testing import check_method_contract, toy_problem
    check_method_contract("finetune")

Checks (each failure raises ``AssertionError`` with what was expected and found):

1. ``unlearn`` returns an :class:`~unlearnkit.UnlearnResult` naming the method, with finite weights;
2. the caller's model is untouched by default, and ``inplace=True`` returns the caller's object;
3. the same seed gives bit-identical weights; a different seed gives different weights for stochastic methods
   (with batches of 8 when the toy data fit in one batch of the method's own size);
4. the config survives a JSON and a pickle round trip;
5. the config's ``ZERO_STRENGTH`` values return bit-identical weights;
6. the forget-set loss does not decrease (it is meant to rise: the model should lose what it knew), for methods
   flagged ``raises_forget_loss`` (``finetune`` works by catastrophic forgetting and need not);
7. the method's history holds only finite numbers.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .api import UnlearnResult, unlearn
from .data.base import LabeledDataset
from .methods.base import MethodSpec, UnlearnConfig, get_method
from .tasks import Task, get_task
from .training import TrainRecipe, train

__all__ = ["ToyProblem", "check_method_contract", "diffusion_toy_problem", "state_equal", "text_toy_problem",
           "toy_problem"]


def state_equal(a: nn.Module, b: nn.Module) -> bool:
    """True when every parameter and buffer of ``a`` and ``b`` is bit-identical."""
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@dataclass
class ToyProblem:
    model: nn.Module
    train: LabeledDataset
    val: LabeledDataset
    num_classes: int
    forget_class: int
    #: The task (``unlearnkit.tasks``); ``None`` is classification.
    task: Task | None = None
    #: Random-subset requests of the contract forget every ``forget_every``-th training example.
    forget_every: int = 10

    def loaders(self, forget_idx: torch.Tensor | None = None, batch_size: int = 32) -> dict[str, Any]:
        y = self.train.y if self.train.y.ndim == 1 else self.train.y.argmax(dim=1)
        mask = y == self.forget_class if forget_idx is None else torch.isin(torch.arange(len(y)), forget_idx)
        f = torch.nonzero(mask).flatten()
        r = torch.nonzero(~mask).flatten()
        return {"forget": DataLoader(self.train.subset(f), batch_size=batch_size),
                "retain": DataLoader(self.train.subset(r), batch_size=batch_size),
                "val": DataLoader(self.val, batch_size=batch_size),
                "forget_classes": [self.forget_class] if forget_idx is None else None,
                "num_classes": self.num_classes}


class _TinyCNN(nn.Module):
    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def toy_problem(seed: int = 0, n: int = 240, num_classes: int = 4, forget_class: int = 1,
                model_factory: Callable[[int], nn.Module] | None = None, epochs: int = 15) -> ToyProblem:
    """A learnable 3×8×8 image problem (class-dependent colour blobs plus noise) and a tiny trained CNN."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n + 80) % num_classes
    protos = torch.randn(num_classes, 3, 8, 8, generator=g)
    x = protos[y] + 0.9 * torch.randn(n + 80, 3, 8, 8, generator=g)
    tr = LabeledDataset(x[:n], y[:n])
    va = LabeledDataset(x[n:], y[n:])
    torch.manual_seed(seed)
    model = model_factory(num_classes) if model_factory else _TinyCNN(num_classes)
    train(model, tr, recipe=TrainRecipe(epochs=epochs, batch_size=32, lr=0.05), seed=seed)
    return ToyProblem(model.eval(), tr, va, num_classes, forget_class)


def text_toy_problem(seed: int = 0, n: int = 300, task: str = "classification", epochs: int = 60) -> ToyProblem:
    """A tiny ``textsynth`` problem (token ids, length 32) and a tiny trained ``transformer``; ``task`` is
    ``"classification"`` (8 classes) or ``"multilabel"`` (8 labels). Random-subset requests forget every second
    text (150 of 300), more than one batch of any method's default, so that the seed's shuffle matters."""
    from .data.textsynth import load_textsynth
    from .models.transformer import TextTransformer

    multi = task == "multilabel"
    d = load_textsynth(n, 80, 10, seed=seed, multilabel=multi)
    tr = LabeledDataset(torch.from_numpy(d["train"][0]), torch.from_numpy(d["train"][1]))
    va = LabeledDataset(torch.from_numpy(d["val"][0]), torch.from_numpy(d["val"][1]))
    num_classes = int(d["train"][1].shape[1]) if multi else 8
    the_task = get_task(task)
    torch.manual_seed(seed)
    model = TextTransformer(len(d["vocab"]), num_classes, d["max_len"], dim=16, heads=2, layers=1)
    train(model, tr, recipe=TrainRecipe(epochs=epochs, batch_size=32, optimizer="adam", lr=3e-3, weight_decay=0.0),
          seed=seed, task=the_task)
    return ToyProblem(model.eval(), tr, va, num_classes, forget_class=1, task=the_task, forget_every=2)


def diffusion_toy_problem(seed: int = 0, n: int = 60, num_classes: int = 3, steps: int = 60) -> ToyProblem:
    """A tiny ``generation`` problem: 1×8×8 class prototypes plus noise and a tiny class-conditional UNet trained
    for ``steps`` Adam steps (:func:`unlearnkit.diffusion.train_diffusion`); the forgotten class is 1."""
    from .diffusion import LinearSchedule, train_diffusion
    from .models.unet import ConditionalUNet
    from .tasks.diffusion import DiffusionTask

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n + 30) % num_classes
    protos = torch.rand(num_classes, 1, 8, 8, generator=g) * 2 - 1
    x = (protos[y] + 0.2 * torch.randn(n + 30, 1, 8, 8, generator=g)).clamp(-1, 1)
    tr, va = LabeledDataset(x[:n], y[:n]), LabeledDataset(x[n:], y[n:])
    sched = LinearSchedule(T=50)
    torch.manual_seed(seed)
    model = ConditionalUNet(1, num_classes, ch=8, ch_mult=(1, 2), dropout=0.0, attention=False)
    train_diffusion(model, tr, steps=steps, batch_size=16, lr=2e-3, seed=seed, schedule=sched, warmup=5)
    return ToyProblem(model.eval(), tr, va, num_classes, forget_class=1, task=DiffusionTask(sched), forget_every=3)


def _forget_loss(model: nn.Module, loader: DataLoader, task: Task | None = None) -> float:
    t = get_task(task)
    model.eval()
    # The same draws for every model (a generation task's loss is stochastic), and the caller's RNG is untouched.
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        tot, n = 0.0, 0
        for x, y in loader:
            tot += float(t.loss(model, x, y, reduction="sum"))
            n += len(y)
    return tot / n


def check_method_contract(method: str | MethodSpec, problem: ToyProblem | None = None,
                          config_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the contract battery on one registered method; returns what it measured."""
    spec = method if isinstance(method, MethodSpec) else get_method(method)
    prob = problem or toy_problem()
    kind_class = "class" in spec.supported_requests
    if kind_class:
        ld = prob.loaders()
    else:
        ld = prob.loaders(forget_idx=torch.arange(0, len(prob.train), prob.forget_every))
    kw = dict(config_kwargs or {})

    def cfg(seed: int = 0, **extra: Any) -> UnlearnConfig:
        return spec.config_cls(**{**kw, **extra, "seed": seed})

    def run(c: UnlearnConfig, model: nn.Module | None = None, inplace: bool = False) -> UnlearnResult:
        return unlearn(model if model is not None else prob.model, forget=ld["forget"], retain=ld["retain"],
                       val=ld["val"], forget_classes=ld["forget_classes"], num_classes=ld["num_classes"],
                       config=c, inplace=inplace, task=prob.task)

    before = copy.deepcopy(prob.model.state_dict())
    r1 = run(cfg(0))
    out: dict[str, Any] = {"seconds": r1.seconds}
    if not isinstance(r1, UnlearnResult) or r1.method != spec.name:
        raise AssertionError(f"{spec.name}: unlearn returned {type(r1).__name__} for method {r1.method!r}")
    for k, v in r1.model.state_dict().items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise AssertionError(f"{spec.name}: non-finite values in {k}")
    for k, vals in r1.history.items():
        if not all(math.isfinite(float(v)) for v in vals):
            raise AssertionError(f"{spec.name}: non-finite value in history[{k!r}]")
    after = prob.model.state_dict()
    if any(not torch.equal(before[k], after[k]) for k in before):
        raise AssertionError(f"{spec.name}: the caller's model changed although inplace=False")

    r2 = run(cfg(0))
    if not state_equal(r1.model, r2.model):
        raise AssertionError(f"{spec.name}: the same seed gave different weights (not deterministic)")
    if spec.stochastic:
        r3 = run(cfg(1))
        same = state_equal(r1.model, r3.model)
        small = {"batch_size": 8}
        if same and "batch_size" in {f.name for f in dataclasses.fields(spec.config_cls)} and "batch_size" not in kw:
            # A method whose only randomness is the batch order is seed-independent when the toy forget set fits in
            # one batch (gradient_ascent's SFR-on recipe: batch 128, 60 forget examples, eval mode): check the seed
            # with batches small enough for the order to matter.
            same = state_equal(run(cfg(0, **small)).model, run(cfg(1, **small)).model)
        if same:
            raise AssertionError(f"{spec.name}: flagged stochastic, but seeds 0 and 1 gave identical weights")

    c = cfg(0)
    if type(c).from_dict(c.to_dict()) != c or pickle.loads(pickle.dumps(c)) != c:
        raise AssertionError(f"{spec.name}: config does not survive a dict/pickle round trip")

    zero = spec.config_cls.ZERO_STRENGTH
    if zero is None:
        raise AssertionError(f"{spec.config_cls.__name__} defines no ZERO_STRENGTH (field values that make "
                             "the method a no-op); add it so the contract test can check the degenerate case")
    rz = run(cfg(0, **zero))
    if not state_equal(rz.model, prob.model):
        raise AssertionError(f"{spec.name}: ZERO_STRENGTH {zero} changed the weights")

    mine = copy.deepcopy(prob.model)
    ri = run(cfg(0), model=mine, inplace=True)
    if ri.model is not mine:
        raise AssertionError(f"{spec.name}: inplace=True did not return the caller's model object")

    lf0 = _forget_loss(prob.model, ld["forget"], prob.task)
    lf1 = _forget_loss(r1.model, ld["forget"], prob.task)
    out.update(forget_loss_before=lf0, forget_loss_after=lf1)
    if spec.raises_forget_loss and not lf1 >= lf0 - 1e-6:
        raise AssertionError(f"{spec.name}: forget-set loss fell from {lf0:.4f} to {lf1:.4f}; it should rise")
    return out
