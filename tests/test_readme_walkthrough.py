"""The README's "Your own data" walkthrough works when pasted: its shell block runs as written (only the port
is changed to a free one) in a fresh directory holding the repository's config, data and examples, and
trains, promotes, serves with real gunicorn and decides an applicant with missing values."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def walkthrough() -> str:
    """The first ``sh`` block of the README's "Your own data" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Your own data") :]
    section = section[: section.index("\n## ", 1)]
    match = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert match, "the README's 'Your own data' section has no sh block"
    return match.group(1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _json_objects(text: str) -> list[Any]:
    decoder = json.JSONDecoder()
    out, i = [], text.find("{")
    while i != -1:
        try:
            obj, end = decoder.raw_decode(text, i)
        except json.JSONDecodeError:
            i = text.find("{", i + 1)
            continue
        out.append(obj)
        i = text.find("{", end)
    return out


def test_the_own_data_walkthrough_runs_as_pasted(tmp_path: Path) -> None:
    script = walkthrough()
    assert "credit-decision train --config config/synthetic_lender/training.yaml" in script
    assert "models promote" in script and "credit-decision serve --model-store" in script
    port = _free_port()
    script = script.replace("8001", str(port))
    for name in ("config", "data", "examples", ".venv"):
        (tmp_path / name).symlink_to(REPO / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CREDIT_DECISION_") and k != "DATABASE_URL"}
    env["WEB_CONCURRENCY"] = "1"
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    # trained into the walkthrough's own store, listed, promoted, served from it
    store = tmp_path / "var" / "lender-store"
    assert (store / "synthetic-lender-gbt" / "v1" / "model_card.md").is_file()
    assert "champion is now synthetic-lender-gbt v1" in out
    assert f"credit-decision API on http://127.0.0.1:{port}" in out
    (decision,) = [o for o in _json_objects(out) if isinstance(o, dict) and "decision_id" in o]
    assert decision["application_id"] == "SL-2026-004711"
    assert decision["model"]["name"] == "synthetic-lender-gbt"
    assert decision["explanation"]["attributions"]["monthly_income"] != 0.0  # a missing value has its own effect
    # what the README says the answer is
    assert decision["decision"] == "refer" and decision["score"]["value"] == 523 and decision["risk_band"] == "D"
    assert [r["code"] for r in decision["reasons"]] == ["S01M", "S04", "S06", "S05"]
    assert decision["reasons"][0]["customer_text"] == "No information on your income was provided"
    # the decision was recorded in the walkthrough directory's store
    assert (tmp_path / "var" / "decisions.sqlite3").is_file()
    # the server stopped with the walkthrough's last line
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
