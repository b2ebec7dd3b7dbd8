"""The keys every run has (:class:`GlobalSettings`): their types, bounds and descriptions, and the
checks that involve several of them. Their defaults are in ``genrec/default.yaml``; each dataset,
model and quantizer declares its own keys beside its code. :mod:`genrec.config` layers and loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from genrec.schema import TEXT_FIELDS, StrictModel, comma_separated, seconds_of, setting


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
    decode_precision: Literal["auto", "fp32", "bf16"] = setting(
        roles=("evaluation",),
        since="auto",
        description="decoding and ranking in evaluation, recommend and serve: auto (bf16 autocast on CUDA unless "
        "precision is fp32, fp32 on CPU), fp32, bf16 (autocast on any device: faster on CPUs with AMX)",
    )
    decode_workers: int = setting(
        roles=("evaluation",),
        since=1,
        ge=1,
        description="threads that decode batches side by side in evaluation and recommend, one torch thread "
        "each (on a CPU, cores: faster than one batch on every core; 1: one batch at a time on torch's threads)",
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
