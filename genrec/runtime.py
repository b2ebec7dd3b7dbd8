"""Process-wide run settings: device choice and seeding."""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch

from genrec.errors import ConfigError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present, else CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but CUDA is not available; use --device=cpu or auto")
    return torch.device(name)


def available_memory(device: torch.device) -> int:
    """Bytes that can still be allocated on ``device``: free GPU memory, or the system's
    ``MemAvailable`` (all physical memory where /proc/meminfo is missing)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def training_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype training runs in (``None``: fp32): ``auto`` is bf16 on CUDA and fp32 on CPU;
    fp16 needs CUDA (its loss scaling is a CUDA feature)."""
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"precision=fp16 needs a CUDA device (this run is on {device}); use bf16 or fp32")
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def decode_autocast(config: Any, device: torch.device) -> bool:
    """Whether evaluation, ``recommend`` and ``serve`` decode and rank under bf16 autocast
    (``decode_precision``): ``bf16`` on any device (on a CPU with AMX or AVX512-BF16 the matrix
    products run several times faster; the accuracy it costs is measured in docs/results.md),
    ``fp32`` never, ``auto`` on CUDA unless the run trained in fp32."""
    if config.decode_precision == "auto":
        return device.type == "cuda" and config.precision != "fp32"
    return config.decode_precision == "bf16"


@contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Deterministic torch kernels inside the block (some CPU backward passes, e.g. index
    accumulation, otherwise vary run to run); warn-only, so CUDA ops without a deterministic
    version still run."""
    if not enabled:
        yield
        return
    previous, previous_warn = (
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous, warn_only=previous_warn)


def progress(iterable: Any = None, **kwargs: Any):
    """A tqdm progress bar that turns itself off when stderr is not a terminal (logs, CI, pipes)."""
    from tqdm import tqdm

    kwargs.setdefault("disable", None)  # tqdm: None = only on a terminal
    return tqdm(iterable, **kwargs)
