"""Spectrum generation throughput: the batched path vs one pipeline call per (image, lambda, seed).

Both paths run in this process on the same jobs, for the embedded prior (shipped weights) and for a
tiny Stable Diffusion img2img pipeline built in code. The batched path is the real stage
(``generate_spectrum``: grouping, batching, PNG encoding, atomic writes, progress log); the loop
makes one generator call per image at batch size 1 (the authors' way) and writes the PNG too.
"Model share" = wall time inside the top-level forward passes (denoiser, VAE encoder/decoder,
text encoder) / total wall time, measured with forward hooks.

"Ceiling" bounds what any batching can give on this machine: the denoiser's cost per row at the
loop's batch (2 rows: the CFG pair) divided by its cost per row at the batched path's batch, both
measured here on the same inputs. When the denoiser is compute-bound the ceiling is low, however
little Python the batched path spends. Each path runs ``--repeats`` times (alternating) and the
median is reported.

    .venv/bin/python bench/bench_generation.py [--images 8] [--seeds 4] [--steps 50] [--repeats 3]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from discl.config import RunConfig  # noqa: E402
from discl.generation.base import GenerationBatch, create_generator  # noqa: E402
from discl.generation.config import GenerationConfig  # noqa: E402
from discl.generation.runner import generate_spectrum, plan_spectrum  # noqa: E402

LEVELS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9]


class ForwardTimer:
    """Wall time spent inside the forward passes of the given (non-nested) modules."""

    def __init__(self, modules):
        self.seconds = 0.0
        self._t = {}
        self._hooks = []
        for m in modules:
            self._hooks.append(m.register_forward_pre_hook(self._pre))
            self._hooks.append(m.register_forward_hook(self._post))

    def _pre(self, module, args):
        self._t[id(module)] = time.perf_counter()

    def _post(self, module, args, out):
        self.seconds += time.perf_counter() - self._t.pop(id(module))

    def close(self):
        for h in self._hooks:
            h.remove()


def model_modules(gen):
    if gen.name == "embedded":
        return [gen.prior.unet]
    pipe = gen.pipe
    mods = [pipe.unet, pipe.vae.encoder, pipe.vae.decoder, pipe.vae.quant_conv, pipe.vae.post_quant_conv]
    mods += [m for m in (getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)) if m is not None]
    return [m for m in mods if m is not None]


def run_batched(cfg: RunConfig, ds, gen, run_dir: Path) -> tuple[float, float, int]:
    timer = ForwardTimer(model_modules(gen))
    t0 = time.perf_counter()
    rows = generate_spectrum(cfg, run_dir, dataset=ds, generator=gen, progress=False)
    wall = time.perf_counter() - t0
    timer.close()
    return wall, timer.seconds, len(rows)


def run_loop(cfg: RunConfig, ds, gen, hard, out: Path) -> tuple[float, float, int]:
    plan = plan_spectrum(cfg, hard, ds)
    g = cfg.generation
    timer = ForwardTimer(model_modules(gen))
    t0 = time.perf_counter()
    for r in plan.itertuples(index=False):
        (img,) = gen.generate(GenerationBatch(
            sources=[ds.image(r.sample_id)], source_keys=[r.sample_id], labels=[int(r.label)], prompts=[r.prompt],
            seeds=[int(r.seed)], strength=float(r.strength), steps=g.steps, guidance_scale=g.guidance_scale))
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        path = out / r.file_name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
    wall = time.perf_counter() - t0
    timer.close()
    return wall, timer.seconds, len(plan)


def denoiser_ceiling(gen, rows: int, repeats: int = 3) -> tuple[float, float, float]:
    """(ms per row at batch 2, ms per row at ``rows``, ratio) of one denoiser forward on random inputs."""
    if gen.name == "embedded":
        unet = gen.prior.unet

        def call(b):
            return unet(torch.randn(b, 1, gen.prior.resolution, gen.prior.resolution), torch.tensor(500),
                        class_labels=torch.zeros(b, dtype=torch.long))
    else:
        unet = gen.pipe.unet
        side = gen.longest // gen.vae_scale
        ctx = unet.config.cross_attention_dim

        def call(b):
            return unet(torch.randn(b, unet.config.in_channels, side, side), torch.tensor(500),
                        torch.randn(b, 77, ctx))

    def per_row(b):
        times = []
        with torch.inference_mode():
            call(b)
            n = max(2, 256 // b)
            for _ in range(repeats):
                t0 = time.perf_counter()
                for _ in range(n):
                    call(b)
                times.append((time.perf_counter() - t0) / (n * b))
        return statistics.median(times) * 1000

    small, large = per_row(2), per_row(rows)
    return small, large, small / large


def bench(name: str, cfg: RunConfig, ds, hard, tmp: Path, repeats: int) -> dict:
    from generation_fixtures import write_hard_csv

    gen = create_generator(cfg.generation)
    batched, loop = [], []
    n = 0
    for r in range(repeats):  # alternate so a slow spell on a shared machine hits both paths
        run_dir = tmp / f"{name}-batched-{r}"
        write_hard_csv(run_dir, ds, ids=list(hard["sample_id"]))
        bw, bf, n = run_batched(cfg, ds, gen, run_dir)
        lw, lf, n2 = run_loop(cfg, ds, gen, hard, tmp / f"{name}-loop-{r}")
        assert n == n2
        batched.append((bw, bf))
        loop.append((lw, lf))
    bw, bf = sorted(batched)[len(batched) // 2]
    lw, lf = sorted(loop)[len(loop) // 2]
    small, large, ceiling = denoiser_ceiling(gen, 2 * cfg.generation.batch_size)
    res = {"backend": name, "images": n, "batched_img_s": n / bw, "loop_img_s": n / lw, "speedup": lw / bw,
           "batched_model_share": bf / bw, "loop_model_share": lf / lw, "batched_s": bw, "loop_s": lw,
           "ceiling": ceiling, "row_ms_batch2": small, "row_ms_batched": large,
           "speedups": [lwr / bwr for (bwr, _), (lwr, _) in zip(batched, loop)]}
    print(f"{name:14s} images={n:4d}  batched {n / bw:7.1f} img/s ({bw:6.1f}s, model share {bf / bw:5.1%})  "
          f"loop {n / lw:6.1f} img/s ({lw:6.1f}s, model share {lf / lw:5.1%})  speedup {lw / bw:4.1f}x "
          f"(runs: {', '.join(f'{x:.1f}' for x in res['speedups'])})  denoiser ms/row {small:.2f} at batch 2, "
          f"{large:.2f} at batch {2 * cfg.generation.batch_size}: ceiling {ceiling:.1f}x", flush=True)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8, help="hard images")
    p.add_argument("--seeds", type=int, default=4, help="seeds per level")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sd-steps", type=int, default=20)
    p.add_argument("--sd-images", type=int, default=4)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeats", type=int, default=3, help="runs of each path; the median is reported")
    p.add_argument("--skip", nargs="*", default=[], choices=["embedded", "sd"])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    from generation_fixtures import build_tiny_sd

    from discl.data.tasks import build_task

    ds = build_task("fmnist-lt", seed=0, test_limit=10)
    train = ds.split("train")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        print(f"threads={args.threads} levels={LEVELS} seeds/level={args.seeds}")
        if "embedded" not in args.skip:
            hard = train.groupby("label").head(1).head(args.images)[["sample_id", "label", "class_name"]]
            cfg = RunConfig(name="bench", run_dir=str(tmp / "x"), generation=GenerationConfig(
                backend="embedded", levels=LEVELS, seeds_per_level=args.seeds, steps=args.steps, guidance_scale=2.0,
                batch_size=args.batch_size))
            bench("embedded", cfg, ds, hard, tmp, args.repeats)
        if "sd" not in args.skip:
            model = build_tiny_sd(tmp / "tiny-sd")
            hard = train.groupby("label").head(1).head(args.sd_images)[["sample_id", "label", "class_name"]]
            cfg = RunConfig(name="bench", run_dir=str(tmp / "x"), generation=GenerationConfig(
                backend="diffusers", model=str(model), levels=LEVELS, seeds_per_level=args.seeds,
                steps=args.sd_steps, guidance_scale=7.5, resolution=64, batch_size=args.batch_size))
            bench("tiny-sd-64px", cfg, ds, hard, tmp, args.repeats)


if __name__ == "__main__":
    main()
