"""The deployment configs in deploy/, checked as far as they can be without a cluster.

Validated:
- deploy/dagster-postgres.yaml loads as a Dagster instance on a real PostgreSQL server (started
  here) and two instances loaded from it share their state; its run queue, pool limit, run
  launcher and run monitoring are the ones of the repo's dagster.yaml.
- Every instance file (Postgres, Kubernetes, ECS) passes Dagster's instance schema, its run
  launcher's and compute log manager's config pass their classes' config schemas (with the
  env-sourced values resolved), and its concurrency and run monitoring sections equal dagster.yaml's.
- The Kubernetes run launcher, built from its config (against a kubeconfig that names a server
  never contacted), produces the Job of a run pod with the image, namespace, service account,
  settings and secrets of deploy/k8s/; the Job and every object of deploy/k8s/services.yaml
  deserialize into the `kubernetes` client's models with nothing dropped (the models ignore
  unknown fields, so each is compared after a round trip), and the names the files share agree.
- The RayCluster has the fields KubeRay requires (ray.io/v1, headGroupSpec and workerGroupSpecs
  with groupName, replicas, minReplicas, maxReplicas, string rayStartParams, pod templates that
  deserialize as V1PodTemplateSpec), the Ray version pinned in pyproject.toml, a GPU group, and a
  head client port that MM_RAY_ADDRESS points to.

Not validated: nothing talks to a Kubernetes API server, the KubeRay operator, ECS or RDS; the
RayCluster is not checked against KubeRay's CRD schema; kustomize is not run (only its inputs are
checked to exist); the images of deploy/Dockerfile are not built.
"""

import importlib
import json
import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config
from kubernetes.client import ApiClient

from resources.settings import REPO_ROOT
from servers import postgres_server

DEPLOY = REPO_ROOT / "deploy"
K8S = DEPLOY / "k8s"
INSTANCE_FILES = {"postgres": DEPLOY / "dagster-postgres.yaml", "k8s": K8S / "dagster-instance.yaml",
                  "ecs": DEPLOY / "ecs" / "dagster-instance.yaml"}
ENV = {"DAGSTER_PG_HOST": "db.example", "DAGSTER_PG_PORT": "5433", "DAGSTER_PG_USERNAME": "dagster",
       "DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_DB": "dagster", "MM_DAGSTER_LOGS_BUCKET": "logs",
       "MM_DAGSTER_LOGS_PREFIX": "compute"}
MODELS = {"Namespace": "V1Namespace", "ConfigMap": "V1ConfigMap", "ServiceAccount": "V1ServiceAccount",
          "Role": "V1Role", "RoleBinding": "V1RoleBinding", "Deployment": "V1Deployment", "Service": "V1Service"}


def _yaml(path: Path):
    return yaml.safe_load(path.read_text())


def _docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _roundtrip(obj: dict, model: str) -> dict:
    """`obj` deserialized into the kubernetes client's `model` and serialized back."""
    class Response:
        data = json.dumps(obj)

    client = ApiClient()
    return client.sanitize_for_serialization(client.deserialize(Response(), model))


def _assert_model(obj: dict, model: str, where: str) -> None:
    back = _roundtrip(obj, model)
    assert back == obj, f"{where}: fields lost or changed as {model}:\n{json.dumps(obj, indent=1)}\n" \
                        f"!=\n{json.dumps(back, indent=1)}"


def _ok(result, what):
    assert result.success, f"{what}: {[e.message for e in result.errors]}"
    return result.value


@pytest.fixture
def instance_env(monkeypatch):
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)


def test_the_postgres_instance_loads_on_a_real_server_and_its_processes_share_it(tmp_path, monkeypatch):
    from resources.run_launcher import MonitoredRunLauncher

    with postgres_server(db="dagster_deploy") as pg:
        for name, value in pg.dagster_env().items():
            monkeypatch.setenv(name, value)
        homes = []
        for name in ("webserver", "worker"):
            (tmp_path / name).mkdir()
            shutil.copyfile(INSTANCE_FILES["postgres"], tmp_path / name / "dagster.yaml")
            homes.append(dg.DagsterInstance.from_config(str(tmp_path / name)))
        one, other = homes
        try:
            assert type(one.run_storage).__name__ == "PostgresRunStorage"
            assert type(one.event_log_storage).__name__ == "PostgresEventLogStorage"
            assert one.event_log_storage.supports_global_concurrency_limits
            assert isinstance(one.run_launcher, MonitoredRunLauncher)
            concurrency = one.get_concurrency_config()        # what the daemon's run queue reads
            assert concurrency.run_queue_config.max_concurrent_runs == 4
            assert concurrency.pool_config.default_pool_limit == 2
            assert one.run_monitoring_enabled
            one.add_dynamic_partitions("recipe", ["ppl_top50"])
            assert other.get_dynamic_partitions("recipe") == ["ppl_top50"]
        finally:
            for instance in homes:
                instance.dispose()


@pytest.mark.parametrize("name", sorted(INSTANCE_FILES))
def test_each_instance_file_passes_dagster_s_schemas_with_the_local_limits(name, instance_env, tmp_path):
    path = INSTANCE_FILES[name]
    shutil.copyfile(path, tmp_path / "dagster.yaml")
    dagster_instance_config(str(tmp_path))          # raises DagsterInvalidConfigError on a bad field
    config, local = _yaml(path), _yaml(REPO_ROOT / "dagster.yaml")
    for section in ("concurrency", "run_monitoring", "telemetry"):
        assert config[section] == local[section], f"{path.name}: {section} differs from dagster.yaml's"

    from dagster_postgres import DagsterPostgresStorage

    storage = _ok(process_config(DagsterPostgresStorage.config_type(), config["storage"]["postgres"]),
                  f"{path.name} storage")
    assert storage["postgres_db"] == {"hostname": "db.example", "port": 5433, "username": "dagster",
                                      "password": "secret", "db_name": "dagster", "params": {},
                                      "scheme": "postgresql+psycopg2"}
    launcher = config["run_launcher"]
    if name == "postgres":
        assert launcher == local["run_launcher"]
        return
    _ok(process_config(_class(launcher).config_type(), launcher["config"]), f"{path.name} run launcher")
    logs = _ok(process_config(_class(config["compute_logs"]).config_type(), config["compute_logs"]["config"]),
               f"{path.name} compute logs")
    assert (logs["bucket"], logs["prefix"]) == ("logs", "compute")


def _class(entry: dict):
    return getattr(importlib.import_module(entry["module"]), entry["class"])


def _k8s_run_job(tmp_path) -> tuple[dict, str]:
    """The Job the Kubernetes run launcher of deploy/k8s/dagster-instance.yaml makes for a run, as
    a dict, and its namespace — built by dagster-k8s's own code, never sent anywhere."""
    from dagster_k8s import K8sRunLauncher
    from dagster_k8s.job import construct_dagster_k8s_job

    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "none", "user": {"token": "unused"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}]}))
    config = _ok(process_config(K8sRunLauncher.config_type(), _yaml(INSTANCE_FILES["k8s"])["run_launcher"]["config"]),
                 "k8s run launcher")
    assert config["load_incluster_config"] is True      # in the cluster; here, the stand-in kubeconfig
    launcher = K8sRunLauncher(**{**config, "load_incluster_config": False, "kubeconfig_file": str(kubeconfig)})
    context = launcher.get_container_context_for_run(dg.DagsterRun(job_name="curation_job", run_id="0" * 32))
    job = construct_dagster_k8s_job(
        job_config=context.get_k8s_job_config(job_image=None, run_launcher=launcher),
        args=["dagster", "api", "execute_run", "{}"], job_name="dagster-run-0", pod_name="dagster-run-0",
        component="run_worker", user_defined_k8s_config=context.run_k8s_config, labels={}, env_vars=[])
    return ApiClient().sanitize_for_serialization(job), context.namespace


def test_the_k8s_run_launcher_makes_run_pods_with_the_project_s_image_settings_and_secrets(tmp_path):
    job, namespace = _k8s_run_job(tmp_path)
    _assert_model(job, "V1Job", "run Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    services = {(d["kind"], d["metadata"]["name"]): d for d in _docs(K8S / "services.yaml")}
    kustomization = _yaml(K8S / "kustomization.yaml")
    assert namespace == kustomization["namespace"] == "mm-curation"
    assert ("ServiceAccount", pod["serviceAccountName"]) in services
    assert container["image"] == _code_server(services)["image"]
    env = {e["name"]: e for e in container["env"]}
    assert env["DAGSTER_PG_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "dagster-postgresql-secret",
                                                                        "key": "postgresql-password"}
    sources = [next(iter(s.items())) for s in container["envFrom"]]
    assert ("secretRef", {"name": "mm-curation-s3"}) in sources
    (config_map,) = [ref["name"] for kind, ref in sources if kind == "configMapRef"]
    settings = services[("ConfigMap", config_map)]["data"]
    # what the run's instance reads (the storage's env vars, less the password from the secret)
    assert {"DAGSTER_PG_HOST", "DAGSTER_PG_PORT", "DAGSTER_PG_USERNAME", "DAGSTER_PG_DB",
            "MM_DAGSTER_LOGS_BUCKET", "MM_DAGSTER_LOGS_PREFIX", "MM_STORAGE_ROOT", "MM_RAY_ADDRESS"} <= set(settings)
    assert settings["MM_STORAGE_ROOT"].startswith("s3://")


def _code_server(services: dict) -> dict:
    (container,) = services[("Deployment", "mm-curation-code")]["spec"]["template"]["spec"]["containers"]
    return container


def test_the_k8s_manifests_deserialize_and_agree_on_their_names():
    kustomization = _yaml(K8S / "kustomization.yaml")
    for name in kustomization["resources"]:
        assert (K8S / name).is_file(), name
    generated = {g["name"]: dict(f.split("=", 1) if "=" in f else (f, f) for f in g["files"])
                 for g in kustomization["configMapGenerator"]}
    for files in generated.values():
        for source in files.values():
            assert (K8S / source).is_file(), source
    assert kustomization["generatorOptions"]["disableNameSuffixHash"] is True

    docs = _docs(K8S / "services.yaml")
    for doc in docs:
        _assert_model(doc, MODELS[doc["kind"]], f"{doc['kind']} {doc['metadata']['name']}")
    services = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    launcher = _yaml(INSTANCE_FILES["k8s"])["run_launcher"]["config"]
    assert "dagster.yaml" in generated[launcher["instance_config_map"]]
    assert generated[launcher["instance_config_map"]]["dagster.yaml"] == INSTANCE_FILES["k8s"].name
    assert ("Namespace", launcher["job_namespace"]) in services
    binding = services[("RoleBinding", "dagster-run-launcher")]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": launcher["service_account_name"],
                                    "namespace": launcher["job_namespace"]}]
    for name in launcher["env_config_maps"]:
        assert ("ConfigMap", name) in services

    # the same code location as the local workspace, served by the code server's Service
    local = _yaml(REPO_ROOT / "workspace.yaml")["load_from"][0]["python_module"]
    (remote,) = _yaml(K8S / "workspace.yaml")["load_from"]
    remote = remote["grpc_server"]
    assert remote["location_name"] == local["location_name"]
    code = _code_server(services)
    assert code["command"][code["command"].index("-m") + 1] == local["module_name"]
    assert services[("Service", remote["host"])]["spec"]["ports"][0]["port"] == remote["port"]
    assert str(remote["port"]) == code["command"][code["command"].index("-p") + 1]

    # one image for Dagster's pods and the runs; every Dagster pod has the instance and its settings
    images = {launcher["job_image"]}
    for (kind, name), doc in services.items():
        if kind != "Deployment":
            continue
        pod = doc["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == launcher["service_account_name"]
        (container,) = pod["containers"]
        images.add(container["image"])
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert env["DAGSTER_HOME"] == launcher["dagster_home"]
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert volumes[mounts[launcher["dagster_home"]]]["configMap"]["name"] == launcher["instance_config_map"]
        assert {"configMapRef": {"name": launcher["env_config_maps"][0]}} in container["envFrom"]
    assert images == {launcher["job_image"]}
    code_env = {e["name"]: e.get("value") for e in code["env"]}
    assert code_env["DAGSTER_CURRENT_IMAGE"] == launcher["job_image"]


def _pinned(package: str) -> str:
    import tomllib

    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [d for d in deps if d.split("==")[0].split("[")[0].strip() == package]
    return pin.split("==")[1]


def test_the_raycluster_has_what_kuberay_requires_and_is_where_mm_ray_address_points():
    (cluster,) = _docs(K8S / "raycluster.yaml")
    assert (cluster["apiVersion"], cluster["kind"]) == ("ray.io/v1", "RayCluster")
    spec = cluster["spec"]
    assert spec["rayVersion"] == _pinned("ray")
    head = spec["headGroupSpec"]
    groups = spec["workerGroupSpecs"]
    for where, group in [("head", head)] + [(g.get("groupName"), g) for g in groups]:
        params = group["rayStartParams"]
        assert isinstance(params, dict) and all(isinstance(v, str) for v in params.values()), where
        _assert_model(group["template"], "V1PodTemplateSpec", f"{where} pod template")
        assert group["template"]["spec"]["containers"], where
    assert len({g["groupName"] for g in groups}) == len(groups)
    for g in groups:
        counts = [g["minReplicas"], g["replicas"], g["maxReplicas"]]
        assert all(isinstance(n, int) for n in counts) and 0 <= counts[0] <= counts[1] <= counts[2], g["groupName"]

    def gpus(group) -> int:
        (container,) = group["template"]["spec"]["containers"]
        return int(container["resources"].get("limits", {}).get("nvidia.com/gpu", 0))

    assert [g["groupName"] for g in groups if gpus(g) == 0] and [g["groupName"] for g in groups if gpus(g) >= 1]
    (head_container,) = head["template"]["spec"]["containers"]
    client_port = {p["name"]: p["containerPort"] for p in head_container["ports"]}["client"]
    services = {(d["kind"], d["metadata"]["name"]): d for d in _docs(K8S / "services.yaml")}
    settings = services[("ConfigMap", "mm-curation-env")]["data"]
    # KubeRay's head Service is <cluster name>-head-svc
    assert settings["MM_RAY_ADDRESS"] == f"ray://{cluster['metadata']['name']}-head-svc:{client_port}"
    assert head_container["image"] == _yaml(INSTANCE_FILES["k8s"])["run_launcher"]["config"]["job_image"]
