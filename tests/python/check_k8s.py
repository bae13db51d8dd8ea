#!/usr/bin/env python3
"""Check the Kubernetes recipe (deploy/k8s/) without a cluster.

Every document is parsed (PyYAML) and validated against the Kubernetes OpenAPI schemas that
`kubernetes-validate` ships (strict: unknown fields fail), for the oldest and the newest version
checked here; then the fields that make the recipe work are checked against each other and against
the rest of the repository: the Dockerfile (user, port), docs/benchmark.md (memory), the settings'
defaults (shutdown grace, pool stop). Usage:

    python3 tests/python/check_k8s.py --repo REPO_ROOT

Each check prints one `PASS name: ...` or `FAIL name: ...` line; the exit status is 0 only when
every check passed (1 when one failed, 2 when a package is missing).
"""

from __future__ import annotations

import argparse
import re
import sys
import traceback
from pathlib import Path

try:
    import kubernetes_validate
    import yaml
except ImportError as e:  # pragma: no cover - exercised on fresh machines only
    print(
        f"FAIL setup: cannot import ({e}); run `python3 -m pip install -r tests/requirements.txt`",
        file=sys.stderr,
    )
    sys.exit(2)

# The oldest Kubernetes these manifests are meant for, and the newest the validator knows.
VERSIONS = ["1.29.0", kubernetes_validate.utils.latest_version()]
# What lingma-gw does after its grace on SIGTERM: stop each Lingma process (SIGTERM, 5 s, SIGKILL;
# `stop_grace` in src/commands/serve.rs).
POOL_STOP_SEC = 5
# The clients' conversation headers, in the order deploy/nginx/lingma-gw.conf prefers them, then
# the key headers: the ingress must hash on all of them.
HASH_VARIABLES = [
    "$http_x_claude_code_session_id",
    "$http_session_id",
    "$http_thread_id",
    "$http_x_session_id",
    "$http_x_session_affinity",
    "$http_authorization",
    "$http_x_api_key",
]
MIB = 1024 * 1024
UNITS = {"Ki": 1024, "Mi": MIB, "Gi": 1024 * MIB, "K": 1000, "M": 1000**2, "G": 1000**3}


class CheckFailed(Exception):
    pass


def expect(cond: bool, message: str) -> None:
    if not cond:
        raise CheckFailed(message)


def quantity(q: str) -> int:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(Ki|Mi|Gi|K|M|G)?", str(q))
    expect(m is not None, f"unreadable quantity {q!r}")
    return int(float(m.group(1)) * UNITS.get(m.group(2) or "", 1))


class Recipe:
    def __init__(self, repo: Path):
        self.repo = repo
        self.dir = repo / "deploy" / "k8s"
        self.files: dict[str, list[dict]] = {}
        self.docs: list[dict] = []

    def one(self, kind: str, name: str | None = None) -> dict:
        found = [
            d
            for d in self.docs
            if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)
        ]
        expect(len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}")
        return found[0]

    def container(self) -> dict:
        spec = self.one("StatefulSet")["spec"]["template"]["spec"]
        found = [c for c in spec["containers"] if c["name"] == "lingma-gw"]
        expect(len(found) == 1, "one container named lingma-gw")
        return found[0]

    def env(self) -> dict[str, dict]:
        return {e["name"]: e for e in self.container().get("env", [])}

    def env_value(self, name: str) -> str:
        e = self.env().get(name)
        expect(e is not None and "value" in e, f"{name} has a literal value")
        return e["value"]

    # --- the checks -------------------------------------------------------------------------

    def parse(self) -> str:
        paths = sorted(self.dir.glob("*.yaml"))
        expect(paths, f"no YAML files in {self.dir}")
        for p in paths:
            docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
            expect(docs, f"{p.name} has no document")
            for d in docs:
                expect(isinstance(d, dict), f"{p.name}: a document is not a mapping")
                expect("apiVersion" in d and "kind" in d, f"{p.name}: apiVersion and kind")
            self.files[p.name] = docs
        self.docs = [
            d for name, docs in self.files.items() if name != "kustomization.yaml" for d in docs
        ]
        for d in self.docs:
            expect(d.get("metadata", {}).get("name"), f"{d['kind']} without metadata.name")
        return f"{len(self.docs)} documents in {len(paths)} files"

    def kustomization(self) -> str:
        (k,) = self.files["kustomization.yaml"]
        expect(k["kind"] == "Kustomization", "kustomization.yaml is a Kustomization")
        listed = set(k["resources"])
        present = set(self.files) - {"kustomization.yaml"}
        expect(listed == present, f"kustomization lists {sorted(listed)}, the dir has {sorted(present)}")
        return f"applies {len(listed)} files"

    def schemas(self) -> str:
        for version in VERSIONS:
            for d in self.docs:
                try:
                    kubernetes_validate.validate(d, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    raise CheckFailed(
                        f"{d['kind']}/{d['metadata']['name']} against {version}: "
                        f"{'.'.join(str(p) for p in e.path)}: {e.message}"
                    )
        return f"{len(self.docs)} documents valid (strict) against Kubernetes {', '.join(VERSIONS)}"

    def statefulset_identity(self) -> str:
        sts = self.one("StatefulSet")
        spec = sts["spec"]
        headless = self.one("Service", spec["serviceName"])
        expect(headless["spec"].get("clusterIP") == "None", "serviceName is a headless Service")
        labels = spec["template"]["metadata"]["labels"]
        sel = spec["selector"]["matchLabels"]
        expect(all(labels.get(k) == v for k, v in sel.items()), "selector matches the pods")
        for svc in [d for d in self.docs if d["kind"] == "Service"]:
            s = svc["spec"]["selector"]
            expect(all(labels.get(k) == v for k, v in s.items()), f"Service {svc['metadata']['name']} selects the pods")
        pdb = self.one("PodDisruptionBudget")
        expect(pdb["spec"]["selector"]["matchLabels"] == sel, "the PodDisruptionBudget selects the pods")
        replica = self.env()["LINGMA_GW_REPLICA_ID"]
        expect(
            replica.get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
            "the replica id is the pod's name",
        )
        expect(spec["template"]["spec"].get("enableServiceLinks") is False,
               "no Service environment variables (LINGMA_GW_*) in the pods")
        return f"{spec['replicas']} replicas named by pod, headless Service {headless['metadata']['name']}"

    def volume_per_replica(self) -> str:
        spec = self.one("StatefulSet")["spec"]
        (claim,) = spec["volumeClaimTemplates"]
        expect(claim["spec"]["accessModes"] == ["ReadWriteOnce"], "one writer per volume")
        name = claim["metadata"]["name"]
        mounts = {m["name"]: m["mountPath"] for m in self.container()["volumeMounts"]}
        expect(name in mounts, f"the claim {name} is mounted")
        work = self.env_value("LINGMA_WORK_DIR")
        expect(work.startswith(mounts[name].rstrip("/") + "/"), f"LINGMA_WORK_DIR {work} is on the volume {mounts[name]}")
        lingma = self.env_value("LINGMA_BIN")
        bin_mounts = [p for p in mounts.values() if lingma.startswith(p.rstrip("/") + "/")]
        expect(bin_mounts, f"LINGMA_BIN {lingma} is on a volume")
        init = spec["template"]["spec"].get("initContainers", [])
        expect(
            any(lingma in " ".join(c.get("command", []) + c.get("args", [])) for c in init),
            "an init container puts the Lingma binary there",
        )
        return f"work dirs {work} on {claim['spec']['resources']['requests']['storage']} per replica"

    def probes(self) -> str:
        c = self.container()
        ports = {p["name"]: p["containerPort"] for p in c["ports"]}
        for probe, path in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")]:
            get = c[probe]["httpGet"]
            expect(get["path"] == path, f"{probe} on {path}, not {get['path']}")
            expect(get["port"] in ports, f"{probe} port {get['port']} is a named container port")
        live = c["livenessProbe"]
        window = live["periodSeconds"] * live["failureThreshold"]
        expect(window >= 120, f"liveness gives up after {window}s: the pool restarts Lingma itself first")
        return f"readiness /readyz, liveness /healthz (gives up after {window}s)"

    def termination(self) -> str:
        spec = self.one("StatefulSet")["spec"]["template"]["spec"]
        grace = float(self.env_value("GATEWAY_SHUTDOWN_GRACE_SEC"))
        period = spec["terminationGracePeriodSeconds"]
        expect(period > grace + POOL_STOP_SEC,
               f"terminationGracePeriodSeconds {period} <= grace {grace} + pool stop {POOL_STOP_SEC}")
        return f"{period}s > {grace:g}s grace + {POOL_STOP_SEC}s to stop Lingma"

    def secrets(self) -> str:
        secret = self.one("Secret")
        keys = set(secret.get("stringData", {})) | set(secret.get("data", {}))
        wanted = {"API_KEYS", "ADMIN_TOKEN", "METRICS_TOKEN", "LINGMA_SESSION_BUNDLE"}
        for name in sorted(wanted):
            ref = self.env().get(name, {}).get("valueFrom", {}).get("secretKeyRef")
            expect(ref is not None, f"{name} comes from a Secret")
            expect(ref["name"] == secret["metadata"]["name"] and ref["key"] in keys,
                   f"{name}: {ref} is not a key of Secret {secret['metadata']['name']}")
        api = self.env()["API_KEYS"]["valueFrom"]["secretKeyRef"]
        expect(not api.get("optional", False), "API_KEYS is required: the pods listen on 0.0.0.0")
        for e in self.container().get("env", []):
            if re.search(r"KEYS|TOKEN|PASSWORD|PASSPHRASE|BUNDLE", e["name"]):
                expect("value" not in e, f"{e['name']} is written in the manifest, not in the Secret")
        return f"{', '.join(sorted(wanted))} from Secret {secret['metadata']['name']}"

    def resources(self) -> str:
        text = (self.repo / "docs" / "benchmark.md").read_text()
        gw = re.search(r"gateway \*\*([\d.]+) MB\*\* peak RSS", text)
        sim = re.search(r"the simulator child ([\d.]+) MB", text)
        expect(gw and sim, "docs/benchmark.md no longer states the memory figures this checks against")
        gateway_mb, lingma_mb = float(gw.group(1)), float(sim.group(1))
        instances = int(self.env_value("INSTANCE_COUNT"))
        r = self.container()["resources"]
        request = quantity(r["requests"]["memory"])
        limit = quantity(r["limits"]["memory"])
        need = (gateway_mb + instances * lingma_mb) * 1000**2
        expect(request >= need, f"memory request {request / MIB:.0f} MiB < {need / MIB:.0f} MiB "
               f"(gateway {gateway_mb} MB + {instances} x {lingma_mb} MB)")
        expect(limit >= request, "memory limit below the request")
        expect("cpu" not in r.get("limits", {}), "a CPU limit throttles streams")
        expect("cpu" in r["requests"], "a CPU request")
        return (f"memory {r['requests']['memory']} >= {gateway_mb} MB + {instances} x {lingma_mb} MB "
                f"(docs/benchmark.md), limit {r['limits']['memory']}")

    def image_matches_dockerfile(self) -> str:
        docker = (self.repo / "Dockerfile").read_text()
        user = re.search(r"^USER\s+(\d+)(?::(\d+))?\s*$", docker, re.M)
        expose = re.search(r"^EXPOSE\s+(\d+)\s*$", docker, re.M)
        expect(user and expose, "the Dockerfile has a numeric USER and one EXPOSE")
        sc = self.one("StatefulSet")["spec"]["template"]["spec"]["securityContext"]
        expect(sc.get("runAsNonRoot") is True, "runAsNonRoot")
        expect(str(sc["runAsUser"]) == user.group(1), f"runAsUser {sc['runAsUser']} is the image's USER {user.group(1)}")
        expect(str(sc["fsGroup"]) == (user.group(2) or user.group(1)), "fsGroup is the image's group (the volume is writable)")
        ports = [p["containerPort"] for p in self.container()["ports"]]
        expect(ports == [int(expose.group(1))], f"container port {ports} is the image's EXPOSE {expose.group(1)}")
        expect(self.container().get("args") == ["serve"], "the image's entrypoint runs serve")
        return f"uid {user.group(1)}, port {expose.group(1)}"

    def ingress(self) -> str:
        ing = self.one("Ingress")
        a = ing["metadata"]["annotations"]
        p = "nginx.ingress.kubernetes.io/"
        hash_by = a[p + "upstream-hash-by"]
        positions = [hash_by.find(v) for v in HASH_VARIABLES]
        expect(all(i >= 0 for i in positions), f"upstream-hash-by {hash_by!r} misses a header")
        expect(positions == sorted(positions), "the conversation headers come before the key")
        expect(a[p + "proxy-buffering"] == "off", "streams are not buffered")
        for t in ["proxy-read-timeout", "proxy-send-timeout"]:
            expect(int(a[p + t]) >= 600, f"{t}: a reasoning model may think for minutes")
        expect(set(a[p + "proxy-next-upstream"].split()) <= {"error", "timeout"},
               "only unreached replicas are retried (no non_idempotent, no http_5xx)")
        backends = [
            path["backend"]["service"]
            for rule in ing["spec"]["rules"]
            for path in rule["http"]["paths"]
        ]
        client = self.one("Service", "lingma-gw")
        port_names = {pt["name"] for pt in client["spec"]["ports"]}
        for b in backends:
            expect(b["name"] == "lingma-gw" and b["port"].get("name") in port_names,
                   f"backend {b} is the client Service's port")
        return f"hash on {len(HASH_VARIABLES)} headers, unbuffered, retries only unreached replicas"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", required=True, type=Path, help="the repository's root")
    args = ap.parse_args()
    r = Recipe(args.repo)
    plan = [
        ("parse", r.parse),
        ("kustomization", r.kustomization),
        ("schemas", r.schemas),
        ("statefulset_identity", r.statefulset_identity),
        ("volume_per_replica", r.volume_per_replica),
        ("probes", r.probes),
        ("termination", r.termination),
        ("secrets", r.secrets),
        ("resources", r.resources),
        ("image_matches_dockerfile", r.image_matches_dockerfile),
        ("ingress", r.ingress),
    ]
    failed = []
    for name, fn in plan:
        try:
            print(f"PASS {name}: {fn()}", flush=True)
        except CheckFailed as e:
            failed.append(name)
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # a missing field reads as a failed check, with where it was
            failed.append(name)
            print(f"FAIL {name}: unexpected {type(e).__name__}: {e}", flush=True)
            traceback.print_exc(file=sys.stdout)
        if name == "parse" and failed:
            break
    passed = len(plan) - len(failed)
    verdict = "ok" if not failed else "FAILED: " + ", ".join(failed)
    # Not "N passed, N failed": CI reads that shape as a test runner's closing line.
    print(f"check_k8s: {passed}/{len(plan)} checks passed; {verdict}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
