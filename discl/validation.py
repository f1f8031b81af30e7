"""Everything about a run config that can be checked before any work starts.

The typed config (:mod:`discl.config`) checks each value on its own; this module checks what needs
the registries, the data or the model cache: method and strategy names, the classifier's name in
timm's / torchvision's registry, the curriculum against the generated levels, prompt templates and
descriptions, the classes against the data, the embedded backends against the task, and that every
model's weights are reachable (local or cached, or the hub answers). ``discl run`` and every
config-driven command call :func:`validate_run_config` before creating any stage folder, so a typo
costs seconds, not the hours of mining, generation and filtering that run before training.

Each problem is reported on its own line, naming the key and the valid choices; all problems of a
config are reported at once.
"""

from __future__ import annotations

import json
import logging
import math
import string
from pathlib import Path
from typing import Any

from discl.configtools import ConfigError
from discl.errors import BadInputError, shown
from discl.methods import INIT_BASELINES

log = logging.getLogger(__name__)

EMBEDDED_TASKS = ("fmnist-lt", "fmnist-lq")  # the tasks the shipped prior and CLIP were trained on


def template_problem(template: str) -> str | None:
    """Why a prompt template cannot be filled with only ``{name}`` (pure), or None."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as e:  # "Single '}' encountered", "expected '}' before end of string"
        return f"unbalanced braces ({e}); write a literal brace as {{{{ or }}}}"
    bad = sorted({f for f in fields if f != "name"})
    if bad:
        return f"placeholder(s) {', '.join('{' + b + '}' for b in bad)}: only {{name}} is filled in"
    if "name" not in fields:
        return "must contain {name}"
    return None


class _DuplicateKeyLoader:
    """Build a YAML SafeLoader that rejects duplicate mapping keys (plain YAML keeps the last one)."""

    @staticmethod
    def loader():
        import yaml

        class Loader(yaml.SafeLoader):
            pass

        def construct(loader, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = loader.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ConfigError(f"class {key!r} is listed twice")
                seen.add(key)
            return yaml.SafeLoader.construct_mapping(loader, node, deep)

        Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct)
        return Loader


def descriptions_problems(path: Path) -> list[str]:
    """Problems of a descriptions file ({class: [description, ...]}), each naming the class."""
    import yaml

    key = "prompts.descriptions_file"
    if not path.is_file():
        return [f"{key}: file not found: {path.resolve()}"]
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix == ".json":
            def pairs(items):
                seen = set()
                for k, _ in items:
                    if k in seen:
                        raise ConfigError(f"class {k!r} is listed twice")
                    seen.add(k)
                return dict(items)

            data = json.loads(text, object_pairs_hook=pairs)
        else:
            loader = _DuplicateKeyLoader.loader()(text)  # a SafeLoader subclass that refuses duplicate keys
            try:
                data = loader.get_single_data()
            finally:
                loader.dispose()
    except ConfigError as e:
        return [f"{key}: {path}: {e}"]
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        return [f"{key}: {path}: cannot parse: {str(e).splitlines()[0]}"]
    if not isinstance(data, dict) or not data:
        return [f"{key}: {path}: must map class names to lists of descriptions"]
    out = []
    for name, descs in data.items():
        if isinstance(descs, str):
            descs = [descs]
        if not isinstance(descs, list) or not descs:
            out.append(f"{key}: {path}: class {name!r} has no descriptions (an empty list); give at least one or drop it")
        elif not all(isinstance(d, str) and d.strip() for d in descs):
            out.append(f"{key}: {path}: descriptions of class {name!r} must be non-empty strings")
    return out


def _method_problems(cfg) -> list[str]:
    from discl.curriculum.base import list_strategies
    from discl.methods import methods_help, parse_method

    strategies = list(list_strategies())
    out = []
    if cfg.curriculum.strategy not in strategies:
        out.append(f"curriculum.strategy: unknown strategy {cfg.curriculum.strategy!r} (known: {', '.join(strategies)})")
    for i, name in enumerate(cfg.methods):
        try:
            m = parse_method(name)
        except ValueError as e:
            out.append(f"methods[{i}]: {e}; {methods_help(strategies)}")
            continue
        if m.strategy is not None and m.strategy != "discl" and m.strategy not in strategies:
            out.append(f"methods[{i}]: unknown method {name!r}; {methods_help(strategies)}")
            continue
        loss = m.loss or cfg.training.loss
        if loss == "flyp" and cfg.training.model != "clip":
            out.append(f"methods[{i}]: {name!r} trains with FLYP, which needs training.model: clip "
                       f"(got {cfg.training.model!r})")
        if m.level is not None and m.strategy not in ("single", "discl"):
            out.append(f"methods[{i}]: {name!r}: @λ goes with single (single@0.5)")
    return out


def _curriculum_problems(cfg) -> list[str]:
    """Build each synthetic method's strategy and walk its epochs: stage/level mismatches surface now."""
    import dataclasses

    from discl.curriculum.base import create_strategy, list_strategies
    from discl.curriculum.stage_data import needed_levels
    from discl.methods import parse_method

    out, known = [], set(list_strategies())
    generated = {round(float(v), 6) for v in cfg.generation.levels}
    for name in cfg.methods:
        try:
            m = parse_method(name)
        except ValueError:
            continue
        if not m.uses_synthetic:
            continue
        strat = cfg.curriculum.strategy if m.strategy == "discl" else m.strategy
        if strat not in known:
            continue
        cur = cfg.curriculum if m.level is None else dataclasses.replace(cfg.curriculum, fixed_level=m.level)
        try:
            strategy = create_strategy(strat, cur, cfg.training.epochs, 0)
            levels = needed_levels(strategy, cur, cfg.training.epochs)
        except (ConfigError, ValueError) as e:
            msg = str(e)
            if msg.startswith("curriculum.stages"):
                msg += (f" (curriculum.levels: {list(cur.levels)}; the schedules take one length per synthetic "
                        f"level, in order, and optionally one more for a final real-only stage)")
            out.append(msg if msg.startswith("curriculum.") else f"curriculum ({name}): {msg}")
            continue
        missing = [lv for lv in levels if round(float(lv), 6) not in generated]
        if missing:
            own_level = strat == "text_only" or m.level is not None  # its level is not curriculum.levels'
            out.append(f"{'generation' if own_level else 'curriculum'}.levels: method {name!r} trains on "
                       f"λ = {', '.join(f'{v:g}' for v in missing)}, which generation.levels "
                       f"({', '.join(f'{v:g}' for v in cfg.generation.levels)}) does not generate; add them there"
                       + ("" if own_level else " or change curriculum.levels"))
    return out


def _model_problems(cfg) -> list[str]:
    """training.model against discl's registry and the installed timm / torchvision (no download)."""
    name = cfg.training.model
    key = "training.model"
    if name == "clip":
        out = []
        if cfg.training.clip_model == "embedded":
            from discl.filtering.embedded_clip import load_model_config

            size = int(load_model_config()["vision_cfg"]["image_size"])
            if cfg.data.channels != 1:
                out.append(f"data.channels: the embedded CLIP (training.clip_model: embedded) takes grayscale images "
                           f"(data.channels: 1), got {cfg.data.channels}")
            if cfg.data.image_size != size:  # it would resize every image a second time, to its own input
                out.append(f"data.image_size: the embedded CLIP (training.clip_model: embedded) takes {size}x{size} "
                           f"images (data.image_size: {size}), got {cfg.data.image_size}")
        return out
    if name.startswith("timm:"):
        try:
            import timm
        except ImportError:
            return [f"{key}: {name!r} needs timm (pip install timm)"]
        arch = name.partition(":")[2]
        if not timm.is_model(arch):
            near = timm.list_models(f"*{arch[:4]}*")[:8] if arch else []
            return [f"{key}: timm has no model {arch!r}" + (f" (similar: {', '.join(near)})" if near else
                                                             " (see timm.list_models())")]
        return []
    if name.startswith("torchvision:"):
        import torchvision

        arch = name.partition(":")[2]
        known = torchvision.models.list_models()
        if arch not in known:
            near = [k for k in known if arch[:4] and k.startswith(arch[:4])][:8]
            return [f"{key}: torchvision has no model {arch!r}" + (f" (similar: {', '.join(near)})" if near else
                                                                   " (see torchvision.models.list_models())")]
        return []
    from discl.training.models import list_models

    known = [k for k in list_models() if ":" not in k]
    if name not in known:
        return [f"{key}: unknown model {name!r} (valid: {', '.join(known)}, clip, timm:<name>, torchvision:<name>)"]
    return []


def _prompt_problems(cfg) -> list[str]:
    out = []
    for i, t in enumerate(cfg.prompts.templates):
        if (why := template_problem(t)) is not None:
            out.append(f"prompts.templates[{i}]: {t!r}: {why}")
    if (why := template_problem(cfg.filtering.text_template)) is not None:
        out.append(f"filtering.text_template: {cfg.filtering.text_template!r}: {why}")
    if cfg.prompts.descriptions_file:
        out += descriptions_problems(Path(cfg.prompts.descriptions_file))
    return out


def _step_rule_or_default(g) -> str:
    """The configured generator's img2img step rule from its config files; the default (SD's
    ``int(T x strength)``, the one that runs fewer steps) when they cannot be read here."""
    from discl.generation.base import planning_step_rule
    from discl.generation.planning import DEFAULT_STEP_RULE

    try:
        return planning_step_rule(g)
    except Exception:  # noqa: BLE001 - a warning's input; loading the model reports what is wrong with it
        return DEFAULT_STEP_RULE


def _backend_problems(cfg, synthetic: bool, skip: frozenset[str] = frozenset()) -> list[str]:
    g, f = cfg.generation, cfg.filtering
    out = []
    if g.backend == "embedded" and "generation" not in skip:
        if g.dtype != "auto":
            out.append(f"generation.dtype: the embedded generator always runs in float32 and ignores it "
                       f"(got {g.dtype!r}); leave it at auto or use generation.backend: diffusers")
        if g.condition_style is not None:
            out += _condition_style_problems(g)
        for key, value in (("pipeline_class", g.pipeline_class), ("negative_prompt", g.negative_prompt),
                           ("resolution", g.resolution)):
            if value:  # the class-conditional prior reads labels, not text, at its own resolution
                out.append(f"generation.{key}: the embedded generator ignores it (got {value!r}); remove it or set "
                           f"generation.backend: diffusers")
    if g.unused_steps_levels() and "generation" not in skip:
        log.warning(
            "generation.steps_per_level: λ %s not generated (generation.levels: %s): ignored",
            ", ".join(f"{v:g}" for v in g.unused_steps_levels()), ", ".join(f"{v:g}" for v in g.levels))
    if "generation" not in skip:
        from discl.generation.planning import DEFAULT_STEP_RULE, denoise_steps

        # int(T x strength) (SD, SDXL, embedded) runs no fewer steps than any rule; only where it runs none is
        # the pipeline's own rule read (SD3/Flux run one step there: no warning), and unknown counts as it
        zero = [lam for lam in g.levels if float(lam) > 0.0 and denoise_steps(g.steps_at(lam), lam) < 1]
        rule = _step_rule_or_default(g) if zero else DEFAULT_STEP_RULE
        for lam in zero:
            if denoise_steps(g.steps_at(lam), lam, rule) < 1:
                need = math.ceil(1.0 / (1.0 - float(lam)) - 1e-9)
                log.warning(
                    "generation.levels: λ %g runs no denoising step at %d steps (int(%d × %g) = 0): its images are copies "
                    "of their sources, counted as synthetic; set generation.steps_per_level={%g: %d} or more",
                    lam, g.steps_at(lam), g.steps_at(lam), round(1.0 - float(lam), 6), lam, need)
    if g.backend != "embedded" and g.condition_style is not None and "generation" not in skip:
        out.append(f"generation.condition_style: only the embedded prior is conditioned on a style (got "
                   f"{g.condition_style!r}); the {g.backend} backend reads prompts.templates: remove it")
    if not synthetic or cfg.data.task in EMBEDDED_TASKS:
        return out
    # the user's classes are Fashion-MNIST's (built once, only when an embedded backend asks)
    mismatch = _fashion_mnist_mismatch(cfg) if g.backend == "embedded" or f.backend == "embedded" else ""
    fm = mismatch is None
    why = f"; here {mismatch}" if mismatch else ""
    if g.backend == "embedded" and "generation" not in skip and not fm:
        # any embedded prior (the shipped one or a folder: `discl prior train` trains on Fashion-MNIST)
        # draws class i of Fashion-MNIST for label i: another task's labels would get other classes
        which = "the shipped embedded prior" if g.model in ("", "embedded") else f"the embedded prior {g.model!r}"
        out.append(f"generation.backend: {which} draws the ten Fashion-MNIST classes by label index and cannot "
                   f"draw the classes of data.task {cfg.data.task!r} (unless they are Fashion-MNIST's, in its "
                   f"order: {FM_ORDER_HINT}{why}); set generation.backend: diffusers with generation.model: <hub id or local folder> "
                   f"(e.g. stabilityai/sd-turbo)")
    if g.backend == "embedded" and "generation" not in skip and fm and cfg.data.channels != 1:
        # the prior is a Fashion-MNIST model: one channel. Converted to RGB its variants are grey among colour
        # real images, and a classifier can tell synthetic from real by colour alone
        out.append(f"data.channels: the embedded prior makes grey images; with data.channels {cfg.data.channels} the "
                   f"classifier would see grey synthetic images beside colour real ones; set data.channels: 1, or "
                   f"generation.backend: diffusers for colour variants")
    if f.backend == "embedded" and "filtering" not in skip and not fm:
        # any embedded CLIP (the shipped one or a weights file: `discl clip train` trains on Fashion-MNIST's
        # captions only) knows the ten Fashion-MNIST names and nothing else
        which = "the shipped embedded CLIP" if f.model in ("", "embedded") else f"the embedded CLIP {f.model!r}"
        out.append(f"filtering.backend: {which} knows only the Fashion-MNIST class names and cannot score the "
                   f"classes of data.task {cfg.data.task!r} (unless they are Fashion-MNIST's, in its order: "
                   f"{FM_ORDER_HINT}{why}); set "
                   f"filtering.backend: open_clip with filtering.model: ViT-B-32/openai (or transformers with a "
                   f"model id / folder)")
    return out


def _condition_style_problems(g) -> list[str]:
    """``generation.condition_style`` against the styles the prior's config file lists (no weights loaded)."""
    from discl.generation.prior import load_prior_config, style_slots

    try:
        styles = tuple(load_prior_config(None if g.model in ("", "embedded") else g.model).get("styles") or ("clean",))
    except (OSError, ValueError):  # a missing or unreadable prior folder is the weights check's to report
        return []
    known = list(style_slots(styles))
    if g.condition_style not in known:
        return [f"generation.condition_style: {g.condition_style!r} is not a style of the embedded prior "
                f"(it knows: {', '.join(known)})"]
    return []


FM_ORDER_HINT = "list them in that order in data.class_names, e.g. [T-shirt_top, Trouser, Pullover]"


def _fashion_mnist_mismatch(cfg) -> str | None:
    """None when a user's folder/csv task's class i is Fashion-MNIST's class i for every label (what
    the embedded prior draws), names compared by their letters and digits only ("T-shirt_top" is
    "T-shirt/top", which cannot be a folder name); a task may have the first k of the ten. Otherwise
    where they first differ, naming the class folder or label (a folder ``Dress{name}`` is not
    ``Dress``: the user sees which folder to rename), or "" when that cannot be said."""
    if cfg.data.task not in ("folder", "csv"):
        return ""
    from discl.data import build_dataset
    from discl.data.fashion_mnist import CLASSES

    def key(name: str) -> str:
        return "".join(ch for ch in name.lower() if ch.isalnum())

    try:
        classes = list(build_dataset(cfg.data).classes)
    except Exception:  # noqa: BLE001 - the data checks report a dataset that does not build
        if not cfg.data.class_names:
            return None  # cannot tell: no claim about the backends beside the data's own error
        classes = list(cfg.data.class_names)  # the labels' order, whatever the folders hold
    if not classes:
        return ""
    if len(classes) > len(CLASSES):
        return f"the task has {len(classes)} classes, Fashion-MNIST {len(CLASSES)}"
    for i, (ours, theirs) in enumerate(zip(classes, CLASSES)):
        if key(ours) != key(theirs):
            what = "the class folder" if cfg.data.task == "folder" else "the label"
            listed = f" (data.class_names[{i}])" if cfg.data.class_names else ""
            return (f"label {i} is {what} {ours!r}{listed}, not Fashion-MNIST's {theirs!r}: names are compared "
                    f"by their letters and digits only, and {key(ours)!r} is not {key(theirs)!r}")
    return None


def _data_problems(cfg, skip: frozenset[str] = frozenset()) -> list[str]:
    """Build the user's dataset (folder/csv: what mining would do first) and check its classes, and
    that it has the test split the results are measured on (unless ``skip`` has ``test_split``: the
    stages before training do not need it)."""
    if cfg.data.task not in ("folder", "csv"):
        return []
    from discl.data import build_dataset

    ds = build_dataset(cfg.data)
    counts = ds.class_counts("train")
    empty = [c for c, n in zip(ds.classes, counts) if n == 0]
    out = []
    if empty:
        where = "data.class_names" if cfg.data.class_names else "data.root"
        out.append(f"{where}: class(es) {', '.join(map(repr, empty))} have no training images in "
                   f"{shown(Path(cfg.data.root).resolve())}; "
                   + ("remove them from data.class_names or add images" if cfg.data.class_names
                      else "add training images for them, or remove their folders from the other splits"))
    if "test" in ds.splits:
        no_test = [c for c, n in zip(ds.classes, ds.class_counts("test")) if n == 0]
        if no_test:  # legitimate (iWildCam's test lacks classes) but it changes what the headline means
            log.warning(
                "data.root: class(es) %s have no test images: their accuracy is undefined, and the many/medium/few "
                "accuracies and macro-F1 are over the other classes only", ", ".join(map(repr, no_test)))
    if "test" not in ds.splits and "test_split" not in skip:  # every accuracy of the report is measured on it
        layout = ("root/test/<class>/*.jpg next to root/train/<class>/" if cfg.data.task == "folder"
                  else "rows with split 'test' in the CSV's split column")
        out.append(f"data.root: {shown(Path(cfg.data.root).resolve())} has no test split (splits: {', '.join(ds.splits)}); "
                   f"the results are measured on it: add one ({layout})")
    return out


def _known_classes(cfg) -> list[str] | None:
    """The task's class names where they are known before any stage runs, else None (no check):
    the embedded tasks' ten, a folder/csv task's (its dataset is built, cached, as mining would),
    ``data.class_names``, or a split_files task's class map."""
    if cfg.data.task in EMBEDDED_TASKS:
        from discl.data.fashion_mnist import CLASSES

        return list(CLASSES)
    if cfg.data.task in ("folder", "csv"):
        from discl.data import build_dataset

        try:
            return list(build_dataset(cfg.data).classes)
        except Exception:  # noqa: BLE001 - the data checks report a dataset that does not build
            return None
    if cfg.data.class_names:
        return list(cfg.data.class_names)
    if cfg.data.task == "split_files" and cfg.data.class_map:
        from discl.data.folder import read_class_map

        try:
            return [n for _, n in read_class_map(Path(cfg.data.class_map))]
        except Exception:  # noqa: BLE001 - reported when the data is loaded
            return None
    return None


def _filter_problems(cfg, data: bool) -> list[str]:
    """``filtering.per_level`` keys against ``generation.levels`` and ``filtering.per_class`` keys
    against the task's classes: a threshold for a λ nobody generates or a misspelled class would be
    saved and silently never applied, so the filter would keep what the user meant to drop."""
    f, out = cfg.filtering, []
    generated = {round(float(v), 6) for v in cfg.generation.levels}
    levels = ", ".join(f"{v:g}" for v in cfg.generation.levels)
    for key in f.per_level:
        if round(float(key), 6) not in generated:
            out.append(f"filtering.per_level.{key}: λ = {key} is not generated (generation.levels: {levels}); "
                       f"use one of those levels or add it to generation.levels")
    classes = _known_classes(cfg) if f.per_class and (data or cfg.data.task not in ("folder", "csv")) else None
    if classes is not None:
        for key in f.per_class:
            if key not in classes:
                near = [c for c in classes if c.lower() == str(key).lower()]
                out.append(f"filtering.per_class.{key}: no class {key!r} in data.task {cfg.data.task!r}"
                           + (f" (did you mean {near[0]!r}?)" if near else "")
                           + f"; classes: {', '.join(classes)}")
    return out


def _open_clip_problem(key: str, arch: str, tag: str | None) -> str | None:
    from discl.hub import unreachable_reason

    if not tag or tag == "none":
        return None
    if tag.startswith(("/", ".", "~")) or Path(tag).suffix in (".safetensors", ".bin", ".pt", ".pth"):
        return None if Path(tag).expanduser().is_file() else f"{key}: checkpoint file {Path(tag).expanduser().resolve()} does not exist"
    try:
        import open_clip
    except ImportError:
        return f"{key}: needs open_clip (pip install open_clip_torch)"
    pcfg = open_clip.get_pretrained_cfg(arch, tag)
    if not pcfg:
        tags = open_clip.list_pretrained_tags_by_model(arch)
        return f"{key}: open_clip has no pretrained {tag!r} for {arch!r} (valid: {', '.join(tags) or 'none'})"
    hub = (pcfg.get("hf_hub") or "").strip("/")
    if hub and (why := unreachable_reason(hub)) is not None:
        return (f"{key}: the weights of open_clip {arch}/{tag} ({hub}) are not reachable: {why}; download them "
                f"once with network or pass a local checkpoint file")
    return None


def _weights_problems(cfg, synthetic: bool, skip: frozenset[str] = frozenset()) -> list[str]:
    from discl.hub import offline, unreachable_reason

    out = []
    g, f, t = cfg.generation, cfg.filtering, cfg.training
    gen = synthetic and "generation" not in skip
    filt = synthetic and not {"filtering", "filtering_weights"} & skip
    if gen and g.backend == "diffusers" and (why := unreachable_reason(g.model)) is not None:
        from discl.generation.diffusers_backend import how_to_provide

        out.append(f"generation.model: {how_to_provide(g.model)} ({why})")
    if filt and f.backend == "transformers" and (why := unreachable_reason(f.model)) is not None:
        out.append(f"filtering.model: the transformers CLIP {f.model!r} is not reachable: {why}")
    if filt and f.backend == "open_clip":
        arch, _, tag = f.model.partition("/")
        if (p := _open_clip_problem("filtering.model", arch, tag or None)) is not None:
            out.append(p)
    if gen and cfg.prompts.text_model and (why := unreachable_reason(cfg.prompts.text_model)) is not None:
        out.append(f"prompts.text_model: {cfg.prompts.text_model!r} is not reachable: {why}")
    if t.model == "clip" and t.clip_model == "embedded":
        from discl.filtering.embedded_clip import WEIGHTS_PATH

        path = Path(t.clip_pretrained).expanduser() if t.clip_pretrained not in (None, "", "embedded") else WEIGHTS_PATH
        if not path.is_file():
            out.append(f"training.clip_pretrained: the embedded CLIP weights {path.resolve()} do not exist")
        elif (p := _safetensors_problem("training.clip_pretrained", path)) is not None:
            out.append(p)
    elif t.model == "clip" and t.clip_pretrained:
        if (p := _open_clip_problem("training.clip_pretrained", t.clip_model, t.clip_pretrained)) is not None:
            out.append(p)
        elif (Path(t.clip_pretrained).suffix == ".safetensors" and (p := _safetensors_problem(
                "training.clip_pretrained", Path(t.clip_pretrained).expanduser())) is not None):
            out.append(p)
    own_model = t.model != "clip" and not t.model.startswith(("timm:", "torchvision:"))
    if own_model and (t.pretrained_path or t.pretrained):
        key = "training.pretrained_path" if t.pretrained_path else "training.pretrained"
        out.append(f"{key}: model {t.model!r} is trained from scratch and has no pretrained weights; remove {key}, "
                   f"or use a timm:<name> / torchvision:<name> model")
    elif t.pretrained_path and not Path(t.pretrained_path).expanduser().is_file():
        out.append(f"training.pretrained_path: {Path(t.pretrained_path).expanduser().resolve()} does not exist")
    elif t.pretrained_path and (p := _weights_file_problem("training.pretrained_path",
                                                            Path(t.pretrained_path).expanduser())) is not None:
        out.append(p)
    elif t.pretrained and t.model.startswith("timm:"):
        import timm

        arch = t.model.partition(":")[2]
        hub = timm.is_model(arch) and getattr(timm.models.get_pretrained_cfg(arch), "hf_hub_id", None)
        if hub and (why := unreachable_reason(hub)) is not None:
            out.append(f"training.pretrained: the weights of timm {arch} ({hub}) are not reachable: {why}; "
                       f"or give a local file as training.pretrained_path")
    elif t.pretrained and t.model.startswith("torchvision:") and offline():
        import torch
        import torchvision

        arch = t.model.partition(":")[2]
        try:
            url = torchvision.models.get_model_weights(arch).DEFAULT.url
        except (ValueError, AttributeError):
            url = None
        if url and not (Path(torch.hub.get_dir()) / "checkpoints" / Path(url).name).is_file():
            out.append(f"training.pretrained: torchvision {arch}'s weights are not in {torch.hub.get_dir()} and "
                       f"HF_HUB_OFFLINE is set")
    if t.init_from and t.init_from not in INIT_BASELINES and not Path(t.init_from).expanduser().is_file():
        out.append(f"training.init_from: {Path(t.init_from).expanduser().resolve()} does not exist "
                   f"(a checkpoint file, ce/bs/cb/flyp: that baseline of this run, or baseline: the one of "
                   f"each run's own loss)")
    elif (t.init_from and t.init_from not in INIT_BASELINES  # discl reads it as safetensors whatever its name
          and (p := _safetensors_problem("training.init_from", Path(t.init_from).expanduser())) is not None):
        out.append(p)
    return out


def _weights_file_problem(key: str, path: Path) -> str | None:
    """Why ``path`` is not a weights file timm can load (safetensors, or torch.save's zip or legacy
    pickle format, told by its first bytes; nothing is unpickled), or None."""
    if path.suffix == ".safetensors":
        return _safetensors_problem(key, path)
    import zipfile

    try:
        with open(path, "rb") as f:
            head = f.read(1)
    except OSError as e:
        return f"{key}: {path.resolve()} cannot be read ({e})"
    if head == b"\x80" or zipfile.is_zipfile(path):
        return None
    return (f"{key}: {path.resolve()} is neither a safetensors file nor a PyTorch checkpoint (torch.save's "
            f"zip or pickle format): a truncated download or a file of another format?")


def _safetensors_problem(key: str, path: Path) -> str | None:
    """Why ``path`` is not a readable safetensors file (its header only is read), or None: a truncated
    download or a file of another format fails here, before a run folder is made, not at training."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            f.metadata()
    except Exception as e:  # noqa: BLE001 - any reader failure is the same problem for the user
        return f"{key}: {path.resolve()} is not a readable safetensors file ({type(e).__name__}: {e})"
    return None


# What a stage's own command leaves unchecked. A stage before generation (mine, prompts, generate) checks
# every pure-config rule of the stages after it, the curriculum against generation.levels first: which
# levels to generate is decided by then, and a mistake found at `discl train` costs the generation.
# Only the weights of a later stage it does not load are left out ("filtering_weights": the filter may
# run on another machine, with its own cache), and the test split, which only the evaluation reads (a
# user's own training loop may evaluate elsewhere). The stages after generation ("generation",
# "filtering": neither config nor weights) do not reload what made their inputs.
SKIP_BY_COMMAND = {"mine": frozenset({"test_split"}), "prompts": frozenset({"filtering_weights", "test_split"}),
                   "generate": frozenset({"filtering_weights", "test_split"}), "filter": frozenset({"test_split"}),
                   "train": frozenset({"generation", "filtering", "test_split"}),
                   "baseline": frozenset({"generation", "filtering", "test_split"}),
                   "evaluate": frozenset({"generation", "filtering", "test_split"})}


def validate_run_config(cfg: Any, *, data: bool = True, weights: bool = True, skip: frozenset[str] = frozenset()) -> None:
    """Raise one :class:`ConfigError` listing every problem of ``cfg`` that can be found before work starts.

    ``data``: build a folder/csv dataset and check its classes; ``weights``: check that every model
    the run loads is local, cached or reachable (commands that only read a finished run skip it);
    ``skip``: sections (``generation``, ``filtering``) whose backend and weights the calling stage
    command does not load, ``filtering_weights``: the filter's config is checked but not its weights,
    ``curriculum``: no check of the curriculum against the generated levels, ``test_split``: no test
    split needed (:data:`SKIP_BY_COMMAND`). ``discl run`` checks everything.

    Warnings logged while checking (a curriculum stage with no epoch, a level with no denoising step,
    the dataset's own) come after the errors: they are held, logged when the config is valid, and
    otherwise added as notes of the error (``"warning: ..."``; the CLI prints them after it), so a
    user with a broken config reads what stops the run first.
    """
    with _HeldWarnings() as held:
        try:
            _validate(cfg, data, weights, skip)
        except Exception as e:
            for record in held.take():
                e.add_note(f"warning: {record.getMessage()}")
            raise


class _HeldWarnings(logging.Handler):
    """Hold the WARNING-and-above records of the ``discl`` loggers for the duration of a ``with``,
    then log what :meth:`take` left, as it would have been logged. Lower records pass through to the
    root logger's handlers at once (progress lines keep their place). Inside another hold it does
    nothing: the outer one holds every record until its own end."""

    def __init__(self):
        super().__init__()
        self.records: list[logging.LogRecord] = []
        self._logger = logging.getLogger("discl")
        self._active = self._propagate = False

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.WARNING:
            self.records.append(record)
            return
        # what propagation from ``discl`` to its ancestors would have done (nothing, if it was off)
        logger = self._logger.parent if self._propagate else None
        while logger is not None:
            for h in logger.handlers:
                if record.levelno >= h.level:
                    h.handle(record)
            logger = logger.parent if logger.propagate else None

    def take(self) -> list[logging.LogRecord]:
        records, self.records = self.records, []
        return records

    def __enter__(self) -> _HeldWarnings:
        self._active = not any(isinstance(h, _HeldWarnings) for h in self._logger.handlers)
        if self._active:
            self._propagate = self._logger.propagate
            self._logger.addHandler(self)
            self._logger.propagate = False
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if not self._active:
            return
        self._logger.removeHandler(self)
        self._logger.propagate = self._propagate
        for record in self.take():
            logging.getLogger(record.name).handle(record)


def _validate(cfg: Any, data: bool, weights: bool, skip: frozenset[str]) -> None:
    from discl.methods import parse_method

    problems = _method_problems(cfg) + _model_problems(cfg)
    synthetic = False
    for name in cfg.methods:
        try:
            synthetic |= parse_method(name).uses_synthetic
        except ValueError:
            pass
    if not problems and "curriculum" not in skip:  # the curriculum against the generated levels
        problems += _curriculum_problems(cfg)
    problems += _prompt_problems(cfg) + _backend_problems(cfg, synthetic, skip)
    if synthetic and "filtering" not in skip:
        problems += _filter_problems(cfg, data)
    if data:
        try:
            problems += _data_problems(cfg, skip)
        except BadInputError as e:  # a bad image or folder: reported with the config's problems, not instead of them
            if not problems:
                raise
            problems.append(str(e))
    if weights and not problems:
        problems += _weights_problems(cfg, synthetic, skip)
    if problems:
        if len(problems) == 1:
            raise ConfigError(problems[0])
        raise ConfigError(f"{len(problems)} problems:\n  - " + "\n  - ".join(problems))
