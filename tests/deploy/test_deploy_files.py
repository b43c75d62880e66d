"""The deploy files as shipped: validated offline (hadolint, kubernetes-validate, the compose specification),
all running the processes deploy/Procfile describes, and an image that gets what it needs to serve."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from tests.processes import procfile

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
BIN = Path(sys.executable).parent


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=180)


def placeholders_as_procfile(tokens: list[str]) -> list[str]:
    """Kubernetes' $(NAME) and compose's ${NAME:-default} read as the Procfile's ${NAME}."""
    tokens = [re.sub(r"\$\(([A-Z_][A-Z0-9_]*)\)", r"${\1}", token) for token in tokens]
    return [re.sub(r"\$\{([A-Z_][A-Z0-9_]*):-[^}]*\}", r"${\1}", token) for token in tokens]


def k8s_documents() -> list[dict]:
    return [doc for doc in yaml.safe_load_all((DEPLOY / "k8s" / "strata.yaml").read_text()) if doc]


def k8s(kind: str, name: str) -> dict:
    return next(doc for doc in k8s_documents() if doc["kind"] == kind and doc["metadata"]["name"] == name)


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


# --- Offline validators -----------------------------------------------------------------------------


def test_the_dockerfile_passes_hadolint():
    result = run(str(BIN / "hadolint"), "deploy/Dockerfile")

    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_manifests_are_valid_for_kubernetes_strictly():
    result = run(str(BIN / "kubernetes-validate"), "--strict", "deploy/k8s/strata.yaml")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource ingress/strata" in result.stdout


def test_the_compose_file_follows_the_compose_specification():
    # check-jsonschema's vendored copy of the compose-spec schema: no network needed.
    result = run(str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", "deploy/compose.yaml")

    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.skipif(not shutil.which("nginx"), reason="nginx is installed by tests/run.sh")
def test_the_nginx_template_renders_into_a_configuration_nginx_accepts(tmp_path):
    from tests.deploy.test_topology import nginx_configuration, self_signed_certificate

    certificate, key = self_signed_certificate(tmp_path, "localhost")
    main = nginx_configuration(tmp_path, upstreams=[1, 2], http_port=8080, https_port=8443, cert=certificate, key=key)

    result = run(shutil.which("nginx"), "-t", "-c", str(main))

    assert result.returncode == 0, result.stderr


# --- One description of the processes ----------------------------------------------------------------


def test_the_image_kubernetes_and_compose_run_the_procfile_processes():
    processes = procfile()
    cmd = next(line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    shell, flag, script = json.loads(cmd.removeprefix("CMD "))
    web = k8s("Deployment", "strata-web")["spec"]["template"]["spec"]
    worker = k8s("Deployment", "strata-worker")["spec"]["template"]["spec"]
    services = compose()["services"]

    assert set(processes) == {"web", "worker", "release"}
    assert (shell, flag, shlex.split(script)) == ("sh", "-c", ["exec", *processes["web"]])
    assert placeholders_as_procfile(web["containers"][0]["command"]) == processes["web"]
    assert placeholders_as_procfile(worker["containers"][0]["command"]) == processes["worker"]
    assert web["initContainers"][0]["command"] == worker["initContainers"][0]["command"] == processes["release"]
    assert "command" not in services["web"]  # the image's own: the Procfile's web
    assert placeholders_as_procfile(services["worker"]["command"]) == processes["worker"]
    assert services["migrate"]["command"] == processes["release"]


def test_the_web_process_trusts_forwarded_headers_from_the_proxy_only():
    web = procfile()["web"]
    config = k8s("ConfigMap", "strata-config")["data"]
    services = compose()["services"]
    nginx_address = services["nginx"]["networks"]["strata"]["ipv4_address"]

    assert web[web.index("--forwarded-allow-ips") + 1] == "${FORWARDED_ALLOW_IPS}"
    assert "*" not in config["FORWARDED_ALLOW_IPS"]
    assert services["web"]["environment"]["FORWARDED_ALLOW_IPS"] == nginx_address
    assert "FORWARDED_ALLOW_IPS=127.0.0.1" in (DEPLOY / "Dockerfile").read_text()


# --- Kubernetes and compose shape --------------------------------------------------------------------


def test_kubernetes_probes_resources_ingress_and_migrations_before_serving():
    web = k8s("Deployment", "strata-web")["spec"]["template"]["spec"]
    worker = k8s("Deployment", "strata-worker")["spec"]["template"]["spec"]
    ingress = k8s("Ingress", "strata")["spec"]
    container = web["containers"][0]

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for spec in (web, worker):
        resources = spec["containers"][0]["resources"]
        assert resources["requests"]["memory"] and resources["limits"]["memory"]
        assert spec["initContainers"][0]["name"] == "release"  # runs to completion before the pod serves
    assert ingress["ingressClassName"] == "nginx"
    assert ingress["tls"][0]["hosts"] == ["example.com", "*.example.com"]
    assert worker["terminationGracePeriodSeconds"] > 30  # JOBS_SHUTDOWN_GRACE_SECONDS


def test_compose_builds_one_image_with_restart_policies_and_healthchecks():
    services = compose()["services"]
    app = ("migrate", "web", "worker")

    assert [name for name, service in services.items() if "build" in service] == ["migrate"]
    assert len({services[name]["image"] for name in app}) == 1
    assert all(services[name]["restart"] == "unless-stopped" for name in ("db", "redis", "web", "worker", "nginx"))
    assert all("healthcheck" in services[name] for name in ("db", "redis", "web", "nginx"))
    assert "/readyz" in " ".join(services["web"]["healthcheck"]["test"])
    assert services["web"]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}


# --- What goes into the image ------------------------------------------------------------------------


def test_the_build_context_is_an_allow_list_that_leaves_out_the_virtualenv_and_data():
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line[0] == "#"]
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    copied = set()
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            copied.update(line.split()[1:-1])

    assert rules[0] == "*"
    assert copied <= allowed
    assert not allowed & {".venv", ".data", ".git", "tests", "deploy"}
    # Every package the wheel is built from reaches the build stage (the wheel builds without one
    # it finds missing, and the image then fails at its first import).
    packages = re.search(r"include = \[(.*?)\]", (ROOT / "pyproject.toml").read_text()).group(1)  # type: ignore[union-attr]
    assert {name.strip('" *') for name in packages.split(",")} <= copied


@pytest.mark.slow
def test_the_wheel_ships_every_template_static_file_and_the_favicon(tmp_path):
    had_build = (ROOT / "build").exists()
    try:
        result = run(sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), ".")
    finally:
        if not had_build:  # setuptools builds in the source tree: leave it as it was
            shutil.rmtree(ROOT / "build", ignore_errors=True)
    assert result.returncode == 0, result.stderr
    (wheel,) = tmp_path.glob("strata-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    needed = {
        str(path.relative_to(ROOT))
        for pattern in ("*/templates/**/*", "*/static/**/*", "core/root_files/*")
        for path in ROOT.glob(pattern)
        if path.is_file() and not path.is_relative_to(ROOT / "tests") and ".venv" not in path.parts
    }

    assert {"core/templates/base.html", "ai/static/ai/chat.js", "core/root_files/favicon.ico"} <= needed
    assert needed <= shipped, sorted(needed - shipped)
