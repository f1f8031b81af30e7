"""The filter stage on a tiny spectrum with a tiny real open_clip model: artifacts, caching, resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from discl.artifacts import read_table
from discl.config import load_config
from discl.data.base import ArrayImageDataset
from discl.errors import BadInputError
from discl.filtering import runner as runner_mod
from discl.filtering import testing
from discl.filtering.runner import filter_spectrum
from discl.filtering.scorer import create_scorer
from discl.seeding import numpy_rng

CLASSES = ["Shirt", "Bag", "Sandal"]


@pytest.fixture(scope="module")
def tiny_scorer(tmp_path_factory):
    name = testing.register_tiny_open_clip(tmp_path_factory.mktemp("clipcfg"))
    torch.manual_seed(0)  # open_clip initialises from the global RNG
    return create_scorer("open_clip", f"{name}/none", device="cpu", batch_size=4)


@pytest.fixture
def tiny_run(tmp_path):
    rng = numpy_rng("test-filter-data", 0)
    images = {f"s{i}": rng.integers(0, 256, (28, 28)).astype(np.uint8) for i in range(3)}
    labels = {f"s{i}": i for i in range(3)}
    frame = pd.DataFrame({"sample_id": list(images), "label": [labels[s] for s in images],
                          "class_name": [CLASSES[labels[s]] for s in images], "split": "train"})
    dataset = ArrayImageDataset("tiny", CLASSES, frame, np.stack(list(images.values())))
    run = tmp_path / "run"
    spectrum = testing.make_tiny_spectrum(run, images, CLASSES, labels, levels=(0.0, 0.5, 0.9), seeds=2)
    return run, dataset, spectrum


def _cfg(*overrides):
    return load_config(None, ["filtering.backend=open_clip", "filtering.batch_size=4", *overrides])


def _counts(scorer):
    return scorer.images_encoded, scorer.texts_encoded


def test_filter_writes_manifest_summary_and_scores_match_the_model(tiny_run, tiny_scorer):
    run, dataset, spectrum = tiny_run
    manifest = filter_spectrum(_cfg("filtering.threshold=null"), run, scorer=tiny_scorer, dataset=dataset)
    assert manifest["keep"].all()
    cut = float(manifest["sim_text"].median())
    manifest = filter_spectrum(_cfg(f"filtering.threshold={cut}"), run, scorer=tiny_scorer, dataset=dataset)
    on_disk = read_table(run / "filter" / "manifest.csv")
    assert len(on_disk) == len(spectrum) == 18
    for col in (*spectrum.columns, "sim_text", "sim_prompt", "sim_image", "clipscore", "keep", "drop_reason"):
        assert col in on_disk.columns, col
    assert on_disk["file_name"].tolist() == spectrum["file_name"].tolist()
    # recompute one row by hand from the model
    row = manifest.iloc[5]
    img = tiny_scorer.encode_images([Image.open(run / "spectrum" / row["file_name"])])[0]
    prompt, text = tiny_scorer.encode_texts([row["prompt"], f"a photo of a {row['class_name']}"])
    real = tiny_scorer.encode_images([dataset.image(row["sample_id"])])[0]
    assert row["sim_prompt"] == pytest.approx(float(img @ prompt), abs=1e-5)
    assert row["sim_text"] == pytest.approx(float(img @ text), abs=1e-5)
    assert row["sim_image"] == pytest.approx(float(img @ real), abs=1e-5)
    assert row["clipscore"] == pytest.approx(2.5 * max(float(img @ prompt), 0.0), abs=1e-5)
    # keep follows the rule on sim_text
    np.testing.assert_array_equal(manifest["keep"].to_numpy(), manifest["sim_text"].to_numpy() >= cut)
    assert 0 < on_disk["keep"].sum() < len(on_disk)
    assert (on_disk.loc[~on_disk["keep"], "drop_reason"].str.contains(f"< {cut:.3f} \\(global\\)")).all()
    summary = read_table(run / "filter" / "summary.csv")
    assert summary["lam"].tolist() == [0.0, 0.5, 0.9]
    assert summary["count"].tolist() == [6, 6, 6]
    assert (summary["kept"] + summary["dropped"] == summary["count"]).all()
    assert {"keep_rate", "sim_text_q50", "sim_image_q05", "sim_prompt_q95", "sim_image_mean"} <= set(summary.columns)
    assert (run / "filter" / "summary.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # real embeddings computed once per sample
    from safetensors.torch import load_file

    assert sorted(load_file(str(run / "filter" / "real_embeddings.safetensors"))) == ["s0", "s1", "s2"]


def test_rerun_encodes_nothing_and_new_thresholds_only_reapply_rules(tiny_run, tiny_scorer):
    run, dataset, _ = tiny_run
    first = filter_spectrum(_cfg("filtering.threshold=0.0"), run, scorer=tiny_scorer, dataset=dataset)
    before = _counts(tiny_scorer)
    again = filter_spectrum(_cfg("filtering.threshold=0.0"), run, scorer=tiny_scorer, dataset=dataset)
    assert _counts(tiny_scorer) == before
    assert again.attrs["images_encoded"] == 0
    pd.testing.assert_frame_equal(first, again)
    stricter = filter_spectrum(_cfg("filtering.threshold=0.99"), run, scorer=tiny_scorer, dataset=dataset)
    assert _counts(tiny_scorer) == before
    np.testing.assert_allclose(stricter["sim_text"], first["sim_text"])
    assert first["keep"].all() and not stricter["keep"].any()


def test_changed_template_reencodes_texts_only_and_changed_image_only_that_image(tiny_run, tiny_scorer):
    run, dataset, spectrum = tiny_run
    filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    images, texts = _counts(tiny_scorer)
    out = filter_spectrum(_cfg("filtering.text_template='{name}'"), run, scorer=tiny_scorer, dataset=dataset)
    assert tiny_scorer.images_encoded == images
    assert tiny_scorer.texts_encoded == texts + len(CLASSES)  # one per distinct class text
    name = spectrum["file_name"].iloc[0]
    Image.fromarray(np.full((28, 28), 200, dtype=np.uint8)).save(run / "spectrum" / name)
    out2 = filter_spectrum(_cfg("filtering.text_template='{name}'"), run, scorer=tiny_scorer, dataset=dataset)
    assert tiny_scorer.images_encoded == images + 1
    assert out2.attrs["images_encoded"] == 1
    assert out2["sim_text"].iloc[0] != pytest.approx(out["sim_text"].iloc[0])
    np.testing.assert_allclose(out2["sim_text"].iloc[1:], out["sim_text"].iloc[1:], atol=1e-6)


class _InterruptAfter:
    """The real tiny scorer, interrupted (like Ctrl-C) on its n-th image batch request."""

    def __init__(self, scorer, n: int):
        self.scorer, self.n, self.id = scorer, n, scorer.id

    def encode_images(self, images):
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        return self.scorer.encode_images(images)

    def encode_texts(self, texts):
        return self.scorer.encode_texts(texts)


def test_interrupted_scoring_resumes_without_redoing_finished_chunks(tiny_run, tiny_scorer, monkeypatch):
    run, dataset, spectrum = tiny_run
    monkeypatch.setattr(runner_mod, "FLUSH_EVERY", 5)
    with pytest.raises(KeyboardInterrupt):
        filter_spectrum(_cfg(), run, scorer=_InterruptAfter(tiny_scorer, 2), dataset=dataset)
    cached = read_table(run / "filter" / "scores.parquet")
    assert len(cached) == 10  # two chunks of 5 finished and were written
    assert not (run / "filter" / "manifest.csv").exists()
    images = tiny_scorer.images_encoded
    out = filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    assert out.attrs["images_encoded"] == len(spectrum) - 10
    assert tiny_scorer.images_encoded == images + len(spectrum) - 10 + 3  # + the 3 real sources
    fresh_run = filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    pd.testing.assert_frame_equal(out, fresh_run)


def test_cache_is_per_scorer(tiny_run, tiny_scorer, tmp_path):
    run, dataset, spectrum = tiny_run
    filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    other = create_scorer("transformers", str(testing.save_tiny_transformers_clip(tmp_path / "hf")), device="cpu")
    out = filter_spectrum(_cfg(), run, scorer=other, dataset=dataset)
    assert out.attrs["images_encoded"] == len(spectrum)
    cache = read_table(run / "filter" / "scores.parquet")
    assert sorted(cache["scorer"].unique()) == sorted([tiny_scorer.id, other.id])
    assert len(cache) == 2 * len(spectrum)


def test_bad_inputs_are_named(tiny_run, tiny_scorer):
    run, dataset, spectrum = tiny_run
    (run / "spectrum" / spectrum["file_name"].iloc[3]).unlink()
    with pytest.raises(BadInputError, match="missing"):
        filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    spectrum.drop(columns=["prompt"]).to_csv(run / "spectrum" / "metadata.csv", index=False)
    with pytest.raises(BadInputError, match="prompt"):
        filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)


def test_unknown_sample_id_is_named(tiny_run, tiny_scorer):
    run, dataset, spectrum = tiny_run
    spectrum.assign(sample_id="nope").to_csv(run / "spectrum" / "metadata.csv", index=False)
    with pytest.raises(BadInputError, match="nope"):
        filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)


def test_embeddings_are_normalised_and_batching_does_not_change_them(tiny_scorer, tiny_run):
    run, _, spectrum = tiny_run
    imgs = [Image.open(run / "spectrum" / f) for f in spectrum["file_name"][:6]]
    batched = tiny_scorer.encode_images(imgs)
    single = torch.cat([tiny_scorer.encode_images([im]) for im in imgs])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(batched.norm(dim=1), torch.ones(6))


def test_touched_but_unchanged_file_is_not_reencoded(tiny_run, tiny_scorer):
    import os

    run, dataset, spectrum = tiny_run
    filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    images = tiny_scorer.images_encoded
    path = run / "spectrum" / spectrum["file_name"].iloc[2]
    os.utime(path, ns=(1, 1))  # new mtime, same bytes: the digest decides
    out = filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    assert out.attrs["images_encoded"] == 0 and tiny_scorer.images_encoded == images
    cache = read_table(run / "filter" / "scores.parquet").set_index("file_name")
    assert cache.at[spectrum["file_name"].iloc[2], "stat"].endswith(":1")


def test_a_real_source_replaced_in_place_is_encoded_again(tiny_run, tiny_scorer, tmp_path):
    """Issue 23: the cached CLIP embeddings of the real sources follow their bytes. An image of the user's
    folder replaced under the same name gets a new embedding and new ``sim_image`` scores; the others are
    reused, and a touched image with the same bytes too."""
    import os

    from discl.data.config import DataConfig
    from discl.data.folder import FileImageDataset

    run, arrays, _ = tiny_run
    root = tmp_path / "images"
    root.mkdir()
    frame = arrays.frame.reset_index(drop=True).assign(path=[f"{s}.png" for s in arrays.frame["sample_id"]])
    for sid in frame["sample_id"]:
        arrays.image(sid).save(root / f"{sid}.png")
    dataset = FileImageDataset("user", CLASSES, frame, root, DataConfig(task="folder", root=str(root)))
    first = filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    encoded = tiny_scorer.images_encoded
    st = (root / "s1.png").stat()
    os.utime(root / "s1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset).attrs["images_encoded"] == 0
    assert tiny_scorer.images_encoded == encoded  # touched, same bytes: nothing encoded
    Image.fromarray(np.full((28, 28), 230, dtype=np.uint8)).save(root / "s0.png")  # replaced in place
    again = filter_spectrum(_cfg(), run, scorer=tiny_scorer, dataset=dataset)
    assert tiny_scorer.images_encoded == encoded + 1  # only the new source
    s0 = (again["sample_id"] == "s0").to_numpy()
    assert not np.allclose(again["sim_image"][s0], first["sim_image"][s0])
    np.testing.assert_allclose(again["sim_image"][~s0], first["sim_image"][~s0], atol=1e-6)
