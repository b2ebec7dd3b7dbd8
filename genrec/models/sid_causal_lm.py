"""Any Hugging Face causal language model as the backbone over semantic-ID tokens
(``architecture: hf_causal_lm``): Llama, Qwen2, Mistral, GPT-2 and every other class that
``AutoModelForCausalLM`` builds.

Why: the open generative recommenders that start from a language model (MiniOneRec on Qwen, GRID's
decoder-only variant, LC-Rec) put the semantic-ID tokens into an LM's vocabulary and fine-tune it.
Here such a backbone reads and learns exactly the sequences of genrec's own decoder
(:class:`genrec.models.sid_causal.CausalSIDBackbone`: the same windows, prompts and Latte latent
tokens), so the two compare as networks, and it decodes with genrec's trie beam search.

Two ways to get one (:func:`build_causal_lm`):

- **A random-initialised configuration** (``backbone: llama``, any model type of
  ``transformers.AutoConfig``) sized by the backbone settings: ``d_model`` hidden, ``d_ff``
  feed-forward, ``num_layers + num_decoder_layers`` blocks, ``num_heads`` heads of ``d_kv``. Its
  vocabulary is genrec's tokens alone.
- **A local folder** (``backbone_path``: ``config.json`` and, to start from them, its weights).
  With weights, genrec's tokens are *added* after the model's own vocabulary (the embedding and output
  matrices grow; the text tokens keep their rows), so a pretrained model keeps what it knows; without
  weights the folder's configuration is initialised at random with genrec's vocabulary alone.

With ``history_text`` (:mod:`genrec.models.history_text`) every item of a sequence is followed by
its text's first tokens, as the LLM-based recommenders prompt their models with item titles: a
pretrained model reads them as its own tokens (its folder's tokenizer), a random-initialised one
learns rows for the tokens the catalogue uses.

Decoding prefills each user's history once; then, at every level, the user's beams are fed to the
model as one sequence of tokens that continues the user's cache, with a 4-D attention mask that lets
each beam see the history and its own ancestors only (tree attention,
:class:`genrec.models.beam_cache.BeamTree`). The history's keys stay once per user, reordering beams
moves mask columns instead of cache rows, and the model's own attention code does the work, so it is
generic for every class whose attention obeys a 4-D mask (of 17 model types of transformers >= 4.52
tried, all but GPT-J; :func:`build_causal_lm` checks the class it builds and refuses one that does
not). Why not the library's per-beam cache and ``reorder_cache``: copying the history to every beam
at every level was three quarters of a beam-100 search (docs/results.md). The tests hold the search
to exhaustive teacher-forced scoring, as for the other backbones.
"""

from __future__ import annotations

import inspect
import json
import shutil
from pathlib import Path

import torch
from torch import nn
from transformers import AutoConfig, AutoModelForCausalLM, DynamicCache, PretrainedConfig, PreTrainedModel

from genrec.errors import ConfigError
from genrec.models.beam_cache import BeamTree, length_groups
from genrec.models.history_text import ItemText, text_tokenizer
from genrec.models.sid_causal import START, CausalSIDBackbone, positions_of
from genrec.models.sid_seq2seq import PAD, SIDVocabulary

RESIDUAL_DROPOUT_NAMES = ("resid_pdrop", "hidden_dropout")  # a class that drops out its residual branches itself
RESIDUAL_BRANCHES = ("self_attn", "mlp")  # a block's attention and feed-forward, as Llama-like classes name them
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
# What a model folder holds besides its weights (configuration, tokenizer), by file type
FOLDER_FILE_TYPES = (".json", ".txt", ".model", ".tiktoken")
# Marks a folder written by portable_folder: a pretrained model's configuration and tokenizer without
# its weights, which the run's checkpoint or export supplies
PORTABLE_MARK = "genrec_backbone.json"


class SIDCausalLM(CausalSIDBackbone):
    """``lm``: the causal LM; genrec's token ``t`` is the LM's token ``offset + t`` (``offset`` 0 for a
    vocabulary of genrec's tokens alone, the text vocabulary's size for a pretrained model).
    ``item_text``: the items' text tokens written after their IDs (``history_text``), numbered from
    ``vocab.size``; the LM reads text token ``s`` as its own ``s - text_shift``."""

    def __init__(
        self,
        vocab: SIDVocabulary,
        lm: PreTrainedModel,
        offset: int,
        max_items: int,
        dropout: float,
        item_text: ItemText | None = None,
        text_shift: int = 0,
    ):
        super().__init__(vocab)
        self.lm, self.offset = lm, offset
        self.item_text, self.text_shift = item_text, text_shift
        # Dropout on the token embeddings and, where the class has none of its own, on every block's
        # attention and feed-forward outputs, as genrec's decoder has it: Llama, Qwen2 and Mistral drop
        # out only attention weights, and without the rest they overfit (docs/results.md).
        self.drop = nn.Dropout(dropout)
        if not any(hasattr(lm.config, name) for name in RESIDUAL_DROPOUT_NAMES):
            for name, module in lm.base_model.named_modules():
                if name.rsplit(".", 1)[-1] in RESIDUAL_BRANCHES:
                    module.register_forward_hook(self.drop_output)
        text_length = 0 if item_text is None else item_text.max_tokens
        self.history_tokens = 1 + max_items * (self.item_length + text_length)  # the longest prompt
        # transformers 5 renamed the forward's `past_key_values` to `cache`; both are supported
        parameters = inspect.signature(lm.base_model.forward).parameters
        self.cache_argument = "cache" if "cache" in parameters else "past_key_values"

    def drop_output(self, module: nn.Module, inputs: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple:
        """A forward hook: dropout on a residual branch's output (its first element, for attention)."""
        if isinstance(output, tuple):
            return (self.drop(output[0]), *output[1:])
        return self.drop(output)

    @property
    def config(self) -> PretrainedConfig:
        """The language model's own configuration (its class, sizes and vocabulary)."""
        return self.lm.config

    def bytes_per_beam(self) -> int:
        """Float32 bytes one beam holds in a search: its logits over the LM's whole output (a
        pretrained model's text tokens included), its generated tokens' keys and values, activations,
        and its rows of the attention mask and scores over the history (kept once per user)."""
        config = self.config.get_text_config()
        heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        cache = 2 * 4 * config.num_hidden_layers * heads * head_dim * self.item_length
        rows = 4 * (config.num_attention_heads + 1) * (self.history_tokens + self.item_length)
        return 3 * 4 * self.lm.get_output_embeddings().out_features + cache + rows + 8 * 4 * config.hidden_size

    def bytes_per_beam_pair(self) -> int:
        """A beam's mask and score rows also have a column for each token every other beam of its user
        generated (:class:`genrec.models.beam_cache.BeamTree`): ``item_length`` columns a pair, so a
        search's rows grow with the square of its width."""
        return 4 * (self.config.get_text_config().num_attention_heads + 1) * self.item_length

    def run(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        cache: object = None,
        use_cache: bool = False,
    ) -> tuple[torch.Tensor, object]:
        """``([B, T, d], cache)``: the LM's body (no output layer) over genrec tokens ``ids`` after ``cache``
        (the keys and values of what came before), and the cache extended by them when ``use_cache``."""
        out = self.lm.base_model(
            inputs_embeds=self.drop(self.lm.get_input_embeddings()(self.lm_ids(ids))),
            attention_mask=mask,
            position_ids=positions,
            use_cache=use_cache,
            **({self.cache_argument: cache} if cache is not None else {}),
        )
        return out.last_hidden_state, getattr(out, self.cache_argument) if use_cache else None

    def lm_ids(self, ids: torch.Tensor) -> torch.Tensor:
        """The LM's own token ids of sequence tokens ``ids`` (genrec's, then text tokens above them)."""
        return torch.where(ids < self.vocab.size, ids + self.offset, ids - self.text_shift)

    def states(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.run(ids, mask, positions_of(mask))[0]

    def output_log_probs(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = self.lm.get_output_embeddings()(hidden).float()
        return torch.log_softmax(logits, dim=-1)[..., self.offset : self.offset + self.vocab.size]

    def prefill(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, DynamicCache]:
        """The last hidden state ``[B, d]`` of left-padded prompts and a cache of their keys and values
        (``[B, heads, T, head_dim]`` a layer), the LM run on groups of rows of similar length
        (:func:`genrec.models.beam_cache.length_groups`): in a batch of 64 test users, 46% (Synthetic)
        to 64% (Scientific) of the positions were padding. What lies left of a row's own tokens is
        masked wherever it is read."""
        batch, length = ids.shape
        lengths = mask.sum(1)
        last, layers = None, []
        for rows in length_groups(lengths.cpu().numpy()):
            index = torch.as_tensor(rows, device=ids.device)
            size = int(lengths[index].max())
            part = mask[index, length - size :]
            hidden, cache = self.run(ids[index, length - size :], part, positions_of(part), DynamicCache(), True)
            if last is None:  # the states' own dtype and every layer's shape (autocast may change them)
                last = hidden.new_empty(batch, hidden.shape[-1])
                layers = [
                    tuple(t.new_zeros(batch, t.shape[1], length, t.shape[3]) for t in layer)
                    for layer in layer_tensors(cache)
                ]
            last[index] = hidden[:, -1]
            for whole, group in zip(layers, layer_tensors(cache)):
                for into, tensor in zip(whole, group):
                    into[index, :, length - size :] = tensor
        cache = DynamicCache()
        for number, (keys, values) in enumerate(layers):
            cache.update(keys, values, number)
        return last, cache

    def beam_step(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """A ``step`` for :func:`genrec.decoding.beam_search`: prefills the histories once, then feeds each
        user's beams as one sequence of tokens that share the user's cache, each seeing only its own
        ancestors (:class:`genrec.models.beam_cache.BeamTree`'s masks)."""
        last_hidden, cache = self.prefill(input_ids, attention_mask)
        first_log_probs = self.output_log_probs(last_hidden)  # [B, vocab]
        next_position = attention_mask.sum(1)  # [B]
        ranges = self.vocab.decode_ranges
        tree = BeamTree(attention_mask)

        def step(level: int, tokens: torch.Tensor, parents: torch.Tensor) -> torch.Tensor:
            nonlocal cache
            batch, width = parents.shape
            if level == 0:
                log_probs = first_log_probs.unsqueeze(1).expand(-1, width, -1)
            else:
                last = tokens[:, :, -1] + ranges[level - 1][0]  # [B, W]
                position = (next_position + level - 1)[:, None].expand(-1, width)
                hidden, cache = self.run(last, tree.mask(parents), position, cache, use_cache=True)
                log_probs = self.output_log_probs(hidden)  # [B, W, vocab]
            first, size = ranges[level]
            return log_probs[..., first : first + size]

        return step


def layer_tensors(cache: DynamicCache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Each layer's ``(keys, values)`` of a cache, as transformers 5 (``layers``) and 4.5x keep them."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache))


# Where the usual configuration classes keep each size (the first name a class has is set).
SIZE_NAMES = {
    "hidden": ("hidden_size", "n_embd", "d_model"),
    "feed_forward": ("intermediate_size", "n_inner", "ffn_dim"),
    "blocks": ("num_hidden_layers", "n_layer", "num_layers"),
    "heads": ("num_attention_heads", "n_head"),
}
DROPOUT_NAMES = ("attention_dropout", "hidden_dropout", "resid_pdrop", "attn_pdrop", "dropout")
POSITION_NAMES = ("max_position_embeddings", "n_positions")


def sized_config(
    backbone: str,
    vocab_size: int,
    positions: int,
    d_model: int,
    d_ff: int,
    blocks: int,
    heads: int,
    d_kv: int,
    dropout: float,
) -> PretrainedConfig:
    """A random-initialised configuration of model type ``backbone`` at genrec's backbone sizes (and
    ``positions``, the longest sequence, where a class learns a vector per position), or a
    :class:`ConfigError` naming what that class cannot be given."""
    try:
        config = AutoConfig.for_model(backbone)
    except ValueError:
        raise ConfigError(
            f"backbone={backbone!r} is no Hugging Face model type (e.g. llama, qwen2, mistral, gpt2)"
        ) from None
    values = {"hidden": d_model, "feed_forward": d_ff, "blocks": blocks, "heads": heads}
    for size, names in SIZE_NAMES.items():
        name = next((n for n in names if hasattr(config, n)), None)
        if name is None:
            raise ConfigError(f"backbone={backbone}: its configuration has no {size} size genrec knows how to set")
        setattr(config, name, values[size])
    if hasattr(config, "head_dim"):
        config.head_dim = d_kv
    elif heads * d_kv != d_model:
        raise ConfigError(f"backbone={backbone} has heads of d_model / num_heads: set d_kv={d_model // heads}")
    if hasattr(config, "num_key_value_heads"):
        config.num_key_value_heads = heads
    for name in DROPOUT_NAMES:
        if hasattr(config, name):
            setattr(config, name, dropout)
    if hasattr(config, "embd_pdrop"):  # SIDCausalLM drops out the token embeddings itself
        config.embd_pdrop = 0.0
    name = next((n for n in POSITION_NAMES if hasattr(config, n)), None)
    if name is not None:
        setattr(config, name, positions)
    config.vocab_size = vocab_size
    config.pad_token_id, config.bos_token_id, config.eos_token_id = PAD, START, START
    return config


@torch.no_grad()
def appended_tokens(lm: PreTrainedModel, count: int) -> None:
    """Grow a pretrained model's embedding and output matrices by ``count`` rows, each the mean of its
    text rows plus noise of their spread: a new token starts as a typical token, and the new tokens
    start apart (the library's own resizing gave them all the mean in some versions, so that no two
    semantic-ID tokens could be told apart)."""
    text = lm.get_input_embeddings().num_embeddings
    lm.resize_token_embeddings(text + count, mean_resizing=False)
    matrices = {id(layer.weight): layer.weight for layer in (lm.get_input_embeddings(), lm.get_output_embeddings())}
    for matrix in matrices.values():
        rows = matrix[:text]
        matrix[text:] = rows.mean(0) + torch.randn(count, matrix.shape[1]) * rows.std()


def build_causal_lm(settings, vocab: SIDVocabulary, item_text: list[dict[str, str]] | None = None) -> SIDCausalLM:
    """The ``hf_causal_lm`` backbone of the settings (``backbone``, ``backbone_path``, the sizes, and
    ``history_text`` with the catalogue's ``item_text``; see the module docstring). A folder is read
    locally only: nothing is downloaded."""
    max_items = settings.max_item_seq_len
    folder = None if settings.backbone_path is None else Path(settings.backbone_path)
    if folder is not None and not (folder / "config.json").is_file():
        raise ConfigError(f"backbone_path={folder}: no config.json there (a Hugging Face model folder)")
    weights = folder is not None and has_weights(folder)
    # the model's own text vocabulary and tokenizer, genrec's tokens after them: a pretrained model's
    # folder, or the portable copy an export holds (its weights are the export's)
    pretrained = weights or (folder is not None and (folder / PORTABLE_MARK).is_file())
    text = None
    if settings.history_text:
        tokenizer = text_tokenizer(settings.backbone_path, settings.sent_emb_model, needs_own=pretrained)
        text = ItemText(
            tokenizer, list(settings.history_text), settings.history_text_tokens, vocab.size, not pretrained
        )
        text.add(item_text or [])
        if not text.lengths.any():
            raise ConfigError(f"history_text={list(settings.history_text)}: no item has text in these fields")
    # genrec's tokens, and the catalogue's text tokens where the model has no text vocabulary of its own
    own_vocabulary = vocab.size + (text.size if text is not None and not pretrained else 0)
    text_length = 0 if text is None else text.max_tokens
    needed = 1 + (max_items + 1) * (len(vocab.decode_ranges) + text_length)  # a window: start, items, target
    if folder is None:
        config = sized_config(
            settings.backbone,
            own_vocabulary,
            needed,
            settings.d_model,
            settings.d_ff,
            settings.num_layers + settings.num_decoder_layers,
            settings.num_heads,
            settings.d_kv,
            settings.dropout_rate,
        )
        lm, offset = AutoModelForCausalLM.from_config(config), 0
    elif pretrained:
        if weights:
            lm = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True).float()
        else:
            lm = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, local_files_only=True)).float()
        offset = lm.get_input_embeddings().num_embeddings
        appended_tokens(lm, vocab.size)
    else:
        config = AutoConfig.from_pretrained(folder, local_files_only=True)
        config.vocab_size = own_vocabulary
        lm, offset = AutoModelForCausalLM.from_config(config), 0
    for name in POSITION_NAMES:
        if getattr(lm.config, name, None) is not None and getattr(lm.config, name) < needed:
            raise ConfigError(
                f"the backbone reads at most {getattr(lm.config, name)} positions, a window of max_item_seq_len="
                f"{max_items} needs {needed}"
            )
    shift = vocab.size if pretrained else 0  # a pretrained model reads its text tokens as they are
    model = SIDCausalLM(vocab, lm, offset, max_items, settings.dropout_rate, text, shift)
    if not obeys_tree_masks(model):
        raise ConfigError(
            f"the {type(lm).__name__} class ignores the 4-D attention masks genrec's beam search gives it, so its "
            "search would let beams see each other: use a class that takes them (e.g. llama, qwen2, mistral, gpt2, phi)"
        )
    return model


def has_weights(folder: Path) -> bool:
    """Whether a model folder holds weights (a pretrained model), not only a configuration."""
    return any((folder / name).is_file() for name in WEIGHT_FILES)


def portable_folder(source: Path, into: Path) -> None:
    """Copy the model folder ``source`` without its weights into ``into`` (its configuration and
    tokenizer files), so that :func:`build_causal_lm` builds from it the model that ``source`` built,
    with weights to come from a checkpoint: what an export of a run on a local model folder needs (the
    folder may be gigabytes, and the run's weights replace it whole). A folder with weights is marked
    as such: the copy keeps its text vocabulary with genrec's tokens after it."""
    into.mkdir(parents=True)
    for path in sorted(source.iterdir()):
        if path.is_file() and path.suffix in FOLDER_FILE_TYPES and path.name not in WEIGHT_FILES:
            shutil.copy2(path, into / path.name)
    if has_weights(source):
        (into / PORTABLE_MARK).write_text(
            json.dumps({"written_by": "genrec export", "from": str(source.resolve()), "weights": "the export's"})
        )


@torch.no_grad()
def obeys_tree_masks(model: SIDCausalLM) -> bool:
    """Whether the LM decodes as :class:`genrec.models.beam_cache.BeamTree`'s search needs: after a
    cached token ``a``, two beams ``b`` and ``c`` fed together under a 4-D mask that hides ``b`` from
    ``c`` must give ``c`` the state it has in the sequence ``a c`` alone. A class that replaced the
    mask with its own causal one (or failed on it, or on the cache) would rank items from beams that
    read their neighbours."""
    a, b, c = (model.vocab.size - n for n in (3, 2, 1))
    tree = torch.tensor([[[[0.0, 0.0, float("-inf")], [0.0, float("-inf"), 0.0]]]])  # columns: a, b, c
    training = model.training
    model.eval()
    try:
        _, cache = model.run(
            torch.tensor([[a]]), torch.ones(1, 1), torch.zeros(1, 1, dtype=torch.long), DynamicCache(), True
        )
        beams = model.run(torch.tensor([[b, c]]), tree, torch.ones(1, 2, dtype=torch.long), cache)[0][0, 1]
        alone = model.run(torch.tensor([[a, c]]), torch.ones(1, 2), torch.tensor([[0, 1]]))[0][0, 1]
    except (RuntimeError, ValueError, TypeError, IndexError):
        return False
    finally:
        model.train(training)
    return torch.allclose(beams, alone, rtol=1e-4, atol=1e-5)
