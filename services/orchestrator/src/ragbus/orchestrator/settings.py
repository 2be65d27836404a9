"""Orchestrator settings, env prefix `ORCHESTRATOR_` (vector store and embedder: see ragbus.vectors).

The cascade is configuration: tier 0 (extractive) on or off, tier 1 from the flat `ORCHESTRATOR_CHAT_*`
variables, and any further tiers (a bigger model at another endpoint) as a JSON list, e.g.

    ORCHESTRATOR_EXTRA_CHAT_TIERS='[{"base_url": "https://api.openai.com/v1", "model": "gpt-4o-mini",
        "api_key": "sk-...", "price_prompt_per_1k": 0.00015, "price_completion_per_1k": 0.0006}]'
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from ragbus.common.settings import ServiceSettings
from ragbus.orchestrator.cascade import CascadePolicy, FailurePolicy
from ragbus.orchestrator.conversation import MemoryPolicy
from ragbus.orchestrator.expansion import ExpansionMode, ExpansionPolicy
from ragbus.orchestrator.prompts import PROMPTS
from ragbus.orchestrator.retrieval import RetrievalPolicy
from ragbus.orchestrator.routing import load as load_router
from ragbus.orchestrator.semantic_cache import CachePolicy
from ragbus.orchestrator.untrusted import FlaggedSources
from ragbus.vectors.fusion import DEFAULT_RRF_K, DEFAULT_WEIGHT, FusionMethod
from ragbus.vectors.settings import EmbedderSettings, VectorStoreSettings

# The instructions, worked examples and question around the sources, in tokens (rag-answer@v3: ~450).
_PROMPT_OVERHEAD_TOKENS = 600
# v3 puts every source in a delimited data block (v1 and v2 stay selectable, e.g. to compare).
DEFAULT_PROMPT = "rag-answer@v3"


@dataclass(frozen=True, slots=True)
class AnswerPolicy:
    """How a question is answered: what the use case takes instead of the settings."""

    top_k: int
    min_score: float
    cascade: CascadePolicy
    retrieval: RetrievalPolicy = field(default_factory=RetrievalPolicy)
    expansion: ExpansionPolicy = field(default_factory=ExpansionPolicy)
    cache: CachePolicy = field(default_factory=CachePolicy)
    memory: MemoryPolicy = field(default_factory=MemoryPolicy)

    @property
    def flagged_sources(self) -> FlaggedSources:
        return self.cascade.flagged_sources


def _known_prompt(value: str) -> str:
    if value not in PROMPTS:
        raise ValueError(f"unknown prompt {value!r}; known: {', '.join(sorted(PROMPTS))}")
    return value


def _known_router(value: str | None) -> str | None:
    if value:
        load_router(value)  # a missing or bad file stops the service at start
    return value or None


class ChatTierSettings(BaseModel):
    """One chat tier: a model at an OpenAI-compatible endpoint, and how the cascade uses it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str
    model: str
    name: str | None = Field(default=None, description="recorded in cascade attempts; default: `model`")
    api_key: SecretStr | None = None
    provider: str = Field(
        default="openai", description="`gen_ai.provider.name` on its spans (openai, llama.cpp, vllm...)"
    )
    timeout_s: float = Field(default=60.0, gt=0)
    max_tokens: int = Field(default=256, ge=1)
    # 0: the same question over the same sources gives the same answer (reproducible, cacheable).
    temperature: float = Field(default=0.0, ge=0, le=2)
    price_prompt_per_1k: float = Field(default=0.0, ge=0, description="USD per 1,000 prompt tokens")
    price_completion_per_1k: float = Field(default=0.0, ge=0, description="USD per 1,000 completion tokens")
    prompt: str = Field(default=DEFAULT_PROMPT, description="prompt template `name@version`")
    # The sources' share of the prompt; ~4 characters a token, so 6,000 fit a 2k-token context with room
    # for the instructions and the answer.
    max_source_chars: int = Field(default=6000, ge=200)
    context_window: int | None = Field(
        default=None, ge=512, description="tokens the model reads; the sources are cut to fit it"
    )
    max_concurrency: int | None = Field(
        default=None, ge=1, description="calls at once from one orchestrator (the rest wait their turn)"
    )
    # Learned routing (ragbus.orchestrator.routing): called only when the router predicts its answer is
    # worth the call. None: called for every question the tiers below leave unanswered.
    router: str | None = Field(
        default=None, description="a router's JSON file, from bench/cascade.py --router-out"
    )
    min_benefit: float | None = Field(
        default=None, ge=0, le=1, description="the predicted benefit a call needs (None: the router's own)"
    )

    _prompt = field_validator("prompt")(_known_prompt)

    _router = field_validator("router")(_known_router)

    def source_chars(self) -> int:
        """The sources' budget in characters: `max_source_chars`, less if the context window is smaller
        (what the answer, the instructions and the examples take comes off; ~3.5 characters a token)."""
        if self.context_window is None:
            return self.max_source_chars
        room = self.context_window - self.max_tokens - _PROMPT_OVERHEAD_TOKENS
        return max(200, min(self.max_source_chars, int(room * 3.5)))


class OrchestratorSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="ORCHESTRATOR_", extra="ignore")

    # Questions answered at once, each from its own partitions of `queries.accepted`: a question waiting
    # for a model holds up only the questions keyed to its partition (issue 13: a tier-0 question
    # waited 165 s behind a tier-1 one). Model calls are capped apart (`chat_max_concurrency`).
    workers: int = Field(default=4, ge=1, le=64)

    # Retrieval
    top_k: int = Field(default=5, ge=1, le=50, description="chunks retrieved per question")
    # Hybrid retrieval (see ragbus.vectors.fusion): dense + BM25, fused. `dense` = embeddings only.
    fusion: FusionMethod = Field(default="weighted", description="dense | sparse | rrf | weighted")
    fusion_weight: float = Field(
        default=DEFAULT_WEIGHT, ge=0, le=1, description="weighted: the cosine's share (BM25 gets the rest)"
    )
    fusion_rrf_k: int = Field(default=DEFAULT_RRF_K, ge=1, description="rrf: the k of 1 / (k + rank)")
    fusion_candidates: int = Field(default=50, ge=1, le=1000, description="each leg's depth before fusion")
    # Query expansion through tier 1 (ragbus.orchestrator.expansion); measured in bench/retrieval.py.
    expansion: ExpansionMode = Field(
        default="off",
        description="off | multi-query (rewrites of the question) | hyde (a hypothetical answer)",
    )
    expansion_variants: int = Field(default=3, ge=1, le=8, description="multi-query: rewrites asked for")
    expansion_max_tokens: int = Field(default=160, ge=16, le=1024)
    expansion_timeout_s: float = Field(
        default=15.0, gt=0, description="past this the question is searched alone (expansion is optional)"
    )
    # Cosine similarity (MiniLM) under which a hit is noise rather than a source. Short questions
    # score low against long chunks: "What does the monitor store?" meets its answer at 0.2-0.3, while
    # unrelated passages sit under 0.1; 0.25 (tuned on SciFact's long claims) dropped such questions.
    min_score: float = Field(default=0.15, ge=-1, le=1)
    # Chunks ingest flagged as carrying instructions aimed at the model (indirect prompt injection).
    flagged_sources: FlaggedSources = Field(
        default="quote",
        description="`quote`: kept as untrusted sources, their instructions quoted and never quoted as an "
        "answer; `drop`: left out of prompts and citations; `keep`: used like any other source",
    )

    # The semantic cache (ragbus.orchestrator.semantic_cache): past answers of the tenant, served again to
    # the same question reworded, never across a negation, a number, a name, a scope or a changed document.
    cache: bool = Field(default=True, description="answer from and store in the semantic cache")
    cache_min_similarity: float = Field(default=0.9, ge=0, le=1, description="cosine of the two questions")
    cache_max_changed_words: int = Field(
        default=0, ge=0, description="content words that may differ between the two questions (0: none)"
    )
    cache_ttl_s: float = Field(default=86_400.0, gt=0, description="an entry older than this is not served")

    # Conversation memory (ragbus.orchestrator.conversation): a question with a `conversation_id` sees
    # the conversation's earlier turns; a follow-up is searched together with the question before it.
    memory: bool = Field(default=True, description="keep conversations' turns and use them")
    memory_max_turns: int = Field(default=6, ge=1, le=100, description="turns kept per conversation")
    memory_max_chars: int = Field(
        default=2000, ge=0, description="characters of earlier turns shown to a chat tier"
    )

    # Tier 0: extractive answers, no model.
    extractive: bool = True
    extractive_max_sentences: int = Field(default=3, ge=1, le=10)
    # Escalation thresholds: tier 0 is accepted only when both hold (and the question is a lookup).
    accept_min_score: float = Field(default=0.5, ge=-1, le=1, description="best hit's score at least")
    accept_min_coverage: float = Field(
        default=0.6, ge=0, le=1, description="share of question content words the quote contains"
    )
    # Chat tiers: the share of an answer's sentences its cited sources must support (0: not checked).
    accept_min_support: float = Field(
        default=0.75, ge=0, le=1, description="share of a chat answer's sentences its sources support"
    )

    # Tier 1: a chat model at an OpenAI-compatible endpoint (the local llama.cpp server by default).
    chat: bool = Field(default=True, description="false: no chat tiers at all (extractive only)")
    chat_base_url: str = "http://127.0.0.1:8080/v1"
    chat_model: str = "smollm2-135m-instruct"
    chat_api_key: SecretStr | None = None
    chat_provider: str = "llama.cpp"
    chat_timeout_s: float = Field(default=60.0, gt=0)
    chat_max_tokens: int = Field(default=256, ge=1)
    chat_temperature: float = Field(default=0.0, ge=0, le=2)
    chat_price_prompt_per_1k: float = Field(default=0.0, ge=0)
    chat_price_completion_per_1k: float = Field(default=0.0, ge=0)
    chat_prompt: str = DEFAULT_PROMPT
    chat_max_source_chars: int = Field(default=6000, ge=200)
    # The local server: 8,192 tokens of context shared by its 2 slots (ragbus.stack.model_server).
    chat_context_window: int | None = Field(default=4096, ge=512)
    chat_max_concurrency: int | None = Field(default=2, ge=1)
    chat_router: str | None = None
    chat_min_benefit: float | None = Field(default=None, ge=0, le=1)
    # Tiers 2, 3, ...: escalated to in order, after tier 1.
    extra_chat_tiers: list[ChatTierSettings] = Field(default_factory=list)
    # An unavailable chat tier (down, timing out, 5xx, rate limited): called again this many times with
    # backoff, then the cascade goes on without it and the answer says so (ragbus.orchestrator.cascade).
    chat_retries: int = Field(default=1, ge=0, le=5)
    chat_retry_backoff_s: float = Field(default=0.5, ge=0)
    chat_breaker_failures: int = Field(
        default=3, ge=1, description="requests in a row that found a tier down before it is skipped"
    )
    chat_breaker_cooldown_s: float = Field(default=30.0, gt=0, description="how long it is then skipped")

    vectors: VectorStoreSettings = Field(default_factory=VectorStoreSettings)
    embedder: EmbedderSettings = Field(default_factory=EmbedderSettings)

    _chat_prompt = field_validator("chat_prompt")(_known_prompt)
    _chat_router = field_validator("chat_router")(_known_router)

    @model_validator(mode="after")
    def _some_tier(self) -> OrchestratorSettings:
        if not self.extractive and not self.chat_tiers():
            raise ValueError("no cascade tier is enabled: enable `extractive` or `chat`")
        return self

    def answer_policy(self) -> AnswerPolicy:
        return AnswerPolicy(
            top_k=self.top_k,
            min_score=self.min_score,
            retrieval=RetrievalPolicy(
                fusion=self.fusion,
                weight=self.fusion_weight,
                rrf_k=self.fusion_rrf_k,
                candidates=self.fusion_candidates,
            ),
            cache=self.cache_policy(),
            memory=MemoryPolicy(
                enabled=self.memory, max_turns=self.memory_max_turns, max_chars=self.memory_max_chars
            ),
            expansion=ExpansionPolicy(
                mode=self.expansion,
                variants=self.expansion_variants,
                max_tokens=self.expansion_max_tokens,
                timeout_s=self.expansion_timeout_s,
            ),
            cascade=CascadePolicy(
                extractive=self.extractive,
                max_sentences=self.extractive_max_sentences,
                accept_min_score=self.accept_min_score,
                accept_min_coverage=self.accept_min_coverage,
                flagged_sources=self.flagged_sources,
                accept_min_support=self.accept_min_support,
                failures=FailurePolicy(
                    retries=self.chat_retries,
                    backoff_s=self.chat_retry_backoff_s,
                    breaker_failures=self.chat_breaker_failures,
                    breaker_cooldown_s=self.chat_breaker_cooldown_s,
                ),
            ),
        )

    def cache_policy(self) -> CachePolicy:
        return CachePolicy(
            enabled=self.cache,
            min_similarity=self.cache_min_similarity,
            max_changed_words=self.cache_max_changed_words,
            ttl_s=self.cache_ttl_s,
        )

    def chat_tiers(self) -> list[ChatTierSettings]:
        """The chat tiers in escalation order: tier 1 first."""
        if not self.chat:
            return []
        first = ChatTierSettings(
            base_url=self.chat_base_url,
            model=self.chat_model,
            api_key=self.chat_api_key,
            provider=self.chat_provider,
            timeout_s=self.chat_timeout_s,
            max_tokens=self.chat_max_tokens,
            temperature=self.chat_temperature,
            price_prompt_per_1k=self.chat_price_prompt_per_1k,
            price_completion_per_1k=self.chat_price_completion_per_1k,
            prompt=self.chat_prompt,
            max_source_chars=self.chat_max_source_chars,
            context_window=self.chat_context_window,
            max_concurrency=self.chat_max_concurrency,
            router=self.chat_router,
            min_benefit=self.chat_min_benefit,
        )
        return [first, *self.extra_chat_tiers]
