"""A small causal-LM training loop for local (client-side) LoRA fine-tuning, optionally DP-SGD.

Examples are chat pairs (user prompt, assistant reply) or plain strings. A chat pair is rendered
with the tokenizer's chat template exactly as the scorers render probes (`Encoder.context` for
the prompt, the reply tokenized on its own after it), and only the reply tokens (with the turn's
end marker) carry a loss. A plain string is start token + text with a loss on every text token.

The loss of a batch is the mean over examples of each example's mean token loss: every example
weighs the same whatever its length, and, for DP-SGD, each example's gradient depends on that
example alone (HF's ``labels=`` loss averages tokens across the batch, which couples examples).
DP-SGD uses Opacus (per-example clipping, Gaussian noise, Poisson sampling, RDP accounting) on
the trainable (LoRA) parameters only; the model is left unwrapped and its hooks removed after.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

from flwr_trust.probes.suite import ProbeItem
from flwr_trust.scoring.encoding import Encoder

Precision = Literal["fp32", "bf16"]
IGNORE = -100  # label of tokens without a loss (prompt, padding)


class ChatExample(NamedTuple):
    """One chat turn to learn: the assistant `reply` to the user `prompt`."""

    prompt: str
    reply: str


Example = ChatExample | str


@dataclass(frozen=True)
class DPConfig:
    """DP-SGD settings: noise std = noise_multiplier x max_grad_norm per step, (eps, delta)-DP."""

    noise_multiplier: float
    max_grad_norm: float
    delta: float = 1e-5


@dataclass
class TrainStats:
    """What a `train_lora` call did. `epsilon` (for `delta`) only with DP; `dp_history` holds the
    Opacus accountant history (noise multiplier, sample rate, steps) so callers can compose the
    budget of several calls with `compose_epsilon`."""

    losses: list[float]
    mean_loss: float
    seconds: float
    examples: int
    epsilon: float | None = None
    delta: float | None = None
    dp_history: list[tuple[float, float, int]] = field(default_factory=list)


# ------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------

def encode_example(tokenizer: Any, example: Example, max_length: int,
                   encoder: Encoder | None = None, end_of_turn: str | None = None
                   ) -> tuple[list[int], list[int]]:
    """Token ids and labels (IGNORE where no loss) of one example, at most `max_length` long.

    Chat: the rendered prompt (with the assistant prefix) then the reply and the template's
    end-of-turn text; the loss covers the reply and end of turn. If too long, the reply is cut
    (keeping at least half the window) and then the prompt's oldest tokens are dropped.
    """
    enc = encoder or Encoder(tokenizer)
    if isinstance(example, str):
        ids = list(enc.start + enc.ids(example))[:max_length]
        return ids, [IGNORE] + ids[1:]
    prompt, reply = example
    context = list(enc.context(ProbeItem(id="train", prompt=prompt, chat=True)))
    eot = end_of_turn if end_of_turn is not None else _end_of_turn(tokenizer, enc)
    target = list(enc.ids(reply + eot))
    if len(context) + len(target) > max_length:
        target = target[:max(max_length - len(context), max_length // 2)]
        context = context[len(context) - (max_length - len(target)):]
    return context + target, [IGNORE] * len(context) + target


def _end_of_turn(tokenizer: Any, enc: Encoder) -> str:
    """The text a chat template puts after an assistant reply ('<|im_end|>\\n' for ChatML)."""
    if not enc.has_chat:
        return tokenizer.eos_token or ""
    marker = "\x00REPLY\x00"
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "x"}, {"role": "assistant", "content": marker}],
        tokenize=False)
    return full.split(marker, 1)[1] if marker in full else (tokenizer.eos_token or "")


def collate(rows: Sequence[tuple[list[int], list[int]]], pad_id: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Left-pad (ids, labels) rows into input_ids, attention_mask and labels tensors.

    Left padding puts every row's labelled tokens (the reply) at the right edge, so the LM head
    only has to run over the last few positions (see `per_example_loss`).
    """
    width = max((len(ids) for ids, _ in rows), default=1)
    ids_t = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE, dtype=torch.long)
    for r, (ids, lab) in enumerate(rows):
        if ids:
            ids_t[r, width - len(ids):] = torch.tensor(ids, dtype=torch.long)
            mask[r, width - len(ids):] = 1
            labels[r, width - len(lab):] = torch.tensor(lab, dtype=torch.long)
    return ids_t, mask, labels


def per_example_loss(model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                     labels: torch.Tensor) -> torch.Tensor:
    """Each row's mean next-token cross-entropy over its labelled tokens (shape [batch]).

    Rows are left-padded (explicit position ids, so padding does not shift positions); logits
    are computed only from the position before the earliest labelled token onwards.
    """
    labelled = (labels != IGNORE).any(dim=0).nonzero()
    first = int(labelled[0]) if labelled.numel() else labels.shape[1] - 1
    keep = labels.shape[1] - max(first, 1) + 1  # logits at first-1 .. end
    positions = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                   logits_to_keep=keep, use_cache=False).logits
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, labels.shape[1] - keep + 1:]
    token_loss = torch.nn.functional.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1),
        ignore_index=IGNORE, reduction="none").view(shift_labels.shape)
    counts = (shift_labels != IGNORE).sum(dim=1)
    return token_loss.sum(dim=1) / counts.clamp(min=1)


def autocast(precision: Precision) -> Any:
    """The context for forward passes at `precision` (bf16 autocast on CPU, or nothing)."""
    if precision == "bf16":
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    if precision == "fp32":
        return nullcontext()
    raise ValueError(f"precision must be 'fp32' or 'bf16', not {precision!r}")


def preferred_precision() -> Precision:
    """'bf16' where bf16 matrix products run natively (CUDA, or a CPU with AMX / AVX512-BF16),
    else 'fp32'. Without native support, CPU bf16 autocast is emulated and far slower (measured
    ~50x slower on an AVX2-only AMD EPYC) and numerically rougher, so it buys nothing."""
    if torch.cuda.is_available():
        return "bf16"
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="ignore")
    except OSError:
        return "fp32"
    return "bf16" if ("amx_bf16" in flags or "avx512_bf16" in flags) else "fp32"


def trainable_params(model: Any) -> list[Any]:
    """The parameters that train (the adapter's); an error if there are none."""
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("the model has no trainable parameters (attach a LoRA adapter first)")
    return params


def pad_token_id(tokenizer: Any) -> int:
    """The id to pad with: the pad token, else end of sequence."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pad)


def encode_all(tokenizer: Any, examples: Sequence[Example], max_length: int
                ) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of every example; an error if one has no token to learn."""
    enc = Encoder(tokenizer)
    eot = _end_of_turn(tokenizer, enc)
    rows = [encode_example(tokenizer, ex, max_length, enc, eot) for ex in examples]
    empty = [i for i, (_, lab) in enumerate(rows) if all(t == IGNORE for t in lab)]
    if empty:
        raise ValueError(f"{len(empty)} examples have no token to learn (e.g. #{empty[0]}): "
                         "empty replies or texts, or max_length too small")
    return rows


# ------------------------------------------------------------------------------------------
# Training
# ------------------------------------------------------------------------------------------

def train_lora(model: Any, tokenizer: Any, examples: Sequence[Example], *, steps: int,
               batch_size: int, lr: float, max_length: int = 128, seed: int = 0,
               dp: DPConfig | None = None, precision: Precision = "fp32",
               weight_decay: float = 0.0, clip_norm: float | None = 1.0,
               warmup_steps: int = 0, progress: Any = None) -> TrainStats:
    """Train the model's trainable parameters (its LoRA adapter) in place for `steps` steps.

    AdamW on parameters with requires_grad only. Without DP, batches are drawn from a seeded
    shuffle (epoch after epoch) and gradients clipped to `clip_norm`; with DP, Opacus draws
    Poisson batches of expected size `batch_size` and clips each example to dp.max_grad_norm
    (`clip_norm` is not used; a step that samples nobody only adds noise and repeats the
    previous loss). The learning rate warms up linearly over `warmup_steps`, then stays
    constant. Everything random (order, dropout, DP noise) derives from `seed`; the global RNG
    is left untouched. `precision="bf16"` runs forward passes under bf16 autocast (fast only on
    hardware with native bf16: see `preferred_precision`); the loss and the LoRA weights stay
    fp32. `progress(step, loss)` is called after each step that saw data.
    """
    if steps < 1 or batch_size < 1:
        raise ValueError("steps and batch_size must be >= 1")
    if not examples:
        raise ValueError("no training examples")
    rows = encode_all(tokenizer, examples, max_length)
    params = trainable_params(model)
    pad_id = pad_token_id(tokenizer)
    was_training = model.training
    start = time.perf_counter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
        model.train()
        try:
            if dp is None:
                losses = _train_plain(model, rows, optimizer, params, steps, batch_size, seed,
                                      pad_id, precision, clip_norm, warmup_steps, lr, progress)
                eps, history = None, []
            else:
                losses, eps, history = _train_dp(model, rows, optimizer, steps, batch_size,
                                                 seed, pad_id, precision, dp, warmup_steps, lr,
                                                 progress)
        finally:
            model.train(was_training)
            for p in params:
                p.grad = None
    return TrainStats(losses=losses, mean_loss=float(np.mean(losses)),
                      seconds=time.perf_counter() - start, examples=len(rows), epsilon=eps,
                      delta=dp.delta if dp else None, dp_history=history)


def set_lr(optimizer: Any, lr: float, step: int, warmup_steps: int) -> None:
    """`lr` after a linear warm-up over `warmup_steps`, for the optimizer's next step."""
    scale = min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    for group in optimizer.param_groups:
        group["lr"] = lr * scale


def shuffled_batches(n: int, batch_size: int, seed: int) -> Iterator[list[int]]:
    """Endless batches: a seeded permutation per epoch, cut into batches (the last may wrap)."""
    gen = torch.Generator().manual_seed(seed)
    pending: list[int] = []
    while True:
        while len(pending) < batch_size:
            pending.extend(torch.randperm(n, generator=gen).tolist())
        yield pending[:batch_size]
        pending = pending[batch_size:]


def _train_plain(model: Any, rows: list, optimizer: Any, params: list, steps: int,
                 batch_size: int, seed: int, pad_id: int, precision: Precision,
                 clip_norm: float | None, warmup_steps: int, lr: float,
                 progress: Any) -> list[float]:
    losses = []
    batches = shuffled_batches(len(rows), min(batch_size, len(rows)), seed)
    for step in range(steps):
        ids, mask, labels = collate([rows[i] for i in next(batches)], pad_id)
        set_lr(optimizer, lr, step, warmup_steps)
        optimizer.zero_grad(set_to_none=True)
        with autocast(precision):
            loss = per_example_loss(model, ids, mask, labels).mean()
        losses.append(optimizer_step(loss, optimizer, params, clip_norm))
        if progress is not None:
            progress(step, losses[-1])
    return losses


def optimizer_step(loss: torch.Tensor, optimizer: Any, params: list,
                   clip_norm: float | None) -> float:
    """Backward, optional global-norm clipping, optimizer step; returns the loss value."""
    loss.backward()
    if clip_norm is not None:
        torch.nn.utils.clip_grad_norm_(params, clip_norm)
    optimizer.step()
    return float(loss.detach())


class _Rows(torch.utils.data.Dataset):
    """Encoded examples for Opacus's Poisson data loader (items are indices; we collate)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor]:
        return (torch.tensor(i),)


def _train_dp(model: Any, rows: list, optimizer: Any, steps: int, batch_size: int, seed: int,
              pad_id: int, precision: Precision, dp: DPConfig, warmup_steps: int, lr: float,
              progress: Any) -> tuple[list[float], float, list[tuple[float, float, int]]]:
    """DP-SGD with Opacus hooks on the unwrapped model; returns losses, epsilon, history."""
    from opacus import PrivacyEngine

    # Expected here, not actionable: Opacus's pseudo-random (seeded) noise, and torch noting
    # that the hooked layers' inputs need no gradient (the base model is frozen).
    warnings.filterwarnings("ignore", message="Secure RNG turned off")
    warnings.filterwarnings("ignore", message="Full backward hook is firing")
    engine = PrivacyEngine(accountant="rdp")
    loader = torch.utils.data.DataLoader(_Rows(len(rows)), batch_size=min(batch_size, len(rows)),
                                         generator=torch.Generator().manual_seed(seed))
    hooks, dp_optimizer, dp_loader = engine.make_private(
        module=model, optimizer=optimizer, data_loader=loader,
        noise_multiplier=dp.noise_multiplier, max_grad_norm=dp.max_grad_norm,
        poisson_sampling=True, wrap_model=False, loss_reduction="mean",
        noise_generator=torch.Generator().manual_seed(seed + 1))
    trainable = [p for p in model.parameters() if p.requires_grad]
    losses: list[float] = []
    try:
        batches = _endless(dp_loader)
        for step in range(steps):
            (index,) = next(batches)
            set_lr(dp_optimizer, lr, step, warmup_steps)
            dp_optimizer.zero_grad(set_to_none=True)
            if index.numel() == 0:  # Poisson sampling drew nobody: a noise-only step
                for p in trainable:
                    p.grad_sample = torch.zeros((0, *p.shape), dtype=p.dtype)
                dp_optimizer.step()
                losses.append(math.nan)
                continue
            ids, mask, labels = collate([rows[int(i)] for i in index], pad_id)
            with autocast(precision):
                per_example = per_example_loss(model, ids, mask, labels)
            per_example.mean().backward()
            dp_optimizer.step()
            losses.append(float(per_example.detach().mean()))
            if progress is not None:
                progress(step, losses[-1])
        epsilon = float(engine.get_epsilon(dp.delta))
        history = [(float(s), float(q), int(n)) for s, q, n in engine.accountant.history]
    finally:
        hooks.cleanup()  # removes the hooks and per-example grads; the model is as before
        for p in trainable:
            for attr in ("summed_grad", "grad_sample"):
                if hasattr(p, attr):
                    delattr(p, attr)
    filled, last = [], next((x for x in losses if math.isfinite(x)), 0.0)
    for x in losses:  # noise-only steps repeat the previous loss
        last = x if math.isfinite(x) else last
        filled.append(last)
    return filled, epsilon, history


def _endless(loader: Any) -> Iterator[Any]:
    while True:
        yield from loader


def compose_epsilon(histories: Sequence[Sequence[tuple[float, float, int]]],
                    delta: float) -> float:
    """Epsilon of several DP `train_lora` calls on the same data (e.g. one client's rounds)."""
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    accountant.history = [tuple(h) for hist in histories for h in hist]
    return float(accountant.get_epsilon(delta)) if accountant.history else 0.0


# ------------------------------------------------------------------------------------------
# Evaluation
# ------------------------------------------------------------------------------------------

@torch.no_grad()
def mean_loss(model: Any, tokenizer: Any, examples: Sequence[Example], *, batch_size: int = 16,
              max_length: int = 128, precision: Precision = "fp32") -> np.ndarray:
    """Per-example mean token loss (nats) on the reply (chat) or text tokens, in input order."""
    if not examples:
        return np.zeros(0)
    rows = encode_all(tokenizer, examples, max_length)
    pad_id = pad_token_id(tokenizer)
    order = sorted(range(len(rows)), key=lambda i: -len(rows[i][0]))  # similar lengths batch
    out = np.zeros(len(rows))
    was_training = model.training
    model.eval()
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            ids, mask, labels = collate([rows[i] for i in chunk], pad_id)
            with autocast(precision):
                losses = per_example_loss(model, ids, mask, labels)
            out[chunk] = losses.float().cpu().numpy()
    finally:
        model.train(was_training)
    return out
