"""Book-keeping clipping: one backward pass gives each customer's clipped gradient sum."""

import pytest
import torch
from torch import nn
from transformers import BertConfig

from core.dp.clipping import BookkeepingClipping
from core.recommender.examples import listwise_loss
from core.recommender.model import CrossEncoder
from core.recommender.model_config import ModelConfig, mix_input_names

NO_DROPOUT = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=3,
                        num_attention_heads=2, intermediate_size=64,
                        max_position_embeddings=64, hidden_dropout_prob=0.0,
                        attention_probs_dropout_prob=0.0)


def _model_and_batch(trainable_layers: int):
    config = ModelConfig(max_length=48, item_length=16, history_len=2, negatives=3,
                         trainable_layers=trainable_layers, prior_scale=2.0)
    model = CrossEncoder.from_config(NO_DROPOUT, config, seed=0).double()
    with torch.no_grad():  # a head that is not zero, so that every layer gets a gradient
        model.bert.classifier.weight.normal_(generator=torch.Generator().manual_seed(1))
    histories = [f"history of customer {i}: " + "item " * (3 + 2 * i) for i in range(6)]
    items = [f"candidate {j} " + "word " * (j % 4) for j in range(4)]
    pairs = [model.pair_states([h] * 4, items) for h in histories]
    length = max(hidden.shape[1] for hidden, _ in pairs)
    hidden = torch.zeros(6, 4, length, NO_DROPOUT.hidden_size, dtype=torch.float64)
    mask = torch.zeros(6, 4, length, dtype=torch.long)
    for i, (h, m) in enumerate(pairs):
        hidden[i, :, :h.shape[1]], mask[i, :, :m.shape[1]] = h.double(), m
    prior = torch.rand(6, 4, len(mix_input_names(config)),
                       generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    return model, (hidden, mask, prior)


def _brute_force(model, batch, clip: float):
    """Each customer's gradient by its own backward pass: (norms (B,), clipped sum)."""
    params = model.trainable_parameters()
    grads = [torch.autograd.grad(listwise_loss(model(*(x[i:i + 1] for x in batch))).sum(),
                                 params) for i in range(batch[0].shape[0])]
    norms = torch.stack([torch.sqrt(sum((g ** 2).sum() for g in grad)) for grad in grads])
    factors = (clip / (norms + 1e-6)).clamp(max=1.0)
    return norms, [sum(f * grad[k] for f, grad in zip(factors, grads, strict=True))
                   for k in range(len(params))]


@pytest.mark.parametrize("trainable_layers", [1, 2])
def test_one_backward_pass_gives_each_customers_norm_and_the_clipped_sum(trainable_layers):
    model, batch = _model_and_batch(trainable_layers)
    norms, expected = _brute_force(model, batch, clip=1.0)
    clip = float(norms.median())  # some customers clipped, some not
    norms, expected = _brute_force(model, batch, clip=clip)
    assert (norms > clip).any() and (norms < clip).any()
    clipping = BookkeepingClipping(model, clip)
    clipping.loss(listwise_loss(clipping(*batch))).backward()
    assert torch.allclose(clipping.last_norms, norms, rtol=1e-9)
    for p, want in zip(model.trainable_parameters(), expected, strict=True):
        assert torch.allclose(p.grad, want, rtol=1e-8, atol=1e-14)


def test_inference_and_cleanup_leave_the_model_as_it_was():
    model, batch = _model_and_batch(1)
    with torch.no_grad():
        before = model(*batch)
    clipping = BookkeepingClipping(model, 1.0)
    with torch.no_grad():
        assert torch.equal(clipping(*batch), before)
    clipping.cleanup()
    assert all("forward" not in vars(m) for m in model.modules())
    listwise_loss(model(*batch)).sum().backward()  # plain autograd again
    assert all(p.grad is not None for p in model.trainable_parameters())


def test_layers_it_cannot_clip_are_refused():
    model = nn.Sequential(nn.Linear(3, 3), nn.Conv1d(1, 1, 2))
    with pytest.raises(TypeError, match="Conv1d"):
        BookkeepingClipping(model, 1.0)


def test_a_module_called_twice_is_refused_rather_than_clipped_wrong():
    layer = nn.Linear(3, 1)
    clipping = BookkeepingClipping(layer, 1.0)
    x = torch.randn(4, 3)
    loss = (clipping(x) + clipping(x)).squeeze(1)
    with pytest.raises(RuntimeError, match="ran twice"):
        clipping.loss(loss).backward()
