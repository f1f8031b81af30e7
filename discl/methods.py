"""Method names: what one training run in a comparison is (pure).

``ce`` / ``bs`` / ``flyp``: real data only with cross-entropy / balanced softmax / FLYP (CLIP's
contrastive fine-tuning; needs ``training.model: clip``); ``cb``: CE with class-balanced
resampling; ``discl``: the configured curriculum; ``<loss>+<strategy>`` combines a loss with any
registered curriculum strategy (``bs+discl``, ``ce+mixed``, ``ce+single@0.5``). A bare strategy
name (``discl``, ``mixed``) takes ``training.loss``: with ``loss: flyp`` (iWildCam) ``discl`` is
FLYP + DisCL, the paper's comparison against the ``flyp`` baseline.

One naming scheme for the training-run folders: ``RUN/train/<method>-s<seed>`` (:func:`run_folder`),
used by ``discl run``, ``discl baseline``, ``discl train`` and the report.

``la`` / ``crt`` / ``ce_long`` (:data:`DERIVED`) are built from the same seed's ``ce`` run: post-hoc
logit adjustment, classifier re-training with class-balanced sampling, CE continued
(:mod:`discl.training.posthoc`).
"""

from __future__ import annotations

from dataclasses import dataclass

LOSSES = {"ce": "ce", "bs": "balanced_softmax", "flyp": "flyp"}
BASELINES = ("ce", "bs", "cb", "flyp")  # the real-data-only methods (``training.init_from`` may name one)
SAME_LOSS = "baseline"  # ``training.init_from: baseline``: the same seed's baseline of the run's own loss
INIT_BASELINES = (*BASELINES, SAME_LOSS)  # the ``training.init_from`` values that name a baseline of the run
DERIVED = ("la", "crt", "ce_long")  # real-data-only baselines built from the same seed's ``ce`` run


@dataclass(frozen=True)
class Method:
    name: str
    loss: str | None  # TrainConfig.loss value; None = training.loss (a bare strategy)
    sampler: str  # none | class_balanced
    strategy: str | None  # None = real data only, no curriculum; "discl" = the configured one
    level: float | None = None  # for single-level strategies: ``single@0.5``
    base: str | None = None  # DERIVED methods: the baseline whose same-seed checkpoint they start from

    @property
    def uses_synthetic(self) -> bool:
        return self.strategy is not None and self.strategy != "real_only"


def parse_method(name: str) -> Method:
    text = name.strip()
    if not text:
        raise ValueError("empty method name")
    if text == "cb":
        return Method(text, "ce", "class_balanced", None)
    if text in LOSSES:
        return Method(text, LOSSES[text], "none", None)
    if text in DERIVED:
        return Method(text, "ce", "class_balanced" if text == "crt" else "none", None, base="ce")
    loss, _, strat = text.partition("+") if "+" in text else (None, "", text)
    if loss is not None and loss not in LOSSES:
        raise ValueError(f"unknown loss {loss!r} in method {name!r} (ce, bs, flyp)")
    level = None
    if "@" in strat:
        strat, _, lv = strat.partition("@")
        try:
            level = float(lv)
        except ValueError:
            raise ValueError(f"method {name!r}: level {lv!r} is not a number") from None
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"method {name!r}: level {level} is outside [0, 1]")
    if not strat.replace("_", "").isalnum():
        raise ValueError(f"method {name!r}: {strat!r} is not a strategy name")
    return Method(text, LOSSES[loss] if loss else None, "none", strat, level)


def init_baseline(init_from: str | None, loss: str) -> str | None:
    """The baseline a curriculum run trained with ``loss`` (a TrainConfig.loss value) fine-tunes from
    (pure): ``training.init_from`` when it names one (``ce``, ``bs``, ``cb``, ``flyp``); for
    ``baseline``, the one of the run's own loss (DisCL from CE, as the authors' long-tail recipe does;
    BS + DisCL from BS and FLYP + DisCL from FLYP, this project's reading: the authors' code has no
    BS loss and does not say); None for a checkpoint file or no init."""
    if init_from in BASELINES:
        return init_from
    if init_from == SAME_LOSS:
        short = {**{v: k for k, v in LOSSES.items()}, **{k: k for k in LOSSES}}  # balanced_softmax or bs
        if loss not in short:
            raise ValueError(f"training.init_from: baseline: no baseline trains with loss {loss!r} ({', '.join(LOSSES.values())})")
        return short[loss]
    return None


def run_folder(method: str, seed: int) -> str:
    """The folder name of one training run under ``RUN/train/`` (pure)."""
    return f"{method}-s{int(seed)}"


def method_for(strategy: str | None, loss: str | None, configured_strategy: str, configured_loss: str) -> str:
    """The method name of a ``discl train`` run (pure): ``discl`` for the configured strategy, the
    strategy's name otherwise, prefixed by the loss (``bs+``) when it is not ``training.loss``."""
    strat = strategy or configured_strategy
    name = "discl" if strat == configured_strategy else strat
    short = {v: k for k, v in LOSSES.items()}
    loss_full = LOSSES.get(loss, loss) if loss else configured_loss
    return name if loss_full == configured_loss else f"{short.get(loss_full, loss_full)}+{name}"


def methods_help(strategies: list[str]) -> str:
    """The valid method names, for error messages."""
    return (f"valid methods: baselines {', '.join(BASELINES)}; baselines built from the ce run {', '.join(DERIVED)}; discl (the configured curriculum.strategy); "
            f"a strategy name ({', '.join(strategies)}); <loss>+<strategy> with loss ce, bs or flyp "
            f"(bs+discl, ce+mixed); a single level as single@λ (single@0.5, bs+single@0.3)")
