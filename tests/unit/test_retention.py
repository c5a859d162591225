"""The snapshot retention policy (store.retention.plan): it keeps exactly what it promises."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from store.retention import RetentionPolicy, VersionDisk, generations, plan

T0 = datetime(2026, 12, 1, tzinfo=UTC)
GB = 10**9


def chain(n: int, statuses: dict[str, str] | None = None, serving: str = "base") -> list[VersionDisk]:
    """base, v1..vn, each the child of the one before, made an hour apart; promoted unless told."""
    statuses = statuses or {}
    out = [VersionDisk("base", None, "promoted", serving == "base", T0, T0, T0, GB)]
    for i in range(1, n + 1):
        vid = f"v{i}"
        status = statuses.get(vid, "promoted")
        at = T0 + timedelta(hours=i)
        out.append(
            VersionDisk(
                vid,
                out[-1].id if status == "promoted" or i == 1 else _last_promoted(out),
                status,
                vid == serving,
                at,
                at if status == "promoted" else None,
                at if status == "promoted" else None,
                GB,
            )
        )
    return out


def _last_promoted(out: list[VersionDisk]) -> str:
    return next(v.id for v in reversed(out) if v.status == "promoted")


NOW = T0 + timedelta(hours=100)


def test_generations_count_depth_below_the_base():
    assert generations(chain(3)) == {"base": 0, "v1": 1, "v2": 2, "v3": 3}


def test_base_serving_previous_and_last_k_promoted_are_kept_the_rest_dropped():
    versions = chain(8, serving="v8")
    got = plan(versions, RetentionPolicy(keep_promoted=3, checkpoint_every=0), NOW)
    # v7 served before v8 (served_at order): previous; v6 the last promoted left for K=3
    assert got.keep == {"base": "base", "v6": "last_promoted", "v7": "previous", "v8": "serving"}
    assert got.drop == ["v1", "v2", "v3", "v4", "v5"]


def test_checkpoints_every_m_generations():
    got = plan(chain(10, serving="v10"), RetentionPolicy(keep_promoted=0, checkpoint_every=4), NOW)
    assert {k for k, why in got.keep.items() if why == "checkpoint"} == {"v4", "v8"}
    assert "v5" in got.drop


def test_rejected_candidates_are_kept_only_for_the_grace_period():
    versions = chain(4, statuses={"v2": "rejected", "v4": "rejected"}, serving="v3")
    now = versions[4].created_at + timedelta(minutes=30)  # v4 made 30 min ago, v2 2.5 h ago
    got = plan(versions, RetentionPolicy(keep_promoted=0, checkpoint_every=0, rejected_grace_s=3600), now)
    assert got.keep.get("v4") == "grace"
    assert "v2" in got.drop


def test_a_candidate_and_its_parent_are_never_dropped():
    versions = chain(3, statuses={"v3": "candidate"}, serving="v2")
    got = plan(versions, RetentionPolicy(keep_promoted=0, checkpoint_every=0, budget_bytes=1), NOW)
    assert got.keep["v3"] == "candidate" and got.keep["v2"] == "serving"


def test_the_budget_drops_droppable_snapshots_oldest_first_never_the_protected_ones():
    versions = chain(6, serving="v6")
    policy = RetentionPolicy(keep_promoted=4, checkpoint_every=0, budget_bytes=4 * GB)
    got = plan(versions, policy, NOW)
    # protected: base, v6 (serving), v5 (previous); last 4 promoted adds v3, v4 -> 5 GB > 4 GB
    assert got.keep == {"base": "base", "v4": "last_promoted", "v5": "previous", "v6": "serving"}
    assert got.drop == ["v1", "v2", "v3"] and got.over_budget_bytes == 0


def test_protected_snapshots_alone_over_the_budget_are_reported():
    got = plan(chain(2, serving="v2"), RetentionPolicy(keep_promoted=0, budget_bytes=GB), NOW)
    assert set(got.keep) == {"base", "v1", "v2"} and got.over_budget_bytes == 2 * GB


def test_already_dropped_versions_are_not_dropped_again():
    versions = chain(4, serving="v4")
    versions[1] = VersionDisk(**{**versions[1].__dict__, "bytes": 0})
    got = plan(versions, RetentionPolicy(keep_promoted=0, checkpoint_every=0), NOW)
    assert got.drop == ["v2"]


@pytest.mark.parametrize("k", [0, 1, 5])
def test_every_version_is_either_kept_or_dropped_once(k):
    versions = chain(7, statuses={"v3": "rejected"}, serving="v5")
    got = plan(versions, RetentionPolicy(keep_promoted=k, checkpoint_every=3), NOW)
    assert sorted([*got.keep, *got.drop]) == sorted(v.id for v in versions)
