"""Stable seed derivation.

Every random choice in discl (which prompt a job uses, the noise of a generated image, the epoch's
subset of real images) gets its seed from a blake2b digest of the ids that identify it. Python's
built-in string hash is salted per process and must never be used for this: the same config has to give the
same images whatever process, shard or resume produced them.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

SEED_BITS = 63


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from a stable digest of ``parts`` (ints, floats, strings).

    Floats are formatted with ``repr`` after rounding to 6 decimals so that 0.1 from YAML and 0.1
    computed as 1 - 0.9 give the same seed.
    """
    tokens = []
    for p in parts:
        if isinstance(p, bool):
            tokens.append(f"b:{int(p)}")
        elif isinstance(p, int | np.integer):
            tokens.append(f"i:{int(p)}")
        elif isinstance(p, float | np.floating):
            tokens.append(f"f:{round(float(p), 6)!r}")
        elif isinstance(p, str):
            tokens.append(f"s:{p}")
        else:
            raise TypeError(f"derive_seed takes ints, floats and strings, not {type(p).__name__}: {p!r}")
    digest = hashlib.blake2b("\x1f".join(tokens).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> (64 - SEED_BITS)


def torch_generator(*parts: object, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` seeded from ``derive_seed(*parts)``; never touches the global RNG."""
    g = torch.Generator(device=device)
    g.manual_seed(derive_seed(*parts))
    return g


def numpy_rng(*parts: object) -> np.random.Generator:
    return np.random.default_rng(derive_seed(*parts))
