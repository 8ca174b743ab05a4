"""The shapes of an evaluation's records: a result row (one line of results.jsonl) and a report (report.json).

Rows are written and read back as JSON lines by store.RunFolder; their keys and values are those of the
earlier, untyped rows, so run folders written before still load and resume. Fields an older row may lack
(score, checked_as, threshold) have the defaults the figures always assumed.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializerFunctionWrapHandler,
    Tag,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_serializer,
)

from chaperone.engine.events import TurnOutcome, Usage
from chaperone.eval.data import Label

Arm = Literal["bare", "guarded"]
ARMS: tuple[Arm, ...] = ("bare", "guarded")
JudgeClass = Literal["full_compliance", "full_refusal", "partial_refusal"]  # the XSTest taxonomy
Decision = Literal["approve", "revise"]


class _Record(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- rows


class Judgement(_Record):
    """The judge's class of one final answer. On disk the class is under "class" (a Python keyword)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    label: JudgeClass | None = Field(alias="class")  # None when the judge's reply could not be read
    raw: str
    by: str  # the judge model's label, "refusal phrases", "empty answer", or "fallback" (the product's own)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0

    @field_validator("seconds")
    @classmethod
    def _rounded(cls, v: float) -> float:
        return round(v, 3)


class ArmResult(_Record):
    """One conversation of an A/B item: the bare assistant's or the guarded chat's."""

    outcome: TurnOutcome
    answer: str  # what the user got: the answer, or the guarded chat's fallback
    revisions: int
    categories: list[str]
    usage: dict[str, Usage]  # per role: "assistant", "reviewer"
    seconds: float
    transcript: str  # the conversation's transcript file
    judge: Judgement
    cut: bool = False  # the answer stopped at the assistant's token limit (max_tokens): it ends mid-answer

    @model_serializer(mode="wrap")
    def _cut_only_when_cut(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """`cut` is written only when true, so a row of an answer not cut keeps the keys rows always had."""
        data = handler(self)
        if not self.cut:
            data.pop("cut", None)
        return data


class RowBase(_Record):
    """What every row says of its item, whatever the mode and however it ended."""

    id: str
    label: Label | None
    type: str
    category: str
    prompt: str
    shard: tuple[int, int]
    status: Literal["ok", "error"]


class FailedRow(RowBase):
    """An item that could not be finished; --resume runs it again."""

    status: Literal["error"] = "error"
    error: str


class AbRow(RowBase):
    """An "ab" item: the bare assistant and the guarded chat on one prompt, each answer judged."""

    status: Literal["ok"] = "ok"
    arms: dict[Arm, ArmResult]


class ReviewerRow(RowBase):
    """A "reviewer" item: the reviewer alone on one recorded answer."""

    status: Literal["ok"] = "ok"
    decision: Decision  # an unreadable verdict is recorded as "revise": the product fails closed
    readable: bool
    raw: str
    score: float | None = None  # P(not OK) from the decision token, when the backend gives it
    checked_as: str = "answer"  # which decision prompt judged it: "answer", or "refusal"
    threshold: float | None = None  # the policy's decision_threshold
    prompt_tokens: int
    completion_tokens: int
    seconds: float
    model: str


Row = AbRow | ReviewerRow | FailedRow


def _kind(row: Any) -> str:
    get = row.get if isinstance(row, dict) else lambda key: getattr(row, key, None)
    if get("status") == "error":
        return "failed"
    return "ab" if get("arms") is not None else "reviewer"


EvalRow = Annotated[
    Annotated[AbRow, Tag("ab")] | Annotated[ReviewerRow, Tag("reviewer")] | Annotated[FailedRow, Tag("failed")],
    Discriminator(_kind),
]
_TAGS = ("ab", "reviewer", "failed")
_ROW: TypeAdapter[Row] = TypeAdapter(EvalRow)


def parse_row(data: Any) -> Row:
    """A row from its JSON form; raises ValueError saying what is wrong (the first problem, in one line)."""
    try:
        return _ROW.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"][1:] if first["loc"] and first["loc"][0] in _TAGS else first["loc"]
        where = ".".join(str(part) for part in loc)
        raise ValueError(f"{where + ': ' if where else ''}{first['msg']}") from None


def row_json(row: Row) -> dict[str, Any]:
    """The row's JSON form: the keys of results.jsonl (the judge's class as "class")."""
    return row.model_dump(mode="json", by_alias=True)


class ScoredVerdict(BaseModel):
    """What the reviewer-alone figures read of a verdict; ReviewerRow has the same fields. Also read from the
    plain dicts of scripts with their own rows (benchmarks/reviewer_candidates.py); other keys are ignored."""

    label: Label | None
    decision: Decision
    readable: bool = True
    score: float | None = None
    checked_as: str = "answer"


# ---------------------------------------------------------------- reports (what metrics.report() returns)


class FailedItem(BaseModel):
    id: str
    error: str


class Latency(BaseModel):
    median: float | None
    p95: float | None


class JudgedCounts(BaseModel):
    """The judge's classes of one arm's answers to the prompts of one label."""

    judged: int
    full_compliance: int
    partial_refusal: int
    full_refusal: int
    unjudged: int


class ArmFigures(BaseModel):
    items: int
    unsafe: JudgedCounts
    safe: JudgedCounts
    harmful_rate: float | None  # full compliance on unsafe prompts (attack success)
    refusal_rate: float | None  # full + partial refusals on safe prompts (over-refusal)
    full_refusal_rate: float | None
    partial_refusal_rate: float | None
    withheld_rate: float | None
    first_draft_approved_rate: float | None  # guarded only
    revisions: dict[str, int]  # revisions in the turn -> prompts
    revisions_per_turn: float | None
    tokens: dict[str, Usage]  # per role
    tokens_total: int
    seconds_total: float
    latency_s: Latency
    cut: int  # answers the user got cut at the assistant's token limit


class TypeRates(BaseModel):
    compliance: float | None
    refusal: float | None


class TypeFigures(BaseModel):
    type: str
    label: Label | None
    items: int
    bare: TypeRates
    guarded: TypeRates


class Overhead(BaseModel):
    tokens: float | None  # guarded / bare
    seconds: float | None


class AbReport(BaseModel):
    mode: Literal["ab"] = "ab"
    items: int
    failed: list[FailedItem]
    arms: dict[Arm, ArmFigures]
    overhead: Overhead
    judge_tokens: int
    by_type: list[TypeFigures]


class Confusion(BaseModel):
    """Positive = must not be delivered (label unsafe); predicted positive = the reviewer says revise."""

    tp: int
    fp: int
    fn: int
    tn: int
    items: int
    precision: float | None
    recall: float | None
    f1: float | None
    false_positive_rate: float | None
    accuracy: float | None


class CurvePoint(BaseModel):
    threshold: float
    tp: int
    fp: int
    fn: int
    tn: int
    precision: float | None
    recall: float | None
    f1: float | None
    false_positive_rate: float | None


class Curve(BaseModel):
    items: int
    roc_auc: float | None
    points: list[CurvePoint]


# The reviewer's report is its head, its overall confusion and the rest, in that order on disk; a model's
# fields come base first, so the parts are bases listed last to first.
class _Category(BaseModel):
    category: str


class CategoryConfusion(Confusion, _Category):
    """The confusion of one category's items (its "category" key first, as before)."""


class _ReviewerHead(BaseModel):
    mode: Literal["reviewer"] = "reviewer"
    items: int
    failed: list[FailedItem]
    unlabelled: int
    unreadable: int


class _ReviewerTail(BaseModel):
    per_category: list[CategoryConfusion]
    seconds_per_verdict: Latency
    tokens_per_verdict: float | None
    thresholds_used: list[float]
    curve: Curve | None


class ReviewerReport(_ReviewerTail, Confusion, _ReviewerHead):
    """The reviewer alone: its confusion overall and per category, its cost, and the threshold curve."""


Report = AbReport | ReviewerReport


class RunFacts(BaseModel):
    """What report.json says of the run besides the figures (after them, as before)."""

    run_id: str
    source: str
    shard: tuple[int, int]
    missing: int  # items of this shard not finished


def report_json(report: Report, facts: RunFacts | None = None) -> dict[str, Any]:
    """report.json's content (and `--json`'s): the figures, then the run's facts."""
    return {**report.model_dump(mode="json"), **(facts.model_dump(mode="json") if facts else {})}
