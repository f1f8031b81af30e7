"""CLIP filtering of the synthetic-to-real spectrum (phase 1d); see docs/filtering.md.

Public API (heavy libraries load only when a backend is created):
- :func:`discl.filtering.runner.filter_spectrum` (the stage), ``discl filter`` (its CLI);
- :func:`discl.filtering.scorer.create_scorer` / ``list_backends`` / ``register_backend`` and the
  :class:`~discl.filtering.scorer.ClipScorer` protocol;
- :mod:`discl.filtering.scores` and :mod:`discl.filtering.rules` (pure), :mod:`discl.filtering.retry`;
- the embedded CLIP: :mod:`discl.filtering.embedded_clip`, ``discl clip train|evaluate``.
"""
