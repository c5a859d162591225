"""Admin routes for learner rounds: trigger one now, list them, inspect one (with iterations)."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from learner.config import ConfigError
from learner.service import RoundBusy, enqueue_round
from server.deps import admin_caller
from server.errors import APIError
from store.learner_runs import get_run, iterations, list_runs
from store.versions import latest_decision

router = APIRouter(prefix="/admin/learner", dependencies=[Depends(admin_caller)])


class GateOverrides(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_gain: float | None = None
    tolerance: float | None = None
    max_total_drop: float | None = None
    max_kl: float | None = None


class RoundRequest(BaseModel):
    """Overrides of this round's ES settings (and gate thresholds); all optional."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    iterations: int | None = Field(None, ge=1, le=10_000)
    population: int | None = Field(None, ge=2, le=1024)
    sigma: float | None = Field(None, gt=0, le=1)
    alpha: float | None = Field(None, gt=0, le=1)
    awd_lambda: float | None = Field(None, ge=0, alias="lambda")
    awd_kind: Literal["l1", "l2"] | None = Field(None, alias="awd")
    minibatch: int | None = Field(None, ge=1, le=4096)
    max_tokens: int | None = Field(None, ge=1, le=1024)
    gate: GateOverrides | None = None

    def overrides(self) -> dict[str, Any]:
        es = self.model_dump(exclude={"gate"}, exclude_none=True)
        gate = self.gate.model_dump(exclude_none=True) if self.gate else {}
        return {k: v for k, v in (("es", es), ("gate", gate)) if v}


def run_json(run, decision=None, its=None) -> dict[str, Any]:
    def iso(t):
        return t.isoformat() if t else None

    body = {
        "id": run.id, "status": run.status, "decision": run.decision, "error": run.error,
        "trigger": (run.config or {}).get("trigger"), "overrides": (run.config or {}).get("overrides"),
        "parent_version": run.parent_version, "candidate_version": run.candidate_version,
        "feedback": {"from_seq": run.feedback_from_seq, "to_seq": run.feedback_to_seq},
        "metrics": run.metrics, "created_at": iso(run.created_at), "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "seconds": (run.finished_at - run.started_at).total_seconds()
        if run.finished_at and run.started_at else None,
    }  # fmt: skip
    if decision is not None:
        body["gate"] = {"promote": decision.promote, "reasons": decision.reasons, "checks": decision.checks}
    if its is not None:
        body["iterations"] = [{"iteration": i.iteration, **i.metrics} for i in its]
    return body


@router.post("/rounds", status_code=202)
async def trigger_round(request: Request, body: RoundRequest | None = None) -> dict:
    """Queue a round now (409 while one is queued or running)."""
    state = request.app.state
    if state.learner_settings.learner_mode == "off":
        raise APIError(409, "the learner is off (PERENNIAL_LEARNER_MODE=off)", code="learner_off")
    try:
        run = await enqueue_round(state.db, state.learner_settings,
                                  (body or RoundRequest()).overrides(), trigger="admin")  # fmt: skip
    except RoundBusy as exc:
        raise APIError(409, f"{exc}; wait for it to finish", code="round_in_progress") from exc
    except ConfigError as exc:
        raise APIError(400, str(exc), param=exc.field, code="invalid_value") from exc
    return run_json(run)


@router.get("/rounds")
async def rounds(request: Request, limit: int = Query(50, ge=1, le=500)) -> dict:
    async with request.app.state.db.sessions() as session:
        runs = await list_runs(session, limit=limit)
        data = []
        for run in runs:
            decision = await latest_decision(session, version_id=run.candidate_version) if run.candidate_version else None
            data.append(run_json(run, decision))
    return {"object": "list", "data": data}


@router.get("/rounds/{run_id}")
async def round_detail(request: Request, run_id: int) -> dict:
    async with request.app.state.db.sessions() as session:
        run = await get_run(session, run_id=run_id)
        if run is None:
            raise APIError(404, f"no round {run_id}", param="run_id", code="round_not_found")
        decision = await latest_decision(session, version_id=run.candidate_version) if run.candidate_version else None
        return run_json(run, decision, await iterations(session, run_id=run_id))


@router.get("")
async def learner_status(request: Request) -> dict:
    """Where the learner runs, the round it is running, and its engine (embedded mode)."""
    state = request.app.state
    service = getattr(state, "learner", None)
    body: dict[str, Any] = {"mode": state.learner_settings.learner_mode, "running": None, "engine": None}
    if service is not None:
        body["running"] = service.running
        engine = service.engine
        if engine is not None and engine.supervisor is not None:
            sup = engine.supervisor
            body["engine"] = {"state": sup.state.value, "pid": sup.pid, "url": engine.base_url}
    return body
