"""A run folder made self-contained: ``genrec export --run=DIR --to=DIR`` (or :func:`export_run`)
writes everything :func:`genrec.load_run` needs to recommend, add and remove items, with no dataset
files and no cache, so a trained run can be copied to a server or shared.

A run folder alone is not enough: loading it reads the dataset's files again and takes the semantic
IDs, the quantizer that places new items and the item vectors from the cache, which another machine
does not have (rebuilding them means embedding and quantizing the whole catalogue). An export holds:

- ``config.yaml``: the run's resolved settings;
- ``model.safetensors``: the best checkpoint's weights (plain tensors, no code; readable by any
  framework) and ``identity.json``, the checkpoint's identity (:mod:`genrec.checkpoint`), which
  loading checks as it checks a checkpoint's;
- ``data.npz``: the interactions the run was trained on (users, items, sequences, times, item text),
  from which the split is cut again as training cut it;
- ``cache/``: exactly the cache entries that loading the run read or wrote (semantic IDs, the
  quantizer, the item vectors they were built from), under the keys the run computes, so they hit;
- ``backbone/`` (a run on a local language model folder, ``hf_causal_lm`` with ``backbone_path``):
  that folder's configuration and tokenizer without its weights (the export's replace them whole),
  from which the model is built where the original folder is not;
- ``results.json`` (when the run was tested), ``README.md`` (a model card) and ``export.json`` (the
  manifest: format, genrec version, and every file's size and SHA-256, checked on loading, so a
  damaged or edited file is one error naming it).

New items are embedded with the run's ``sent_emb_model``: the default ships with genrec; another
model must be available where the export is loaded.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from genrec import __version__
from genrec.cache import atomic_write_text, entries_used
from genrec.checkpoint import check_identity, restore_weights
from genrec.config import dump_config, load_config
from genrec.data import Interactions, Split
from genrec.errors import ConfigError, GenrecError
from genrec.evaluation.metrics import shown
from genrec.models.sid_causal_lm import portable_folder
from genrec.pipeline import build_model, identity, load_trained, split_of
from genrec.run_folder import BEST, CONFIG, RESULTS, finished_run, read_results

FORMAT = 1  # bump when the layout of an export changes
MANIFEST = "export.json"
WEIGHTS = "model.safetensors"
IDENTITY = "identity.json"
DATA = "data.npz"
CACHE = "cache"
BACKBONE = "backbone"  # an hf_causal_lm run's model folder (backbone_path): its configuration and tokenizer


def is_export(directory: Path) -> bool:
    """Whether ``directory`` is an export (it has a manifest) rather than a run folder."""
    return (Path(directory) / MANIFEST).is_file()


def export_run(run: str | Path, to: str | Path, **overrides: Any) -> Path:
    """Write the self-contained export of the finished run folder ``run`` into ``to`` (a new or
    empty folder) and return it. ``overrides`` say where the run's data and caches are
    (``data_dir``, ``cache_dir``), as for :func:`genrec.load_run`. The folder appears whole or not
    at all: it is written beside ``to`` and renamed into place."""
    import torch
    from safetensors.torch import save

    from genrec.semantic_ids import frozen_quantizer

    run, to = Path(run), Path(to)
    finished_run(run)
    if to.exists() and (not to.is_dir() or any(to.iterdir())):
        raise GenrecError(f"{to} exists and is not an empty folder: export into a new one")
    config = load_config([f"--config={run / CONFIG}"], **overrides)
    with entries_used() as used:
        model, interactions, split = load_trained(config, run / BEST)
        if model.adds_items:
            frozen_quantizer(config, interactions, split)  # what places a new item (written when missing)
    staging = to.parent / f".{to.name}.{secrets.token_hex(6)}.tmp"
    try:
        staging.mkdir(parents=True)
        dump_config(config, staging / CONFIG)
        if (folder := model_folder(config)) is not None:
            portable_folder(folder, staging / BACKBONE)
        weights = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in model.state_dict().items()}
        # as bytes, then written as any file (save_file would leave it readable by its owner only)
        (staging / WEIGHTS).write_bytes(save(weights, metadata={"genrec_export_format": str(FORMAT)}))
        # the loaded run's identity (load_trained checked it against the checkpoint's): that of the
        # config written beside it
        current = identity(config, interactions, model)
        (staging / IDENTITY).write_text(json.dumps(current, indent=2, sort_keys=True))
        write_interactions(interactions, staging / DATA)
        cache_root = Path(config.cache_dir).resolve()
        for entry in used:
            for path in (entry, entry.with_suffix(".json")):
                if path.exists():
                    target = staging / CACHE / path.resolve().relative_to(cache_root)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(path, target)
        results = read_results(run) if (run / RESULTS).is_file() else None
        if results is not None:
            shutil.copy2(run / RESULTS, staging / RESULTS)
        n_parameters = sum(p.numel() for p in model.parameters())
        (staging / "README.md").write_text(model_card(config, interactions, split, model, n_parameters, results, run))
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        manifest = {
            "format": FORMAT,
            "genrec": __version__,
            "model": config.model,
            "dataset": interactions.name,
            "source": str(run.resolve()),
            "parameters": n_parameters,
            "torch": torch.__version__,
            "files": {str(p.relative_to(staging)): {"bytes": p.stat().st_size, "sha256": sha256(p)} for p in files},
        }
        atomic_write_text(staging / MANIFEST, json.dumps(manifest, indent=2))
        if to.exists():
            to.rmdir()  # empty, checked above
        os.replace(staging, to)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return to


def load_export(directory: Path, overrides: dict[str, Any]) -> tuple[Any, Any, Interactions, Split]:
    """``(config, model, interactions, split)`` of an export, after checking its manifest (format,
    every file's size and hash) and the weights' identity against the data and semantic IDs it
    holds. ``overrides`` may change the ``device`` and how it is evaluated, never where its cache is."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from genrec.runtime import resolve_device

    manifest = check_manifest(directory)
    if "cache_dir" in overrides:
        raise ConfigError(f"{directory} is an export: it reads its own cache ({directory / CACHE}), not --cache_dir")
    config = load_config([f"--config={directory / CONFIG}"], **overrides, cache_dir=str(directory / CACHE))
    if config.model != manifest["model"]:
        raise GenrecError(f"{directory}: config.yaml names {config.model}, the manifest {manifest['model']}")
    interactions = read_interactions(directory / DATA)
    split = split_of(config, interactions)
    trained = config  # the settings the weights were trained with, which their identity records
    if model_folder(config) is not None:  # built from the export's copy of the model folder, not the original
        if not (directory / BACKBONE).is_dir():
            raise GenrecError(
                f"{directory}: an export of a run on backbone_path={config.backbone_path} without that model's "
                f"configuration ({BACKBONE}/): export the run again with this genrec"
            )
        config = config.model_copy(update={"backbone_path": str(directory / BACKBONE)})
    model = build_model(config, interactions, split)
    saved = json.loads((directory / IDENTITY).read_text())
    check_identity(directory / WEIGHTS, saved, identity(trained, interactions, model), trained, "evaluation", "")
    try:
        weights = load_file(str(directory / WEIGHTS))
    except (SafetensorError, OSError) as exc:
        raise GenrecError(f"{directory / WEIGHTS}: not readable weights ({exc})") from None
    restore_weights(model, {"model": weights}, directory / WEIGHTS)
    return config, model.to(resolve_device(config.device)), interactions, split


def model_folder(config) -> Path | None:
    """The local model folder an ``hf_causal_lm`` run was built from (``backbone_path``), if any."""
    if getattr(config, "architecture", None) != "hf_causal_lm" or config.backbone_path is None:
        return None
    return Path(config.backbone_path)


def check_manifest(directory: Path) -> dict:
    """The manifest, once every file it lists is present with its size and SHA-256."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise GenrecError(f"{directory / MANIFEST}: not a readable export manifest ({exc})") from None
    if manifest.get("format") != FORMAT:
        raise GenrecError(
            f"{directory}: export format {manifest.get('format')!r}; this genrec ({__version__}) reads format {FORMAT}"
        )
    for name, expected in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise GenrecError(f"{directory}: the export is incomplete: {name} is missing")
        if path.stat().st_size != expected["bytes"] or sha256(path) != expected["sha256"]:
            raise GenrecError(f"{directory}: {name} differs from the export's manifest (damaged or edited)")
    return manifest


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def write_interactions(interactions: Interactions, path: Path) -> None:
    """``interactions`` as plain arrays (no pickles): sequences and times concatenated with their
    lengths; item text, counts of dropped rows and extras as JSON."""
    arrays = {
        "name": np.array(interactions.name),
        "user_ids": np.array(interactions.user_ids, dtype=str),
        "item_ids": np.array(interactions.item_ids, dtype=str),
        "lengths": np.array([len(s) for s in interactions.sequences], dtype=np.int64),
        "sequences": np.concatenate(interactions.sequences) if interactions.sequences else np.zeros(0, np.int64),
        "item_text": np.array(json.dumps(interactions.item_text)),
        "dropped": np.array(json.dumps(interactions.dropped)),
        "extra": np.array(json.dumps(interactions.extra)),
    }
    if interactions.times is not None:
        arrays["times"] = np.concatenate(interactions.times)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def read_interactions(path: Path) -> Interactions:
    """What :func:`write_interactions` wrote: the same interactions (the same fingerprint)."""
    with np.load(path, allow_pickle=False) as data:
        cuts = np.cumsum(data["lengths"])[:-1]
        return Interactions(
            name=str(data["name"]),
            user_ids=data["user_ids"].tolist(),
            item_ids=data["item_ids"].tolist(),
            sequences=np.split(data["sequences"], cuts),
            item_text=json.loads(str(data["item_text"])),
            dropped=json.loads(str(data["dropped"])),
            extra=json.loads(str(data["extra"])),
            times=np.split(data["times"], cuts) if "times" in data.files else None,
        )


def model_card(
    config, interactions: Interactions, split: Split, model, n_parameters: int, results: dict | None, run: Path
) -> str:
    """A README for the export: what it is, what it was trained on, how it scored, how to use it."""
    test = (results or {}).get("test", {})
    metrics = "\n".join(f"| {name} | {shown(value)} |" for name, value in test.items() if "@" in name)
    sids = model.semantic_ids
    lines = [
        f"# {config.model} on {interactions.name}",
        "",
        f"Exported by genrec {__version__} from `{run.name}`. Load it with no dataset and no cache:",
        "",
        "```python",
        "import genrec",
        'run = genrec.load_run("THIS_FOLDER")',
        'run.recommend([["ITEM_ID", "ITEM_ID"]], k=10)',
        "```",
        "",
        "or `genrec recommend --run=THIS_FOLDER --history=ID,ID` / `genrec serve --run=THIS_FOLDER`.",
        "",
        "## Data",
        "",
        f"{interactions.n_users:,} users, {interactions.n_items:,} items, {interactions.n_interactions:,} "
        f"interactions; split `{config.split}`, histories of at most {config.max_item_seq_len} items; "
        f"{len(split.train):,} training examples, {len(split.test):,} test users.",
        "",
        "## Model",
        "",
        f"{config.model}, {n_parameters:,} parameters, seed {config.seed}.",
    ]
    if sids is not None:
        lines += [
            f"Semantic IDs of {sids.n_levels} levels (sizes {sids.level_sizes}) by `{config.vq_method}`; new items "
            f"are embedded with `{config.sent_emb_model}` (fields {', '.join(config.sent_emb_fields)}) and placed by "
            "the run's quantizer."
            if model.adds_items
            else f"Semantic IDs of {sids.n_levels} levels (sizes {sids.level_sizes}) by `{config.vq_method}`."
        ]
    if metrics:
        lines += ["", "## Test metrics", "", "| metric | value |", "|---|---|", metrics]
    lines += ["", "All settings: `config.yaml`; every file's hash: `export.json`.", ""]
    return "\n".join(lines)
