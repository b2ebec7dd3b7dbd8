"""``genrec config``: the fully resolved configuration."""

from __future__ import annotations

from genrec.config import load_config


def cmd_config(argv: list[str]) -> int:
    """``genrec config`` and any flags: print the fully resolved configuration as YAML."""
    import yaml

    print(yaml.safe_dump(load_config(argv).model_dump(mode="json"), sort_keys=True), end="")
    return 0
