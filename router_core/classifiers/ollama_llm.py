"""The `llm` classifier: a small model on Ollama (Granite 4.0 Nano by default) names the tier.

The answer must be exactly SIMPLE, MEDIUM or COMPLEX (case and a final full stop aside); anything
else, an error or a timeout raises, and the pipeline falls through to the next classifier. A base URL
ending in `/v1` is taken for an OpenAI-compatible server (vLLM, llama.cpp, Ollama's own /v1, ...) and
asked through its chat completions API instead.
"""

from __future__ import annotations

import re

import httpx
import ollama

from router_core.classifiers.base import Classifier, ClassifierError, Scored
from router_core.types import Conversation

SYSTEM = """You route user requests to the cheapest model that can answer them well.
Answer with exactly one word:
SIMPLE - greetings, short factual lookups, translations, spelling, simple formatting or conversions.
MEDIUM - explanations, summaries, comparisons, short code, everyday reasoning.
COMPLEX - system design and architecture, debugging, optimisation, proofs, multi-step maths or logic,
long code, anything with many constraints.
Answer SIMPLE, MEDIUM or COMPLEX and nothing else."""
_ANSWER = re.compile(r"^\s*(SIMPLE|MEDIUM|COMPLEX)\s*\.?\s*$", re.IGNORECASE)


def parse(answer: str) -> str:
    m = _ANSWER.match(answer or "")
    if m is None:
        raise ClassifierError(f"unparseable answer: {answer[:60]!r}")
    return m.group(1).upper()


class OllamaLLMClassifier(Classifier):
    name = "llm"

    def __init__(self, base_url: str, model: str, cutoffs: tuple[float, float], timeout_s: float = 2.0) -> None:
        self.model = model
        self.client = ollama.AsyncClient(host=base_url, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)))
        lo, hi = cutoffs
        # The middle of each tier's score range, so the configured cut-offs give back the named tier.
        self.scores = {"SIMPLE": lo / 2, "MEDIUM": (lo + hi) / 2, "COMPLEX": (hi + 1) / 2}

    def _scored(self, answer: str) -> Scored:
        tier = parse(answer)
        return Scored(self.scores[tier], (f"{self.model} answered {tier}",))

    async def score(self, conv: Conversation) -> Scored:
        text = conv.last_user[:4000]
        try:
            messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": text}]
            r = await self.client.chat(model=self.model, stream=False, messages=messages,
                                       options={"temperature": 0, "num_predict": 4})
        except (ollama.ResponseError, httpx.HTTPError, ConnectionError) as exc:
            raise ClassifierError(f"ollama: {type(exc).__name__}: {exc}") from None
        return self._scored(r.message.content or "")

    async def aclose(self) -> None:
        await self.client._client.aclose()


class OpenAICompatLLMClassifier(OllamaLLMClassifier):
    """The same question to an OpenAI-compatible chat completions endpoint (`base_url` ends in /v1)."""

    def __init__(self, base_url: str, model: str, cutoffs: tuple[float, float], timeout_s: float = 2.0,
                 api_key: str | None = None) -> None:
        self.model = model
        self.url = base_url.rstrip("/") + "/chat/completions"
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.http = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 1.0)), headers=headers)
        lo, hi = cutoffs
        self.scores = {"SIMPLE": lo / 2, "MEDIUM": (lo + hi) / 2, "COMPLEX": (hi + 1) / 2}

    async def score(self, conv: Conversation) -> Scored:
        body = {"model": self.model, "temperature": 0, "max_tokens": 4, "stream": False,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": conv.last_user[:4000]}]}
        try:
            r = await self.http.post(self.url, json=body)
            r.raise_for_status()
            answer = r.json()["choices"][0]["message"]["content"]
        except (httpx.HTTPError, ValueError, KeyError, IndexError, TypeError) as exc:
            raise ClassifierError(f"openai-compatible: {type(exc).__name__}: {exc}") from None
        return self._scored(answer or "")

    async def aclose(self) -> None:
        await self.http.aclose()
