"""The Prometheus exposition text, from known observations; the event-loop probes; several workers' texts
merged into one view."""

from __future__ import annotations

import asyncio
import gc
import time

from gateway.infra.metrics import GcPauses, LoopLag, Metrics, merge, render, with_label


def series(text: str) -> dict[str, str]:
    return {line.rsplit(" ", 1)[0]: line.rsplit(" ", 1)[1] for line in text.splitlines()
            if line and not line.startswith("#")}


def test_requests_durations_and_money_are_rendered_with_labels() -> None:
    m = Metrics()
    m.observe("/v1/chat/completions", 200, "simple", "local", "miss", 0.003, 10, 20, 0.5, 1.5)
    m.observe("/v1/chat/completions", 200, "simple", "local", "hit-exact", 0.0004, 10, 20, 0.0, 2.0)
    m.observe("/v1/complete", 502, None, None, "bypass", 75.0)
    s = series(render(m, None, None))
    assert s['smr_requests_total{endpoint="/v1/chat/completions",status="200",tier="simple",backend="local",'
             'cache="hit-exact"}'] == "1"
    assert s['smr_requests_total{endpoint="/v1/complete",status="502",tier="",backend="",cache="bypass"}'] == "1"
    # Cumulative buckets: 0.4 ms falls in le=0.001, 3 ms in le=0.005; 75 s only in +Inf.
    chat = 'smr_request_duration_seconds_bucket{endpoint="/v1/chat/completions",le="%s"}'
    assert (s[chat % "0.001"], s[chat % "0.0025"], s[chat % "0.005"], s[chat % "+Inf"]) == ("1", "1", "2", "2")
    slow = 'smr_request_duration_seconds_bucket{endpoint="/v1/complete",le="%s"}'
    assert (s[slow % "30.0"], s[slow % "60.0"], s[slow % "+Inf"]) == ("0", "0", "1")
    assert abs(float(s['smr_request_duration_seconds_sum{endpoint="/v1/chat/completions"}']) - 0.0034) < 1e-12
    assert s['smr_tokens_total{backend="local",kind="completion"}'] == "40"
    assert float(s['smr_savings_usd_total{backend="local"}']) == 3.5
    assert float(s['smr_cost_usd_total{backend="local"}']) == 0.5


def test_cache_and_writer_counters_gauges_and_escaping() -> None:
    m = Metrics()
    m.observe('/v1/"odd"\nendpoint', 200, None, None, "miss", 0.01)
    text = render(m, {"hits_exact": 3, "misses": 4, "last_error": "boom", "store_up": False},
                  {"written": 7, "buffered": 2, "db_up": True})
    s = series(text)
    assert s["smr_cache_hits_exact_total"] == "3" and s["smr_cache_misses_total"] == "4"
    assert s["smr_cache_store_up"] == "0" and s["smr_request_log_db_up"] == "1"
    assert s["smr_request_log_written_total"] == "7" and s["smr_request_log_buffered"] == "2"
    assert "# TYPE smr_request_log_buffered gauge" in text and "last_error" not in text
    assert 'endpoint="/v1/\\"odd\\"\\nendpoint"' in text


def test_a_stalled_event_loop_shows_in_the_lag_histogram() -> None:
    lag = LoopLag(every_s=0.01)

    async def stall() -> None:
        lag.start()
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().call_soon(time.sleep, 0.3)  # a callback that holds the loop
        await asyncio.sleep(0.1)
        lag.stop()

    asyncio.run(stall())
    s = series(render(Metrics(), None, None, lag=lag, gc_pauses=GcPauses()))
    count = int(s["smr_event_loop_lag_seconds_count"])
    assert count >= 2 and int(s['smr_event_loop_lag_seconds_bucket{le="0.25"}']) < count  # one ran 0.3 s late
    assert s['smr_event_loop_lag_seconds_bucket{le="+Inf"}'] == str(count)
    assert float(s["smr_event_loop_lag_max_seconds"]) >= 0.25
    assert 'smr_gc_pause_seconds_bucket{generation="2",le="+Inf"}' in s


def test_gc_pauses_are_counted_while_installed() -> None:
    pauses = GcPauses()
    pauses.install()
    try:
        gc.collect()
    finally:
        pauses.remove()
    gc.collect()
    assert [sum(h.counts) for h in pauses.hists] == [0, 0, 1]


def test_workers_texts_merge_into_one_view_with_a_worker_label() -> None:
    a, b = Metrics(), Metrics()
    a.observe("/v1/chat/completions", 200, "simple", "local", "miss", 0.003)
    b.observe("/v1/chat/completions", 429, None, None, "bypass", 0.001)
    texts = [with_label(render(m, None, {"written": i}), "worker", str(i)) for i, m in enumerate((a, b))]
    merged = merge(texts)
    s = series(merged)
    assert s['smr_requests_total{worker="0",endpoint="/v1/chat/completions",status="200",tier="simple",'
             'backend="local",cache="miss"}'] == "1"
    assert s['smr_requests_total{worker="1",endpoint="/v1/chat/completions",status="429",tier="",backend="",'
             'cache="bypass"}'] == "1"
    assert s['smr_request_log_written_total{worker="1"}'] == "1"
    # Each family's HELP and TYPE once, its series from both workers together under them.
    assert merged.count("# TYPE smr_requests_total counter") == 1
    lines = merged.splitlines()
    start = lines.index("# TYPE smr_request_log_written_total counter")
    assert lines[start + 1:start + 3] == ['smr_request_log_written_total{worker="0"} 0',
                                          'smr_request_log_written_total{worker="1"} 1']
