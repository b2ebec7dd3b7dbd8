"""Checkpoints that say what they are: weights plus the identity of the run that wrote them.

Every ``best.pt`` / ``last.pt`` stores an *identity*: the model name, the resolved settings (less
where files go), a fingerprint of the dataset's content and one of the semantic IDs the model reads.
Loading compares it with the run at hand, so a checkpoint of another dataset, seed or ID table is
refused with the keys that differ instead of being evaluated. Only the settings whose schema field
declares the role may differ (:func:`keys_with_role`): ``evaluation`` ones when a checkpoint is
evaluated, ``resumable`` ones when a run is resumed (the trainer records such changes in the run
folder).

Checkpoints hold tensors and plain values only and are read with ``weights_only=True``: a crafted
file cannot run code, and any unreadable file is one error line naming it.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch
from pydantic.fields import FieldInfo

from genrec.cache import atomic_write
from genrec.errors import GenrecError
from genrec.schema import ROLES, StrictModel

FORMAT = 1  # bump when the layout of a checkpoint changes


def keys_with_role(config: StrictModel, role: str) -> tuple[str, ...]:
    """The settings of ``config``'s schema declared with ``role`` (:func:`genrec.schema.setting`):
    ``location`` (where files go and where the work runs: never part of an identity), ``evaluation``
    (evaluating a checkpoint may change them) or ``resumable`` (a resumed run may change them; a
    longer ``epochs`` stretches a decaying learning-rate schedule over the new total from the
    current step on)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    return tuple(name for name, field in type(config).model_fields.items() if role in extra_of(field).get("roles", ()))


def added_values(config: StrictModel) -> dict[str, Any]:
    """Settings added after runs (and their checkpoints) existed, with the value that reproduces what
    ran before them (their ``since``): a run that lacks such a key counts as having that value, so a
    new option does not orphan finished runs. (``duplicates``: earlier runs kept every interaction;
    file datasets now default to ``drop``, so their earlier compare runs are trained again once,
    though their data had none.)"""
    return {
        name: extra_of(field)["since"]
        for name, field in type(config).model_fields.items()
        if "since" in extra_of(field)
    }


def extra_of(field: FieldInfo) -> dict[str, Any]:
    extra = field.json_schema_extra
    return extra if isinstance(extra, dict) else {}


class CheckpointError(GenrecError):
    """A checkpoint that cannot be read, or that belongs to another run."""


def run_identity(config: StrictModel, data_fingerprint: str, semantic_ids: dict | None) -> dict:
    """What a checkpoint of this run depends on (plain types only)."""
    location = keys_with_role(config, "location")
    settings = {k: v for k, v in config.model_dump(mode="json").items() if k not in location}
    return {
        "format": FORMAT,
        "model": config.model,
        "settings": settings,
        "data": data_fingerprint,
        "semantic_ids": semantic_ids,
    }


def save_checkpoint(path: Path, identity: dict, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings) with ``identity`` atomically. PyTorch's zip writer
    reports a short write (a disk that filled or failed mid-file) as a ``RuntimeError``, not an
    ``OSError``: it becomes one line naming ``path``; the half-written temporary file is gone and
    the previous checkpoint whole."""
    try:
        atomic_write(path, lambda tmp: torch.save({"identity": identity, **state}, tmp))
    except RuntimeError as exc:
        message = str(exc)
        if "unexpected pos" not in message and "PytorchStreamWriter" not in message:
            raise
        first = next((line.strip() for line in message.splitlines() if line.strip()), message)
        raise GenrecError(f"cannot write {path}: the disk is full or failing (PyTorch: {first})") from None


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    """The checkpoint's contents, loaded without running any code it might hold."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise CheckpointError(f"{path}: not a file")
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"GLOBAL ([\w.]+)", str(exc))
        if blocked:
            raise CheckpointError(
                f"{path}: refused: it would load {blocked.group(1)}, code or an object other than tensors "
                "and plain values (genrec loads checkpoints with weights_only=True)"
            ) from None
        raise CheckpointError(
            f"{path}: not a readable checkpoint, truncated or corrupt (not a torch archive)"
        ) from None
    except PermissionError as exc:
        raise CheckpointError(f"{path}: cannot read: {exc.strerror}") from None
    except (
        OSError,
        RuntimeError,
        EOFError,
        ValueError,
        zipfile.BadZipFile,
        KeyError,
        IndexError,
        TypeError,
        AttributeError,
    ) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else _first_line(exc)
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt ({reason})") from None
    if not isinstance(state, dict) or not isinstance(state.get("identity"), dict) or "model" not in state:
        raise CheckpointError(
            f"{path}: not a genrec checkpoint with an identity record (written by another program, "
            "or by a genrec before checkpoints carried their identity)"
        )
    if state["identity"].get("format") != FORMAT:
        raise CheckpointError(
            f"{path}: checkpoint format {state['identity'].get('format')!r}, this genrec reads format {FORMAT}"
        )
    return state


def differences(saved: dict, current: dict, added: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{what: (in the checkpoint, now)}`` for every part of two identities that differs; a setting
    absent from one reads as its ``added`` value (:func:`added_values`) where it has one."""
    changed: dict[str, tuple[Any, Any]] = {}
    for part in ("model", "data", "semantic_ids"):
        if saved.get(part) != current.get(part):
            changed[part] = (saved.get(part), current.get(part))
    old, new = saved.get("settings", {}), current["settings"]
    for key in sorted(set(old) | set(new)):
        absent = added.get(key, "(absent)")
        if old.get(key, absent) != new.get(key, absent):
            changed[key] = (old.get(key, "(absent)"), new.get(key, "(absent)"))
    return changed


def check_identity(
    path: Path, saved: dict, current: dict, config: StrictModel, role: str, hint: str
) -> dict[str, tuple[Any, Any]]:
    """Refuse a checkpoint whose identity differs from ``current`` (of ``config``) beyond the settings
    declared with ``role``; returns the allowed differences (key: (checkpoint, now))."""
    changed = differences(saved, current, added_values(config))
    allowed = set(keys_with_role(config, role))
    refused = {k: v for k, v in changed.items() if k not in allowed}
    if refused:
        listed = "; ".join(describe(key, old, new) for key, (old, new) in refused.items())
        raise CheckpointError(f"{path} does not belong to this run: {listed}. {hint}")
    return changed


def describe(key: str, old: Any, new: Any) -> str:
    if key == "data":
        return "the dataset's content differs (another dataset, category, file or duplicate policy)"
    if key == "semantic_ids":
        keys = [v.get("key") if isinstance(v, dict) else v for v in (old, new)]
        return f"the semantic IDs differ (cache key {keys[0]} in the checkpoint, {keys[1]} now)"
    return f"{key} {old!r} in the checkpoint, {new!r} now"


def restore_weights(model: torch.nn.Module, state: dict, path: Path) -> None:
    """Load the checkpoint's weights into ``model``; a mismatch or a non-finite weight is one line."""
    weights = state["model"]
    bad = (
        [
            name
            for name, tensor in weights.items()
            if torch.is_tensor(tensor) and tensor.is_floating_point() and not torch.isfinite(tensor).all()
        ]
        if isinstance(weights, dict)
        else []
    )
    if bad:
        raise CheckpointError(
            f"{path}: non-finite weights in {', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''} "
            "(the run diverged before this checkpoint)"
        )
    try:
        model.load_state_dict(weights)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise CheckpointError(f"{path}: the weights do not fit the model ({_first_line(exc)})") from None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else type(exc).__name__
    return line if len(line) <= 200 else line[:197] + "..."
