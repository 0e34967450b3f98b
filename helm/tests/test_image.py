"""The image's contents run every ci/ scenario as the pod would.

No registry is reachable in CI, so the image itself cannot be pulled or
built; its filesystem is assembled instead by .ci/image-rootfs, the script
the Dockerfile's final stage is made of, from the release binary. Each
scenario then runs in a chroot of a read-only copy of it, as uid/gid
10001, in its own mount and network namespaces, with the rendered
ConfigMaps and Secrets bind-mounted at their mount paths (read-only), the
pod's environment, and nothing writable but the data volume and /tmp:

- `leadbridge check` accepts every scenario;
- for the defaults, `serve` answers /healthz and /readyz, takes a lead sent
  by `leadbridge send-test-lead` from inside the image (what `helm test`
  runs), lists it with `leadbridge deliveries list`, and stops cleanly on
  SIGTERM.

Needs root (mount namespaces, chroot): run as root or with passwordless
sudo. LEADBRIDGE_IMAGE_ROOTFS names an assembled filesystem (CI); otherwise
it is assembled from target/release/leadbridge. LEADBRIDGE_REQUIRE_IMAGE=1
(CI) turns a missing one into a failure instead of a skip.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import REPO_ROOT, SCENARIOS
from pod import PodView, pod_view, write_volume

REQUIRE = os.environ.get("LEADBRIDGE_REQUIRE_IMAGE") == "1"
RELEASE_BIN = REPO_ROOT / "target" / "release" / "leadbridge"
SUDO: list[str] = [] if os.geteuid() == 0 else ["sudo", "-n"]
TOOLS = {t: shutil.which(t) or f"/usr/sbin/{t}" for t in
         ("unshare", "mount", "chroot", "ip", "setpriv", "find", "nsenter", "sh")}


def unavailable(reason: str):
    if REQUIRE:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def image_rootfs(tmp_path_factory) -> Path:
    if SUDO and subprocess.run([*SUDO, "true"], capture_output=True).returncode != 0:
        unavailable("the image check needs root or passwordless sudo")
    given = os.environ.get("LEADBRIDGE_IMAGE_ROOTFS")
    if given:
        return Path(given)
    if not RELEASE_BIN.exists():
        unavailable(f"{RELEASE_BIN} not built (cargo build --release)")
    out = tmp_path_factory.mktemp("image") / "rootfs"
    subprocess.run([*SUDO, str(REPO_ROOT / ".ci" / "image-rootfs"), str(out), str(RELEASE_BIN)],
                   check=True, capture_output=True)
    return out


class Container:
    """One pod's container: a read-only copy of the image with its volumes."""

    def __init__(self, rootfs: Path, view: PodView, work: Path) -> None:
        self.view = view
        self.root = work / "root"
        subprocess.run([*SUDO, "cp", "-a", str(rootfs), str(self.root)], check=True)
        self.binds: list[tuple[Path, str, bool]] = []
        for i, vol in enumerate(view.volumes):
            source = work / f"volume-{i}"
            source.mkdir()
            write_volume(vol, source, owner=(view.run_as[0], view.fs_group))
            # The runtime creates mount points before the root is read-only.
            subprocess.run([*SUDO, "mkdir", "-p", f"{self.root}{vol.mount_path}"], check=True)
            self.binds.append((source, vol.mount_path, vol.read_only or not vol.writable))
        self.env = {"PATH": "/usr/local/bin:/bin", **view.env}

    def script(self, tail: str) -> str:
        t = TOOLS
        root = shlex.quote(str(self.root))
        lines = [
            "set -e",
            f"{t['mount']} --bind {root} {root}",
            f"{t['mount']} -o remount,bind,ro {root}",
            f"{t['mount']} -t proc proc {root}/proc",
            f"{t['mount']} --rbind /dev {root}/dev",
        ]
        for source, target, read_only in self.binds:
            dest = shlex.quote(f"{self.root}{target}")
            lines.append(f"{t['mount']} --bind {shlex.quote(str(source))} {dest}")
            if read_only:
                lines.append(f"{t['mount']} -o remount,bind,ro {dest}")
        lines.append(f"{t['ip']} link set lo up")
        lines.append(tail)
        return "\n".join(lines)

    def command(self, tail: str) -> list[str]:
        env = [f"{k}={v}" for k, v in self.env.items()]
        return [*SUDO, "env", "-i", *env, TOOLS["unshare"], "--mount", "--net",
                TOOLS["sh"], "-c", self.script(tail)]

    def leadbridge(self, *args: str) -> list[str]:
        uid, gid = self.view.run_as
        quoted = " ".join(shlex.quote(a) for a in args)
        return self.command(
            f"exec {TOOLS['chroot']} --userspec={uid}:{gid} {shlex.quote(str(self.root))} "
            f"/usr/local/bin/leadbridge {quoted}")

    def writable_paths(self) -> list[str]:
        """What uid 10001 may write to inside the container."""
        uid, gid = self.view.run_as
        root = shlex.quote(str(self.root))
        # The test's directories are not traversable by 10001: the same
        # mounts are seen again under a fresh tmpfs (this namespace only).
        view = "/mnt/container"
        probe = "\n".join([
            f"{TOOLS['mount']} -t tmpfs tmpfs /mnt",
            f"mkdir {view}",
            f"{TOOLS['mount']} --rbind {root} {view}",
            f"{TOOLS['mount']} -o remount,bind,ro {view}",
            f"exec {TOOLS['setpriv']} --reuid={uid} --regid={gid} --clear-groups "
            f"{TOOLS['find']} {view} \\( -path {view}/proc -o -path {view}/dev \\) -prune "
            f"-o -writable -print",
        ])
        run = subprocess.run(self.command(probe), capture_output=True, text=True, timeout=60)
        assert run.returncode == 0, run.stderr
        return sorted(p[len(view):] or "/" for p in run.stdout.split())

    def in_netns(self, pid: int, *argv: str) -> list[str]:
        return [*SUDO, TOOLS["nsenter"], "-t", str(pid), "-n", *argv]


def container_for(render, image_rootfs: Path, name: str, tmp_path: Path) -> Container:
    values = SCENARIOS[name]
    return Container(image_rootfs, pod_view(render(values), values), tmp_path)


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_image_accepts_the_scenario(render, image_rootfs, name, tmp_path):
    c = container_for(render, image_rootfs, name, tmp_path)
    run = subprocess.run(c.leadbridge("check"), capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, f"{run.stdout}\n{run.stderr}"
    for org in SCENARIOS[name]["organizations"]:
        assert org in run.stdout


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_nothing_writable_but_the_data_volume_and_tmp(render, image_rootfs, name, tmp_path):
    c = container_for(render, image_rootfs, name, tmp_path)
    writable = c.writable_paths()
    assert "/tmp" in writable, "the probe did not find /tmp writable: it did not run as expected"
    outside = [p for p in writable if not p.startswith(("/var/lib/leadbridge", "/tmp"))]
    assert outside == []
    # PostgreSQL: no data volume, and the image's own state directory is read-only.
    postgres = "LEADBRIDGE__STORE__URL" in c.view.env
    assert ("/var/lib/leadbridge" in writable) is not postgres


def http_get(c: Container, pid: int, url: str) -> tuple[int, str]:
    """Status and body of a GET from inside the container's network."""
    code = (f"import urllib.request, sys\n"
            f"try:\n  r = urllib.request.urlopen({url!r}, timeout=2)\n"
            f"  print(r.status); print(r.read().decode())\n"
            f"except Exception as e:\n  print(getattr(e, 'code', 0))\n")
    run = subprocess.run(c.in_netns(pid, sys.executable, "-c", code),
                         capture_output=True, text=True, timeout=30)
    status, _, body = run.stdout.partition("\n")
    return int(status.strip() or 0), body


def alert_metrics(render) -> set[str]:
    """The metric names the chart's alert rules query."""
    rendered = render({**SCENARIOS["defaults"], "prometheusRule": {"enabled": True}})
    rules = rendered.one("PrometheusRule")["spec"]["groups"][0]["rules"]
    names = set()
    for rule in rules:
        names.update(re.findall(r"\b(leadbridge_[a-z_]+)\{", rule["expr"]))
    return names


def test_image_serves_the_defaults_and_takes_a_lead(render, image_rootfs, tmp_path):
    c = container_for(render, image_rootfs, "defaults", tmp_path)
    secrets = c.view.volume("/var/run/secrets/leadbridge").files
    code = secrets["contoso-endpoint-secrets"][0].splitlines()[0]
    assert c.view.args == ["serve"]
    server = subprocess.Popen(c.leadbridge(*c.view.args), stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while http_get(c, server.pid, "http://127.0.0.1:8080/healthz")[0] != 200:
            assert server.poll() is None, f"serve exited: {server.stdout.read()}"
            assert time.monotonic() < deadline, "no answer on /healthz within 60s"
            time.sleep(0.5)
        while http_get(c, server.pid, "http://127.0.0.1:9090/readyz")[0] != 200:
            assert time.monotonic() < deadline, "/readyz not 200 within 60s"
            time.sleep(0.5)
        # Every metric the alert rules query is one the application exports.
        status, metrics = http_get(c, server.pid, "http://127.0.0.1:9090/metrics")
        assert status == 200
        wanted = alert_metrics(render)
        assert len(wanted) == 3
        exported = set(re.findall(r"^(leadbridge_[a-z_]+)", metrics, re.MULTILINE))
        assert wanted <= exported, f"not exported: {wanted - exported}"

        # What the chart's helm test pod runs, from inside the image.
        uid, gid = c.view.run_as
        inside = [TOOLS["chroot"], f"--userspec={uid}:{gid}", str(c.root), "/usr/local/bin/leadbridge"]
        env = [f"{k}={v}" for k, v in c.env.items()]
        send = subprocess.run(
            [*SUDO, "env", "-i", *env, TOOLS["nsenter"], "-t", str(server.pid), "-n", "-m",
             *inside, "send-test-lead", "--url", f"http://127.0.0.1:8080/leads/contoso?code={code}"],
            capture_output=True, text=True, timeout=60)
        assert send.returncode == 0, send.stdout + send.stderr
        assert "HTTP 202" in send.stdout
        assert json.loads(send.stdout.strip().splitlines()[-1])["status"] == "accepted"

        listed = subprocess.run(
            [*SUDO, "env", "-i", *env, TOOLS["nsenter"], "-t", str(server.pid), "-n", "-m",
             *inside, "deliveries", "list", "--json"],
            capture_output=True, text=True, timeout=60)
        assert listed.returncode == 0, listed.stdout + listed.stderr
        deliveries: list[dict[str, Any]] = json.loads(listed.stdout)
        assert [d["org"] for d in deliveries] == ["contoso"]
    finally:
        if server.poll() is None:
            subprocess.run([*SUDO, "kill", "-TERM", str(server.pid)], check=False)
    try:
        server.wait(timeout=40)
    except subprocess.TimeoutExpired:
        subprocess.run([*SUDO, "kill", "-KILL", str(server.pid)], check=False)
        pytest.fail("serve did not stop within 40s of SIGTERM")
    output = server.stdout.read()
    assert server.returncode == 0, output


def test_dockerfile_final_stage_is_the_checked_filesystem():
    """The image is what this file checks: scratch + .ci/image-rootfs, as 10001."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    final = text[text.rindex("\nFROM "):]
    assert final.startswith("\nFROM scratch")
    assert "RUN .ci/image-rootfs /rootfs " in text
    assert "COPY --from=builder /rootfs/ /" in final
    assert "USER 10001:10001" in final
    for label in ("org.opencontainers.image.source", "org.opencontainers.image.version"):
        assert label in final
    assert "--mount=type=cache" in text
    cargo = (REPO_ROOT / "Cargo.toml").read_text()
    profile = cargo[cargo.index("[profile.release]"):]
    for setting in ("lto = true", "codegen-units = 1", "strip = true"):
        assert setting in profile
