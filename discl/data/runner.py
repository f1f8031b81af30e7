"""``discl data``: where the embedded data comes from, split sizes, fetching, and task previews.

- ``discl data info [--config FILE] [key=value ...]``: the Fashion-MNIST folder in use and the
  split sizes and training class profile of both embedded tasks; for ``data.task: folder|csv`` the
  user's dataset (sizes per split and class, skipped inputs);
- ``discl data fetch [--dest DIR]``: download Fashion-MNIST with torchvision (needs network);
- ``discl data preview --task fmnist-lt --out tasks.png``: a grid per class of prior-pool, task
  training and test images (``fmnist-lq``: training, ID test and OOD test, with the corruption).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from discl.errors import DisclError

log = logging.getLogger(__name__)


def fetch(dest: Path | None = None) -> Path:
    from discl.data import fashion_mnist as fm

    try:
        folder = fm.download(dest)
    except Exception as e:  # noqa: BLE001 - network errors come in many types; the message says what to do
        reason = str(e).splitlines()[0] if str(e) else ""
        raise DisclError(
            f"downloading Fashion-MNIST failed ({type(e).__name__}: {reason}); without network, get it with "
            f"`sudo apt-get install dataset-fashion-mnist` or put the four idx .gz files in a folder and set "
            f"{fm.ENV_VAR}=/that/folder"
        ) from None
    print(f"Fashion-MNIST is in {folder}")
    return folder


def _profile_lines(ds) -> list[str]:
    lines = ["  splits: " + ", ".join(f"{s} {int((ds.frame['split'] == s).sum())}" for s in ds.splits)]
    counts = ds.class_counts("train")
    order = np.argsort(-counts, kind="stable")
    lines.append("  train per class: " + ", ".join(f"{ds.classes[c]} {counts[c]}" for c in order))
    return lines


def info_text(cfg) -> str:
    """The text of ``discl data info`` for a :class:`~discl.data.config.DataConfig`."""
    from discl.data import build_dataset

    if cfg.task in ("fmnist-lt", "fmnist-lq"):
        from discl.data import fashion_mnist as fm
        from discl.data.tasks import build_prior_pool, build_task

        lines = [f"Fashion-MNIST: {fm.find_dir(cfg.root)}"]
        prior = build_prior_pool(cfg.seed, cfg.root)
        lines.append(f"prior pool (the same for every data.seed): {len(prior.frame)} images, "
                     f"{int(prior.class_counts('prior').min())} per class")
        for name in ("fmnist-lt", "fmnist-lq"):
            ds = build_task(name, seed=cfg.seed, folder=cfg.root, val_per_class=cfg.val_per_class, test_limit=cfg.test_limit)
            lines.append(f"{name} (seed {cfg.seed}):")
            lines += _profile_lines(ds)
        return "\n".join(lines)
    ds = build_dataset(cfg)
    lines = [f"{cfg.task} dataset {cfg.root}: {len(ds.frame)} images, {len(ds.classes)} classes"]
    lines += _profile_lines(ds)
    skipped = getattr(ds, "skipped", None)
    if skipped is not None and len(skipped):
        lines.append(f"  skipped {len(skipped)} bad input(s):")
        lines += [f"    {r.path}: {r.reason}" for r in skipped.itertuples()]
    return "\n".join(lines)


# -- preview -------------------------------------------------------------------------------------


def _pick(frame, label: int, n: int, seed: int, group: str) -> list[str]:
    from discl.seeding import numpy_rng

    ids = np.sort(frame.loc[frame["label"] == label, "sample_id"].to_numpy())
    return list(numpy_rng("preview", seed, group, label).permutation(ids)[:n])


def save_preview(task: str, out: Path, seed: int = 0, per_group: int = 3, folder: str | None = None) -> Path:
    """A PNG with one row per class and column groups prior pool | task groups (see module doc)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from discl.artifacts import atomic_write_bytes
    from discl.data.tasks import build_prior_pool, build_task

    prior = build_prior_pool(seed, folder)
    ds = build_task(task, seed=seed, folder=folder, test_limit=1000)
    groups = [("prior pool", prior, prior.frame)]
    groups.append(("task train", ds, ds.split("train")))
    if task == "fmnist-lt":
        groups.append(("test", ds, ds.split("test")))
    else:
        groups += [("test (ID)", ds, ds.split("test")), ("test (OOD)", ds, ds.split("test_ood"))]
    counts = ds.class_counts("train")
    n_cols = len(groups) * per_group
    fig, axes = plt.subplots(10, n_cols, figsize=(n_cols * 0.9 + 1.6, 10 * 0.98 + 0.6), squeeze=False)
    for c in range(10):
        for g, (title, source, frame) in enumerate(groups):
            ids = _pick(frame, c, per_group, seed, title)
            for k in range(per_group):
                ax = axes[c, g * per_group + k]
                ax.set_xticks([])
                ax.set_yticks([])
                for side in ax.spines.values():
                    side.set_visible(False)
                if k >= len(ids):
                    continue
                ax.imshow(np.asarray(source.image(ids[k]).convert("L")), cmap="gray", vmin=0, vmax=255)
                if "corruption" in frame.columns:
                    ax.set_title(str(frame.at[ids[k], "corruption"]).replace("_", " "), fontsize=6, pad=1)
                if c == 0 and k == 0:
                    ax.text(0, 1.32 if "corruption" in frame.columns else 1.08, title, transform=ax.transAxes,
                            fontsize=10, fontweight="bold", va="bottom")
        axes[c, 0].set_ylabel(f"{ds.classes[c]}\n({counts[c]} train)", rotation=0, ha="right", va="center", fontsize=8)
        axes[c, 0].yaxis.set_visible(True)
    fig.suptitle(f"{task} (seed {seed}): prior pool vs task images", fontsize=12)
    fig.tight_layout(rect=(0, 0, 1, 0.97), h_pad=0.5 if task == "fmnist-lq" else 0.2, w_pad=0.1)
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    out = Path(out)
    atomic_write_bytes(out, buf.getvalue())
    return out
