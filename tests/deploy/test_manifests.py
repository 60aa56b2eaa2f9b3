"""deploy/k8s/ (Kubernetes and KServe manifests) and deploy/docker-compose.yml,
checked offline against the schemas and against the real `fovea serve`.

- The core objects (Deployment, Service, HorizontalPodAutoscaler,
  PodDisruptionBudget) are validated against the Kubernetes 1.30 OpenAPI
  schemas that the PyPI package kubernetes-validate ships, in strict mode: an
  unknown or misspelled field fails.
- The KServe ServingRuntime and InferenceService are validated against the
  JSON Schemas in tests/deploy/schemas/ (written from KServe v0.14's CRDs;
  their core/v1 parts point into the same Kubernetes 1.30 schemas).
- Every flag and FOVEA_* variable a manifest passes must be one that
  `fovea serve --help` lists (binary: FOVEA_BIN, default target/debug/fovea),
  listen addresses must match the container ports, Service and probe ports
  must name real container ports, and the termination grace period must
  cover the preStop sleep plus fovea's shutdown timeout.
- fovea is then started with each manifest's own args and environment (paths
  mapped to the repository's models/, listen addresses to free loopback
  ports), every probe path is fetched (200 expected), and SIGTERM must end
  it cleanly.
- Negative checks show the validators and the flag check catch mistakes.

Needs: tests/deploy/requirements.txt (kubernetes-validate, jsonschema,
PyYAML) and the fovea binary. Runs offline in seconds:

    .venv/bin/python -m pytest tests/deploy/test_manifests.py -q -p no:cacheprovider
"""

import copy
import importlib.util
import json
import math
import os
import sys
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import referencing
import referencing.jsonschema
import yaml
from kubernetes_validate.utils import schema_contents

REPO_ROOT = Path(__file__).resolve().parents[2]

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fovea_env import fovea_binary, free_port, ort_environment  # noqa: E402
K8S_DIR = REPO_ROOT / "deploy" / "k8s"
KSERVE_DIR = K8S_DIR / "kserve"
COMPOSE_FILE = REPO_ROOT / "deploy" / "docker-compose.yml"
NGINX_CONF = REPO_ROOT / "deploy" / "nginx" / "nginx.conf"
SCHEMAS = Path(__file__).resolve().parent / "schemas"
MODELS = REPO_ROOT / "models"

# The Kubernetes version the manifests target (the native preStop `sleep`
# action needs 1.30).
K8S_VERSION = "1.30"
CORE_FILES = ["deployment.yaml", "service.yaml", "hpa.yaml", "pdb.yaml"]
CORE_KINDS = {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"}
KSERVE_SCHEMAS = {
    "ServingRuntime": "servingruntime-v1alpha1.json",
    "InferenceService": "inferenceservice-v1beta1.json",
}
# A single ONNX file served by the KServe runtime, for the live run.
KSERVE_MODEL_SOURCE = MODELS / "resnet18-cifar10" / "6" / "model.onnx"
STARTUP_TIMEOUT = float(os.environ.get("FOVEA_STARTUP_TIMEOUT", "60"))


# ------------------------------------------------------------------ loading

def load_yaml_docs(path: Path) -> list:
    with open(path) as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def load_one(path: Path) -> dict:
    docs = load_yaml_docs(path)
    assert len(docs) == 1, f"{path}: expected one YAML document, found {len(docs)}"
    return docs[0]


@pytest.fixture(scope="module")
def core() -> dict:
    """kind → object, for the files kustomization.yaml lists."""
    objects = {}
    for name in CORE_FILES:
        for doc in load_yaml_docs(K8S_DIR / name):
            assert doc["kind"] not in objects, f"two {doc['kind']} objects in deploy/k8s"
            objects[doc["kind"]] = doc
    assert set(objects) == CORE_KINDS
    return objects


@pytest.fixture(scope="module")
def kserve() -> dict:
    objects = {}
    for path in sorted(KSERVE_DIR.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            objects[doc["kind"]] = doc
    assert set(objects) == set(KSERVE_SCHEMAS), f"deploy/k8s/kserve holds {sorted(objects)}"
    return objects


@pytest.fixture(scope="module")
def compose() -> dict:
    return load_one(COMPOSE_FILE)


# --------------------------------------------------------- fovea's help text

@dataclass(frozen=True)
class Option:
    flag: str                 # "--models"
    takes_value: bool
    env: "str | None"         # "FOVEA_MODELS"
    default: "str | None"     # "models"


_OPTION_HEADER = re.compile(r"^\s+(?:-[A-Za-z], )?(--[a-z0-9][a-z0-9-]*)(?: <([A-Z0-9_]+)>)?\s*$")


def parse_help(text: str) -> dict:
    """flag → Option, from clap's long help (`fovea serve --help`)."""
    options = {}
    current = None
    block = []

    def close():
        if current is not None:
            body = "\n".join(block)
            env = re.search(r"\[env: ([A-Z0-9_]+)=", body)
            default = re.search(r"\[default: ([^\]]*)\]", body)
            options[current[0]] = Option(current[0], current[1], env and env.group(1), default and default.group(1))

    for line in text.splitlines():
        m = _OPTION_HEADER.match(line)
        if m:
            close()
            current, block = (m.group(1), m.group(2) is not None), []
        elif current is not None:
            block.append(line)
    close()
    return options


@pytest.fixture(scope="module")
def serve_help() -> str:
    out = subprocess.run([str(fovea_binary()), "serve", "--help"], capture_output=True, text=True,
                         timeout=60, env=clean_env())
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def options(serve_help) -> dict:
    opts = parse_help(serve_help)
    # The help text has the options every test here relies on.
    for flag in ("--models", "--model", "--http", "--grpc", "--shutdown-timeout-secs", "--help"):
        assert flag in opts, f"`fovea serve --help` does not list {flag}:\n{serve_help}"
    assert opts["--http"].takes_value and not opts["--help"].takes_value
    return opts


# ------------------------------------------------------------ the flag check

def check_invocation(args: list, env_names: list, options: dict) -> list:
    """Problems with running `fovea <args>` with these environment variables
    set, as `fovea serve --help` describes fovea: every `--flag` must exist,
    take a value exactly when fovea's does, come at most once, and every
    FOVEA_* variable must be one that fovea reads. Returns messages; empty
    when all is well."""
    problems = []
    if not args or args[0] != "serve":
        problems.append(f"args must start with the subcommand `serve`, got {args[:1]}")
        return problems
    seen = set()
    i = 1
    while i < len(args):
        token = str(args[i])
        i += 1
        if not token.startswith("--"):
            problems.append(f"unexpected argument {token!r} (fovea serve takes no positional arguments)")
            continue
        flag, eq, inline_value = token.partition("=")
        option = options.get(flag)
        if option is None:
            problems.append(f"unknown flag {flag} (not in `fovea serve --help`)")
            if not eq and i < len(args) and not str(args[i]).startswith("--"):
                i += 1  # its value, most likely
            continue
        if flag in seen:
            problems.append(f"{flag} given twice")
        seen.add(flag)
        if option.takes_value and not eq:
            if i >= len(args) or str(args[i]).startswith("--"):
                problems.append(f"{flag} needs a value")
            else:
                i += 1
        elif not option.takes_value and eq:
            problems.append(f"{flag} takes no value, got {inline_value!r}")
    known_env = {o.env for o in options.values() if o.env}
    for name in env_names:
        if name.startswith("FOVEA_") and name not in known_env:
            problems.append(f"unknown environment variable {name} (not in `fovea serve --help`)")
    return problems


def effective(flag: str, args: list, env: dict, options: dict) -> "str | None":
    """The value fovea uses for `flag`: the command line, else its
    environment variable, else the default (clap's precedence)."""
    for i, token in enumerate(args):
        token = str(token)
        if token == flag and i + 1 < len(args):
            return str(args[i + 1])
        if token.startswith(flag + "="):
            return token.split("=", 1)[1]
    option = options[flag]
    if option.env and env.get(option.env) is not None:
        return env[option.env]
    return option.default


def host_port(address: str) -> "tuple[str, int]":
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


# ---------------------------------------------------------------- workloads

@dataclass
class Workload:
    """One way the manifests run fovea: its args, environment, ports, probes
    and the paths it reads, with local stand-ins for the live run."""
    name: str
    args: list
    env: dict                      # name → literal value (None when valueFrom)
    env_from: dict                 # name → valueFrom (Kubernetes)
    ports: dict                    # container port name → number ("" when unnamed)
    probes: list                   # (kind, path, port as written)
    mounts: dict = field(default_factory=dict)   # container path → local path


def container_env(container: dict) -> "tuple[dict, dict]":
    literal, value_from = {}, {}
    for item in container.get("env", []):
        literal[item["name"]] = item.get("value")
        if "valueFrom" in item:
            value_from[item["name"]] = item["valueFrom"]
    return literal, value_from


def container_probes(container: dict) -> list:
    probes = []
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            get = container[kind].get("httpGet")
            assert get is not None, f"{container['name']}.{kind}: expected an httpGet probe"
            probes.append((kind, get["path"], get["port"]))
    return probes


def container_ports(container: dict) -> dict:
    return {p.get("name", ""): p["containerPort"] for p in container.get("ports", [])}


def deployment_container(core) -> dict:
    containers = core["Deployment"]["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["fovea"]
    return containers[0]


def runtime_container(kserve) -> dict:
    containers = kserve["ServingRuntime"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["kserve-container"], "KServe expects the container `kserve-container`"
    return containers[0]


def workloads(core, kserve, compose) -> list:
    dep = deployment_container(core)
    env, env_from = container_env(dep)
    result = [Workload("deployment", dep["args"], env, env_from, container_ports(dep), container_probes(dep),
                       {"/models": MODELS})]

    rt = runtime_container(kserve)
    env, env_from = container_env(rt)
    result.append(Workload("kserve", rt["args"], env, env_from, container_ports(rt), container_probes(rt),
                           {"/mnt/models": None}))  # filled in by the live test

    svc = compose["services"]["fovea"]
    env = dict(svc.get("environment", {}))
    mounts = {}
    for volume in svc.get("volumes", []):
        source, target = volume.split(":")[:2]
        mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    ports = {str(p): int(p) for p in svc.get("expose", [])}
    health = " ".join(svc["healthcheck"]["test"])
    m = re.search(r"http://[^/\s]+:(\d+)(/\S*)", health)
    assert m, f"compose fovea healthcheck: no http URL in {health!r}"
    result.append(Workload("compose", svc["command"], {k: str(v) for k, v in env.items()}, {}, ports,
                           [("healthcheck", m.group(2), int(m.group(1)))], mounts))
    return result


@pytest.fixture(scope="module")
def all_workloads(core, kserve, compose) -> dict:
    return {w.name: w for w in workloads(core, kserve, compose)}


WORKLOADS = ["deployment", "kserve", "compose"]


# ------------------------------------------------------- schema validation

def test_kustomization_lists_the_core_objects():
    kustomization = load_one(K8S_DIR / "kustomization.yaml")
    assert kustomization["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert kustomization["kind"] == "Kustomization"
    assert set(kustomization) <= {"apiVersion", "kind", "resources", "namespace", "labels", "images"}
    assert sorted(kustomization["resources"]) == sorted(CORE_FILES)
    for name in kustomization["resources"]:
        assert (K8S_DIR / name).is_file(), name
    # Every YAML file in deploy/k8s is either listed there or a KServe object.
    on_disk = {p.name for p in K8S_DIR.glob("*.yaml")} - {"kustomization.yaml"}
    assert on_disk == set(CORE_FILES)


@pytest.mark.parametrize("kind", sorted(CORE_KINDS))
def test_core_object_validates_against_kubernetes_schema(core, kind):
    kubernetes_validate.validate(core[kind], K8S_VERSION, strict=True)


def test_kubernetes_validation_bites(core):
    """A misspelled field, a wrong type and a missing required field each fail."""
    bad = copy.deepcopy(core["Deployment"])
    container = bad["spec"]["template"]["spec"]["containers"][0]
    container["readinessProbee"] = container.pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinessProbee"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)

    bad = copy.deepcopy(core["Deployment"])
    bad["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "45s"
    with pytest.raises(kubernetes_validate.ValidationError, match="'45s' is not of type"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)

    bad = copy.deepcopy(core["Service"])
    bad["spec"]["ports"][0]["targetPortt"] = bad["spec"]["ports"][0].pop("targetPort")
    with pytest.raises(kubernetes_validate.ValidationError, match="targetPortt"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)

    bad = copy.deepcopy(core["HorizontalPodAutoscaler"])
    del bad["spec"]["scaleTargetRef"]
    with pytest.raises(kubernetes_validate.ValidationError, match="'scaleTargetRef' is a required property"):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


@pytest.fixture(scope="module")
def kserve_registry() -> referencing.Registry:
    """The KServe schemas plus the Kubernetes 1.30 strict definitions they
    point into (https://kubernetes.io/api/_definitions.json), all local."""
    definitions = schema_contents(f"kubernetes-json-schema/v{K8S_VERSION}.0-local-strict/_definitions.json", K8S_VERSION)
    resources = [referencing.Resource.from_contents(definitions)]
    for name in KSERVE_SCHEMAS.values():
        resources.append(referencing.Resource.from_contents(json.loads((SCHEMAS / name).read_text())))
    return referencing.Registry().with_resources((r.id(), r) for r in resources)


def kserve_validator(kind: str, registry) -> jsonschema.Draft202012Validator:
    schema = json.loads((SCHEMAS / KSERVE_SCHEMAS[kind]).read_text())
    return jsonschema.Draft202012Validator(schema, registry=registry)


@pytest.mark.parametrize("kind", sorted(KSERVE_SCHEMAS))
def test_kserve_schema_is_sound(kind, kserve_registry):
    """Valid JSON Schema, cites its KServe version, and every $ref resolves
    (including the branches no manifest exercises)."""
    schema = json.loads((SCHEMAS / KSERVE_SCHEMAS[kind]).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    assert "KServe v0.14" in schema["title"]
    resolver = kserve_registry.resolver(base_uri=schema["$id"])
    refs = []

    def walk(node):
        if isinstance(node, dict):
            if "$ref" in node:
                refs.append(node["$ref"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    assert refs
    for ref in refs:
        resolver.lookup(ref)  # raises when it does not resolve


@pytest.mark.parametrize("kind", sorted(KSERVE_SCHEMAS))
def test_kserve_object_validates_against_crd_schema(kserve, kserve_registry, kind):
    errors = sorted(kserve_validator(kind, kserve_registry).iter_errors(kserve[kind]), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{'.'.join(map(str, e.path))}: {e.message}" for e in errors)


def test_kserve_validation_bites(kserve, kserve_registry):
    """Typos at the KServe level and inside the embedded core/v1 types fail,
    each for the reason planted."""
    validators = {kind: kserve_validator(kind, kserve_registry) for kind in KSERVE_SCHEMAS}

    def fails(kind, mutate, expected):
        bad = copy.deepcopy(kserve[kind])
        mutate(bad["spec"])
        messages = [e.message for e in validators[kind].iter_errors(bad)]
        assert any(expected in m for m in messages), f"{kind}: expected an error about {expected!r}, got {messages}"

    def rename(obj, old, new):
        obj[new] = obj.pop(old)

    fails("ServingRuntime", lambda s: rename(s, "supportedModelFormats", "supportedModelFormat"), "supportedModelFormat")
    fails("ServingRuntime", lambda s: rename(s["containers"][0], "args", "argz"), "argz")
    fails("ServingRuntime", lambda s: rename(s["containers"][0]["readinessProbe"]["httpGet"], "path", "pathh"), "pathh")
    fails("ServingRuntime", lambda s: s.update(protocolVersions=["v3"]), "'v3' is not one of")
    fails("ServingRuntime", lambda s: s["supportedModelFormats"][0].update(autoSelect="yes"), "'yes' is not of type")
    fails("InferenceService", lambda s: rename(s["predictor"]["model"], "storageUri", "storageURI"), "storageURI")
    fails("InferenceService", lambda s: s["predictor"]["model"].pop("modelFormat"), "'modelFormat' is a required property")
    fails("InferenceService", lambda s: rename(s["predictor"]["model"]["resources"], "limits", "limit"), "limit")
    fails("InferenceService", lambda s: rename(s["predictor"], "minReplicas", "minReplica"), "minReplica")
    fails("InferenceService", lambda s: s.update(predictr=s.pop("predictor")), "'predictor' is a required property")


# ----------------------------------------------- consistency between objects

def test_selectors_and_targets_match(core):
    dep = core["Deployment"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert pod_labels.get("app.kubernetes.io/name") == "fovea"
    assert dep["metadata"]["labels"].get("app.kubernetes.io/name") == "fovea"

    def selects(match_labels):
        return match_labels and all(pod_labels.get(k) == v for k, v in match_labels.items())

    assert selects(dep["spec"]["selector"]["matchLabels"])
    assert selects(core["Service"]["spec"]["selector"])
    assert selects(core["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"])
    target = core["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == ("apps/v1", "Deployment", dep["metadata"]["name"])
    # The HPA owns the replica count.
    assert "replicas" not in dep["spec"]
    # A node drain can still evict a pod: more replicas than the budget keeps.
    hpa_min = core["HorizontalPodAutoscaler"]["spec"]["minReplicas"]
    assert hpa_min > core["PodDisruptionBudget"]["spec"]["minAvailable"]
    # CPU utilisation is measured against requests: they must be set.
    assert "cpu" in deployment_container(core)["resources"]["requests"]


def test_security_context(core, kserve):
    pod = core["Deployment"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for container in (deployment_container(core), runtime_container(kserve)):
        sc = container["securityContext"]
        assert sc["runAsNonRoot"] is True and sc["runAsUser"] == 10001
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["capabilities"]["drop"] == ["ALL"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault"
        assert any(m["mountPath"] == "/tmp" for m in container["volumeMounts"])
    mounts = {m["mountPath"]: m for m in deployment_container(core)["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"] == "fovea-models"


def test_inferenceservice_uses_the_runtime(kserve):
    runtime, isvc = kserve["ServingRuntime"], kserve["InferenceService"]
    model = isvc["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"] == "fovea"
    formats = {(f["name"], f.get("version")) for f in runtime["spec"]["supportedModelFormats"]}
    assert (model["modelFormat"]["name"], model["modelFormat"].get("version")) in formats
    assert ("onnx", "1") in formats
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    assert set(runtime["spec"]["protocolVersions"]) == {"v2", "grpc-v2"}
    assert model["storageUri"].startswith(("pvc://", "s3://", "gs://", "https://", "http://"))


# ------------------------------------------------- flags, ports and probes

@pytest.mark.parametrize("name", WORKLOADS)
def test_flags_and_env_are_real(all_workloads, options, name):
    w = all_workloads[name]
    problems = check_invocation(w.args, list(w.env), options)
    assert not problems, f"{name}: " + "; ".join(problems)


def test_flag_check_bites(options):
    good = ["serve", "--models", "/models", "--http", "0.0.0.0:8080", "--allow-url-fetch"]
    assert check_invocation(good, ["FOVEA_LOG_FORMAT", "OTHER"], options) == []
    assert check_invocation(["serve", "--modles", "/models"], [], options) == \
        ["unknown flag --modles (not in `fovea serve --help`)"]
    assert check_invocation(["serve", "--shutdown-timeout", "30"], [], options)  # it is --shutdown-timeout-secs
    assert check_invocation(["serve", "--http"], [], options) == ["--http needs a value"]
    assert check_invocation(["serve", "--http", "--grpc", "off"], [], options) == ["--http needs a value"]
    assert check_invocation(["serve", "--allow-url-fetch=yes"], [], options)
    assert check_invocation(["serve", "--http", "a", "--http", "b"], [], options) == ["--http given twice"]
    assert check_invocation(["serve", "models"], [], options)
    assert check_invocation(["--models", "/models"], [], options)  # no subcommand
    assert check_invocation(["serve"], ["FOVEA_MODLES"], options) == \
        ["unknown environment variable FOVEA_MODLES (not in `fovea serve --help`)"]


@pytest.mark.parametrize("name", WORKLOADS)
def test_listen_addresses_match_container_ports(all_workloads, options, name):
    w = all_workloads[name]
    http_host, http_port = host_port(effective("--http", w.args, w.env, options))
    grpc = effective("--grpc", w.args, w.env, options)
    # Reachable from outside the container: not fovea's default 127.0.0.1.
    assert http_host in ("0.0.0.0", "::"), f"{name}: --http {http_host}:{http_port} is not reachable from outside"
    assert http_port in w.ports.values(), f"{name}: --http port {http_port} is no container port ({w.ports})"
    if name == "kserve":
        # One port (Knative allows one), named as Knative wants for HTTP/1.
        assert w.ports == {"http1": http_port}
        assert grpc != "off" and host_port(grpc) == ("0.0.0.0", 8500)  # documented as the gRPC override
    else:
        grpc_host, grpc_port = host_port(grpc)
        assert grpc_host in ("0.0.0.0", "::")
        assert grpc_port in w.ports.values()
        if name == "deployment":
            assert w.ports == {"http": http_port, "grpc": grpc_port}
    # These are fovea's defaults' ports, which nginx.conf and the docs assume.
    assert http_port == host_port(options["--http"].default)[1] == 8080
    assert host_port(options["--grpc"].default)[1] == 8500


@pytest.mark.parametrize("name", WORKLOADS)
def test_probes_target_the_http_port(all_workloads, options, name):
    w = all_workloads[name]
    http_port = host_port(effective("--http", w.args, w.env, options))[1]
    assert w.probes
    for kind, path, port in w.probes:
        number = w.ports.get(port) if isinstance(port, str) else port
        assert number == http_port, f"{name} {kind}: port {port!r} is not fovea's HTTP port {http_port}"
        assert path.startswith("/")
    if name == "deployment":
        assert {(k, p) for k, p, _ in w.probes} == {
            ("startupProbe", "/readyz"), ("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")}


def test_service_targets_container_ports(core):
    ports = container_ports(deployment_container(core))
    service_ports = {p["name"]: p for p in core["Service"]["spec"]["ports"]}
    assert set(service_ports) == {"http", "grpc"}
    for name, p in service_ports.items():
        target = p["targetPort"]
        if isinstance(target, str):
            assert target in ports, f"Service port {name}: targetPort {target!r} names no container port"
            target = ports[target]
        assert target in ports.values()
        assert p["port"] == ports[name]
    assert service_ports["http"]["appProtocol"] == "http"
    assert service_ports["grpc"]["appProtocol"] == "kubernetes.io/h2c"
    assert core["Service"]["spec"].get("type", "ClusterIP") == "ClusterIP"


def prestop_sleep_seconds(container: dict) -> int:
    pre_stop = container["lifecycle"]["preStop"]
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    command = pre_stop["exec"]["command"]
    m = re.search(r"sleep\s+(\d+)", " ".join(command))
    assert m, f"preStop {command} is no sleep"
    return int(m.group(1))


def test_termination_grace_covers_prestop_and_shutdown(core, compose, all_workloads, options):
    pod = core["Deployment"]["spec"]["template"]["spec"]
    w = all_workloads["deployment"]
    shutdown = int(effective("--shutdown-timeout-secs", w.args, w.env, options))
    assert options["--shutdown-timeout-secs"].default == "30"
    sleep = prestop_sleep_seconds(deployment_container(core))
    assert 0 < sleep <= 15
    assert pod["terminationGracePeriodSeconds"] > sleep + shutdown

    c = all_workloads["compose"]
    shutdown = int(effective("--shutdown-timeout-secs", c.args, c.env, options))
    m = re.fullmatch(r"(\d+)s", str(compose["services"]["fovea"]["stop_grace_period"]))
    assert m and int(m.group(1)) > shutdown


def test_thread_budget_follows_cpu_limit(core):
    container = deployment_container(core)
    _, env_from = container_env(container)
    ref = env_from["FOVEA_THREADS"]["resourceFieldRef"]
    assert ref["resource"] == "limits.cpu" and ref.get("containerName", "fovea") == "fovea"
    assert "cpu" in container["resources"]["limits"]


# --------------------------------------------------------- compose + nginx

def test_compose_layout(compose):
    fovea, nginx = compose["services"]["fovea"], compose["services"]["nginx"]
    assert fovea["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
    assert fovea["image"] == "fovea:latest"
    assert "/readyz" in " ".join(fovea["healthcheck"]["test"])
    for volume in fovea["volumes"] + nginx["volumes"]:
        source = volume.split(":")[0]
        assert (COMPOSE_FILE.parent / source).exists(), f"compose volume source {source} does not exist"
    assert any(v.split(":")[1] == "/models" and v.endswith(":ro") for v in fovea["volumes"])
    assert set(nginx["ports"]) == {"80:80", "8081:8081"}
    assert nginx["depends_on"]["fovea"]["condition"] == "service_healthy"
    assert (COMPOSE_FILE.parent / nginx["volumes"][0].split(":")[0]).resolve() == NGINX_CONF


def run_nginx_render(compose: dict, conf: Path, tmp: Path) -> "tuple[subprocess.CompletedProcess, Path]":
    """The nginx service's shell command, with its paths moved to `tmp` and
    `exec nginx` replaced by `exit 0`: renders the config as the container would."""
    nginx = compose["services"]["nginx"]
    shell, flag, script = nginx["command"]
    assert (shell, flag) == ("/bin/sh", "-c")
    mount = nginx["volumes"][0].split(":")[1]
    rendered = tmp / "nginx-fovea.conf"
    assert script.count(mount) == 1 and script.count("/tmp/nginx-fovea.conf") == 4
    assert script.count("exec nginx -c /tmp/nginx-fovea.conf") == 1
    script = script.replace("exec nginx -c /tmp/nginx-fovea.conf", "exit 0; #")
    script = script.replace(mount, str(conf)).replace("/tmp/nginx-fovea.conf", str(rendered))
    return subprocess.run(["/bin/sh", "-c", script], capture_output=True, text=True, timeout=30), rendered


def test_compose_nginx_points_at_fovea(compose, tmp_path):
    shipped = NGINX_CONF.read_text()
    # The two lines the compose command rewrites occur exactly once.
    assert shipped.count("server 127.0.0.1:8080;") == 1
    assert shipped.count("server 127.0.0.1:8500;") == 1
    result, rendered = run_nginx_render(compose, NGINX_CONF, tmp_path)
    assert result.returncode == 0, result.stderr
    text = rendered.read_text()
    assert "server fovea:8080;" in text and "server fovea:8500;" in text
    assert "127.0.0.1" not in text.split("# --- HTTP")[0].split("# --- upstreams")[1]
    # Everything else unchanged.
    assert text == shipped.replace("server 127.0.0.1:8080;", "server fovea:8080;").replace(
        "server 127.0.0.1:8500;", "server fovea:8500;")

    # A config whose upstream lines changed makes the container refuse to start.
    changed = tmp_path / "changed.conf"
    changed.write_text(shipped.replace("server 127.0.0.1:8500;", "server 127.0.0.1:9500;"))
    result, _ = run_nginx_render(compose, changed, tmp_path)
    assert result.returncode == 1 and "upstream server lines not found" in result.stderr


# ------------------------------------------------- the manifests, for real

def clean_env() -> dict:
    """fovea's environment (ORT_DYLIB_PATH included, fovea_env) without FOVEA_*
    variables, which would change what fovea does."""
    return {k: v for k, v in ort_environment().items() if not k.startswith("FOVEA_")}


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def resolve_env(w: Workload, container: "dict | None") -> dict:
    env = {}
    for name, value in w.env.items():
        if value is not None:
            env[name] = value
        elif "resourceFieldRef" in w.env_from.get(name, {}):
            ref = w.env_from[name]["resourceFieldRef"]
            assert ref["resource"] == "limits.cpu" and str(ref.get("divisor", "1")) == "1"
            cpu = str(container["resources"]["limits"]["cpu"])
            env[name] = str(math.ceil(int(cpu[:-1]) / 1000 if cpu.endswith("m") else float(cpu)))
        else:
            pytest.fail(f"{w.name}: no local value for env {name}")
    return env


@pytest.mark.parametrize("name", WORKLOADS)
def test_manifest_args_serve_and_probes_answer(all_workloads, core, kserve, options, name, tmp_path):
    """fovea started with the manifest's own args and env (mount paths mapped
    to local directories, listen addresses to free loopback ports) becomes
    ready, answers 200 on every probe path, and exits 0 on SIGTERM."""
    w = all_workloads[name]
    mounts = dict(w.mounts)
    if name == "kserve":
        # KServe's storage initializer leaves model.onnx in /mnt/models.
        (tmp_path / "mnt-models").mkdir()
        shutil.copyfile(KSERVE_MODEL_SOURCE, tmp_path / "mnt-models" / "model.onnx")
        mounts["/mnt/models"] = tmp_path / "mnt-models"
    container = {"deployment": deployment_container(core), "kserve": runtime_container(kserve)}.get(name)
    kserve_model_name = kserve["InferenceService"]["metadata"]["name"]

    local_ports = {}
    args = []
    for i, token in enumerate(w.args):
        token = str(token)
        if i > 0 and str(w.args[i - 1]) in ("--http", "--grpc"):
            port = host_port(token)[1]
            local_ports[port] = free_port()
            token = f"127.0.0.1:{local_ports[port]}"
        for target, local in mounts.items():
            if token == target or token.startswith(target + "/"):
                token = str(local) + token[len(target):]
        # KServe fills `{{.Name}}` in runtime args with the InferenceService's name.
        token = token.replace("{{.Name}}", kserve_model_name)
        args.append(token)
    env = clean_env()
    env.update(resolve_env(w, container))
    for flag in ("--http", "--grpc"):
        assert flag in w.args, f"{name}: pass {flag} explicitly (fovea's default listens on loopback only)"

    http_port = host_port(effective("--http", w.args, w.env, options))[1]
    base = f"http://127.0.0.1:{local_ports[http_port]}"
    log_path = tmp_path / "fovea.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([str(fovea_binary()), *args], stdout=log, stderr=subprocess.STDOUT,
                                cwd=REPO_ROOT, env=env)
        try:
            deadline = time.monotonic() + STARTUP_TIMEOUT
            ready = False
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    if http_status(f"{base}/readyz") == 200:
                        ready = True
                        break
                except OSError:
                    pass
                time.sleep(0.2)
            assert ready, (f"fovea {args} did not become ready within {STARTUP_TIMEOUT:.0f} s "
                           f"(exit code {proc.poll()}); log:\n{log_path.read_text(errors='replace')[-4000:]}")

            paths = {path for _, path, _ in w.probes} | {"/healthz", "/readyz", "/metrics"}
            if name == "kserve":
                # V2 health and the model, named after the InferenceService by
                # `--model-name {{.Name}}` (substituted below as KServe does).
                model = kserve_model_name
                paths |= {"/v2/health/live", "/v2/health/ready", f"/v2/models/{model}", f"/v2/models/{model}/ready"}
            for path in sorted(paths):
                assert http_status(base + path) == 200, f"{name}: GET {path} is not 200"
            assert http_status(base + "/no-such-route") == 404

            proc.send_signal(signal.SIGTERM)
            shutdown = int(effective("--shutdown-timeout-secs", w.args, w.env, options))
            assert proc.wait(timeout=shutdown + 10) == 0, log_path.read_text(errors="replace")[-4000:]
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
