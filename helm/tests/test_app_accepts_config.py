"""The configuration the chart renders is one the application accepts.

For every ci/ scenario and every every-key/ values file, the volumes the pod
would mount (config.toml, mappings, Secrets, certificate Secrets, the
workload identity token) are written under a temporary directory, their
mount paths rewritten in config.toml and the environment, and the real
binary runs `leadbridge check` with the pod's environment. This keeps the
chart and the Rust config loader from drifting apart: a key the chart
writes and the application refuses fails here. (test_image.py runs the same
check inside the image's filesystem, at the real paths, as uid 10001.)
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import HERE, REPO_ROOT, SCENARIOS, Rendered
from pod import PodView, pod_view, write_volume

BINARY = Path(os.environ.get("LEADBRIDGE_BIN", REPO_ROOT / "target" / "debug" / "leadbridge"))
# CI sets it: a missing binary is then a failure, not a skip.
REQUIRE_BINARY = os.environ.get("LEADBRIDGE_REQUIRE_BIN") == "1"

EVERY_KEY_DIR = HERE / "every-key"
EVERY_KEY: dict[str, dict[str, Any]] = {
    path.stem: yaml.safe_load(path.read_text()) for path in sorted(EVERY_KEY_DIR.glob("*.yaml"))
}


def lay_out(view: PodView, config_path: str, root: Path) -> tuple[Path, dict[str, str]]:
    """Writes the pod's volumes under root; returns config.toml's path and the env."""
    moves: list[tuple[str, str]] = []
    for i, vol in enumerate(view.volumes):
        target = root / f"volume-{i}"
        target.mkdir()
        write_volume(vol, target)
        moves.append((vol.mount_path, str(target)))
    # Longest mount path first, so that /a/b is rewritten before /a.
    moves.sort(key=lambda m: -len(m[0]))

    # One pass: a target (under /tmp) must not be rewritten again as /tmp.
    pattern = re.compile("|".join(re.escape(m) + "(?=/)" for m, _ in moves))
    targets = dict(moves)

    def rewrite(text: str) -> str:
        return pattern.sub(lambda match: targets[match.group(0)], text)

    config_dir, config_name = config_path.rsplit("/", 1)
    (mount, target) = next((m, t) for m, t in moves if m == config_dir)
    config = Path(target) / config_name
    config.write_text(rewrite(config.read_text()))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADBRIDGE", "AZURE_"))}
    env.update({k: rewrite(v) for k, v in view.env.items()})
    env["LEADBRIDGE_CONFIG"] = str(config)
    return config, env


def run_check(rendered: Rendered, values: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess:
    if not BINARY.exists():
        if REQUIRE_BINARY:
            pytest.fail(f"{BINARY} not built")
        pytest.skip(f"{BINARY} not built (cargo build, or set LEADBRIDGE_BIN)")
    view = pod_view(rendered, values)
    config, env = lay_out(view, view.env["LEADBRIDGE_CONFIG"], tmp_path)
    run = subprocess.run(
        [str(BINARY), "check", "--config", str(config)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}\n--- config ---\n{config.read_text()}"
    return run


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_leadbridge_check_accepts_the_rendered_config(render, name, tmp_path):
    values = SCENARIOS[name]
    run = run_check(render(values), values, tmp_path)
    for org in values["organizations"]:
        assert org in run.stdout


@pytest.mark.parametrize("name", sorted(EVERY_KEY))
def test_every_documented_key_is_accepted_by_the_application(render, name, tmp_path):
    values = EVERY_KEY[name]
    run = run_check(render(values), values, tmp_path)
    for org in values["organizations"]:
        assert org in run.stdout
