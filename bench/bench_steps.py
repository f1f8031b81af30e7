"""Step economy of the spectrum (issue 13): which scheduler and step count keep fidelity for fewer
denoiser evaluations? Judged without the embedded CLIP.

For each scheduler (DDIM, DPM-Solver++ 2M, UniPC, Euler) and each T, the benchmark generates a
spectrum of the fmnist-lt demo's hard images (configs/fmnist-lt.yaml: the ``class_frequency``
miner's hard set, the demo's guidance and base seed; the six levels λ = 0 … 0.9 of
bench/spectrum_grid.py; the real ``EmbeddedGenerator`` with
``generation.scheduler``) and measures per λ, with ``discl.evaluation.fidelity`` (model-free):

- ``evals``: UNet evaluations per image (rows the denoiser ran, counted with a forward hook: both
  classifier-free-guidance branches), and ``img_s``: images per second of generation;
- ``ssim`` / ``psnr``: mean SSIM and PSNR (dB) of each variant to its source;
- ``mmd2``: unbiased raw-pixel MMD² (RBF, one bandwidth for every row: the median heuristic on the
  real test images) to real fmnist-lt test images of the hard classes; must fall as λ rises;
- ``acc`` (λ = 0 only): accuracy of a small CNN trained on balanced real data (the clean prior pool,
  ``discl.generation.prior_eval``) on the λ = 0 variants, and ``acc_ratio`` to its accuracy on real
  test images of those classes.

Each setting's summary line: total UNet evaluations per hard image over all levels and seeds, and
the mean |Δ| of SSIM / MMD² against DDIM at the demo's T (the reference setting).

    OMP_NUM_THREADS=1 .venv/bin/python bench/bench_steps.py [--steps 8 12 16 25 50] \\
        [--schedulers ddim dpm++2m unipc euler dpm++2m-thr unipc-thr] [--limit N] [--seeds K] [--out FILE]
"""

from __future__ import annotations

import time

import bench_common as bc
import numpy as np
import torch

from discl.evaluation import fidelity as fd

SCHEDULERS = {
    "ddim": ("DDIMScheduler", {}),
    "dpm++2m": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": ("UniPCMultistepScheduler", {}),
    "euler": ("EulerDiscreteScheduler", {}),
    # the prior's DDIM clips each x0 estimate to [-1, 1] (clip_sample, essential under CFG: see
    # discl/generation/prior.py); the multistep solvers' counterpart is thresholding
    "dpm++2m-thr": ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2,
                                                    "thresholding": True, "sample_max_value": 1.0}),
    "unipc-thr": ("UniPCMultistepScheduler", {"thresholding": True, "sample_max_value": 1.0}),
}
DEFAULT = ["ddim", "dpm++2m", "unipc", "euler"]


class RowCounter:
    """Rows the denoiser evaluates (a forward pre-hook; CFG doubles the rows)."""

    def __init__(self, module):
        self.rows = 0
        self._h = module.register_forward_pre_hook(self._hook)

    def _hook(self, module, args):
        self.rows += int(args[0].shape[0])

    def close(self):
        self._h.remove()


def main(argv=None) -> int:
    p = bc.bench_parser(__doc__)
    bc.add_config_argument(p)
    p.add_argument("--steps", type=int, nargs="+", default=[8, 12, 16, 25, 50])
    p.add_argument("--schedulers", nargs="+", default=DEFAULT, choices=list(SCHEDULERS))
    p.add_argument("--prior", default="embedded", help="prior folder (default: the shipped one)")
    bc.add_fidelity_arguments(p)
    bc.add_out_argument(p)
    args = bc.parse(p, argv)

    from discl.generation.base import create_generator
    from discl.generation.config import GenerationConfig
    from discl.generation.prior_eval import accuracy

    t_all = time.perf_counter()
    f = bc.fidelity_setup(args, "bench-steps-test")
    g, hard, classes, src, real_feat, bw = f.cfg.generation, f.hard, f.classes, f.src, f.real_feat, f.bandwidth
    clf, real_acc = f.classifier, f.real_accuracy
    seeds = args.seeds or g.seeds_per_level
    src_rep = np.repeat(src, seeds, axis=0)
    lab_rep = torch.as_tensor(np.repeat(hard["label"].to_numpy(), seeds)).long()

    result = {"config": args.config, "levels": list(g.levels), "guidance_scale": g.guidance_scale, "seeds": seeds,
              "n_hard": len(hard), "hard_classes": classes, "bandwidth": bw, "real_accuracy": real_acc,
              "threads": args.threads, "settings": {}}
    print(f"hard images: {len(hard)} of classes {classes}; {seeds} seeds x {len(g.levels)} levels, guidance "
          f"{g.guidance_scale}; classifier accuracy on real test images of those classes {real_acc:.3f}")
    print(f"{'setting':<14} {'evals/img':>9} {'img/s':>6} {'acc0':>5} " +
          " ".join(f"{'ssim' + format(lam, '.1f'):>8} {'mmd' + format(lam, '.1f'):>7}" for lam in g.levels))
    for name in args.schedulers:
        cls, kwargs = SCHEDULERS[name]
        for steps in args.steps:
            gen = create_generator(GenerationConfig(backend="embedded", model=args.prior, steps=steps,
                                                    guidance_scale=g.guidance_scale, batch_size=g.batch_size,
                                                    scheduler=cls, scheduler_kwargs=kwargs,
                                                    condition_style=g.condition_style))
            counter = RowCounter(gen.denoiser)
            rows, seconds, images = {}, 0.0, 0
            for lam in g.levels:
                counter.rows = 0
                t0 = time.perf_counter()
                x = bc.generate(gen, g, hard, src, lam, seeds, steps)
                dt = time.perf_counter() - t0
                seconds, images = seconds + dt, images + len(x)
                row = {"evals_per_image": counter.rows / len(x), "seconds": round(dt, 2),
                       "ssim": fd.ssim(x, src_rep), "psnr": fd.psnr(x, src_rep),
                       "mmd2": fd.mmd2_rbf(fd.flatten_pixels(x), real_feat, bandwidth=bw)}
                if lam == 0.0:
                    row["acc"] = accuracy(clf, torch.from_numpy(x)[:, None], lab_rep)
                    row["acc_ratio"] = row["acc"] / real_acc
                if seeds > 1:  # each seed's variants alone (x is source-major, seed minor): the noise scale
                    row["by_seed"] = {
                        "ssim": [fd.ssim(x[k::seeds], src) for k in range(seeds)],
                        "mmd2": [fd.mmd2_rbf(fd.flatten_pixels(x[k::seeds]), real_feat, bandwidth=bw)
                                 for k in range(seeds)]}
                    if lam == 0.0:
                        row["by_seed"]["acc"] = [accuracy(clf, torch.from_numpy(x[k::seeds])[:, None], lab_rep[k::seeds])
                                                 for k in range(seeds)]
                rows[f"{lam:.1f}"] = row
            counter.close()
            key = f"{name}-T{steps}"
            evals = sum(r["evals_per_image"] for r in rows.values()) * seeds
            result["settings"][key] = {"scheduler": cls, "scheduler_kwargs": kwargs, "steps": steps, "rows": rows,
                                       "evals_per_hard_image": evals, "images_per_second": images / seconds}
            acc0 = rows.get("0.0", {}).get("acc", float("nan"))
            print(f"{key:<14} {evals:>9.0f} {images / seconds:>6.1f} {acc0:>5.2f} " +
                  " ".join(f"{rows[f'{lam:.1f}']['ssim']:>8.3f} {rows[f'{lam:.1f}']['mmd2']:>7.4f}" for lam in g.levels),
                  flush=True)
    ref = f"ddim-T{g.steps}"
    if ref in result["settings"]:
        base = result["settings"][ref]["rows"]
        for s in result["settings"].values():
            s["vs_ddim_demo"] = {
                "ssim_mean_abs_diff": float(np.mean([abs(s["rows"][k]["ssim"] - base[k]["ssim"]) for k in base])),
                "mmd2_mean_abs_diff": float(np.mean([abs(s["rows"][k]["mmd2"] - base[k]["mmd2"]) for k in base]))}
    result["seconds"] = round(time.perf_counter() - t_all, 1)
    bc.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
