"""The learning worker: a bounded queue of sampled answers, drained by one task, off the request path.

`offer` is the request path's one call (after the answer is complete): a pure sampling decision and a
`put_nowait`; when the queue is full the job is dropped and counted, never awaited. For each job the task
checks that learning may spend (Redis says the day's caps are not reached; the request log's database is
up; the reference's and judge's circuits are closed; a pause is waited out for up to 3.5 s, then the job
is dropped and counted as paused), then asks the reference tier, judges the two answers
(a rule where the request makes it checkable, else the model judge), logs each learning call as a
request-log row with endpoint "learning" (priced; tenant and key left empty so no tenant's usage or budget
counts it; `client_request_id` is the sampled request's id), adds the cost to the day's counters and
stores the judgement. Nothing here reaches the client; every failure is counted and logged, not raised.

Semantic-cache checks (`offer_cache`, gateway/learning/cache_checks.py) share the queue, the pauses and
the budget: a sampled hit gets a fresh answer from its tier (logged as "learning:cache_fresh"), and the
cached answer is judged against it; a near miss's candidate is judged against the client's answer. With
`cache.learn_threshold` on, `start(cache)` also runs the refresher of the cache's learned threshold.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import time
from typing import Any

import msgspec
import psycopg

from gateway.cache.service import Hit, ResponseCache
from gateway.db.log_row import LogRow
from gateway.db.log_writer import LogWriter
from gateway.infra.request_ids import new_request_id
from gateway.learning.cache_checks import REFRESH_EVERY, CacheJob, Refresher, check_verdict, checked
from gateway.learning.judge import ModelJudge, Verdict, rule_verdict
from gateway.learning.sampler import SpendCaps, sampled
from gateway.learning.store import CacheCheck, CacheCheckStore, Judgement, JudgementStore
from gateway.path.accounting import RequestLog
from gateway.path.fallback import Answered, ChainCaller
from gateway.providers.base import UpstreamCall
from gateway.vocab.errors import GatewayError
from gateway.vocab.pricing import Priced, fill_usage, price
from gateway.vocab.prompt_log import logged_prompt
from gateway.vocab.settings import Backend, Settings
from gateway.vocab.wire import ChatCompletionRequest, ResponseMessage

log = logging.getLogger("gateway.learning")


class Job(msgspec.Struct, frozen=True):
    request_id: str
    tenant: str | None
    tier: str
    classifier: str | None
    score: float | None
    backend: Backend
    request: ChatCompletionRequest
    raw: dict[str, Any]
    message: ResponseMessage


class LearningStats(msgspec.Struct):
    sampled: int = 0     # offered to the queue
    dropped: int = 0     # the queue was full
    capped: int = 0      # the day's learning budget (in all or the tenant's) was spent
    paused: int = 0      # Redis or the database down, or a circuit open: not asked
    judged: int = 0      # stored judgements
    unjudged: int = 0    # no rule applied and no judge configured (or it gave no verdict)
    failed: int = 0      # a learning call or the store failed
    cost_usd: float = 0.0
    cache_sampled: int = 0  # semantic hits and near misses offered for a check
    cache_checked: int = 0  # stored cache checks (right, wrong or unsure)
    cache_wrong: int = 0    # of which the cached answer was judged wrong
    cache_unsure: int = 0   # of which the judge gave no verdict


class Learner:
    def __init__(self, settings: Settings, caller: ChainCaller, chain: tuple[Backend, ...], caps: SpendCaps,
                 store: JudgementStore | None, request_log: RequestLog | None, judge: ModelJudge | None) -> None:
        self.cfg = settings.learning
        self.caller = caller
        self.chain = chain
        self.caps = caps
        self.store = store
        self.log = request_log
        self.judge = judge
        self.stats = LearningStats()
        self.queue: asyncio.Queue[Job | CacheJob] = asyncio.Queue(self.cfg.queue_max)
        self.settings = settings
        self.chains: dict[str, tuple[Backend, ...]] = {}
        self.checks = CacheCheckStore(store.pool) if store is not None else None
        self.refresher: Refresher | None = None
        self.pause_waits_s: tuple[float, ...] = (0.5, 1.0, 2.0)  # then a paused job is dropped (and counted)
        self._task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ the request path's one call
    def offer(self, request_id: str, tenant: str | None, mode: str | None, tier: str | None, classifier: str | None,
              score: float | None, backend: Backend | None, req: ChatCompletionRequest, raw: dict[str, Any],
              message: ResponseMessage, prompt_tokens: int = 0) -> None:
        if backend is None or tier is None or not sampled(self.cfg, request_id, tenant, mode, tier, prompt_tokens):
            return
        self.stats.sampled += 1
        try:
            self.queue.put_nowait(Job(request_id, tenant, tier, classifier, score, backend, req, raw, message))
        except asyncio.QueueFull:
            self.stats.dropped += 1

    def offer_cache(self, request_id: str, tenant: str | None, kind: str, hit: Hit, threshold: float,
                    req: ChatCompletionRequest, raw: dict[str, Any], fresh: ResponseMessage | None = None,
                    fresh_backend: str | None = None) -> None:
        """A semantic hit (kind "hit") or near miss ("near_miss") for a check: a pure draw, a put_nowait."""
        if hit.similarity is None or not checked(self.cfg, request_id, tenant):
            return
        self.stats.cache_sampled += 1
        a = hit.answer
        try:
            self.queue.put_nowait(CacheJob(request_id, tenant, kind, hit.similarity, threshold, hit.guard_score,
                                           a.tier, a.message, a.backend, req, raw, fresh, fresh_backend))
        except asyncio.QueueFull:
            self.stats.dropped += 1

    # ------------------------------------------------------------------ the task
    def start(self, cache: ResponseCache | None = None) -> None:
        self._task = asyncio.create_task(self._run(), name="learning")
        if cache is not None and cache.semantic and self.checks is not None and self.settings.cache.learn_threshold:
            cache.acceptance.learn = True
            self.refresher = Refresher(cache.acceptance, self.checks)
            self.refresher.start()

    async def close(self) -> None:
        if self.refresher is not None:
            await self.refresher.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.stats.dropped += self.queue.qsize()

    async def _run(self) -> None:
        while True:
            job = await self.queue.get()
            try:
                await self.process(job)
            except (GatewayError, psycopg.Error, OSError, ValueError) as exc:
                self.stats.failed += 1
                log.warning("learning: request %s not judged: %s", job.request_id, exc)
            except Exception:  # a bug here must not end learning, nor reach anyone's request
                self.stats.failed += 1
                log.exception("learning: request %s not judged", job.request_id)

    def _paused(self, first: Backend | None) -> bool:
        writer = self.log if isinstance(self.log, LogWriter) else None
        if self.store is None or (writer is not None and not writer.stats.db_up):
            return True
        backends = ([first] if first is not None else []) + ([self.judge.backend] if self.judge is not None else [])
        return any(self.caller.breakers.state(b.name) != "closed" for b in backends)

    async def _may_spend(self, tenant: str | None, first: Backend | None) -> bool:
        for wait in (*self.pause_waits_s, None):  # a short outage (a slow flush, a blip) is waited out
            refusal = "paused" if self._paused(first) else await self.caps.refusal(tenant)
            if refusal in (None, "capped") or wait is None:
                break
            await asyncio.sleep(wait)
        if refusal == "capped":
            self.stats.capped += 1
        elif refusal is not None:
            self.stats.paused += 1
        return refusal is None

    async def process(self, job: Job | CacheJob) -> None:
        if isinstance(job, CacheJob):
            await self.process_cache(job)
            return
        if not await self._may_spend(job.tenant, self.chain[0]):
            return
        req = msgspec.structs.replace(job.request, stream=False, stream_options=None)
        raw = {k: v for k, v in job.raw.items() if k not in ("stream", "stream_options")}
        reference = await self._call(job, "reference", UpstreamCall(req, raw), self.chain)
        cost = reference[1].cost_usd
        ref_msg, ref_backend = reference[0].completion.message, reference[0].backend
        verdict, judge_name, judged_cost = await self._verdict(job, req, job.message, ref_msg, job.backend,
                                                               ref_backend)
        cost += judged_cost
        self.stats.cost_usd += cost
        await self.caps.spend(job.tenant, cost)
        if verdict is None:
            self.stats.unjudged += 1
            return
        assert self.store is not None
        await self.store.add(Judgement(job.request_id, job.tenant, job.tier, job.classifier, job.score,
                                       job.backend.name, self.cfg.reference_tier, ref_backend.name, verdict,
                                       judge_name, round(cost, 10), logged_prompt(job.request)))
        self.stats.judged += 1

    async def _verdict(self, job: Any, req: ChatCompletionRequest, served: Any, other: Any, served_backend: Backend,
                       other_backend: Backend) -> tuple[Verdict | None, str, float]:
        """A rule's verdict where the request makes one checkable, else the judge model's (and what its call
        cost); ("", None) when neither can say."""
        ruled = rule_verdict(req, served, other, served_backend, other_backend)
        if ruled is not None:
            return ruled[0], ruled[1], 0.0
        if self.judge is None:
            return None, "", 0.0
        started = time.perf_counter()
        verdict, answered = await self.judge.judge(job.request_id, req, served, other)
        return verdict, self.judge.name, self._logged(job, "judge", req, answered, started).cost_usd

    async def process_cache(self, job: CacheJob) -> None:
        """Judge the cached answer against a fresh one to the new prompt; store the check."""
        chain = self.chains.get(job.tier or "", ()) if job.fresh is None else ()
        cached_backend = self.settings.backend(job.cached_backend)
        if cached_backend is None or (job.fresh is None and not chain):
            self.stats.unjudged += 1  # a tier no longer configured: nothing to compare with
            return
        if not await self._may_spend(job.tenant, chain[0] if chain else None):
            return
        req = msgspec.structs.replace(job.request, stream=False, stream_options=None)
        cost = 0.0
        if job.fresh is None:
            raw = {k: v for k, v in job.raw.items() if k not in ("stream", "stream_options")}
            answered, priced = await self._call(job, "cache_fresh", UpstreamCall(req, raw), chain)
            cost, fresh, fresh_backend = priced.cost_usd, answered.completion.message, answered.backend
        else:
            fresh, fresh_backend = job.fresh, self.settings.backend(job.fresh_backend or "") or cached_backend
        verdict, judge_name, judged_cost = await self._verdict(job, req, job.cached, fresh, cached_backend,
                                                               fresh_backend)
        cost += judged_cost
        self.stats.cost_usd += cost
        await self.caps.spend(job.tenant, cost)
        if not judge_name:  # neither a rule nor a judge model could say
            self.stats.unjudged += 1
            return
        right = check_verdict(verdict)
        assert self.checks is not None
        await self.checks.add(CacheCheck(job.request_id, job.tenant, job.kind, job.similarity, job.threshold,
                                         job.guard_score, right, judge_name, round(cost, 10)))
        self.stats.cache_checked += 1
        self.stats.cache_wrong += right == "wrong"
        self.stats.cache_unsure += right == "unsure"
        if self.refresher is not None and self.stats.cache_checked % REFRESH_EVERY == 0:
            await self.refresher.refresh()  # new evidence: no need to wait for the next tick

    async def _call(self, job: Job | CacheJob, role: str, call: UpstreamCall,
                    chain: tuple[Backend, ...]) -> tuple[Answered, Priced]:
        started = time.perf_counter()
        answered = await self.caller.complete(call, chain)
        return answered, self._logged(job, role, call.request, answered, started)

    def _logged(self, job: Job | CacheJob, role: str, req: ChatCompletionRequest, answered: Answered,
                started: float) -> Priced:
        """One learning call's request-log row (endpoint "learning"), priced; its price."""
        c, b = answered.completion, answered.backend
        priced = price(fill_usage(c.usage, req, c.message.content or "", b), b, b)
        if self.log is not None:
            u = priced.usage
            self.log.record(LogRow(
                request_id=new_request_id(), ts=dt.datetime.now(dt.UTC), endpoint="learning", cache_status="bypass",
                latency_ms=round((time.perf_counter() - started) * 1000, 3), http_status=200,
                requested_model="learning:" + role,
                tier={"reference": self.cfg.reference_tier, "cache_fresh": job.tier}.get(role),
                backend=b.name, provider=b.provider, attempts=len(answered.attempts) + 1,
                prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens, cost_usd=priced.cost_usd,
                baseline_cost_usd=priced.cost_usd, usage_estimated=u.estimated, client_request_id=job.request_id))
        return priced


def build_learner(settings: Settings, caller: ChainCaller, chains: dict[str, tuple[Backend, ...]],
                  redis_client: Any | None, pool: Any | None, request_log: RequestLog | None) -> Learner | None:
    """The learner these settings ask for, or None when learning is off (sample_rate 0)."""
    cfg = settings.learning
    if cfg.sample_rate <= 0:
        return None
    judge: ModelJudge | None = None
    if cfg.judge is not None:
        backend = settings.backend(cfg.judge)
        if backend is None:
            log.warning("learning.judge %r is no backend: only rule-checkable requests are judged", cfg.judge)
        else:
            judge = ModelJudge(backend, caller)
    caps = SpendCaps(cfg, redis_client, settings.limits.redis_timeout_s)
    store = JudgementStore(pool) if pool is not None else None
    learner = Learner(settings, caller, chains[cfg.reference_tier], caps, store, request_log, judge)
    learner.chains = chains
    return learner
