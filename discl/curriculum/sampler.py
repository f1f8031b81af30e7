"""The curriculum as an object a training loop drives: its pool, its epoch plans, a Sampler, feedback.

:class:`Curriculum` is the one implementation of "which items does epoch ``e`` train on": ``discl
train`` hands it to its loop (:func:`discl.training.loop.fit`), and a user's own loop gets the same
indices through :class:`CurriculumSampler` (``set_epoch`` like ``DistributedSampler``) or
:meth:`Curriculum.indices`. The pool is the real training images (minus the adaptive strategies'
held-out images) followed by the kept synthetic variants; :class:`CurriculumDataset` maps a pool index
to the user's real dataset or to the spectrum. Batch order and the split across processes are
:func:`~discl.curriculum.epochs.epoch_order` and :func:`~discl.curriculum.epochs.rank_share`, as in
``discl train``, so process ``r`` of ``W`` sees exactly what ``discl train``'s process ``r`` sees.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from discl.artifacts import read_table
from discl.curriculum.base import CurriculumStrategy, create_strategy, is_real
from discl.curriculum.config import CurriculumConfig
from discl.curriculum.epochs import EpochPlan, ProbaFn, epoch_order, rank_share
from discl.curriculum.stage_data import (
    build_pool_meta,
    needed_levels,
    plan_stage_epoch,
    select_holdout,
    tail_share_shortfall,
)
from discl.errors import BadInputError

logger = logging.getLogger(__name__)

__all__ = ["Curriculum", "CurriculumSampler", "CurriculumBatchSampler", "CurriculumDataset", "create_curriculum"]

# per candidate level: (images, labels) or (images, labels, held-out sample id of each image)
Probes = dict[float, tuple]


class Curriculum:
    """A curriculum strategy over one pool: plans each epoch, takes feedback, saves its state.

    ``meta`` has one row per pool item (:data:`~discl.curriculum.stage_data.META_COLUMNS`): first the
    real images, then the synthetic ones. ``real_index[i]`` is the position of pool item ``i`` in the
    caller's real training set (-1 for synthetic items), ``spectrum_index[i]`` its row in the spectrum
    (-1 for real ones). ``probes`` maps each candidate level (1.0 = real) to the held-out images and
    labels whose ground-truth probability the adaptive strategies track, optionally with a third entry:
    the held-out sample id of each image (then the log also has the top two levels' paired gap).
    """

    def __init__(self, strategy: CurriculumStrategy, cfg: CurriculumConfig, meta: pd.DataFrame, seed: int,
                 real_index: np.ndarray | None = None, spectrum_index: np.ndarray | None = None,
                 probes: Probes | None = None, holdout: Sequence[str] = (),
                 batch_size: int = 512):
        self.strategy, self.cfg, self.meta, self.seed = strategy, cfg, meta.reset_index(drop=True), int(seed)
        n = len(self.meta)
        self.real_index = np.asarray(real_index if real_index is not None else np.full(n, -1), dtype=np.int64)
        self.spectrum_index = np.asarray(spectrum_index if spectrum_index is not None else np.full(n, -1), dtype=np.int64)
        self.holdout = list(holdout)
        self.probes = {lv: (p[0], p[1]) for lv, p in (probes or {}).items()}
        ids = {lv: np.asarray(p[2]).astype(str) for lv, p in (probes or {}).items() if len(p) > 2}
        for lv, s_ in ids.items():
            if len(s_) != len(self.probes[lv][1]):
                raise ValueError(f"probes at λ={lv:g}: {len(s_)} sample ids for {len(self.probes[lv][1])} images")
        self.probe_sources: dict[float, np.ndarray] | None = ids if ids and len(ids) == len(self.probes) else None
        self.batch_size = batch_size
        self.levels: list[float] = sorted({round(float(v), 6) for v in self.meta["lam"] if not is_real(v)})
        self.synthetic_files: list[str] = []
        self._warned: set[str] = set()  # shortfall messages already logged (not state: a resumed run warns again)
        if strategy.needs_feedback and not any(len(x) for x, _ in self.probes.values()):
            raise BadInputError(
                f"curriculum strategy {strategy.name!r} measures progress on held-out hard images, but none are "
                "held out: set curriculum.holdout_per_class >= 1 and check that the hard set is not empty"
            )

    @classmethod
    def from_frames(cls, strategy: CurriculumStrategy, cfg: CurriculumConfig, train: pd.DataFrame, hard: pd.DataFrame,
                    manifest: pd.DataFrame, epochs: int, num_classes: int, seed: int, holdout_seed: int,
                    probes: Probes | Callable[[list[str]], Probes] | None = None) -> Curriculum:
        """The pool of a real training set (``train``: ``sample_id``, ``label``, in the caller's order),
        its hard images and the spectrum's manifest (``keep`` applied here), as ``discl train`` builds it.

        ``probes``, when callable, is called with the held-out sample ids (adaptive strategies only).
        """
        levels = needed_levels(strategy, cfg, epochs)
        holdout = select_holdout(hard, cfg.holdout_per_class, holdout_seed) if strategy.uses_holdout else []
        if holdout:
            held = hard[hard["sample_id"].astype(str).isin(set(holdout))]["label"].value_counts()
            short = {int(c): int(held.get(c, 0)) for c in sorted(hard["label"].unique()) if held.get(c, 0) < cfg.holdout_per_class}
            logger.info("curriculum %s: %d hard images held out to measure progress (holdout_per_class %d)%s",
                        strategy.name, len(holdout), cfg.holdout_per_class,
                        f"; fewer for {len(short)} class(es) ({', '.join(f'{c}: {n}' for c, n in list(short.items())[:10])}"
                        f"{', ...' if len(short) > 10 else ''}), which keep one hard image in training" if short else "")
        real, syn = build_pool_meta(train, hard, manifest, levels, holdout, num_classes, cfg.tail_min_hard_share)
        where = pd.Index(train["sample_id"].astype(str)).get_indexer(real["sample_id"])
        spec_pos = (pd.Index(manifest["file_name"].astype(str)).get_indexer(syn["file_name"])
                    if len(syn) else np.zeros(0, dtype=np.int64))
        meta = pd.concat([real, syn.drop(columns=["file_name"])], ignore_index=True)
        real_index = np.concatenate([where, np.full(len(syn), -1)])
        spectrum_index = np.concatenate([np.full(len(real), -1), spec_pos])
        if callable(probes):
            probes = probes(list(holdout)) if strategy.needs_feedback else None
        out = cls(strategy, cfg, meta, seed, real_index, spectrum_index, probes, holdout)
        out.levels, out.synthetic_files = levels, syn["file_name"].tolist()
        return out

    # -- what an epoch trains on -------------------------------------------------------------------

    def __len__(self) -> int:
        """Items in the pool (real + synthetic); an epoch visits a planned subset, repeats allowed."""
        return len(self.meta)

    def plan(self, epoch: int) -> EpochPlan:
        """Pool indices of ``epoch`` (unshuffled) and what to log; pure given the strategy's state.

        With ``curriculum.min_tail_synthetic_share`` set, a synthetic stage whose tail slots hold a
        smaller synthetic share is logged as a warning, once per stage and share."""
        stage = self.strategy.stage(epoch)
        out = plan_stage_epoch(self.meta, stage, epoch, self.seed, self.cfg)
        why = tail_share_shortfall(out.info, stage, self.cfg.min_tail_synthetic_share)
        if why is not None and why not in self._warned:
            self._warned.add(why)
            logger.warning("curriculum %s, epoch %d: %s", self.strategy.name, epoch, why)
        return out

    def indices(self, epoch: int, batch_size: int | None = None, num_replicas: int = 1, rank: int = 0) -> np.ndarray:
        """Pool indices of ``epoch`` in training order; with ``batch_size``, shuffled into global batches
        and cut for process ``rank`` of ``num_replicas`` exactly as ``discl train`` does."""
        if batch_size is None:
            return np.asarray(self.plan(epoch).indices, dtype=np.int64)
        parts = self.batches(epoch, batch_size, num_replicas, rank)
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def global_batches(self, epoch: int, batch_size: int, num_replicas: int = 1) -> list[np.ndarray]:
        """The global batches of ``epoch`` (pool indices) as ``discl train`` on ``num_replicas`` processes
        forms them: ``batch_size`` rounded up to a multiple of the processes, a last batch too small to
        give every process 2 items dropped; ``discl train``'s ``order_digest`` is of their concatenation."""
        items = np.asarray(self.plan(epoch).indices, dtype=np.int64)
        per = max(1, math.ceil(batch_size / num_replicas))
        return [items[b] for b in epoch_order(len(items), per * num_replicas, num_replicas, self.seed, epoch)]

    def batches(self, epoch: int, batch_size: int, num_replicas: int = 1, rank: int = 0) -> list[np.ndarray]:
        """Process ``rank``'s share of each global batch of ``epoch`` (``batch_size`` is the global batch)."""
        return [rank_share(b, rank, num_replicas) for b in self.global_batches(epoch, batch_size, num_replicas)]

    def stage(self, epoch: int):
        """The strategy's stage of ``epoch`` (its λ levels; ``()`` = real only)."""
        return self.strategy.stage(epoch)

    # -- feedback (adaptive strategies) ------------------------------------------------------------

    @property
    def needs_feedback(self) -> bool:
        """Whether :meth:`after_epoch` must be called with a probability function (adaptive strategies)."""
        return bool(self.strategy.needs_feedback)

    def after_epoch(self, epoch: int, predict_proba: ProbaFn) -> dict[str, Any]:
        """Call after every epoch. When the strategy asks for it, ``predict_proba`` (a batch of probe images
        → class probabilities [N, K], model in eval mode) scores the held-out images at every candidate
        level and the strategy picks the next stage. Returns what to log ({} when nothing was measured)."""
        if not (self.strategy.needs_feedback and self.strategy.wants_feedback(epoch)):
            return {}
        t0 = time.perf_counter()
        gt, labels, sources = {}, {}, {}
        for level, (x, y) in self.probes.items():
            if len(x) == 0:
                continue
            p = torch.cat([torch.as_tensor(predict_proba(x[i : i + self.batch_size])).detach().float().cpu()
                           for i in range(0, len(x), self.batch_size)])
            if p.ndim != 2 or p.shape[0] != len(y):
                raise ValueError(f"predict_proba returned shape {tuple(p.shape)} for {len(y)} probe images of "
                                 f"λ={level:g}; it must return class probabilities [N, K] for a batch of N images")
            gt[level] = p[torch.arange(len(y)), y].numpy()
            labels[level] = y.numpy()
            if self.probe_sources is not None:
                sources[level] = self.probe_sources[level]
        takes_sources = "sources" in inspect.signature(self.strategy.observe).parameters
        out = (self.strategy.observe(epoch, gt, labels, sources=sources) if sources and takes_sources
               else self.strategy.observe(epoch, gt, labels))
        out["measure_time_s"] = round(time.perf_counter() - t0, 4)
        return out

    def state_dict(self) -> dict[str, Any]:
        """The strategy's state (plain data): save it with your checkpoint to resume the same choices."""
        return {"strategy": self.strategy.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s output (resuming an adaptive run makes the same choices)."""
        self.strategy.load_state_dict((state or {}).get("strategy", {}))

    # -- for a user's loop -------------------------------------------------------------------------

    def sampler(self, batch_size: int, num_replicas: int | None = None, rank: int | None = None) -> CurriculumSampler:
        """A :class:`CurriculumSampler` over this curriculum (``batch_size`` is the global batch)."""
        return CurriculumSampler(self, batch_size, num_replicas, rank)

    def batch_sampler(self, batch_size: int, num_replicas: int | None = None,
                      rank: int | None = None) -> CurriculumBatchSampler:
        """A :class:`CurriculumBatchSampler` (``DataLoader(batch_sampler=...)``; ``batch_size`` is global)."""
        return CurriculumBatchSampler(self, batch_size, num_replicas, rank)

    def dataset(self, real_dataset, spectrum, transform: Callable | None = None) -> CurriculumDataset:
        """A :class:`CurriculumDataset`: pool index → your real item, or ``(transform(image), label)``."""
        return CurriculumDataset(self, real_dataset, spectrum, transform)


def _world(num_replicas: int | None, rank: int | None) -> tuple[int, int]:
    """(world size, rank): the explicit values, else ``torch.distributed``'s now (1, 0 without it)."""
    if num_replicas is None or rank is None:
        dist = torch.distributed.is_available() and torch.distributed.is_initialized()
        num_replicas = (torch.distributed.get_world_size() if dist else 1) if num_replicas is None else num_replicas
        rank = (torch.distributed.get_rank() if dist else 0) if rank is None else rank
    if not 0 <= rank < num_replicas:
        raise ValueError(f"rank {rank} is not in [0, {num_replicas})")
    return int(num_replicas), int(rank)


class CurriculumSampler(torch.utils.data.Sampler):
    """Yields this process's pool indices of the current epoch; call ``set_epoch(e)`` before each epoch.

    Like ``DistributedSampler``: ``num_replicas``/``rank`` default to ``torch.distributed``'s world size
    and rank (1/0 without it), read when they are needed (``set_epoch``, iteration, ``len``), not when
    the sampler is made: Lightning and ``torchrun`` scripts build it before the process group starts.
    Give the ``DataLoader`` ``batch_size=sampler.per_replica_batch_size``, no shuffle and no second
    distributed sampler: each global batch of ``batch_size`` is shuffled from (seed, epoch) and split
    every ``num_replicas``-th item, as in ``discl train``. A final global batch too small for 2 items per
    process is dropped (batch norm), as there too. When the process group may start after the
    ``DataLoader`` is made (Lightning), use :class:`CurriculumBatchSampler` (``batch_sampler=``)
    instead: a batch size read before would be the one-process size, and iterating then fails.
    """

    def __init__(self, curriculum: Curriculum, batch_size: int, num_replicas: int | None = None, rank: int | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if num_replicas is not None and rank is not None:
            _world(num_replicas, rank)  # an explicit bad rank fails here, not at the first epoch
        self.curriculum, self.batch_size = curriculum, int(batch_size)
        self._num_replicas, self._rank = num_replicas, rank
        self._batch_world: int | None = None  # world size per_replica_batch_size was last read for
        self.epoch = 0
        self._cache: tuple[tuple[int, int, int], list[np.ndarray]] | None = None

    @property
    def num_replicas(self) -> int:
        return _world(self._num_replicas, self._rank)[0]

    @property
    def rank(self) -> int:
        return _world(self._num_replicas, self._rank)[1]

    @property
    def per_replica_batch_size(self) -> int:
        """The ``DataLoader`` batch size: each process's share of a global batch, for the world size now."""
        self._batch_world = self.num_replicas
        return max(1, math.ceil(self.batch_size / self._batch_world))

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch the next iteration yields (its plan is made when iteration starts)."""
        self.epoch = int(epoch)
        self._cache = None

    def _batches(self) -> list[np.ndarray]:
        world, rank = _world(self._num_replicas, self._rank)
        if self._batch_world is not None and self._batch_world != world:
            raise BadInputError(
                f"this CurriculumSampler's per_replica_batch_size was read for {self._batch_world} process(es), but "
                f"torch.distributed now has {world}: the DataLoader batches would not be the curriculum's global "
                "batches of the sampler's batch_size. The process group started after the DataLoader was made "
                "(Lightning does this): use DataLoader(dataset, batch_sampler=curriculum.batch_sampler(batch_size)), "
                "or pass num_replicas and rank to the sampler")
        key = (self.epoch, world, rank)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self.curriculum.batches(self.epoch, self.batch_size, world, rank))
        return self._cache[1]

    def _indices(self) -> np.ndarray:
        parts = self._batches()
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def __iter__(self) -> Iterator[int]:
        self._cache = None  # an adaptive strategy may have changed its next stage since
        return iter(self._indices().tolist())

    def __len__(self) -> int:
        return len(self._indices())


class CurriculumBatchSampler(CurriculumSampler):
    """:class:`CurriculumSampler` as a batch sampler: yields this process's share of each global batch.

    Pass it as ``DataLoader(dataset, batch_sampler=...)`` (no ``batch_size``): the per-process batch
    follows the world size when iteration starts, so it is right even when the process group starts
    after the ``DataLoader`` is made (Lightning's ``Trainer.fit``). Same batches as the sampler.
    """

    def __iter__(self) -> Iterator[list[int]]:
        self._cache = None
        return iter([b.tolist() for b in self._batches()])

    def __len__(self) -> int:
        return len(self._batches())


class CurriculumDataset(torch.utils.data.Dataset):
    """Pool index → the item to train on: ``real_dataset[j]`` for a real image (your item, unchanged)
    or ``(transform(image), label)`` for a synthetic one. Use the transform your real dataset applies,
    so both kinds of images reach the model alike."""

    def __init__(self, curriculum: Curriculum, real_dataset, spectrum, transform: Callable | None = None):
        self.curriculum, self.real_dataset, self.spectrum, self.transform = curriculum, real_dataset, spectrum, transform

    def __len__(self) -> int:
        return len(self.curriculum)

    def __getitem__(self, i: int):
        j = int(self.curriculum.real_index[i])
        if j >= 0:
            return self.real_dataset[j]
        s = int(self.curriculum.spectrum_index[i])
        image = self.spectrum.image(s)
        return (self.transform(image) if self.transform is not None else image), int(self.curriculum.meta.at[int(i), "label"])

    def epoch(self, epoch: int, batch_size: int | None = None) -> torch.utils.data.Subset:
        """Epoch ``epoch``'s items as a Dataset (in training order when ``batch_size`` is given)."""
        return torch.utils.data.Subset(self, self.curriculum.indices(epoch, batch_size).tolist())


def _first(item):
    return item[0] if isinstance(item, tuple | list) else item


def create_curriculum(
    strategy: str | CurriculumConfig = "fixed",
    *,
    spectrum,
    train_ids: Sequence[Any],
    train_labels: Sequence[int],
    epochs: int,
    seed: int = 0,
    hard_ids: Sequence[Any] | None = None,
    num_classes: int | None = None,
    holdout_seed: int | None = None,
    real_dataset=None,
    transform: Callable | None = None,
    probe_dataset=None,
    class_names: Sequence[str] | None = None,
    **options: Any,
) -> Curriculum:
    """A :class:`Curriculum` over your real training set and a spectrum (:func:`discl.load_spectrum`).

    ``strategy`` is a registered name (``discl curricula`` lists them) with ``options`` as
    ``curriculum.*`` keys (``levels=[0.1, 0.3, 0.5]``, ``stages=[...]``...), or a full
    :class:`~discl.curriculum.config.CurriculumConfig`. ``train_ids``/``train_labels`` describe your
    training set in its own order; the ids must be the ``sample_id`` values the run mined and generated
    from, and the labels the run's class indices (the spectrum's ``label``: ``load_real_split(RUN,
    "train").labels``, classes in ``.classes`` order): a spectrum row whose source image has another
    label in ``train_labels`` is an error, as is a spectrum source missing from ``train_ids``. If your
    labels number the classes another way, pass ``class_names`` (your class names, in your label
    order): the spectrum's labels are then mapped to yours through its ``class_name`` column.
    ``hard_ids`` defaults to the run's ``mining/hard.csv`` (else every spectrum source). The adaptive
    strategies hold out hard images chosen from ``holdout_seed`` (default ``seed``; ``discl train``
    uses the run's ``seed``) and measure progress on probe batches that :meth:`Curriculum.after_epoch`
    passes to your probability function: the held-out real images are read from ``probe_dataset``
    (default ``real_dataset``), the variants through ``transform``. Both must be deterministic, with
    no augmentation (``discl train`` probes un-augmented images): the probes are made once and kept.
    """
    if isinstance(strategy, CurriculumConfig):
        if options:
            raise ValueError("give curriculum options either in the CurriculumConfig or as keywords, not both")
        cfg = strategy
    else:
        from discl.configtools import from_dict

        cfg = from_dict(CurriculumConfig, {"strategy": strategy, **options}, prefix="curriculum.")
    ids = [str(s) for s in train_ids]
    labels = np.asarray(train_labels, dtype=np.int64)
    if len(ids) != len(labels):
        raise ValueError(f"{len(ids)} train_ids but {len(labels)} train_labels")
    if len(set(ids)) != len(ids):
        raise BadInputError("train_ids has repeated ids; each real training image needs its own sample_id")
    train = pd.DataFrame({"sample_id": ids, "label": labels})
    if hard_ids is None:
        hard_csv = Path(spectrum.run_dir) / "mining" / "hard.csv" if getattr(spectrum, "run_dir", None) else None
        hard_ids = (read_table(hard_csv)["sample_id"].astype(str).tolist() if hard_csv is not None and hard_csv.is_file()
                    else sorted(set(spectrum.frame["sample_id"].astype(str))))
    hard_ids = [str(s) for s in hard_ids]
    label_of = dict(zip(ids, labels.tolist()))
    frame = spectrum.frame if class_names is None else _relabel(spectrum.frame, class_names)
    _check_spectrum_sources(frame, label_of, hard_ids)
    missing = [s for s in hard_ids if s not in label_of]
    if missing:
        raise BadInputError(f"{len(missing)} hard ids are not in train_ids, e.g. {missing[0]!r}: train_ids must be the "
                            "sample ids the run mined (see RUN/mining/hard.csv)")
    hard = pd.DataFrame({"sample_id": hard_ids, "label": [label_of[s] for s in hard_ids]})
    k = int(num_classes) if num_classes is not None else int(max(labels.max(initial=-1), frame["label"].max() if len(frame) else -1) + 1)
    strat = create_strategy(cfg.strategy, cfg, epochs, seed)
    manifest = frame.assign(keep=True)  # the spectrum is already the kept variants (or all, if asked)
    available = {round(float(v), 6) for v in manifest["lam"]}
    missing_levels = [lv for lv in needed_levels(strat, cfg, epochs) if lv not in available]
    if missing_levels:
        raise BadInputError(f"curriculum {cfg.strategy!r} needs λ = {', '.join(f'{v:g}' for v in missing_levels)} but the "
                            f"spectrum has λ = {', '.join(f'{v:g}' for v in sorted(available))}: pass levels=[...] "
                            "from the spectrum's levels")
    probes = None
    if strat.needs_feedback:
        probe_dataset = real_dataset if probe_dataset is None else probe_dataset
        if probe_dataset is None or transform is None:
            raise BadInputError(f"curriculum {cfg.strategy!r} measures progress on held-out images: pass real_dataset "
                                "(or probe_dataset) and transform to create_curriculum, to build the probe batches")
        probes = _probe_builder(cfg, train, manifest, spectrum, probe_dataset, transform)
    hs = seed if holdout_seed is None else int(holdout_seed)
    return Curriculum.from_frames(strat, cfg, train, hard, manifest, epochs, k, seed, hs, probes)


def _check_spectrum_sources(frame: pd.DataFrame, label_of: dict[str, int], hard_ids: list[str]) -> None:
    """Every spectrum row's source image is a training image of the same class.

    Synthetic items take their label from the spectrum, real ones from ``train_labels``: a dataset
    whose classes are numbered differently would silently train every variant as another class.
    """
    sids = frame["sample_id"].astype(str).to_numpy()
    spec_labels = frame["label"].to_numpy(dtype=np.int64)
    unknown = sorted({s for s in sids if s not in label_of})
    if unknown:
        raise BadInputError(
            f"{len(unknown)} source images of the spectrum are not in train_ids, e.g. {unknown[0]!r}: train_ids must "
            "be the sample ids of the run's training split (discl.load_real_split(RUN, 'train').sample_ids)")
    for sid, lab in zip(sids, spec_labels):
        if label_of[sid] != lab:
            raise BadInputError(
                f"sample {sid!r} has label {label_of[sid]} in train_labels but {int(lab)} in the spectrum: train_labels "
                "must be the run's class indices (the spectrum's 'label' column; discl.load_real_split(RUN, 'train')"
                ".labels, classes in its .classes order). Remap your labels to those indices")
    hard = set(hard_ids)
    unused = sorted({s for s in sids if s not in hard})
    if unused:
        logger.warning("%d source images of the spectrum (e.g. %r) are not in hard_ids (RUN/mining/hard.csv): their "
                       "variants are not used", len(unused), unused[0])


def _relabel(frame: pd.DataFrame, class_names: Sequence[str]) -> pd.DataFrame:
    """The spectrum's rows with ``label`` = the index of their ``class_name`` in ``class_names``."""
    if "class_name" not in frame.columns:
        raise BadInputError("class_names needs the spectrum's class_name column, which this spectrum lacks: "
                            "pass train_labels in the run's class order instead")
    index = {str(n): i for i, n in enumerate(class_names)}
    names = frame["class_name"].astype(str)
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise BadInputError(f"the spectrum's class {unknown[0]!r} is not in class_names ({len(unknown)} classes are not)")
    return frame.assign(label=names.map(index).to_numpy(dtype=np.int64))


def _deterministic(a, b) -> bool:
    """Two reads of one probe image agree (only tensors are compared; anything else fails later in stack)."""
    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
        return True
    return a.shape == b.shape and torch.equal(a, b)


def _probe_builder(cfg: CurriculumConfig, train: pd.DataFrame, manifest: pd.DataFrame, spectrum, real_dataset,
                   transform: Callable) -> Callable[[list[str]], Probes]:
    """The probes of a user's curriculum: held-out real images (λ=1) and their kept variants per level,
    in ``discl train``'s order (variants sorted by sample id and k), through the user's transform."""

    def build(holdout: list[str]) -> Probes:
        pos = pd.Index(train["sample_id"]).get_indexer(holdout)
        out: Probes = {}
        for lv in cfg.levels:
            if is_real(lv):
                xs = [_first(real_dataset[int(j)]) for j in pos]  # the user's item, already transformed
                if len(pos) and not _deterministic(xs[0], _first(real_dataset[int(pos[0])])):
                    raise BadInputError(
                        f"the probe dataset gives two different images for held-out sample {holdout[0]!r} (a random "
                        "augmentation?): the adaptive strategies' probes are made once and must not be augmented. "
                        "Pass probe_dataset= (your training images with the evaluation transform) to create_curriculum")
                y = train["label"].to_numpy()[pos]
                ids = [str(h) for h in holdout]
            else:
                rows = manifest[manifest["sample_id"].astype(str).isin(set(holdout)).to_numpy()
                                & np.isclose(manifest["lam"].to_numpy(dtype=float), lv)]
                rows = rows.sort_values(["sample_id", "k"] if "k" in rows.columns else ["sample_id"])
                xs = [transform(spectrum.image(int(i))) for i in rows.index]
                if len(xs) and not _deterministic(xs[0], transform(spectrum.image(int(rows.index[0])))):
                    raise BadInputError(
                        f"create_curriculum's transform gives two different tensors for spectrum image "
                        f"{rows['file_name'].iloc[0]!r} (a random augmentation?): it makes the adaptive strategies' "
                        "probes, once; pass the evaluation transform (CurriculumDataset takes the training one)")
                y = rows["label"].to_numpy()
                ids = rows["sample_id"].astype(str).tolist()
            x = torch.stack(xs) if xs else torch.zeros(0)
            out[round(float(lv), 6)] = (x, torch.as_tensor(np.array(y, dtype=np.int64)), ids)
        return out

    return build

