"""``unlearnkit run --task generation`` (and ``bench --task generation``): class forgetting in a class-conditional
diffusion model, end to end (issue 17).

For ``--dataset digits`` (16×16, :func:`unlearnkit.data.digits16.load_digits_for_diffusion`) or ``shapes[:N]``
(32×32 RGB, :func:`unlearnkit.data.shapes_diffusion.load_shapes_for_diffusion`) and a ``class:K``
request:

1. the original UNet (all classes) and the retrained reference (without class K) are trained with
   :func:`unlearnkit.diffusion.train_diffusion` and :data:`~unlearnkit.diffusion.DIGITS_RECIPE`, and the judge
   ``cnn`` on the real training split; all three are cached by content (:class:`GenModelStore`, like the
   pipeline's ``ModelStore``: role, dataset hash, model description, parameter layout, recipe, seed, code version,
   thread count and, for the reference, the forget set's hash);
2. every method runs through :func:`unlearnkit.unlearn` with ``task=DiffusionTask()`` and its generation settings
   (:func:`unlearnkit.methods.base.config_for_task`, then ``--set``); every ``--checkpoint-every`` iterations an
   ``on_step`` callback samples a small set and records FA, fa_kept and judge-FD (its time is excluded from
   ``seconds``);
3. the final models (original, retrain, each method) are scored with
   :func:`unlearnkit.evaluation.generation.generation_metrics` (FA on ``--n-forget`` samples, fa_kept and judge-FD
   on ``--n-per-kept`` samples per remaining class against the real training images of the remaining classes,
   as the spec's FID reference), and ``rte`` = the reference's training seconds / the method's seconds;
4. ``results.json`` (keys in docs/metrics.md), one file per finished record under ``OUT/cells/`` (a later run with
   the same settings reuses them), ``report.md`` with the table, steps-to-forget, the FA/judge-FD curves and the
   sample grids (PNG).

By default the original and the reference are trained once (``--model-seed``, default 0) and shared by every
``--seeds`` entry, which then varies the unlearning run and the sampling; ``--per-seed-models`` trains them per
seed instead (as the classification ``run`` does), at 2 trainings per seed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from .api import unlearn
from .checkpoints import ModelCache, atomic_write, atomic_write_text, load_checkpoint, save_checkpoint
from .data import LabeledDataset, content_hash
from .diffusion import DIGITS_RECIPE, sample, train_diffusion
from .errors import CheckpointError, ConfigError, UnsupportedTaskError
from .evaluation.generation import (
    JUDGE_RECIPE,
    fa_entropy,
    fa_kept,
    fa_prob,
    forgetting_accuracy,
    frechet_distance,
    judge_features,
    judge_probs,
    train_judge,
)
from .methods.base import config_for_task, get_method, list_methods
from .models.unet import ConditionalUNet
from .tasks.diffusion import DiffusionTask

__all__ = ["DEFAULT_METHODS", "GenModelStore", "add_generation_options", "run_generation", "steps_to_forget"]

#: Methods run when ``--methods all`` is given on the generation task.
DEFAULT_METHODS = ("sfron", "salun", "gradient_ascent", "finetune")
#: Bumped when the training code of the cached UNets changes.
GEN_CODE_VERSION = 1
#: Criteria of "forgotten" at a checkpoint (issue 17, acceptance 2).
FA_MAX, KEPT_DROP_MAX, FD_RATIO_MAX = 5.0, 5.0, 1.5

Log = Callable[[str], None]


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """The options of ``run``/``bench`` that only the generation task reads."""
    g = p.add_argument_group("generation task (--task generation)")
    g.add_argument("--task", default="classification", choices=("classification", "generation"),
                   help="classification (default) or generation: class forgetting in a class-conditional diffusion "
                        "model (digits 16x16, shapes 32x32 RGB)")
    g.add_argument("--n-forget", type=int, default=500, help="generated images of the forgotten class for FA "
                                                            "(default 500, the spec's)")
    g.add_argument("--n-per-kept", type=int, default=50,
                   help="generated images per remaining class for fa_kept and judge-FD (default 50)")
    g.add_argument("--sampler", default="ddim", choices=("ddim", "ddpm"), help="sampler (default ddim)")
    g.add_argument("--sampler-steps", type=int, default=50, help="DDIM steps (default 50; ddpm runs all T)")
    g.add_argument("--eta", type=float, default=0.0, help="DDIM eta (default 0)")
    g.add_argument("--checkpoint-every", type=int, default=10,
                   help="record FA, fa_kept and judge-FD every N method iterations (default 10; 0: never)")
    g.add_argument("--checkpoint-n-forget", type=int, default=100,
                   help="forgotten-class samples per checkpoint (default 100)")
    g.add_argument("--checkpoint-n-per-kept", type=int, default=20,
                   help="samples per remaining class per checkpoint (default 20)")
    g.add_argument("--checkpoint-sampler-steps", type=int, default=None,
                   help="DDIM steps at checkpoints (default: --sampler-steps)")
    g.add_argument("--train-steps", type=int, default=DIGITS_RECIPE["steps"],
                   help=f"Adam steps of the original and reference UNets (default {DIGITS_RECIPE['steps']})")
    g.add_argument("--model-seed", type=int, default=0, help="seed of the original and reference (default 0)")
    g.add_argument("--per-seed-models", action="store_true",
                   help="train the original and reference per --seeds entry instead of once")
    g.add_argument("--unet-ch", type=int, default=32, help="UNet base width (default 32)")
    g.add_argument("--only-cached", action="store_true",
                   help="compute nothing: report the records that OUT/cells already holds for these settings and "
                        "skip the others (to report a partial run)")
    g.add_argument("--judge-epochs", type=int, default=JUDGE_RECIPE.epochs,
                   help=f"training epochs of the judge cnn (default {JUDGE_RECIPE.epochs})")


# ---------------------------------------------------------------------------------------------------------------
# Models
# ---------------------------------------------------------------------------------------------------------------


class GenModelStore:
    """Original / retrained UNets and the judge, trained once and cached by content (see the module doc)."""

    def __init__(self, train_set: LabeledDataset, *, cache_dir: Path | str, num_classes: int, unet_kwargs: dict,
                 recipe: dict, log: Log = print) -> None:
        self.train_set, self.num_classes = train_set, num_classes
        self.cache = ModelCache(cache_dir)
        self.unet_kwargs, self.recipe, self.log = dict(unet_kwargs), dict(recipe), log
        self.data_hash = content_hash(train_set.x.numpy(), train_set.y.numpy())

    def spec(self) -> dict[str, Any]:
        return {"name": "unet", "in_channels": int(self.train_set.x.shape[1]), "num_classes": self.num_classes,
                "kwargs": self.unet_kwargs, "input_shape": list(self.train_set.input_shape)}

    def new_model(self, seed: int) -> ConditionalUNet:
        torch.manual_seed(int(seed))
        return ConditionalUNet(int(self.train_set.x.shape[1]), self.num_classes, **self.unet_kwargs)

    def _arch(self) -> str:
        with torch.random.fork_rng(devices=[]):
            net = self.new_model(0)
        return content_hash(extra=";".join(f"{k}:{tuple(v.shape)}" for k, v in net.state_dict().items()))

    def trained(self, role: str, seed: int, data: LabeledDataset, extra: dict[str, Any]) -> tuple[nn.Module, dict]:
        threads = torch.get_num_threads()
        key = self.cache.key(role=role, dataset=self.data_hash, model=self.spec(), arch=self._arch(),
                             recipe=self.recipe, seed=int(seed), code=GEN_CODE_VERSION,
                             **({} if threads == 1 else {"threads": threads}), **extra)
        hit = self.cache.get(key)
        if hit is not None:
            state, man = load_checkpoint(hit)
            model = self.new_model(seed)
            try:
                model.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise CheckpointError(f"cached {role} UNet {hit} does not match its description: "
                                      f"{str(e).splitlines()[0]}; delete it to retrain") from None
            self.log(f"reusing cached {role} UNet (seed {seed}) from {hit}")
            return model.eval(), man
        model = self.new_model(seed)
        self.log(f"training {role} UNet (seed {seed}, {len(data)} images, {self.recipe['steps']} Adam steps)")
        tlog = train_diffusion(model, data, steps=int(self.recipe["steps"]), batch_size=int(self.recipe["batch_size"]),
                               lr=float(self.recipe["lr"]), seed=int(seed))
        man = {"role": role, "model": self.spec(), "recipe": self.recipe, "seed": int(seed),
               "train_seconds": tlog.seconds, "train_cpu_seconds": tlog.cpu_seconds, "threads": threads,
               "final_loss": tlog.losses[-1] if tlog.losses else None, **extra}
        save_checkpoint(self.cache.path(key), model, man)
        self.log(f"trained {role} UNet in {tlog.seconds:.0f}s wall ({tlog.cpu_seconds:.0f}s CPU)")
        return model.eval(), man

    def original(self, seed: int) -> tuple[nn.Module, dict]:
        return self.trained("gen-original", seed, self.train_set, {})

    def retrained(self, forget_class: int, retain: LabeledDataset, seed: int) -> tuple[nn.Module, dict]:
        return self.trained("gen-retrain", seed, retain, {"request": f"class:{forget_class}",
                                                          "forget_hash": content_hash(retain.y.numpy())})


# ---------------------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------------------


class Scorer:
    """Samples a model and scores the samples with the judge (the metric keys of docs/metrics.md)."""

    def __init__(self, judge: nn.Module, real_kept: LabeledDataset, forget_class: int, num_classes: int,
                 sampler: dict[str, Any]) -> None:
        self.judge, self.forget_class, self.num_classes = judge, forget_class, num_classes
        self.kept = [c for c in range(num_classes) if c != forget_class]
        self.real_feats = judge_features(judge, real_kept.x)
        self.shape = tuple(real_kept.input_shape)
        self.sampler = dict(sampler)

    def samples(self, model: nn.Module, classes: list[int], seed: int, steps: int | None = None) -> torch.Tensor:
        kw = dict(self.sampler)
        if steps is not None and kw.get("method") == "ddim":
            kw["steps"] = steps
        with torch.random.fork_rng(devices=[]):
            return sample(model, classes, shape=self.shape, seed=seed, **kw)

    def score(self, model: nn.Module, *, n_forget: int, n_per_kept: int, seed: int,
              steps: int | None = None) -> dict[str, float]:
        xf = self.samples(model, [self.forget_class] * n_forget, seed, steps)
        req = [c for c in self.kept for _ in range(n_per_kept)]
        xk = self.samples(model, req, seed + 1, steps)
        pf, pk = judge_probs(self.judge, xf), judge_probs(self.judge, xk)
        fd = frechet_distance(judge_features(self.judge, xk), self.real_feats)
        used = steps if (steps is not None and self.sampler.get("method") == "ddim") else self.sampler["steps"]
        return {"fa": forgetting_accuracy(pf, self.forget_class), "fa_entropy": fa_entropy(pf),
                "fa_prob": fa_prob(pf, self.forget_class), "fa_kept": fa_kept(pk, torch.tensor(req)),
                "judge_fd": fd, "sampler_steps": float(used)}


def steps_to_forget(curve: list[dict[str, float]], base: dict[str, float]) -> int | None:
    """The smallest checkpointed iteration (> 0) at which FA <= 5%, fa_kept >= base fa_kept − 5 points and
    judge-FD <= 1.5 × base judge-FD (``base``: the original at the same checkpoint sample size); None if never."""
    for p in curve:
        if p["iteration"] > 0 and p["fa"] <= FA_MAX and p["fa_kept"] >= base["fa_kept"] - KEPT_DROP_MAX \
                and p["judge_fd"] <= FD_RATIO_MAX * base["judge_fd"]:
            return int(p["iteration"])
    return None


# ---------------------------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------------------------


def _parse_class(forget: str, num_classes: int) -> int:
    kind, _, rest = forget.partition(":")
    if kind != "class" or not rest.strip().isdigit():
        raise ConfigError(f"--task generation forgets one whole class: use --forget class:K (got {forget!r})")
    k = int(rest)
    if not 0 <= k < num_classes:
        raise ConfigError(f"--forget class:{k} is out of range: classes are 0..{num_classes - 1}")
    return k


def _methods(spec: str) -> list[str]:
    names = list(DEFAULT_METHODS) if spec == "all" else [m.strip() for m in spec.split(",") if m.strip()]
    known = set(list_methods())
    for m in names:
        if m not in known:
            raise ConfigError(f"unknown method {m!r}; registered methods: {', '.join(sorted(known))}")
        tasks = get_method(m).tasks
        if "generation" not in tasks:
            raise UnsupportedTaskError(f"method {m!r} does not serve the 'generation' task (it serves: "
                                       f"{', '.join(sorted(tasks))}; it works on a classifier's outputs); "
                                       "generation methods: "
                                       f"{', '.join(x for x in sorted(known) if 'generation' in get_method(x).tasks)}")
    return names


def _configs(methods: list[str], overrides: dict[str, dict[str, str]], seed: int) -> dict[str, Any]:
    from .pipeline import _coerce

    out = {}
    for m in methods:
        cls = get_method(m).config_cls
        raw = overrides.get(m, {})
        out[m] = config_for_task(m, "generation", seed=seed, **{k: _coerce(cls, k, v) for k, v in raw.items()})
    return out


def _check_args(args: argparse.Namespace) -> None:
    for name in ("n_forget", "n_per_kept", "sampler_steps", "checkpoint_n_forget", "checkpoint_n_per_kept",
                 "train_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    if args.n_per_kept * 9 < 20 or args.checkpoint_n_per_kept * 9 < 20:
        raise ConfigError("judge-FD needs at least 20 generated remaining-class images: raise --n-per-kept / "
                          "--checkpoint-n-per-kept")


def _seconds_excluding(result_seconds: float, eval_seconds: float) -> float:
    return max(result_seconds - eval_seconds, 1e-9)


def bench_generation(args: argparse.Namespace, *, log: Log = print) -> list[dict[str, Any]]:
    """``bench --task generation``: :func:`run_generation` for each class scenario (``class1`` = class:3), into
    ``OUT/<scenario>``."""
    from .bench import _parse_scenarios

    scen = _parse_scenarios(args.scenarios if args.scenarios != "all" else "class1")
    bad = [s.name for s in scen if s.kind != "class" or len(s.requests[0].split(":")[1].split(",")) != 1]
    if bad:
        raise ConfigError(f"bench --task generation runs one-class scenarios only (class1); got {', '.join(bad)}")
    base = Path(args.out or f"runs/bench-generation-{args.dataset.replace(':', '_')}")
    out = []
    for s in scen:
        ns = argparse.Namespace(**{**vars(args), "forget": s.requests[0], "out": str(base / s.name)})
        out.append(run_generation(ns, log=log))
    return out


def _unet_kwargs(ch: int, side: int) -> dict[str, Any]:
    """The UNet's width and levels for ``side``×``side`` images: levels halve the side down to an 8×8 bottom, where
    the self-attention runs (16 → two levels ``(1, 2)``, the model's default, kept implicit so the digits cache keys
    are unchanged; 32 → ``(1, 2, 2)``: at 32×32 two levels would attend over 16×16 = 256 positions and cost
    1.7× more per step at width 16, measured)."""
    if side <= 16:
        return {"ch": ch}
    levels = max(2, (side // 8).bit_length())
    return {"ch": ch, "ch_mult": [1] + [2] * (levels - 1)}


def _generation_dataset(spec: str) -> Callable[[int], dict[str, LabeledDataset]]:
    """The image loader of ``--dataset`` for generation (a function of the data seed), or a one-line error."""
    from .data.digits16 import load_digits_for_diffusion
    from .data.loaders import DEFAULT_SHAPES_TRAIN, _train_size, shapes_sizes
    from .data.shapes_diffusion import load_shapes_for_diffusion

    fam, _, arg = spec.partition(":")
    if fam == "digits" and not arg:
        return load_digits_for_diffusion
    if fam == "shapes":
        n = _train_size(fam, arg, DEFAULT_SHAPES_TRAIN, "images", 5000)  # the classification loader's parser
        if n < 10:
            raise ConfigError(f"--dataset shapes:N needs N >= 10 training images, got {n}")
        sizes = shapes_sizes(n)
        return lambda seed: load_shapes_for_diffusion(*sizes, seed=seed)
    raise ConfigError(f"--task generation supports --dataset digits (16x16) and shapes[:N] (32x32 RGB), got "
                      f"{spec!r}")


def run_generation(args: argparse.Namespace, *, log: Log = print) -> dict[str, Any]:
    """Run the generation experiment that ``args`` (the ``run`` parser's namespace) describes; returns results."""
    from .pipeline import parse_overrides

    t_start = time.perf_counter()
    load_images = _generation_dataset(args.dataset)
    _check_args(args)
    num_classes = 10
    forget_class = _parse_class(args.forget, num_classes)
    methods = _methods(args.methods)
    seeds = [int(s) for s in str(args.seeds).split(",") if s.strip()] if isinstance(args.seeds, str) \
        else list(args.seeds)
    overrides = parse_overrides(args.set)
    unknown = sorted(set(overrides) - set(methods))
    if unknown:
        raise ConfigError(f"--set names methods that are not run: {', '.join(unknown)}")
    for s in seeds:
        _configs(methods, overrides, s)  # every config valid before any heavy work

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    d = load_images(args.data_seed)
    train, test = d["train"], d["test"]
    fmask = train.y == forget_class
    forget_set = train.subset(torch.nonzero(fmask).flatten())
    retain_set = train.subset(torch.nonzero(~fmask).flatten())
    real_kept = retain_set  # the spec's FID reference: training images of the remaining classes
    recipe = dict(DIGITS_RECIPE, steps=int(args.train_steps))
    store = GenModelStore(train, cache_dir=args.cache_dir, num_classes=num_classes,
                          unet_kwargs=_unet_kwargs(int(args.unet_ch), int(train.x.shape[-1])), recipe=recipe, log=log)
    judge_recipe = dataclasses.replace(JUDGE_RECIPE, epochs=int(args.judge_epochs))
    judge = train_judge(train, num_classes=num_classes, seed=0, cache=ModelCache(args.cache_dir),
                        dataset_hash=store.data_hash, recipe=judge_recipe)
    judge_acc = float((judge_probs(judge, test.x).argmax(1) == test.y).double().mean() * 100)
    log(f"judge cnn: {judge_acc:.1f}% accuracy on the real test images")
    steps = sample_steps = int(args.sampler_steps) if args.sampler == "ddim" else DiffusionTask().schedule.T
    sampler = {"method": args.sampler, "steps": steps, "eta": float(args.eta), "guidance": 2.0}
    scorer = Scorer(judge, real_kept, forget_class, num_classes, sampler)
    ck_steps = args.checkpoint_sampler_steps or sample_steps
    real_floor = frechet_distance(judge_features(judge, test.x[test.y != forget_class]), scorer.real_feats)

    settings = {"task": "generation", "dataset": args.dataset, "data_seed": args.data_seed,
                "forget": f"class:{forget_class}", "methods": methods, "seeds": seeds, "sampler": sampler,
                "n_forget": args.n_forget, "n_per_kept": args.n_per_kept, "checkpoint_every": args.checkpoint_every,
                "checkpoint_n_forget": args.checkpoint_n_forget, "checkpoint_n_per_kept": args.checkpoint_n_per_kept,
                "checkpoint_sampler_steps": ck_steps, "recipe": recipe, "unet": store.spec(),
                "per_seed_models": bool(args.per_seed_models), "model_seed": int(args.model_seed),
                "judge_recipe": dataclasses.asdict(judge_recipe),
                "overrides": overrides, "threads": torch.get_num_threads()}
    cells = out / "cells"
    records: list[dict[str, Any]] = []
    models_info: dict[str, Any] = {}
    grids: dict[str, torch.Tensor] = {}

    # A cell's key: every setting that determines it (not the list of other methods or seeds).
    common = {k: v for k, v in settings.items() if k not in ("methods", "seeds", "overrides")}

    only_cached = bool(getattr(args, "only_cached", False))

    def cell(name: str, compute: Callable[[], dict[str, Any]], config: dict | None = None) -> dict[str, Any] | None:
        key = content_hash(extra={"settings": common, "cell": name, "config": config})
        path = cells / f"{name}-{key}.json"
        if path.is_file() and not getattr(args, "fresh", False):
            log(f"reusing {path.name}")
            return json.loads(path.read_text())
        if only_cached:
            log(f"--only-cached: no record {name} yet, skipped")
            return None
        rec = compute()
        atomic_write_text(path, json.dumps(rec, indent=2, sort_keys=True))
        return rec

    for seed in seeds:
        mseed = seed if args.per_seed_models else int(args.model_seed)
        original, oman = store.original(mseed)
        reference, rman = store.retrained(forget_class, retain_set, mseed)
        models_info[str(mseed)] = {"original_train_seconds": oman.get("train_seconds"),
                                   "original_train_cpu_seconds": oman.get("train_cpu_seconds"),
                                   "retrain_train_seconds": rman.get("train_seconds"),
                                   "retrain_train_cpu_seconds": rman.get("train_cpu_seconds")}
        retrain_seconds = float(rman.get("train_seconds") or float("nan"))
        sseed = 1000 * seed  # sampling seeds of this seed's evaluations

        def ref_cell(role: str, model: nn.Module, man: dict, seed: int = seed, sseed: int = sseed,
                     retrain_seconds: float = retrain_seconds) -> dict | None:
            def compute() -> dict[str, Any]:
                log(f"scoring {role} (seed {seed})")
                m = scorer.score(model, n_forget=args.n_forget, n_per_kept=args.n_per_kept, seed=sseed)
                ck = scorer.score(model, n_forget=args.checkpoint_n_forget, n_per_kept=args.checkpoint_n_per_kept,
                                  seed=sseed + 500, steps=ck_steps)
                secs = float(man.get("train_seconds") or float("nan"))
                m.update(seconds=secs, rte=retrain_seconds / secs if secs > 0 else float("nan"))
                return {"method": role, "seed": seed, "metrics": m, "checkpoint_base": ck, "curve": []}
            return cell(f"{role}-s{seed}", compute)

        base_rec = ref_cell("original", original, oman)
        if base_rec is None:
            continue
        records.append(base_rec)
        ref_rec = ref_cell("retrain", reference, rman)
        if ref_rec is not None:
            records.append(ref_rec)
        if seed == seeds[0]:
            grids["original"] = scorer.samples(original, [c for c in range(num_classes) for _ in range(8)], 7)
            grids["retrain"] = scorer.samples(reference, [c for c in range(num_classes) for _ in range(8)], 7)
        base_ck = base_rec["checkpoint_base"]
        configs = _configs(methods, overrides, seed)
        for m in methods:
            def compute(m: str = m, seed: int = seed, sseed: int = sseed, cfg: Any = configs[m],
                        original: nn.Module = original, base_ck: dict = base_ck,
                        retrain_seconds: float = retrain_seconds) -> dict[str, Any]:
                curve = [{"iteration": 0, **{k: base_ck[k] for k in ("fa", "fa_kept", "judge_fd")}}]
                spent = [0.0]

                def on_step(it: int, model: nn.Module) -> None:
                    if args.checkpoint_every and it % args.checkpoint_every == 0:
                        t0 = time.perf_counter()
                        net = getattr(model, "module", model)
                        s = scorer.score(net, n_forget=args.checkpoint_n_forget,
                                         n_per_kept=args.checkpoint_n_per_kept, seed=sseed + 500, steps=ck_steps)
                        curve.append({"iteration": it, **{k: s[k] for k in ("fa", "fa_kept", "judge_fd")}})
                        spent[0] += time.perf_counter() - t0
                        log(f"  {m} s{seed} it {it}: FA {s['fa']:.1f} kept {s['fa_kept']:.1f} "
                            f"FD {s['judge_fd']:.1f}")

                log(f"running {m} (seed {seed})")
                res = unlearn(original, forget=DataLoader(forget_set, batch_size=128),
                              retain=DataLoader(retain_set, batch_size=128), config=cfg, num_classes=num_classes,
                              forget_classes=[forget_class], task=DiffusionTask(), on_step=on_step,
                              device=args.device)
                secs = _seconds_excluding(res.seconds, spent[0])
                met = scorer.score(res.model, n_forget=args.n_forget, n_per_kept=args.n_per_kept, seed=sseed)
                met.update(seconds=secs, rte=retrain_seconds / secs)
                iters = max([p["iteration"] for p in curve] + [_iterations(res.history)])
                rec = {"method": m, "seed": seed, "metrics": met, "curve": curve, "config": cfg.to_dict(),
                       "iterations": iters, "checkpoint_seconds": spent[0],
                       "steps_to_forget": steps_to_forget(curve, base_ck)}
                if seed == seeds[0]:
                    g = scorer.samples(res.model, [c for c in range(num_classes) for _ in range(8)], 7)
                    save_grid(out / f"samples_{m}.png", g, f"{m} (seed {seed}, {iters} iterations)")
                return rec
            rec = cell(f"{m}-s{seed}", compute, configs[m].to_dict())
            if rec is None:
                continue
            records.append(rec)
            write_outputs(out, settings, records, models_info, judge_acc, real_floor, t_start)
    for role, g in grids.items():
        save_grid(out / f"samples_{role}.png", g, role)
    return write_outputs(out, settings, records, models_info, judge_acc, real_floor, t_start)


def _iterations(history: dict[str, list[float]]) -> int:
    for key in ("retain_loss", "forget_loss"):
        if history.get(key):
            return len(history[key])
    return 0


# ---------------------------------------------------------------------------------------------------------------
# Outputs
# ---------------------------------------------------------------------------------------------------------------


_KEYS = ("fa", "fa_kept", "judge_fd", "fa_entropy", "fa_prob", "seconds", "rte")


def summarize(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Mean and (sample) standard deviation over seeds of every metric, per method."""
    by: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by.setdefault(r["method"], []).append(r)
    out: dict[str, dict[str, Any]] = {}
    for m, rs in by.items():
        row: dict[str, Any] = {"n_seeds": len(rs)}
        for k in _KEYS:
            vals = [float(r["metrics"][k]) for r in rs if math.isfinite(float(r["metrics"].get(k, float("nan"))))]
            row[k] = statistics.fmean(vals) if vals else None
            row[k + "_std"] = statistics.stdev(vals) if len(vals) > 1 else 0.0 if vals else None
        if m not in ("original", "retrain"):
            row["steps_to_forget"] = [r.get("steps_to_forget") for r in rs]
        out[m] = row
    return out


def write_outputs(out: Path, settings: dict, records: list[dict], models_info: dict, judge_acc: float,
                  real_floor: float, t_start: float) -> dict[str, Any]:
    results = {"settings": settings, "records": records, "summary": summarize(records), "models": models_info,
               "judge_test_accuracy": judge_acc, "judge_fd_real_test_vs_train": real_floor,
               "wall_seconds": time.perf_counter() - t_start}
    atomic_write_text(out / "results.json", json.dumps(results, indent=2, sort_keys=True, default=float))
    plot_curves(out / "curves.png", records)
    atomic_write_text(out / "report.md", render_report(results, out))
    return results


def _fmt(v: Any, std: Any = None, digits: int = 1) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    s = f"{v:.{digits}f}"
    return s + (f" ± {std:.{digits}f}" if std else "")


def render_report(results: dict[str, Any], out: Path) -> str:
    st = results["settings"]
    lines = [f"# Generation: forgetting {st['forget']} in a class-conditional diffusion model ({st['dataset']})", "",
             f"Seeds {', '.join(map(str, st['seeds']))}; sampler {st['sampler']['method']} "
             f"{st['sampler']['steps']} steps, eta {st['sampler']['eta']}, guidance w = {st['sampler']['guidance']}; "
             f"FA on {st['n_forget']} samples, fa_kept and judge-FD on {st['n_per_kept']} samples per remaining "
             f"class against the real training images of the remaining classes. Judge cnn test accuracy "
             f"{results['judge_test_accuracy']:.1f}%; judge-FD of real test vs real train images (a floor) "
             f"{results['judge_fd_real_test_vs_train']:.1f}. judge-FD uses the judge's 128-d features, not Inception: "
             "it is **not comparable with published FID**.", "",
             "| method | FA % ↓ | fa_kept % | judge-FD | fa_entropy | fa_prob | seconds | rte | steps to forget |",
             "|---|---|---|---|---|---|---|---|---|"]
    for m, row in results["summary"].items():
        stf = row.get("steps_to_forget")
        stf_s = "–" if stf is None else ", ".join("never" if s is None else str(s) for s in stf)
        lines.append(f"| {m} | {_fmt(row['fa'], row['fa_std'])} | {_fmt(row['fa_kept'], row['fa_kept_std'])} | "
                     f"{_fmt(row['judge_fd'], row['judge_fd_std'])} | {_fmt(row['fa_entropy'], None, 3)} | "
                     f"{_fmt(row['fa_prob'], None, 3)} | {_fmt(row['seconds'], row['seconds_std'])} | "
                     f"{_fmt(row['rte'], None, 2)} | {stf_s} |")
    lines += ["", f"Steps to forget (per seed): the first checkpoint (every {st['checkpoint_every']} iterations; "
              f"{st['checkpoint_n_forget']} forgotten-class and {st['checkpoint_n_per_kept']} per-remaining-class "
              f"samples, {st['checkpoint_sampler_steps']} sampler steps) with FA <= {FA_MAX:g}%, fa_kept within "
              f"{KEPT_DROP_MAX:g} points of the original's and judge-FD <= {FD_RATIO_MAX:g}x the original's, both "
              "measured on the original at the same sample size. `seconds` excludes the checkpoint evaluations; "
              "for original/retrain it is the training time.", "",
              "![FA and judge-FD against unlearning iterations](curves.png)", "", "## Samples (8 per class, rows = "
              "classes 0-9)", ""]
    for p in sorted(out.glob("samples_*.png")):
        lines += [f"**{p.stem.removeprefix('samples_')}**", "", f"![{p.stem}]({p.name})", ""]
    return "\n".join(lines) + "\n"


def _savefig(fig: Any, path: Path) -> None:
    atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight"))


def plot_curves(path: Path, records: list[dict[str, Any]]) -> None:
    curves = [r for r in records if r.get("curve") and len(r["curve"]) > 1]
    if not curves:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    colors: dict[str, Any] = {}
    for r in curves:
        c = colors.setdefault(r["method"], f"C{len(colors)}")
        it = [p["iteration"] for p in r["curve"]]
        for ax, key in zip(axes, ("fa", "judge_fd", "fa_kept"), strict=True):
            ax.plot(it, [p[key] for p in r["curve"]], color=c, alpha=0.8,
                    label=r["method"] if r["seed"] == curves[0]["seed"] or r["method"] not in
                    {x["method"] for x in curves[:curves.index(r)]} else None)
    for ax, title in zip(axes, ("FA % (forgotten class)", "judge-FD (remaining classes)",
                                "fa_kept % (remaining classes)"), strict=True):
        ax.set_xlabel("unlearning iterations")
        ax.set_title(title)
        ax.set_xscale("symlog", linthresh=10)
    axes[0].axhline(FA_MAX, color="k", ls=":", lw=1)
    axes[0].legend()
    _savefig(fig, path)
    plt.close(fig)


def save_grid(path: Path, images: torch.Tensor, title: str) -> None:
    """A PNG of ``images`` (N, C, H, W) in [−1, 1], C = 1 (grey) or 3 (RGB), 8 per row (one row per class)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = ((images.detach().cpu().float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1)  # (N, H, W, C)
    n, h, w, ch = x.shape
    if ch not in (1, 3):
        raise ConfigError(f"save_grid draws 1- or 3-channel images, got {ch} channels")
    cols = 8
    rows = math.ceil(n / cols)
    canvas = torch.ones(rows * (h + 1), cols * (w + 1), ch)
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[r * (h + 1):r * (h + 1) + h, c * (w + 1):c * (w + 1) + w] = x[i]
    fig, ax = plt.subplots(figsize=(cols * 0.5 * max(1, w // 16), rows * 0.5 * max(1, h // 16) + 0.4))
    if ch == 1:
        ax.imshow(canvas[..., 0].numpy(), cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(canvas.numpy(), vmin=0, vmax=1)
    ax.set_axis_off()
    ax.set_title(title, fontsize=8)
    _savefig(fig, path)
    plt.close(fig)
