"""The ranking model: a BERT cross-encoder over (history + context, candidate) text pairs.

`CrossEncoder` reads the text pair that `core.recommender.fields.to_text_pair` makes of a
`ModelInput` (side a: history and context; side b: the candidate) and returns one
relevance logit per pair: head(pair) plus a learnt linear mix of the zero-shot prior
cos(e(a), e(b)) and the numeric features its `ModelConfig` turns on (`mix_input_names`).
Only the top `trainable_layers` encoder layers, the pooler, the head and the mix learn;
the frozen lower layers run once per distinct side text (cached), and the two sides meet
at the first trainable layer (late interaction, as PreTTR, MacAvaney et al. 2020).
`forward` takes groups of pairs with the customer as batch dimension, so DP-SGD clips
one gradient per customer; `score_pairs` scores text pairs at inference.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from transformers import BertConfig, BertForSequenceClassification

from core.minilm import embed_texts, load_tokenizer, minilm_path
from core.recommender import item_popularity
from core.recommender.co_visits import CoVisits
from core.recommender.fields import (
    ModelInput,
    category_share_feature,
    co_visit_feature,
    encoder_text,
    popularity_feature,
    popularity_log_feature,
    to_text_pair,
)
from core.recommender.model_config import ModelConfig, mix_input_names

SIDE_CACHE_SIZE = 4096  # lower-layer states kept per side (an 80-token text: ~120 kB)
PRIOR_CACHE_SIZE = 50_000  # sentence embeddings kept (1.5 kB each)



def _additive_mask(keep: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Boolean keep (..., Q, K) -> additive float mask: 0 where kept, the dtype's minimum
    elsewhere (not -inf: a row with nothing to attend to stays finite)."""
    return torch.zeros(keep.shape, dtype=dtype).masked_fill(~keep, torch.finfo(dtype).min)


def _distinct(texts: Sequence[str]) -> tuple[list[str], np.ndarray]:
    """(the distinct texts in first-seen order, each text's index among them)."""
    position: dict[str, int] = {}
    index = np.array([position.setdefault(t, len(position)) for t in texts], dtype=np.int64)
    return list(position), index


class CrossEncoder(nn.Module):
    """BERT late-interaction cross-encoder with a one-logit head; see the module
    docstring."""

    # True: the last layer computes every token's output, not [CLS] alone (the same
    # logits, slower; attention maps read every query row of every layer).
    all_token_outputs: bool = False

    def __init__(self, bert: BertForSequenceClassification, config: ModelConfig,
                 tokenizer=None):
        super().__init__()
        if bert.config.num_labels != 1:
            raise ValueError(f"num_labels={bert.config.num_labels}: the ranking head has one "
                             "logit per pair.")
        if config.trainable_layers > bert.config.num_hidden_layers:
            raise ValueError(f"trainable_layers={config.trainable_layers} but the encoder has "
                             f"{bert.config.num_hidden_layers} layers.")
        self.bert = bert
        self.config = config
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer()
        # The prior's (and the popularity feature's) weight: a Linear (not bare
        # Parameters) so that Opacus and the book-keeping clipping compute its
        # per-customer gradient like any other layer's.
        names = mix_input_names(config)
        self.prior_mix = nn.Linear(len(names), 1, bias=False)
        start = {"prior": config.prior_scale, "popularity": config.popularity_scale,
                 "popularity_log": config.popularity_log_scale,
                 "category_share": config.category_share_scale,
                 "co_visits": config.co_visit_scale}
        with torch.no_grad():
            self.prior_mix.weight[0] = torch.tensor([start[n] for n in names])
        # {item_id: percentile} released by the run that trained this model
        # (`core.recommender.item_popularity`); `with_popularity` shows it to the model's inputs.
        self.item_popularity: dict[str, int] = {}
        # The co-visit counts of the run's training customers (non-private runs with
        # the feature; `core.recommender.co_visits`): what
        # `core.recommender.examples.model_input` scores.
        self.co_visits: CoVisits | None = None
        self._sides: dict[int, OrderedDict[str, torch.Tensor]] = {0: OrderedDict(),
                                                                  1: OrderedDict()}
        self._prior: dict[str, np.ndarray] = {}
        self.freeze(config.trainable_layers)

    # --- construction -------------------------------------------------------------------

    @classmethod
    def from_pretrained(cls, config: ModelConfig | None = None) -> CrossEncoder:
        """The bundled all-MiniLM-L6-v2 weights with a fresh head (loaded offline)."""
        from transformers.utils import logging as hf_logging

        verbosity = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()  # the "classifier newly initialised" report
        hf_logging.disable_progress_bar()
        try:
            bert = BertForSequenceClassification.from_pretrained(
                minilm_path(), num_labels=1, attn_implementation="sdpa")
        finally:
            hf_logging.set_verbosity(verbosity)
            hf_logging.enable_progress_bar()
        return cls(bert, config or ModelConfig()).start_at_prior()

    @classmethod
    def from_config(cls, bert_config: BertConfig, config: ModelConfig | None = None,
                    *, seed: int = 0) -> CrossEncoder:
        """Random weights of the given architecture (e.g. a tiny BERT for tests), with the
        real tokenizer: `bert_config.vocab_size` must cover its 30,522 ids."""
        values = {k: v for k, v in bert_config.to_dict().items()
                  if k not in ("id2label", "label2id", "num_labels")}
        bert_config = BertConfig.from_dict({**values, "num_labels": 1})
        bert_config._attn_implementation = "sdpa"
        torch.manual_seed(seed)
        return cls(BertForSequenceClassification(bert_config), config or ModelConfig()
                   ).start_at_prior()

    @property
    def mixes(self) -> bool:
        """True where the logit adds a learnt mix of the prior and/or popularity."""
        return self.config.prior_scale > 0 or len(mix_input_names(self.config)) > 1

    def start_at_prior(self) -> CrossEncoder:
        """With a prior, zero the head so that the untrained model IS the prior."""
        if self.mixes:
            with torch.no_grad():
                self.bert.classifier.weight.zero_()
                self.bert.classifier.bias.zero_()
        return self

    def freeze(self, trainable_layers: int) -> None:
        """Only the top `trainable_layers` encoder layers, the pooler, the head and the
        prior's weight learn."""
        for parameter in self.parameters():
            parameter.requires_grad_(False)
        for layer in self.top_layers:
            layer.requires_grad_(True)
        self.bert.bert.pooler.requires_grad_(True)
        self.bert.classifier.requires_grad_(True)
        self.prior_mix.requires_grad_(self.mixes)
        self.clear_cache()

    @property
    def first_trainable(self) -> int:
        return self.bert.config.num_hidden_layers - self.config.trainable_layers

    @property
    def lower_layers(self) -> nn.ModuleList:
        return self.bert.bert.encoder.layer[:self.first_trainable]

    @property
    def top_layers(self) -> nn.ModuleList:
        return self.bert.bert.encoder.layer[self.first_trainable:]

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def clear_cache(self) -> None:
        """Forget cached side states and prior embeddings (after changing frozen weights,
        or to time scoring from cold)."""
        for cache in self._sides.values():
            cache.clear()
        self._prior.clear()

    # --- the text a model reads ---------------------------------------------------------

    def text_pair(self, fields: ModelInput, *, masked: frozenset[str] = frozenset()
                  ) -> tuple[str, str]:
        """`core.recommender.fields.to_text_pair` with `masked` and the model's `omit_fields`
        removed:
        the text this model reads for one input."""
        return to_text_pair(fields, masked=frozenset(masked) | frozenset(self.config.omit_fields))

    # --- each side alone: embeddings and the frozen lower layers (cached per text) -------

    @torch.no_grad()
    def _encode(self, texts: Sequence[str], segment: int) -> list[torch.Tensor]:
        """Lower-layer states of each text alone: a list of (T_i, H), padding removed."""
        limit = self.config.item_length if segment else self.config.history_length
        batch = self.tokenizer(list(texts), truncation=True, max_length=limit,
                               padding="longest", return_tensors="pt")
        ids, attention = batch["input_ids"], batch["attention_mask"]  # (N, T)
        n, length = ids.shape
        # Both ids passed explicitly, contiguous: BERT's embeddings otherwise expand shared
        # buffers, which Opacus cannot take (Opacus issue 841).
        token_type_ids = torch.full((n, length), segment, dtype=torch.long)  # (N, T)
        position_ids = torch.arange(length).unsqueeze(0).expand(n, length).contiguous()
        hidden = self.bert.bert.embeddings(input_ids=ids, token_type_ids=token_type_ids,
                                           position_ids=position_ids)  # (N, T, H)
        mask = _additive_mask(attention.bool()[:, None, None, :], hidden.dtype)  # (N,1,1,T)
        for layer in self.lower_layers:
            hidden = layer(hidden, mask)  # (N, T, H)
        lengths = attention.sum(dim=1).tolist()
        return [hidden[i, :lengths[i]].clone() for i in range(n)]

    def side_states(self, texts: Sequence[str], *, segment: int, batch_size: int = 64
                    ) -> list[torch.Tensor]:
        """Cached lower-layer states of side `segment` (0: history, 1: candidate) for
        each text, (T_i, H) each. Each distinct text is encoded once."""
        cache = self._sides[segment]
        missing = sorted({t for t in texts if t not in cache}, key=len)
        for start in range(0, len(missing), batch_size):
            chunk = missing[start:start + batch_size]
            cache.update(zip(chunk, self._encode(chunk, segment), strict=True))
        out = []
        for t in texts:
            cache.move_to_end(t)
            out.append(cache[t])
        while len(cache) > SIDE_CACHE_SIZE:
            cache.popitem(last=False)
        return out

    def join(self, a_states: Sequence[torch.Tensor], b_states: Sequence[torch.Tensor]
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """[A ; B without its CLS] per pair, right-padded: hidden (N, L, H), mask (N, L)."""
        sizes = [(a.shape[0], b.shape[0] - 1) for a, b in zip(a_states, b_states, strict=True)]
        length = max(la + lb for la, lb in sizes)
        hidden = a_states[0].new_zeros((len(sizes), length, a_states[0].shape[1]))  # (N,L,H)
        mask = torch.zeros((len(sizes), length), dtype=torch.long)  # (N, L)
        for i, (a, b, (la, lb)) in enumerate(zip(a_states, b_states, sizes, strict=True)):
            hidden[i, :la] = a
            hidden[i, la:la + lb] = b[1:]
            mask[i, :la + lb] = 1
        return hidden, mask

    def pair_states(self, text_a: Sequence[str], text_b: Sequence[str]
                    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Joined lower-layer states of text pairs: hidden (N, L, H), mask (N, L)."""
        return self.join(self.side_states(text_a, segment=0),
                         self.side_states([encoder_text(b) for b in text_b], segment=1))

    # --- the pair: trainable top layers and the head ------------------------------------

    def _head(self, cls: torch.Tensor, prior: torch.Tensor | None) -> torch.Tensor:
        """[CLS] (.., H) and the mix's inputs (..) or (.., F) -> logits (..)."""
        pooled = self.bert.bert.pooler.activation(self.bert.bert.pooler.dense(cls))  # (.., H)
        logits = self.bert.classifier(self.bert.dropout(pooled)).squeeze(-1)  # (..)
        if self.mixes:
            if prior is None:
                raise ValueError("this model adds the zero-shot prior: pass `prior` (see "
                                 "prior_similarity) or score through score_pairs.")
            features = prior.unsqueeze(-1) if prior.dim() == logits.dim() else prior
            logits = logits + self.prior_mix(features).squeeze(-1)  # (..)
        return logits

    def _pair_layer(self, layer: nn.Module, hidden: torch.Tensor, keep: torch.Tensor, *,
                    cls_only: bool = False) -> torch.Tensor:
        """One BERT layer over groups of pairs, attention within each pair only:
        hidden (B, G, L, H), keep (B, G, L) -> (B, G, L, H), or (B, G, 1, H) with
        `cls_only` (the [CLS] row alone).

        BERT's own layer math (transformers' BertLayer) written out so that the linear
        layers see the customer as batch dimension B (one per-sample gradient per
        customer) while attention runs per pair, at 1/G of the cost of a block-diagonal
        mask over G*L tokens. The attention itself has no parameters.

        `cls_only` is exact for the last layer: the head reads [CLS] only, and a
        token's output depends on the other tokens only through their keys and values.
        So the last layer projects keys and values for every token but runs the query,
        the attention output and the feed-forward block for [CLS] alone (about a sixth
        of the layer's cost at 384 wide)."""
        b, g, length, width = hidden.shape
        heads = self.bert.config.num_attention_heads
        attention = layer.attention
        # The linear maps and LayerNorms act per token, so they see (B, G*L, H): the
        # same function and per-customer gradients as (B, G, L, H), in the 3-d shape
        # that Opacus' ghost clipping needs for its per-sample gradient norms.
        residual = hidden[:, :, 0] if cls_only else hidden.reshape(b, g * length, width)
        hidden = hidden.reshape(b, g * length, width)
        rows = 1 if cls_only else length  # query rows per pair

        def split(x: torch.Tensor, n: int) -> torch.Tensor:  # (B, G*n, H) -> (B*G, heads, n, d)
            return x.reshape(b * g, n, heads, width // heads).transpose(1, 2)

        q = split(attention.self.query(residual), rows)  # (B*G, heads, rows, d)
        k = split(attention.self.key(hidden), length)  # (B*G, heads, L, d)
        v = split(attention.self.value(hidden), length)
        bias = _additive_mask(keep.reshape(b * g, 1, 1, length), hidden.dtype)  # (BG,1,1,L)
        context = nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=bias,
            dropout_p=attention.self.dropout.p if self.training else 0.0)  # (BG,heads,rows,d)
        context = context.transpose(1, 2).reshape(b, g * rows, width)  # (B, G*rows, H)
        attended = attention.output(context, residual)  # dense, dropout, residual, LayerNorm
        out = layer.output(layer.intermediate(attended), attended)  # (B, G*rows, H)
        return out.reshape(b, g, rows, width)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor,
                prior: torch.Tensor | None = None) -> torch.Tensor:
        """Grouped path for training: joined states (B, G, L, H), mask (B, G, L) and prior
        (B, G) -> logits (B, G); the batch dimension is the customer."""
        keep = mask.bool()  # (B, G, L)
        last = len(self.top_layers) - 1
        for index, layer in enumerate(self.top_layers):
            cls_only = index == last and not self.all_token_outputs
            hidden = self._pair_layer(layer, hidden, keep, cls_only=cls_only)  # (B,G,L|1,H)
        return self._head(hidden[:, :, 0], prior)  # [CLS] of each pair (B, G, H) -> (B, G)

    def score_hidden(self, hidden: torch.Tensor, mask: torch.Tensor,
                     prior: torch.Tensor | None = None) -> torch.Tensor:
        """Flat path for inference: joined states (N, L, H), mask (N, L), prior (N,) ->
        logits (N,): the grouped path with groups of one pair."""
        return self.forward(hidden.unsqueeze(1), mask.unsqueeze(1),
                            None if prior is None else prior.unsqueeze(1)).squeeze(1)

    # --- the zero-shot prior -------------------------------------------------------------

    def prior_similarity(self, text_a: Sequence[str], text_b: Sequence[str]) -> np.ndarray:
        """The learnt mix's inputs per pair, float32: cos(e(a), e(b)) (N,) (frozen MiniLM
        sentence embeddings of each side alone, each distinct text embedded once and
        cached), or (N, 2) with the popularity feature of side b as second column when
        the model reads popularity."""
        return self.mix_inputs(self._cosine(text_a, text_b), text_b)

    def mix_inputs(self, cosine: np.ndarray, text_b: Sequence[str]) -> np.ndarray:
        """The mix's inputs from the prior's cosines (N,) (at any precision): (N,), or
        (N, F) with the popularity and/or co-visit feature of each candidate text."""
        if len(mix_input_names(self.config)) == 1:
            return cosine
        columns = [cosine]
        names = mix_input_names(self.config)
        if "popularity" in names:
            columns.append(self.popularity_features(text_b))
        if "popularity_log" in names:
            columns.append(np.array([popularity_log_feature(b) for b in text_b],
                                    dtype=np.float32))
        if self.config.category_share:
            columns.append(np.array([category_share_feature(b) for b in text_b],
                                    dtype=np.float32))
        if self.config.co_visits:
            columns.append(np.array([co_visit_feature(b) for b in text_b], dtype=np.float32))
        return np.stack(columns, axis=1)

    @staticmethod
    def popularity_features(text_b: Sequence[str]) -> np.ndarray:
        """`core.recommender.fields.popularity_feature` of each candidate text, (N,) float32."""
        return np.array([popularity_feature(b) for b in text_b], dtype=np.float32)

    def with_popularity(self, catalogue: pd.DataFrame) -> pd.DataFrame:
        """`catalogue` with this model's released popularity percentiles (the column that
        `core.recommender.fields.item_fields` shows as "item_popularity"); as given for a model
        without the feature."""
        if not self.config.popularity:
            return catalogue
        return item_popularity.attach(catalogue, self.item_popularity)

    def _cosine(self, text_a: Sequence[str], text_b: Sequence[str]) -> np.ndarray:
        if self.config.prior_scale <= 0:
            return np.zeros(len(text_a), dtype=np.float32)
        text_b = [encoder_text(b) for b in text_b]
        missing = sorted({t for t in (*text_a, *text_b) if t not in self._prior})
        if missing:
            if len(self._prior) + len(missing) > PRIOR_CACHE_SIZE:
                self._prior.clear()
            self._prior.update(zip(missing, embed_texts(missing), strict=True))
        return np.array([float(self._prior[a] @ self._prior[b]) for a, b in
                         zip(text_a, text_b, strict=True)], dtype=np.float32)

    # --- scoring text ----------------------------------------------------------------------

    def score_pairs(self, text_a: Sequence[str], text_b: Sequence[str], *,
                    batch_size: int = 128) -> np.ndarray:
        """Relevance logits of text pairs, shape (N,), float32, in input order (eval mode,
        no grad; the side states of distinct texts are computed once)."""
        if len(text_a) != len(text_b):
            raise ValueError(f"{len(text_a)} history texts but {len(text_b)} candidate texts.")
        out = np.zeros(len(text_a), dtype=np.float32)
        if not len(text_a):
            return out
        prior = torch.from_numpy(self.prior_similarity(text_a, text_b))  # (N,)
        text_b = [encoder_text(b) for b in text_b]  # the mix has read the co-visits
        was_training = self.training
        self.eval()
        try:
            if self.config.trainable_layers == 1 and not self.all_token_outputs:
                return self._score_by_side(text_a, text_b, prior)
            # Side states are cached and reused by training: made under no_grad, not
            # inference_mode (inference tensors cannot enter an autograd graph later).
            a_states = self.side_states(text_a, segment=0)
            b_states = self.side_states(text_b, segment=1)
            with torch.inference_mode():
                order = sorted(range(len(text_a)),
                               key=lambda i: a_states[i].shape[0] + b_states[i].shape[0])
                for start in range(0, len(order), batch_size):
                    rows = order[start:start + batch_size]
                    hidden, mask = self.join([a_states[i] for i in rows],
                                             [b_states[i] for i in rows])
                    out[rows] = self.score_hidden(hidden, mask, prior[rows]).float().numpy()
        finally:
            self.train(was_training)
        return out

    def _score_by_side(self, text_a: Sequence[str], text_b: Sequence[str],
                       prior: torch.Tensor, *, chunk: int = 1024) -> np.ndarray:
        """`score_pairs` for a model whose one trainable layer is the last: the same
        logits without building any pair.

        The last layer needs [CLS]'s query (side a's alone) and every token's key and
        value, and keys and values are per-token maps of each side's cached states. So
        each distinct text is projected once, side a's part of the attention softmax
        (its maximum, normaliser and weighted values) is summed once per history, and a
        pair only adds its candidate's tokens to those sums, as flash attention merges
        blocks. Per pair that is (tokens of b) dot products and one token through the
        feed-forward block, instead of a whole layer over both sides' tokens."""
        layer = self.top_layers[0]
        heads = self.bert.config.num_attention_heads
        keys_a, index_a = _distinct(text_a)
        keys_b, index_b = _distinct(text_b)
        states_a = self.side_states(keys_a, segment=0)  # cached, outside inference_mode
        states_b = [s[1:] for s in self.side_states(keys_b, segment=1)]  # b's CLS dropped
        with torch.inference_mode():
            self_attention = layer.attention.self
            cls = torch.stack([s[0] for s in states_a])  # (Na, H)
            width = cls.shape[-1]
            scale = (width // heads) ** -0.5
            q = self_attention.query(cls).reshape(len(keys_a), heads, -1) * scale  # (Na,h,d)

            def keys_values(states: list[torch.Tensor]):
                padded = nn.utils.rnn.pad_sequence(states, batch_first=True)  # (N, T, H)
                lengths = torch.tensor([s.shape[0] for s in states])
                pad = torch.arange(padded.shape[1])[None, :] >= lengths[:, None]  # (N, T)
                n, t = pad.shape

                def project(linear: nn.Module) -> torch.Tensor:  # (N, heads, T, d)
                    return linear(padded).reshape(n, t, heads, -1).transpose(1, 2)

                return project(self_attention.key), project(self_attention.value), pad

            k_a, v_a, pad_a = keys_values(states_a)
            scores_a = torch.einsum("nhd,nhtd->nht", q, k_a).masked_fill(
                pad_a[:, None, :], -torch.inf)  # (Na, h, Ta)
            max_a = scores_a.amax(dim=-1)  # (Na, h): [CLS] itself is never padding
            exp_a = torch.exp(scores_a - max_a[..., None])
            sum_a, value_a = exp_a.sum(dim=-1), torch.einsum("nht,nhtd->nhd", exp_a, v_a)
            k_b, v_b, pad_b = keys_values(states_b)
            ia, ib = torch.from_numpy(index_a), torch.from_numpy(index_b)
            out = np.empty(len(text_a), dtype=np.float32)
            for start in range(0, len(text_a), chunk):
                a, b = ia[start:start + chunk], ib[start:start + chunk]
                scores_b = torch.einsum("nhd,nhtd->nht", q[a], k_b[b]).masked_fill(
                    pad_b[b][:, None, :], -torch.inf)  # (n, h, Tb)
                top = torch.maximum(max_a[a], scores_b.amax(dim=-1))  # (n, h)
                exp_b = torch.exp(scores_b - top[..., None])
                weight_a = torch.exp(max_a[a] - top)  # (n, h)
                total = sum_a[a] * weight_a + exp_b.sum(dim=-1)  # (n, h)
                context = (value_a[a] * weight_a[..., None]
                           + torch.einsum("nht,nhtd->nhd", exp_b, v_b[b])) / total[..., None]
                attended = layer.attention.output(context.reshape(len(a), width), cls[a])
                hidden = layer.output(layer.intermediate(attended), attended)  # (n, H)
                out[start:start + len(a)] = self._head(hidden, prior[start:start + chunk]
                                                       ).float().numpy()
        return out

    def score_inputs(self, inputs: Sequence[ModelInput], *,
                     masked: frozenset[str] = frozenset(), batch_size: int = 128
                     ) -> np.ndarray:
        """Relevance logits (N,) of model inputs with the `masked` fields removed (the
        entry point for field-level explanations)."""
        pairs = [self.text_pair(fields, masked=masked) for fields in inputs]
        return self.score_pairs([a for a, _ in pairs], [b for _, b in pairs],
                                batch_size=batch_size)
