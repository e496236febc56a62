"""The cost of one LLM call at its own date: custom rules, Azure deployments, genai-prices.

Every row is priced once, when it is written (``record_usage``), and again only by
``flask reprice``. Sources, in order: the first custom rule of
``LLM_TRACKER_CUSTOM_PRICES`` that matches (latest ``start_date`` not after the call),
then genai-prices' bundled data (its pinned version; never fetched from the network).
A model neither knows is *unpriced*: every cost column NULL, never a silent 0.

Token conventions (SPEC §5): ``prompt_tokens`` includes cached and cache-write tokens,
``completion_tokens`` includes reasoning tokens. Each part is priced at its own rate
once: cached input at the cache-read rate, cache writes at the cache-write rate, the
rest of the prompt at the input rate, all output (reasoning included) at the output rate
unless the model has a reasoning rate of its own. Anthropic's 1-hour cache writes are
part of ``cache_write_tokens``; their count is in the row's
``metadata["cache_write_1h_tokens"]`` (no column of their own) and they are priced at
the model's 1-hour write rate where genai-prices has one (custom rules have a single
cache-write rate).
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, NamedTuple

import genai_prices
from genai_prices.data_snapshot import DataSnapshot
from genai_prices.data_units import unit_data
from genai_prices.types import ModelInfo, ModelPrice, Provider, TieredPrices, Usage
from genai_prices.units import UnitRegistry
from genai_prices.validation import validate_priced_units

from .database import MONEY_QUANTUM, current_flask_app
from .models import MONEY_COLUMNS
from .params import parse_when

if TYPE_CHECKING:
    from flask import Flask

logger = logging.getLogger("llm_tracker")

GENAI_PRICES_VERSION: str = genai_prices.__version__
PRICE_COLUMNS = (*MONEY_COLUMNS, "price_source")
CACHE_HIT_SOURCE = "llm-cache hit"
_MTOK = Decimal(1_000_000)
_ZERO = Decimal(0)
_ZERO_MONEY = _ZERO.quantize(MONEY_QUANTUM)
_CACHE_HIT: dict[str, Any] = {
    "cost_usd": _ZERO_MONEY,
    "input_cost_usd": _ZERO_MONEY,
    "output_cost_usd": _ZERO_MONEY,
    "cache_savings_usd": _ZERO_MONEY,
    "price_source": CACHE_HIT_SOURCE,
}

# LangChain's ls_provider (and this product's LLM_PROVIDER names) -> genai-prices provider
# id. Anything else is left to genai-prices to recognise from the model name.
PROVIDER_IDS: dict[str, str] = {
    "openai": "openai",
    "azure": "azure",
    "azure_openai": "azure",
    "google_genai": "google",
    "google_vertexai": "google",
    "gemini": "google",
    "google": "google",
    "anthropic": "anthropic",
    "amazon_bedrock": "aws",
    "bedrock": "aws",
    "groq": "groq",
    "mistral": "mistral",
    "mistralai": "mistral",
    "deepseek": "deepseek",
    "xai": "x-ai",
    "fireworks": "fireworks",
    "together": "together",
    "perplexity": "perplexity",
    "cohere": "cohere",
    "openrouter": "openrouter",
}


def genai_provider_id(provider: str | None) -> str | None:
    """The genai-prices provider id for a row's provider, None to match by model name."""
    if not provider:
        return None
    return PROVIDER_IDS.get(provider.strip().lower())


def unpriced() -> dict[str, Any]:
    """The price columns of a row no source can price: all NULL."""
    return dict.fromkeys(PRICE_COLUMNS)


def format_money(value: Decimal | None) -> str | None:
    """Money for JSON: an exact decimal string, at least 9 places (``"0.000151500"``)."""
    if value is None:
        return None
    whole, _, frac = f"{value.quantize(MONEY_QUANTUM):f}".partition(".")
    return f"{whole}.{frac.rstrip('0').ljust(9, '0')}"


# --- genai-prices: bundled data only, looked up once per (provider, model) ------------


@functools.cache
def _snapshot() -> DataSnapshot:
    # Our own snapshot of the bundled data rather than genai_prices.calc_price's global
    # one: an UpdatePrices started anywhere in the process would swap that for data
    # fetched from GitHub, and rows must be priced by the pinned version they name.
    from genai_prices.data import providers

    return DataSnapshot(providers=providers, from_auto_update=False)


@functools.lru_cache(maxsize=8192)
def _lookup(provider_id: str | None, model: str) -> tuple[Provider, ModelInfo] | None:
    # Misses are cached too: genai-prices scans every provider for an unknown model.
    try:
        return _snapshot().find_provider_model(model, None, provider_id, None)
    except LookupError:
        return None


# Price keys priced below without genai-prices' generic (and ~50 µs) unit decomposition.
# Any other key is a unit this product never reports (audio, images, searches...): its
# count is 0, so it adds nothing and takes nothing from the units it refines.
_FAST, _FALLBACK, _INVALID = "fast", "fallback", "invalid"


@functools.cache
def _unit_registry() -> UnitRegistry:
    return UnitRegistry(unit_data)


@functools.lru_cache(maxsize=1024)
def _price_keys_kind(keys: frozenset[str]) -> str:
    registry = _unit_registry()
    units = []
    for key in keys:
        if key.startswith("_"):
            continue
        try:
            units.append(registry.unit_for_price_key(key))
        except KeyError:
            return _FALLBACK  # a key genai-prices itself warns about: let it decide
    try:
        validate_priced_units(units, registry)
    except ValueError:
        return _INVALID  # genai-prices refuses to price with these prices
    return _FAST


def _rate(price: Decimal | TieredPrices, prompt_tokens: int) -> Decimal:
    if isinstance(price, TieredPrices):
        # Threshold tiers as genai-prices applies them: past a tier's start (in prompt
        # tokens) every token of the call is priced at that tier.
        for tier in reversed(price.tiers):
            if prompt_tokens > tier.start:
                return tier.price
        return price.base
    return price


def _part(price: Decimal | TieredPrices | None, count: int, prompt_tokens: int) -> Decimal:
    if price is None or not count:
        return _ZERO
    return _rate(price, prompt_tokens) * count / _MTOK


class TokenSplit(NamedTuple):
    """The token counts of a row, as priced."""

    prompt_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    completion_tokens: int
    reasoning_tokens: int
    cache_write_1h_tokens: int = 0  # of cache_write_tokens

    def genai_usage(self, *, cached: bool = True) -> Usage:
        """The genai-prices ``Usage`` (``cached=False``: cached input as uncached)."""
        return Usage(
            input_tokens=self.prompt_tokens,
            cache_read_tokens=self.cached_tokens if cached else 0,
            cache_write_tokens=self.cache_write_tokens,
            cache_write_1h_tokens=self.cache_write_1h_tokens,
            output_tokens=self.completion_tokens,
            output_reasoning_tokens=self.reasoning_tokens,
        )


def price_with_model_price(
    mp: ModelPrice, t: TokenSplit
) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """(total, input, output, cache savings) of ``t`` at ``mp``, exactly as genai-prices."""
    d = mp.__dict__
    kind = _price_keys_kind(frozenset(k for k, v in d.items() if v is not None))
    if kind == _INVALID:
        raise ValueError(f"genai-prices cannot price with {mp!r}")
    if kind == _FALLBACK:
        calc = mp.calc_price(t.genai_usage())
        uncached = mp.calc_price(t.genai_usage(cached=False))["total_price"]
        return (
            calc["total_price"],
            calc["input_price"],
            calc["output_price"],
            uncached - calc["total_price"],
        )
    inp, cache_read, cache_write = (
        d.get("input_mtok"),
        d.get("cache_read_mtok"),
        d.get("cache_write_mtok"),
    )
    write_1h = d.get("cache_write_1h_mtok")
    out, reasoning, requests = (
        d.get("output_mtok"),
        d.get("output_reasoning_mtok"),
        d.get("requests_kcount"),
    )
    prompt = t.prompt_tokens
    # Leaf counts: a unit priced on its own is taken out of the unit it refines (1 h
    # writes refine cache writes, which refine input).
    written_1h = t.cache_write_1h_tokens if write_1h is not None else 0
    write_leaf = t.cache_write_tokens - written_1h
    input_leaf = (
        prompt
        - (t.cached_tokens if cache_read is not None else 0)
        - (t.cache_write_tokens if cache_write is not None else written_1h)
    )
    output_leaf = t.completion_tokens - (t.reasoning_tokens if reasoning is not None else 0)
    if input_leaf < 0 or output_leaf < 0 or write_leaf < 0:
        raise ValueError(f"token counts do not add up: {t}")
    input_cost = (
        _part(inp, input_leaf, prompt)
        + _part(cache_read, t.cached_tokens, prompt)
        + _part(cache_write, write_leaf, prompt)
        + _part(write_1h, written_1h, prompt)
    )
    output_cost = _part(out, output_leaf, prompt) + _part(reasoning, t.reasoning_tokens, prompt)
    total = input_cost + output_cost
    if requests is not None:
        total += requests / 1000
    savings = _ZERO
    if cache_read is not None and inp is not None and t.cached_tokens:
        savings = (_rate(inp, prompt) - _rate(cache_read, prompt)) * t.cached_tokens / _MTOK
    return total, input_cost, output_cost, savings


# --- custom rules ---------------------------------------------------------------------

_RULE_KEYS = (
    "pattern",
    "provider",
    "start_date",
    "input_per_mtok",
    "cached_input_per_mtok",
    "cache_write_per_mtok",
    "output_per_mtok",
)


@dataclass(frozen=True, slots=True)
class PriceRule:
    """One validated entry of ``LLM_TRACKER_CUSTOM_PRICES``."""

    index: int
    pattern: str
    regex: re.Pattern[str]
    provider: str | None
    start: datetime | None
    input_per_mtok: Decimal
    cached_input_per_mtok: Decimal
    cache_write_per_mtok: Decimal
    output_per_mtok: Decimal

    @property
    def source(self) -> str:
        """``custom: <pattern>``, with the start date of a dated rule."""
        if self.start is None:
            return f"custom: {self.pattern}"
        return f"custom: {self.pattern} from {self.start.date().isoformat()}"

    def price(self, t: TokenSplit) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        """(total, input, output, cache savings) of ``t`` at this rule's prices."""
        rest = t.prompt_tokens - t.cached_tokens - t.cache_write_tokens
        if rest < 0:
            raise ValueError(f"token counts do not add up: {t}")
        input_cost = (
            self.input_per_mtok * rest
            + self.cached_input_per_mtok * t.cached_tokens
            + self.cache_write_per_mtok * t.cache_write_tokens
        ) / _MTOK
        output_cost = self.output_per_mtok * t.completion_tokens / _MTOK
        savings = (self.input_per_mtok - self.cached_input_per_mtok) * t.cached_tokens / _MTOK
        return input_cost + output_cost, input_cost, output_cost, savings


def _rule_error(index: int, pattern: Any, message: str) -> ValueError:
    name = f"LLM_TRACKER_CUSTOM_PRICES[{index}]"
    if isinstance(pattern, str):
        name += f" (pattern {pattern!r})"
    return ValueError(f"{name}: {message}")


def _rule_price(index: int, pattern: Any, field: str, value: Any) -> Decimal:
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, float):
            value = repr(value)  # 0.1 means "0.1", not its binary expansion
        price = (
            value
            if isinstance(value, Decimal)
            else Decimal(value.strip() if isinstance(value, str) else value)
        )
    except (TypeError, ValueError, InvalidOperation):
        raise _rule_error(
            index,
            pattern,
            f"{field} must be a price in USD per million "
            f"tokens (a decimal string or a number), got {value!r}",
        ) from None
    if not price.is_finite() or price < 0:
        raise _rule_error(index, pattern, f"{field} must be a finite price >= 0, got {value!r}")
    return price


def _rule_start(index: int, pattern: Any, value: Any) -> datetime | None:
    if value is None:
        return None
    try:
        start = parse_when(value, UTC, name="start_date")
    except ValueError:
        start = None
    if start is None:  # blank, unparseable or not a date at all
        raise _rule_error(
            index,
            pattern,
            f"start_date must be a date (YYYY-MM-DD) or an ISO datetime, got {value!r}",
        )
    return start


def parse_rule(index: int, raw: Any) -> PriceRule:
    """Validate one custom price rule; ``ValueError`` names the rule and the bad field."""
    if not isinstance(raw, Mapping):
        raise _rule_error(index, None, f"a rule must be a dict, got {raw!r}")
    pattern = raw.get("pattern")
    unknown = sorted(set(raw) - set(_RULE_KEYS))
    if unknown:
        raise _rule_error(
            index,
            pattern,
            f"unknown field(s) {', '.join(map(str, unknown))}; known: {', '.join(_RULE_KEYS)}",
        )
    if not isinstance(pattern, str) or not pattern:
        raise _rule_error(
            index, pattern, f"pattern must be a non-empty regex string, got {pattern!r}"
        )
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise _rule_error(index, pattern, f"pattern is not a valid regex: {exc}") from None
    provider = raw.get("provider")
    if provider is not None and (not isinstance(provider, str) or not provider.strip()):
        raise _rule_error(
            index, pattern, f"provider must be a provider name or None, got {provider!r}"
        )
    for field in ("input_per_mtok", "output_per_mtok"):
        if raw.get(field) is None:
            raise _rule_error(index, pattern, f"{field} is required")
    input_price = _rule_price(index, pattern, "input_per_mtok", raw["input_per_mtok"])
    optional = {
        field: input_price
        if raw.get(field) is None
        else _rule_price(index, pattern, field, raw[field])
        for field in ("cached_input_per_mtok", "cache_write_per_mtok")
    }
    return PriceRule(
        index=index,
        pattern=pattern,
        regex=regex,
        provider=_provider_key(provider),
        start=_rule_start(index, pattern, raw.get("start_date")),
        input_per_mtok=input_price,
        cached_input_per_mtok=optional["cached_input_per_mtok"],
        cache_write_per_mtok=optional["cache_write_per_mtok"],
        output_per_mtok=_rule_price(index, pattern, "output_per_mtok", raw["output_per_mtok"]),
    )


def parse_rules(raw: Any) -> tuple[PriceRule, ...]:
    """Validate ``LLM_TRACKER_CUSTOM_PRICES`` (a list of rule dicts, or None)."""
    if raw is None:
        return ()
    if isinstance(raw, str | bytes | Mapping) or not hasattr(raw, "__iter__"):
        raise ValueError(f"LLM_TRACKER_CUSTOM_PRICES must be a list of rules, got {raw!r}")
    return tuple(parse_rule(i, item) for i, item in enumerate(raw))


def parse_deployments(raw: Any) -> dict[str, str]:
    """Validate ``LLM_TRACKER_AZURE_DEPLOYMENTS`` (deployment name -> base model)."""
    if raw is None:
        return {}
    if not isinstance(raw, Mapping) or not all(
        isinstance(k, str) and k and isinstance(v, str) and v for k, v in raw.items()
    ):
        raise ValueError(
            "LLM_TRACKER_AZURE_DEPLOYMENTS must map deployment names to model "
            f"names (strings), got {raw!r}"
        )
    return dict(raw)


def _provider_key(provider: str | None) -> str | None:
    # Rules name providers as users know them ("azure_openai", "gemini"): compare the
    # genai-prices id where there is one.
    if not provider:
        return None
    name = provider.strip().lower()
    return PROVIDER_IDS.get(name, name)


# --- the pricer -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Resolved:
    """What prices a (provider, model, deployment): matching rules, then bundled data."""

    rules: tuple[PriceRule, ...]  # latest start_date first
    provider: Provider | None
    model: ModelInfo | None
    own_model: bool  # the provider's own model (service-tier variants apply), not a fallback
    source: str | None


class Pricer:
    """Prices rows with an app's custom rules and Azure deployment map, then genai-prices."""

    def __init__(self, custom_prices: Any = None, azure_deployments: Any = None) -> None:
        self.rules = parse_rules(custom_prices)
        self.deployments = parse_deployments(azure_deployments)
        # (provider, model, deployment) -> _Resolved: regexes and genai-prices' model
        # matching run once per distinct model, not once per call.
        self._resolve = functools.lru_cache(maxsize=8192)(self._resolve_uncached)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Pricer:
        """A pricer for ``LLM_TRACKER_CUSTOM_PRICES`` / ``LLM_TRACKER_AZURE_DEPLOYMENTS``."""
        return cls(
            config.get("LLM_TRACKER_CUSTOM_PRICES"), config.get("LLM_TRACKER_AZURE_DEPLOYMENTS")
        )

    def _resolve_uncached(
        self, provider: str | None, model: str, deployment: str | None
    ) -> _Resolved:
        pid = genai_provider_id(provider)
        names = [model]  # what rule patterns are matched against
        if deployment and deployment != model and pid in (None, "azure"):
            names.append(deployment)
        lookups: list[tuple[str, str | None]] = [(model, None)]
        if self.deployments and pid in (None, "azure"):
            if model in self.deployments:
                # The row names the deployment itself (no served model was reported).
                names.append(self.deployments[model])
                lookups = [(self.deployments[model], model)]
            elif deployment and deployment in self.deployments:
                names.append(self.deployments[deployment])
                lookups.append((self.deployments[deployment], deployment))
        pkey = _provider_key(provider)
        rules = [
            r
            for r in self.rules
            if (r.provider is None or r.provider == pkey)
            and any(r.regex.fullmatch(name) for name in names)
        ]
        # Stable: among rules with the same start_date the one listed first wins.
        rules.sort(key=lambda r: r.start or datetime.min.replace(tzinfo=UTC), reverse=True)
        for name, via in lookups:
            found = _lookup(pid, name)
            if found is not None:
                gp, gm = found
                source = f"genai-prices {GENAI_PRICES_VERSION}: {gp.id}/{gm.id}"
                if via is not None:
                    source += f" (deployment {via})"
                return _Resolved(tuple(rules), gp, gm, any(m is gm for m in gp.models), source)
        return _Resolved(tuple(rules), None, None, False, None)

    def knows(self, provider: str | None, model: str, deployment: str | None = None) -> bool:
        """True when a rule or the bundled data has a price for this model (at some date)."""
        resolved = self._resolve(provider, model, deployment)
        return bool(resolved.rules) or resolved.model is not None

    def price(self, row: Mapping[str, Any]) -> dict[str, Any]:
        """The price columns for a row's values (``record_usage``'s, or a stored row's)."""
        meta = row.get("metadata") or {}
        if meta.get("llm_cache_hit") is True:
            # LangChain's cache answered: no provider call, nothing to pay.
            return dict(_CACHE_HIT)
        resolved = self._resolve(row.get("provider"), row["model"], row.get("deployment"))
        created_at: datetime = row["created_at"]
        written_1h = meta.get("cache_write_1h_tokens")
        tokens = TokenSplit(
            row["prompt_tokens"],
            row["cached_tokens"],
            row["cache_write_tokens"],
            row["completion_tokens"],
            row["reasoning_tokens"],
            written_1h if type(written_1h) is int and written_1h > 0 else 0,
        )
        try:
            for rule in resolved.rules:
                if rule.start is None or created_at >= rule.start:
                    return _columns(rule.price(tokens), rule.source)
            if resolved.model is not None:
                tier = meta.get("service_tier")
                # genai-prices applies service-tier variants to a provider's own models only.
                context = (
                    {"service_tier": tier}
                    if resolved.own_model and isinstance(tier, str) and tier
                    else None
                )
                model_price = resolved.model.get_prices(created_at, context)
                return _columns(price_with_model_price(model_price, tokens), resolved.source)
        except Exception:  # a row that can't be priced is unpriced, never a failed write
            logger.warning(
                "llm_tracker: could not price %s (%s)",
                row["model"],
                row.get("provider"),
                exc_info=True,
            )
        return unpriced()


def _columns(
    parts: tuple[Decimal, Decimal, Decimal, Decimal], source: str | None
) -> dict[str, Any]:
    total, input_cost, output_cost, savings = parts
    # Rounded half-even to 1e-12 USD, the column's scale: exact for every price with up
    # to 6 decimal places per million tokens.
    return {
        "cost_usd": total.quantize(MONEY_QUANTUM),
        "input_cost_usd": input_cost.quantize(MONEY_QUANTUM),
        "output_cost_usd": output_cost.quantize(MONEY_QUANTUM),
        "cache_savings_usd": savings.quantize(MONEY_QUANTUM),
        "price_source": source[:200] if source else source,  # the column's length
    }


def get_pricer(app: Flask | None = None) -> Pricer:
    """The pricer of ``app`` (default: the current app), built from its config."""
    if app is None:
        app = current_flask_app()
    pricer = app.extensions.get("llm_tracker_pricer")
    if pricer is None:
        pricer = app.extensions["llm_tracker_pricer"] = Pricer.from_config(app.config)
    return pricer


def warm_up() -> None:
    """Load genai-prices' bundled data now rather than on the first recorded call."""
    _snapshot()
    _lookup("openai", "gpt-4o-mini")
