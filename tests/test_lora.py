"""``generation.lora``: local LoRA adapters loaded with diffusers' ``load_lora_weights`` and fused.

diffusers needs ``peft`` to load LoRA weights; the loading tests are skipped without it (and a
clear error naming the key is checked instead). The digest test needs no peft.
"""

import dataclasses
import importlib.util

import pytest
from generation_fixtures import build_tiny_sd, build_tiny_sdxl_refiner, gray_image, write_tiny_lora

from discl.configtools import ConfigError, from_dict
from discl.errors import DisclError
from discl.generation.base import GenerationBatch, create_generator
from discl.generation.config import GenerationConfig, LoraConfig

HAS_PEFT = importlib.util.find_spec("peft") is not None


@pytest.fixture(scope="module")
def pipes(tmp_path_factory):
    root = tmp_path_factory.mktemp("pipes")
    return {"sd": build_tiny_sd(root / "sd"), "sdxl-refiner": build_tiny_sdxl_refiner(root / "xl")}


def _images(kind, pipes, lora):
    gen = create_generator(GenerationConfig(backend="diffusers", model=str(pipes[kind]), resolution=32, steps=4,
                                            guidance_scale=3.0, lora=lora))
    return [im.tobytes() for im in gen.generate(GenerationBatch(
        sources=[gray_image(28, 0)] * 2, source_keys=["x"] * 2, labels=[0] * 2, prompts=["a photo of a coat"] * 2,
        seeds=[1, 2], strength=0.75, steps=4, guidance_scale=3.0))]


@pytest.mark.skipif(not HAS_PEFT, reason="diffusers needs peft to load LoRA weights")
@pytest.mark.parametrize("kind", ["sd", "sdxl-refiner"])
def test_lora_is_loaded_fused_and_scaled(tmp_path, pipes, kind):
    lora = write_tiny_lora(tmp_path / "lora" / "tiny.safetensors", pipes[kind])
    base = _images(kind, pipes, [])
    with_lora = _images(kind, pipes, [LoraConfig(path=str(lora), scale=1.0)])
    assert with_lora != base
    assert _images(kind, pipes, [LoraConfig(path=str(lora), scale=1.0)]) == with_lora  # deterministic
    assert _images(kind, pipes, [LoraConfig(path=str(lora), scale=0.0)]) == base  # scale 0 adds nothing
    # a folder with the file named, and two adapters at once
    other = write_tiny_lora(tmp_path / "lora2" / "pytorch_lora_weights.safetensors", pipes[kind], seed=1)
    two = _images(kind, pipes, [LoraConfig(path=str(lora)), LoraConfig(path=str(other.parent), scale=0.5)])
    assert two not in (base, with_lora)
    gen = create_generator(GenerationConfig(backend="diffusers", model=str(pipes[kind]), resolution=32,
                                            lora=[LoraConfig(path=str(lora))]))
    assert not any("lora" in n for n, _ in gen.denoiser.named_parameters())  # fused, adapters unloaded


@pytest.mark.skipif(HAS_PEFT, reason="checks the message given when peft is missing")
def test_lora_without_peft_says_what_is_missing(tmp_path, pipes):
    lora = write_tiny_lora(tmp_path / "tiny.safetensors", pipes["sd"])
    with pytest.raises(DisclError, match=r"generation\.lora\[0\].*peft"):
        _images("sd", pipes, [LoraConfig(path=str(lora))])


def test_lora_config_errors_name_the_key(tmp_path, pipes):
    with pytest.raises(ConfigError, match="generation.lora"):
        from_dict(GenerationConfig, {"backend": "embedded", "lora": [{"path": "x.safetensors"}]}, prefix="generation")
    with pytest.raises(ConfigError, match=r"generation.lora\[0\]: unknown config key generation.lora\[0\].rank|rank"):
        from_dict(GenerationConfig, {"backend": "diffusers", "lora": [{"path": "x", "rank": 4}]}, prefix="generation")
    with pytest.raises(DisclError, match=r"generation\.lora\[0\]\.path: .* does not exist"):
        _images("sd", pipes, [LoraConfig(path=str(tmp_path / "missing.safetensors"))])


def test_changing_a_lora_file_changes_the_spectrum_digest(tmp_path, pipes):
    from discl.config import RunConfig
    from discl.generation.runner import spectrum_digest

    lora = write_tiny_lora(tmp_path / "tiny.safetensors", pipes["sd"])
    cfg = RunConfig(name="t", run_dir=str(tmp_path / "run"), generation=GenerationConfig(
        backend="diffusers", model=str(pipes["sd"]), lora=[LoraConfig(path=str(lora))]))
    before = spectrum_digest(cfg)
    assert spectrum_digest(cfg) == before
    write_tiny_lora(lora, pipes["sd"], seed=7)  # same path, new weights
    assert spectrum_digest(cfg) != before
    scaled = dataclasses.replace(cfg, generation=dataclasses.replace(
        cfg.generation, lora=[LoraConfig(path=str(lora), scale=0.5)]))
    assert spectrum_digest(scaled) != spectrum_digest(cfg)
