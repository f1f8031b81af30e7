"""CLIP backends, one per module; see :func:`discl.filtering.scorer.create_scorer`."""
