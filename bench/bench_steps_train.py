"""Step economy, the accuracy half (issue 13): does DisCL trained on a cheaper spectrum lose accuracy?

For each setting (a ``bench_steps`` scheduler name and a step count, e.g. ``ddim-T25``,
``ddim-T12``, ``unipc-thr-T8``) the benchmark runs ``discl run`` on the demo config with
``methods=[discl]`` (``--method bs+discl``: another synthetic method) and the given training seeds
into its own run folder (``<run-root>/<setting>``), overriding only ``generation.steps`` (and
``generation.scheduler`` / ``scheduler_kwargs`` for a non-DDIM setting; ``ddim`` keeps the config's default scheduler, the
prior's own DDIM). Mining, data and the generation seeds are the same in every folder, so two
settings trained with the same training seed differ only by the spectrum; the paired difference
``setting − reference`` per seed removes the seed-to-seed variance they share. For test overall and
few-shot accuracy it reports the mean paired difference and its 95 % Student-t interval over the
seeds (``discl.evaluation.stats`` when present, else the same interval with scipy), plus the UNet
evaluations the run's spectrum cost (``spectrum/metadata.csv``: Σ denoise steps × 2 under CFG).

A setting may also change *how many* variants are made: ``-six`` generates the six levels of the
demo's spectrum view (λ = 0, 0.1, 0.3, 0.5, 0.7, 0.9), ``-trained`` only the levels the configured
curriculum trains on (``curriculum.levels``), and ``-k<n>`` makes ``n`` seeds per level (e.g.
``ddim-T25-six-k4`` = the demo before issue 13, ``ddim-T25-trained-k3``). The generation seeds are
per (image, λ, k), so such a setting's variants are the same images as a larger setting's with the
same scheduler and steps (unless a different batch make-up changes float rounding); for such pairs the
bench counts how many of the shared variants are byte-identical (``shared_variants``).

With ``--data-seeds`` each ``data.seed`` gets its own folder (``<setting>-d<data seed>``; data seed 0
keeps ``<setting>``, as in ``bench/results.py``) and the pairs are (data seed, training seed).

Reruns skip finished stages (each run folder is an ordinary ``discl run`` folder).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_steps_train.py \\
        --settings ddim-T25 ddim-T12 unipc-thr-T8 --seeds 0 1 2 [--run-root runs/steps] [--out FILE.json]
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from pathlib import Path

import numpy as np
from bench_common import ROOT, add_config_argument, add_out_argument, bench_parser, write_result
from bench_steps import SCHEDULERS
from spectrum_grid import SIX_LEVELS

METRICS = {"overall": "test.top1", "few": "test.few"}


SETTING = re.compile(r"(.+?)-T(\d+)(-six|-trained)?(?:-k(\d+))?")  # scheduler, steps, level set, seeds per level


def sampler(setting: str) -> str:
    """``<scheduler>-T<steps>`` of a setting: two settings with the same sampler make the same image per row."""
    m = SETTING.fullmatch(setting)
    return f"{m.group(1)}-T{m.group(2)}" if m else setting


def setting_overrides(setting: str, trained_levels: list[float] | None = None) -> list[str]:
    """``<scheduler>-T<steps>[-six|-trained][-k<seeds per level>]`` -> config overrides (``ddim`` = the
    config's default scheduler; ``-trained`` = ``trained_levels``, the config's curriculum levels)."""
    m = SETTING.fullmatch(setting)
    if not m or m.group(1) not in SCHEDULERS:
        raise SystemExit(f"setting {setting!r} must be <scheduler>-T<steps>[-six|-trained][-k<n>] with a scheduler "
                         f"in {sorted(SCHEDULERS)}")
    name, steps, levels, seeds = m.group(1), int(m.group(2)), m.group(3), m.group(4)
    out = [f"generation.steps={steps}", "generation.steps_per_level={}"]  # T steps at every level
    if name != "ddim":
        cls, kwargs = SCHEDULERS[name]
        out += [f"generation.scheduler={cls}", f"generation.scheduler_kwargs={json.dumps(kwargs)}"]
    if levels == "-six":
        out.append(f"generation.levels={SIX_LEVELS}")
    elif levels == "-trained":
        if not trained_levels:
            raise SystemExit(f"setting {setting!r}: the config has no curriculum.levels to generate")
        synthetic = [float(v) for v in trained_levels if float(v) < 1.0]  # 1.0 = the real images (adaptive)
        out.append(f"generation.levels={synthetic}")
    if seeds is not None:
        if int(seeds) < 1:
            raise SystemExit(f"setting {setting!r}: -k needs at least 1 seed per level")
        out.append(f"generation.seeds_per_level={int(seeds)}")
    return out


def shared_variants(run_a: Path, run_b: Path) -> dict:
    """The spectrum images two runs both made (the same manifest row: file, seed, steps, prompt, guidance)
    and how many of them are byte-identical. Meaningful for two settings with the same scheduler and
    steps that differ in levels or seeds only (see the module's doc)."""
    import pandas as pd

    key = ["file_name", "seed", "steps", "denoise_steps", "prompt", "guidance_scale"]
    a, b = (pd.read_csv(Path(r) / "spectrum" / "metadata.csv", usecols=key, dtype=str) for r in (run_a, run_b))
    both = a.merge(b, on=key)
    same = sum((Path(run_a) / "spectrum" / f).read_bytes() == (Path(run_b) / "spectrum" / f).read_bytes()
               for f in both["file_name"])
    return {"shared": int(len(both)), "byte_identical": int(same)}


def describe(intervals: dict) -> str:
    """``overall +0.1 [-0.2, +0.4] n=16  few ...`` in points of %."""
    return "  ".join(f"{k} {iv['mean'] * 100:+.1f} [{iv['low'] * 100:+.1f}, {iv['high'] * 100:+.1f}] n={iv['n']}"
                     for k, iv in intervals.items())


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
    p = bench_parser(__doc__)
    add_config_argument(p)
    p.add_argument("--settings", nargs="+", default=["ddim-T25", "ddim-T12", "unipc-thr-T8"])
    p.add_argument("--reference", default=None, help="the setting others are paired against (default: the first)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--method", default="discl", help="the synthetic method to train and compare (e.g. bs+discl)")
    p.add_argument("--control", default=None,
                   help="a no-synthetic control trained in the reference's folders (e.g. bs+real_only): each setting "
                        "is also paired against it, the spectrum's own effect at that setting")
    p.add_argument("--data-seeds", type=int, nargs="+", default=[0],
                   help="data.seed values; each gets its own run folder, pairs are (data seed, training seed)")
    p.add_argument("--run-root", default=str(ROOT / "runs" / "steps"))
    p.add_argument("--collect-only", action="store_true", help="do not run, only read the run folders")
    add_out_argument(p)
    p.add_argument("overrides", nargs="*", help="further config overrides for every setting")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")

    from discl.config import load_config
    from discl.evaluation.results import collect_results
    from discl.pipeline import run

    ref = args.reference or args.settings[0]
    seeds = "[" + ", ".join(map(str, args.seeds)) + "]"
    trained = load_config(args.config, list(args.overrides)).curriculum.levels
    result = {"config": args.config, "method": args.method, "control": args.control, "seeds": args.seeds,
              "data_seeds": args.data_seeds, "reference": ref, "settings": {}}
    for setting in args.settings:
        overrides = setting_overrides(setting, trained)
        entry = {"overrides": overrides, "run_dirs": {}, "spectrum_evals": 0, "hard_images": 0,
                 "pool_synthetic": [], "wall_seconds": 0.0, "per_seed": {}}
        for ds in args.data_seeds:
            methods = [args.method] + ([args.control] if args.control and setting == ref else [])
            cfg = load_config(args.config, [f"name=steps-{setting}", f"methods=[{', '.join(methods)}]", f"seeds={seeds}",
                                            *overrides, *args.overrides, f"data.seed={ds}"])
            run_dir = Path(args.run_root) / (setting if ds == 0 else f"{setting}-d{ds}")
            t0 = time.perf_counter()
            if not args.collect_only:
                run(cfg, run_dir)
            entry["wall_seconds"] += round(time.perf_counter() - t0, 1)
            res = collect_results(cfg, run_dir)
            if args.control and setting == ref:
                ctl = res[(res["method"] == args.control) & (res.get("status", "ok") == "ok")]
                result.setdefault("control_per_seed", {}).update(
                    {f"d{ds}-s{int(r['seed'])}": {k: float(r[c]) for k, c in METRICS.items()} for _, r in ctl.iterrows()})
            res = res[res["method"] == args.method]  # not the baseline a curriculum run starts from (init_from)
            if "status" in res.columns and (res["status"] != "ok").any():
                bad = res[res["status"] != "ok"]
                raise SystemExit(f"{run_dir}: no finished {args.method} run of this config for seeds {bad['seed'].tolist()}")
            evals, n_hard = spectrum_evals(run_dir)
            entry["run_dirs"][ds] = str(run_dir)
            entry["spectrum_evals"] += evals
            entry["hard_images"] += n_hard
            entry["seeds_per_level"] = cfg.generation.seeds_per_level
            entry["levels"] = [float(v) for v in cfg.generation.levels]
            for _, r in res.iterrows():
                entry["per_seed"][f"d{ds}-s{int(r['seed'])}"] = {k: float(r[c]) for k, c in METRICS.items()}
            if "pool_synthetic" in res.columns:  # synthetic images the filter left to train on
                entry["pool_synthetic"] = sorted(set(entry["pool_synthetic"]) | {int(v) for v in res["pool_synthetic"]})
        result["settings"][setting] = entry
        print(f"{setting}: {entry['spectrum_evals']} UNet evaluations, " + ", ".join(
            f"{s}: overall {v['overall']:.3f} few {v['few']:.3f}" for s, v in sorted(entry["per_seed"].items())), flush=True)

    base = result["settings"][ref]
    print(f"\npaired difference vs {ref} (points of %, 95 % t interval over (data seed, training seed) pairs)")
    control = result.get("control_per_seed", {})
    for setting, s in result["settings"].items():
        s["evals_ratio"] = s["spectrum_evals"] / base["spectrum_evals"]
        s["mean"] = {k: float(np.mean([v[k] for v in s["per_seed"].values()])) for k in METRICS}
        if control:
            both = sorted(set(s["per_seed"]) & set(control))
            s["vs_control"] = {k: interval([s["per_seed"][i][k] - control[i][k] for i in both]) for k in METRICS}
            print(f"{setting:<16} vs {args.control}: " + describe(s["vs_control"]))
        if setting == ref:
            continue
        common = sorted(set(s["per_seed"]) & set(base["per_seed"]))
        s["paired"] = {k: interval([s["per_seed"][i][k] - base["per_seed"][i][k] for i in common]) for k in METRICS}
        same_sampler = sampler(setting) == sampler(ref)
        s["shared_variants"] = {ds: shared_variants(Path(base["run_dirs"][ds]), Path(d))
                                for ds, d in s["run_dirs"].items() if ds in base["run_dirs"]} if same_sampler else {}
        print(f"{setting:<16} evals x{s['evals_ratio']:.2f}  " + describe(s["paired"])
            + ("  shared variants byte-identical: " + ", ".join(
                f"d{ds} {v['byte_identical']}/{v['shared']}" for ds, v in s["shared_variants"].items())
               if s["shared_variants"] else ""))
    write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
