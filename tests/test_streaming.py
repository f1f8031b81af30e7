"""The streamed data path: DataLoader workers decoding from disk, seeded per-sample augmentation,
resume, in_memory auto, split files, image checks, the loader benchmark and the GPU check's tiny mode."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from discl.config import load_config
from discl.data.streaming import (
    StreamedImages,
    StreamedSplit,
    eval_transform,
    random_resized_crop_params,
    train_transform,
)
from discl.seeding import torch_generator

ROOT = Path(__file__).resolve().parents[1]
SMALL_TRAIN = ["training.model=resnet8", "training.epochs=2", "training.batch_size=16", "training.lr=0.003"]


def make_jpeg_folder(root: Path, n_per_class=(12, 8, 4), size=40, seed=0) -> Path:
    """root/<class>/*.jpg: three classes of textured images of different aspect ratios."""
    rng = np.random.default_rng(seed)
    for c, n in enumerate(n_per_class):
        d = root / f"class{c}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(n):
            h, w = size, size + 8 * (i % 3)
            arr = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
            arr[:, :, c] += 150  # one colour per class: learnable
            Image.fromarray(arr).save(d / f"img{i:03d}.jpg", quality=90)
    return root


def folder_cfg(tmp_path: Path, *extra: str, root: Path | None = None):
    """A folder task over ``root`` (default: a fresh tree in tmp_path); the val split depends on the root."""
    root = root or make_jpeg_folder(tmp_path / "images")
    return load_config("configs/fmnist-lt.yaml", [
        "data.task=folder", f"data.root={root}", "data.image_size=32", "data.channels=3", "data.val_fraction=0.25",
        "data.many_threshold=10", "data.few_threshold=5", *SMALL_TRAIN, f"run_dir={tmp_path / 'run'}", *extra])


# -- pure transforms ---------------------------------------------------------------------------------


def test_random_resized_crop_params_are_a_function_of_the_generator_and_stay_inside():
    for seed in range(50):
        a = random_resized_crop_params(30, 50, torch_generator("t", seed), (0.08, 1.0))
        b = random_resized_crop_params(30, 50, torch_generator("t", seed), (0.08, 1.0))
        assert a == b
        top, left, h, w = a
        assert 0 <= top and top + h <= 30 and 0 <= left and left + w <= 50 and h > 0 and w > 0


def test_train_and_eval_transforms_give_the_configured_size():
    x = torch.randint(0, 256, (3, 37, 61), dtype=torch.uint8)
    for mode in ("random_resized_crop", "clip"):
        assert train_transform(x, 24, mode, torch_generator("a", 1)).shape == (3, 24, 24)
        assert eval_transform(x, 24, mode).shape == (3, 24, 24)
    flips = {bool(torch.equal(train_transform(x[:, :, :], 24, "random_resized_crop", torch_generator("a", s)),
                              train_transform(x, 24, "random_resized_crop", torch_generator("a", s)))) for s in range(5)}
    assert flips == {True}


def test_a_sample_looks_the_same_from_any_worker_and_differs_by_epoch_and_position(tmp_path):
    root = make_jpeg_folder(tmp_path / "im", (6, 2, 2))
    files = sorted(str(p) for p in root.rglob("*.jpg"))
    ds = StreamedImages(files, np.zeros(len(files), dtype=np.int64), size=24, channels=3, mode="random_resized_crop", seed=3)
    split = StreamedSplit(ds, num_workers=2)
    loader, sampler = split.loader()
    keys = [[(0, p, p % len(files)) for p in range(b, b + 4)] for b in range(0, 12, 4)]
    sampler.set_batches(keys)
    with_workers = torch.cat([x for x, _ in loader])
    direct = torch.stack([ds[k][0] for batch in keys for k in batch])
    assert torch.equal(with_workers, direct)
    assert not torch.equal(ds[(0, 0, 0)][0], ds[(1, 0, 0)][0])  # another epoch, another view
    assert not torch.equal(ds[(0, 0, 0)][0], ds[(0, 10, 0)][0])  # a repeat in the plan, another view
    assert torch.equal(ds[0][0], eval_transform(ds.full_image(0), 24, "random_resized_crop"))


# -- training on the streamed path --------------------------------------------------------------------


def _weights(out_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(out_dir / "best.safetensors"))


def test_streamed_letterbox_trains_exactly_like_the_in_memory_path(tmp_path):
    """training.augmentation=pad_crop: the workers decode what the in-memory path holds, same weights."""
    from discl.training.recipe import train_baseline

    root = make_jpeg_folder(tmp_path / "images")
    mem = folder_cfg(tmp_path / "a", "data.in_memory=true", root=root)
    streamed = folder_cfg(tmp_path / "b", "data.in_memory=false", "training.augmentation=pad_crop",
                          "training.num_workers=2", root=root)
    m1 = train_baseline(mem, seed=0)
    m2 = train_baseline(streamed, seed=0)
    w1, w2 = _weights(tmp_path / "a" / "run" / "train" / "ce-s0"), _weights(tmp_path / "b" / "run" / "train" / "ce-s0")
    assert w1.keys() == w2.keys() and all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1["test" if "test" in m1 else "best"] == m2["test" if "test" in m2 else "best"]


def test_streamed_random_resized_crop_is_reproducible_with_any_num_workers_and_resumes_exactly(tmp_path):
    from discl.training.recipe import train_baseline

    root = make_jpeg_folder(tmp_path / "images")

    def cfg(name, workers):
        return folder_cfg(tmp_path / name, "data.in_memory=false", f"training.num_workers={workers}",
                          "training.epochs=3", root=root)

    train_baseline(cfg("w0", 0), seed=1)
    train_baseline(cfg("w2", 2), seed=1)
    interrupted = cfg("r", 2)
    assert train_baseline(interrupted, seed=1, stop_after_epoch=0) == {"completed": False}
    train_baseline(interrupted, seed=1)
    ref = _weights(tmp_path / "w0" / "run" / "train" / "ce-s1")
    for name in ("w2", "r"):
        other = _weights(tmp_path / name / "run" / "train" / "ce-s1")
        assert all(torch.equal(ref[k], other[k]) for k in ref), name
    import json

    log = [json.loads(line) for line in (tmp_path / "w2" / "run" / "train" / "ce-s1" / "log.jsonl").read_text().splitlines()]
    assert all("data_wait_s" in r for r in log)


def test_in_memory_auto_keeps_embedded_tasks_and_small_folders_in_memory(tmp_path):
    from discl.data import build_dataset
    from discl.training.recipe import in_memory

    cfg = folder_cfg(tmp_path)
    ds = build_dataset(cfg.data)
    assert in_memory(cfg, ds)
    tight = folder_cfg(tmp_path, "data.in_memory_limit_mb=0")
    assert not in_memory(tight, build_dataset(tight.data))
    assert not in_memory(folder_cfg(tmp_path, "data.in_memory=false"), ds)
    emb = load_config("configs/fmnist-lt.yaml", ["data.test_limit=100"])
    assert in_memory(emb, build_dataset(emb.data))


def test_kill_mid_epoch_on_the_streamed_path_resumes_to_identical_weights(tmp_path):
    """SIGKILL `discl baseline` (streamed, 2 workers) during its second epoch; the rerun ends with the
    weights of an uninterrupted run."""
    root = make_jpeg_folder(tmp_path / "images", (40, 30, 20))
    args = ["--config", "configs/fmnist-lt.yaml", "data.task=folder", f"data.root={root}", "data.image_size=32",
            "data.channels=3", "data.many_threshold=10", "data.few_threshold=5", "data.in_memory=false",
            "training.num_workers=2", "training.model=resnet8", "training.epochs=3", "training.batch_size=8",
            "methods=[ce]", "seeds=[0]"]
    env = {**os.environ, "TQDM_DISABLE": "1"}

    def baseline(run: Path) -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "discl", "baseline", "--run-dir", str(run), *args], cwd=ROOT,
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    # the uninterrupted run through the same command: a run in this process would use this process's
    # torch thread count, which earlier tests change, and float reductions depend on it
    ref = tmp_path / "ref"
    r = baseline(ref)
    assert r.wait(600) == 0, r.stderr.read()
    run = tmp_path / "killed"
    proc = baseline(run)
    log = run / "train" / "ce-s0" / "log.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if log.is_file() and len(log.read_text().splitlines()) >= 1:
            time.sleep(0.3)  # into the second epoch
            break
        time.sleep(0.05)
    killed = proc.poll() is None
    if killed:
        proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    assert killed, "the run finished before it could be killed; make it longer"
    assert not (run / "train" / "ce-s0" / "metrics.json").exists()
    p = baseline(run)
    assert p.wait(600) == 0, p.stderr.read()
    a, b = _weights(ref / "train" / "ce-s0"), _weights(run / "train" / "ce-s0")
    assert all(torch.equal(a[k], b[k]) for k in a)


# -- split files (ImageNet-LT / Places-LT / iNaturalist style) ------------------------------------------


def make_split_files_tree(tmp_path: Path) -> dict[str, Path]:
    """A tiny ImageNet-LT-shaped tree: train/<wnid>/<wnid>_<i>.JPEG, val/ and test/ files, the three
    ``path label`` lists and a LOC_synset_mapping.txt (with ImageNet's duplicate name 'crane')."""
    root = tmp_path / "imagenet"
    wnids = ["n01440764", "n02012849", "n03126707"]
    mapping = tmp_path / "LOC_synset_mapping.txt"
    mapping.write_text("n01440764 tench, Tinca tinca\nn02012849 crane\nn03126707 crane\n")
    rng = np.random.default_rng(0)
    lists = {}
    for split, per_class in (("train", (6, 4, 2)), ("val", (2, 2, 2)), ("test", (2, 2, 2))):
        lines = []
        for label, (wnid, n) in enumerate(zip(wnids, per_class)):
            for i in range(n):
                rel = f"{split}/{wnid}/{wnid}_{i}.JPEG" if split == "train" else f"{split}/ILSVRC2012_{split}_{label}{i:04d}.JPEG"
                (root / rel).parent.mkdir(parents=True, exist_ok=True)
                arr = rng.integers(0, 80, (20, 24, 3), dtype=np.uint8)
                arr[..., label] += 150
                Image.fromarray(arr).save(root / rel)
                lines.append(f"{rel} {label}")
        lists[split] = tmp_path / f"ImageNet_LT_{split}.txt"
        lists[split].write_text("\n".join(lines) + "\n")
    return {"root": root, "mapping": mapping, **lists}


def split_files_args(t: dict[str, Path]) -> list[str]:
    return ["data.task=split_files", f"data.root={t['root']}", f"data.class_map={t['mapping']}",
            f"data.split_files={{train: {t['train']}, val: {t['val']}, test: {t['test']}}}"]


def test_split_files_read_imagenet_lt_style_lists_with_a_synset_mapping(tmp_path):
    from discl.data import build_dataset

    t = make_split_files_tree(tmp_path)
    cfg = load_config("configs/fmnist-lt.yaml", [*split_files_args(t), "data.channels=3", "data.image_size=16"])
    ds = build_dataset(cfg.data)
    assert ds.classes == ["tench", "crane (n02012849)", "crane (n03126707)"]
    assert ds.name == "ImageNet_LT"
    assert ds.class_counts("train").tolist() == [6, 4, 2]
    assert ds.class_counts("val").tolist() == [2, 2, 2] and ds.class_counts("test").tolist() == [2, 2, 2]
    sid = "train/n02012849/n02012849_3.JPEG"
    assert ds.frame.at[sid, "label"] == 1 and ds.frame.at[sid, "class_name"] == "crane (n02012849)"
    assert ds.tensors([sid], 16, 3).shape == (1, 3, 16, 16)


def test_split_files_errors_name_the_line_and_skip_reports_them(tmp_path):
    from discl.data.folder import load_split_files
    from discl.errors import BadInputError

    t = make_split_files_tree(tmp_path)
    with open(t["train"], "a") as f:
        f.write("train/n01440764/missing.JPEG 0\nno-label-here\n../escape.JPEG 1\ntrain/n01440764/n01440764_0.JPEG 7\n")
    cfg = load_config("configs/fmnist-lt.yaml", split_files_args(t)).data
    with pytest.raises(BadInputError, match=r"ImageNet_LT_train.txt line 13: file not found"):
        load_split_files(cfg)
    import dataclasses

    ds = load_split_files(dataclasses.replace(cfg, on_bad_image="skip"))
    assert len(ds.skipped) == 4
    assert ds.class_counts("train").tolist() == [6, 4, 2]
    assert "outside 0..2" in " ".join(ds.skipped["reason"])


def test_split_files_train_a_baseline_end_to_end(tmp_path):
    from discl.training.recipe import train_baseline

    t = make_split_files_tree(tmp_path)
    cfg = load_config("configs/fmnist-lt.yaml", [*split_files_args(t), "data.channels=3", "data.image_size=16",
                                                 "data.many_threshold=5", "data.few_threshold=3", "data.in_memory=false",
                                                 *SMALL_TRAIN, f"run_dir={tmp_path / 'run'}"])
    m = train_baseline(cfg, seed=0)
    assert m["test"]["n"] == 6 and list(m["test"]["per_class"]) == ["tench", "crane (n02012849)", "crane (n03126707)"]


# -- image checks and decoding at scale ----------------------------------------------------------------


def test_checks_in_worker_processes_find_the_same_bad_files_as_in_process(tmp_path):
    from discl.data.streaming import check_files

    root = make_jpeg_folder(tmp_path / "im", (5, 3, 2))
    (root / "class1" / "broken.jpg").write_bytes((root / "class1" / "img000.jpg").read_bytes()[:200])
    (root / "class2" / "empty.jpg").write_bytes(b"")
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    serial = check_files(paths, 10**8, "black", workers=1)
    parallel = check_files(paths, 10**8, "black", workers=2, min_parallel=0)
    assert serial == parallel
    bad = {Path(p).name: e for p, e in zip(paths, parallel) if e is not None}
    assert set(bad) == {"broken.jpg", "empty.jpg"}
    assert all(str(root) in e for e in bad.values())


def test_folder_checks_with_decode_workers_name_the_file_or_skip_and_report(tmp_path):
    from discl.data.folder import load_folder_dataset
    from discl.errors import BadInputError

    root = make_jpeg_folder(tmp_path / "im", (5, 3, 2))
    (root / "class1" / "broken.jpg").write_bytes((root / "class1" / "img000.jpg").read_bytes()[:200])
    cfg = load_config("configs/fmnist-lt.yaml", ["data.task=folder", f"data.root={root}", "data.decode_workers=2"]).data
    import dataclasses

    with pytest.raises(BadInputError, match=r"class1/broken\.jpg: (cannot open|truncated)"):
        load_folder_dataset(cfg)
    ds = load_folder_dataset(dataclasses.replace(cfg, on_bad_image="skip"))
    assert ds.skipped["path"].tolist() == ["class1/broken.jpg"] and len(ds.frame) == 10


def test_decoding_in_workers_gives_the_same_tensors(tmp_path):
    from discl.data.streaming import StreamedImages, decode_letterboxed

    root = make_jpeg_folder(tmp_path / "im", (5, 3, 2))
    paths = sorted(str(p) for p in root.rglob("*.jpg"))
    ds = StreamedImages(paths, np.zeros(len(paths)), size=20, channels=3, mode="letterbox", seed=0)
    order = [3, 1, 7, 0, 9]
    assert torch.equal(decode_letterboxed(ds, order, workers=2, min_parallel=0), decode_letterboxed(ds, order, workers=1))


def test_a_run_decodes_a_folder_once_for_all_its_training_runs(tmp_path, monkeypatch):
    from discl.data.folder import FileImageDataset
    from discl.training.recipe import train_baseline

    root = make_jpeg_folder(tmp_path / "images")
    cfg = folder_cfg(tmp_path, "data.in_memory=true", "training.epochs=1", root=root)
    train_baseline(cfg, variant="ce", seed=0)
    cached = sorted(p.name.split("-")[0] for p in (tmp_path / "run" / "cache" / "decoded").iterdir())
    assert cached == ["train", "val"]  # this folder has no test split
    calls = []
    original = FileImageDataset.tensors
    monkeypatch.setattr(FileImageDataset, "tensors", lambda self, *a: calls.append(a) or original(self, *a))
    train_baseline(cfg, variant="bs", seed=0)
    train_baseline(cfg, variant="ce", seed=1)
    assert calls == []
    # an edited image is decoded again
    victim = next(root.rglob("*.jpg"))
    Image.new("RGB", (30, 30), (255, 0, 0)).save(victim)
    train_baseline(cfg, variant="ce", seed=2)
    assert len(calls) >= 1


def test_fast_jpeg_decoding_matches_pil_closely_and_bad_files_still_name_the_file(tmp_path):
    from discl.data.images import load_image
    from discl.data.streaming import decode_tensor
    from discl.errors import BadInputError

    root = make_jpeg_folder(tmp_path / "im", (1, 0, 0), size=64)
    path = next(root.rglob("*.jpg"))
    fast = decode_tensor(path, 3, 10**8, "black")
    pil = torch.from_numpy(np.array(load_image(path))).permute(2, 0, 1)
    assert fast.shape == pil.shape and (fast.int() - pil.int()).abs().float().mean() < 2
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(path.read_bytes()[:300])
    with pytest.raises(BadInputError, match="cut.jpg"):
        decode_tensor(cut, 3, 10**8, "black")
    with pytest.raises(BadInputError, match="too many pixels|exceeds the limit"):
        decode_tensor(path, 3, 100, "black")


# -- benchmarks' smoke runs -------------------------------------------------------------------------------


def test_gpu_check_tiny_runs_on_the_cpu_and_prints_one_table(capsys):
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(ROOT / "bench"))
    result = gpu_check.main(["--tiny", "--workers", "0"])
    checks = [r["check"] for r in result["rows"]]
    assert any(c.startswith("train ") for c in checks) and any(c.startswith("FLYP ") for c in checks)
    assert [r["batch"] for r in result["rows"] if r["check"].startswith("img2img")] == [1, 2]
    assert all(r["images_per_s"] > 0 for r in result["rows"])
    assert 0 <= result["rows"][0]["data_wait_share"] <= 1
    out = capsys.readouterr().out
    assert out.count("| check |") == 1


def test_gpu_check_full_size_configs_are_the_sdxl_refiner():
    """The kept architecture config builds a UNet of the refiner's size (2.26e9 parameters), on the meta device."""
    import json

    from diffusers import UNet2DConditionModel

    cfg = {k: v for k, v in json.loads((ROOT / "bench" / "arch" / "sdxl-refiner" / "unet.json").read_text()).items()
           if not k.startswith("_")}
    with torch.device("meta"):
        unet = UNet2DConditionModel(**cfg)
    assert round(sum(p.numel() for p in unet.parameters()) / 1e9, 2) == 2.26


DDP_SCRIPT = '''
import json, sys
import numpy as np
import torch
from pathlib import Path
from discl.data.streaming import StreamedImages, StreamedSplit
from discl.training.config import TrainConfig
from discl.training.loop import fit
from discl.training.models import create_model

class Recording(StreamedImages):
    seen = []
    def __getitem__(self, key):
        Recording.seen.append(list(key) if isinstance(key, tuple) else int(key))
        return super().__getitem__(key)

paths = sorted(str(p) for p in Path(sys.argv[1]).rglob("*.jpg"))
labels = np.array([int(Path(p).parent.name[-1]) for p in paths])
train = StreamedSplit(Recording(paths, labels, size=24, channels=3, mode="random_resized_crop", seed=0))
val = StreamedSplit(Recording(paths[:10], labels[:10], size=24, channels=3, mode="random_resized_crop", seed=0))
cfg = TrainConfig(model="resnet8", epochs=1, batch_size=8, lr=1e-3, select_on="val_accuracy")
res = fit(create_model("resnet8", 3, 3, 24, seed=0), train, val, cfg, num_classes=3, seed=0, progress=False)
rank = int(__import__("os").environ.get("RANK", 0))
sys.stdout.write("RESULT " + json.dumps({"rank": rank, "seen": Recording.seen, "val": res.history[-1]["val_top1"]}) + "\\n")
'''


@pytest.mark.slow  # two torchrun processes: ~20 s idle, longer on a loaded machine
def test_ddp_each_process_decodes_only_its_share_and_evaluation_is_gathered(tmp_path):
    import json

    root = make_jpeg_folder(tmp_path / "images", (12, 8, 4), size=28)
    script = tmp_path / "ddp.py"
    script.write_text(DDP_SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    torchrun = Path(sys.executable).with_name("torchrun")
    out = subprocess.run([str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(root)],
                         env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    results = sorted((json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1]
    train_keys = [{tuple(k) for k in r["seen"] if isinstance(k, list)} for r in results]
    assert not train_keys[0] & train_keys[1], "an item was decoded by both processes"
    assert {k[1] for k in train_keys[0] | train_keys[1]} == set(range(24))  # 3 global batches of 8, none dropped
    val_keys = [sorted(k for k in r["seen"] if isinstance(k, int)) for r in results]
    assert val_keys == [[0, 2, 4, 6, 8], [1, 3, 5, 7, 9]]
    assert results[0]["val"] == results[1]["val"]


def test_without_the_check_pass_a_bad_file_stops_streamed_training_with_one_line_naming_it(tmp_path):
    from discl.errors import BadInputError
    from discl.training.recipe import train_baseline

    root = make_jpeg_folder(tmp_path / "images")
    (root / "class0" / "img005.jpg").write_bytes(b"not a jpeg at all")
    cfg = folder_cfg(tmp_path, "data.in_memory=false", "data.verify_images=false", "training.num_workers=2", root=root)
    with pytest.raises(BadInputError) as info:
        train_baseline(cfg, seed=0)
    assert "class0/img005.jpg: not an image file" in str(info.value) and "Traceback" not in str(info.value)


def test_in_memory_random_resized_crop_uses_the_streamed_seeding_and_resumes(tmp_path):
    """training.augmentation=random_resized_crop in memory: per-sample crops of the stored images,
    a function of (seed, epoch, position); an interrupted run ends with the same weights."""
    from discl.data.streaming import augment_samples
    from discl.training.recipe import train_baseline

    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    a = augment_samples(x, [0, 1, 2, 3], 5, 0, 24, "random_resized_crop")
    assert a.shape == (4, 3, 24, 24) and torch.equal(a, augment_samples(x, [0, 1, 2, 3], 5, 0, 24, "random_resized_crop"))
    assert not torch.equal(a, augment_samples(x, [0, 1, 2, 3], 5, 1, 24, "random_resized_crop"))
    root = make_jpeg_folder(tmp_path / "images")
    ref = folder_cfg(tmp_path / "ref", "data.in_memory=true", "training.augmentation=random_resized_crop",
                     "training.epochs=3", root=root)
    cut = folder_cfg(tmp_path / "cut", "data.in_memory=true", "training.augmentation=random_resized_crop",
                     "training.epochs=3", root=root)
    train_baseline(ref, seed=0)
    assert train_baseline(cut, seed=0, stop_after_epoch=1) == {"completed": False}
    train_baseline(cut, seed=0)
    w1, w2 = _weights(tmp_path / "ref" / "run" / "train" / "ce-s0"), _weights(tmp_path / "cut" / "run" / "train" / "ce-s0")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


@pytest.mark.slow  # two curriculum trainings on the embedded task: ~40 s idle
def test_streamed_curriculum_pool_of_real_rows_and_spectrum_files_trains_like_the_in_memory_one(tmp_path):
    """A curriculum pool streamed (embedded real images by row + synthetic PNGs by path) gives the
    in-memory pool's weights with pad_crop augmentation."""
    from discl.curriculum.testing import write_toy_spectrum
    from discl.data import build_dataset
    from discl.training.recipe import train_curriculum

    base = ["data.test_limit=100", "training.epochs=2", "training.batch_size=64", "curriculum.levels=[0.1, 0.3, 0.5]",
            "curriculum.stages=[1, 0, 0, 1]"]
    weights = []
    for name, extra in (("mem", ["data.in_memory=true"]),
                        ("stream", ["data.in_memory=false", "training.augmentation=pad_crop", "training.num_workers=2"])):
        cfg = load_config("configs/fmnist-lt.yaml", [*base, *extra])
        run = tmp_path / name
        write_toy_spectrum(run, build_dataset(cfg.data))
        m = train_curriculum(cfg, run, "fixed", seed=0)
        assert m["pool_synthetic"] > 0
        weights.append(_weights(run / "train" / "fixed-ce-s0"))
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


@pytest.mark.parametrize("augmentation", ["random_resized_crop", "clip"])
def test_in_memory_and_streamed_runs_of_one_config_give_the_same_test_metrics(tmp_path, augmentation):
    """Issue 23: an explicit crop augmentation is evaluated (and, unaugmented, trained) on the streamed
    path's evaluation view, a centre crop, also in memory: ``data.in_memory_limit_mb`` never changes a
    number. Mixed aspect ratios, so the letterbox and the centre crop differ."""
    from discl.training.recipe import train_baseline

    root = tmp_path / "images"
    make_jpeg_folder(root / "train")
    make_jpeg_folder(root / "test", n_per_class=(4, 4, 4), seed=1)
    common = [f"training.augmentation={augmentation}", "training.augment=false"]
    mem = folder_cfg(tmp_path / "a", "data.in_memory=true", *common, root=root)
    streamed = folder_cfg(tmp_path / "b", "data.in_memory_limit_mb=0", "training.num_workers=2", *common, root=root)
    m1, m2 = train_baseline(mem, seed=0), train_baseline(streamed, seed=0)
    w1, w2 = _weights(tmp_path / "a" / "run" / "train" / "ce-s0"), _weights(tmp_path / "b" / "run" / "train" / "ce-s0")
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1["test"] == m2["test"] and m1["best"] == m2["best"]


def test_adaptive_probes_are_the_streamed_evaluation_view_on_both_paths(tmp_path):
    """Issue 23: the adaptive curriculum measures progress on the images as the model is evaluated on
    them: the held-out real images (λ = 1) and their variants in the evaluation view of the training
    view (a centre crop under random_resized_crop, not the letterbox), in memory and streamed alike."""
    import pandas as pd

    from discl.data import build_dataset
    from discl.training.recipe import _probes, _stream_items, _streamed

    root = make_jpeg_folder(tmp_path / "images")
    cfg = folder_cfg(tmp_path, "training.augmentation=random_resized_crop", "curriculum.levels=[0.5, 1.0]", root=root)
    ds = build_dataset(cfg.data)
    holdout = ds.split("train")["sample_id"].tolist()[:3]
    run = tmp_path / "run"
    rng = np.random.default_rng(0)
    names = [f"images/{i}.png" for i in range(len(holdout))]
    for name in names:
        (run / "spectrum" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (20, 36, 3), dtype=np.uint8)).save(run / "spectrum" / name)
    labels = ds.frame.loc[holdout, "label"].tolist()
    manifest = pd.DataFrame({"file_name": names, "sample_id": holdout, "label": labels, "lam": 0.5, "k": 0,
                             "keep": True})

    def streamed_view(items, array=None) -> torch.Tensor:
        split = _streamed(cfg, items, np.asarray(labels), array)
        return torch.stack([split.dataset[i][0] for i in range(len(items))])

    real = streamed_view(*_stream_items(ds, holdout))
    synthetic = streamed_view([str(run / "spectrum" / n) for n in names])
    assert not torch.equal(real, torch.stack([ds.tensors([s], 32, 3)[0] for s in holdout]))  # not the letterbox
    for memory in (True, False):
        probes = _probes(ds, manifest, holdout, cfg, run, memory)
        assert torch.equal(probes[1.0][0], real) and torch.equal(probes[0.5][0], synthetic), memory


@pytest.mark.slow
def test_adaptive_probes_and_pool_use_one_view_on_both_paths(tmp_path):
    """Issue 23: the adaptive curriculum's probes (held-out real images and their variants) and its pool
    are in the evaluation view of the training view on both paths, so the streamed and the in-memory
    runs of one config choose the same levels and end with the same weights (about 2 min on 2 busy cores)."""
    from discl.curriculum.testing import write_toy_spectrum
    from discl.data import build_dataset
    from discl.training.recipe import train_curriculum

    base = ["data.test_limit=100", "training.epochs=1", "training.batch_size=64", "curriculum.levels=[0.1, 0.5, 1.0]",
            "training.augmentation=random_resized_crop", "training.augment=false", "training.init_from=null"]
    out = []
    for name, extra in (("mem", ["data.in_memory=true"]), ("stream", ["data.in_memory=false", "training.num_workers=2"])):
        cfg = load_config("configs/fmnist-lt.yaml", [*base, *extra])
        run = tmp_path / name
        write_toy_spectrum(run, build_dataset(cfg.data))
        m = train_curriculum(cfg, run, "adaptive", seed=0)
        out.append((m, _weights(run / "train" / "adaptive-s0")))
    (m1, w1), (m2, w2) = out
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    assert m1["test"] == m2["test"]
