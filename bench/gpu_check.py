"""A prepared GPU check (at most ~8 minutes on one GPU) that prints one table.

- ``train``: streamed ResNet-50 training at 224 px (torchvision architecture, random weights) on a
  JPEG folder made on the fly, through :func:`discl.training.loop.fit` and the streamed path
  (``training.num_workers`` loader workers, random resized crop, mixed precision): images/s and the
  share of the epoch spent waiting for data (second epoch; the first starts the workers);
- ``img2img``: the SDXL refiner's img2img pipeline (``StableDiffusionXLImg2ImgPipeline``) built with
  random weights from the architecture configs in ``bench/arch/sdxl-refiner/`` (nothing is
  downloaded; text embeddings are passed in, the text encoder's cost is left out), fp16, batch 1 vs
  the configured ``generation.batch_size`` (capped by ``--max-gen-batch``): images/s, peak memory;
- ``flyp``: FLYP fine-tuning steps/s of open_clip ViT-B-16 (random weights) through discl's
  ``ClipClassifier``, at ``--flyp-batch``, mixed precision.

``--tiny`` runs the same code at toy sizes on the CPU (the tests run it).

    .venv/bin/python bench/gpu_check.py              # on a GPU machine
    .venv/bin/python bench/gpu_check.py --tiny       # anywhere, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ARCH = Path(__file__).resolve().parent / "arch" / "sdxl-refiner"


def _device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_gb(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    torch.cuda.synchronize()
    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def _jpeg_folder(root: Path, n: int, side: int, classes: int = 10) -> list[str]:
    """``n`` noisy JPEGs with a class-coloured block (decoding cost is what matters here)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        arr = rng.integers(0, 255, (side, side, 3), dtype=np.uint8)
        c = i % classes
        arr[: side // 3, : side // 3] = (25 * c, 255 - 25 * c, 128)
        p = root / f"c{c}" / f"{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(p, quality=90)
        paths.append(str(p))
    return paths


def check_train(tiny: bool, workers: int, tmp: Path) -> dict:
    from discl.data.streaming import StreamedImages, StreamedSplit
    from discl.training.config import TrainConfig
    from discl.training.loop import fit
    from discl.training.models import create_model

    device = _device()
    n, side, size, batch = (64, 40, 32, 16) if tiny else (3072, 320, 224, 128)
    model_name = "resnet8" if tiny else "torchvision:resnet50"
    paths = _jpeg_folder(tmp / "train", n, side)
    labels = np.arange(n) % 10
    data = StreamedSplit(StreamedImages(paths, labels, size=size, channels=3, mode="random_resized_crop", seed=0),
                         num_workers=workers)
    cfg = TrainConfig(model=model_name, epochs=1 if tiny else 2, batch_size=batch, optimizer="sgd", lr=0.1, num_workers=workers,
                      mixed_precision="no" if device.type == "cpu" else "bf16", select_on="last")
    model = create_model(model_name, 10, 3, size, pretrained=False, seed=0)
    _reset_peak(device)
    res = fit(model, data, None, cfg, num_classes=10, seed=0, progress=False)
    row = res.history[-1]
    return {"check": f"train {model_name} {size}px streamed", "batch": batch, "workers": workers,
            "images_per_s": round(row["train_seen"] / row["train_time_s"], 1),
            "data_wait_share": round(row["data_wait_s"] / row["train_time_s"], 3), "peak_gb": _peak_gb(device)}


def build_refiner(tiny: bool, device: torch.device, dtype: torch.dtype):
    """The SDXL refiner img2img pipeline from the kept architecture configs, random weights."""
    from diffusers import (
        AutoencoderKL,
        EulerDiscreteScheduler,
        StableDiffusionXLImg2ImgPipeline,
        UNet2DConditionModel,
    )

    def load(name):
        cfg = json.loads((ARCH / name).read_text())
        return {k: v for k, v in cfg.items() if not k.startswith("_")}

    if tiny:
        t = load("tiny.json")
        unet_cfg, vae_cfg = t["unet"], t["vae"]
    else:
        unet_cfg, vae_cfg = load("unet.json"), load("vae.json")
    torch.manual_seed(0)
    with torch.device(device):
        unet = UNet2DConditionModel(**unet_cfg)
        vae = AutoencoderKL(**vae_cfg)
    scheduler = EulerDiscreteScheduler(**load("scheduler.json"))
    pipe = StableDiffusionXLImg2ImgPipeline(vae=vae, text_encoder=None, text_encoder_2=None, tokenizer=None,
                                            tokenizer_2=None, unet=unet, scheduler=scheduler,
                                            requires_aesthetics_score=True, force_zeros_for_empty_prompt=True)
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # casting random weights with .to(dtype) is what we mean
    pipe = pipe.to(device=device, dtype=dtype)
    pipe.set_progress_bar_config(disable=True)
    return pipe, unet_cfg["cross_attention_dim"], unet_cfg["projection_class_embeddings_input_dim"] - 5 * unet_cfg["addition_time_embed_dim"]


def check_img2img(tiny: bool, batches: list[int], steps: int, strength: float, image_size: int) -> list[dict]:
    device = _device()
    dtype = torch.float16 if device.type == "cuda" else torch.float32
    pipe, text_dim, pooled_dim = build_refiner(tiny, device, dtype)
    g = torch.Generator("cpu").manual_seed(0)
    rows = []
    for b in batches:
        emb = torch.randn(b, 77 if not tiny else 8, text_dim, generator=g).to(device, dtype)
        pooled = torch.randn(b, pooled_dim, generator=g).to(device, dtype)
        image = torch.rand(b, 3, image_size, image_size, generator=g).to(device, dtype)
        kwargs = dict(image=image, prompt_embeds=emb, pooled_prompt_embeds=pooled, negative_prompt_embeds=torch.zeros_like(emb),
                      negative_pooled_prompt_embeds=torch.zeros_like(pooled), strength=strength, guidance_scale=10.0,
                      output_type="pt", generator=[torch.Generator(device).manual_seed(i) for i in range(b)])
        pipe(num_inference_steps=2, **{**kwargs, "strength": 1.0})  # warm-up (kernels, allocator)
        _reset_peak(device)
        t0 = time.perf_counter()
        out = pipe(num_inference_steps=steps, **kwargs).images
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        assert out.shape == (b, 3, image_size, image_size), out.shape
        rows.append({"check": f"img2img SDXL-refiner{' (tiny)' if tiny else ''} {image_size}px fp16"
                     if device.type == "cuda" else f"img2img SDXL-refiner (tiny) {image_size}px fp32",
                     "batch": b, "steps": f"{steps}x{strength}", "images_per_s": round(b / dt, 3), "peak_gb": _peak_gb(device)})
    del pipe
    return rows


def check_flyp(tiny: bool, batch: int, steps: int, tmp: Path) -> dict:
    from discl.training.clip import create_clip_classifier

    device = _device()
    arch = "ViT-B-16"
    if tiny:
        from discl.filtering.testing import register_tiny_open_clip

        arch = register_tiny_open_clip(tmp / "clip")
    names = [f"class {i}" for i in range(100 if not tiny else 4)]
    model = create_clip_classifier(arch, None, names, seed=0).to(device).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5, weight_decay=0.1)
    size = model.image_size
    g = torch.Generator("cpu").manual_seed(0)
    x = torch.rand(batch, 3, size, size, generator=g).to(device)
    y = torch.randint(len(names), (batch,), generator=g).to(device)
    amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step():
        with amp:
            loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step()
    _reset_peak(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    float(loss.detach())
    dt = time.perf_counter() - t0
    return {"check": f"FLYP {arch}{' (tiny)' if tiny else ''}", "batch": batch, "steps_per_s": round(steps / dt, 2),
            "images_per_s": round(steps * batch / dt, 1), "peak_gb": _peak_gb(device)}


def table(rows: list[dict]) -> str:
    cols = ["check", "batch", "workers", "steps", "images_per_s", "steps_per_s", "data_wait_share", "peak_gb"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiny", action="store_true", help="toy sizes on the CPU (the tests)")
    ap.add_argument("--workers", type=int, default=None, help="loader workers (default: min(8, CPU cores))")
    ap.add_argument("--gen-batch", type=int, default=None,
                    help="configured generation batch (default: configs/imagenet-lt.yaml's generation.batch_size, capped)")
    ap.add_argument("--max-gen-batch", type=int, default=16)
    ap.add_argument("--gen-steps", type=int, default=None, help="default: configs/imagenet-lt.yaml's generation.steps")
    ap.add_argument("--strength", type=float, default=0.7, help="img2img strength (1 - lambda)")
    ap.add_argument("--gen-size", type=int, default=1024)
    ap.add_argument("--flyp-batch", type=int, default=256)
    ap.add_argument("--only", nargs="*", choices=["train", "img2img", "flyp"])
    ap.add_argument("--out", type=Path)
    args = ap.parse_args(argv)
    device = _device()
    if device.type != "cuda" and not args.tiny:
        raise SystemExit("gpu_check needs a CUDA GPU (or --tiny for the CPU smoke run)")
    from discl.config import load_config

    gen = load_config(str(Path(__file__).resolve().parents[1] / "configs" / "imagenet-lt.yaml"), []).generation
    workers = args.workers if args.workers is not None else min(8, os.cpu_count() or 1)
    only = set(args.only or ["train", "img2img", "flyp"])
    rows: list[dict] = []
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if args.tiny:
            workers = min(workers, 2)
            if "train" in only:
                rows.append(check_train(True, workers, Path(tmp)))
            if "img2img" in only:
                rows += check_img2img(True, [1, 2], 4, args.strength, 32)
            if "flyp" in only:
                rows.append(check_flyp(True, 8, 2, Path(tmp)))
        else:
            if "train" in only:
                rows.append(check_train(False, workers, Path(tmp)))
            if "img2img" in only:
                b = args.gen_batch or min(gen.batch_size, args.max_gen_batch)
                rows += check_img2img(False, sorted({1, b}), args.gen_steps or gen.steps, args.strength, args.gen_size)
            if "flyp" in only:
                rows.append(check_flyp(False, args.flyp_batch, 20, Path(tmp)))
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"CPU ({platform.machine()}, {os.cpu_count()} cores)"
    result = {"device": name, "torch": torch.__version__, "wall_s": round(time.perf_counter() - t_start, 1), "rows": rows}
    print(f"device: {name}  torch {torch.__version__}  total {result['wall_s']} s")
    print(table(rows))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()
