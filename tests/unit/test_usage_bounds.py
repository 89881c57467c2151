"""Money, part two (issue 24): an upstream cannot write any number into the books.

Usage outside sane bounds (negative, past the model's context window, more answer than the cap sent) is
clamped and flagged (`usage_estimated`), and a stream that cannot be read ends with an SSE error event and
an error row, never a cut with a 200 row.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from aiohttp.http_exceptions import LineTooLong

from gateway.fakes.provider import Reply
from gateway.path.auth import Principal
from gateway.path.request_path import Answer, StreamAnswer
from gateway.vocab.limits import LimitSet, budget_check
from gateway.vocab.wire import Usage
from tests.unit.test_request_path import Harness, read_sse

CONTEXT_WINDOW = 1_000_000  # the harness's backends keep the default


def key(**limits: object) -> Principal:
    return Principal(tenant="acme", key_id="key-1", limits=LimitSet(**limits))  # type: ignore[arg-type]


@pytest.mark.parametrize("stream", [False, True])
async def test_negative_usage_costs_nothing_negative_and_is_flagged(stream: bool) -> None:
    """Negative usage was a 200 costing -$5,000 that gave the budget $5,000 of headroom."""
    bad = Usage(-50_000_000_000, -1, -50_000_000_001, cached_tokens=-7)
    h = Harness({"cheap": lambda call: Reply(usage=bad)}, cache=False)
    answer = await h.serve(stream=stream, principal=key(budget_usd=1.0), stream_options={"include_usage": True}
                           if stream else None)
    if isinstance(answer, StreamAnswer):
        events = await read_sse(answer)
        usage = [e for e in events if isinstance(e, dict) and e.get("usage")][-1]["usage"]
        assert min(usage[k] for k in ("prompt_tokens", "completion_tokens", "total_tokens")) > 0  # type: ignore[index]
    else:
        assert isinstance(answer, Answer) and answer.served.priced is not None
        assert answer.served.priced.cost_usd > 0
    await h.admission.drain()
    (row,) = h.rows
    assert row.http_status == 200 and row.usage_estimated
    assert row.prompt_tokens > 0 and row.completion_tokens > 0 and row.cost_usd > 0
    check = budget_check("key", "key-1", LimitSet(budget_usd=1.0), dt.datetime.now(dt.UTC))
    assert check is not None
    assert await h.counters.used(check) == pytest.approx(row.cost_usd)  # spent, and nothing left held


@pytest.mark.parametrize("stream", [False, True])
async def test_usage_past_any_bound_is_clamped_and_flagged(stream: bool) -> None:
    """10^12 tokens cost $5,000,000 and made a row Postgres refused (integer overflow)."""
    huge = Usage(10**12, 10**12, 2 * 10**12, cached_tokens=10**13)
    h = Harness({"cheap": lambda call: Reply(usage=huge)}, cache=False)
    answer = await h.serve(stream=stream, principal=key(budget_usd=1.0), max_tokens=100)
    if isinstance(answer, StreamAnswer):
        await read_sse(answer)
    await h.admission.drain()
    (row,) = h.rows
    assert row.http_status == 200 and row.usage_estimated
    assert row.prompt_tokens == CONTEXT_WINDOW and row.completion_tokens == 100  # the cap sent
    assert row.cost_usd == pytest.approx((CONTEXT_WINDOW * 0.1 + 100 * 0.2) / 1e6)  # "cheap"'s prices
    assert row.prompt_tokens < 2**31 and row.completion_tokens < 2**31


async def test_usage_within_bounds_is_the_upstreams_and_not_flagged() -> None:
    h = Harness({"cheap": lambda call: Reply(usage=Usage(900_000, 100, 900_100, cached_tokens=1000))}, cache=False)
    await h.serve(max_tokens=100)
    (row,) = h.rows
    assert (row.prompt_tokens, row.completion_tokens, row.usage_estimated) == (900_000, 100, False)


@pytest.mark.parametrize("error", [LineTooLong(b"data: {...", 4 * 2**20), RuntimeError("an adapter bug")])
async def test_an_unreadable_stream_ends_with_an_error_event_and_an_error_row(error: Exception) -> None:
    """An SSE line over the reader's limit raised an unhandled `LineTooLong`: the client's stream was cut
    with no error event, and the row said 200."""
    h = Harness({"cheap": lambda call: Reply("one two three four", pieces=4, fail_after=2, error=error)})
    answer = await h.serve(stream=True)
    assert isinstance(answer, StreamAnswer)
    events = await read_sse(answer)
    assert "[DONE]" not in events
    last = events[-1]
    assert isinstance(last, dict) and last["error"]["code"] == "upstream_protocol_error"  # type: ignore[index]
    assert "cheap" in json.dumps(last)
    (row,) = h.rows
    assert row.http_status == 502 and row.error_type == "upstream_protocol_error" and row.cost_usd > 0
