"""The checks behind ``discl evaluate`` (:mod:`discl.cli.evaluate`): a saved checkpoint on the task's
test split(s), written as metrics JSON.

The config is the checkpoint's own: ``config.yaml`` next to it (every training run saves its
resolved config there), else ``RUN/config.yaml`` of ``--run-dir``. An explicit ``CONFIG`` is
checked against the checkpoint: other classes, channels or image size are an error, since the
numbers would describe another task.
"""

from __future__ import annotations


def checkpoint_mismatches(header: dict, channels: int, image_size: int, classes: list[str]) -> list[str]:
    """What a config says differently from a checkpoint's header (pure)."""
    out = []
    names = header.get("class_names")
    if names is not None and list(names) != list(classes):
        out.append(f"classes: the checkpoint has {len(names)} ({', '.join(names[:6])}{', ...' if len(names) > 6 else ''}), "
                   f"the config's data has {len(classes)} ({', '.join(classes[:6])}{', ...' if len(classes) > 6 else ''})")
    if header.get("in_channels") is not None and int(header["in_channels"]) != int(channels):
        out.append(f"data.channels: the checkpoint takes {header['in_channels']}, the config says {channels}")
    if header.get("image_size") is not None and int(header["image_size"]) != int(image_size):
        out.append(f"data.image_size: the checkpoint was trained at {header['image_size']}, the config says {image_size}")
    return out


def check_checkpoint_matches(header: dict, cfg, classes: list[str], ckpt) -> None:
    from discl.configtools import ConfigError

    bad = checkpoint_mismatches(header, cfg.data.channels, cfg.data.image_size, classes)
    if bad:
        raise ConfigError(f"the config does not match --checkpoint {ckpt}: " + "; ".join(bad)
                          + f". Leave out CONFIG to use the run's own ({ckpt.parent / 'config.yaml'})")
