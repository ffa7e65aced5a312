"""Per-customer gradient clipping in one backward pass ("book-keeping" clipping).

DP-SGD clips each customer's gradient to norm C before the batch's gradients are summed
and noised. Opacus' hooks mode keeps every parameter's gradient once per customer (B
copies of the trainable weights) while autograd also computes the summed gradient that
DP never uses; its ghost clipping runs the backward pass twice. Book-keeping (Bu et al.
2023, "Differentially private optimization on large model at small cost") needs one:
each trainable linear map and LayerNorm records its input and its output gradient as
the backward pass goes by, the per-customer norms come from those records, and the
clipped sum is formed from the same records, each customer weighted by its clipping
factor. Autograd computes no parameter gradient of its own.

For a linear map with input a_b (T, i) and output gradient g_b (T, o) of customer b,
the customer's weight gradient is g_bᵀ a_b, and its squared norm is computed

- as a "ghost" norm, sum over t, s of (g_t . g_s)(a_t . a_s), where T is small
  (2 T² <= i o): the [CLS]-only last layer, the pooler and the head, whose T is the
  group size. The clipped sum is then (c ⊙ g)ᵀ a over the whole batch;
- from the materialised per-customer gradient elsewhere (the key and value maps run
  over every token): B matrices of (o, i), the same arithmetic as the summed weight
  gradient that autograd no longer computes. The clipped sum is Σ_b c_b g_bᵀ a_b.

Biases and LayerNorm weights are (B, o) per customer and always materialised.

The clipping factor is Opacus' own, min(1, C / (norm + 1e-6)). The Gaussian noise, the
division by the expected batch size and the accountant stay Opacus'
(`DPOptimizerFastGradientClipping`, which takes `p.grad` as the clipped sum): see
`core.recommender.train.prepare_training`. Every trainable module must take the customer as the
first dimension of its input, as `core.recommender.model.CrossEncoder.forward` does.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

Record = Callable[[torch.Tensor, torch.Tensor], None]


class _RecordedLinear(torch.autograd.Function):
    """nn.functional.linear whose backward hands (input, output gradient) to a record
    and returns no gradient for the weight and bias (the record builds theirs)."""

    @staticmethod
    def forward(ctx, x, weight, bias, record: Record):
        ctx.save_for_backward(x, weight)
        ctx.record = record
        return nn.functional.linear(x, weight, bias)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        ctx.record(x, grad_out)
        grad_x = grad_out @ weight if ctx.needs_input_grad[0] else None
        return grad_x, None, None, None


class _RecordedAffine(torch.autograd.Function):
    """LayerNorm's elementwise affine part, normed * weight + bias, recorded likewise."""

    @staticmethod
    def forward(ctx, normed, weight, bias, record: Record):
        ctx.save_for_backward(normed, weight)
        ctx.record = record
        return normed * weight if bias is None else torch.addcmul(bias, normed, weight)

    @staticmethod
    def backward(ctx, grad_out):
        normed, weight = ctx.saved_tensors
        ctx.record(normed, grad_out)
        grad_normed = grad_out * weight if ctx.needs_input_grad[0] else None
        return grad_normed, None, None, None


class BookkeepingClipping(nn.Module):
    """Wraps a model whose trainable parameters all sit in nn.Linear and nn.LayerNorm
    modules. `loss(per_customer_losses).backward()` leaves in each trainable `p.grad` the
    sum over customers of their gradients, each clipped to `max_grad_norm`."""

    def __init__(self, module: nn.Module, max_grad_norm: float):
        super().__init__()
        if max_grad_norm <= 0:
            raise ValueError(f"max_grad_norm={max_grad_norm}: must be positive.")
        self._module = module
        self.max_grad_norm = float(max_grad_norm)
        self.params = [p for p in module.parameters() if p.requires_grad]
        self._norms2: list[torch.Tensor] = []  # (B,) squared norms, one per record part
        self._sums: list[tuple[nn.Parameter, Callable[[torch.Tensor], torch.Tensor]]] = []
        self._patched: list[nn.Module] = []
        self.last_norms: torch.Tensor | None = None  # (B,) per-customer norms, last clip
        covered = set()
        for sub in module.modules():
            own = [p for p in sub.parameters(recurse=False) if p.requires_grad]
            if not own:
                continue
            if not isinstance(sub, (nn.Linear, nn.LayerNorm)) or (
                    isinstance(sub, nn.LayerNorm) and len(sub.normalized_shape) != 1):
                raise TypeError(f"{type(sub).__name__} has trainable parameters: book-keeping "
                                "clipping knows nn.Linear and 1-d nn.LayerNorm only (use "
                                "Opacus' hooks mode for other layers).")
            sub.forward = self._recorded_forward(sub)
            self._patched.append(sub)
            covered.update(id(p) for p in own)
        assert covered == {id(p) for p in self.params}

    def forward(self, *args, **kwargs):
        return self._module(*args, **kwargs)

    def cleanup(self) -> None:
        """Give the wrapped modules their own forward back."""
        for sub in self._patched:
            del sub.forward  # the instance attribute; the class method shows again
        self._patched = []

    # --- recording ------------------------------------------------------------------------

    def _recorded_forward(self, sub: nn.Module):
        own_forward = sub.forward

        def forward(x: torch.Tensor) -> torch.Tensor:
            if not (torch.is_grad_enabled() and any(p.requires_grad for p in
                                                    sub.parameters(recurse=False))):
                return own_forward(x)  # inference, or frozen: nothing to record
            if isinstance(sub, nn.Linear):
                return _RecordedLinear.apply(x, sub.weight, sub.bias,
                                             lambda a, g: self._record_linear(sub, a, g))
            normed = nn.functional.layer_norm(x, sub.normalized_shape, eps=sub.eps)
            return _RecordedAffine.apply(normed, sub.weight, sub.bias,
                                         lambda a, g: self._record_affine(sub, a, g))

        return forward

    def _add(self, param: nn.Parameter | None, norms2: torch.Tensor,
             clipped_sum: Callable[[torch.Tensor], torch.Tensor]) -> None:
        if param is not None and param.requires_grad:
            self._norms2.append(norms2)
            self._sums.append((param, clipped_sum))

    def _record_linear(self, sub: nn.Linear, x: torch.Tensor, g: torch.Tensor) -> None:
        b = x.shape[0]
        a = x.reshape(b, -1, x.shape[-1])  # (B, T, i)
        g = g.reshape(b, -1, g.shape[-1])  # (B, T, o)
        t, i, o = a.shape[1], a.shape[2], g.shape[2]
        if sub.bias is not None:
            per_bias = g.sum(dim=1)  # (B, o)
            self._add(sub.bias, per_bias.square().sum(dim=1), lambda c: c @ per_bias)
        if 2 * t * t <= i * o:  # ghost norm: T x T Gram matrices per customer
            norms2 = (torch.bmm(g, g.transpose(1, 2)) * torch.bmm(a, a.transpose(1, 2))
                      ).sum(dim=(1, 2))
            self._add(sub.weight, norms2,
                      lambda c: (g * c[:, None, None]).reshape(-1, o).T @ a.reshape(-1, i))
        else:  # materialised: (B, o, i), what autograd's summed gradient would cost
            per = torch.bmm(g.transpose(1, 2), a)
            self._add(sub.weight, per.flatten(1).norm(dim=1).square(),
                      lambda c: (c @ per.flatten(1)).view(o, i))

    def _record_affine(self, sub: nn.LayerNorm, normed: torch.Tensor, g: torch.Tensor
                       ) -> None:
        b = normed.shape[0]
        normed = normed.reshape(b, -1, normed.shape[-1])
        g = g.reshape(b, -1, g.shape[-1])
        per_weight = (g * normed).sum(dim=1)  # (B, H)
        self._add(sub.weight, per_weight.square().sum(dim=1), lambda c: c @ per_weight)
        if sub.bias is not None:
            per_bias = g.sum(dim=1)
            self._add(sub.bias, per_bias.square().sum(dim=1), lambda c: c @ per_bias)

    # --- clipping -------------------------------------------------------------------------

    def clip(self) -> None:
        """Per-customer norms over every trainable parameter, then `p.grad` = the sum of
        the clipped per-customer gradients. Clears the records."""
        if not self._norms2:
            raise RuntimeError("nothing was recorded: run the forward pass with grad "
                               "enabled and the backward pass first.")
        recorded = [id(p) for p, _ in self._sums]
        if len(recorded) != len(set(recorded)):
            raise RuntimeError("a trainable module ran twice in one forward pass: its "
                               "per-customer gradients would have to be added up first.")
        norms = torch.stack(self._norms2).sum(dim=0).sqrt()  # (B,)
        factors = (self.max_grad_norm / (norms + 1e-6)).clamp(max=1.0)
        reached = set(recorded)
        for param, clipped_sum in self._sums:
            param.grad = clipped_sum(factors.to(param.dtype))
        for param in self.params:  # a parameter the loss did not reach: zero gradient,
            if id(param) not in reached:  # whatever an earlier step left in p.grad
                param.grad = torch.zeros_like(param)
        self.last_norms = norms.detach()
        self.forget_records()

    def forget_records(self) -> None:
        self._norms2, self._sums = [], []

    def loss(self, per_customer: torch.Tensor) -> ClippedLoss:
        """The batch's loss from one loss per customer (B,): its `backward()` leaves
        the clipped sum in `p.grad`."""
        return ClippedLoss(per_customer, self)


class ClippedLoss:
    """Per-customer losses whose `backward()` runs the backward pass of their sum (each
    customer's own gradient, unscaled) and then `BookkeepingClipping.clip`. Reads as
    their mean."""

    def __init__(self, per_customer: torch.Tensor, clipping: BookkeepingClipping):
        self.per_customer = per_customer
        self.clipping = clipping

    def backward(self) -> None:
        self.clipping.forget_records()  # of a backward pass that never reached clip()
        self.per_customer.sum().backward()
        self.clipping.clip()

    def detach(self) -> torch.Tensor:
        return self.per_customer.detach().mean()
