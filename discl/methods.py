"""Method names: what one training run in a comparison is (pure).

``ce`` / ``bs``: real data only with cross-entropy / balanced softmax; ``cb``: CE with
class-balanced resampling; ``discl``: the configured curriculum; ``<loss>+<strategy>`` combines a
loss with any registered curriculum strategy (``bs+discl``, ``ce+mixed``, ``ce+single@0.5``).
A bare strategy name means CE with that strategy. ``la`` / ``crt`` / ``ce_long`` (:data:`DERIVED`) are
built from the same seed's ``ce`` run: post-hoc logit adjustment, classifier re-training with
class-balanced sampling, CE continued (:mod:`discl.training.posthoc`).
"""

from __future__ import annotations

from dataclasses import dataclass

LOSSES = {"ce": "ce", "bs": "balanced_softmax", "flyp": "flyp"}
BASELINES = ("ce", "bs", "cb")  # the real-data-only methods (``training.init_from`` may name one)
DERIVED = ("la", "crt", "ce_long")  # real-data-only baselines built from the same seed's ``ce`` run


@dataclass(frozen=True)
class Method:
    name: str
    loss: str  # TrainConfig.loss value
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
    loss, _, strat = text.partition("+") if "+" in text else ("ce", "", text)
    if loss not in LOSSES:
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
    return Method(text, LOSSES[loss], "none", strat, level)
