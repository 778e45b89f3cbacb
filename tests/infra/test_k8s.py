"""infra/k8s, offline: built-in kinds against the Kubernetes OpenAPI schemas (kubernetes-validate), the
KubeRay custom resources against the fields KubeRay documents, the Prefect Kubernetes work pool's base job
template through Prefect's own template code, and the Helm values against the charts' schemas."""

from __future__ import annotations

import copy
import json
import re
import shlex
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from reskd_stack import StackSettings, client_env

REPO = Path(__file__).resolve().parents[2]
K8S = REPO / "infra/k8s"
K8S_VERSION = latest_version()  # the newest schemas the installed kubernetes-validate ships (offline)
CONTRACT = list(client_env(StackSettings()))
SECRETS = {
    "reskd-s3": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"},
    "reskd-mlflow-db": {"uri"},
    "reskd-prefect-db": {"connection-string"},
}

# ---- KubeRay's documented API, the fields these manifests may use -------------------------------------
# Source: ray-project/kuberay, docs/reference/api.md ("API Reference", package ray.io/v1) at tag v1.7.0
# (commit 59d663aeec13760646da3db9c1cf8cfe883e30b7); required fields from the CRDs of the same tag,
# ray-operator/config/crd/bases/ray.io_rayclusters.yaml and ray.io_rayjobs.yaml (openAPIV3Schema).
# Each type: its documented fields, and for the nested ones we use, the type they hold ("pod" = a
# Kubernetes PodTemplateSpec, validated with kubernetes-validate).
KUBERAY_V1 = {
    "RayCluster": {
        "fields": {"apiVersion", "kind", "metadata", "spec"},
        "nested": {"spec": "RayClusterSpec"},
    },
    "RayJob": {"fields": {"apiVersion", "kind", "metadata", "spec"}, "nested": {"spec": "RayJobSpec"}},
    "RayClusterSpec": {
        "fields": {
            "upgradeStrategy",
            "authOptions",
            "suspend",
            "managedBy",
            "autoscalerOptions",
            "headServiceAnnotations",
            "enableInTreeAutoscaling",
            "gcsFaultToleranceOptions",
            "historyServerOptions",
            "networkPolicy",
            "tlsOptions",
            "headGroupSpec",
            "rayVersion",
            "workerGroupSpecs",
        },
        "required": {"headGroupSpec"},
        "nested": {
            "headGroupSpec": "HeadGroupSpec",
            "workerGroupSpecs": "[WorkerGroupSpec]",
            "autoscalerOptions": "AutoscalerOptions",
        },
    },
    "HeadGroupSpec": {
        "fields": {
            "template",
            "headService",
            "enableIngress",
            "ingressOptions",
            "resources",
            "labels",
            "rayStartParams",
            "serviceType",
        },
        "required": {"template"},
        "nested": {"template": "pod"},
    },
    "WorkerGroupSpec": {
        "fields": {
            "suspend",
            "groupName",
            "replicas",
            "minReplicas",
            "maxReplicas",
            "idleTimeoutSeconds",
            "priority",
            "resources",
            "labels",
            "rayStartParams",
            "template",
            "scaleStrategy",
            "numOfHosts",
        },
        "required": {"groupName", "maxReplicas", "minReplicas", "template"},
        "nested": {"template": "pod"},
    },
    "AutoscalerOptions": {
        "fields": {
            "resources",
            "image",
            "imagePullPolicy",
            "securityContext",
            "idleTimeoutSeconds",
            "upscalingMode",
            "version",
            "env",
            "envFrom",
            "volumeMounts",
            "command",
            "args",
        },
        "enums": {"upscalingMode": {"Default", "Aggressive", "Conservative"}, "version": {"v1", "v2"}},
    },
    "RayJobSpec": {
        "fields": {
            "activeDeadlineSeconds",
            "backoffLimit",
            "rayClusterSpec",
            "submitterPodTemplate",
            "metadata",
            "clusterSelector",
            "submitterConfig",
            "managedBy",
            "deletionStrategy",
            "entrypoint",
            "runtimeEnvYAML",
            "jobId",
            "submissionMode",
            "entrypointResources",
            "entrypointNumCpus",
            "entrypointNumGpus",
            "ttlSecondsAfterFinished",
            "preRunningDeadlineSeconds",
            "shutdownAfterJobFinishes",
            "suspend",
        },
        "nested": {
            "rayClusterSpec": "RayClusterSpec",
            "submitterConfig": "SubmitterConfig",
            "submitterPodTemplate": "pod",
        },
        "enums": {"submissionMode": {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}},
    },
    "SubmitterConfig": {"fields": {"backoffLimit"}},
}
STRING_MAPS = {"rayStartParams", "labels", "resources", "headServiceAnnotations", "clusterSelector"}


def documents(pattern: str = "**/*.yaml") -> list[tuple[Path, dict]]:
    """Kubernetes objects (``kind`` + ``apiVersion``) in the YAML files; Helm values files are not."""
    docs = [(p, d) for p in sorted(K8S.glob(pattern)) for d in yaml.safe_load_all(p.read_text()) if d]
    return [(p, d) for p, d in docs if "kind" in d and "apiVersion" in d]


def validate_pod_template(template: dict, where: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x", **template.get("metadata", {})},
        "spec": template["spec"],
    }
    try:
        kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        raise AssertionError(f"{where}: pod template: {e.message} at {list(e.absolute_path)}") from None


def check_kuberay(obj: dict, type_name: str, where: str) -> None:
    """Unknown fields, missing required fields, wrong enum values, non-string maps: an AssertionError."""
    if type_name.startswith("["):
        assert isinstance(obj, list) and obj, f"{where}: a non-empty list"
        for i, item in enumerate(obj):
            check_kuberay(item, type_name[1:-1], f"{where}[{i}]")
        return
    if type_name == "pod":
        validate_pod_template(obj, where)
        return
    spec = KUBERAY_V1[type_name]
    unknown = set(obj) - spec["fields"]
    assert not unknown, f"{where}: {sorted(unknown)} not documented for KubeRay {type_name}"
    missing = spec.get("required", set()) - set(obj)
    assert not missing, f"{where}: {type_name} needs {sorted(missing)}"
    for field, allowed in spec.get("enums", {}).items():
        if field in obj:
            assert obj[field] in allowed, f"{where}.{field}: {obj[field]!r} not one of {sorted(allowed)}"
    for field in STRING_MAPS & set(obj):
        assert all(isinstance(v, str) for v in obj[field].values()), (
            f"{where}.{field}: values must be strings"
        )
    for field, nested in spec.get("nested", {}).items():
        if field in obj:
            check_kuberay(obj[field], nested, f"{where}.{field}")


# ---- built-in kinds ------------------------------------------------------------------------------------


def test_builtin_kinds_validate_offline():
    kinds = []
    for path, doc in documents():
        if doc["apiVersion"].startswith(("ray.io/", "kustomize.config.k8s.io/")):
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            raise AssertionError(
                f"{path.name}: {doc['kind']}: {e.message} at {list(e.absolute_path)}"
            ) from None
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Namespace", "Service"]


def test_the_validator_rejects_a_broken_deployment():
    deployment = next(d for _, d in documents("mlflow.yaml") if d["kind"] == "Deployment")
    broken = copy.deepcopy(deployment)
    broken["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)
    broken = copy.deepcopy(deployment)
    broken["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def test_kustomization_lists_existing_files():
    kust = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert all((K8S / r).exists() for r in kust["resources"])


# ---- KubeRay --------------------------------------------------------------------------------------------


def ray_docs() -> list[tuple[Path, dict]]:
    return [(p, d) for p, d in documents("ray/*.yaml")]


def test_kuberay_resources_use_only_documented_fields():
    kinds = []
    for path, doc in ray_docs():
        assert doc["apiVersion"] == "ray.io/v1", path.name
        check_kuberay(doc, doc["kind"], f"{path.name}:{doc['metadata']['name']}")
        kinds.append(doc["kind"])
    assert sorted(kinds) == ["RayCluster", "RayJob"]


def test_the_crd_check_catches_mistakes():
    cluster = next(d for _, d in ray_docs() if d["kind"] == "RayCluster")
    for mutate, message in [
        (lambda c: c["spec"].__setitem__("workerGroupSpec", []), "not documented"),  # singular: a typo
        (lambda c: c["spec"]["workerGroupSpecs"][0].pop("minReplicas"), "needs"),
        (lambda c: c["spec"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0), "strings"),
        (lambda c: c["spec"]["autoscalerOptions"].__setitem__("upscalingMode", "Fast"), "not one of"),
        (
            lambda c: c["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].__setitem__(
                "imag", "x"
            ),
            "pod template",
        ),
    ]:
        bad = copy.deepcopy(cluster)
        mutate(bad)
        with pytest.raises(AssertionError, match=message):
            check_kuberay(bad, "RayCluster", "mutated")


def cluster_specs() -> list[tuple[str, dict]]:
    out = []
    for path, doc in ray_docs():
        spec = doc["spec"] if doc["kind"] == "RayCluster" else doc["spec"]["rayClusterSpec"]
        out.append((f"{path.name}:{doc['metadata']['name']}", spec))
    return out


def containers(spec: dict) -> list[dict]:
    groups = [spec["headGroupSpec"], *spec["workerGroupSpecs"]]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def test_ray_version_and_images_match_the_project():
    import ray

    for where, spec in cluster_specs():
        assert spec["rayVersion"] == ray.__version__, f"{where}: rayVersion != the installed ray"
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert head["image"] == "reskd:cpu", where
        assert {p["containerPort"] for p in head["ports"]} >= {6379, 8265, 10001}, where
        for group in spec["workerGroupSpecs"]:
            for c in group["template"]["spec"]["containers"]:
                gpus = int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
                assert c["image"] == ("reskd:cuda" if gpus else "reskd:cpu"), where
        for c in containers(spec):
            refs = {e.get("configMapRef", e.get("secretRef", {})).get("name") for e in c.get("envFrom", [])}
            assert refs == {"reskd-env", "reskd-s3"}, f"{where}: {c['name']} env sources"
            assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"], where


def test_rayjob_runs_a_real_cli_command_and_fits_the_recipe():
    """The entrypoint parses as a `reskd` command; the worker groups hold the recipe's Ray Train workers."""
    from typer.main import get_command

    from flows.cli import app
    from reskd_core.config import load_config, recipe_path

    job = next(d for _, d in ray_docs() if d["kind"] == "RayJob")
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "reskd"
    group = get_command(app)
    command = group.commands[argv[1]]
    ctx = command.make_context(argv[1], argv[2:])  # parses and checks every option, runs nothing
    cfg = load_config(recipe_path(ctx.params["config"]))
    res = cfg.resources
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(
        int(g["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]) * g["replicas"]
        for g in workers
    )
    assert res.use_gpu and gpus >= res.workers * res.gpus_per_worker, "not enough GPUs for the recipe"
    for g in workers:
        limits = g["template"]["spec"]["containers"][0]["resources"]["limits"]
        per_pod = int(limits["nvidia.com/gpu"]) / res.gpus_per_worker
        assert int(limits["cpu"]) >= per_pod * res.cpus_per_worker, (
            "not enough CPUs for the Ray Train workers"
        )
    assert cfg.data.batch_size * res.workers == 64  # the paper's batch: 8 GPUs x 8 clips


# ---- Prefect: the Kubernetes work pool's base job template ---------------------------------------------

# Prefect's Kubernetes worker refuses a job manifest without these, with these values. Source: PrefectHQ/
# prefect, src/integrations/prefect-kubernetes/prefect_kubernetes/worker.py, _get_base_job_manifest() and
# KubernetesWorkerJobConfiguration._ensure_job_includes_all_required_components (docs.prefect.io,
# "prefect_kubernetes.worker"). Prefect puts parallelism/completions in the pod spec, where Kubernetes does
# not define them (the API server drops them with a warning); strict validation below leaves them out.
PREFECT_REQUIRED = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec.template.spec.parallelism": 1,
    "spec.template.spec.completions": 1,
    "spec.template.spec.restartPolicy": "Never",
    "spec.template.spec.containers.0.name": "prefect-job",
}


def base_job_template() -> dict:
    return json.loads((K8S / "prefect/base-job-template.json").read_text())


def render(template: dict, overrides: dict | None = None) -> dict:
    """The job manifest a worker would submit: Prefect's templating with the variables' defaults."""
    from prefect.utilities.templating import apply_values

    props = template["variables"]["properties"]
    values = {k: v["default"] for k, v in props.items() if "default" in v}
    values |= {"name": "reskd-full-abc", "labels": {"prefect.io/flow-run-id": "abc"}} | (overrides or {})
    config = apply_values(template["job_configuration"], values)
    manifest = config["job_manifest"]
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    # what the worker does next: env dict -> list, the flow-run command when none is set
    container["env"] = [{"name": k, "value": v} for k, v in (container.get("env") or {}).items()]
    container["args"] = container.get("args") or ["prefect", "flow-run", "execute"]
    return manifest


def get_path(obj, dotted: str):
    for part in dotted.split("."):
        obj = obj[int(part)] if isinstance(obj, list) else obj[part]
    return obj


def test_base_job_template_passes_prefects_own_checks():
    from prefect.server.schemas.actions import WorkPoolCreate

    template = base_job_template()
    pool = WorkPoolCreate(name="reskd-kubernetes", type="kubernetes", base_job_template=template)
    assert pool.base_job_template == template  # every {{ placeholder }} is a declared variable
    jsonschema.Draft7Validator.check_schema(template["variables"])
    manifest = render(template)
    for path, value in PREFECT_REQUIRED.items():
        assert get_path(manifest, path) == value, path


def test_rendered_job_is_a_valid_kubernetes_job():
    manifest = render(base_job_template())
    strict = copy.deepcopy(manifest)
    for key in ("parallelism", "completions"):  # Prefect's required extras, see PREFECT_REQUIRED
        strict["spec"]["template"]["spec"].pop(key)
    kubernetes_validate.validate(strict, K8S_VERSION, strict=True)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    assert manifest["metadata"]["namespace"] == "reskd" and container["image"] == "reskd:cpu"
    # the flow run joins Ray as a CPU-less node, then execs Prefect's command ($0 "$@")
    assert container["command"][:2] == ["/bin/sh", "-c"] and 'exec "$0" "$@"' in container["command"][2]


def test_flow_run_jobs_see_the_whole_env_contract():
    manifest = render(base_job_template())
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    config_map = next(d for _, d in documents("config.yaml") if d["kind"] == "ConfigMap")
    names = {e["name"] for e in container["env"]}
    for ref in container["envFrom"]:
        if "configMapRef" in ref:
            assert ref["configMapRef"]["name"] == config_map["metadata"]["name"]
            names |= set(config_map["data"])
        else:
            names |= SECRETS[ref["secretRef"]["name"]]
    assert [k for k in CONTRACT if k not in names] == []
    env = {e["name"]: e["value"] for e in container["env"]}
    cluster = next(d for _, d in ray_docs() if d["kind"] == "RayCluster")
    assert env["RAY_ADDRESS"] == f"{cluster['metadata']['name']}-head-svc.reskd.svc.cluster.local:6379"
    assert "RAY_ADDRESS" not in config_map["data"], "a RayJob's driver must keep its own cluster's address"


# ---- Helm values, secrets ----------------------------------------------------------------------------------


def known_keys(values, schema: dict, where: str) -> None:
    """Every key set in ``values`` is a property the chart's schema declares (catches typos the schema's
    ``additionalProperties: true`` lets through)."""
    if not isinstance(values, dict) or "properties" not in schema:
        return
    for key, value in values.items():
        assert key in schema["properties"], f"{where}.{key} is not a value of the chart"
        known_keys(value, schema["properties"][key], f"{where}.{key}")


@pytest.mark.parametrize("chart", ["prefect-server", "prefect-worker"])
def test_helm_values_match_the_chart_schema(chart):
    schema = json.loads((K8S / f"prefect/chart-schemas/{chart}.values.schema.json").read_text())
    values = yaml.safe_load((K8S / f"prefect/{chart.removeprefix('prefect-')}-values.yaml").read_text())
    jsonschema.Draft7Validator(schema).validate(values)  # its "$schema" names no draft version
    known_keys(values, schema, chart)


def test_helm_values_wire_prefect_to_the_pool_and_secrets():
    server = yaml.safe_load((K8S / "prefect/server-values.yaml").read_text())
    worker = yaml.safe_load((K8S / "prefect/worker-values.yaml").read_text())
    config_map = next(d for _, d in documents("config.yaml") if d["kind"] == "ConfigMap")
    assert worker["worker"]["selfHostedServerApiConfig"]["apiUrl"] == config_map["data"]["PREFECT_API_URL"]
    assert worker["worker"]["config"]["type"] == "kubernetes"
    assert server["externalDatabase"]["existingSecret"] in SECRETS
    assert server["externalDatabase"]["connectionStringSecretKey"] in SECRETS["reskd-prefect-db"]
    assert server["postgresql"]["enabled"] is False and server["secret"]["create"] is False


def test_secrets_are_referenced_never_written():
    """Manifests name Secrets (documented in docs/deploy.md); no Secret object, no credential in a file."""
    text = "\n".join(
        p.read_text()
        for p in sorted(K8S.rglob("*"))
        if p.suffix in (".yaml", ".json") and "chart-schemas" not in p.parts
    )
    refs = set(re.findall(r'secret(?:Ref|KeyRef)["\']?:\s*\{\s*["\']?name["\']?:\s*["\']?([\w-]+)', text))
    assert refs and refs <= set(SECRETS), refs
    assert "kind: Secret" not in text
    assert not re.search(r"(?i)(password|secret_access_key)\s*[:=]\s*['\"]?[A-Za-z0-9/+]{8,}", text)
    deploy = (REPO / "docs/deploy.md").read_text()
    for name, keys in SECRETS.items():
        assert name in deploy and all(k in deploy for k in keys), f"docs/deploy.md must explain {name}"
