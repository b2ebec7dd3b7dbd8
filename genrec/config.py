"""Layered, typed configuration.

Layers, later wins: ``genrec/default.yaml`` < ``genrec/datasets/<Name>/config.yaml`` <
``genrec/models/<Name>/config.yaml`` < ``--config FILE`` < ``--key=value`` flags.

Defaults live in the YAML files; types and bounds live in pydantic schemas: :class:`GlobalSettings`
here, plus a ``Settings`` class in each dataset and model package for its own keys. A key that no
schema of the chosen dataset/model declares, or a value of the wrong type, fails before any work
starts, naming the key, where it was set, and the closest valid key.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, create_model, field_validator, model_validator

from genrec.errors import ConfigError
from genrec.schema import TEXT_FIELDS, StrictModel, comma_separated, seconds_of, setting

PACKAGE_DIR = Path(__file__).resolve().parent
DEFAULT_FILE = PACKAGE_DIR / "default.yaml"


class GlobalSettings(StrictModel):
    """Keys every run has. Defaults are in ``genrec/default.yaml``; all fields are required here so a
    key missing from that file is caught by the tests rather than silently defaulted twice."""

    # run
    dataset: str = Field(description="dataset name (a folder of genrec/datasets)")
    model: str | None = Field(
        description="model name (a folder of genrec/models); null: data, split and semantic IDs only"
    )
    seed: int = Field(description="seeds the split's shuffles, initial weights, batches and every random draw of a run")
    data_dir: Path | None = setting(
        roles=("location",), description="where dataset files are read; null: $GENREC_DATA_DIR, else ./data"
    )
    cache_dir: Path = setting(
        roles=("location",), description="embeddings and semantic IDs, keyed by every setting that affects them"
    )
    output_dir: Path = setting(roles=("location",), description="one folder per run, with its resolved config.yaml")
    run_name: str | None = setting(
        roles=("location",), description="the run's folder inside output_dir; null: <command>-<dataset>-<timestamp>"
    )
    device: Literal["auto", "cpu", "cuda"] = setting(
        roles=("location",), description="auto: cuda when available, else cpu"
    )
    logger: Literal["none", "tensorboard", "wandb", "mlflow"] = setting(
        roles=("location",),
        description="also log loss, learning rate and validation metrics, then the settings and test metrics, to "
        "TensorBoard (the run's tensorboard/), W&B or MLflow",
    )
    # sequences
    duplicates: Literal["drop", "refuse", "keep"] = setting(
        since="keep",
        description="an item right after itself, or at the same timestamp: drop (count logged), refuse, or keep",
    )
    max_item_seq_len: int = Field(ge=1, description="histories keep this many most recent items")
    split: Literal["leave_one_out", "temporal"] = setting(
        since="leave_one_out",
        description="leave_one_out: each user's last item tests, the one before validates; temporal: the times "
        "split_valid_time and split_test_time cut the whole log (train before, validate between, test after)",
    )
    split_valid_time: float | None = setting(
        since=None,
        description="split=temporal: validation starts here (Unix seconds, or an ISO 8601 date-time; UTC if no zone)",
    )
    split_test_time: float | None = setting(
        since=None,
        description="split=temporal: the test starts here; each user's first interaction after it is the target",
    )
    cold_items: float = setting(
        since=0.0,
        ge=0,
        lt=1,
        description="> 0: hold this share of the items out of training (genrec analyze coldstart)",
    )
    cold_items_seed: int = setting(
        since=0, ge=0, description="which items cold_items holds out (the same across models and seeds)"
    )
    # item embeddings
    item_emb: Literal["auto", "text", "cf", "text+cf"] = Field(
        description="the item vectors semantic IDs quantize; auto: text when the dataset has text, else collaborative"
    )
    sent_emb_model: str = Field(description="sentence-transformers model name or local folder for text embeddings")
    sent_emb_fields: list[Literal[TEXT_FIELDS]] = Field(  # type: ignore[valid-type]
        description="item text fields embedded, in this order"
    )
    sent_emb_max_chars: int = Field(ge=16, description="cap on the text of one item")
    sent_emb_batch_size: int = Field(ge=1, description="items embedded per encoder call")
    sent_emb_pca: int = Field(ge=0, description="> 0: reduce text embeddings to this many dimensions by PCA")
    cf_emb_dim: int = Field(
        ge=2, description="collaborative embedding size (truncated SVD of training co-occurrence PPMI)"
    )
    cf_window: int = Field(
        ge=1, description="co-occurrence window: items at most this far apart in a training sequence"
    )
    # semantic IDs
    vq_method: str = Field(
        description="quantizer of the semantic IDs (per_modality: one level per entry of vq_modalities)"
    )
    vq_modalities: list[Literal["text", "cf", "category"]] = setting(
        since=["cf", "category", "text"],
        description="per_modality: each level is the k-means code of this modality's vector",
    )
    vq_n_codebooks: int = Field(ge=1, le=8, description="levels of a semantic ID (before a collision token)")
    vq_codebook_size: int = Field(ge=2, description="codes per level")
    vq_collision: Literal["tiger", "conflict_free"] = Field(
        description="items with equal codes: conflict_free (PSID: re-assigned, same length) or tiger (an extra token)"
    )
    vq_kmeans_iters: int = Field(ge=1, description="k-means iterations per codebook")
    vq_level_order: list[int] | None = setting(
        since=None,
        description="e.g. [2, 0, 1]: the ID's levels in this order (a fixed-order ablation); null: as quantized",
    )
    # training and evaluation (every model)
    epochs: int = setting(roles=("resumable",), ge=1, description="epoch cap")
    batch_size: int = Field(
        ge=1,
        description="training targets per optimizer step (a decoder backbone batches windows holding about as many)",
    )
    lr: float = Field(gt=0, description="AdamW learning rate")
    weight_decay: float = Field(ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(ge=0, description="optimizer steps of linear learning-rate warmup")
    lr_schedule: Literal["cosine", "linear", "constant"] = Field(description="learning-rate decay after warmup")
    max_grad_norm: float = setting(
        since=0.0, ge=0, description="> 0: clip the gradients' global norm to this before each step"
    )
    grad_accumulation: int = setting(
        since=1, ge=1, description="batches per optimizer step (an effective batch of this x batch_size)"
    )
    precision: Literal["auto", "fp32", "bf16", "fp16"] = setting(
        since="auto",
        description="training precision: auto (bf16 autocast on CUDA, fp32 on CPU), fp32, bf16, fp16 (CUDA, scaled)",
    )
    deterministic: bool = setting(since=True, description="deterministic torch kernels while training and evaluating")
    num_workers: int = setting(
        roles=("location",),
        ge=0,
        description="DataLoader processes preparing training batches (0: the training process; pinned memory on CUDA)",
    )
    eval_interval: int = Field(ge=1, description="validate every this many epochs")
    valid_users: int = setting(
        since=0,
        ge=0,
        description="> 0: validate during training on a fixed, seeded sample of this many users (final: all)",
    )
    patience: int = setting(
        roles=("resumable",), ge=1, description="stop after this many validations without a better NDCG@10"
    )
    min_delta: float = setting(
        roles=("resumable",),
        since=0.0,
        ge=0,
        description="a validation is better only when NDCG@10 rises by more than this",
    )
    eval_batch_size: int = setting(roles=("evaluation", "resumable"), ge=1, description="users per evaluation batch")
    num_beams: int = setting(roles=("evaluation",), ge=1, description="beam width for validation")
    test_num_beams: int = setting(
        roles=("evaluation", "resumable"), ge=1, description="beam width for the final validation and test"
    )
    checkpoint: Path | None = setting(
        roles=("location",), description="a checkpoint to resume training from (last.pt) or to evaluate (best.pt)"
    )
    category_level: int = setting(
        roles=("evaluation", "resumable"),
        ge=0,
        description="category-path level of category_entropy@10 (1: top level; 0: off)",
    )
    metric_ks: list[int] = setting(
        roles=("evaluation", "resumable"),
        since=[1, 5, 10],
        description="cutoffs K of Recall@K and NDCG@K (they include 5 and 10, which tables report)",
    )
    select_metric: str = setting(
        since="ndcg@10", description="the validation metric that picks the best checkpoint and stops early"
    )
    exclude_seen: bool = setting(
        roles=("evaluation",), since=False, description="never recommend an item the user interacted with before"
    )

    @field_validator("split_valid_time", "split_test_time", mode="before")
    @classmethod
    def _moment(cls, value: Any) -> Any:
        return value if value is None else seconds_of(value)

    @model_validator(mode="after")
    def _temporal_split_is_cut(self):
        if self.split != "temporal":
            return self
        if self.split_valid_time is None or self.split_test_time is None:
            raise ValueError(
                "split=temporal needs --split_valid_time and --split_test_time (genrec data stats: the range)"
            )
        if not self.split_valid_time < self.split_test_time:
            raise ValueError(
                f"split_valid_time {self.split_valid_time} must come before split_test_time {self.split_test_time}"
            )
        if self.cold_items:
            raise ValueError(
                "cold_items holds out each user's last item's catalogue share: use it with split=leave_one_out"
            )
        return self

    split_comma_lists = field_validator(
        "sent_emb_fields", "vq_level_order", "vq_modalities", "metric_ks", mode="before"
    )(comma_separated)

    @model_validator(mode="after")
    def _one_level_per_modality(self):
        if self.vq_method == "per_modality" and len(self.vq_modalities) != self.vq_n_codebooks:
            raise ValueError(
                f"vq_method=per_modality makes one level per modality: vq_modalities {self.vq_modalities} "
                f"has {len(self.vq_modalities)}, vq_n_codebooks is {self.vq_n_codebooks}"
            )
        return self

    @model_validator(mode="after")
    def _level_order_is_a_permutation(self):
        levels = self.vq_n_codebooks + (self.vq_collision == "tiger")
        if self.vq_level_order is not None and sorted(self.vq_level_order) != list(range(levels)):
            raise ValueError(
                f"vq_level_order {self.vq_level_order} must order the {levels} ID levels 0..{levels - 1} "
                f"(vq_n_codebooks {self.vq_n_codebooks}{' plus the collision token' * (self.vq_collision == 'tiger')})"
            )
        return self

    @field_validator("vq_method")
    @classmethod
    def _registered_quantizer(cls, value: str) -> str:
        from genrec.semantic_ids import methods

        if value not in methods.names():
            raise ValueError(f"no such quantizer; registered: {', '.join(methods.names())}")
        return value

    @field_validator("metric_ks")
    @classmethod
    def _cutoffs(cls, value: list[int]) -> list[int]:
        if any(k < 1 for k in value) or not {5, 10} <= set(value):
            raise ValueError("must be cutoffs >= 1 that include 5 and 10 (the tables and figures report them)")
        return sorted(set(value))

    @model_validator(mode="after")
    def _selected_metric_is_computed(self):
        from genrec.evaluation.metrics import metric_names

        names = metric_names(tuple(self.metric_ks))
        if self.select_metric not in names:
            raise ValueError(
                f"select_metric {self.select_metric!r} is none of the metrics computed: {', '.join(names)}"
            )
        return self

    @field_validator("run_name")
    @classmethod
    def _inside_output_dir(cls, value: str | None) -> str | None:
        """A run's folder is ``output_dir/run_name``: a name may nest (``compare/x/y``) but never leave."""
        if value is not None and (not value.strip() or Path(value).is_absolute() or ".." in Path(value).parts):
            raise ValueError("must be a relative folder name inside output_dir (no leading '/', no '..')")
        return value


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


def settings_schema(dataset: str, model: str | None) -> type[StrictModel]:
    """The combined schema for one dataset/model pair."""
    from genrec import datasets, models
    from genrec.semantic_ids import methods

    bases: list[type[StrictModel]] = [GlobalSettings, *methods.settings_schemas(), datasets.get(dataset).Settings]
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
        (f"quantizer {schema.__module__}", "genrec/default.yaml", schema) for schema in methods.settings_schemas()
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

    schema = settings_schema(dataset, model)
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
