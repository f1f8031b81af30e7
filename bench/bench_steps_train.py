"""Step economy, the accuracy half (issue 13): does DisCL trained on a cheaper spectrum lose accuracy?

For each setting (a ``bench_steps`` scheduler name and a step count, e.g. ``ddim-T25`` = today's
demo, ``ddim-T12``, ``unipc-thr-T8``) the benchmark runs ``discl run`` on the demo config with
``methods=[discl]`` and the given training seeds into its own run folder
(``<run-root>/<setting>``), overriding only ``generation.steps`` (and ``generation.scheduler`` /
``scheduler_kwargs`` for a non-DDIM setting; ``ddim`` keeps the config's default scheduler, the
prior's own DDIM). Mining, data and the generation seeds are the same in every folder, so two
settings trained with the same training seed differ only by the spectrum; the paired difference
``setting − reference`` per seed removes the seed-to-seed variance they share. For test overall and
few-shot accuracy it reports the mean paired difference and its 95 % Student-t interval over the
seeds (``discl.evaluation.stats`` when present, else the same interval with scipy), plus the UNet
evaluations the run's spectrum cost (``spectrum/metadata.csv``: Σ denoise steps × 2 under CFG).

Reruns skip finished stages (each run folder is an ordinary ``discl run`` folder).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_steps_train.py \\
        --settings ddim-T25 ddim-T12 unipc-thr-T8 --seeds 0 1 2 [--run-root runs/steps] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_steps import SCHEDULERS  # noqa: E402

METRICS = {"overall": "test.top1", "few": "test.few"}


def setting_overrides(setting: str) -> list[str]:
    """``<scheduler>-T<steps>`` -> config overrides (``ddim`` = the config's default scheduler)."""
    m = re.fullmatch(r"(.+)-T(\d+)", setting)
    if not m or m.group(1) not in SCHEDULERS:
        raise SystemExit(f"setting {setting!r} must be <scheduler>-T<steps> with a scheduler in {sorted(SCHEDULERS)}")
    name, steps = m.group(1), int(m.group(2))
    out = [f"generation.steps={steps}"]
    if name != "ddim":
        cls, kwargs = SCHEDULERS[name]
        out += [f"generation.scheduler={cls}", f"generation.scheduler_kwargs={json.dumps(kwargs)}"]
    return out


def interval(diffs: list[float]) -> dict:
    """Mean paired difference and its 95 % t interval."""
    try:
        from discl.evaluation.stats import paired_interval
    except ImportError:
        paired_interval = None
    if paired_interval is not None:
        iv = paired_interval(diffs)
        return {"mean": iv.mean, "low": iv.low, "high": iv.high, "n": iv.n, "source": "discl.evaluation.stats"}
    from scipy import stats

    d = np.asarray(diffs, dtype=float)
    n, mean = len(d), float(d.mean())
    half = float(stats.t.ppf(0.975, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "low": mean - half, "high": mean + half, "n": n, "source": "scipy t"}


def spectrum_evals(run_dir: Path) -> tuple[int, int]:
    """(UNet evaluations spent on the whole spectrum, hard images) from the run's manifest."""
    import pandas as pd

    man = pd.read_csv(run_dir / "spectrum" / "metadata.csv")
    cfg_factor = np.where(man["guidance_scale"].astype(float) > 1.0, 2, 1)
    return int((man["denoise_steps"].astype(int) * cfg_factor).sum()), int(man["source_sample_id"].nunique())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--config", default=str(ROOT / "configs" / "fmnist-lt.yaml"))
    p.add_argument("--settings", nargs="+", default=["ddim-T25", "ddim-T12", "unipc-thr-T8"])
    p.add_argument("--reference", default=None, help="the setting others are paired against (default: the first)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--run-root", default=str(ROOT / "runs" / "steps"))
    p.add_argument("--collect-only", action="store_true", help="do not run, only read the run folders")
    p.add_argument("--out", default=None, help="JSON file for every figure")
    p.add_argument("overrides", nargs="*", help="further config overrides for every setting")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    from discl.config import load_config
    from discl.pipeline import collect_results, run

    ref = args.reference or args.settings[0]
    seeds = "[" + ", ".join(map(str, args.seeds)) + "]"
    result = {"config": args.config, "seeds": args.seeds, "reference": ref, "settings": {}}
    for setting in args.settings:
        cfg = load_config(args.config, [f"name=steps-{setting}", "methods=[discl]", f"seeds={seeds}",
                                        *setting_overrides(setting), *args.overrides])
        run_dir = Path(args.run_root) / setting
        t0 = time.perf_counter()
        if not args.collect_only:
            run(cfg, run_dir)
        wall = time.perf_counter() - t0
        res = collect_results(cfg, run_dir)
        evals, n_hard = spectrum_evals(run_dir)
        per_seed = {int(r["seed"]): {k: float(r[c]) for k, c in METRICS.items()} for _, r in res.iterrows()}
        pool = sorted({int(v) for v in res["pool_synthetic"]}) if "pool_synthetic" in res.columns else []
        result["settings"][setting] = {"overrides": setting_overrides(setting), "run_dir": str(run_dir),
                                       "spectrum_evals": evals, "hard_images": n_hard,
                                       "seeds_per_level": cfg.generation.seeds_per_level,
                                       "pool_synthetic": pool,  # synthetic images the filter left to train on
                                       "wall_seconds": round(wall, 1), "per_seed": per_seed}
        print(f"{setting}: {evals} UNet evaluations, " + ", ".join(
            f"s{s}: overall {v['overall']:.3f} few {v['few']:.3f}" for s, v in sorted(per_seed.items())), flush=True)

    base = result["settings"][ref]
    print(f"\npaired difference vs {ref} (points of %, 95 % t interval over seeds)")
    for setting, s in result["settings"].items():
        s["evals_ratio"] = s["spectrum_evals"] / base["spectrum_evals"]
        s["mean"] = {k: float(np.mean([v[k] for v in s["per_seed"].values()])) for k in METRICS}
        if setting == ref:
            continue
        common = sorted(set(s["per_seed"]) & set(base["per_seed"]))
        s["paired"] = {k: interval([s["per_seed"][i][k] - base["per_seed"][i][k] for i in common]) for k in METRICS}
        print(f"{setting:<16} evals x{s['evals_ratio']:.2f}  " + "  ".join(
            f"{k} {iv['mean'] * 100:+.1f} [{iv['low'] * 100:+.1f}, {iv['high'] * 100:+.1f}] n={iv['n']}"
            for k, iv in s["paired"].items()))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=2))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
