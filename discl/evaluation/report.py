"""The run report: a self-contained HTML page (figures embedded) and a Markdown summary.

Built only from the run folder's artifacts, so it can be rewritten at any time (``discl report``):
the spectrum sheet (sources x lambda x seeds, dropped images outlined in red), keep rates and score
distributions per lambda, the level chosen over training, learning curves, the results table and
per-class accuracy.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from discl.artifacts import atomic_write_bytes, atomic_write_text, read_json, write_table

log = logging.getLogger(__name__)

VAL_COLUMNS = ("val_top1", "val_macro_f1")
LOSS_COLUMNS = ("train_loss", "loss")



def _filter_text(f) -> str:
    """The CLIP filter's rule in words: what a kept image must score (the run's thresholds)."""
    score = {"text": "sim_text", "prompt": "sim_prompt", "image": "sim_image"}[f.score]
    parts = [f"keeps {score} ≥ {f.threshold:g}" if f.threshold is not None else f"no global threshold on {score}"]
    if f.per_level:
        parts.append("per λ " + ", ".join(f"{k}: {v:g}" for k, v in sorted(f.per_level.items(), key=lambda kv: float(kv[0]))))
    if f.per_class:
        parts.append("per class " + ", ".join(f"{k}: {v:g}" for k, v in sorted(f.per_class.items())))
    if f.top_q is not None:
        parts.append(f"best {f.top_q:g} of each source and λ")
    if f.retries:
        parts.append(f"{f.retries} retr{'y' if f.retries == 1 else 'ies'} of dropped cells")
    return "; ".join(parts)


def _steps_text(cfg, manifest) -> str:
    """The schedule lengths the spectrum's images were made with (its rows' ``steps`` per λ), else the
    config's; with the embedded prior's conditioning style (the manifest's, else the config's or the
    one the prior stores). A spectrum made under
    overrides the run's config.yaml does not hold says what it holds, and says that it differs."""
    g = cfg.generation
    text = g.steps_text()
    if manifest is not None and {"lam", "steps"} <= set(manifest.columns) and len(manifest):
        per = manifest.groupby("lam")["steps"].agg(lambda s: sorted({int(v) for v in s.dropna()}))
        made = {float(lam): v for lam, v in per.items() if v}
        if made and any(v != [g.steps_at(lam)] for lam, v in made.items()):
            listed = ", ".join(f"λ {lam:g}: {'/'.join(map(str, v))}" for lam, v in sorted(made.items()))
            text = f"steps as made {listed} (the config says {text})"
    if g.backend == "embedded":  # the style the images were made with (the manifest's column), else the config's
        made = sorted({str(v) for v in manifest["condition_style"].dropna() if str(v)}) \
            if manifest is not None and "condition_style" in manifest.columns else []
        if made:
            style = "/".join(made)
        else:
            from discl.fingerprint import prior_condition_style

            style = g.condition_style or prior_condition_style(g.model)
        if style:
            text += f", conditioned on {style}"
    return text


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return buf.getvalue()


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, OSError) as e:
        log.warning("report: cannot read %s: %s", path, e)
        return None


def _first(frame: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((c for c in names if c in frame.columns), None)


# -- figures ---------------------------------------------------------------------------------


def _font(size: int = 13):
    """DejaVu Sans (shipped with matplotlib: it has λ), else Pillow's default font."""
    from PIL import ImageFont

    try:
        import matplotlib

        return ImageFont.truetype(str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"), size)
    except (OSError, ImportError):
        return ImageFont.load_default()


def spectrum_sheet(run_dir: Path, manifest: pd.DataFrame, sources: int = 6, seeds: int = 3, cell: int = 56,
                   classes: list[str] | None = None) -> bytes | None:
    """Rows: (source, seed), labelled with the class name; columns: λ ascending, then the real image.
    Dropped = red outline."""
    if manifest is None or not len(manifest):
        return None

    m = manifest.copy()
    picked = []
    for _, grp in m.groupby("label", sort=True):
        picked.append(grp["sample_id"].iloc[0])
    picked = picked[:sources]
    levels = sorted(m["lam"].unique())
    ks = sorted(m["k"].unique())[:seeds]
    rows = [(s, k) for s in picked for k in ks]
    cols = len(levels) + 1
    font, small = _font(13), _font(11)
    pad, head, left = 4, 22, 110
    sheet = Image.new("RGB", (left + cols * (cell + pad) + pad, len(rows) * (cell + pad) + pad + head), "white")
    draw = ImageDraw.Draw(sheet)
    for j, lam in enumerate(levels):
        draw.text((left + pad + j * (cell + pad) + 2, 3), f"λ = {lam:g}", fill="black", font=font)
    draw.text((left + pad + len(levels) * (cell + pad) + 2, 3), "real", fill="black", font=font)
    spec_dir = run_dir / "spectrum"
    for i, (sid, k) in enumerate(rows):
        y = head + pad + i * (cell + pad)
        src = m[m["sample_id"] == sid].iloc[0]
        name = str(src["class_name"]) if "class_name" in m.columns else (
            classes[int(src["label"])] if classes and 0 <= int(src["label"]) < len(classes) else f"class {src['label']}")
        draw.text((pad, y + cell // 2 - 14), name[:16], fill="black", font=font)
        draw.text((pad, y + cell // 2 + 2), f"seed {k}", fill="#666", font=small)
        for j, lam in enumerate(levels):
            r = m[(m["sample_id"] == sid) & (m["lam"] == lam) & (m["k"] == k)]
            if not len(r):
                continue
            row = r.iloc[0]
            try:
                img = Image.open(spec_dir / row["file_name"]).convert("RGB").resize((cell, cell), Image.Resampling.NEAREST)
            except OSError:
                continue
            x = left + pad + j * (cell + pad)
            sheet.paste(img, (x, y))
            if "keep" in r.columns and not _truthy(row["keep"]):
                draw.rectangle([x - 2, y - 2, x + cell + 1, y + cell + 1], outline="red", width=2)
        real = _real_image(run_dir, sid)
        if real is not None:
            sheet.paste(real.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                        (left + pad + len(levels) * (cell + pad), y))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    return buf.getvalue()


def _truthy(v) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def _real_image(run_dir: Path, sample_id: str) -> Image.Image | None:
    """The real source image, from the run's copy of the sources when present, else the dataset."""
    for cand in (run_dir / "spectrum" / "sources" / f"{sample_id}.png",):
        if cand.is_file():
            return Image.open(cand)
    try:
        from discl.config import load_config
        from discl.data import build_dataset

        cfg = load_config(run_dir / "config.yaml")
        return build_dataset(cfg.data).image(sample_id)
    except Exception as e:  # noqa: BLE001 - the report degrades rather than fails
        log.debug("report: no real image for %s: %s", sample_id, e)
        return None


def filter_figure(manifest: pd.DataFrame) -> bytes | None:
    if manifest is None or "keep" not in manifest.columns or not len(manifest):
        return None
    plt = _plt()
    levels = sorted(manifest["lam"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    rates = [manifest.loc[manifest["lam"] == lv, "keep"].astype(bool).mean() for lv in levels]
    axes[0].bar([f"{lv:g}" for lv in levels], rates, color="#4a7")
    axes[0].set_ylim(0, 1)
    axes[0].set_xlabel("λ")
    axes[0].set_ylabel("keep rate")
    axes[0].set_title("CLIP filter keep rate per λ")
    score = "sim_text" if "sim_text" in manifest.columns else None
    if score:
        data = [manifest.loc[manifest["lam"] == lv, score].astype(float).to_numpy() for lv in levels]
        axes[1].boxplot(data, tick_labels=[f"{lv:g}" for lv in levels])
        if "sim_image" in manifest.columns:
            img = [manifest.loc[manifest["lam"] == lv, "sim_image"].astype(float).mean() for lv in levels]
            axes[1].plot(range(1, len(levels) + 1), img, "o-", color="#c52", label="mean image–source cos")
            axes[1].legend(fontsize=8)
        axes[1].set_xlabel("λ")
        axes[1].set_title("image–text cosine per λ")
    fig.tight_layout()
    return _png(fig)


def training_figures(run_dir: Path, methods: list[str], seed: int) -> tuple[bytes | None, bytes | None]:
    """(learning curves, lambda chosen over epochs) for the first seed of each method."""
    logs = {}
    for m in methods:
        df = _read_csv(run_dir / "train" / f"{m}-s{seed}" / "log.csv")
        if df is not None and len(df):
            logs[m] = df
    if not logs:
        return None, None
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for m, df in logs.items():
        x = df["epoch"] if "epoch" in df.columns else np.arange(len(df))
        v = _first(df, VAL_COLUMNS)
        lo = _first(df, LOSS_COLUMNS)
        if v:
            axes[0].plot(x, df[v], label=m)
        if lo:
            axes[1].plot(x, df[lo], label=m)
    axes[0].set_title("validation accuracy")
    axes[1].set_title("training loss")
    from matplotlib.ticker import MaxNLocator

    for a in axes:
        a.set_xlabel("epoch")
        a.xaxis.set_major_locator(MaxNLocator(integer=True))
        a.legend(fontsize=8)
    fig.tight_layout()
    curves = _png(fig)
    chosen = None
    with_level = {m: lv for m, df in logs.items() if (lv := level_series(df)) is not None}
    if with_level:
        fig, ax = plt.subplots(figsize=(10, 2.8))
        for i, (m, (x, y)) in enumerate(with_level.items()):
            xs, ys = np.append(x, x[-1] + 1), np.append(y, y[-1])  # the last epoch drawn to its end
            (line,) = ax.step(xs, ys + 0.01 * i, where="post", label=m, lw=2)
            for j, yc in enumerate(class_level_series(logs[m], y).values()):  # adaptive_class: dotted, one per class
                ax.step(x, yc + 0.01 * i, where="post", color=line.get_color(), lw=0.8, ls=":", alpha=0.6,
                        label=f"{m}, per class" if j == 0 else None)
        from matplotlib.ticker import MaxNLocator

        x0, y0 = next(iter(with_level.values()))
        real = np.isclose(y0, 1.0)
        for e, is_real in zip(x0, real):  # the real-only stage of the first method, shaded
            if is_real:
                ax.axvspan(e, e + 1, color="#9bd", alpha=0.35, lw=0,
                           label="real only" if e == x0[real][0] else None)
        ax.set_ylabel("λ (1 = real only)")
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(float(np.min(x0)), float(np.max(x0)) + 1)
        ax.set_ylim(-0.05, 1.1)
        ax.set_title("guidance level trained on, per epoch")
        ax.legend(fontsize=8)
        fig.tight_layout()
        chosen = _png(fig)
    return curves, chosen


def level_series(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(epochs, lambda trained on) from a training log: 1 = real only, mean lambda for mixed stages."""
    if "stage" not in df.columns:
        return None

    def parse(v) -> float:
        text = str(v).split(" [")[0]  # per-class stages: "0.5 [3:0.9 7:real]", the global level first
        if text == "real" or text == "nan":
            return 1.0
        try:
            return float(np.mean([float(t) for t in text.split("+")]))
        except ValueError:
            return float("nan")

    x = df["epoch"].to_numpy() if "epoch" in df.columns else np.arange(len(df))
    return x, np.array([parse(v) for v in df["stage"]])


def class_level_series(df: pd.DataFrame, global_levels: np.ndarray) -> dict[int, np.ndarray]:
    """Per class, the λ it trained on in per-class stages (``"0.5 [3:0.9 7:real]"``): its own level
    where the stage lists it, the global one elsewhere. Empty for logs without per-class stages.
    """
    own: dict[int, dict[int, float]] = {}
    for i, v in enumerate(df["stage"].astype(str)):
        if " [" in v:
            for item in v.split(" [", 1)[1].rstrip("]").split():
                c, _, lv = item.partition(":")
                own.setdefault(int(c), {})[i] = 1.0 if lv == "real" else float(lv)
    return {c: np.array([levels.get(i, g) for i, g in enumerate(global_levels)]) for c, levels in sorted(own.items())}


def per_class_figure(run_dir: Path, methods: list[str], seeds: list[int], classes: list[str]) -> bytes | None:
    accs = {}
    for m in methods:
        vals = []
        for s in seeds:
            p = run_dir / "train" / f"{m}-s{s}" / "metrics.json"
            if p.is_file():
                pc = read_json(p).get("test", {}).get("per_class")
                if isinstance(pc, dict):
                    pc = [pc.get(c, float("nan")) for c in classes] if classes else list(pc.values())
                if pc:
                    vals.append(pc)
        if vals:
            accs[m] = np.mean(np.array(vals, dtype=float), axis=0)
    if not accs:
        return None
    plt = _plt()
    n = len(next(iter(accs.values())))
    names = classes if len(classes) == n else [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(10, 3.2))
    w = 0.8 / len(accs)
    for i, (m, a) in enumerate(accs.items()):
        ax.bar(np.arange(n) + i * w, a, width=w, label=m)
    ax.set_xticks(np.arange(n) + 0.4 - w / 2)
    ax.set_xticklabels(names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("per-class test accuracy (training images per class in the table below)")
    fig.tight_layout()
    return _png(fig)


# -- page -----------------------------------------------------------------------------------


def _img_tag(png: bytes | None, alt: str) -> str:
    if not png:
        return f"<p class='missing'>({html.escape(alt)}: no data in this run)</p>"
    b64 = base64.b64encode(png).decode("ascii")
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{b64}'>"


def _md_table(frame: pd.DataFrame) -> str:
    if frame is None or not len(frame):
        return "(none)"
    cols = list(frame.columns)
    lines = ["| " + " | ".join(map(str, cols)) + " |", "|" + "---|" * len(cols)]
    for _, r in frame.iterrows():
        lines.append("| " + " | ".join(_fmt(r[c]) for c in cols) + " |")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    """Counts as integers (``30``, not ``30.000``), other numbers with 3 decimals, NaN as empty."""
    if isinstance(v, float | np.floating):
        if np.isnan(v):
            return ""
        return f"{int(v)}" if float(v).is_integer() else f"{v:.3f}".rstrip("0").rstrip(".")
    return str(v)


def _md_to_html_table(md: str) -> str:
    lines = [ln for ln in md.strip().splitlines() if ln.startswith("|")]
    if len(lines) < 2:
        return f"<pre>{html.escape(md)}</pre>"
    head = [c.strip() for c in lines[0].strip("|").split("|")]
    body = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines[2:]]
    # "sim_text_mean" -> "sim text mean": headers wrap, so a wide table still fits the page
    out = ["<table><tr>" + "".join(f"<th>{html.escape(h.replace('_', ' '))}</th>" for h in head) + "</tr>"]
    out += ["<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in body]
    return "\n".join(out) + "</table>"


CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;background:#fff}
h1{font-size:1.6em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;display:block;max-width:100%;overflow-x:auto}
td,th{border:1px solid #ccc;padding:3px 6px;font-size:.85em;text-align:right} th{white-space:normal;min-width:2.5em}
pre{white-space:pre-wrap;word-break:break-word;max-width:100%}
th{background:#f4f4f4} img{max-width:100%;height:auto;box-sizing:border-box;border:1px solid #eee} .missing{color:#999} code{background:#f4f4f4}
"""

CHECK_SCRIPT = """
<script>
window.addEventListener('load', function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length;
  document.body.setAttribute('data-images-loaded', ok + '/' + imgs.length);
  var wide = Array.prototype.slice.call(document.querySelectorAll('table,img,pre')).filter(function (e) {
    return e.getBoundingClientRect().right > document.documentElement.clientWidth + 1
      || e.scrollWidth > e.clientWidth + 1; }).length;  // a table that only fits by scrolling counts too
  document.body.setAttribute('data-overflowing', String(wide));
});
</script>
"""


def write_report(cfg, run_dir: Path, fingerprints: dict | None = None) -> Path:
    """Write RUN/report.html and RUN/report.md from the run's artifacts; returns the HTML path.

    ``fingerprints``: :func:`discl.fingerprint.model_fingerprints` of ``cfg`` (computed when not
    given); they key the cached distances per level.
    """
    from discl.evaluation.results import collect_results, headline_table

    run_dir = Path(run_dir)
    manifest = _read_csv(run_dir / "filter" / "manifest.csv")
    if manifest is None:
        manifest = _read_csv(run_dir / "spectrum" / "metadata.csv")
    hard = _read_csv(run_dir / "mining" / "hard.csv")
    fsum = _compact_filter_summary(_read_csv(run_dir / "filter" / "summary.csv"))
    results = collect_results(cfg, run_dir)
    write_table(run_dir / "results.csv", results)  # `discl report` and `discl run` alike: the current config's runs
    table = headline_table(cfg, results) if len(results) else "(no training run finished yet)"
    atomic_write_text(run_dir / "headline.md", table + "\n")  # with results.csv: a rerun report never leaves it stale
    others = other_runs(cfg, run_dir)
    from discl.evaluation.leakage import leakage_section

    paired = paired_section(results) + leakage_section(run_dir)
    seed0 = cfg.seeds[0]
    classes = _classes(cfg)
    sheet = spectrum_sheet(run_dir, manifest, classes=classes)
    filt = filter_figure(manifest)
    curves, chosen = training_figures(run_dir, cfg.methods, seed0)
    per_class = per_class_figure(run_dir, cfg.methods, cfg.seeds, classes)
    figs = {"spectrum.png": sheet, "filter.png": filt, "curves.png": curves, "levels.png": chosen, "per_class.png": per_class}
    for name, png in figs.items():
        if png:
            atomic_write_bytes(run_dir / "report" / name, png)

    distances = _distances(cfg, run_dir, fingerprints)
    dist_png = distance_figure(distances)
    if dist_png:
        atomic_write_bytes(run_dir / "report" / "distance.png", dist_png)
    counts = _class_counts_table(cfg, hard)
    weights = _weights_lines(run_dir)
    n_syn = len(manifest) if manifest is not None else 0
    kept = int(manifest["keep"].astype(bool).sum()) if manifest is not None and "keep" in manifest.columns else n_syn
    md = [
        f"# DisCL run: {cfg.name}",
        "",
        f"Task `{cfg.data.task}`; generator `{cfg.generation.backend}:{cfg.generation.model}` "
        f"(λ {cfg.generation.levels}, {cfg.generation.seeds_per_level} seed{'s' * (cfg.generation.seeds_per_level != 1)} per level, {_steps_text(cfg, manifest)}, "
        f"CFG {cfg.generation.guidance_scale}); CLIP `{cfg.filtering.backend}:{cfg.filtering.model}` "
        f"({_filter_text(cfg.filtering)}); "
        f"curriculum `{cfg.curriculum.strategy}`; model `{_model_label(cfg.training)}`, {cfg.training.epochs} epochs; "
        f"seeds {cfg.seeds}. {_selection_text(counts)}; figures are on the test split.",
        "",
        "## Results (test split, %, mean ± std over seeds)",
        "",
        table,
        "",
        f"Hard images: {0 if hard is None else len(hard)}; synthetic images: {n_syn} generated, {kept} kept by the filter. "
        "*Synthetic images seen*: synthetic samples drawn over the training run; *denoiser steps (pool)*: denoiser "
        "evaluations spent on the synthetic images the method could draw from (its levels, kept or not; ×2 with "
        "classifier-free guidance).",
        "",
        "## Other finished training runs in this folder (not among the config's methods × seeds; each was "
        "trained under the config.yaml in its own folder, which may differ from this one; not in results.csv)",
        "",
        _md_table(others),
        "",
        *paired,
        "## Weights (the models that produced each stage, from RUN/.stages)",
        "",
        *weights,
        "",
        "## Filter per λ (median and mean cosine; every quantile in filter/summary.csv)",
        "",
        _md_table(fsum) if fsum is not None else "(no filter summary)",
        "",
        "## Distance of each λ to real data (CLIP embeddings of the kept images; λ = 1: the real hard sources; "
        "every row at the same n per class, mean over seeded subsamples, MMD² 5-95 % interval over them, none for a "
        "row measured whole, as λ = 1 always is; within a level, MMD² "
        "compares only images made from different sources, since the real row has one image per source)",
        "",
        DISTANCE_NOTE,
        "",
        _md_table(_named_missing(distances, classes)) if distances is not None else "(no filter embeddings)",
        "",
        "## Classes (training images per class, hard images per class)",
        "",
        _md_table(counts),
        "",
        "Figures: report/spectrum.png, report/filter.png, report/curves.png, report/levels.png, report/per_class.png",
        "",
    ]
    atomic_write_text(run_dir / "report.md", "\n".join(md))

    page = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>DisCL report: {html.escape(cfg.name)}</title><style>{CSS}</style></head><body>",
        f"<h1>DisCL run: {html.escape(cfg.name)}</h1>",
        f"<p>{html.escape(md[2])}</p>",
        "<h2>Results (test split, %, mean ± std over seeds)</h2>",
        _md_to_html_table(table) if len(results) else "<p>(no training run finished yet)</p>",
        f"<p>Hard images: {0 if hard is None else len(hard)}; synthetic images: {n_syn} generated, {kept} kept.</p>",
        ("<h2>Other finished training runs in this folder</h2>" + _md_to_html_table(_md_table(others))
         if len(others) else ""),
        *(f"<h3>{html.escape(x[4:])}</h3>" if x.startswith("### ") else _md_to_html_table(x) if x.startswith("|")
          else f"<p>{html.escape(x)}</p>" for x in paired if x),
        "<h2>Weights</h2><ul>" + "".join(f"<li>{html.escape(w[2:])}</li>" for w in weights) + "</ul>",
        "<h2>Synthetic-to-real spectrum</h2>",
        f"<p>Rows: hard source image × seed; columns: image guidance λ from {_spectrum_from(cfg)} to the real image. "
        "Images the CLIP filter dropped are outlined in red."
        + (" Note: λ = 0 in image-to-image mode still lets a little of the source's layout leak through."
           if 0.0 in [float(v) for v in cfg.generation.levels] and not cfg.generation.text_to_image_at_zero else "")
        + "</p>",
        _img_tag(sheet, "spectrum sheet"),
        "<h2>CLIP filter: keep rate and scores per λ</h2>",
        _img_tag(filt, "filter per lambda"),
        _md_to_html_table(_md_table(fsum)) if fsum is not None else "",
        "<h2>How far is each λ from the real data?</h2>",
        "<p>MMD² (RBF kernel) and Fréchet distance between the CLIP image embeddings of each level's synthetic images "
        "and real test images of the same classes; λ = 1 is the real hard sources. Every row at the same sample "
        "size per class; within a level, MMD² compares only images made from different sources, so a level of "
        "near-copies of the sources reads as the real row does.</p>",
        f"<p>{html.escape(DISTANCE_NOTE)}</p>",
        _img_tag(dist_png, "distance per lambda"),
        _md_to_html_table(_md_table(_named_missing(distances, classes))) if distances is not None else "",
        "<h2>Guidance level over training</h2>",
        _img_tag(chosen, "level chosen per epoch"),
        f"<h2>Learning curves (seed {seed0})</h2>",
        _img_tag(curves, "learning curves"),
        "<h2>Per-class test accuracy</h2>",
        _img_tag(per_class, "per-class accuracy"),
        _md_to_html_table(_md_table(counts)),
        "<h2>Config</h2>",
        f"<pre>{html.escape(json.dumps(cfg.to_dict(), indent=1))}</pre>",
        CHECK_SCRIPT,
        "</body></html>",
    ]
    out = run_dir / "report.html"
    atomic_write_text(out, "\n".join(page))
    return out


def _compact_filter_summary(fsum: pd.DataFrame | None) -> pd.DataFrame | None:
    """The filter summary without its outer quantiles (q05/q25/q75/q95): a table that fits the page.
    The full table stays in ``RUN/filter/summary.csv``."""
    if fsum is None:
        return None
    return fsum[[c for c in fsum.columns if not re.search(r"_q(05|25|75|95)$", str(c))]]


def _spectrum_from(cfg) -> str:
    """Where the generated spectrum starts, in words: text-driven at λ = 0, else its lowest level."""
    low = min(float(v) for v in cfg.generation.levels)
    return "text-driven (0)" if low == 0.0 else f"λ = {low:g} (the lowest level generated)"


def other_runs(cfg, run_dir: Path) -> pd.DataFrame:
    """Finished runs under ``RUN/train/`` that the config's methods × seeds do not name (``discl train
    --curriculum mixed``, an earlier config's seed): listed, so that every finished run is found."""
    from discl.artifacts import read_json
    from discl.evaluation.results import training_order
    from discl.methods import run_folder

    named = {run_folder(m, s) for m in training_order(cfg) for s in cfg.seeds}
    rows = []
    for path in sorted((Path(run_dir) / "train").glob("*/metrics.json")):
        if path.parent.name in named:
            continue
        try:
            m = read_json(path)
        except Exception:  # noqa: BLE001 - a broken file is not a finished run
            continue
        test = m.get("test") or {}
        rows.append({"run": path.parent.name, "kind": m.get("kind", ""), "strategy": m.get("strategy", m.get("variant", "")),
                     "seed": m.get("seed", ""), "top1 %": _pct(test.get("top1")), "macro-F1 %": _pct(test.get("macro_f1"))})
    return pd.DataFrame(rows)


def _pct(v) -> str:
    return "" if v is None else f"{100 * float(v):.1f}"


def paired_section(results: pd.DataFrame, reference: str = "discl") -> list[str]:
    """Markdown lines: each method's paired difference to DisCL over the same seeds, with its 95 %
    interval (:mod:`discl.evaluation.stats`); empty when DisCL or another method has no run. A table
    is one line starting with ``|`` (tables joined by newlines), the heading starts with ``### ``."""
    from discl.evaluation.stats import paired_table

    if "status" in results.columns:  # only runs of the current config (missing ones are listed above)
        results = results[results["status"] == "ok"]
    if not len(results) or "method" not in results.columns or reference not in set(results["method"]):
        return []
    metrics = [m for m in ("test.top1", "test.few", "test.macro_f1", "test_ood.macro_f1") if m in results.columns]
    table = paired_table(results, metrics, reference=reference)
    if not len(table):
        return []
    lines = ["| method | " + " | ".join(f"Δ {m} vs {reference}" for m in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    lines += ["| " + " | ".join([str(r["method"]), *(str(r.get(f"{m}.text", "")) for m in metrics)]) + " |"
              for _, r in table.iterrows()]
    return [f"### Paired difference to {reference} (points, 95 % paired-t interval over the same seeds)", "",
            "\n".join(lines), "",
            "A difference is stated only when its interval excludes 0; otherwise the cell says \"no detectable difference at n = …\".", ""]


def _distances(cfg, run_dir: Path, fingerprints: dict | None = None) -> pd.DataFrame | None:
    """Distances per level, recomputed only when the filter's output, the CLIP or the settings changed."""
    try:
        from discl.evaluation.distance import cached_spectrum_distances
        from discl.evaluation.results import stage_digest

        if fingerprints is None:
            from discl.fingerprint import model_fingerprints

            fingerprints = model_fingerprints(cfg)
        return cached_spectrum_distances(cfg, run_dir, stage_digest(cfg, "filter", fingerprints, run_dir),
                                         fingerprints.get("filtering"))
    except Exception as e:  # noqa: BLE001 - the report degrades rather than fails
        log.warning("report: no distance per level: %s", e)
        return None


def _weights_lines(run_dir: Path) -> list[str]:
    """``- section.field: fingerprint`` for every model recorded in the run's stage markers."""
    from discl.fingerprint import short

    seen: dict[str, str] = {}
    for marker in sorted((run_dir / ".stages").glob("*.json")):
        try:
            models = read_json(marker).get("models") or {}
        except (OSError, ValueError):
            continue
        for section, fields in models.items():
            for name, fp in fields.items():
                seen.setdefault(f"{section}.{name}", short(fp))
    return [f"- {k}: {v}" for k, v in sorted(seen.items())] or ["- (no stage recorded its models)"]


DISTANCE_NOTE = ("Class-conditional: each level's images of a class are compared with real test images of that "
                 "class, and a row is the mean over classes with equal weight, so the class mix the filter left "
                 "does not count as distance. classes: how many classes a row averages over; missing: the classes "
                 "it lacks (under two kept images, or images of one source only), left out of its mean, so compare "
                 "such a row with the others with care.")


def _named_missing(distances: pd.DataFrame | None, classes: list[str]) -> pd.DataFrame | None:
    """The ``missing`` column's class labels as class names (``"3 7"`` -> ``"dress, sneaker"``)."""
    if distances is None or "missing" not in distances.columns:
        return distances

    def names(v: Any) -> str:
        labels = [] if not isinstance(v, str) and pd.isna(v) else str(v).split()
        return ", ".join(classes[int(t)] if t.isdigit() and int(t) < len(classes) else t for t in labels)

    return distances.assign(missing=distances["missing"].map(names))


def distance_figure(distances: pd.DataFrame | None) -> bytes | None:
    if distances is None or not len(distances):
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 2.8))
    ax.plot(distances["lam"], distances["mmd2"], "o-", label="MMD²")
    ax2 = ax.twinx()
    ax2.plot(distances["lam"], distances["frechet"], "s--", color="#c52", label="Fréchet")
    if "classes_missing" in distances.columns:  # a mean over fewer classes: say so at the point
        for r in distances[(distances["classes_missing"] > 0) & distances["mmd2"].notna()].itertuples():
            ax.annotate(f"−{r.classes_missing} class{'es' * (r.classes_missing != 1)}", (r.lam, r.mmd2),
                        textcoords="offset points", xytext=(3, 5), fontsize=7, color="#a00")
    ax.set_xlabel("λ (1 = real sources)")
    ax.set_ylabel("MMD²")
    ax2.set_ylabel("Fréchet")
    ax.set_title("class-conditional distance to real test images", loc="left", fontsize=9)
    fig.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    return _png(fig)


def _classes(cfg) -> list[str]:
    """The class names in label order: the config's, else the dataset's (a csv/folder's sorted names)."""
    if cfg.data.class_names:
        return list(cfg.data.class_names)
    try:
        from discl.data import build_dataset

        return list(build_dataset(cfg.data).classes)
    except Exception as e:  # noqa: BLE001 - the report degrades rather than fails
        log.debug("report: dataset unavailable for class names: %s", e)
    if cfg.data.task.startswith("fmnist"):
        from discl.data.fashion_mnist import CLASSES

        return list(CLASSES)
    return []


def _class_counts_table(cfg, hard: pd.DataFrame | None) -> pd.DataFrame:
    try:
        from discl.data import build_dataset

        ds = build_dataset(cfg.data)
    except Exception as e:  # noqa: BLE001 - the report degrades rather than fails
        log.debug("report: dataset unavailable: %s", e)
        return pd.DataFrame()
    counts = ds.class_counts("train")
    hard_counts = np.zeros(len(ds.classes), dtype=int)
    if hard is not None and len(hard):
        hard_counts = np.bincount(hard["label"].to_numpy(dtype=int), minlength=len(ds.classes))
    bins = ["many" if c >= cfg.data.many_threshold else ("few" if c < cfg.data.few_threshold else "medium") for c in counts]
    table = pd.DataFrame({"class": ds.classes, "train images": counts, "group": bins, "hard images": hard_counts})
    try:
        table["val images"] = ds.class_counts("val")  # checkpoints are selected on these
    except Exception as e:  # noqa: BLE001 - a dataset without a validation split: the column is left out
        log.debug("report: no validation counts: %s", e)
    return table


def _selection_text(counts: pd.DataFrame) -> str:
    """How checkpoints are selected, naming the classes the validation split lacks (pure)."""
    text = "Checkpoints are selected on the validation split"
    if "val images" in counts.columns and (counts["val images"] == 0).any():
        lacking = counts.loc[counts["val images"] == 0, "class"].astype(str).tolist()
        text += (f", which has no image of {len(lacking)} class{'es' * (len(lacking) != 1)} ("
                 f"{', '.join(lacking[:10])}{', ...' if len(lacking) > 10 else ''}): the selection does not see "
                 f"{'them' if len(lacking) != 1 else 'it'}")
    return text


# -- CLI --------------------------------------------------------------------------------------


def _model_label(t) -> str:
    """The classifier as the report names it (pure): ``clip (embedded, FLYP)`` rather than ``clip``."""
    if t.model != "clip":
        return t.model
    return f"clip ({t.clip_model}{'/' + t.clip_pretrained if t.clip_pretrained else ''}{', FLYP' if t.loss == 'flyp' else ''})"
