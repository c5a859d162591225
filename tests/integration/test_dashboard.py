"""The admin dashboard in headless Chromium against the real shared server.

What is real: the gateway, its vLLM engine, the admin API, the hot swaps behind the promote and
rollback buttons, the browser. What is inserted: two judged candidates and their learner
rounds (``seed.py``): the page only reads what rounds store, and a real round takes minutes.
Run: ``.venv/bin/python -m pytest tests/dashboard -q``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from harness.snapshots import perturbed_snapshot
from tests.conftest import ADMIN_KEY
from tests.support.seed import BASE_SUITES, Candidate, seed

pytestmark = pytest.mark.integration

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
# The README's screenshot is refreshed only on request (tests must not dirty tracked files):
#   PERENNIAL_UPDATE_SCREENSHOT=1 .venv/bin/python -m pytest tests/dashboard
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "bench" / "results" / "dashboard.png"
SWAP_TIMEOUT_MS = 300_000  # a hot swap on a loaded 2-core machine


def admin(server, method: str, path: str, **kwargs) -> httpx.Response:
    return httpx.request(method, server.url + path, headers=ADMIN, timeout=300, **kwargs)


def serving(server) -> str:
    return admin(server, "GET", "/admin/versions").json()["serving"]


@pytest.fixture(scope="module")
def seeded(server, model_dir, tmp_path_factory):
    """An approved candidate and a rejected one, with rounds; restores the served version after."""
    snapshots = tmp_path_factory.mktemp("dashboard-snapshots")
    good = Candidate(
        "dash1",
        perturbed_snapshot(model_dir, snapshots / "dash1", seed=11, scale=0.05),
        target=0.41,
        drift=4.1,
        kl=0.006,
        iterations=5,
        suites={**BASE_SUITES, "arithmetic": 0.64, "factual_qa": 0.84, "reading": 0.735},
    )
    bad = Candidate(
        "dash2",
        perturbed_snapshot(model_dir, snapshots / "dash2", seed=12, scale=0.05),
        target=0.45,
        drift=9.8,
        kl=0.031,
        iterations=4,
        suites={**BASE_SUITES, "arithmetic": 0.66, "reading": 0.61},
        on_ray=True,
    )
    seed(server.data_dir, [good, bad])
    assert good.approved and not bad.approved  # the real gate judged the invented scores
    before = serving(server)
    yield {"good": good, "bad": bad, "before": before}
    if serving(server) != before:
        assert admin(server, "POST", "/admin/rollback", json={"to": before}).status_code == 200


def sign_in(page, server, key: str) -> None:
    page.goto(server.url + "/admin/dashboard")
    page.fill("#key-input", key)
    page.press("#key-input", "Enter")


def line_points(page, chart: str) -> dict[str, int]:
    """Series name -> number of points drawn in its SVG path (counted from the path data)."""
    paths = page.locator(f"#{chart} g.series")
    result = {}
    for i in range(paths.count()):
        group = paths.nth(i)
        d = group.locator("path.line").get_attribute("d")
        result[group.get_attribute("data-series")] = len(re.findall(r"[ML]\d", d))
    return result


def test_page_is_keyless_static_and_locked_down(server):
    page = httpx.get(server.url + "/admin/dashboard")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    for asset, kind in (("dashboard.js", "text/javascript"), ("dashboard.css", "text/css")):
        r = httpx.get(f"{server.url}/admin/dashboard/{asset}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind)
        assert f"/admin/dashboard/{asset}" in page.text
    for name in ("dashboard.html", "routes.py", "..%2Froutes.py", "__init__.py"):
        r = httpx.get(f"{server.url}/admin/dashboard/{name}")
        assert r.status_code == 404 and r.json()["error"]["type"] == "not_found_error", name
    # The page opens nothing: its data still needs the key.
    assert httpx.get(server.url + "/admin/versions").status_code == 401


def test_wrong_key_shows_the_prompt_and_no_data(server, seeded, watched):
    page = watched.page
    sign_in(page, server, "pk-not-the-admin-key")
    expected = httpx.get(
        server.url + "/admin/versions", headers={"authorization": "Bearer pk-not-the-admin-key"}
    )
    assert expected.status_code == 401
    error = page.locator("#key-error")
    error.wait_for(state="visible")
    assert expected.json()["error"]["message"] in error.inner_text()
    assert page.locator("#login").is_visible() and not page.locator("#dashboard").is_visible()
    assert page.locator("#versions-table > tbody > tr").count() == 0
    assert page.locator("#served-version").inner_text() == ""
    assert page.evaluate("sessionStorage.getItem('perennial.adminKey')") is None


def test_dashboard_shows_plots_and_promotes_and_rolls_back(server, seeded, watched):
    page, good, bad, before = watched.page, seeded["good"], seeded["bad"], seeded["before"]
    sign_in(page, server, ADMIN_KEY)
    expect(page.locator("#served-version")).to_have_text(before)
    page.uncheck("#auto-refresh")  # no re-render under a click; each action refreshes itself
    assert page.locator("#model-name").inner_text() == httpx.get(server.url + "/health").json()["model"]

    # --- the version history with gate decisions and reasons --------------------------------
    listing = {v["id"]: v for v in admin(server, "GET", "/admin/versions").json()["data"]}
    rows = page.locator("#versions-table > tbody > tr")  # not the rows of nested check tables
    expect(rows).to_have_count(len(listing))
    for c in (good, bad):
        row = page.locator(f"#versions-table tr[data-version={c.version}]")
        assert row.locator(".gate .badge").inner_text() == ("passed" if c.approved else "failed")
        assert row.locator("ul.reasons li").all_inner_texts() == listing[c.version]["gate"]["reasons"]
        checks = c.gate["checks"]
        assert row.locator("details summary").inner_text() == (
            f"{sum(ch['passed'] for ch in checks)}/{len(checks)} checks passed"
        )
        disk = listing[c.version]["disk"]  # what the retention policy left on disk
        want = f"{disk['weights_bytes'] / 1e6:.0f} MB" if disk["stored"] else "seed log"
        assert want in row.locator("td.disk").inner_text()

    # --- forgetting curves: per round (base + every judged candidate) and per iteration --------
    judged = [v for v in reversed(listing.values()) if (v["metrics"] or {}).get("drift") is not None]
    # Candidates of rounds that ran earlier in the session come first.
    assert [v["id"] for v in judged][-2:] == [good.version, bad.version]
    per_round = line_points(page, "chart-rounds")
    assert set(per_round) == {"held-out target", "drift ‖θ−θ₀‖", *(f"suite {s}" for s in BASE_SUITES)}

    # a candidate rejected on the held-out target alone (before the suites) has no suite points
    def scored_suites(v) -> bool:
        checks = (v.get("gate") or {}).get("checks")
        return bool(isinstance(checks, dict) and checks.get("scores", {}).get("candidate", {}).get("suites"))

    scored = [v for v in judged if scored_suites(v)]
    # the held-out target line: the first incumbent's target, then each candidate's where measured
    # (a round whose held-out pool was too small to score has none)
    metrics = [v["metrics"] or {} for v in judged]
    start = metrics[0].get("incumbent_target") if judged[0].get("parent") == "base" else None
    targets = [start, *(m.get("target") for m in metrics)]
    assert per_round["held-out target"] == sum(t is not None for t in targets), per_round
    assert per_round["drift ‖θ−θ₀‖"] == 1 + len(judged)
    assert {v for k, v in per_round.items() if k.startswith("suite ")} == {1 + len(scored)}, per_round
    assert page.locator("#chart-rounds circle").count() == sum(per_round.values())
    # KL is reported (no max_kl veto by default), so no veto line is drawn
    assert line_points(page, "chart-rounds-kl") == {
        "KL(candidate‖base)": 1 + len(scored)
    }  # KL beside the suites
    # the forgetting budget: one interval per suite and judged version, the budget line
    forgetting = page.locator("#forgetting-plot")
    assert forgetting.locator("g.ci-point").count() >= 2 * len(BASE_SUITES)
    assert forgetting.locator("line.budget").count() >= 1
    # The newest round with a candidate (dash2's) is shown first; then pick dash1's.
    fitness = line_points(page, "chart-iter-fitness")
    assert set(fitness) == {"fitness mean", "fitness max", "target", "drift ‖θ−θ₀‖"}
    assert set(fitness.values()) == {bad.iterations}
    # its learner ran on Ray: each iteration says which actor did what; the last, which one died
    actors = page.locator("#iterations-table tbody td.actors")
    expect(actors.first).to_contain_text("actor-1 (10.0.0.2): 4 members")
    expect(actors.last).to_contain_text("actor-1 failed: ActorDiedError")
    page.select_option("#round-select", str(good.round_id))
    expect(page.locator("#iterations-table tbody td.actors").first).to_have_text("-")
    expect(page.locator("#iterations-table tbody tr")).to_have_count(good.iterations)
    assert set(line_points(page, "chart-iter-fitness").values()) == {good.iterations}
    assert set(line_points(page, "chart-iter-update").values()) == {good.iterations}

    # --- promote the approved candidate with the page's button -------------------------------
    page.click(f"#versions-table button.promote[data-version={good.version}]")
    expect(page.locator("#confirm-title")).to_have_text(f"Promote {good.version}")
    page.click("#confirm-ok")
    expect(page.locator("#served-version")).to_have_text(good.version, timeout=SWAP_TIMEOUT_MS)
    assert httpx.get(server.url + "/health").json()["version"] == good.version
    assert serving(server) == good.version
    expect(page.locator("#banner")).to_contain_text(f"Now serving {good.version}")
    page.select_option("#lineage-select", "promoted")
    promoted = [v for v in judged if v["status"] == "promoted" or v["id"] == good.version]
    assert set(line_points(page, "chart-rounds").values()) == {1 + len(promoted)}
    page.select_option("#lineage-select", "all")
    shot = page.screenshot(full_page=True)
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 20_000
    if os.environ.get("PERENNIAL_UPDATE_SCREENSHOT") == "1":
        README_SCREENSHOT.write_bytes(shot)

    # --- a forced promotion without a reason: the API's error message, nothing changes --------
    refused = admin(server, "POST", f"/admin/versions/{bad.version}/promote", json={"force": True})
    assert refused.status_code == 400
    page.click(f"#versions-table button.promote[data-version={bad.version}]")
    expect(page.locator("#confirm-reasons li")).to_have_count(len(bad.gate["reasons"]))
    page.click("#confirm-ok")
    expect(page.locator("#confirm-error")).to_have_text(refused.json()["error"]["message"])
    page.click("#confirm-cancel")
    assert serving(server) == good.version

    # --- roll back to the previous version with the page's button ----------------------------
    page.click("#rollback-previous")
    page.fill("#confirm-reason", "dashboard test rollback")
    page.click("#confirm-ok")
    expect(page.locator("#served-version")).to_have_text(before, timeout=SWAP_TIMEOUT_MS)
    assert httpx.get(server.url + "/health").json()["version"] == before
    assert serving(server) == before
    last = admin(server, "GET", "/admin/audit").json()["data"][0]
    assert (last["action"], last["who"], last["target"], last["reason"]) == (
        "rollback",
        "admin",
        before,
        "dashboard test rollback",
    )
    expect(page.locator("#audit-table tbody tr").first).to_contain_text("rollback")

    # The key never left the page except as a header: not in a URL, not in the server's log.
    assert not [u for u in watched.urls if ADMIN_KEY in u]
    assert ADMIN_KEY not in server.log_file.read_text(errors="replace")
