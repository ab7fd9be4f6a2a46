"""The :class:`Ledger`: deletion requests received over time, applied to a deployed model, with evidence per request.

Layering: the ledger sits above the pipeline, evaluation and checkpoints and below the CLI; nothing below imports
it.

**Lineage.** A ledger tracks one deployed model per dataset (a team with several models of one dataset keeps one
ledger per model). Its checkpoint file is replaced in place, atomically, after each application; every state of
the model, the one before the first application included, is also kept content-addressed in
``<checkpoint stem>.versions/<sha256[:16]>.safetensors`` beside it, which the single-step comparison and
``verify`` use.

**Crash safety.** One application (one pending request, or all of them with ``batch=True``) is: unlearn, evaluate,
write the new version file atomically, then *one* transaction that appends the application row and its evidence
rows, then the atomic replacement of the deployed checkpoint by the version file. A crash before the commit leaves
the request pending (a stray version file is harmless: it is content-addressed and rewritten); a crash after it
leaves the deployed file one step behind, which the next ``apply`` detects (its hash is the last application's
``model_before`` and the version file holds ``model_after``) and completes before going on. So each request is
applied exactly once, and the rows and checkpoints agree.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..checkpoints import atomic_write, build_from_checkpoint, load_checkpoint, save_checkpoint
from ..errors import CheckpointError
from .resolve import sample_hashes, training_indices
from .store import GENESIS, TABLES, LedgerError, Store, canonical, open_store, row_hash

__all__ = ["Application", "Ledger", "Request", "VerifyResult", "file_sha256", "load_model"]

TIERS = ("cheap", "standard", "audit")
JSON_COLUMNS = {"dataset", "user_ids", "train_indices", "sample_hashes", "request_ids", "config", "code_version",
                "seconds", "metrics", "reference", "noise_floor", "drift"}
NOISE_SEED_OFFSET = 10_000  # the noise floor's second reference: seed + 10000, as `unlearnkit run` does
CRASH_ENV = "UNLEARNKIT_LEDGER_CRASH_AT"  # fault injection for the crash tests: "commit" or "deploy"


def file_sha256(path: Path | str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def load_model(path: Path | str, exp: Any) -> Any:
    """The model of a checkpoint: an unlearnkit checkpoint rebuilds itself; a plain safetensors state dict is
    loaded (strictly) into ``exp``'s model."""
    try:
        return build_from_checkpoint(path, exp.device)[0]
    except CheckpointError:
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except Exception:  # safetensors raises several types for foreign files
            raise CheckpointError(f"{path} is not a safetensors file") from None
        model = exp.models.new_model(0)
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as e:
            raise LedgerError(f"{path} is not a state dict of model {exp.model_name} on {exp.dataset_spec} "
                              f"({str(e).splitlines()[0]}); pass the right --model") from None
        return model.eval()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _clean(v: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/Inf to None."""
    if isinstance(v, dict):
        return {str(k): _clean(e) for k, e in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(e) for e in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(float(v)) else None
    if isinstance(v, np.ndarray):
        return _clean(v.tolist())
    return v


def _encode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (canonical(_clean(v)) if k in JSON_COLUMNS and v is not None else v) for k, v in row.items()}


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (json.loads(v) if k in JSON_COLUMNS and isinstance(v, str) else v) for k, v in row.items()}


def _crash_point(name: str) -> None:
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True)
class Request:
    """One deletion request as recorded; ``application_id`` is None while it is pending."""

    id: int
    received_at: str
    requester: str
    reason: str
    dataset: dict[str, Any]
    dataset_hash: str
    kind: str
    selector: str
    user_ids: list[str] | None
    train_indices: list[int]
    sample_hashes: list[str]
    n_samples: int
    seq: int
    row_hash: str
    application_id: int | None = None

    @property
    def pending(self) -> bool:
        return self.application_id is None

    @property
    def indices_hash(self) -> str:
        """SHA-256 of the sorted training indices (what the report shows instead of the indices)."""
        return hashlib.sha256(canonical(self.train_indices).encode()).hexdigest()

    @property
    def samples_hash(self) -> str:
        """SHA-256 over the samples' content hashes, in index order."""
        return hashlib.sha256(canonical(self.sample_hashes).encode()).hexdigest()


@dataclass(frozen=True)
class Application:
    id: int
    request_ids: list[int]
    checkpoint: str
    model_before: str
    model_after: str
    after_path: str
    method: str
    config: dict[str, Any]
    seed: int
    code_version: dict[str, Any]
    dataset_hash: str
    mode: str
    started_at: str
    finished_at: str
    seconds: float
    seq: int
    row_hash: str


@dataclass
class VerifyResult:
    ok: bool
    rows: int
    files_checked: int
    problem: str | None = None

    def __str__(self) -> str:
        if self.ok:
            return (f"ledger OK: {self.rows} rows in one unbroken hash chain, {self.files_checked} checkpoint files "
                    "match")
        return f"ledger BROKEN: {self.problem}"


def _fields(cls: type, row: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in row.items() if k in names}


class Ledger:
    """Deletion requests, their application to a deployed checkpoint, and the evidence, in one hash-chained ledger.

    Args:
        where: a SQLite file path or a ``postgresql://`` URL; default ``$UNLEARNKIT_LEDGER`` or
            ``unlearnkit-ledger.sqlite`` in the working directory.
        cache_dir: the model cache of the retrained references (as ``unlearnkit run``'s ``--cache-dir``).
        device: where unlearning and evaluation run.
        log: progress messages.

    Example::

        with Ledger("ledger.sqlite") as led:
            rid = led.add_request(checkpoint="model.safetensors", ids="user42.txt", reason="GDPR Art. 17")
            led.apply(checkpoint="model.safetensors", method="sfron", evidence="standard")
            html, js = led.report(rid, "reports/")
            assert led.verify().ok
    """

    def __init__(self, where: str | os.PathLike[str] | None = None, *, cache_dir: str | os.PathLike[str] =
                 ".unlearnkit_cache", device: str = "cpu", log: Callable[[str], None] = print) -> None:
        self.store: Store = open_store(where)
        self.cache_dir = str(cache_dir)
        self.device = device
        self.log = log
        self._exps: dict[str, Any] = {}

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Ledger:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- reading --------------------------------------------------------------------------------------------------
    def applications(self, *, dataset_hash: str | None = None, cur: Any = None) -> list[Application]:
        where, params = ("WHERE dataset_hash = ?", (dataset_hash,)) if dataset_hash else ("", ())
        return [Application(**_fields(Application, _decode(r)))
                for r in self.store.rows("applications", where, params, cur=cur)]

    def requests(self, *, pending: bool = False, dataset_hash: str | None = None, cur: Any = None) -> list[Request]:
        """Every request in order of arrival (``pending=True``: those not applied yet)."""
        applied = {rid: a.id for a in self.applications(cur=cur) for rid in a.request_ids}
        where, params = ("WHERE dataset_hash = ?", (dataset_hash,)) if dataset_hash else ("", ())
        out = [Request(**_fields(Request, _decode(r)), application_id=applied.get(int(r["id"])))
               for r in self.store.rows("requests", where, params, cur=cur)]
        return [r for r in out if r.pending] if pending else out

    def request(self, request_id: int) -> Request:
        for r in self.requests():
            if r.id == int(request_id):
                return r
        raise LedgerError(f"no request {request_id} in ledger {self.store.where}; `unlearnkit request list` shows "
                          "the ids")

    def evidence(self, *, request_id: int | None = None) -> list[dict[str, Any]]:
        where, params = ("WHERE request_id = ?", (int(request_id),)) if request_id is not None else ("", ())
        return [_decode(r) for r in self.store.rows("evidence", where, params)]

    # --- experiment of a checkpoint or dataset --------------------------------------------------------------------
    def _experiment(self, dataset: dict[str, Any], manifest: dict[str, Any] | None = None) -> Any:
        """The :class:`~unlearnkit.pipeline.Experiment` of a dataset (and checkpoint), kept for this ledger object
        so that many requests on one dataset load it once."""
        key = canonical({"dataset": dataset, "model": (manifest or {}).get("model"),
                         "recipe": (manifest or {}).get("recipe")})
        if key not in self._exps:
            self._exps[key] = self._new_experiment(dataset, manifest)
        return self._exps[key]

    def _new_experiment(self, dataset: dict[str, Any], manifest: dict[str, Any] | None) -> Any:
        from ..pipeline import Experiment
        from ..training import TrainRecipe

        kw: dict[str, Any] = {}
        if manifest is not None:
            model = manifest.get("model") or {}
            kw = {"model": model.get("name"), "model_kwargs": model.get("kwargs") or {}}
            if manifest.get("recipe"):
                kw["recipe"] = TrainRecipe.from_dict(manifest["recipe"])  # references train like the original
        exp = Experiment(dataset["spec"], data_seed=int(dataset.get("seed", 0)), cache_dir=self.cache_dir,
                         device=self.device, progress=False, log=self.log,
                         label_column=dataset.get("label_column"), **kw)
        exp.data.require_classification("the deletion-request ledger (unlearnkit request / ledger)")
        return exp

    def _from_checkpoint(self, checkpoint: str | os.PathLike[str], *, dataset: str | None = None,
                         model: str | None = None, data_seed: int = 0, label_column: str | None = None
                         ) -> tuple[Any, dict[str, Any], dict[str, Any]]:
        """``(experiment, dataset, manifest)`` of a checkpoint: an unlearnkit checkpoint names its dataset, model
        and recipe; a plain safetensors classifier needs ``dataset`` (and ``model`` unless the dataset's default)."""
        try:
            _, man = load_checkpoint(checkpoint)
        except CheckpointError:
            if dataset is None or not Path(checkpoint).is_file():
                raise
            ds = {"spec": str(dataset), "seed": int(data_seed), "label_column": label_column}
            exp = self._experiment(ds, {"model": {"name": model, "kwargs": {}}} if model else None)
            load_model(checkpoint, exp)  # refuses a file that is not a state dict of this model
            man = {"role": "original", "dataset": exp.splits.manifest, "model": exp.model_spec(),
                   "recipe": exp.recipe.to_dict(), "seed": 0,
                   "source": "plain safetensors without an unlearnkit manifest; recipe: the dataset's default"}
            return exp, ds, man
        ds = man.get("dataset") or {}
        if not ds.get("spec"):
            raise LedgerError(f"checkpoint {checkpoint}'s manifest names no dataset; pass --dataset instead")
        dataset = {"spec": ds["spec"], "seed": int(ds.get("seed", 0)), "label_column": ds.get("label_column")}
        exp = self._experiment(dataset, man)
        if exp.splits.hash != ds.get("hash"):
            raise LedgerError(f"checkpoint {checkpoint} was trained on dataset {ds['spec']} with hash "
                              f"{ds.get('hash')}, but loading it now gives {exp.splits.hash}; the data changed")
        return exp, dataset, man

    # --- adding requests ------------------------------------------------------------------------------------------
    def add_request(self, *, checkpoint: str | os.PathLike[str] | None = None, dataset: str | None = None,
                    data_seed: int = 0, label_column: str | None = None, ids: str | os.PathLike[str] | None = None,
                    cls: str | int | None = None, reason: str = "", requester: str = "") -> int:
        """Record a deletion request; returns its id. Nothing is written when anything is invalid.

        Raises:
            LedgerError / RequestError: neither or both of ``checkpoint``/``dataset`` or ``ids``/``cls``, ids out of
                range or listed twice, a class that does not exist, or samples already forgotten by an applied
                request (or listed in a pending one).
        """
        if (checkpoint is None) == (dataset is None):
            raise LedgerError("a request needs exactly one of --checkpoint (its manifest names the dataset) and "
                              "--dataset")
        if checkpoint is not None:
            exp, ds, _ = self._from_checkpoint(checkpoint)
        else:
            ds = {"spec": str(dataset), "seed": int(data_seed), "label_column": label_column}
            exp = self._experiment(ds)
        selector, given, idx, _ = training_indices(exp, ids_file=None if ids is None else str(ids),
                                                   cls=None if cls is None else str(cls), log=self.log)
        hashes = sample_hashes(exp.splits.train, idx)
        kind = "class" if cls is not None else "ids"
        row = {"received_at": _now(), "requester": str(requester or ""), "reason": str(reason or ""),
               "dataset": ds, "dataset_hash": exp.splits.hash, "kind": kind, "selector": selector,
               "user_ids": given, "train_indices": [int(i) for i in idx], "sample_hashes": hashes,
               "n_samples": int(len(idx))}
        with self.store.write() as cur:
            self._check_overlap(cur, exp.splits.hash, kind, selector, idx, exp.splits.train.source_ids)
            row["id"] = self.store.next_id(cur, "requests")
            self.store.append(cur, "requests", _encode(row))
        return int(row["id"])

    def _check_overlap(self, cur: Any, dataset_hash: str, kind: str, selector: str, idx: np.ndarray,
                       source_ids: Any = None) -> None:
        """Refuse samples already forgotten (or already requested); a class request may cover earlier ids. Samples
        are named by the user's id (``source_ids``, :mod:`unlearnkit.data.ids`) and their training index."""
        new = set(int(i) for i in idx)
        for r in self.requests(dataset_hash=dataset_hash, cur=cur):
            both = new.intersection(r.train_indices)
            if not both:
                continue
            state = f"applied in application {r.application_id}" if not r.pending else "pending"
            if kind == "ids" or new <= set(r.train_indices):
                first = min(both)
                uid = "" if source_ids is None else f"id {source_ids[first]} (training "
                what = (f"{uid}index {first}{')' if uid else ''}" if kind == "ids"
                        else f"every sample of {selector}")
                verb = "already forgotten by" if not r.pending else "already listed in"
                raise LedgerError(f"{what} is {verb} request {r.id} ({r.selector}, {state}); remove it from the "
                                  "request")

    # --- applying -------------------------------------------------------------------------------------------------
    def apply(self, *, checkpoint: str | os.PathLike[str], method: str, evidence: str = "standard",
              batch: bool = False, seed: int = 0, overrides: dict[str, Any] | None = None,
              audit_models: int = 8, dataset: str | None = None, model: str | None = None, data_seed: int = 0,
              label_column: str | None = None) -> list[int]:
        """Apply every pending request of the checkpoint's dataset, in order; returns the new application ids.

        One sequential step per request (``batch=False``) or one step for all of them. The deployed ``checkpoint``
        is replaced atomically after each step; a re-run after a crash resumes (see the module docstring).
        ``evidence``: ``cheap`` (accuracies and membership attacks of the unlearned model), ``standard`` (also the
        gap to the model retrained without everything forgotten so far, from the model cache, the noise floor and
        the single-step comparison) or ``audit`` (also U-LiRA with ``audit_models`` shadow models).
        ``dataset``/``model``/``data_seed``/``label_column`` are read only for a plain safetensors classifier
        without an unlearnkit manifest (its references then train with the dataset's default recipe).
        """
        from ..methods.base import get_method

        if evidence not in TIERS:
            raise LedgerError(f"--evidence must be one of {', '.join(TIERS)}, got {evidence!r}")
        spec = get_method(method)  # raises ConfigError listing the methods
        if evidence == "audit" and (audit_models < 2 or audit_models % 2):
            raise LedgerError(f"audit_models must be an even number >= 2, got {audit_models}")
        ckpt = Path(checkpoint).resolve()
        exp, _, man = self._from_checkpoint(ckpt, dataset=dataset, model=model, data_seed=data_seed,
                                            label_column=label_column)
        dh = exp.splits.hash
        self._sync_deployed(ckpt, dh)
        pending = self.requests(pending=True, dataset_hash=dh)
        if not pending:
            self.log("no pending request for this checkpoint's dataset")
            return []
        groups = [pending] if batch else [[r] for r in pending]
        forgotten = self._forgotten(dh)
        # Validate every step before any heavy work: a method that cannot serve a step fails now.
        plans, done = [], set(forgotten)
        for g in groups:
            split = self._split(exp, g, done)
            reason = exp.check_supported(spec, split)
            if reason:
                raise LedgerError(f"{reason}; requests {', '.join(str(r.id) for r in g)} stay pending")
            # Rules of the data sizes, presets, a tuned file from `unlearnkit tune` (if any), then overrides.
            cfg, prov = exp.config_for(method, split, seed, overrides)
            if any(p["source"] == "tuned file" for p in prov.values()):
                self.log(f"{method}: using tuned settings from {exp.tuned_file(method, split)}")
            plans.append((g, split, cfg))
            done |= set(int(i) for i in split.forget_idx)
        versions = self._versions_dir(ckpt)
        # The lineage's first model (kept before its first application): the start of the single-step comparison.
        lineage = self._lineage(dh)
        initial = lineage[0].model_before if lineage else self._keep_version(ckpt, versions)
        out = []
        for g, split, cfg in plans:
            out.append(self._apply_one(exp, man, ckpt, versions, initial, g, split, cfg, method, seed, evidence,
                                       "batch" if batch else "sequential", audit_models, overrides))
        return out

    @staticmethod
    def _versions_dir(ckpt: Path) -> Path:
        return ckpt.with_name(ckpt.stem + ".versions")

    def _keep_version(self, ckpt: Path, versions: Path) -> str:
        """Copy the deployed checkpoint into the versions folder (content-addressed); returns its SHA-256."""
        h = file_sha256(ckpt)
        dest = versions / f"{h[:16]}.safetensors"
        if not dest.is_file() or file_sha256(dest) != h:
            atomic_write(dest, lambda tmp: shutil.copyfile(ckpt, tmp))
        return h

    def _forgotten(self, dataset_hash: str) -> set[int]:
        return {i for r in self.requests(dataset_hash=dataset_hash) if not r.pending for i in r.train_indices}

    @staticmethod
    def _split(exp: Any, group: Sequence[Request], already: set[int]) -> Any:
        """The step's split: forget what the group adds, retain everything never forgotten."""
        from ..requests import ForgetRequest, ForgetSplit

        n = len(exp.splits.train)
        new = np.array(sorted({i for r in group for i in r.train_indices} - already), dtype=np.int64)
        union = np.array(sorted(already | set(new.tolist())), dtype=np.int64)
        retain = np.setdiff1d(np.arange(n), union).astype(np.int64)
        if all(r.kind == "class" for r in group):
            classes = tuple(sorted({int(exp.splits.train.y[i]) for i in new}))
            req = ForgetRequest(kind="class", classes=tuple(str(c) for c in classes))
        else:
            classes = None
            req = ForgetRequest(kind="ids", path="ledger:" + ",".join(str(r.id) for r in group))
        return ForgetSplit(req, new, retain, classes)

    def _lineage(self, dataset_hash: str) -> list[Application]:
        return self.applications(dataset_hash=dataset_hash)

    def _sync_deployed(self, ckpt: Path, dataset_hash: str) -> None:
        """Check that ``ckpt`` is the lineage's head; finish an application whose deployment a crash cut short."""
        apps = self._lineage(dataset_hash)
        if not apps:
            return
        last, h = apps[-1], file_sha256(ckpt)
        if h == last.model_after:
            return
        after = Path(last.after_path)
        if h == last.model_before and after.is_file() and file_sha256(after) == last.model_after:
            self.log(f"completing application {last.id}: deploying {after.name} (a crash interrupted it)")
            self._deploy(after, ckpt)
            return
        raise LedgerError(f"checkpoint {ckpt} (sha256 {h[:16]}) is not the model this ledger last produced for its "
                          f"dataset ({last.model_after[:16]}, application {last.id}, {last.checkpoint}); pass that "
                          "checkpoint")

    @staticmethod
    def _deploy(version: Path, ckpt: Path) -> None:
        """Replace the deployed checkpoint (and its .json manifest) by ``version`` atomically, keeping its
        permissions (a serving process of another user must still read it)."""
        for src, dest in ((version, ckpt), (version.with_suffix(".json"), ckpt.with_suffix(".json"))):
            if not src.is_file():
                continue
            mode = dest.stat().st_mode & 0o7777 if dest.exists() else 0o644

            def write(tmp: str, src: Path = src, mode: int = mode) -> None:
                shutil.copyfile(src, tmp)
                os.chmod(tmp, mode)

            atomic_write(dest, write)

    def _apply_one(self, exp: Any, man: dict[str, Any], ckpt: Path, versions: Path, initial: str,
                   group: list[Request], split: Any, cfg: Any, method: str, seed: int, tier: str, mode: str,
                   audit_models: int, overrides: dict[str, Any] | None) -> int:
        from .. import __version__
        from ..pipeline import code_fingerprint
        from .evidence import gather

        started = _now()
        before_hash = file_sha256(ckpt)
        before = load_model(ckpt, exp)
        ids = [r.id for r in group]
        self.log(f"applying request{'s' if len(ids) > 1 else ''} {', '.join(map(str, ids))} with {method} "
                 f"({len(split.forget_idx)} samples)")
        res, cfg = exp.run_method(method, before, split, seed, config=cfg)
        finished = _now()
        prior = self._lineage(exp.splits.hash)
        ev_rows = gather(self, exp, tier=tier, group=group, split=split, before=before, after=res.model,
                         result=res, method=method, cfg=cfg, seed=seed, initial=versions / f"{initial[:16]}"
                         ".safetensors", is_first=not prior, prior=prior, audit_models=audit_models,
                         overrides=overrides)
        # The new model: a version file first (content-addressed, atomic), then the rows, then deployment.
        tmp = versions / f".new-{os.getpid()}.safetensors"
        save_checkpoint(tmp, res.model, {**man, "role": "unlearned", "method": method, "config": cfg.to_dict(),
                                          "ledger_requests": ids, "unlearn_seconds": res.seconds})
        after_hash = file_sha256(tmp)
        after_path = versions / f"{after_hash[:16]}.safetensors"
        os.replace(tmp, after_path)
        os.replace(tmp.with_suffix(".json"), after_path.with_suffix(".json"))
        with self.store.write() as cur:
            still = {r.id for r in self.requests(pending=True, dataset_hash=exp.splits.hash, cur=cur)}
            if not set(ids) <= still:
                raise LedgerError(f"requests {sorted(set(ids) - still)} were applied by another process meanwhile; "
                                  "nothing recorded for this step")
            head = self.applications(dataset_hash=exp.splits.hash, cur=cur)
            if (head[-1].model_after if head else before_hash) != before_hash:
                raise LedgerError("another process applied requests to this model meanwhile; nothing recorded")
            app_id = self.store.next_id(cur, "applications")
            self.store.append(cur, "applications", _encode({
                "id": app_id, "request_ids": ids, "checkpoint": str(ckpt), "model_before": before_hash,
                "model_after": after_hash, "after_path": str(after_path), "method": method, "config": cfg.to_dict(),
                "seed": int(seed), "code_version": {"unlearnkit": __version__, "source_sha256_16": code_fingerprint()},
                "dataset_hash": exp.splits.hash, "mode": mode, "started_at": started, "finished_at": finished,
                "seconds": float(res.seconds)}))
            ev_id = self.store.next_id(cur, "evidence")
            for k, ev in enumerate(ev_rows):
                self.store.append(cur, "evidence", _encode({"id": ev_id + k, "application_id": app_id, **ev}))
            _crash_point("commit")
        _crash_point("deploy")
        self._deploy(after_path, ckpt)
        self.log(f"application {app_id}: {before_hash[:16]} -> {after_hash[:16]} deployed to {ckpt}")
        return app_id

    # --- reports --------------------------------------------------------------------------------------------------
    def report_data(self, request_id: int) -> dict[str, Any]:
        from .report import report_data

        return report_data(self, int(request_id))

    def report(self, request_id: int, out_dir: str | os.PathLike[str] = ".") -> tuple[Path, Path]:
        """Write ``request-<id>.html`` (self-contained) and ``request-<id>.json`` into ``out_dir``."""
        from .report import write_report

        return write_report(self, int(request_id), Path(out_dir))

    # --- verification ---------------------------------------------------------------------------------------------
    def verify(self, *, check_files: bool = True) -> VerifyResult:
        """Check the hash chain (edited, deleted, inserted or reordered rows) and every recorded checkpoint file."""
        rows = []
        for t in TABLES:
            rows += [(r["seq"], t, r) for r in self.store.rows(t)]
        rows.sort(key=lambda x: (x[0], x[1]))
        prev, n = GENESIS, 0
        for expect, (seq, table, r) in enumerate(rows, start=1):
            label = f"{table} row id={r['id']} (chain position {seq})"
            if seq != expect:
                return VerifyResult(False, n, 0, f"{label}: expected chain position {expect}; a row was deleted, "
                                                 "inserted or moved before it")
            if r["prev_hash"] != prev:
                return VerifyResult(False, n, 0, f"{label}: does not follow the previous row (deleted, inserted or "
                                                 "reordered rows)")
            if row_hash(table, r, seq, prev) != r["row_hash"]:
                return VerifyResult(False, n, 0, f"{label}: its content does not match its hash (the row was "
                                                 "edited)")
            prev, n = r["row_hash"], n + 1
        head_seq, head_hash = self.store.head()
        if head_seq != n or head_hash != prev:
            return VerifyResult(False, n, 0, f"the chain ends at position {n} but its head records position "
                                             f"{head_seq}: the last rows were deleted (or the head was edited)")
        files = 0
        if check_files:
            apps = self.applications()
            last_of: dict[str, Application] = {}
            for a in apps:
                last_of[a.checkpoint] = a
                p = Path(a.after_path)
                if p.is_file():
                    files += 1
                    if file_sha256(p) != a.model_after:
                        return VerifyResult(False, n, files, f"application {a.id}: {p} does not match the recorded "
                                                             f"hash {a.model_after[:16]} (the file was altered)")
            for path, a in last_of.items():
                p = Path(path)
                if p.is_file():
                    files += 1
                    if file_sha256(p) != a.model_after:
                        return VerifyResult(False, n, files, f"deployed checkpoint {p} is not the model of its last "
                                                             f"application {a.id} ({a.model_after[:16]}): it was "
                                                             "replaced, or a crashed apply awaits a re-run")
        return VerifyResult(True, n, files)

