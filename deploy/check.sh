#!/usr/bin/env bash
# Validates the deployment files; exits non-zero, naming what failed, if any check fails.
#
#   deploy/check.sh          run every check
#   deploy/check.sh --sync   first refresh deploy/k8s/base/pipeline.toml from config/default.toml
#                            and deploy/k8s/monitoring/prometheus-rule.yaml from
#                            deploy/monitoring/alerts.yml
#
# Checks:
#   systemd  - each unit carries the directives the deployment relies on (user, secrets,
#              config path, hardening, restart policy, stop timeout above the drain timeout),
#              and the worker template units (`pipeline-scrape-worker@.service`) the same plus
#              a probe port taken from the instance name;
#            - `systemd-analyze verify` passes with no diagnostic at all. verify insists that
#              every ExecStart binary exists, and the binaries live in /usr/local/bin only
#              after an install, so it runs on copies of the units (in a temporary directory)
#              whose ExecStart points at the built binaries under target/ when they exist and
#              at tiny stand-in scripts otherwise. A template unit is verified as its instance
#              `@9111`. Everything else in the units is verified as written;
#            - `systemd-analyze security --offline` exposure stays at or below 2.0 of 10 (when this
#              systemd is new enough to score unit files offline).
#   k8s      - the kustomize copy of the configuration equals config/default.toml;
#            - every manifest (each file under deploy/k8s except kustomization.yaml) validates
#              against the Kubernetes schemas, strictly (unknown fields are errors), with
#              kubernetes-validate from PyPI, installed into .local/venv on first use;
#            - the kustomizations reference files that exist and list every manifest, and the
#              workloads keep their contract (probes, security context, grace period, secret
#              references, PDBs, HPAs, Service, a migrate init container in each Deployment);
#            - with kubectl present, `kubectl kustomize` renders base and overlays, and the
#              rendered objects validate too (without kubectl this part is skipped, said so).
#   docker   - a minimal lint of deploy/Dockerfile and .dockerignore. The image itself is not
#              built here (that needs a Docker engine).
#   monitoring - `promtool check rules` on deploy/monitoring/alerts.yml and `promtool test
#              rules` on its unit tests (alerts.test.yml); the Kubernetes PrometheusRule
#              (deploy/k8s/monitoring/prometheus-rule.yaml) is exactly the one generated from
#              alerts.yml, and holds the same groups; the Grafana dashboard is valid JSON. (That
#              every series the dashboard and the rules name exists is a test of
#              pipeline-core: `cargo test -p pipeline-core metrics`.)
#
# Network: only pip's registry, once, to create .local/venv. On a fresh Debian/Ubuntu machine
# python3-venv, systemd (for systemd-analyze) and prometheus (for promtool) may be missing:
# run as root, the script installs them with apt-get; otherwise it says what to install.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

KV_VERSION=1.37.0
VENV=.local/venv
# systemd-analyze security's exposure scale is 0.0-10.0; --threshold takes tenths (20 = 2.0).
SECURITY_THRESHOLD=20
BINARIES=(scrape-worker extraction-worker facts-worker webhook-worker requeue-daemon pipeline-api pipelinectl pipeline-mcp)
K8S_DIR=deploy/k8s
CONFIG=config/default.toml
CONFIG_COPY=$K8S_DIR/base/pipeline.toml
ALERTS=deploy/monitoring/alerts.yml
ALERT_TESTS=deploy/monitoring/alerts.test.yml
DASHBOARD=deploy/monitoring/grafana-dashboard.json
PROMETHEUS_RULE=$K8S_DIR/monitoring/prometheus-rule.yaml

passed=0
failed=0
failures=()
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT

die() {
    echo "deploy/check.sh: $*" >&2
    exit 1
}

# run_check DESCRIPTION FUNCTION: runs FUNCTION with its output captured; prints one line per
# check, and the captured output when it fails.
run_check() {
    local desc=$1 fn=$2 log="$TMP/log"
    if "$fn" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $desc"
        sed 's/^/       /' "$log"
    else
        failed=$((failed + 1))
        failures+=("$desc")
        echo "FAIL $desc"
        sed 's/^/       /' "$log"
    fi
}

apt_install() {
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
        echo "deploy/check.sh: installing $* with apt-get" >&2
        DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    else
        return 1
    fi
}

# The PrometheusRule for the Prometheus Operator: alerts.yml's groups under `spec`.
render_prometheus_rule() {
    cat <<'EOF'
# Generated from deploy/monitoring/alerts.yml by `deploy/check.sh --sync`: edit that file and
# sync, not this one (deploy/check.sh fails while they differ). For the Prometheus Operator:
#   kubectl apply -n pipeline -k deploy/k8s/monitoring
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: pipeline
spec:
EOF
    sed -n '/^groups:/,$p' "$ALERTS" | sed 's/^\(.\)/  \1/'
}

if [[ ${1:-} == --sync ]]; then
    [[ -f $CONFIG ]] || die "$CONFIG is missing"
    cp "$CONFIG" "$CONFIG_COPY"
    echo "synced $CONFIG_COPY from $CONFIG"
    [[ -f $ALERTS ]] || die "$ALERTS is missing"
    render_prometheus_rule >"$PROMETHEUS_RULE"
    echo "synced $PROMETHEUS_RULE from $ALERTS"
elif [[ $# -gt 0 ]]; then
    die "unknown argument '$1' (usage: deploy/check.sh [--sync])"
fi

# --- tools ---------------------------------------------------------------------------------
command -v python3 >/dev/null || die "python3 is required"
if ! command -v systemd-analyze >/dev/null; then
    apt_install systemd || die "systemd-analyze not found: install the 'systemd' package (apt-get install systemd)"
fi
# promtool comes with Debian's Prometheus server package; its recommended extras (the node
# exporter and the like) are not needed for it.
if ! command -v promtool >/dev/null; then
    apt_install --no-install-recommends prometheus \
        || die "promtool not found: install the 'prometheus' package (apt-get install --no-install-recommends prometheus)"
fi

drain_secs=$(sed -n '/^\[shutdown\]/,/^\[/s/^drain_timeout_secs *= *\([0-9][0-9]*\).*/\1/p' "$CONFIG" 2>/dev/null || true)
drain_secs=${drain_secs:-30}

# --- systemd -------------------------------------------------------------------------------
UNITS=(deploy/systemd/*.service deploy/systemd/*.target)

check_units_lint() {
    python3 - "$drain_secs" "${UNITS[@]}" <<'PY'
import re, sys
drain = int(sys.argv[1])
units = sys.argv[2:]
names = {u.rsplit("/", 1)[1] for u in units}
expected = {
    "pipeline.target", "pipeline-migrate.service", "pipeline-scrape-worker.service",
    "pipeline-extraction-worker.service", "pipeline-facts-worker.service",
    "pipeline-webhook-worker.service",
    "pipeline-requeue-daemon.service",
    "pipeline-api.service", "pipeline-scrape-worker@.service",
    "pipeline-extraction-worker@.service",
}
errors = []
if names != expected:
    errors.append(f"unit set {sorted(names)} != expected {sorted(expected)}")

def parse(path):
    sections, cur = {}, None
    for raw in open(path, encoding="utf-8"):
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            cur = sections.setdefault(line.strip("[]"), [])
            continue
        k, _, v = line.partition("=")
        cur.append((k.strip(), v.strip()))
    return sections

def seconds(v):
    m = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", v)
    if not m:
        return None
    return int(m.group(1)) * (60 if m.group(2) in ("min", "m") else 1)

hardening = {
    "NoNewPrivileges": "yes", "ProtectSystem": "strict", "PrivateTmp": "yes",
    "ProtectHome": "yes", "CapabilityBoundingSet": "", "DynamicUser": "yes",
    "User": "pipeline", "SystemCallFilter": "@system-service",
    "EnvironmentFile": "/etc/pipeline/pipeline.env",
    "Environment": "PIPELINE_CONFIG=/etc/pipeline/pipeline.toml",
}
binaries = {
    "pipeline-migrate.service": "/usr/local/bin/pipelinectl migrate",
    "pipeline-scrape-worker.service": "/usr/local/bin/scrape-worker",
    "pipeline-extraction-worker.service": "/usr/local/bin/extraction-worker",
    "pipeline-facts-worker.service": "/usr/local/bin/facts-worker",
    "pipeline-webhook-worker.service": "/usr/local/bin/webhook-worker",
    "pipeline-requeue-daemon.service": "/usr/local/bin/requeue-daemon",
    "pipeline-api.service": "/usr/local/bin/pipeline-api",
    "pipeline-scrape-worker@.service": "/usr/local/bin/scrape-worker",
    "pipeline-extraction-worker@.service": "/usr/local/bin/extraction-worker",
}
# Template units: the instance name is the probe port, so two instances never share one.
template_ports = {
    "pipeline-scrape-worker@.service": "PIPELINE__PROBES__SCRAPE_WORKER_PORT",
    "pipeline-extraction-worker@.service": "PIPELINE__PROBES__EXTRACTION_WORKER_PORT",
}
for path in units:
    name = path.rsplit("/", 1)[1]
    s = parse(path)
    if name.endswith(".target"):
        continue
    unit, svc, inst = s.get("Unit", []), s.get("Service", []), s.get("Install", [])
    def has(pairs, k, v):
        return (k, v) in pairs
    for k, v in hardening.items():
        if not has(svc, k, v):
            errors.append(f"{name}: missing {k}={v}")
    if not any(k == "RestrictAddressFamilies" and v for k, v in svc):
        errors.append(f"{name}: missing RestrictAddressFamilies=")
    if not has(unit, "PartOf", "pipeline.target") or not has(inst, "WantedBy", "pipeline.target"):
        errors.append(f"{name}: not grouped by pipeline.target (PartOf= and WantedBy=)")
    if name in binaries and not has(svc, "ExecStart", binaries[name]):
        errors.append(f"{name}: ExecStart is not {binaries[name]}")
    if name in template_ports:
        var = template_ports[name]
        if not has(svc, "Environment", f"{var}=%i"):
            errors.append(f"{name}: the instance name must pick the probe port (Environment={var}=%i)")
        if not any(k == "RestartPreventExitStatus" and "2" in v.split() for k, v in svc):
            errors.append(f"{name}: missing RestartPreventExitStatus=2 (a bad instance name must not restart forever)")
    if name == "pipeline-migrate.service":
        if not has(svc, "Type", "oneshot"):
            errors.append(f"{name}: not Type=oneshot")
        continue
    if not has(svc, "Restart", "on-failure"):
        errors.append(f"{name}: missing Restart=on-failure")
    if not has(svc, "KillSignal", "SIGTERM"):
        errors.append(f"{name}: missing KillSignal=SIGTERM")
    # 75: the drain was cut short and held work handed back; a normal stop, not a failure.
    if not any(k == "SuccessExitStatus" and "75" in v.split() for k, v in svc):
        errors.append(f"{name}: missing SuccessExitStatus=75")
    stop = [seconds(v) for k, v in svc if k == "TimeoutStopSec"]
    # The exit margin (2 s) comes on top of the drain: see pipeline_core::shutdown.
    if not stop or stop[-1] is None or stop[-1] <= drain + 2:
        errors.append(f"{name}: TimeoutStopSec must be longer than the {drain}s drain timeout + 2 s")
    if not has(unit, "Requires", "pipeline-migrate.service") or not any(
        k == "After" and "pipeline-migrate.service" in v.split() for k, v in unit
    ):
        errors.append(f"{name}: not ordered after pipeline-migrate.service (Requires= and After=)")
if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(units)} units; stop timeouts above the {drain}s drain timeout")
PY
}

check_units_verify() {
    local dir="$TMP/systemd" bin src used=()
    mkdir -p "$dir/bin"
    for bin in "${BINARIES[@]}"; do
        src=""
        for cand in target/release/$bin target/debug/$bin; do
            if [[ -x $cand && -f $cand ]]; then src="$ROOT/$cand"; break; fi
        done
        if [[ -n $src ]]; then
            ln -s "$src" "$dir/bin/$bin"
            used+=("$bin=built")
        else
            printf '#!/bin/sh\nexit 0\n' >"$dir/bin/$bin"
            chmod +x "$dir/bin/$bin"
            used+=("$bin=stand-in")
        fi
    done
    cp "${UNITS[@]}" "$dir/" || return 1
    # verify and security take unit files, and a template file is no unit: each template is
    # checked as one instance of it (so its specifiers are expanded too).
    local tpl
    for tpl in "$dir"/*@.service; do
        [[ -e $tpl ]] || continue
        mv "$tpl" "${tpl%@.service}@9111.service" || return 1
    done
    sed -i "s#^ExecStart=/usr/local/bin/#ExecStart=$dir/bin/#" "$dir"/*.service || return 1
    local out
    out=$(cd "$dir" && systemd-analyze verify --man=no ./*.service ./*.target 2>&1) || {
        echo "$out"
        return 1
    }
    # verify exits 0 on ignored keys and unparsable values, so any diagnostic about our units
    # is a failure. Lines about the host's own units (pulled in by After=/Wants=) are shown only.
    local ours others
    ours=$(printf '%s\n' "$out" | grep -E "pipeline|$dir" || true)
    others=$(printf '%s\n' "$out" | grep -vE "pipeline|$dir" | grep . || true)
    [[ -z $others ]] || printf 'note (host units, not ours): %s\n' "$others"
    if [[ -n $ours ]]; then
        echo "$ours"
        return 1
    fi
    echo "ExecStart binaries: ${used[*]}"
}

check_units_security() {
    local help
    help=$(systemd-analyze security --help 2>&1 || true)
    if [[ $help != *--offline* ]]; then
        echo "skipped: this systemd cannot score unit files offline"
        return 0
    fi
    local dir="$TMP/systemd" unit out score status=0
    for unit in "$dir"/*.service; do
        if out=$(cd "$dir" && systemd-analyze security --offline=true --no-pager \
            --threshold="$SECURITY_THRESHOLD" "./${unit##*/}" 2>&1); then :; else status=1; fi
        score=$(printf '%s\n' "$out" | sed -n 's/.*Overall exposure level for \([^:]*\): \([0-9.]*\).*/\1 \2/p')
        if [[ -z $score ]]; then
            printf '%s\n' "$out"
            echo "${unit##*/}: no exposure score"
            status=1
        else
            echo "$score"
        fi
    done
    [[ $status -eq 0 ]] || echo "exposure above $((SECURITY_THRESHOLD / 10)).$((SECURITY_THRESHOLD % 10)) (or unscored)"
    return $status
}

run_check "systemd: units carry user, secrets, config, hardening, restart and stop settings" check_units_lint
run_check "systemd: systemd-analyze verify reports nothing about these units" check_units_verify
run_check "systemd: offline security exposure <= $((SECURITY_THRESHOLD / 10)).$((SECURITY_THRESHOLD % 10))" check_units_security

# --- Kubernetes ----------------------------------------------------------------------------
check_config_copy() {
    [[ -f $CONFIG ]] || { echo "$CONFIG is missing"; return 1; }
    if ! cmp -s "$CONFIG" "$CONFIG_COPY"; then
        echo "$CONFIG_COPY differs from $CONFIG; run deploy/check.sh --sync"
        return 1
    fi
    echo "$CONFIG_COPY == $CONFIG"
}

ensure_venv() {
    local stamp="$VENV/.kubernetes-validate-$KV_VERSION"
    [[ -f $stamp && -x $VENV/bin/kubernetes-validate ]] && return 0
    if [[ ! -x $VENV/bin/python ]]; then
        rm -rf "$VENV"
        if ! python3 -m venv "$VENV" >"$TMP/venv.log" 2>&1; then
            rm -rf "$VENV"
            apt_install python3-venv || {
                cat "$TMP/venv.log" >&2
                die "python3 -m venv failed: install python3-venv (apt-get install python3-venv)"
            }
            python3 -m venv "$VENV" || die "python3 -m venv failed even after installing python3-venv"
        fi
    fi
    echo "installing kubernetes-validate==$KV_VERSION into $VENV" >&2
    "$VENV/bin/python" -m pip install --disable-pip-version-check -q \
        "kubernetes-validate==$KV_VERSION" >&2 || die "pip install kubernetes-validate failed"
    touch "$stamp"
}

# The PrometheusRule is a custom resource, outside the Kubernetes schemas: the monitoring
# checks below validate it.
mapfile -t MANIFESTS < <(find "$K8S_DIR" -type f \( -name '*.yaml' -o -name '*.yml' \) \
    ! -name kustomization.yaml ! -name kustomization.yml ! -path "$PROMETHEUS_RULE" | sort)
mapfile -t KUSTOMIZATIONS < <(find "$K8S_DIR" -type f -name kustomization.yaml -printf '%h\n' | sort)

check_manifests_schema() {
    [[ ${#MANIFESTS[@]} -gt 0 ]] || { echo "no manifests under $K8S_DIR"; return 1; }
    "$VENV/bin/kubernetes-validate" --strict --quiet "${MANIFESTS[@]}" || return 1
    echo "${#MANIFESTS[@]} files: ${MANIFESTS[*]}"
}

check_manifests_contract() {
    "$VENV/bin/python" - "$drain_secs" "$K8S_DIR" <<'PY'
import os, sys, yaml
drain, root = int(sys.argv[1]), sys.argv[2]
errors = []

# Kustomizations: referenced files exist; every manifest in a kustomization's directory is
# listed (a forgotten file would silently not deploy).
for d, _, files in os.walk(root):
    if "kustomization.yaml" not in files:
        continue
    k = yaml.safe_load(open(os.path.join(d, "kustomization.yaml")))
    refs = list(k.get("resources", []))
    for g in k.get("configMapGenerator", []):
        refs += [f.split("=", 1)[-1] for f in g.get("files", [])]
    for r in refs:
        if not os.path.exists(os.path.join(d, r)):
            errors.append(f"{d}/kustomization.yaml: {r} does not exist")
    listed = set(k.get("resources", []))
    for f in files:
        if f.endswith((".yaml", ".yml")) and f != "kustomization.yaml" and f not in listed:
            errors.append(f"{d}/{f} is not listed in {d}/kustomization.yaml resources")

objs = {}
for d, _, files in os.walk(os.path.join(root, "base")):
    for f in sorted(files):
        if f.endswith(".yaml") and f != "kustomization.yaml":
            for o in yaml.safe_load_all(open(os.path.join(d, f))):
                if o:
                    objs[(o["kind"], o["metadata"]["name"])] = o

base_k = yaml.safe_load(open(os.path.join(root, "base", "kustomization.yaml")))
if not any(g.get("name") == "pipeline-config" and "pipeline.toml" in g.get("files", [])
           for g in base_k.get("configMapGenerator", [])):
    errors.append("base: configMapGenerator pipeline-config from pipeline.toml is missing")

SECRET_KEYS = {"database-url", "redis-url", "api-key", "embedding-api-key", "llm-api-key"}

def check_pod(name, spec, container_name, kind="containers"):
    sc = spec.get("securityContext", {})
    if not (sc.get("runAsNonRoot") is True and sc.get("seccompProfile", {}).get("type") == "RuntimeDefault"):
        errors.append(f"{name}: pod needs runAsNonRoot and seccomp RuntimeDefault")
    cs = [c for c in spec.get(kind, []) if c["name"] == container_name]
    if not cs:
        errors.append(f"{name}: no container {container_name}")
        return None
    c = cs[0]
    csc = c.get("securityContext", {})
    if not (csc.get("readOnlyRootFilesystem") is True and csc.get("allowPrivilegeEscalation") is False
            and csc.get("capabilities", {}).get("drop") == ["ALL"]):
        errors.append(f"{name}: container needs readOnlyRootFilesystem, no privilege escalation, drop ALL")
    r = c.get("resources", {})
    if not (r.get("requests") and r.get("limits")):
        errors.append(f"{name}: container needs resource requests and limits")
    env = {e["name"]: e for e in c.get("env", [])}
    if env.get("PIPELINE_CONFIG", {}).get("value") != "/etc/pipeline/pipeline.toml":
        errors.append(f"{name}: PIPELINE_CONFIG must be /etc/pipeline/pipeline.toml")
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/etc/pipeline"]
    if not mounts or vols.get(mounts[0]["name"], {}).get("configMap", {}).get("name") != "pipeline-config":
        errors.append(f"{name}: ConfigMap pipeline-config must be mounted at /etc/pipeline")
    for e in env.values():
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            if ref.get("name") != "pipeline-secrets" or ref.get("key") not in SECRET_KEYS:
                errors.append(f"{name}: {e['name']} refers to an unknown secret or key")
            if ref.get("key") in ("embedding-api-key", "llm-api-key") and ref.get("optional") is not True:
                errors.append(f"{name}: {ref.get('key')} must be optional")
    if "DATABASE_URL" not in env:
        errors.append(f"{name}: DATABASE_URL is not set from the Secret")
    return c, env

daemons = {"scrape-worker": 9101, "extraction-worker": 9102, "facts-worker": 9104,
           "webhook-worker": 9105,
           "requeue-daemon": 9103, "pipeline-api": 8742}
for name, port in daemons.items():
    d = objs.get(("Deployment", name))
    if not d:
        errors.append(f"Deployment {name} is missing")
        continue
    spec = d["spec"]["template"]["spec"]
    if not spec.get("terminationGracePeriodSeconds", 30) > drain + 2:
        errors.append(f"{name}: terminationGracePeriodSeconds must exceed the {drain}s drain timeout + 2 s")
    got = check_pod(name, spec, name)
    if not got:
        continue
    c, env = got
    # The scrape worker runs under tini (it reaps the browser's helper processes).
    if c.get("command") not in ([f"/usr/local/bin/{name}"], ["/usr/bin/tini", "--", f"/usr/local/bin/{name}"]):
        errors.append(f"{name}: command must be /usr/local/bin/{name} (or it under /usr/bin/tini --)")
    # Migrations run on every rollout, from the pod's own image, before the daemon starts.
    init = check_pod(f"{name} (init container migrate)", spec, "migrate", "initContainers")
    if init:
        ic = init[0]
        if ic.get("command") != ["/usr/local/bin/pipelinectl", "migrate"]:
            errors.append(f"{name}: init container migrate must run pipelinectl migrate")
        if ic.get("image") != c.get("image"):
            errors.append(f"{name}: init container migrate must use the daemon's image")
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    for probe, path in (("livenessProbe", "/health"), ("readinessProbe", "/ready")):
        g = c.get(probe, {}).get("httpGet", {})
        p = ports.get(g.get("port"), g.get("port"))
        if g.get("path") != path or p != port:
            errors.append(f"{name}: {probe} must GET {path} on port {port}")
    for key in ("REDIS_URL",):
        if key not in env:
            errors.append(f"{name}: {key} is not set")
    if name == "pipeline-api":
        if env.get("PIPELINE__API__BIND", {}).get("value") != "0.0.0.0:8742" or "PIPELINE_API_KEY" not in env:
            errors.append("pipeline-api: needs PIPELINE__API__BIND=0.0.0.0:8742 and PIPELINE_API_KEY")
    if name == "extraction-worker" and "PIPELINE_EMBEDDING_API_KEY" not in env:
        errors.append("extraction-worker: PIPELINE_EMBEDDING_API_KEY is not set (optional) from the Secret")

for w in ("scrape-worker", "extraction-worker"):
    if ("PodDisruptionBudget", w) not in objs:
        errors.append(f"PodDisruptionBudget {w} is missing")
    h = objs.get(("HorizontalPodAutoscaler", w))
    if not h or h["apiVersion"] != "autoscaling/v2" or h["spec"]["scaleTargetRef"]["name"] != w:
        errors.append(f"HorizontalPodAutoscaler (autoscaling/v2) for {w} is missing")
    if "replicas" in objs.get(("Deployment", w), {}).get("spec", {}):
        errors.append(f"{w}: the HPA owns replicas; remove spec.replicas")

svc = objs.get(("Service", "pipeline-api"))
if not svc or svc["spec"]["selector"].get("app.kubernetes.io/name") != "pipeline-api":
    errors.append("Service pipeline-api (selecting the API pods) is missing")

# A migration Job with a fixed name cannot take a new image (a Job's template is immutable),
# so every rollout would need a manual delete: the init containers replace it.
if ("Job", "pipeline-migrate") in objs:
    errors.append("Job pipeline-migrate: migrations run in the Deployments' init containers")

if errors:
    print("\n".join(errors))
    sys.exit(1)
print(f"{len(objs)} objects in base; kustomization references complete")
PY
}

check_kustomize_render() {
    if ! command -v kubectl >/dev/null; then
        echo "skipped: kubectl not found (each manifest file was validated on its own above)"
        return 0
    fi
    local dir out
    for dir in "${KUSTOMIZATIONS[@]}"; do
        out="$TMP/rendered-${dir//\//_}.yaml"
        kubectl kustomize "$dir" >"$out" || { echo "kubectl kustomize $dir failed"; return 1; }
        if [[ $dir == "$K8S_DIR/monitoring" ]]; then
            grep -q '^kind: PrometheusRule' "$out" || { echo "$dir: the PrometheusRule is missing"; return 1; }
            echo "$dir: $(grep -c '^kind:' "$out") object rendered (a PrometheusRule, checked below)"
            continue
        fi
        "$VENV/bin/kubernetes-validate" --strict --quiet "$out" || { echo "rendered $dir is invalid"; return 1; }
        grep -q '^  name: pipeline-config-' "$out" || { echo "$dir: generated ConfigMap missing"; return 1; }
        echo "$dir: $(grep -c '^kind:' "$out") objects rendered and valid"
    done
}

run_check "k8s: $CONFIG_COPY is identical to $CONFIG" check_config_copy
ensure_venv
run_check "k8s: every manifest validates against the Kubernetes $KV_VERSION schemas (strict)" check_manifests_schema
run_check "k8s: kustomizations complete; workloads keep probes, security, secrets, PDB/HPA, migrate init containers" check_manifests_contract
run_check "k8s: kustomize renders base and overlays into valid objects" check_kustomize_render

# --- Docker --------------------------------------------------------------------------------
check_dockerfile() {
    local f=deploy/Dockerfile bin status=0
    grep -q '^FROM rust:1-bookworm AS builder' "$f" || { echo "$f: builder stage is not rust:1-bookworm"; status=1; }
    grep -q '^FROM debian:bookworm-slim' "$f" || { echo "$f: runtime stage is not debian:bookworm-slim"; status=1; }
    grep -q 'cargo build --release --locked' "$f" || { echo "$f: no 'cargo build --release --locked'"; status=1; }
    grep -q 'ca-certificates' "$f" || { echo "$f: ca-certificates not installed"; status=1; }
    grep -q '^USER 10001' "$f" || { echo "$f: no 'USER 10001' line (non-root)"; status=1; }
    for bin in "${BINARIES[@]}"; do
        grep -q -- "--bin $bin\b" "$f" || { echo "$f: does not build $bin"; status=1; }
    done
    grep -q '^ENV SQLX_OFFLINE=true' "$f" || { echo "$f: the build does not set SQLX_OFFLINE=true"; status=1; }
    grep -qx 'target' .dockerignore || { echo ".dockerignore: target/ is not excluded"; status=1; }
    if grep -qE '^(Cargo\.lock|\.sqlx|crates|migrations|config|vendor)/?$' .dockerignore; then
        echo ".dockerignore excludes files the build needs"
        status=1
    fi
    [[ $status -eq 0 ]] && echo "image build not exercised here (needs a Docker engine)"
    return $status
}
run_check "docker: Dockerfile stages, non-root USER, all ${#BINARIES[@]} binaries; .dockerignore" check_dockerfile

# --- monitoring ----------------------------------------------------------------------------
check_alert_rules() {
    promtool check rules "$ALERTS"
}

check_alert_tests() {
    promtool test rules "$ALERT_TESTS"
}

check_prometheus_rule() {
    render_prometheus_rule >"$TMP/prometheus-rule.yaml"
    if ! cmp -s "$TMP/prometheus-rule.yaml" "$PROMETHEUS_RULE"; then
        diff -u "$PROMETHEUS_RULE" "$TMP/prometheus-rule.yaml" | head -40
        echo "$PROMETHEUS_RULE differs from the one generated from $ALERTS; run deploy/check.sh --sync"
        return 1
    fi
    # The same rules once parsed, too: a sync cannot hide a YAML slip in either file.
    "$VENV/bin/python" - "$ALERTS" "$PROMETHEUS_RULE" <<'PY'
import sys, yaml
alerts, rule = (yaml.safe_load(open(p)) for p in sys.argv[1:])
assert rule["apiVersion"] == "monitoring.coreos.com/v1" and rule["kind"] == "PrometheusRule", "not a PrometheusRule"
assert rule["spec"]["groups"] == alerts["groups"], "the PrometheusRule's groups differ from alerts.yml's"
names = [r["alert"] for g in alerts["groups"] for r in g["rules"]]
print(f"{sys.argv[2]}: the {len(names)} alerts of {sys.argv[1]}")
PY
}

check_dashboard_json() {
    python3 - "$DASHBOARD" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
print(f"{sys.argv[1]}: {len(d['panels'])} panels")
PY
}

run_check "monitoring: promtool check rules $ALERTS" check_alert_rules
run_check "monitoring: promtool test rules $ALERT_TESTS" check_alert_tests
run_check "monitoring: $PROMETHEUS_RULE is generated from $ALERTS" check_prometheus_rule
run_check "monitoring: $DASHBOARD is valid JSON" check_dashboard_json

echo
if [[ $failed -gt 0 ]]; then
    printf "deploy/check.sh: FAILED: %s\n" "${failures[@]}" >&2
fi
echo "deploy-checks: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
