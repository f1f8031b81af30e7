"""Tiny real diffusers pipelines for the generation tests (no downloads).

Components are built in code with a few thousand parameters, assembled into the stock
``StableDiffusionImg2ImgPipeline`` / ``StableDiffusionXLImg2ImgPipeline`` and saved with
``save_pretrained``, so tests load them through the same ``from_pretrained`` path a hub id takes.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image


def _bytes_to_unicode() -> dict[int, str]:
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def write_tiny_clip_tokenizer(folder: Path):
    """A byte-level CLIP BPE tokenizer with no merges (one token per character)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    chars = list(_bytes_to_unicode().values())
    tokens = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), pad_token="<|endoftext|>",
                         model_max_length=77)


def _text_config(hidden: int = 16, proj: int | None = None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(bos_token_id=512, eos_token_id=513, pad_token_id=513, hidden_size=hidden,
                          intermediate_size=32, num_attention_heads=2, num_hidden_layers=2, vocab_size=514,
                          max_position_embeddings=77, projection_dim=proj or hidden, hidden_act="gelu")


def _vae():
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         norm_num_groups=8, sample_size=32)


def _scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                         set_alpha_to_one=False, steps_offset=1)


def build_tiny_sd(folder: Path) -> Path:
    """Save a tiny StableDiffusionImg2ImgPipeline to ``folder`` (32 px native size)."""
    from diffusers import StableDiffusionImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=8, attention_head_dim=4)
    tok = write_tiny_clip_tokenizer(folder / "_tok")
    torch.manual_seed(0)
    text = CLIPTextModel(_text_config())
    pipe = StableDiffusionImg2ImgPipeline(vae=_vae(), text_encoder=text, tokenizer=tok, unet=unet,
                                          scheduler=_scheduler(), safety_checker=None, feature_extractor=None,
                                          requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def build_tiny_sdxl_refiner(folder: Path) -> Path:
    """Save a tiny StableDiffusionXLImg2ImgPipeline shaped like the SDXL refiner (text_encoder_2 only)."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, UNet2DConditionModel
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    # refiner-style: aesthetics score conditioning; added embeds = 5 time ids * 8 + pooled 16
    unet = UNet2DConditionModel(block_out_channels=(8, 16), layers_per_block=1, sample_size=16, in_channels=4,
                                out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                                up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=16,
                                norm_num_groups=8, attention_head_dim=4, addition_embed_type="text_time",
                                addition_time_embed_dim=8, projection_class_embeddings_input_dim=5 * 8 + 16,
                                transformer_layers_per_block=1)
    tok = write_tiny_clip_tokenizer(folder / "_tok")
    torch.manual_seed(0)
    text2 = CLIPTextModelWithProjection(_text_config(16, 16))
    pipe = StableDiffusionXLImg2ImgPipeline(vae=_vae(), text_encoder=None, text_encoder_2=text2, tokenizer=None,
                                            tokenizer_2=tok, unet=unet, scheduler=_scheduler(),
                                            requires_aesthetics_score=True, force_zeros_for_empty_prompt=True)
    pipe.save_pretrained(folder)
    return folder


class TinyDataset:
    """A stand-in dataset with real (random, seeded) images and the ``ImageDataset`` fields used here."""

    def __init__(self, n: int = 4, size: int = 28, classes: int = 10):
        from discl.data.base import ArrayImageDataset

        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (n, size, size), dtype=np.uint8)
        frame = pd.DataFrame({"sample_id": [f"s{i:02d}" for i in range(n)], "label": [i % classes for i in range(n)],
                              "split": "train"})
        names = [f"class{c}" for c in range(classes)]
        frame["class_name"] = [names[v] for v in frame["label"]]
        self.ds = ArrayImageDataset("tiny", names, frame, images)


def tiny_dataset(n: int = 4, size: int = 28):
    return TinyDataset(n, size).ds


def write_hard_csv(run_dir: Path, ds, ids=None) -> pd.DataFrame:
    frame = ds.frame.reset_index(drop=True)
    if ids is not None:
        frame = frame[frame["sample_id"].isin(ids)]
    hard = frame[["sample_id", "label", "class_name"]]
    (run_dir / "mining").mkdir(parents=True, exist_ok=True)
    hard.to_csv(run_dir / "mining" / "hard.csv", index=False)
    return hard


class ForwardCounter:
    """Counts forward calls of a module and the batch rows they evaluate (a real hook, no mock)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        self.rows = 0
        self._h = module.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, module, args, kwargs):
        x = args[0] if args else kwargs.get("sample", kwargs.get("hidden_states"))
        self.calls += 1
        self.rows += int(x.shape[0])

    def close(self):
        self._h.remove()


def gray_image(size: int = 28, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size), dtype=np.uint8), mode="L")


def train_tiny_prior(folder: Path) -> Path:
    """A real prior trained for two steps on random images (8 px, a few thousand parameters)."""
    from discl.generation.prior import load_recipe, train_prior

    recipe = load_recipe(overrides={"resolution": 8, "block_out_channels": [8, 16], "attention_at_lowest": False,
                                    "steps": 2, "batch_size": 8, "warmup_steps": 1, "threads": 1, "low_res_steps": 0,
                                    "checkpoint_every": 0, "init_from": "", "styles": ["clean"], "p_any_style": 0.0,
                                    "condition_style": "clean", "class_embedding_lr_scale": 1.0})
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (32, 1, 28, 28), generator=g, dtype=torch.uint8)
    labels = torch.arange(32) % 10
    train_prior(recipe, images, labels, out_dir=folder, progress=False)
    return folder


def write_folder_dataset(root: Path, per_class: int = 2, classes=("coat", "shirt")) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            gray_image(28, seed=10 * c + i).save(root / name / f"img{i}.png") if (root / name).mkdir(
                parents=True, exist_ok=True) is None else None
    return root


def write_mixed_size_folder(root: Path, sizes=((40, 30), (30, 40)), per_size: int = 2,
                            classes=("coat", "shirt")) -> Path:
    """An ImageFolder whose images have different aspect ratios (``sizes`` as (width, height))."""
    rng = np.random.default_rng(0)
    i = 0
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
        for w, h in sizes:
            for _ in range(per_size):
                Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / name / f"img{i}.png")
                i += 1
    return root


def write_tiny_lora(path: Path, pipeline_folder: Path, rank: int = 2, seed: int = 0, std: float = 0.3) -> Path:
    """A LoRA for a tiny pipeline's UNet attention projections, in the diffusers/peft key format
    (``unet.<module>.lora_A.weight`` / ``lora_B``), saved as one ``.safetensors`` file. Built from
    the UNet's own layer shapes; no peft needed to write it."""
    from diffusers import UNet2DConditionModel
    from safetensors.torch import save_file

    unet = UNet2DConditionModel.from_pretrained(pipeline_folder, subfolder="unet")
    g = torch.Generator().manual_seed(seed)
    state = {}
    for name, mod in unet.named_modules():
        if isinstance(mod, torch.nn.Linear) and name.rsplit(".", 1)[-1] in ("to_q", "to_k", "to_v") or name.endswith(
                "to_out.0"):
            state[f"unet.{name}.lora_A.weight"] = torch.randn((rank, mod.in_features), generator=g) * std
            state[f"unet.{name}.lora_B.weight"] = torch.randn((mod.out_features, rank), generator=g) * std
    assert state, "no attention projections found"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return path


def _flow_vae():
    """The tiny VAE of the flow-matching pipelines (SD3, Flux): shift and scale factors, no quant convs."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=[8, 16], in_channels=3, out_channels=3, latent_channels=4,
                         down_block_types=["DownEncoderBlock2D"] * 2, up_block_types=["UpDecoderBlock2D"] * 2,
                         norm_num_groups=8, sample_size=32, shift_factor=0.0609, scaling_factor=1.5035,
                         use_quant_conv=False, use_post_quant_conv=False)


def build_tiny_sd3(folder: Path, patch_size: int = 1):
    """A tiny ``StableDiffusion3Img2ImgPipeline`` (two CLIP encoders, no T5: the pipeline then uses
    zeros for the T5 embeddings). Returned as a pipeline object: ``from_pretrained`` of a folder
    saved without T5 needs the missing components named, which the backend does not do."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Img2ImgPipeline,
    )
    from transformers import CLIPTextModelWithProjection

    torch.manual_seed(0)
    transformer = SD3Transformer2DModel(sample_size=8, patch_size=patch_size, in_channels=4, num_layers=1, attention_head_dim=8,
                                        num_attention_heads=2, joint_attention_dim=32, caption_projection_dim=16,
                                        pooled_projection_dim=32, out_channels=4)
    vae = _flow_vae()
    tok = write_tiny_clip_tokenizer(folder / "_tok")
    torch.manual_seed(0)
    text1 = CLIPTextModelWithProjection(_text_config(16, 16))
    torch.manual_seed(1)
    text2 = CLIPTextModelWithProjection(_text_config(16, 16))
    return StableDiffusion3Img2ImgPipeline(transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae,
                                           text_encoder=text1, tokenizer=tok, text_encoder_2=text2, tokenizer_2=tok,
                                           text_encoder_3=None, tokenizer_3=None, image_encoder=None,
                                           feature_extractor=None)


def build_tiny_flux(folder: Path) -> Path:
    """Save a tiny ``FluxImg2ImgPipeline`` to ``folder``: a one-block-each Flux transformer on a
    4-channel latent packed 2x2 (``in_channels`` 16), CLIP for the pooled prompt and a tiny T5 for the
    sequence. The tiny CLIP tokenizer serves as ``tokenizer_2`` too (it pads to ``max_sequence_length``
    like T5's; no sentencepiece file needed). The VAE has two blocks: VAE scale 2, multiple 4."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxImg2ImgPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextModel, T5Config, T5EncoderModel

    torch.manual_seed(0)
    transformer = FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                         attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                         pooled_projection_dim=16, axes_dims_rope=[4, 4, 8])
    vae = _flow_vae()
    tok = write_tiny_clip_tokenizer(folder / "_tok")
    torch.manual_seed(0)
    text = CLIPTextModel(_text_config())
    torch.manual_seed(0)
    t5 = T5EncoderModel(T5Config(vocab_size=514, d_model=32, d_kv=8, d_ff=37, num_layers=1, num_heads=2,
                                 pad_token_id=513, eos_token_id=513))
    # Flux's own schedule: the shift grows with the image's token count
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxImg2ImgPipeline(scheduler=scheduler, vae=vae, text_encoder=text, tokenizer=tok, text_encoder_2=t5,
                               tokenizer_2=tok, transformer=transformer)
    pipe.save_pretrained(folder)
    return folder
