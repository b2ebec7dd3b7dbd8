"""Decoding speed: genrec's constrained beam search against a reference search on the same model
and inputs, one JSON line per beam width.

    python benchmarks/decode_speed.py [--beams=20,50,100,500] [--users=128] [--batch_size=32]
        [--reference=auto|hf|fp32|none] [--decode_precision=fp32|bf16] [--decode_workers=N]
        [--checkpoint=runs/<run>/best.pt --config=runs/<run>/config.yaml] [--key=value ...]

The model is PSID (paper-size T5 unless flags say otherwise) on the configured dataset's test
histories, randomly initialised unless ``--checkpoint`` is given (with its run's ``--config``: a
checkpoint is loaded only into the run it belongs to). One batch is decoded first, untimed (the
allocator's and the kernels' warm-up). The reference: ``hf``, Hugging Face ``generate`` with a
``prefix_allowed_tokens_fn`` trie (the T5 only: it cannot run genrec's decoder); ``fp32``, genrec's
own search in fp32 (what ``--decode_precision=bf16`` costs in accuracy); ``auto``: ``fp32`` when
decoding in bf16, else ``hf`` on the T5 and none on the decoder. ``top10_overlap`` is the mean share
of each user's top-10 that both searches return; ``top10_identical`` the share of users whose top-10
lists are equal in order. ``--decode_workers=N`` decodes N batches side by side on one torch thread
each (the ``decode_workers`` setting).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from genrec.config import load_config, parse_flags
from genrec.models.sid_seq2seq import EOS
from genrec.pipeline import build_model, load_split, load_trained
from genrec.runtime import decode_autocast, in_parallel, resolve_device, seed_everything


def hf_trie(item_tokens: torch.Tensor) -> dict[tuple[int, ...], list[int]]:
    allowed: dict[tuple[int, ...], set[int]] = {}
    for row in item_tokens.tolist():
        for depth in range(len(row)):
            allowed.setdefault(tuple(row[:depth]), set()).add(row[depth])
    return {prefix: sorted(tokens) for prefix, tokens in allowed.items()}


def ours(model, histories, batch_size, beams, autocast, workers):
    """Top-10 lists of genrec's search, batches decoded by ``workers`` threads side by side
    (``decode_workers``, :func:`genrec.runtime.in_parallel`)."""

    def decode(start: int) -> np.ndarray:
        ids, mask = model.inputs(histories[start : start + batch_size])
        with torch.no_grad(), torch.autocast(ids.device.type, dtype=torch.bfloat16, enabled=autocast):
            items = model.model.generate(ids, mask, model.trie, beams)[0][:, :10].cpu().numpy()
        return np.pad(items, ((0, 0), (0, 10 - items.shape[1])), constant_values=-1)  # beams < 10

    return np.concatenate(in_parallel(decode, range(0, len(histories), batch_size), workers))


def hugging_face(model, histories, batch_size, beams, allowed, token_to_item):
    length = model.item_tokens.shape[1]
    returned = min(10, beams)

    def allowed_tokens(_, prefix: torch.Tensor) -> list[int]:
        return allowed.get(tuple(prefix[1:].tolist()), [EOS])  # prefix[0] is the decoder start token

    ranked = []
    for start in range(0, len(histories), batch_size):
        ids, mask = model.inputs(histories[start : start + batch_size])
        out = model.model.t5.generate(
            input_ids=ids,
            attention_mask=mask,
            num_beams=beams,
            num_return_sequences=returned,
            max_new_tokens=length,
            prefix_allowed_tokens_fn=allowed_tokens,
            do_sample=False,
            length_penalty=0.0,
            early_stopping=True,
        )
        items = [token_to_item.get(tuple(seq[1 : length + 1].tolist()), -1) for seq in out]
        rows = np.array(items).reshape(-1, returned)
        ranked.append(np.pad(rows, ((0, 0), (0, 10 - returned)), constant_values=-1))
    return np.concatenate(ranked)


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def decoding_setup(config, checkpoint: str | None, users: int) -> tuple:
    """``(model, data, histories, autocast)``: the configured model in eval mode on its device, with
    a checkpoint's weights or randomly initialised, its data, the first ``users`` test histories, and
    whether it decodes under bf16 autocast (``decode_precision``)."""
    seed_everything(config.seed)
    device = resolve_device(config.device)
    if checkpoint:
        model, data, split = load_trained(config, Path(checkpoint))
    else:
        data, split = load_split(config)
        model = build_model(config, data, split)
    model.to(device).eval()
    return model, data, split.test.histories[:users], decode_autocast(config, device)


def setting_fields(config, model, data, autocast: bool, beam: int, users: int, batch_size: int) -> dict:
    """The fields that say what a line measured."""
    return {
        "dataset": data.name,
        "items": data.n_items,
        "architecture": config.architecture,
        "device": str(model.device),
        "threads": torch.get_num_threads(),
        "decode_precision": "bf16" if autocast else "fp32",
        "decode_workers": config.decode_workers,
        "beam": beam,
        "users": users,
        "batch_size": batch_size,
    }


def agreement(mine: np.ndarray, theirs: np.ndarray, beam: int) -> dict[str, float]:
    overlap = [len(set(a[a >= 0]) & set(b[b >= 0])) / max(1, min(10, beam)) for a, b in zip(mine, theirs)]
    return {
        "top10_overlap": round(float(np.mean(overlap)), 4),
        "top10_identical": round(float(np.mean([(a == b).all() for a, b in zip(mine, theirs)])), 4),
    }


def main(argv: list[str]) -> None:
    logging.basicConfig(level=logging.WARNING)
    if "--help" in argv or "-h" in argv:
        print(__doc__)
        return
    config_file, flags = parse_flags(argv)
    beams = [int(b) for b in str(flags.pop("beams", "20,50,100,500")).split(",")]
    users = int(flags.pop("users", 128))
    batch_size = int(flags.pop("batch_size", 32))
    checkpoint = flags.pop("checkpoint", None)
    reference = str(flags.pop("reference", "auto"))
    config = load_config([f"--config={config_file}"] if config_file else [], **{"model": "PSID", **flags})
    model, data, histories, autocast = decoding_setup(config, checkpoint, users)
    if reference == "auto":
        reference = "fp32" if autocast else "hf" if config.architecture == "t5" else "none"
    if reference not in ("hf", "fp32", "none") or (reference == "hf" and config.architecture != "t5"):
        raise SystemExit(f"--reference={reference}: one of auto, hf (the T5 only), fp32, none")
    if reference == "hf":
        allowed = hf_trie(model.item_tokens.cpu())
        token_to_item = {tuple(row): i for i, row in enumerate(model.item_tokens.cpu().tolist())}
    torch.set_grad_enabled(False)
    workers = config.decode_workers
    ours(model, histories[: batch_size * workers], batch_size, beams[0], autocast, workers)  # warm-up
    for beam in beams:
        mine, mine_s = timed(ours, model, histories, batch_size, beam, autocast, workers)
        row = {
            **setting_fields(config, model, data, autocast, beam, len(histories), batch_size),
            "ours_users_per_s": round(len(histories) / mine_s, 2),
            "reference": None if reference == "none" else reference,
            "reference_users_per_s": None,
            "speedup": None,
            "top10_overlap": None,
            "top10_identical": None,
        }
        if reference != "none":
            if reference == "hf":
                theirs, theirs_s = timed(hugging_face, model, histories, batch_size, beam, allowed, token_to_item)
            else:
                theirs, theirs_s = timed(ours, model, histories, batch_size, beam, False, workers)
            row.update(
                reference_users_per_s=round(len(histories) / theirs_s, 2),
                speedup=round(theirs_s / mine_s, 2),
                **agreement(mine, theirs, beam),
            )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
