"""Layered, typed configuration.

Layers, later wins: ``genrec/default.yaml`` < ``genrec/datasets/<Name>/config.yaml`` <
``genrec/models/<Name>/config.yaml`` < ``--config FILE`` < ``--key=value`` flags.

Defaults live in the YAML files; types and bounds live in pydantic schemas: :class:`GlobalSettings`
(:mod:`genrec.settings`), plus a ``Settings`` class in each dataset and model package for its own keys. A key that no
schema of the chosen dataset/model declares, or a value of the wrong type, fails before any work
starts, naming the key, where it was set, and the closest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError, create_model

from genrec.errors import ConfigError
from genrec.schema import StrictModel
from genrec.settings import GlobalSettings

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_FILE = PACKAGE_DIR / "default.yaml"


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, except that a key given twice in one mapping is an error (plain YAML
    keeps the last one silently)."""

    def construct_mapping(self, node, deep=False):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(
                    f"{self.name}:{key_node.start_mark.line + 1}: key '{key}' given twice (first on line {seen[key]})"
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        loader = UniqueKeyLoader(Path(path).read_text())
        loader.name = str(path)
        try:
            data = loader.get_single_data()
        finally:
            loader.dispose()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config file {path} is a directory") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of key: value, got {type(data).__name__}")
    return data


def parse_flags(argv: list[str], text: frozenset[str] = frozenset()) -> tuple[Path | None, dict[str, Any]]:
    """Split ``--config FILE`` and ``--key=value`` / ``--key value`` flags.

    Values are parsed as YAML scalars or lists (``3`` is an int, ``[a, b]`` a list, ``null`` None);
    nothing is ever evaluated as code. The keys in ``text`` keep their value as written: item ids
    such as ``007``, ``1.50`` or ``yes`` would otherwise become 7, 1.5 and True.
    """
    config_file: Path | None = None
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        token = argv[i]
        if not token.startswith("--") or token == "--":
            raise ConfigError(f"expected a --key=value flag, got {token!r}")
        key, eq, raw = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv) or argv[i + 1].startswith("--"):
                raise ConfigError(f"flag --{key} needs a value (--{key}=VALUE)")
            raw = argv[i + 1]
            i += 1
        i += 1
        key = key.replace("-", "_")
        if key == "config":
            if config_file is not None:
                raise ConfigError(f"--config given twice ({config_file} and {raw}); merge them into one file")
            config_file = Path(raw)
            continue
        if key in overrides:
            raise ConfigError(f"flag --{key} given twice")
        if key in text:
            overrides[key] = raw
            continue
        try:
            overrides[key] = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            overrides[key] = raw
    return config_file, overrides


def settings_schema(dataset: str, model: str | None, quantizer: str | None = None) -> type[StrictModel]:
    """The combined schema for one dataset/model pair (and the chosen quantizer, if a plug-in's with keys)."""
    from genrec import datasets, models
    from genrec.semantic_ids import methods

    quantizers = methods.settings_schemas(quantizer)
    bases: list[type[StrictModel]] = [GlobalSettings, *quantizers, datasets.get(dataset).Settings]
    if model is not None:
        bases.append(models.get(model).Settings)
    return create_model("Config", __base__=tuple(bases))


def describe(config: StrictModel) -> str:
    """Every key of a resolved config with its value and description, grouped by the layer that
    declares it (every run, the dataset, the model) and named by that layer's defaults file."""
    from genrec import datasets, models
    from genrec.semantic_ids import methods

    layers = [("every run", "genrec/default.yaml", GlobalSettings)]
    layers += [
        (f"quantizer {schema.__module__}", "genrec/default.yaml", schema)
        for schema in methods.settings_schemas(config.vq_method)
    ]
    layers.append(
        (
            f"dataset {config.dataset}",
            f"genrec/datasets/{config.dataset}/config.yaml",
            datasets.get(config.dataset).Settings,
        )
    )
    if config.model is not None:
        layers.append(
            (f"model {config.model}", f"genrec/models/{config.model}/config.yaml", models.get(config.model).Settings)
        )
    values = config.model_dump(mode="json")
    lines = []
    for title, defaults, schema in layers:
        lines.append(f"\n{title} (defaults: {defaults}):")
        for key, field in schema.model_fields.items():
            value = yaml.safe_dump(values[key], default_flow_style=True, width=1_000).strip().removesuffix("\n...")
            lines.append(f"  --{key}={value}".ljust(44) + f" {field.description}")
    return "\n".join(lines)


def all_declared_keys() -> dict[str, str]:
    """Every key some dataset or model declares, mapped to its owner (for 'belongs to X' hints)."""
    from genrec import datasets, models

    owners: dict[str, str] = {}
    for kind, registry in (("dataset", datasets), ("model", models)):
        for name in registry.names():
            for key in registry.get(name).Settings.model_fields:
                owners.setdefault(key, f"{kind} {name}")
    return owners


def unknown_key_message(key: str, source: str, valid: list[str], dataset: str, model: str | None) -> str:
    message = f"unknown config key '{key}' (set in {source})"
    owner = all_declared_keys().get(key)
    if owner:
        chosen = f"dataset {dataset}" + (f" with model {model}" if model else "")
        message += f": it is a setting of {owner}, not of {chosen}"
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    if close:
        message += f"; did you mean '{close[0]}'?"
    return message


def keys_of_other_models(model: str | None, others: list[str]) -> set[str]:
    """Keys that only the ``others`` declare: one config shared by several models may set them, and
    ``model`` (or a run without a model) ignores them rather than rejecting them."""
    from genrec import models

    own = set(GlobalSettings.model_fields) | (set(models.get(model).Settings.model_fields) if model else set())
    return {key for name in others for key in models.get(name).Settings.model_fields} - own


def load_config(argv: list[str] | None = None, ignore: set[str] = frozenset(), **overrides: Any) -> StrictModel:
    """Resolve the layered configuration from command-line flags (and/or keyword overrides); keys in
    ``ignore`` are dropped from the user's file and flags (see :func:`keys_of_other_models`).

    A ``--config`` file may be shared by several models (``configs/scientific_cpu.yaml``): its keys
    that belong to other models are ignored. Flags stay strict: a flag the run cannot use is an error.
    """
    config_file, flags = parse_flags(list(argv or []))
    flags.update(overrides)
    layers: list[tuple[str, dict[str, Any]]] = [
        (str(DEFAULT_FILE.relative_to(PACKAGE_DIR.parent)), read_yaml(DEFAULT_FILE))
    ]
    user_file = read_yaml(config_file) if config_file else {}
    flags = {k: v for k, v in flags.items() if k not in ignore}
    user_file = {k: v for k, v in user_file.items() if k not in ignore}

    def chosen(key: str) -> Any:
        for layer in (flags, user_file):
            if key in layer:
                return layer[key]
        return layers[0][1].get(key)

    from genrec import datasets, models

    dataset, model = chosen("dataset"), chosen("model")
    if not isinstance(dataset, str) or dataset not in datasets.names():
        raise ConfigError(_choice_message("dataset", dataset, datasets.names()))
    if model is not None and (not isinstance(model, str) or model not in models.names()):
        raise ConfigError(_choice_message("model", model, models.names()))
    other_models = keys_of_other_models(model, models.names())
    user_file = {k: v for k, v in user_file.items() if k not in other_models}
    layers.append((layer_name(datasets.config_file(dataset)), read_yaml(datasets.config_file(dataset))))
    if model is not None:
        layers.append((layer_name(models.config_file(model)), read_yaml(models.config_file(model))))
    if config_file:
        layers.append((f"--config {config_file}", user_file))
    layers.append(("the command line", flags))

    merged: dict[str, Any] = {}
    source: dict[str, str] = {}
    for name, layer in layers:
        for key, value in layer.items():
            merged[key] = value
            source[key] = name

    quantizer = chosen("vq_method")
    schema = settings_schema(dataset, model, quantizer if isinstance(quantizer, str) else None)
    valid = sorted(schema.model_fields)
    for key in merged:
        if key not in schema.model_fields:
            raise ConfigError(unknown_key_message(key, source[key], valid, dataset, model))
    try:
        return schema(**merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        if not error["loc"]:  # a rule across keys (a model validator): its message names them
            raise ConfigError(f"inconsistent settings: {error['msg'].removeprefix('Value error, ')}") from None
        key = ".".join(str(part) for part in error["loc"])
        where = source.get(str(error["loc"][0]), "no layer: add it to genrec/default.yaml")
        raise ConfigError(f"config key '{key}' (set in {where}): {error['msg']} (got {error.get('input')!r})") from None


def layer_name(path: Path) -> str:
    """A dataset's or model's ``config.yaml`` as messages name it: ``genrec/models/PSID/config.yaml``
    for genrec's own, the full path for a plug-in's."""
    package = Path(__file__).resolve().parent
    return str(Path("genrec") / path.resolve().relative_to(package)) if package in path.resolve().parents else str(path)


def _choice_message(key: str, value: Any, names: list[str]) -> str:
    message = f"unknown {key} {value!r}; available: {', '.join(names) or '(none yet)'}"
    close = difflib.get_close_matches(str(value), names, n=1, cutoff=0.5)
    return message + (f"; did you mean '{close[0]}'?" if close else "")


def dump_config(config: StrictModel, path: Path) -> None:
    """Write the fully resolved configuration (plain YAML, reloadable with ``--config``)."""
    from genrec.cache import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=True))
