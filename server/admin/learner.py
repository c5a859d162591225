"""Admin routes for learner rounds: trigger one now, list them, inspect one (with iterations)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, create_model

from evals.thresholds import Thresholds
from server.auth import admin_caller
from server.deps import DB, state
from server.errors import APIError
from server.openapi import doc
from server.rounds import Rounds
from store.rounds import RoundBusy, get_round, iterations, list_rounds
from store.versions import latest_decision
from weights.config import ROUND_KNOBS, ConfigError, ESConfig, optional_fields

MAX_ROW_ID = 2**63 - 1  # a row id is a 64-bit integer in every backend (SQLite refuses larger)
router = APIRouter(prefix="/admin/learner", dependencies=[Depends(admin_caller)])
# what perennial/ plugged in (app.state.rounds), None without a learner
LearnerRounds = Annotated[Rounds | None, Depends(state("rounds"))]


# The body's fields are derived from the one declaration of each knob (same type, range and help;
# all optional): the ES knobs of weights.config.ESConfig and the thresholds of evals.thresholds.
GateOverrides = create_model(
    "GateOverrides", __config__=ConfigDict(extra="forbid"), **optional_fields(Thresholds)
)


class _RoundBody(BaseModel):
    """Overrides of this round's ES settings (and gate thresholds); all optional."""

    model_config = ConfigDict(extra="forbid")

    def overrides(self) -> dict[str, Any]:
        es = self.model_dump(exclude={"gate"}, exclude_none=True)
        gate = self.gate.model_dump(exclude_none=True) if self.gate else {}
        return {k: v for k, v in (("es", es), ("gate", gate)) if v}


RoundRequest = create_model(
    "RoundRequest",
    __base__=_RoundBody,
    __doc__=_RoundBody.__doc__,
    **optional_fields(ESConfig, ROUND_KNOBS),
    gate=(GateOverrides | None, Field(None, description="Overrides of the gate's thresholds.")),
)


def round_json(run, decision=None, its=None) -> dict[str, Any]:
    def iso(t):
        return t.isoformat() if t else None

    body = {
        "id": run.id,
        "status": run.status,
        "decision": run.decision,
        "error": run.error,
        "trigger": (run.config or {}).get("trigger"),
        "overrides": (run.config or {}).get("overrides"),
        "parent_version": run.parent_version,
        "candidate_version": run.candidate_version,
        "feedback": {"from_seq": run.feedback_from_seq, "to_seq": run.feedback_to_seq},
        "metrics": run.metrics,
        "created_at": iso(run.created_at),
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "seconds": (run.finished_at - run.started_at).total_seconds()
        if run.finished_at and run.started_at
        else None,
    }
    if decision is not None:
        body["gate"] = {"promote": decision.promote, "reasons": decision.reasons, "checks": decision.checks}
    if its is not None:
        body["iterations"] = [{"iteration": i.iteration, **i.metrics} for i in its]
    return body


@router.post("/rounds", status_code=202, **doc(errors=(409,)))
async def trigger_round(rounds: LearnerRounds, body: RoundRequest | None = None) -> dict:
    """Queue a round now (409 while one is queued or running)."""
    if rounds is None or rounds.mode == "off":
        raise APIError(409, "the learner is off (PERENNIAL_LEARNER_MODE=off)", code="learner_off")
    try:
        run = await rounds.enqueue((body or RoundRequest()).overrides(), trigger="admin")
    except RoundBusy as exc:
        raise APIError(409, f"{exc}; wait for it to finish", code="round_in_progress") from exc
    except ConfigError as exc:
        raise APIError(400, str(exc), param=exc.field, code="invalid_value") from exc
    return round_json(run)


@router.get("/rounds")
async def rounds_list(db: DB, limit: int = Query(50, ge=1, le=500)) -> dict:
    async with db.sessions() as session:
        runs = await list_rounds(session, limit=limit)
        data = []
        for run in runs:
            decision = (
                await latest_decision(session, version_id=run.candidate_version)
                if run.candidate_version
                else None
            )
            data.append(round_json(run, decision))
    return {"object": "list", "data": data}


@router.get("/rounds/{round_id}", **doc(errors=(404,)))
async def round_detail(db: DB, round_id: Annotated[int, Path(ge=1, le=MAX_ROW_ID)]) -> dict:
    async with db.sessions() as session:
        run = await get_round(session, round_id=round_id)
        if run is None:
            raise APIError(404, f"no round {round_id}", param="round_id", code="round_not_found")
        decision = (
            await latest_decision(session, version_id=run.candidate_version)
            if run.candidate_version
            else None
        )
        return round_json(run, decision, await iterations(session, round_id=round_id))


@router.get("")
async def learner_status(rounds: LearnerRounds) -> dict:
    """Where the learner runs, the round it is running, and its engine (embedded mode)."""
    if rounds is None:
        return {"mode": "off", "running": None, "engine": None}
    return {"mode": rounds.mode, "running": None, "engine": None, **rounds.status()}
