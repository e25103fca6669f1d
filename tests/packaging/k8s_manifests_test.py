#!/usr/bin/env python3
"""packaging/k8s/ against the Kubernetes OpenAPI document in ../shared/contracts/.

That document holds the core/v1 API (and meta/v1), so:
- core/v1 objects (Namespace, ServiceAccount, Secret, ConfigMap, PersistentVolumeClaim,
  Service) are validated whole against their schemas;
- apps/v1 Deployment: its metadata (ObjectMeta), spec.selector (LabelSelector) and
  spec.template (PodTemplateSpec, with the whole PodSpec) are validated against the document;
  the rest of its spec is checked structurally here;
- policy/v1 PodDisruptionBudget and rbac/v1 Role and RoleBinding are not in the document: their
  metadata and selectors are validated, the rest checked structurally.
Schemas are made strict (no property a schema does not declare), so a misspelt field fails.
The document is read where it lies, never copied; without it the test is skipped (exit 77).
Usage: k8s_manifests_test.py K8S_DIR CONTRACTS_DIR SYNTHORG
"""
import copy
import glob
import os
import subprocess
import sys
import tempfile

import jsonschema
import yaml

k8s_dir, contracts_dir, synthorg = sys.argv[1:4]
document_path = os.path.join(contracts_dir, "kubernetes-core-v1-openapi.json")
if not os.path.exists(document_path):
    print(f"SKIPPED: {document_path} is absent; the manifests were NOT validated against Kubernetes' schemas")
    sys.exit(77)

import json

document = json.load(open(document_path))
schemas = copy.deepcopy(document["components"]["schemas"])


def strict(node):
    """additionalProperties: false wherever properties are declared and nothing else is allowed."""
    if isinstance(node, dict):
        if "properties" in node and "additionalProperties" not in node:
            node["additionalProperties"] = False
        for value in node.values():
            strict(value)
    elif isinstance(node, list):
        for value in node:
            strict(value)


strict(schemas)
root = {"components": {"schemas": schemas}}
resolver = jsonschema.RefResolver.from_schema(root)
failures = []
passed = 0


def check(condition, what):
    global passed
    if condition:
        passed += 1
    else:
        failures.append(what)
        print("FAIL:", what)


def validate(instance, schema_name, where):
    schema = {"$ref": f"#/components/schemas/{schema_name}"}
    validator = jsonschema.Draft7Validator(schema, resolver=resolver)
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    for error in errors:
        path = ".".join(str(p) for p in error.absolute_path)
        print(f"FAIL: {where}.{path}: {error.message[:300]}")
    check(not errors, f"{where} is a valid {schema_name.rsplit('.', 1)[-1]}")


def schema_for_kind(api_version, kind):
    group, _, version = api_version.rpartition("/")
    for name, schema in schemas.items():
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if gvk["group"] == group and gvk["version"] == version and gvk["kind"] == kind:
                return name
    return None


def list_of_strings(value):
    return isinstance(value, list) and value and all(isinstance(v, str) for v in value)


manifests = {}
for path in sorted(glob.glob(os.path.join(k8s_dir, "*.yaml"))):
    name = os.path.basename(path)
    if name == "kustomization.yaml":
        continue
    for index, item in enumerate(yaml.safe_load_all(open(path))):
        if item is None:
            continue
        where = f"{name}[{index}] {item.get('kind')}"
        check(item.get("metadata", {}).get("name"), f"{where} has a name")
        manifests[(item["kind"], item["metadata"]["name"])] = item
        schema = schema_for_kind(item["apiVersion"], item["kind"])
        if schema:
            validate(item, schema, where)
            continue
        # Not in the core document: what it does cover, then structure.
        validate(item["metadata"], "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", where + ".metadata")
        kind, spec = item["kind"], item.get("spec", {})
        if kind == "Deployment":
            check(item["apiVersion"] == "apps/v1", f"{where} is apps/v1")
            check(set(spec) <= {"replicas", "strategy", "selector", "template", "minReadySeconds",
                                "revisionHistoryLimit", "progressDeadlineSeconds", "paused"}, f"{where}.spec has only DeploymentSpec fields")
            check(isinstance(spec.get("replicas"), int) and spec["replicas"] >= 1, f"{where}.spec.replicas is a positive integer")
            check(spec.get("strategy", {}).get("type") in ("Recreate", "RollingUpdate"), f"{where}.spec.strategy.type is valid")
            validate(spec["selector"], "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", where + ".spec.selector")
            validate(spec["template"], "io.k8s.api.core.v1.PodTemplateSpec", where + ".spec.template")
        elif kind == "PodDisruptionBudget":
            check(item["apiVersion"] == "policy/v1", f"{where} is policy/v1")
            check(set(spec) <= {"selector", "minAvailable", "maxUnavailable", "unhealthyPodEvictionPolicy"}, f"{where}.spec fields")
            check(("minAvailable" in spec) != ("maxUnavailable" in spec), f"{where} sets one of minAvailable / maxUnavailable")
            validate(spec["selector"], "io.k8s.apimachinery.pkg.apis.meta.v1.LabelSelector", where + ".spec.selector")
            budget = spec.get("maxUnavailable", spec.get("minAvailable"))
            validate(budget, "io.k8s.apimachinery.pkg.util.intstr.IntOrString", where + ".spec budget")
        elif kind == "Role":
            check(item["apiVersion"] == "rbac.authorization.k8s.io/v1", f"{where} is rbac.authorization.k8s.io/v1")
            for rule in item.get("rules", []):
                check(set(rule) <= {"apiGroups", "resources", "verbs", "resourceNames"}, f"{where} rule fields")
                check(list_of_strings(rule.get("verbs")) and list_of_strings(rule.get("resources")), f"{where} rule lists verbs and resources")
                check(isinstance(rule.get("apiGroups"), list), f"{where} rule lists apiGroups")
                known = {"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
                check(set(rule.get("verbs", [])) <= known, f"{where} rule verbs are API verbs")
        elif kind == "RoleBinding":
            check(item["apiVersion"] == "rbac.authorization.k8s.io/v1", f"{where} is rbac.authorization.k8s.io/v1")
            ref = item.get("roleRef", {})
            check(set(ref) == {"apiGroup", "kind", "name"} and ref["apiGroup"] == "rbac.authorization.k8s.io", f"{where}.roleRef")
            for subject in item.get("subjects", []):
                check(set(subject) <= {"kind", "name", "namespace", "apiGroup"} and subject.get("kind") == "ServiceAccount",
                      f"{where} subject is a ServiceAccount")
        else:
            check(False, f"{where}: no check for {item['apiVersion']} {kind}")

# The pieces fit together.
deployment = manifests[("Deployment", "synthorg")]
pod = deployment["spec"]["template"]["spec"]
labels = deployment["spec"]["template"]["metadata"]["labels"]
container = pod["containers"][0]
matches = lambda selector: all(labels.get(k) == v for k, v in selector.items())
check(matches(deployment["spec"]["selector"]["matchLabels"]), "the Deployment's selector matches its pods")
check(matches(manifests[("Service", "synthorg")]["spec"]["selector"]), "the Service selects the pods")
check(matches(manifests[("PodDisruptionBudget", "synthorg")]["spec"]["selector"]["matchLabels"]), "the PDB selects the pods")
check(("ServiceAccount", pod["serviceAccountName"]) in manifests, "the pod's ServiceAccount exists")
binding = manifests[("RoleBinding", "synthorg-orchestrator")]
check(("Role", binding["roleRef"]["name"]) in manifests, "the RoleBinding's Role exists")
check(binding["subjects"][0]["name"] == pod["serviceAccountName"], "the Role is bound to the pod's ServiceAccount")
role = manifests[("Role", "synthorg-orchestrator")]
granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
check(granted == {("pods", v) for v in ["create", "get", "list", "watch", "delete"]} | {("pods/log", "get")},
      "the Role grants exactly the pod verbs the Orchestrator contract uses")
for volume in pod["volumes"]:
    if "configMap" in volume:
        check(("ConfigMap", volume["configMap"]["name"]) in manifests, f"ConfigMap {volume['configMap']['name']} exists")
    if "persistentVolumeClaim" in volume:
        check(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]) in manifests, "the PVC exists")
secret_refs = [e["secretRef"]["name"] for e in container.get("envFrom", []) if "secretRef" in e]
check(all(("Secret", name) in manifests for name in secret_refs), "the Secret template the pod reads exists")
secret = manifests[("Secret", "synthorg-secrets")]
check(set(secret["stringData"]) == {"SYNTHORG_JWT_SECRET", "SYNTHORG_SETTINGS_KEY"}, "the Secret template holds the two keys")
check(all(len(v) < 32 for v in secret["stringData"].values()), "the template's placeholders cannot pass as real keys")
security = container["securityContext"]
check(pod["securityContext"].get("runAsNonRoot") is True and pod["securityContext"].get("runAsUser") == 65532, "pod runs as 65532")
check(security.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
check(security.get("allowPrivilegeEscalation") is False, "no privilege escalation")
check(security.get("capabilities", {}).get("drop") == ["ALL"], "every capability dropped")
check(pod["securityContext"].get("seccompProfile", {}).get("type") == "RuntimeDefault", "RuntimeDefault seccomp")
check(container["livenessProbe"]["httpGet"]["path"] == "/api/v1/healthz", "liveness on /api/v1/healthz")
check(container["readinessProbe"]["httpGet"]["path"] == "/api/v1/readyz", "readiness on /api/v1/readyz")
check({"requests", "limits"} <= set(container.get("resources", {})), "resources have requests and limits")
port_names = {p["name"] for p in container["ports"]}
check(manifests[("Service", "synthorg")]["spec"]["ports"][0]["targetPort"] in port_names, "the Service targets a named container port")
service_ports = {p["name"]: p for p in manifests[("Service", "synthorg")]["spec"]["ports"]}
check(service_ports.get("grpc", {}).get("port") == 8081 and "grpc" in port_names,
      "the Service exposes Flight SQL's gRPC port 8081, targeting the container's named port")
check(service_ports.get("web", {}).get("port") == 3000 and "web" in port_names,
      "the Service exposes the dashboard's port 3000, targeting the container's named port")
shipped = yaml.safe_load(manifests[("ConfigMap", "synthorg-config")]["data"]["company.yaml"])
check(shipped["plugins"].get("web", {}).get("config", {}).get("address") == "0.0.0.0",
      "the ConfigMap enables the dashboard on 0.0.0.0 (loopback in a pod is unreachable)")
kustomization = yaml.safe_load(open(os.path.join(k8s_dir, "kustomization.yaml")))
listed = set(kustomization["resources"])
files = {os.path.basename(p) for p in glob.glob(os.path.join(k8s_dir, "*.yaml"))} - {"kustomization.yaml"}
check(listed == files - {"secret.yaml"}, "kustomization.yaml lists every manifest but the Secret template")

# The ConfigMap's company.yaml is a configuration this kernel accepts.
with tempfile.TemporaryDirectory() as work:
    config = os.path.join(work, "company.yaml")
    open(config, "w").write(manifests[("ConfigMap", "synthorg-config")]["data"]["company.yaml"])
    env = dict(os.environ, SYNTHORG_JWT_SECRET="x" * 40)
    env.pop("SYNTHORG_DATABASE_URL", None)
    result = subprocess.run([synthorg, "-c", config, "config", "validate"], capture_output=True, text=True, env=env)
    check(result.returncode == 0, f"the ConfigMap's company.yaml validates: {result.stdout}{result.stderr}".strip())

print(f"k8s manifests: {passed} passed, {len(failures)} failed")
sys.exit(1 if failures else 0)
