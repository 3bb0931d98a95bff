"""An in-process Flower Grid: messages go straight to a ClientApp object, one node at a time.

`flwr run` starts Ray and a SuperLink (~15 s or more per run on 2 cores); a detection matrix runs
hundreds of short federations. `InlineGrid` keeps the Flower semantics that matter for them:
each node has its own persistent `Context` (node_config ``partition-id`` / ``num-partitions``
like the simulation engine's, run_config, state), every message is a deep copy in both
directions (the client can never touch the server's arrays), and a ClientApp exception becomes an
error reply, as in a real deployment. Nodes run sequentially. Only Flower's public API is used:
the grid keys replies by ids it makes itself on push and leaves the messages' metadata as Flower
built it (message ids stay empty, as nothing downstream reads them).
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from flwr.app import Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode
from flwr.serverapp import Grid
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

FIRST_NODE_ID = 1001


def ensure_task_identity(run_id: int = 1) -> None:
    """Messages need a run and task identity; a real ServerApp process sets them at start. Sets
    the ones not set yet (their public getters raise RuntimeError) with the public setters."""
    for name, value in (("run_id", run_id), ("task_id", 1), ("node_id", 0)):
        try:
            getattr(TaskIdentity, name)
        except RuntimeError:
            setattr(TaskIdentity, name, value)


class InlineGrid(Grid):
    """A Grid whose nodes are `client_app` objects called in this process."""

    def __init__(self, client_app: ClientApp, num_nodes: int, run_config: Mapping[str, Any],
                 run_id: int = 1) -> None:
        ensure_task_identity(run_id)
        self.client_app = client_app
        self._run = Run.create_empty(run_id)
        self.contexts: dict[int, Context] = {}
        for partition in range(num_nodes):
            node_id = FIRST_NODE_ID + partition
            self.contexts[node_id] = Context(
                run_id=run_id, node_id=node_id,
                node_config={"partition-id": partition, "num-partitions": num_nodes},
                state=RecordDict(), run_config=dict(run_config))
        self._replies: dict[str, Message] = {}

    # -- Grid interface ------------------------------------------------------------------------
    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, content: RecordDict, message_type: str, dst_node_id: int,
                       group_id: str, ttl: float | None = None) -> Message:
        return Message(content, dst_node_id, message_type, ttl=ttl, group_id=group_id)

    def get_node_ids(self) -> Iterable[int]:
        return list(self.contexts)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        """Delivers each message now; returns the grid's own ids under which the replies wait."""
        ids = []
        for msg in messages:
            msg_id = uuid.uuid4().hex
            self._replies[msg_id] = self._deliver(msg)
            ids.append(msg_id)
        return ids

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        return [self._replies.pop(i) for i in message_ids if i in self._replies]

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:
        return self.pull_messages(list(self.push_messages(messages)))

    # -- delivery ------------------------------------------------------------------------------
    def _deliver(self, msg: Message) -> Message:
        node = msg.metadata.dst_node_id
        context = self.contexts.get(node)
        if context is None:
            return Message(Error(code=ErrorCode.UNKNOWN, reason=f"no node {node}"), reply_to=msg)
        incoming = copy.deepcopy(msg)
        try:
            reply = self.client_app(incoming, context)
        except Exception as exc:  # a ClientApp crash is an error reply, as in Flower
            reason = f"{type(exc).__name__}: {exc}"
            return Message(Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason),
                           reply_to=msg)
        return copy.deepcopy(reply)
