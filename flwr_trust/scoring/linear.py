"""Linearized screening: predict every client's behaviour change from its update, without probing.

For a model state θ (the global adapter) and a mode's headline metric F, the change a client's
update Δ = θ_i − θ would cause is, to first order, ∇F(θ) · Δ. The server computes ∇F once per
round (one forward and backward pass over the mode's probe items) and then screens any number
of clients with one dot product each: O(n·d), no client forward pass.

F is the mode's own `compute` over the request log-probabilities, so no metric is written twice:
by the chain rule ∇F = Σ_k w_k ∇ log p_k with w_k = ∂F/∂ log p_k, and w is taken by central
finite differences of `compute` at the exact scores (cheap: `compute` is numpy over a few hundred
numbers). ∇F is then one backward pass of the weighted sum Σ_k w_k log p_k. A metric that is
piecewise constant in the scores (a rank, a hard rate) has w = 0: the screen says so
(`blind`) instead of predicting "no change".

This is a screen, a cheap first look, not evidence: the exact probe stays the test. Where it
fails is measured in bench/linear_screen.py (docs/benchmarks.md): a large update leaves the
linear regime, and at an adapter whose B is still 0 the gradient with respect to A is 0 (the
prediction then only sees B's change).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from flwr_trust import modes as registry
from flwr_trust.probes.suite import ProbeSuite
from flwr_trust.scoring.batching import plan_batches
from flwr_trust.scoring.encoding import cached_requests
from flwr_trust.scoring.engine import flat_logprobs, score_requests
from flwr_trust.scoring.placement import pick_placement
from flwr_trust.scoring.requests import Precision, Request, Scores

FD_STEP = 1e-3
"""Finite-difference step in nats of one request's log-probability: far above float64 rounding
of a metric near 1, far below the log-probability changes a fine-tune makes."""

GRAD_BATCH_TOKENS = 2048
"""Token budget of one forward/backward batch (activations are kept for the backward)."""


@dataclass
class LinearScreen:
    """Per screened metric ("<mode>.<metric>"), its gradient at one adapter state (`point`),
    keyed like the exchanged arrays; `values` are the metrics' exact values there and `blind`
    the metrics that are not differentiable there (no prediction)."""

    point: dict[str, np.ndarray]
    gradients: dict[str, dict[str, np.ndarray]]
    metrics: dict[str, str]
    values: dict[str, float]
    blind: list[str] = field(default_factory=list)

    def predict(self, arrays: Mapping[str, Any]) -> dict[str, float]:
        """Predicted change of each screened metric from `point` to `arrays`."""
        missing = set(self.point) - set(arrays)
        if missing:
            raise ValueError(f"arrays lack {sorted(missing)[:3]} of the screened adapter")
        deltas = {k: np.asarray(_numpy(arrays[k]), dtype=np.float64) - p
                  for k, p in self.point.items()}
        return {key: float(sum(np.vdot(g[k], deltas[k]) for k in g))
                for key, g in self.gradients.items()}


def metric_weights(mode: str, suite: ProbeSuite, scores: Scores, metric: str,
                   step: float = FD_STEP) -> np.ndarray | None:
    """w_k = ∂F/∂ log p_k of `metric` of `mode` at `scores` (central differences), or None
    where F is not differentiable: all zero (a rank or a hard rate) or a jump within the step
    (then halving the step doubles the quotient instead of leaving it)."""
    compute = registry.get(mode).compute
    base = scores.logprob.astype(np.float64)

    def quotient(k: int, h: float) -> float:
        up, down = base.copy(), base.copy()
        up[k] += h
        down[k] -= h
        hi = compute(suite, Scores(up, scores.n_tokens))[metric].value
        lo = compute(suite, Scores(down, scores.n_tokens))[metric].value
        return (hi - lo) / (2.0 * h)

    weights = np.array([quotient(k, step) for k in range(len(base))])
    if not np.all(np.isfinite(weights)) or not np.any(weights):
        return None
    halved = np.array([quotient(k, step / 2) for k in range(len(base))])
    if not np.allclose(weights, halved, rtol=0.1, atol=1e-3 * np.abs(weights).max()):
        return None
    return weights


def weighted_logprob_gradient(model: Any, requests: Sequence[Request], weights: np.ndarray,
                              params: Sequence[torch.nn.Parameter], *, pad_id: int,
                              precision: Precision = "fp32",
                              max_batch_tokens: int = GRAD_BATCH_TOKENS) -> list[torch.Tensor]:
    """∇ Σ_k weights[k] · log p(continuation_k | context_k) with respect to `params`.

    Requests run whole (context + continuation, left-padded, explicit positions: the scorer's
    flat layout) with autograd on; requests with weight 0 are skipped."""
    place = pick_placement(model, precision)
    total = [torch.zeros(p.shape, dtype=torch.float32) for p in params]  # on the host
    chosen = [k for k in range(len(requests)) if weights[k] != 0.0]
    if not chosen:
        return total
    inputs = [list(requests[k].context) + list(requests[k].continuation[:-1]) for k in chosen]
    for batch in plan_batches([len(s) for s in inputs], max_batch_tokens):
        row_weights = torch.tensor([float(weights[chosen[b]]) for b in batch])
        with torch.enable_grad():
            picked, _ = flat_logprobs(model, [inputs[b] for b in batch],
                                      [requests[chosen[b]].continuation for b in batch],
                                      pad_id=pad_id, place=place)
            objective = (picked * row_weights.to(picked.device)).sum()
            grads = torch.autograd.grad(objective, list(params), allow_unused=True)
        for acc, g in zip(total, grads, strict=True):
            if g is not None:
                acc += g.detach().float().cpu()
    return total


def exchanged_parameters(bridge: Any) -> dict[str, torch.nn.Parameter]:
    """The model parameters behind the bridge's exchanged arrays (its state dict's keys): the
    peft state dict holds the parameters' own storage, matched by address."""
    by_address = {p.data_ptr(): p for p in bridge.model.parameters()}
    out = {}
    for key, tensor in bridge.state_dict().items():
        param = by_address.get(tensor.data_ptr())
        if param is None or not param.is_floating_point():
            raise ValueError(f"exchanged tensor {key!r} is not a floating model parameter: "
                             "it cannot be screened linearly")
        out[key] = param
    return out


def linear_screen(bridge: Any, arrays: Any, suites: Mapping[str, ProbeSuite], *,
                  metrics: Mapping[str, Sequence[str]] | None = None,
                  precision: Precision = "fp32") -> LinearScreen:
    """Load `arrays` into the bridge and take the gradient of each screened metric there:
    `metrics` maps a mode to its metric names (default: each suite's mode's headline); the
    screen's keys are "<mode>.<metric>"."""
    bridge.load_arrays(arrays)
    model, tokenizer = bridge.model, bridge.tokenizer
    pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None
                 else tokenizer.eos_token_id)
    named = exchanged_parameters(bridge)
    keys, params = list(named), list(named.values())
    flags = [p.requires_grad for p in params]
    was_training = getattr(model, "training", False)
    model.eval()
    screen = LinearScreen({k: p.detach().double().cpu().numpy().copy() for k, p in named.items()},
                          {}, {}, {})
    try:
        for p in params:
            p.requires_grad_(True)
        for mode, suite in suites.items():
            declared = registry.get(mode)
            names = list(metrics.get(mode, ())) if metrics is not None \
                else [declared.headline.name]
            if not names:
                continue
            requests = cached_requests(suite, tokenizer, declared.requests)
            scores = score_requests(model, requests, pad_id=pad_id, precision=precision)
            values = declared.compute(suite, scores)
            for name in names:
                key = f"{mode}.{name}"
                if name not in values:
                    raise ValueError(f"mode {mode!r} has no metric {name!r} on this suite; "
                                     f"it computes {sorted(values)}")
                screen.metrics[key] = name
                screen.values[key] = float(values[name].value)
                weights = metric_weights(mode, suite, scores, name)
                if weights is None:
                    screen.blind.append(key)
                    continue
                grads = weighted_logprob_gradient(model, requests, weights, params,
                                                  pad_id=pad_id, precision=precision)
                screen.gradients[key] = {k: g.double().numpy()
                                         for k, g in zip(keys, grads, strict=True)}
    finally:
        for p, flag in zip(params, flags, strict=True):
            p.requires_grad_(flag)
        if was_training:
            model.train()
    return screen


def _numpy(value: Any) -> np.ndarray:
    """An ArrayRecord's Array, a tensor or an array as numpy."""
    if hasattr(value, "numpy") and not isinstance(value, np.ndarray | torch.Tensor):
        return value.numpy()
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)
