"""The schemas of every file a deployer writes: models, agents, policies, settings, scenarios.

These are the only way configuration becomes objects: no file can name a Python
class or module to load (AutoGen's load_component would import one).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_\-]*$"
Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=64)]
POLICY_PLACEHOLDER = "{policy}"  # where a reviewer prompt takes the policy's rubric (engine/reviewer_prompt.py)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- models.yaml


class ModelInfoSpec(Strict):
    """What the endpoint's model can do (AutoGen's ModelInfo)."""

    vision: bool = False
    function_calling: bool = False
    json_output: bool = False
    structured_output: bool = False
    family: str = "unknown"


class EmbeddedModelSpec(Strict):
    kind: Literal["embedded"]
    n_ctx: int = Field(4096, ge=512, le=32768)
    n_threads: int | None = Field(None, ge=1, le=256)
    n_batch: int = Field(512, ge=8, le=4096)
    seed: int = 42
    state_cache_mb: int = Field(
        512, ge=0, le=16384, description="RAM for llama.cpp prompt-state cache, so roles do not evict each other"
    )
    contexts: Literal["per_role", "shared"] = Field(
        "per_role",
        description="per_role: each role (assistant, reviewer) its own llama.cpp context (KV cache) over one copy "
        "of the weights, so the roles neither evict each other nor wait for each other; shared: one context "
        "for every role, one call at a time",
    )


class OpenAIModelSpec(Strict):
    kind: Literal["openai"]
    model: str
    base_url: str | None = None
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    model_info: ModelInfoSpec = ModelInfoSpec()
    timeout: float = Field(60.0, gt=0, le=3600, description="seconds per attempt (connect, each wait for bytes)")
    max_retries: int = Field(
        3,
        ge=0,
        le=20,
        description="the openai client's retries on timeouts, connection "
        "errors, HTTP 408/409/429/5xx (Retry-After, else exponential backoff with jitter)",
    )
    max_concurrency: int = Field(8, ge=1, le=1024, description="calls in flight to this endpoint at once")

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return v


class ReplayModelSpec(Strict):
    kind: Literal["replay"]
    replies: list[str] = Field(min_length=1)


MAX_PATTERN_CHARS = 300  # a rule's regular expression: short enough to read, and to bound its matching work
MAX_WORD_CHARS = 100


class ScriptedRule(Strict):
    """One rule of a scripted model: when `match` finds its text, this rule answers.

    `match` is a regular expression (Python syntax, case-insensitive, searched anywhere in the text) or a
    list of words and phrases (any of them, as whole words, case-insensitive). An assistant's rule gives a
    `reply` (and, optionally, the `revision` it writes when the reviewer sends that reply back); a
    reviewer's rule sends the draft back with its `categories` and `critique`."""

    match: (
        Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_CHARS)]
        | Annotated[
            list[Annotated[str, Field(min_length=1, max_length=MAX_WORD_CHARS)]], Field(min_length=1, max_length=200)
        ]
    )
    reply: str = ""
    revision: str = ""
    categories: list[Name] = Field(default_factory=list, max_length=2)
    critique: str = Field("", max_length=400)

    @field_validator("match")
    @classmethod
    def _compiles(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, str):
            try:
                pattern = re.compile(v, re.IGNORECASE)
            except re.error as exc:
                raise ValueError(f"not a valid regular expression: {exc}") from None
            if pattern.search(""):
                raise ValueError("this regular expression matches empty text, so it would match every text")
        elif not all(word.strip() for word in v):
            raise ValueError("a blank word would match nothing useful; write the words to look for")
        return v

    @property
    def pattern(self) -> re.Pattern[str]:
        if isinstance(self.match, str):
            return re.compile(self.match, re.IGNORECASE)
        words = "|".join(re.escape(" ".join(word.split())) for word in self.match)
        return re.compile(rf"(?<!\w)(?:{words})(?!\w)", re.IGNORECASE)


class ScriptedModelSpec(Strict):
    """Rules instead of a model, to try Chaperone in seconds: no weights, no endpoint, no real judgement.

    role assistant: answers the user's request with the first rule that matches it, else `otherwise`.
    role reviewer: reads only the draft under review (as data: it is matched, never run); the first rule
    that matches sends it back with that rule's categories and critique; a draft no rule matches is approved."""

    kind: Literal["scripted"]
    role: Literal["assistant", "reviewer"]
    rules: list[ScriptedRule] = Field(min_length=1, max_length=100)
    otherwise: str = Field("", description="assistant only: the reply when no rule matches")

    @model_validator(mode="after")
    def _rules_fit_the_role(self) -> ScriptedModelSpec:
        for i, rule in enumerate(self.rules):
            where = f"rules.{i}"
            if self.role == "assistant":
                if not rule.reply.strip():
                    raise ValueError(f"{where}: an assistant's rule needs a reply")
                if rule.categories or rule.critique:
                    raise ValueError(f"{where}: categories and critique are for a reviewer's rule (role: reviewer)")
            else:
                if rule.reply or rule.revision:
                    raise ValueError(f"{where}: reply and revision are for an assistant's rule (role: assistant)")
                if not rule.categories or not rule.critique.strip():
                    raise ValueError(f"{where}: a reviewer's rule needs categories and a critique (what to fix)")
        if self.role == "assistant" and not self.otherwise.strip():
            raise ValueError("otherwise: an assistant needs a reply for requests no rule matches")
        if self.role == "reviewer" and self.otherwise:
            raise ValueError("otherwise is for an assistant: a draft no rule matches is approved")
        return self


SCRIPTED_KINDS = ("scripted", "replay")  # no model behind them: fixed or rule-chosen text, no real judgement

ModelSpec = Annotated[
    EmbeddedModelSpec | OpenAIModelSpec | ReplayModelSpec | ScriptedModelSpec, Field(discriminator="kind")
]


class ModelsFile(Strict):
    default: Name = "embedded"
    models: dict[Name, ModelSpec] = Field(min_length=1)

    @model_validator(mode="after")
    def _default_exists(self) -> ModelsFile:
        if self.default not in self.models:
            raise ValueError(f"default model '{self.default}' is not defined under models")
        return self


# ---------------------------------------------------------------- agents/*.yaml


class GenerationSpec(Strict):
    max_tokens: int = Field(512, ge=1, le=32768)
    temperature: float = Field(0.2, ge=0.0, le=2.0)
    top_p: float = Field(0.95, gt=0.0, le=1.0)
    repeat_penalty: float = Field(1.1, ge=1.0, le=2.0, description="embedded model only: discourages loops")


class RefusalCheckSpec(Strict):
    """Reviewer only. A draft that only declines (a short full refusal, by phrase match) is judged by `prompt`
    (was declining right?) instead of the agent's decision prompt: measured on the embedded 1.5B model, the
    decision prompt scores polite refusals of harmful requests as less OK than harmful answers."""

    phrases: list[str] = Field(min_length=1)
    min_answer_words: int = Field(8, ge=1, le=1000, description="words outside refusing sentences that make it partial")
    max_words: int = Field(
        16,
        ge=1,
        le=200,
        description="a longer draft always gets the full check "
        "(the refusal check does not read the draft: this caps what it could pass unread)",
    )
    prompt: str = Field(min_length=1, description="decision prompt for refusals; {policy} is the rubric")
    # The draft is known to hold nothing but declining: the model may judge the request alone (on the 1.5B
    # model, a quoted refusal pulls the answer to "no" whatever the question).
    show_draft: bool = False
    question: str = Field("The assistant declined this request. Is declining it OK to send?", min_length=1)
    # Its own threshold: this prompt's scores sit on another scale than the answer prompt's (the policy's
    # decision_threshold applies to those). Send a refusal back as needless when P(not OK) reaches this.
    decision_threshold: float = Field(0.25, gt=0.0, lt=1.0)
    # With a request head (the agent's `request_head`), the refusal is decided by P(request harmful) instead of
    # the prompt above: a refusal of a request scored below this is sent back as a needless refusal.
    request_threshold: float = Field(0.5, gt=0.0, lt=1.0)

    @field_validator("phrases")
    @classmethod
    def _lower(cls, v: list[str]) -> list[str]:
        return [p.strip().lower() for p in v if p.strip()]


class AgentSpec(Strict):
    name: Name
    role: Literal["assistant", "reviewer", "user_proxy"]
    description: str = ""
    model: Name | None = None
    system_prompt: str = ""
    critique_prompt: str = Field("", description="reviewer only: asked for categories and critique after a 'no'")
    generation: GenerationSpec = GenerationSpec()
    memory_turns: int = Field(8, ge=0, le=100, description="earlier exchanges the assistant sees")
    refusal_check: RefusalCheckSpec | None = None
    # Reviewer only: a trained judgement head (`.npz`, its card `.json` beside it), relative to the project
    # folder. Used when the reviewer runs on the embedded model and the card names that GGUF and the head
    # prompt of config/reviewer_head.yaml; otherwise the prompted decision, with one warning. None: no head.
    head: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\n\r\x00]+\.npz$")
    # Reviewer only: a trained request head (same format), scoring P(request harmful) from the prompt of
    # config/request_head.yaml. A draft that only declines is then decided by it (refusal_check's
    # request_threshold) instead of the prompted refusal check; the same conditions and warning as `head`.
    request_head: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\n\r\x00]+\.npz$")
    # Reviewer only: a chunk head (same format) that judges chunks under chunked review from the hidden states
    # the assistant's own draft tokens produce as it writes them (nothing read; engine/chunk_head.py). Used when
    # reviewer and assistant share the embedded model and the assistant writes under the system prompt its card
    # names; otherwise chunk verdicts come from `head` as before, with one warning. None: no chunk head.
    chunk_head: str | None = Field(None, min_length=1, max_length=4096, pattern=r"^[^\n\r\x00]+\.npz$")

    @model_validator(mode="after")
    def _model_for_speakers(self) -> AgentSpec:
        if self.role != "user_proxy" and self.model is None:
            raise ValueError(f"an agent with role '{self.role}' needs a model (a name from config/models.yaml)")
        if self.refusal_check is not None and self.role != "reviewer":
            raise ValueError("refusal_check is for an agent with role 'reviewer'")
        if self.head is not None and self.role != "reviewer":
            raise ValueError("head is for an agent with role 'reviewer'")
        if self.request_head is not None and self.role != "reviewer":
            raise ValueError("request_head is for an agent with role 'reviewer'")
        if self.chunk_head is not None and self.role != "reviewer":
            raise ValueError("chunk_head is for an agent with role 'reviewer'")
        return self

    @field_validator("critique_prompt")
    @classmethod
    def _critique_names_the_policy(cls, v: str) -> str:
        # engine/reviewer_prompt.py fills {policy} with the rubric. The decision prompts (system_prompt,
        # refusal_check.prompt) get the rubric appended when they have no placeholder; a critique prompt of
        # one's own does not (empty: the built-in one, which has it), so without {policy} the critique
        # would be written without the deployment's rules.
        if v.strip() and POLICY_PLACEHOLDER not in v:
            raise ValueError(
                f"critique_prompt has no {POLICY_PLACEHOLDER} placeholder: without it the critique is written "
                "without the deployment's rules (put {policy} where the policy's rubric goes)"
            )
        return v


# ---------------------------------------------------------------- config/policies/*.yaml

# The categories a reviewer head scores: the product's taxonomy (config/policies/public.yaml) plus what the
# training data supports beyond it (chaperone/reviewer_head/data.py maps every source onto these). A policy's
# head rules name its own categories, or, to allow one (block: false), one of these.
HEAD_CATEGORIES = (
    "hate_bias",
    "harassment",
    "violence",
    "weapons",
    "hazardous_chemistry",
    "self_harm",
    "sexual",
    "crime",
    "privacy",
    "misinformation",
    "needless_refusal",
    "unqualified_advice",  # DiaSafety's "Unauthorized Expertise", JailbreakBench's "Expert advice"
    "unspecified",  # harmful, but the source gives no category (GPTFuzz's jailbroken answers)
)


class HeadCategoryRule(Strict):
    """What the head's score for one category does under this policy."""

    # true: a score at or above `threshold` sends the draft back, naming this category. false: the category is
    # allowed here; a high overall "not OK" that this category explains (it is the head's top category and
    # scores at or above `threshold`) does not send the draft back.
    block: bool = True
    threshold: float = Field(0.5, gt=0.0, lt=1.0)


class HeadPolicySpec(Strict):
    """The decision from a trained reviewer head (docs/reviewer-head.md): used only by an embedded reviewer
    with a matching head; every other reviewer keeps the prompted decision and `decision_threshold`."""

    # Send a draft back when the head's overall P(not OK) reaches this (unless an allowed category explains it).
    not_ok_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    categories: dict[Name, HeadCategoryRule] = {}
    # [low, high): an overall P(not OK) in this band flags the turn for a human (transcript, review list --flagged).
    flag_band: tuple[float, float] | None = None

    @field_validator("flag_band")
    @classmethod
    def _band(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None:
            low, high = v
            if not (0.0 < low < 1.0 and 0.0 < high <= 1.0):
                raise ValueError("the band's ends must be probabilities: 0 < low < 1, 0 < high <= 1")
            if low >= high:
                raise ValueError(f"the band's low end ({low}) must be below its high end ({high})")
        return v


class ChunkSpec(Strict):
    """Where a draft being written is cut for review (a policy's `chunks`, used with `streaming: chunks`).

    A chunk closes at the first sentence end (or line break) once it holds `min_tokens`, so short sentences
    are judged together rather than one reviewer call each; with no sentence end it closes at `max_tokens`
    (a code block, a long list), at the last space so a word is not split. With `growth` above 1 each later
    chunk's `min_tokens` is the one before times `growth`, up to `max_tokens`: the first approved text comes
    as early as before and a long answer is judged fewer times, while no chunk outgrows `max_tokens`."""

    min_tokens: int = Field(8, ge=1, le=4096)
    max_tokens: int = Field(48, ge=1, le=4096)
    growth: float = Field(2.0, ge=1.0, le=16.0)
    # With the reviewer's chunk head (agents' `chunk_head`): a chunk whose score reaches this is sent back.
    # None: the threshold on the head's card (chosen on dev data; docs/reviewer-head.md).
    head_threshold: float | None = Field(None, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _min_not_above_max(self) -> ChunkSpec:
        if self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens ({self.min_tokens}) is above max_tokens ({self.max_tokens})")
        return self


class PolicySpec(Strict):
    name: Name
    title: str
    description: str = ""
    rubric: str = Field(min_length=1)
    categories: dict[Name, str] = Field(min_length=1)
    allowances: list[str] = []
    fallback: str | None = None
    # Send a draft back when the reviewer's probability that it is not OK reaches this (backends that give
    # the decision token's probability: the embedded model, OpenAI-compatible endpoints returning logprobs;
    # others use the model's written yes/no). Lower catches more harm and sends back more good answers.
    decision_threshold: float = Field(0.5, gt=0.0, lt=1.0)
    head: HeadPolicySpec | None = None
    # "whole": the reviewer judges each finished draft, and the user sees nothing before its approval.
    # "chunks": it also judges the draft while it is written, prefix by prefix; an approved prefix is shown
    # at once and a prefix sent back stops the generation (docs/guarantees.md, "Chunked review").
    streaming: Literal["whole", "chunks"] = "whole"
    chunks: ChunkSpec = Field(default_factory=ChunkSpec)

    @field_validator("rubric")
    @classmethod
    def _rubric_has_words(cls, v: str) -> str:
        if not v.strip():  # the reviewer reads it stripped: blank would be a policy with no rules
            raise ValueError("rubric is blank; the reviewer would judge without the deployment's rules")
        return v

    @model_validator(mode="after")
    def _head_names_known_categories(self) -> PolicySpec:
        # A blocking category becomes the verdict's category and is described to the critique: it must be one
        # of this policy's. An allowed one may also be a category of the head that this policy does not list.
        for name, rule in (self.head.categories if self.head else {}).items():
            if name in self.categories:
                continue
            if rule.block:
                raise ValueError(
                    f"head.categories.{name}: a blocking category must be one of this policy's categories "
                    f"({', '.join(self.categories)})"
                )
            if name not in HEAD_CATEGORIES:
                raise ValueError(
                    f"head.categories.{name}: neither a category of this policy nor one a head scores "
                    f"({', '.join(HEAD_CATEGORIES)})"
                )
        return self


# ---------------------------------------------------------------- config/settings.yaml


class RoleAgents(Strict):
    assistant: Name = "unaligned_assistant"
    reviewer: Name = "moral_reviewer"
    user_proxy: Name = "user_proxy"


class ReviewerContextSpec(Strict):
    history_turns: int = Field(1, ge=0, le=20)
    max_history_chars: int = Field(600, ge=0, le=100_000)
    max_draft_chars: int = Field(6000, ge=200, le=1_000_000)
    # The most of the user's request the reviewer reads (start and end kept, the cut noted); null: half of
    # max_draft_chars; 0: the request is not shown (the draft is judged alone). A jailbreak wrapper can be
    # long; the draft is what gets delivered.
    max_request_chars: int | None = Field(None, ge=0, le=1_000_000)

    @field_validator("max_request_chars")
    @classmethod
    def _request_room(cls, v: int | None) -> int | None:
        if v is not None and 0 < v < 100:
            raise ValueError("must be 0 (the request is not shown) or at least 100")
        return v

    # A draft longer than max_draft_chars cannot be read whole. send_back (fail closed): the reviewer returns
    # it asking for a shorter answer, no model call. truncate: the start and the end are reviewed, the cut noted.
    over_limit: Literal["send_back", "truncate"] = "send_back"


class AuditSettings(Strict):
    """Keys of the audit trail (docs/guarantees.md). Paths relative to the project folder; the environment
    variables CHAPERONE_AUDIT_SIGNING_KEY and CHAPERONE_AUDIT_PUBLIC_KEY win over these."""

    # The Ed25519 private key (PEM) that signs each run-manifest line; never inside the transcripts folder,
    # never readable by group or others. None: manifests are not signed.
    signing_key: str | None = Field(None, min_length=1, max_length=4096)
    # The public key `review` checks signatures with. None: not checked (verify says so).
    public_key: str | None = Field(None, min_length=1, max_length=4096)

    @field_validator("signing_key", "public_key")
    @classmethod
    def _one_path(cls, v: str | None) -> str | None:
        if v is not None and (not v.strip() or any(c in v for c in "\n\r\0")):
            raise ValueError("must be the path of a PEM file (one line)")
        return v


class Settings(Strict):
    default_policy: Name = "public"
    agents: RoleAgents = RoleAgents()
    max_revisions: int = Field(2, ge=0, le=20)
    fallback_message: str = "I can't help with that request."
    transcripts_dir: str = "transcripts"
    log_file: str | None = "logs/chaperone.log"
    model_cache_dir: str | None = None
    reviewer_context: ReviewerContextSpec = ReviewerContextSpec()
    audit: AuditSettings = AuditSettings()


# ---------------------------------------------------------------- scenarios/*.yaml


class RevisionBounds(Strict):
    min: int = Field(0, ge=0)
    max: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> RevisionBounds:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is more than max ({self.max}): no turn could meet it")
        return self


class TurnExpectation(Strict):
    outcome: Literal["approved", "withheld"] | None = None
    revisions: RevisionBounds | None = None
    categories: list[Name] = []

    @field_validator("revisions", mode="before")
    @classmethod
    def _exact_count(cls, v: object) -> object:
        if isinstance(v, int) and not isinstance(v, bool):
            return {"min": v, "max": v}  # "revisions: 0" means exactly none
        return v


class ScenarioTurn(Strict):
    user: str = Field(min_length=1)
    expect: TurnExpectation | None = None


class RoleOverrides(Strict):
    assistant: Name | None = None
    reviewer: Name | None = None


class Scenario(Strict):
    name: str = Field(min_length=1)
    description: str = ""
    policy: Name | None = None
    agents: RoleOverrides = RoleOverrides()
    models: RoleOverrides = RoleOverrides()
    max_revisions: int | None = Field(None, ge=0, le=20)
    turns: list[ScenarioTurn] = Field(min_length=1)

    @field_validator("turns")
    @classmethod
    def _revisions_within_the_cap(cls, turns: list[ScenarioTurn], info: ValidationInfo) -> list[ScenarioTurn]:
        # A turn has at most max_revisions redrafts, so expecting more can never be met. Checked when this
        # file sets max_revisions (else the cap is settings.yaml's, read elsewhere).
        cap = info.data.get("max_revisions")
        for i, turn in enumerate(turns):
            bounds = turn.expect.revisions if turn.expect else None
            if cap is not None and bounds is not None and bounds.min > cap:
                raise ValueError(
                    f"turns.{i}.expect.revisions: min ({bounds.min}) is more than this scenario's "
                    f"max_revisions ({cap}): no turn could meet it"
                )
        return turns
