"""The spectrum the benchmarks measure on fmnist-lt: six levels, 4 seeds per level.

``configs/fmnist-lt.yaml`` (the demo) generates only what its curriculum trains on (λ = 0.1, 0.3,
0.5, 3 seeds; issue 13). The benchmarks keep the grid their documented figures were measured on: the
ablation rows of ``bench/results.py`` train on λ = 0 (text-only), the fidelity benches judge λ = 0
(class accuracy) and λ = 0.9 (closeness to the source), and every documented run folder's digests
depend on it.
"""

SIX_LEVELS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]
SEEDS_PER_LEVEL = 4


def six_level_overrides(seeds: int = SEEDS_PER_LEVEL) -> list[str]:
    """Config overrides that put the benchmarks' grid back on a config."""
    return [f"generation.levels={SIX_LEVELS}", f"generation.seeds_per_level={int(seeds)}"]
