#!/usr/bin/python3
"""Validates Kubernetes manifests offline against the API types of Debian's python3-kubernetes.

  validate_k8s.py FILE.yaml...        (multi-document YAML, e.g. `kubectl kustomize` output)

python3-kubernetes (Debian 12: 22.6.0) carries the Kubernetes 1.22 API as model classes generated
from the API server's OpenAPI spec: each field's name, type and whether it is required. Each
document is checked against the model of its apiVersion/kind:

  * every field must exist in that model (a typo, or a field newer than Kubernetes 1.22, is an
    error: the client itself silently drops unknown fields, so this walk is done here);
  * every value must have the model's type (string, integer, boolean, list, map, object);
  * required fields must be there (the models' own client-side validation, on deserializing).

Then cross-object checks that the API server or the controllers would otherwise only report on
a cluster: selectors match pod labels, the StatefulSet's serviceName is a headless Service of the
set, Services and PodDisruptionBudgets select some pod, named ports and volume mounts exist,
$(VAR) references in command/args are defined, names are DNS labels, an Indexed Job has
completions. Not checked (needs an API server): admission (quotas, PodSecurity, webhooks),
defaulting, immutable-field updates, whether the image, Secrets and ConfigMaps exist.

Exit 0 when every document passes; otherwise prints one line per problem and exits 1.
"""
import re
import sys

import yaml
from kubernetes import client as kc

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")

errors = []


def err(where, msg):
    errors.append(f"{where}: {msg}")


def model_name(api_version, kind):
    version = api_version.split("/")[-1]  # v1, v1beta1
    return version[0].upper() + version[1:] + kind


def walk(value, typ, path):
    """Checks `value` against the python3-kubernetes type string `typ`."""
    if value is None:
        return
    m = re.fullmatch(r"list\[(.+)\]", typ)
    if m:
        if not isinstance(value, list):
            return err(path, f"expected a list ({typ}), got {type(value).__name__}")
        for i, v in enumerate(value):
            walk(v, m.group(1), f"{path}[{i}]")
        return
    m = re.fullmatch(r"dict\(str, (.+)\)", typ)
    if m:
        if not isinstance(value, dict):
            return err(path, f"expected a map ({typ}), got {type(value).__name__}")
        for k, v in value.items():
            if not isinstance(k, str):
                err(path, f"map key {k!r} is not a string")
            walk(v, m.group(1), f"{path}.{k}")
        return
    if typ == "str":
        if not isinstance(value, str):
            err(path, f"expected a string, got {type(value).__name__} {value!r}")
        return
    if typ == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            err(path, f"expected an integer, got {type(value).__name__} {value!r}")
        return
    if typ == "bool":
        if not isinstance(value, bool):
            err(path, f"expected a boolean, got {type(value).__name__} {value!r}")
        return
    if typ == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            err(path, f"expected a number, got {type(value).__name__} {value!r}")
        return
    if typ in ("object", "datetime", "date"):
        return  # IntOrString, RawExtension, timestamps: anything the API accepts as JSON
    cls = getattr(kc, typ, None)
    if cls is None:
        return err(path, f"python3-kubernetes has no model {typ}")
    if not isinstance(value, dict):
        return err(path, f"expected an object ({typ}), got {type(value).__name__}")
    by_json = {j: a for a, j in cls.attribute_map.items()}
    for key, v in value.items():
        attr = by_json.get(key)
        if attr is None:
            err(f"{path}.{key}", f"unknown field in {typ} (Kubernetes 1.22 API, python3-kubernetes "
                f"{kc.__version__})")
            continue
        walk(v, cls.openapi_types[attr], f"{path}.{key}")


def deserialize(doc, name, where):
    """The models' own validation (required fields) as the client applies it to API responses."""
    api = kc.ApiClient()
    try:
        return api._ApiClient__deserialize(doc, name)  # the client's response decoder
    except (ValueError, TypeError) as e:
        err(where, f"{name}: {e}")
        return None


def pod_spec(doc):
    kind = doc.get("kind")
    spec = doc.get("spec") or {}
    if kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job"):
        tpl = spec.get("template") or {}
        return (tpl.get("metadata") or {}).get("labels") or {}, tpl.get("spec") or {}
    if kind == "Pod":
        return (doc.get("metadata") or {}).get("labels") or {}, spec
    return None, None


def selects(selector, labels):
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_pod(where, labels, spec, claim_names=()):
    volumes = {v.get("name") for v in spec.get("volumes") or []} | set(claim_names)
    for v in spec.get("volumes") or []:
        if not DNS_LABEL.match(str(v.get("name", ""))):
            err(f"{where}.volumes", f"volume name {v.get('name')!r} is not a DNS label")
    seen = set()
    for c in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        cw = f"{where}.containers[{c.get('name')}]"
        if c.get("name") in seen:
            err(cw, "duplicate container name")
        seen.add(c.get("name"))
        ports = {p.get("name") for p in c.get("ports") or [] if p.get("name")}
        for m in c.get("volumeMounts") or []:
            if m.get("name") not in volumes:
                err(cw, f"volumeMount {m.get('name')!r} names no volume or volumeClaimTemplate")
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            p = c.get(probe) or {}
            handlers = [h for h in ("exec", "httpGet", "tcpSocket", "grpc") if h in p]
            if p and len(handlers) != 1:
                err(f"{cw}.{probe}", f"needs exactly one handler, has {handlers}")
            for h in ("httpGet", "tcpSocket"):
                port = (p.get(h) or {}).get("port")
                if isinstance(port, str) and port not in ports:
                    err(f"{cw}.{probe}", f"named port {port!r} is not a port of the container")
        env = {e.get("name") for e in c.get("env") or []}
        for field in ("command", "args"):
            for arg in c.get(field) or []:
                for var in VAR_REF.findall(str(arg)):
                    if var not in env:
                        err(f"{cw}.{field}", f"$({var}) is not defined in env (Kubernetes would "
                            "pass it on literally)")
    return labels


def main(paths):
    docs = []
    for path in paths:
        with open(path) as f:
            try:
                for i, d in enumerate(yaml.safe_load_all(f)):
                    if d is not None:
                        docs.append((f"{path}#{i}", d))
            except yaml.YAMLError as e:
                err(path, f"YAML: {e}")
    if not docs and not errors:
        err(",".join(paths), "no documents")

    pods = []  # (where, kind, name, labels, spec)
    services, headless = {}, set()
    for where, d in docs:
        if not isinstance(d, dict):
            err(where, "document is not a mapping")
            continue
        api, kind = d.get("apiVersion"), d.get("kind")
        name = (d.get("metadata") or {}).get("name", "")
        where = f"{where} {kind}/{name}"
        if not api or not kind:
            err(where, "apiVersion and kind are required")
            continue
        mname = model_name(api, kind)
        if getattr(kc, mname, None) is None:
            err(where, f"{api} {kind} is not a Kubernetes 1.22 API type ({mname})")
            continue
        walk(d, mname, where)
        deserialize(d, mname, where)
        if not name:
            err(where, "metadata.name is required")
        elif not DNS_SUBDOMAIN.match(name) or len(name) > 253:
            err(where, f"metadata.name {name!r} is not a DNS subdomain")
        spec = d.get("spec") or {}
        labels, pspec = pod_spec(d)
        if pspec is not None:
            claims = [(t.get("metadata") or {}).get("name")
                      for t in spec.get("volumeClaimTemplates") or []]
            check_pod(f"{where}.spec.template.spec", labels, pspec, claims)
            pods.append((where, kind, name, labels, pspec))
            sel = (spec.get("selector") or {}).get("matchLabels")
            if kind != "Job" and not selects(sel, labels):
                err(where, f"spec.selector.matchLabels {sel} does not match the template's "
                    f"labels {labels}")
        if kind == "Job" and spec.get("completionMode") == "Indexed" and not spec.get("completions"):
            err(where, "an Indexed Job needs spec.completions")
        if kind == "Service":
            services[name] = d
            if spec.get("clusterIP") == "None":
                headless.add(name)

    for where, d in docs:
        if not isinstance(d, dict):
            continue
        kind, spec = d.get("kind"), d.get("spec") or {}
        where = f"{where} {kind}/{(d.get('metadata') or {}).get('name', '')}"
        if kind == "StatefulSet" and spec.get("serviceName") not in headless:
            err(where, f"serviceName {spec.get('serviceName')!r} is not a headless Service here")
        if kind == "Service" and spec.get("selector"):
            matched = [p for p in pods if selects(spec["selector"], p[3]) and p[1] != "Job"]
            if not matched:
                err(where, f"selector {spec['selector']} matches no workload's pods")
            for port in spec.get("ports") or []:
                tp = port.get("targetPort")
                if isinstance(tp, str):
                    names = {cp.get("name") for p in matched for c in p[4].get("containers") or []
                             for cp in c.get("ports") or []}
                    if tp not in names:
                        err(where, f"targetPort {tp!r} is no named port of the selected pods")
        if kind == "PodDisruptionBudget":
            sel = (spec.get("selector") or {}).get("matchLabels")
            if not any(selects(sel, p[3]) for p in pods):
                err(where, f"selector {sel} matches no workload's pods")

    for e in errors:
        print(e)
    print(f"validate_k8s: {len(docs)} documents, {len(errors)} problems "
          f"(python3-kubernetes {kc.__version__})")
    return 1 if errors else 0


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    sys.exit(main(sys.argv[1:]))
