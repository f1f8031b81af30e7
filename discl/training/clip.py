"""CLIP fine-tuning with the FLYP loss and a zero-shot head (the authors' iWildCam recipe).

FLYP ("Finetune like you pretrain", Goyal et al. 2023) fine-tunes both towers with CLIP's own
contrastive loss: each training image is paired with a caption of its class, and the symmetric
cross-entropy over the batch's image-caption similarities is minimised. Classification uses a
zero-shot head built from the *current* text tower: per class, the normalised mean embedding of
its captions ("a photo of {name}." and "{name} in the wild.").

Any open_clip model works (ViT-B-16 for the paper's recipe; a tiny config in the tests);
open_clip is imported only here and in the embedded CLIP's adapter. ``clip_model="embedded"`` is the
small CLIP shipped with discl for the 28x28 grayscale Fashion-MNIST tasks
(:mod:`discl.filtering.embedded_clip`): its weights, tokenizer, context length, input size,
normalisation and its own zero-shot caption templates, so that before fine-tuning the classifier
predicts exactly what ``discl clip evaluate`` measures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from discl.assets import EMBEDDED
from discl.errors import BadInputError, ModelNotFoundError
from discl.training.config import embedded_weights

logger = logging.getLogger(__name__)

__all__ = ["ClipClassifier", "create_clip_classifier", "flyp_loss", "gather_with_grad", "caption_rows", "TEMPLATES",
           "EMBEDDED", "embedded_weights"]

TEMPLATES = ("a photo of {name}.", "{name} in the wild.")
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.26130258, 0.27577711)


def gather_with_grad(x: torch.Tensor) -> torch.Tensor:
    """This process's rows [n_r, D] → every process's rows [Σ n_r, D] in rank order, differentiable.

    Under DDP each process holds only its share of the global batch; a contrastive loss needs the
    whole batch as negatives. ``torch.distributed.nn.functional.all_gather`` sends the gradient of
    every gathered copy back to the process that owns the rows (summed), as open_clip's ``ClipLoss``
    with ``gather_with_grad=True`` relies on. The loop's last batch can leave processes with unequal
    shares, which a plain all_gather cannot take, so the rows are padded to the largest share and
    the padding dropped after gathering. Without an initialised process group (one process) ``x``
    is returned as it is.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    from torch.distributed.nn.functional import all_gather

    n = torch.tensor([len(x)], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    counts = [int(s) for s in sizes]
    padded = F.pad(x, (0, 0, 0, max(counts) - len(x))) if len(x) < max(counts) else x
    return torch.cat([part[:c] for part, c in zip(all_gather(padded), counts)])


def flyp_loss(image_emb: torch.Tensor, text_emb: torch.Tensor, logit_scale: torch.Tensor,
              gather: bool = True) -> torch.Tensor:
    """Symmetric contrastive loss of paired, L2-normalised embeddings [N, D] (row i ↔ row i).

    With several processes (``gather``, a torch.distributed group initialised, as under DDP), the
    pairs of all processes are gathered first (:func:`gather_with_grad`), so every process computes
    the loss over the *global* batch (``training.batch_size`` pairs, open_clip's ``local_loss=False``)
    rather than a (batch/W)-way problem over its own share. Every process then holds the same loss;
    the gathered gradients, averaged by DDP, are the gradients of that global loss.
    """
    if gather:
        image_emb, text_emb = gather_with_grad(image_emb), gather_with_grad(text_emb)
    logits = logit_scale * image_emb @ text_emb.t()
    target = torch.arange(len(logits), device=logits.device)
    return 0.5 * (F.cross_entropy(logits, target) + F.cross_entropy(logits.t(), target))


def caption_rows(labels: torch.Tensor, n_templates: int, rank: int = 0, world: int = 1) -> torch.Tensor:
    """Rows of the caption table (class k, template t at k*T + t) for this process's images (pure).

    The image at position p of the global batch gets template p mod T of its class. The training
    loop gives process ``rank`` the positions rank, rank+W, rank+2W, ... of each global batch, so its
    i-th image is at position rank + i*W: with several processes every image gets the caption it
    gets with one, and the gathered FLYP loss is the single-process loss of the global batch.
    """
    position = rank + torch.arange(len(labels), device=labels.device) * world
    return labels * n_templates + position % n_templates


def _rank_and_world() -> tuple[int, int]:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class ClipClassifier(nn.Module):
    """``forward(x)`` → zero-shot logits; ``forward(x, labels)`` → the FLYP loss of the batch.

    ``x`` is float [N, C, H, W] in [0, 1] at any size and 1 or 3 channels; it is converted to the CLIP
    model's input (RGB, its resolution, its normalisation) here.
    """

    def __init__(self, clip: nn.Module, tokens: torch.Tensor, num_classes: int, n_templates: int,
                 image_size: int, mean: Sequence[float], std: Sequence[float]):
        super().__init__()
        self.clip = clip
        self.num_classes, self.n_templates, self.image_size = num_classes, n_templates, int(image_size)
        self.register_buffer("tokens", tokens, persistent=False)  # [K * T, L]: class k, template t at k*T + t
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self._head: torch.Tensor | None = None  # zero-shot head cached in eval mode

    def train(self, mode: bool = True):
        self._head = None
        return super().train(mode)

    def _pixels(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-1] != self.image_size or x.shape[-2] != self.image_size:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return (x - self.mean) / self.std

    def image_embeddings(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_image(self._pixels(x)), dim=-1)

    def text_embeddings(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.clip.encode_text(tokens), dim=-1)

    def zero_shot_head(self) -> torch.Tensor:
        """[K, D]: per class, the normalised mean of its normalised caption embeddings."""
        emb = self.text_embeddings(self.tokens).view(self.num_classes, self.n_templates, -1)
        return F.normalize(emb.mean(1), dim=-1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        img = self.image_embeddings(x)
        scale = self.clip.logit_scale.exp().clamp(max=100)
        if labels is None:
            head = self._head
            if head is None:
                head = self.zero_shot_head()
                if not self.training:
                    self._head = head.detach()
            return scale * img @ head.t()
        which = caption_rows(labels, self.n_templates, *_rank_and_world())
        return flyp_loss(img, self.text_embeddings(self.tokens[which]), scale)


def create_clip_classifier(arch: str, pretrained: str | None, class_names: Sequence[str], seed: int | None = None,
                           templates: Sequence[str] | None = None) -> ClipClassifier:
    """An open_clip model (``pretrained``: an open_clip tag or a local checkpoint; None = random init),
    or with ``arch="embedded"`` the shipped embedded CLIP (see :func:`create_embedded_clip_classifier`).

    ``templates``: the caption templates of the zero-shot head and of FLYP's captions; default
    :data:`TEMPLATES`, for the embedded CLIP its own zero-shot templates."""
    if arch == EMBEDDED:
        return create_embedded_clip_classifier(pretrained, class_names, templates)
    templates = TEMPLATES if templates is None else templates
    import open_clip

    if arch not in open_clip.list_models():
        raise ModelNotFoundError(f"open_clip has no model config {arch!r} (see open_clip.list_models())")
    try:
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                from discl.seeding import derive_seed

                torch.manual_seed(derive_seed("clip-init", arch, int(seed)))
            clip = open_clip.create_model(arch, pretrained=pretrained)
    except Exception as e:  # noqa: BLE001 - hub/cache/file failures become one clear message
        raise ModelNotFoundError(
            f"cannot load open_clip {arch} weights {pretrained!r} ({type(e).__name__}: {e}); pass a local checkpoint "
            "file as training.clip_pretrained, or put the weights in the Hugging Face cache first"
        ) from e
    tokenizer = open_clip.get_tokenizer(arch)
    captions = [t.format(name=n) for n in class_names for t in templates]
    tokens = tokenizer(captions)
    size = clip.visual.image_size
    size = size[0] if isinstance(size, tuple | list) else size
    pp = getattr(clip.visual, "preprocess_cfg", {}) or {}
    mean, std = tuple(pp.get("mean", OPENAI_MEAN)), tuple(pp.get("std", OPENAI_STD))
    return ClipClassifier(clip, tokens, len(class_names), len(templates), size, mean, std)


def create_embedded_clip_classifier(pretrained: str | None, class_names: Sequence[str],
                                    templates: Sequence[str] | None = None) -> ClipClassifier:
    """The embedded CLIP with its weights (:func:`embedded_weights`), tokenizer (its context length),
    28-pixel input and normalisation (its ``preprocess_cfg``: one mean/std, repeated over the 3
    channels the ViT stem takes, which equals :func:`~discl.filtering.embedded_clip.normalize_batch`
    on grayscale input), and the zero-shot templates ``discl clip evaluate`` uses
    (:data:`~discl.filtering.captions.ZERO_SHOT_TEMPLATES`). No random init: ``seed`` is not needed."""
    from discl.filtering.captions import ZERO_SHOT_TEMPLATES
    from discl.filtering.embedded_clip import create_embedded_clip

    try:
        weights = embedded_weights(pretrained)
    except ValueError as e:
        raise ModelNotFoundError(f"training.clip_pretrained: {e}") from None
    templates = ZERO_SHOT_TEMPLATES if templates is None else templates
    try:
        clip, tokenizer, cfg = create_embedded_clip(weights)
    except (BadInputError, ModelNotFoundError) as e:
        raise type(e)(f"training.clip_pretrained: {e}") from None
    clip.train()
    tokens = tokenizer([t.format(name=n) for n in class_names for t in templates])
    pp = cfg["preprocess_cfg"]
    mean, std = (float(pp["mean"]),) * 3, (float(pp["std"]),) * 3
    return ClipClassifier(clip, tokens, len(class_names), len(templates), int(cfg["vision_cfg"]["image_size"]), mean, std)
