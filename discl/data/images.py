"""Reading one user image safely: every failure is a :class:`BadInputError` that names the file.

What :func:`load_image` guarantees for a file that loads:
- the whole file was decoded (a truncated JPEG fails here, not later in a training batch);
- EXIF orientation is applied (a phone photo taken sideways comes out upright);
- the mode is ``L`` (grey) or ``RGB``: transparency is composited on a black background by default
  (the embedded tasks and :func:`discl.data.base.to_model_tensor` pad with black too; pass
  ``background="white"`` for scans or product shots on white), 16-bit images are scaled to 8 bit
  (value / 257, so 65535 -> 255), CMYK/YCbCr/LAB become RGB, palette images become RGB, 1-bit
  images become L;
- the image has at most ``max_pixels`` pixels (decompression-bomb guard, checked from the header
  before any pixel is decoded).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from discl.errors import BadInputError, shown

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
DEFAULT_MAX_PIXELS = 89_478_485  # Pillow's own default (~ 9459 x 9459)
_BACKGROUNDS = {"black": 0, "white": 255}


def load_image(
    path: str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: Literal["black", "white"] = "black",
) -> Image.Image:
    """Open, fully decode and normalise one image (see the module docstring); ``L`` or ``RGB``."""
    path = Path(path)
    where = shown(path)  # a file name with a newline prints escaped, on the message's one line
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise BadInputError(f"{where}: file not found") from None
    except OSError as e:
        raise BadInputError(f"{where}: cannot read ({e.strerror or e})") from None
    if path.is_dir():
        raise BadInputError(f"{where}: is a folder, not an image file")
    if size == 0:
        raise BadInputError(f"{where}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            # Pillow warns between MAX_IMAGE_PIXELS and 2x; our own cap below decides.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            opened = Image.open(path)
    except UnidentifiedImageError:
        raise BadInputError(f"{where}: not an image file (the format is not recognised)") from None
    except Image.DecompressionBombError as e:
        raise BadInputError(f"{where}: too many pixels, refused as a possible decompression bomb ({e})") from None
    except OSError as e:
        raise BadInputError(f"{where}: cannot open ({e})") from None
    img = opened
    try:
        w, h = img.size
        if w * h > max_pixels:
            raise BadInputError(
                f"{where}: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,} "
                "(decompression-bomb guard; raise data.max_image_pixels if the image is genuine)"
            )
        if w < 1 or h < 1:
            raise BadInputError(f"{where}: has no pixels ({w}x{h})")
        try:
            img.load()
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise BadInputError(f"{where}: truncated or corrupt image data ({e})") from None
        try:
            img = ImageOps.exif_transpose(img)
        except Exception as e:  # noqa: BLE001 - a broken EXIF block must not hide the file name
            log.warning("%s: ignoring unreadable EXIF orientation (%s)", path, e)
        return _normalise_mode(img, _BACKGROUNDS[background])
    finally:
        opened.close()


def _normalise_mode(img: Image.Image, bg: int) -> Image.Image:
    mode = img.mode
    if mode in ("L", "RGB"):
        return img.copy()
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(img, dtype=np.float64)
        return Image.fromarray(np.clip(np.round(arr / 257.0), 0, 255).astype(np.uint8), "L")
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        if np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        return Image.fromarray(np.clip(np.nan_to_num(np.round(arr)), 0, 255).astype(np.uint8), "L")
    if mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
        mode = img.mode
        if mode == "RGB":
            return img
    if mode in ("LA", "La", "PA"):
        img = img.convert("LA")
        canvas = Image.new("L", img.size, bg)
        canvas.paste(img.getchannel("L"), mask=img.getchannel("A"))
        return canvas
    if mode in ("RGBA", "RGBa"):
        img = img.convert("RGBA")
        canvas = Image.new("RGB", img.size, (bg, bg, bg))
        canvas.paste(img.convert("RGB"), mask=img.getchannel("A"))
        return canvas
    return img.convert("RGB")  # CMYK, YCbCr, LAB, HSV, RGBX
