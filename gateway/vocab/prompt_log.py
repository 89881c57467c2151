"""The prompt as the request log keeps it (log.prompts), and back: one "role: text" block per message.

Pure. `conversation_of` reads a logged prompt back into turns for `smr calibrate/train --from-logs`; a
message line that itself starts with "user: " would be read as a new turn, which is harmless for scoring.
"""

from __future__ import annotations

import re

from gateway.vocab.wire import ChatCompletionRequest, message_text
from router_core.types import Conversation, Turn

_ROLE = re.compile(r"^(system|developer|user|assistant|tool|function): ", re.MULTILINE)


def logged_prompt(req: ChatCompletionRequest) -> str:
    return "\n".join(f"{m.role}: {message_text(m)}" for m in req.messages)


def conversation_of(logged: str) -> Conversation:
    starts = list(_ROLE.finditer(logged))
    if not starts or starts[0].start() != 0:
        return Conversation((Turn("user", logged),))
    turns = []
    for m, nxt in zip(starts, [*starts[1:], None], strict=True):
        end = nxt.start() - 1 if nxt is not None else len(logged)
        turns.append(Turn(m.group(1), logged[m.end():end]))
    return Conversation(tuple(turns))
