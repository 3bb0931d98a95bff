"""Name the node behind the SuperLink's own error replies.

When a SuperNode stops sending heartbeats (it crashed, lost its network, was killed), the
SuperLink answers the messages sent to it with an error reply of its own (Flower 1.41:
`ErrorCode.NODE_UNAVAILABLE`, "Node Unavailable"). That reply's `src_node_id` is the
SuperLink's (1), not the lost node's; only its `reply_to_message_id` says which instruction,
and so which node, it stands for. `SentMessages` keeps the instructions a round sent (the
grid gives them their message ids when it pushes them) and rewrites such replies as error
replies of the node that was sent the instruction, so the audit log and the report name the
node that was lost instead of the SuperLink.
"""

from __future__ import annotations

from collections.abc import Iterable

from flwr.app import Message
from flwr.common.constant import SUPERLINK_NODE_ID


class SentMessages:
    """The instructions of the latest train and evaluate round, to attribute error replies."""

    def __init__(self) -> None:
        self._sent: dict[str, list[Message]] = {}

    def remember(self, phase: str, messages: Iterable[Message]) -> list[Message]:
        """Keep (and return) the instructions of `phase`; they are sent after this returns."""
        self._sent[phase] = list(messages)
        return self._sent[phase]

    def attribute(self, phase: str, replies: Iterable[Message]) -> list[Message]:
        """`replies` with every SuperLink error reply to one of `phase`'s instructions
        replaced by the same error from that instruction's destination node."""
        by_id = {m.metadata.message_id: m for m in self._sent.get(phase, [])
                 if m.metadata.message_id}
        out = []
        for reply in replies:
            try:
                meta = reply.metadata
                sent = by_id.get(meta.reply_to_message_id)
                if sent is not None and meta.src_node_id == SUPERLINK_NODE_ID \
                        and reply.has_error():
                    reply = Message(reply.error, reply_to=sent)
            except Exception:  # an odd reply is the screen's to refuse, not this helper's
                pass
            out.append(reply)
        return out
