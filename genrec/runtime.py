"""Process-wide run settings: device choice and seeding."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
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


def in_parallel(function: Callable[[Any], Any], items: Sequence[Any], workers: int, desc: str | None = None) -> list:
    """``[function(item) for item in items]``, in order, on ``workers`` threads that run torch on one
    thread each (torch's thread count is restored after). Why: on the CPU, a beam search's operators
    are small, and independent batches on separate threads use the cores better than one batch split
    over them (a paper-size T5 at beam 50 on 2 cores: 245 against 234 users/s in fp32, 402 against 359
    in bf16; docs/results.md). The function must set its own grad and autocast modes: they are
    per thread. ``desc``: a progress bar of that name (on a terminal)."""
    shown = (lambda results: progress(results, total=len(items), desc=desc, leave=False)) if desc else iter
    if workers <= 1 or len(items) <= 1:
        return list(shown(map(function, items)))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with ThreadPoolExecutor(workers) as pool:
            return list(shown(pool.map(function, items)))
    finally:
        torch.set_num_threads(threads)


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
