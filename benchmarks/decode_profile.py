"""Where a constrained beam search spends its time: torch.profiler over the decode of ``--users``
test histories, one JSON line per architecture with the share of wall time in each part.

    python benchmarks/decode_profile.py [--architectures=t5,decoder,hf_causal_lm] [--beam=50] [--users=256]
        [--batch_size=32] [--decode_precision=fp32|bf16] [--figure=STEM] [--checkpoint=... --config=...]
        [--key=value ...]

Parts: ``history`` (the encoder, or a causal backbone's prefill of the history, with the
cross-attention keys/values), ``steps`` (the model's per-level work, split by operator kind: ``linear`` layers,
``attention`` products over the history and the generated tokens, ``softmax``, ``norm``,
``cache`` copies and reorders, ``other`` elementwise work), ``search`` (selecting beams: top-k,
trie gather, bookkeeping) and ``python`` (wall time that no operator accounts for: the interpreter
between operators). ``gflop_per_user`` counts the multiply-adds of the whole search with torch's
FLOP counter; ``gflop_per_s`` is that work over the measured time, to set against the machine's
matrix-multiply peak (``peak_gflop_per_s``: a large fp32 ``torch.mm``, measured here).
"""

from __future__ import annotations

import bisect
import json
import logging
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from decode_speed import decoding_setup, setting_fields  # this folder's: the model and the line's fields
from torch.profiler import ProfilerActivity, profile, record_function
from torch.utils.flop_counter import FlopCounterMode

from genrec.config import load_config, parse_flags
from genrec.decoding import beam_search

KINDS = {
    "linear": ("aten::addmm", "aten::mm", "aten::linear"),
    # aten::_scaled_dot_product_*: the fused kernels PyTorch's attention (a Hugging Face LM's) dispatches to
    "attention": (
        "aten::bmm",
        "aten::baddbmm",
        "aten::matmul",
        "aten::einsum",
        "aten::scaled_dot_product",
        "aten::_scaled_dot_product",
    ),
    "softmax": ("aten::_softmax", "aten::softmax", "aten::_log_softmax", "aten::log_softmax"),
    "norm": ("aten::layer_norm", "aten::native_layer_norm", "aten::rsqrt", "aten::pow", "aten::mean", "aten::rms_norm"),
    "cache": ("aten::cat", "aten::gather", "aten::index_select", "aten::copy_", "aten::clone", "aten::index"),
}


def kind(name: str) -> str:
    return next((k for k, names in KINDS.items() if any(name.startswith(n) for n in names)), "other")


def search(model, histories, batch_size, beam, timed_step, autocast: bool = False) -> None:
    """The library's own decode (:meth:`SIDBackbone.generate`), with the history pass and each step
    recorded under a label the profile can find."""
    for start in range(0, len(histories), batch_size):
        ids, mask = model.inputs(histories[start : start + batch_size])
        with torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
            with record_function("part:history"):
                step = model.model.beam_step(ids, mask)
            beam_search(timed_step(step), model.trie, ids.shape[0], beam, ids.device)


def labelled(step):
    def run(level, tokens, parents):
        with record_function("part:steps"):
            return step(level, tokens, parents)

    return run


def peak_gflop_per_s(size: int = 2048, repeats: int = 10) -> float:
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9


def breakdown(prof, wall: float) -> dict[str, float]:
    """Share of the profiled ``wall`` per part, the operators of ``steps`` split by kind; ``python``
    is what no operator accounts for (the profiler slows both down alike, roughly)."""
    events = [e for e in prof.events() if e.device_type.name == "CPU"]
    labels = sorted((e.time_range.start, e.time_range.end, e.name[5:]) for e in events if e.name.startswith("part:"))
    starts = [start for start, _, _ in labels]
    parts: dict[str, float] = defaultdict(float)
    for event in events:
        if event.name.startswith("part:"):
            continue
        at = bisect.bisect_right(starts, event.time_range.start) - 1
        owner = labels[at][2] if at >= 0 and event.time_range.end <= labels[at][1] else "search"
        parts[owner if owner != "steps" else "steps:" + kind(event.name)] += event.self_cpu_time_total / 1e6
    shares = {name: round(seconds / wall, 4) for name, seconds in sorted(parts.items())}
    shares["python"] = round(max(0.0, wall - sum(parts.values())) / wall, 4)
    return shares


def figure(rows: list[dict], stem: Path) -> None:
    """One stacked bar per measured line: the share of the time in each part (PNG + SVG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from genrec.figures import save_figure

    parts = sorted({part for row in rows for part in row["shares"]}, key=lambda part: (part == "python", part))
    labels = [
        f"{r['architecture']}, {r['threads']} thr., {r['decode_precision']}: {r['users_per_s']:.0f} users/s"
        for r in rows
    ]
    fig, axis = plt.subplots(figsize=(10, 0.6 * len(rows) + 1.8))
    left = [0.0] * len(rows)
    colours = plt.get_cmap("tab10").colors
    for index, part in enumerate(parts):
        widths = [100 * row["shares"].get(part, 0.0) for row in rows]
        axis.barh(labels, widths, left=left, label=part, color=colours[index % 10])
        left = [a + b for a, b in zip(left, widths)]
    axis.invert_yaxis()
    axis.set_xlabel("share of the search's time (%)")
    axis.set_title(f"beam {rows[0]['beam']}, {rows[0]['dataset']}, batches of {rows[0]['batch_size']}", fontsize=9)
    axis.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.18))
    save_figure(fig, stem)


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return
    config_file, flags = parse_flags(argv)
    architectures = str(flags.pop("architectures", "t5,decoder")).split(",")
    beam = int(flags.pop("beam", 50))
    users = int(flags.pop("users", 256))
    batch_size = int(flags.pop("batch_size", 32))
    checkpoint = flags.pop("checkpoint", None)
    figure_stem = flags.pop("figure", None)
    torch.set_grad_enabled(False)
    rows = []
    peak = peak_gflop_per_s()
    for architecture in architectures:
        config = load_config(
            [f"--config={config_file}"] if config_file else [],
            **{"model": "PSID", **flags, "architecture": architecture},
        )
        model, data, histories, autocast = decoding_setup(config, checkpoint, users)
        search(model, histories[:batch_size], batch_size, beam, labelled, autocast)  # warm-up
        with FlopCounterMode(display=False) as counter:
            search(model, histories[:batch_size], batch_size, beam, labelled, autocast)
        flop_per_user = counter.get_total_flops() / min(batch_size, len(histories))
        start = time.perf_counter()
        search(model, histories, batch_size, beam, lambda step: step, autocast)
        plain = time.perf_counter() - start
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            search(model, histories, batch_size, beam, labelled, autocast)
            profiled = time.perf_counter() - start
        row = {
            **setting_fields(config, model, data, autocast, beam, len(histories), batch_size),
            "parameters": sum(p.numel() for p in model.parameters()),
            "users_per_s": round(len(histories) / plain, 2),
            "gflop_per_user": round(flop_per_user / 1e9, 4),
            "gflop_per_s": round(flop_per_user * len(histories) / plain / 1e9, 1),
            "peak_gflop_per_s": round(peak, 1),
            "seconds": round(plain, 3),
            "profiled_s": round(profiled, 3),
            "shares": breakdown(prof, profiled),
        }
        print(json.dumps(row), flush=True)
        rows.append(row)
    if figure_stem:
        figure(rows, Path(str(figure_stem)))


if __name__ == "__main__":
    main(sys.argv[1:])
