"""What a single-stage command checks before work, and in which order a broken config is reported.

A new user runs ``discl mine`` / ``prompts`` / ``generate`` by hand on their own folder. The
curriculum against ``generation.levels`` is decided before generation, so those commands check it (a
mistake found at ``discl train`` would cost the generation).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from discl.cli import main
from discl.configtools import ConfigError


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> tuple[Path, Path]:
    """Fashion-MNIST's first three classes as the user's folders (the embedded backends can draw
    them), a config with the embedded backends and a fixed curriculum over the generated levels."""
    base = tmp_path_factory.mktemp("stages")
    for split in ("train", "test"):
        for i, name in enumerate(["T-shirt_top", "Trouser", "Pullover"]):
            d = base / "data" / split / name
            d.mkdir(parents=True)
            for j in range(3):
                Image.fromarray(np.full((8, 8), 40 * i + j, np.uint8)).save(d / f"{j}.png")
    cfg = base / "my.yaml"
    cfg.write_text(f"""name: stages
run_dir: {base / "run"}
methods: [ce, discl]
data: {{task: folder, root: data, channels: 1, image_size: 28, decode_workers: 1,
        class_names: [T-shirt_top, Trouser, Pullover], many_threshold: 3, few_threshold: 2}}
mining: {{criteria: [class_frequency], frequency_below: 10}}
generation: {{levels: [0.1, 0.3, 0.5], steps: 4}}
training: {{model: resnet8, epochs: 4}}
curriculum: {{strategy: fixed, levels: [0.1, 0.3, 0.5], stages: [0.25, 0.25, 0.25, 0.25]}}
""")
    return cfg, base / "run"


def _run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().err


@pytest.mark.parametrize("command", ["mine", "prompts", "generate"])
@pytest.mark.parametrize("override, parts", [
    ("curriculum.levels=[0.1,0.3,0.7]", ["curriculum.levels: method 'discl' trains on λ = 0.7",
                                         "generation.levels (0.1, 0.3, 0.5) does not generate"]),
    ("curriculum.stages=[0.5,0.5]", ["curriculum.stages: fixed has 3 stages here but stages lists 2 lengths"]),
])
def test_a_stage_before_training_checks_the_curriculum_before_work(project, capsys, command, override, parts):
    """``discl mine`` and ``discl generate`` skipped this check: a curriculum that trains on a λ nobody
    generates was found only by ``discl train``, after mining and generation."""
    cfg, run = project
    code, err = _run(capsys, command, str(cfg), override, f"run_dir={run}-{command}")
    assert code == 2, err
    for part in parts:
        assert part in err, err
    assert not Path(f"{run}-{command}").exists()


def test_generate_checks_the_filters_config_but_not_its_weights(project, monkeypatch):
    """A filter threshold for a λ that is not generated is a pure config mistake: found before
    generation. The filter's weights may be cached only where the filter runs: left to it (and to
    ``discl mine`` / ``discl run``, which check the whole run's weights)."""
    from discl import hub
    from discl.config import load_config
    from discl.validation import SKIP_BY_COMMAND, validate_run_config

    cfg_path, _ = project
    monkeypatch.setattr(hub, "unreachable_reason", lambda *a, **k: "offline (test)")
    per_level = load_config(cfg_path, ["filtering.per_level={0.7: 0.3}"])
    with pytest.raises(ConfigError, match=r"filtering\.per_level\.0\.7: λ = 0\.7 is not generated"):
        validate_run_config(per_level, skip=SKIP_BY_COMMAND["generate"])
    clip = load_config(cfg_path, ["filtering.backend=open_clip", "filtering.model=ViT-B-32/openai"])
    validate_run_config(clip, skip=SKIP_BY_COMMAND["generate"])  # no error: generate does not load the CLIP
    with pytest.raises(ConfigError, match=r"filtering\.model: .*not reachable: offline \(test\)"):
        validate_run_config(clip, skip=SKIP_BY_COMMAND["mine"])
