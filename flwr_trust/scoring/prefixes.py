"""Plan which contexts of one scoring call share a leading token prefix worth running once.

Contexts of different probe items often start with the same tokens: a chat template's system
block and user header (every alignment prompt), an instruction header ("Question: What is",
"A man asks:"), a canary's fixed prefix. The engine runs such a prefix once per scoring call and
starts every member context from a copy of its key/value cache (flwr_trust.scoring.engine).

The plan is a single level of groups over the contexts' prefix tree: a group's prefix is the
longest prefix all its members share, cut to leave every member at least one token of its own
(a context may equal the shared prefix). The engine runs all groups' prefixes in one padded
batch, so a group costs no extra forward call, but its prefix row is padded to the longest
prefix and every batch copies the prefix cache: a group must save more than `overhead` token
forwards to be chosen; among the tree's nodes the cheapest partition is picked by dynamic
programming (linear in the contexts times the tree's depth).
Kept free of torch: the token-count report (bench/probe_tokens.py) uses it without a model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from flwr_trust.scoring.requests import Request

PREFIX_OVERHEAD = 32
"""Token forwards a shared prefix must save to be chosen: its row in the prefix batch is padded
to the longest prefix, and it adds rows to the prefix cache every batch copies."""

Sharing = Literal["none", "context", "prefix"]
"""What a scoring pass runs once: nothing (each request whole), each distinct context (the
choices of an item), or also the prefixes contexts share (this module's plan)."""


@dataclass(frozen=True)
class PrefixGroup:
    """Contexts (indices into the planned list) that start from one shared prefix.

    `shared` tokens of each member are run once for the group; shared = 0 means the members
    run whole (nothing worth sharing). Every member is longer than `shared`."""

    shared: int
    members: tuple[int, ...]


def _common(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def plan_prefix_groups(contexts: Sequence[tuple[int, ...]], *,
                       overhead: int = PREFIX_OVERHEAD) -> list[PrefixGroup]:
    """Partition distinct, non-empty contexts into groups that share a prefix (see module doc).

    Deterministic; the last group (shared = 0) holds every context left to run whole."""
    if any(not c for c in contexts):
        raise ValueError("every context needs at least one token")
    order = sorted(range(len(contexts)), key=lambda i: contexts[i])
    cs = [contexts[i] for i in order]
    lcp = [_common(cs[i], cs[i + 1]) for i in range(len(cs) - 1)]
    lengths = [len(c) for c in cs]
    # Nodes of the prefix tree over the sorted contexts: (lo, hi) ranges, parents first.
    nodes: list[tuple[int, int]] = [(0, len(cs))] if len(cs) > 1 else []
    children: list[list[int]] = []
    at = 0
    while at < len(nodes):
        lo, hi = nodes[at]
        depth = min(lcp[lo:hi - 1])
        kids, start = [], lo
        for i in range(lo, hi):
            if i == hi - 1 or lcp[i] == depth:
                if i - start >= 1:  # two or more contexts: a sub-node
                    kids.append(len(nodes))
                    nodes.append((start, i + 1))
                start = i + 1
        children.append(kids)
        at += 1
    # Bottom-up: the cheaper of sharing at this node or the best of its children.
    total = [0]
    for n in lengths:
        total.append(total[-1] + n)
    cost = [0] * len(nodes)
    share = [0] * len(nodes)  # tokens shared when the node is one group; 0 = split
    for k in range(len(nodes) - 1, -1, -1):
        lo, hi = nodes[k]
        whole = total[hi] - total[lo]
        # Split: each child node at its best, contexts in no child node run whole.
        split = whole + sum(cost[c] - (total[nodes[c][1]] - total[nodes[c][0]])
                            for c in children[k])
        shared = min(min(lcp[lo:hi - 1]), min(lengths[lo:hi]) - 1)
        joint = shared + whole - (hi - lo) * shared + overhead
        if shared > 0 and joint < split:
            cost[k], share[k] = joint, shared
        else:
            cost[k] = split
    # Top-down: collect the chosen groups; everything else runs whole.
    groups: list[PrefixGroup] = []
    grouped = [False] * len(cs)
    stack = [0] if nodes else []
    while stack:
        k = stack.pop()
        lo, hi = nodes[k]
        if share[k]:
            groups.append(PrefixGroup(share[k], tuple(order[lo:hi])))
            grouped[lo:hi] = [True] * (hi - lo)
        else:
            stack.extend(reversed(children[k]))
    rest = tuple(order[i] for i in range(len(cs)) if not grouped[i])
    if rest:
        groups.append(PrefixGroup(0, rest))
    return groups


def forwarded_tokens(requests: Sequence[Request], sharing: Sharing = "prefix", *,
                     overhead: int = PREFIX_OVERHEAD) -> int:
    """Tokens the engine runs through the model for `requests` (padding not counted).

    A request's last continuation token is only a target, never an input. "none" counts whole
    requests, before the engine's left truncation of any longer than its max_length."""
    if sharing == "none":
        return sum(len(r.context) + len(r.continuation) - 1 for r in requests)
    conts = sum(len(r.continuation) - 1 for r in requests)
    contexts = list(dict.fromkeys(r.context for r in requests))
    if sharing == "context":
        return conts + sum(len(c) for c in contexts)
    if sharing != "prefix":
        raise ValueError(f"sharing must be 'none', 'context' or 'prefix', not {sharing!r}")
    total = conts
    for group in plan_prefix_groups(contexts, overhead=overhead):
        total += group.shared + sum(len(contexts[i]) - group.shared for i in group.members)
    return total
