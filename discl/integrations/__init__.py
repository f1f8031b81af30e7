"""Adapters that plug a :class:`~discl.curriculum.sampler.Curriculum` into other trainers.

Each lives behind an optional extra and is imported only when used: ``pip install discl[lightning]``
(:mod:`discl.integrations.lightning`), ``pip install discl[hf]`` (:mod:`discl.integrations.hf`).
"""
