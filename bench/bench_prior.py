"""How faithful is the embedded prior's spectrum? Judged without the embedded CLIP.

For each prior given with ``--prior``, the benchmark generates a spectrum of the fmnist-lt demo's
hard images (configs/fmnist-lt.yaml: the ``class_frequency`` miner's hard set, the demo's steps,
guidance scale and base seed; the six levels λ = 0 … 0.9 with 4 seeds each of bench/spectrum_grid.py;
the real ``EmbeddedGenerator`` backend, so resizes and seeds are the ones the demo uses) and
measures, per λ, with ``discl.evaluation.fidelity`` (model-free):

- ``ssim`` / ``psnr``: mean SSIM (Gaussian window) and mean PSNR (dB) of each variant to its source;
- ``hf``: high-frequency energy (mean squared Laplacian, 0..1 intensities), with the real hard
  sources' and real test images' values as references (``hf_ratio`` = variants / hard sources);
- ``mmd2`` [``lo``, ``hi``]: unbiased raw-pixel MMD² (RBF kernel) to real fmnist-lt *test* images of
  the hard classes, with a 95 % bootstrap interval; one bandwidth for every row of every prior (the
  median heuristic on the real test set), so rows and priors are comparable. The real hard sources
  themselves give the λ = 1 row;
- ``acc``: accuracy of a small CNN trained on balanced real data (the clean prior pool,
  ``discl.generation.prior_eval``) on the variants, against its accuracy on real (clean) test
  images of the same classes (``acc_ratio``).

A ``roundtrip`` row per prior sends the sources through the prior's resolution and back with no
denoising: the ceiling of any variant's fidelity at that resolution.

Targets (issue 14): at λ = 0.9 SSIM ≥ 0.85, PSNR ≥ 28 dB and HF within 25 % of real; MMD² falling
monotonically from λ = 0 to 0.9; λ = 0 accuracy ≥ 90 % of the real-image accuracy.

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_prior.py --prior old=git:HEAD~1 --prior new=embedded \\
        [--config configs/fmnist-lt.yaml] [--test-per-class 300] [--out bench_prior.json]

``--prior`` takes ``NAME=FOLDER``, ``NAME=embedded`` (the shipped prior) or ``NAME=git:REV`` (the
prior shipped at that git revision, extracted to a temporary folder).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from bench_common import (
    add_config_argument,
    add_fidelity_arguments,
    add_out_argument,
    bench_parser,
    fidelity_setup,
    generate,
    parse,
    resolve_prior,
    spectrum_measures,
    write_result,
)

from discl.evaluation import fidelity as fd


def main(argv=None) -> int:
    p = bench_parser(__doc__)
    p.add_argument("--prior", action="append", required=True, help="NAME=FOLDER | NAME=embedded | NAME=git:REV")
    add_config_argument(p)
    p.add_argument("--boot", type=int, default=200, help="bootstrap replicates of the MMD² interval")
    add_fidelity_arguments(p)
    add_out_argument(p)
    args = parse(p, argv)

    from discl.generation.base import create_generator
    from discl.generation.config import GenerationConfig
    from discl.generation.prior import from_model_space, load_prior, to_model_space
    from discl.generation.prior_eval import accuracy

    t_all = time.perf_counter()
    f = fidelity_setup(args, "bench-prior-test")
    g, hard, classes, src, real_test, real_feat, bw = f.cfg.generation, f.hard, f.classes, f.src, f.real_test, f.real_feat, f.bandwidth
    clf, real_acc, clf_s = f.classifier, f.real_accuracy, f.classifier_seconds
    if args.seeds:
        g.seeds_per_level = args.seeds
    src_rep = np.repeat(src, g.seeds_per_level, axis=0)
    lab_rep = torch.as_tensor(np.repeat(hard["label"].to_numpy(), g.seeds_per_level)).long()

    def mmd(x):
        return fd.mmd2_interval(fd.flatten_pixels(x), real_feat, bandwidth=bw, n_boot=args.boot, seed=0)

    ref = {"hf_sources": fd.hf_energy(src), "hf_test": fd.hf_energy(real_test), "mmd2_sources": mmd(src),
           "real_clean_test_accuracy": real_acc,
           "sources_accuracy": accuracy(clf, torch.from_numpy(src)[:, None], torch.as_tensor(hard["label"].to_numpy()))}
    result = {"config": args.config, "levels": list(g.levels), "steps": g.steps, "guidance_scale": g.guidance_scale,
              "seeds_per_level": g.seeds_per_level, "n_hard": len(hard), "hard_classes": classes,
              "n_real_test": len(real_test), "bandwidth": bw, "classifier_seconds": round(clf_s, 1),
              "reference": ref, "priors": {}}
    print(f"hard images: {len(hard)} of classes {classes}; {g.seeds_per_level} seeds x {len(g.levels)} levels, "
          f"{g.steps} steps, guidance {g.guidance_scale}; real test images of those classes: {len(real_test)}")
    print(f"real: HF sources {ref['hf_sources']:.4f}, HF test {ref['hf_test']:.4f}, MMD² sources->test "
          f"{ref['mmd2_sources']['mmd2']:.4f}; classifier accuracy on clean test of those classes {real_acc:.3f}")

    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.prior:
            name, folder = resolve_prior(spec, Path(tmp))
            prior = load_prior(folder)
            r = prior.resolution
            rt = from_model_space(to_model_space(torch.from_numpy(src)[:, None], r), (28, 28))[:, 0].numpy()
            rows = {"roundtrip": {"ssim": fd.ssim(rt, src), "psnr": fd.psnr(rt, src), "hf": fd.hf_energy(rt)}}
            gen = create_generator(GenerationConfig(backend="embedded", model=folder, steps=g.steps,
                                                    guidance_scale=g.guidance_scale, condition_style=g.condition_style))
            t1, c1 = time.perf_counter(), time.process_time()
            for lam in g.levels:
                t2 = time.perf_counter()
                c2 = time.process_time()
                x = generate(gen, g, hard, src, lam, g.seeds_per_level, g.steps_at(lam), g.text_to_image_at_zero)
                gen_cpu = time.process_time() - c2
                acc = accuracy(clf, torch.from_numpy(x)[:, None], lab_rep)
                row = spectrum_measures(x, src_rep, real_feat, bw, args.boot, g.seeds_per_level)
                rows[f"{lam:.1f}"] = {
                    **row, "hf_ratio": row["hf"] / ref["hf_sources"], "acc": acc, "acc_ratio": acc / real_acc,
                    "seconds": round(time.perf_counter() - t2, 1), "generate_cpu_seconds": round(gen_cpu, 1)}
            result["priors"][name] = {"where": spec, "resolution": r, "rows": rows,
                                      "generation_seconds": round(time.perf_counter() - t1, 1),
                                      "generation_cpu_seconds": round(time.process_time() - c1, 1),
                                      "generate_only_cpu_seconds": round(sum(
                                          v.get("generate_cpu_seconds", 0) for v in rows.values()), 1),
                                      "targets": targets(rows, g.levels)}
            print_prior(name, spec, r, rows, result["priors"][name]["targets"])
            print(f"spectrum + measures: {result['priors'][name]['generation_seconds']} s wall, "
                  f"{result['priors'][name]['generation_cpu_seconds']} s CPU ({args.threads} thread), of which "
                  f"generating the images {result['priors'][name]['generate_only_cpu_seconds']} s CPU", flush=True)
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    write_result(args.out, result)
    return 0


def targets(rows: dict, levels) -> dict:
    missing = [k for k in ("0.0", "0.9") if k not in rows]
    if missing:
        raise SystemExit(f"the targets are set at λ = 0 and 0.9; no rows for λ = {', '.join(missing)} (levels {list(levels)})")
    top, low = rows["0.9"], rows["0.0"]
    mm = [rows[f"{lam:.1f}"]["mmd2"] for lam in sorted(levels)]
    return {
        "ssim_0.9>=0.85": top["ssim"] >= 0.85,
        "psnr_0.9>=28": top["psnr"] >= 28.0,
        "hf_0.9_within_25%": abs(top["hf_ratio"] - 1) <= 0.25,
        "mmd2_monotone_falling": all(b < a for a, b in zip(mm, mm[1:])),
        "acc_0.0>=0.9_real": low["acc_ratio"] >= 0.9,
    }


def print_prior(name, spec, r, rows, tg) -> None:
    print(f"\n== {name} ({spec}, {r} px)")
    print(f"{'lambda':>9} {'SSIM':>6} {'PSNR':>6} {'HF':>7} {'HF/real':>7} {'MMD2 [95% CI]':>26} {'acc':>6} "
          f"{'acc/real':>8} {'s':>6}")
    for key, v in rows.items():
        if key == "roundtrip":
            print(f"{key:>9} {v['ssim']:6.3f} {v['psnr']:6.2f} {v['hf']:7.4f}")
            continue
        print(f"{key:>9} {v['ssim']:6.3f} {v['psnr']:6.2f} {v['hf']:7.4f} {v['hf_ratio']:7.2f} "
              f"{v['mmd2']:8.4f} [{v['mmd2_lo']:7.4f}, {v['mmd2_hi']:7.4f}] {v['acc']:6.3f} {v['acc_ratio']:8.2f} "
              f"{v['seconds']:6.1f}")
    print("targets: " + ", ".join(f"{k} {'MET' if ok else 'NOT met'}" for k, ok in tg.items()))


if __name__ == "__main__":
    sys.exit(main())
