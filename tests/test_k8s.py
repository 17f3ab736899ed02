"""k8s/ manifests against the KubeRay v1.7.0 CRD schemas (strict: an unknown field fails, as with
`kubectl apply --validate=strict`), their cross-references, the placement plan they claim, the README's
operations section, the metric table and the Grafana dashboard against the metrics the code emits."""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

from cluster.env import learner_env, process_env
from cluster.telemetry import METRICS, table
from ssp.config import load_config
from ssp.tree import SSPConfig

REPO = Path(__file__).resolve().parents[1]
CRDS = REPO.parent / "shared" / "kuberay-crds"
GPU_CONFIG = REPO / "configs" / "qwen2.5-math-1.5b-gpu.yaml"
README = (REPO / "README.md").read_text()


def docs() -> list[tuple[str, dict]]:
    out = []
    for f in sorted((REPO / "k8s").glob("*.yaml")):
        out += [(f.name, d) for d in yaml.safe_load_all(f.read_text()) if d]
    return out


def by_kind(kind: str) -> list[dict]:
    return [d for _, d in docs() if d["kind"] == kind]


def strict(schema: dict) -> dict:
    """The CRD schema with unknown fields forbidden wherever the schema lists its fields."""
    s = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if ("properties" in node and "additionalProperties" not in node
                    and not node.get("x-kubernetes-preserve-unknown-fields")):
                node["additionalProperties"] = False
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(s)
    return s


def crd_schema(kind: str) -> dict:
    crd = yaml.safe_load((CRDS / f"ray.io_{kind.lower()}s.yaml").read_text())
    (v1,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict(v1["schema"]["openAPIV3Schema"])


def validate(doc: dict) -> None:
    jsonschema.validate(doc, crd_schema(doc["kind"]), cls=jsonschema.Draft7Validator)


def pod_templates(doc: dict) -> list[dict]:
    """Every pod template in a manifest (Ray head/worker groups, StatefulSets)."""
    spec = doc["spec"]
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or (spec if doc["kind"] == "RayCluster"
                                                                            else None)
    if cluster:
        return [cluster["headGroupSpec"]["template"]] + [g["template"] for g in cluster.get("workerGroupSpecs", [])]
    return [spec["template"]] if "template" in spec else []


def containers() -> list[dict]:
    return [c for _, d in docs() for t in pod_templates(d) for c in t["spec"]["containers"]]


def test_every_ray_resource_validates_against_the_kuberay_crds():
    kinds = [d["kind"] for _, d in docs() if d["apiVersion"] == "ray.io/v1"]
    assert sorted(kinds) == ["RayCluster", "RayJob", "RayService"]
    for name, d in docs():
        if d["apiVersion"] == "ray.io/v1":
            try:
                validate(d)
            except jsonschema.ValidationError as e:
                pytest.fail(f"k8s/{name} {d['kind']}: {e.message} at {'.'.join(map(str, e.absolute_path))}")


@pytest.mark.parametrize("breakage", ["typo", "type", "enum"])
def test_the_strict_schema_catches_mistakes(breakage):
    (rc,) = by_kind("RayCluster")
    bad = copy.deepcopy(rc)
    g = bad["spec"]["workerGroupSpecs"][0]
    if breakage == "typo":
        g["maxReplica"] = g.pop("maxReplicas")
    elif breakage == "type":
        g["replicas"] = "one"
    else:
        bad["spec"]["autoscalerOptions"]["upscalingMode"] = "Fast"
    with pytest.raises(jsonschema.ValidationError):
        validate(bad)


def test_the_rayjob_runs_exactly_the_raycluster_it_documents():
    (rc,), (job,) = by_kind("RayCluster"), by_kind("RayJob")
    assert job["spec"]["rayClusterSpec"] == rc["spec"]
    s = job["spec"]
    assert s["shutdownAfterJobFinishes"] is True and s["ttlSecondsAfterFinished"] > 0
    assert s["activeDeadlineSeconds"] > 0 and "gcsFaultToleranceOptions" not in s["rayClusterSpec"]
    assert "env_vars" in yaml.safe_load(s["runtimeEnvYAML"])


def test_the_placement_plan_fits_the_gpu_config():
    conf = load_config(SSPConfig, GPU_CONFIG)
    (rc,) = by_kind("RayCluster")
    head, groups = rc["spec"]["headGroupSpec"], {g["groupName"]: g for g in rc["spec"]["workerGroupSpecs"]}
    assert head["rayStartParams"]["num-cpus"] == "0"
    assert "nvidia.com/gpu" not in str(head["template"]["spec"]["containers"][0]["resources"])
    gpu, cpu = groups["gpu"], groups["verifier"]
    r, lr, v = conf.rollout, conf.learner, conf.verifier
    gpus = int(gpu["rayStartParams"]["num-gpus"])
    assert gpus >= r.num_engines * r.num_gpus_per_engine + lr.num_actors
    assert gpus >= conf.sft.num_workers
    assert int(gpu["rayStartParams"]["num-cpus"]) >= r.num_engines * r.num_cpus_per_engine + lr.num_actors
    limits = gpu["template"]["spec"]["containers"][0]["resources"]
    assert limits["limits"]["nvidia.com/gpu"] == limits["requests"]["nvidia.com/gpu"] == str(gpus)
    assert float(limits["requests"]["cpu"]) >= int(gpu["rayStartParams"]["num-cpus"])
    # the verifiers fit the CPU group at its minimum size, by Ray CPUs and by the custom resource they ask for
    per_pod = int(cpu["rayStartParams"]["num-cpus"])
    assert cpu["minReplicas"] * per_pod >= v.num_workers * v.num_cpus
    assert cpu["minReplicas"] * int(cpu["resources"]["ssp_cpu"]) >= v.num_workers
    assert cpu["maxReplicas"] > cpu["minReplicas"] and "ssp_gpu" in gpu["resources"]
    # each verifier actor runs max_concurrency sandboxes of verifier.cpus cores: the pod's cores cover them
    cores = float(cpu["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"])
    assert cores >= per_pod * v.max_concurrency * v.cpus
    for t in pod_templates(rc):
        mounts = {m["mountPath"] for c in t["spec"]["containers"] for m in c["volumeMounts"]}
        vols = {vol["name"]: vol for vol in t["spec"]["volumes"]}
        assert "/data" in mounts and "/dev/shm" in mounts and vols["dshm"]["emptyDir"]["medium"] == "Memory"


def test_the_stage_overrides_and_serve_args_load_with_the_gpu_config():
    """The overrides the job script and the RayService pass are valid keys of the config they are used with,
    and the custom resources they ask for exist in the cluster."""
    script = (REPO / "cluster" / "jobs" / "k8s_stages.sh").read_text()
    overrides = re.findall(r'"([a-z_]+\.[a-z_.]+=[^"]*)"', script.split("K8S=(")[1].split(")")[0] + ")")
    assert len(overrides) == 3
    conf = load_config(SSPConfig, GPU_CONFIG, overrides)
    (rc,) = by_kind("RayCluster")
    offered = {k for g in rc["spec"]["workerGroupSpecs"] for k in g.get("resources", {})}
    assert set(conf.rollout.resources) | set(conf.verifier.resources) <= offered
    assert conf.scheduler.redis_url.startswith("redis://ssp-redis:")
    (svc,) = by_kind("RayService")
    serve_conf = yaml.safe_load(svc["spec"]["serveConfigV2"])
    (app,) = serve_conf["applications"]
    module, fn = app["import_path"].split(":")
    assert callable(getattr(importlib.import_module(module), fn))
    conf = load_config(SSPConfig, GPU_CONFIG, app["args"]["overrides"])
    assert conf.serve.num_gpus == 1 and conf.serve.autoscaling
    assert app["args"]["config"] == "/etc/ssp/ssp.yaml" and serve_conf["http_options"]["host"] == "0.0.0.0"
    assert svc["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"]["redisAddress"].startswith("ssp-gcs-redis:")


def test_every_command_module_and_path_the_manifests_name_exists():
    (job,) = by_kind("RayJob")
    cmd = job["spec"]["entrypoint"].split()
    assert cmd[0] == "bash" and (REPO / cmd[1]).is_file()
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["working_dir"] == "/app"
    assert "WORKDIR /app" in (REPO / "k8s" / "Dockerfile").read_text()
    script = (REPO / cmd[1]).read_text()
    stages = re.findall(r"python -m ssp\.cli (\w+)", script)
    assert stages == ["spectrum", "rl", "eval"]
    # a retried job (a lost head node) continues the RL run from its checkpoint instead of refusing its run_dir
    assert job["spec"]["backoffLimit"] >= 1 and re.search(r"ssp\.cli rl .*--auto-resume$", script, re.M)
    from ssp.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(stages) <= set(commands)
    images = {c["image"] for c in containers() if "ray" in c["name"]}
    assert images == {"ssp-rl:latest"} and "-t ssp-rl:latest" in README


def test_names_selectors_secrets_and_claims_resolve_within_the_set():
    secrets = dict(re.findall(r"kubectl create secret generic (\S+) --from-literal=([\w-]+)=", README))
    configmaps = re.findall(r"kubectl create configmap (\S+) --from-file=ssp\.yaml=(\S+)", README)
    assert configmaps and all((REPO / f).is_file() for _, f in configmaps)
    claims = {d["metadata"]["name"] for d in by_kind("PersistentVolumeClaim")}
    for _, d in docs():
        claims |= {t["metadata"]["name"] for t in d["spec"].get("volumeClaimTemplates", [])}
        text = json.dumps(d)
        for ref in re.findall(r'"secretKeyRef": (\{[^}]*\})', text):
            ref = json.loads(ref)
            assert secrets.get(ref["name"]) == ref["key"], f"{d['metadata']['name']}: secret {ref} not created"
        for t in pod_templates(d):
            for vol in t["spec"].get("volumes", []):
                if "persistentVolumeClaim" in vol:
                    assert vol["persistentVolumeClaim"]["claimName"] in claims
                if "configMap" in vol:
                    assert vol["configMap"]["name"] in {n for n, _ in configmaps}
            mounts = {m["name"] for c in t["spec"]["containers"] for m in c.get("volumeMounts", [])}
            assert mounts <= {v["name"] for v in t["spec"].get("volumes", [])} | \
                {c["metadata"]["name"] for c in d["spec"].get("volumeClaimTemplates", [])}
    labels = [t["metadata"]["labels"] for _, d in docs() for t in pod_templates(d)]

    def selects(sel: dict) -> bool:
        return any(sel.items() <= lab.items() for lab in labels)
    for d in by_kind("StatefulSet"):
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert d["spec"]["serviceName"] in {s["metadata"]["name"] for s in by_kind("Service")}
    for s in by_kind("Service"):
        assert selects(s["spec"]["selector"]), s["metadata"]["name"]
    for n in by_kind("NetworkPolicy"):
        assert selects(n["spec"]["podSelector"]["matchLabels"])
        for rule in n["spec"]["ingress"]:
            for peer in rule["from"]:
                ray_pods = [t["metadata"]["labels"] for d in by_kind("RayCluster") for t in pod_templates(d)]
                assert all(peer["podSelector"]["matchLabels"].items() <= lab.items() for lab in ray_pods)


def test_the_scheduler_redis_matches_the_scheduler_config():
    from cluster.config import SchedulerConfig

    (sts,) = [d for d in by_kind("StatefulSet") if d["metadata"]["name"] == "ssp-redis"]
    args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
    opt = dict(zip(args[::2], args[1::2]))
    assert opt["--appendonly"] == "yes" and opt["--appendfsync"] == SchedulerConfig().appendfsync
    assert opt["--maxmemory-policy"] == "noeviction" and opt["--requirepass"] == "$(REDIS_PASSWORD)"


def test_no_manifest_copies_the_process_environment():
    """The process env has one source (cluster/env.py, applied by the CLI): no manifest sets any of it."""
    ours = set(process_env()) | set(learner_env("cuda"))
    named = {e["name"] for c in containers() for e in c.get("env", [])}
    for job in by_kind("RayJob"):
        named |= set(yaml.safe_load(job["spec"]["runtimeEnvYAML"]).get("env_vars", {}))
    assert named and not named & ours, named & ours
    assert "ENV " not in (REPO / "k8s" / "Dockerfile").read_text().replace("ENV HF_HOME", "")


def test_the_readme_metric_table_is_the_code_s():
    block = (REPO / "docs" / "metrics.md").read_text().split("<!-- metrics-table")[1].split("<!-- /metrics-table -->")[0]
    assert block.split("\n", 1)[1].strip() == table()
    assert all(n.startswith("ssp_") for n in METRICS)


def test_the_grafana_dashboard_plots_only_emitted_metrics():
    dash = json.loads((REPO / "cluster" / "grafana" / "ssp.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    suffix = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    known = {f"ray_{n}{s}" for n, m in METRICS.items() for s in suffix[m.type]}
    used = {x for e in exprs for x in re.findall(r"\bray_ssp_\w+", e)}
    assert used and used <= known, used - known
    for needed in ["ssp_rl_reward_mean", "ssp_rl_pass_rate", "ssp_rl_zero_adv_frac", "ssp_scheduler_band_problems",
                   "ssp_rollout_tokens_per_s", "ssp_rollout_weight_version", "ssp_rl_time_sync",
                   "ssp_verifier_in_flight", "ssp_verifier_checks", "ssp_rl_time_train"]:
        assert any(u.startswith(f"ray_{needed}") for u in used), needed
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource"}
    assert len({p["id"] for p in dash["panels"]}) == len(dash["panels"])


def test_the_readme_operations_section_names_only_what_exists():
    section = README.split("## From `make demo` to a KubeRay cluster")[1].split("\n## ")[0]
    from ssp.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    named = set(re.findall(r"\bssp (\w[\w-]*)", section))
    assert {"cluster", "rl"} <= named and named <= set(commands) | {"STAGE"}, named - set(commands)
    for path in set(re.findall(r"\b((?:k8s|cluster|configs)/[\w./-]+\w)", section)):
        assert (REPO / path).exists(), path
    makefile = (REPO / "Makefile").read_text()
    assert all(f"\n{t}:" in makefile for t in re.findall(r"`make (\w+)`", section))
    assert section.index("ssp cluster up") < section.index("submit.sh") < section.index("kubectl apply")


def test_the_app_builder_builds_the_serve_app(tiny_model_dir):
    from ray.serve import Application

    from serve.app import app_builder
    from ssp.config import ConfigError

    app = app_builder({"model": str(tiny_model_dir), "config": str(REPO / "configs" / "tiny-cpu.yaml"),
                       "overrides": ["serve.replicas=2"]})
    assert isinstance(app, Application)
    with pytest.raises(ConfigError, match="need 'model'"):
        app_builder({"config": "x.yaml"})
    with pytest.raises(ConfigError, match="serve.replica"):
        app_builder({"model": str(tiny_model_dir), "overrides": ["serve.replica=2"]})
