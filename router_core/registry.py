"""Explicit name -> entry registry of classifiers: how to build each, its typed options, what it needs.

Options come from one place, `routing.classifier_options.<name>` (a table per classifier), converted into
the entry's options Struct at start-up (`configure`); a bad one is an `OptionError` naming the setting.
The first versions' flat settings (`routing.llm_model`, `routing.difficulty_head`, ...) are the old
spelling of some options (`Entry.legacy`), used where the new spelling does not give them.

Adding a classifier: its module (a `Classifier` subclass) and, here, its options Struct and its entry;
its tests; one row in docs/configuration.md (docs/architecture.md).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec

from router_core.classifiers.base import ENCODER, Classifier

if TYPE_CHECKING:
    from router_core.embedder import Embedder



class Context(msgspec.Struct, frozen=True):
    """What any classifier may read besides its own options: the pipeline's cut-offs and the encoder's
    device as configured (`auto` is resolved only where a classifier asks)."""

    cutoffs: tuple[float, float] = (0.35, 0.62)
    device: str = "auto"


class OptionError(ValueError):
    """A classifier's option is wrong (or the file it names): `setting` is where it was given."""

    def __init__(self, message: str, setting: str = "routing.classifiers", field: str | None = None) -> None:
        super().__init__(message)
        self.setting = setting
        self.field = field


class NoOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A classifier without options."""


class EmbeddingOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    head: str | None = None          # a head file (smr train --from-logs --write); None: the packaged head


class DifficultyOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    # static (CPU, <2 ms), minilm (the transformer encoder), auto: minilm where the encoder's device is a GPU
    embedding: Literal["auto", "static", "minilm"] = "auto"
    head: str | None = None          # None: the packaged head of that embedding


class TieredOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    head: str | None = None          # the difficulty head it ranks with (static embedding); None: packaged


class LLMOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    base_url: str = "http://127.0.0.1:11434"   # Ollama, or an OpenAI-compatible server where it ends in /v1
    model: str = "granite4:350m"
    timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 2.0
    api_key: str | None = None


class FixedOptions(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    score: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] = 0.5


def _none(options: Any, context: Context) -> frozenset[str]:
    return frozenset()


def _encoder(options: Any, context: Context) -> frozenset[str]:
    return frozenset({ENCODER})


class Entry(msgspec.Struct, frozen=True):
    """A classifier's registration: `build(options, context, encoder)`, its options Struct, what it needs
    given its options (the gateway loads the encoder only where one needs it), and the flat
    RoutingSettings fields that are the old spelling of its options (field -> option)."""

    build: Callable[[Any, Context, Embedder | None], Classifier]
    options: type[msgspec.Struct] = NoOptions
    needs: Callable[[Any, Context], frozenset[str]] = _none
    legacy: Mapping[str, str] = {}


def difficulty_embedding(requested: str, device: str) -> str:
    """What the `difficulty` classifier reads: `auto` is MiniLM (the transformer path) where the encoder
    runs on a GPU, the static embedding (all CPU, under 2 ms) elsewhere."""
    if requested != "auto":
        return requested
    return "minilm" if device.startswith("cuda") else "static"


def difficulty_reads(options: DifficultyOptions, context: Context) -> str:
    """The embedding the difficulty classifier reads, `auto` resolved against the encoder's device."""
    if options.embedding != "auto":
        return options.embedding
    from router_core.embedder import pick_device

    return difficulty_embedding("auto", pick_device(context.device))


def _heuristic(options: NoOptions, context: Context, encoder: Embedder | None) -> Classifier:
    from router_core.classifiers.heuristic import HeuristicClassifier

    return HeuristicClassifier()


def _head(load: Callable[[], Any]) -> Any:
    try:
        return load()
    except (OSError, ValueError) as exc:  # missing, unreadable, not a head, or another embedding's
        raise OptionError(str(exc), field="head") from None


def _embedding(options: EmbeddingOptions, context: Context, encoder: Embedder | None) -> Classifier:
    from pathlib import Path

    from router_core.classifiers.embedding import HEAD_PATH, EmbeddingClassifier, load_head
    from router_core.embedder import Embedder

    head = _head(lambda: load_head(Path(options.head) if options.head else HEAD_PATH))
    return EmbeddingClassifier(encoder or Embedder(), head)


def _difficulty(options: DifficultyOptions, context: Context, encoder: Embedder | None) -> Classifier:
    from pathlib import Path

    from router_core.classifiers.difficulty import DifficultyClassifier, EncoderDifficultyClassifier
    from router_core.difficulty import HEAD_PATHS, load_head

    kind = difficulty_reads(options, context)
    head = _head(lambda: load_head(Path(options.head) if options.head else HEAD_PATHS[kind]))
    if kind == "static":
        return _head(lambda: DifficultyClassifier(head))   # the classifier checks what the head was trained on
    if encoder is None:
        raise OptionError("the difficulty classifier on minilm needs the shared encoder", field="embedding")
    return _head(lambda: EncoderDifficultyClassifier(encoder, head))


def _difficulty_needs(options: DifficultyOptions, context: Context) -> frozenset[str]:
    return frozenset({ENCODER}) if difficulty_reads(options, context) == "minilm" else frozenset()


def _tiered(options: TieredOptions, context: Context, encoder: Embedder | None) -> Classifier:
    from pathlib import Path

    from router_core.classifiers.difficulty import DifficultyClassifier
    from router_core.classifiers.tiered import TieredClassifier
    from router_core.difficulty import HEAD_PATHS, load_head

    head = _head(lambda: load_head(Path(options.head) if options.head else HEAD_PATHS["static"]))
    return TieredClassifier(_head(lambda: DifficultyClassifier(head)), context.cutoffs)


def _llm(options: LLMOptions, context: Context, encoder: Embedder | None) -> Classifier:
    from router_core.classifiers.ollama_llm import OllamaLLMClassifier, OpenAICompatLLMClassifier

    args = (options.base_url, options.model, context.cutoffs, options.timeout_s)
    if options.base_url.rstrip("/").endswith("/v1"):
        return OpenAICompatLLMClassifier(*args, api_key=options.api_key)
    return OllamaLLMClassifier(*args)


def _fixed(options: FixedOptions, context: Context, encoder: Embedder | None) -> Classifier:
    from router_core.classifiers.fixed import FixedClassifier

    return FixedClassifier(options.score)


CLASSIFIERS: dict[str, Entry] = {
    "heuristic": Entry(_heuristic),
    "embedding": Entry(_embedding, EmbeddingOptions, _encoder, {"embedding_head": "head"}),
    "difficulty": Entry(_difficulty, DifficultyOptions, _difficulty_needs,
                        {"difficulty_embedding": "embedding", "difficulty_head": "head"}),
    "tiered": Entry(_tiered, TieredOptions, legacy={"difficulty_head": "head"}),
    "llm": Entry(_llm, LLMOptions, legacy={"llm_base_url": "base_url", "llm_model": "model",
                                           "llm_timeout_s": "timeout_s"}),
    "fixed": Entry(_fixed, FixedOptions),
}


def entry(name: str) -> Entry:
    try:
        return CLASSIFIERS[name]
    except KeyError:
        raise OptionError(f"unknown classifier {name!r}; known: {', '.join(sorted(CLASSIFIERS))}") from None


def setting(name: str, field: str | None, given: Mapping[str, Any] | None = None) -> str:
    """Where an option of `name` was set: its new spelling, or the flat field it came from."""
    if field is None:
        return f"routing.classifier_options.{name}"
    if field not in (given or {}):
        old = next((flat for flat, f in entry(name).legacy.items() if f == field), None)
        if old is not None:
            return f"routing.{old}"
    return f"routing.classifier_options.{name}.{field}"


def options_for(name: str, given: Mapping[str, Any] | None = None, flat: Mapping[str, Any] | None = None) -> Any:
    """The typed options of classifier `name`: `given` (its `routing.classifier_options` table) over the
    old flat spelling in `flat` (the routing settings)."""
    e, given = entry(name), dict(given or {})
    raw = {f: flat[old] for old, f in e.legacy.items() if flat and flat.get(old) is not None}
    try:
        return msgspec.convert({**raw, **given}, e.options)
    except msgspec.ValidationError as exc:
        message, _, at = str(exc).partition(" - at `$.")
        field = at.rstrip("`").split(".")[0] or None
        if field is None and "unknown field" in message:
            field = message.rsplit("`", 2)[-2]
        raise OptionError(message.replace("`", ""), setting(name, field, given), field) from None


def configure(names: Iterable[str], given: Mapping[str, Mapping[str, Any]],
              flat: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Each configured classifier's typed options; every table in `given` is checked, configured or not."""
    for name in given:
        if name not in CLASSIFIERS:
            raise OptionError(f"unknown classifier {name!r}; known: {', '.join(sorted(CLASSIFIERS))}",
                              setting(name, None))
    out = {name: options_for(name, given.get(name), flat) for name in names}
    for name in given:
        options_for(name, given[name], flat)
    return out


def needs(name: str, options: Any, context: Context) -> frozenset[str]:
    """What classifier `name` with these options needs, without building it."""
    return entry(name).needs(options, context)


def build(name: str, options: Any = None, context: Context | None = None,
          encoder: Embedder | None = None) -> Classifier:
    """Classifier `name` from its typed options (its defaults where None)."""
    e = entry(name)
    return e.build(options if options is not None else e.options(), context or Context(), encoder)


def build_classifier(name: str, flat: Mapping[str, Any] | None = None) -> Classifier:
    """Classifier `name` from the routing settings' flat spelling (`difficulty_head`, `difficulty_embedding`,
    `cutoffs`, and `embedder`: the shared encoder), as offline tools of the first versions call it."""
    flat = flat or {}
    low, high = flat.get("cutoffs", (0.35, 0.62))
    context = Context((float(low), float(high)), str(flat.get("device", "auto")))
    return build(name, options_for(name, None, flat), context, flat.get("embedder"))
