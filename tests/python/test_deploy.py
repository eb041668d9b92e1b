"""The deployment files, checked offline: deploy/kubernetes (a three-node StatefulSet and what
goes with it) and docker/compose.yaml (three nodes on one host).

- they parse, and kustomization.yaml lists exactly the manifests there are;
- every flag and TENSORD_* variable they give the daemon is one of server/config.def's rows,
  and `tensord --check-config` accepts them together (paths swapped for temporary files);
- the probes name endpoints a running daemon serves, on the port its --metrics-listen flag says;
- container ports, Service ports, --listen, --advertise, --peers and the NetworkPolicy agree;
- memory limits, --max-bytes (half the cgroup's limit by default), the volume and the grace
  period agree; the security context is the image's user, read-only, no capabilities; the token
  comes from a Secret as a file, never from an environment variable;
- compose: three nodes n0/n1/n2, each advertising the host address its port is published on and
  polling the other two by service name;
- `kubectl kustomize` renders the directory and `kubectl apply --dry-run=client --validate=false`
  accepts the result (kubectl needs an API server for discovery even then, so a stub on loopback
  answers it: the discovery documents and 404 for every object). Only that test is skipped, and
  says so, where kubectl is not installed.
The compose file is run for real by `make docker-test` (tests/ops/compose_test.sh)."""
import base64
import http.server
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request

import pytest
import yaml

from conftest import BINARY, Daemon

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "kubernetes"
COMPOSE = ROOT / "docker" / "compose.yaml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"

POD = "tensord-0"        # the first pod, as the StatefulSet names it
NAMESPACE = "tensord"
TOKEN = "deploy-test-token-0123456789abcdef"   # at least 16 bytes, as the daemon requires

SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
QUANTITY_UNITS = {"": 1, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40,
                  "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}


# ---- reading the files ----

def config_rows():
    """server/config.def: flag name -> its environment variable (None: none)."""
    text = (ROOT / "server" / "config.def").read_text()
    rows = re.findall(r'^OPT\(\s*\w+,\s*"([a-z-]+)",\s*(?:"(TENSORD_\w+)"|NULL)', text, re.M)
    assert len(rows) > 20, "config.def's rows not found"
    return {name: env or None for name, env in rows}


def kustomization():
    return yaml.safe_load((K8S / "kustomization.yaml").read_text())


def k8s_objects():
    objs = []
    for name in kustomization()["resources"]:
        objs += [d for d in yaml.safe_load_all((K8S / name).read_text()) if d is not None]
    return objs


def one(kind, name=None):
    found = [o for o in k8s_objects()
             if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, (kind, name, len(found))
    return found[0]


def container():
    pod = one("StatefulSet")["spec"]["template"]["spec"]
    assert len(pod["containers"]) == 1
    return pod["containers"][0]


def expand(text, env):
    """Kubernetes' $(VAR) expansion in args and env values ($$ is a literal $)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)),
                  text)


def pod_env(c, pod=POD):
    """The container's environment as the kubelet makes it for `pod`; a variable from a Secret
    fails the test (the token is a file)."""
    env = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = expand(str(e["value"]), env)
            continue
        src = e["valueFrom"]
        assert "secretKeyRef" not in src, f"{e['name']} comes from a Secret: use a file"
        path = src["fieldRef"]["fieldPath"]
        env[e["name"]] = {"metadata.name": pod, "metadata.namespace": NAMESPACE}[path]
    return env


def pod_args(c, pod=POD):
    env = pod_env(c, pod)
    args = [expand(a, env) for a in c.get("args", [])]
    for a in args:
        assert "$(" not in a, f"undefined variable in {a}"
    return args


def flags(argv):
    """[(name, value)] from --name=value and --name value."""
    out, i = [], 0
    while i < len(argv):
        a = argv[i]
        assert a.startswith("--"), f"not a flag: {a}"
        if "=" in a:
            name, value = a[2:].split("=", 1)
        else:
            name, value = a[2:], argv[i + 1]
            i += 1
        out.append((name, value))
        i += 1
    return out


def flag(argv, name):
    values = [v for n, v in flags(argv) if n == name]
    assert len(values) == 1, (name, values)
    return values[0]


def image_env():
    """The ENV the runtime image sets (the last stage of docker/Dockerfile)."""
    last = DOCKERFILE.read_text().split("\nFROM ")[-1]
    env = {}
    for block in re.findall(r"^ENV ((?:.*\\\n)*.*)$", last, re.M):
        for k, v in re.findall(r"(\w+)=(\S+)", block.replace("\\\n", " ")):
            env[k] = v
    return env


def image_cmd():
    m = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(), re.M)
    return json.loads(m.group(1))


def size(text):
    m = re.fullmatch(r"(\d+)([KMGT]?)", text)
    return int(m.group(1)) * SIZE_UNITS[m.group(2)]


def quantity(text):
    m = re.fullmatch(r"(\d+)([KMGT]i?|k)?", str(text))
    return int(m.group(1)) * QUANTITY_UNITS[m.group(2) or ""]


def seconds(text):
    m = re.fullmatch(r"(\d+)(ms|s|m|h)?", str(text))
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, None: 1}[m.group(2)]


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def compose():
    return yaml.safe_load(COMPOSE.read_text())


def compose_env(svc):
    env = svc.get("environment", {})
    if isinstance(env, list):
        env = dict(e.split("=", 1) for e in env)
    return {k: str(v) for k, v in env.items()}


# ---- running the daemon's own check ----

def check_config(argv, env, paths):
    """tensord --check-config with argv and env as a deployment gives them, each path in
    `paths` (the token file, the data dir) replaced by a temporary one. Returns the process."""
    with tempfile.TemporaryDirectory() as tmp:
        token = os.path.join(tmp, "token")
        with open(token, "w") as f:
            f.write(TOKEN + "\n")
        data = os.path.join(tmp, "data")
        os.mkdir(data, 0o700)
        swap = {paths["token"]: token, paths["data"]: data}

        def fix(v):
            return swap.get(v, v)
        argv = [re.sub(r"^(--[a-z-]+=)(.*)$", lambda m: m.group(1) + fix(m.group(2)), a)
                if a.startswith("--") else fix(a) for a in argv]
        env = {k: fix(v) for k, v in env.items()}
        # Only the deployment's variables: none of the test run's own TENSORD_* leak in.
        clean = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env}
        r = subprocess.run([BINARY, "--check-config", *argv], env=clean, capture_output=True,
                           text=True, timeout=30)
        # The effective settings, one `name = value` line each, with the paths put back.
        back = {v: k for k, v in swap.items()}
        r.settings = {}
        for line in r.stdout.splitlines():
            name, eq, value = line.partition(" = ")
            if eq:
                r.settings[name] = back.get(value, value)
        return r


def test_check_config_refuses_what_it_should():
    """The check these tests rely on can fail: an unknown flag, a bad node id, a peer without a
    port each exit 2."""
    base = ["--listen=0.0.0.0:7878", "--auth-token-file=/t", "--data-dir=/d"]
    paths = {"token": "/t", "data": "/d"}
    assert check_config(base, {}, paths).returncode == 0
    for bad in (["--no-such-flag=1"], ["--node-id=Not_A_Label"], ["--node-id=" + "a" * 64],
                ["--advertise=no-port"], ["--peers=dns:tensord-headless"]):
        r = check_config(base + bad, {}, paths)
        assert r.returncode == 2, (bad, r.stdout, r.stderr)


# ---- Kubernetes ----

def test_manifests_parse_and_kustomization_lists_them_all():
    files = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    k = kustomization()
    assert sorted(k["resources"]) == files
    assert k["namespace"] == NAMESPACE
    kinds = sorted(o["kind"] for o in k8s_objects())
    assert kinds == sorted(["Namespace", "Service", "Service", "StatefulSet",
                            "PodDisruptionBudget", "NetworkPolicy"])
    for o in k8s_objects():
        assert o["apiVersion"] and o["metadata"]["name"]
    # The Secret the pods mount is the one kustomize generates from the token file.
    gen = {g["name"]: g for g in k["secretGenerator"]}
    vols = one("StatefulSet")["spec"]["template"]["spec"]["volumes"]
    secret = [v["secret"] for v in vols if "secret" in v]
    assert len(secret) == 1 and secret[0]["secretName"] in gen
    assert gen[secret[0]["secretName"]]["files"] == ["token"]


def test_k8s_flags_and_variables_are_the_daemons():
    c = container()
    rows = config_rows()
    for name, _ in flags(pod_args(c)):
        assert name in rows, f"--{name} is not a tensord flag"
    known_env = {e for e in rows.values() if e}
    for name in pod_env(c):
        if name.startswith("TENSORD"):
            assert name in known_env, f"{name} is not a tensord variable"


def test_k8s_settings_pass_check_config():
    c = container()
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    for pod in ("tensord-0", "tensord-2"):
        args, env = pod_args(c, pod), pod_env(c, pod)
        tensord_env = {k: v for k, v in env.items() if k.startswith("TENSORD_")}
        r = check_config(args, tensord_env, {"token": flag(args, "auth-token-file"),
                                             "data": mounts["data"]})
        assert r.returncode == 0, r.stdout + r.stderr
        got = r.settings
        # The node's identity as the pod gets it from the downward API.
        assert got["node-id"] == pod
        assert got["advertise"] == f"{pod}.tensord-headless.{NAMESPACE}.svc.cluster.local:7878"
        assert got["peers"] == "dns:tensord-headless:7878"
        assert got["listen"] == "0.0.0.0:7878" and got["metrics-listen"] == "0.0.0.0:9090"
        assert got["auth-token-file"] == "/run/secrets/tensord/token"
        assert got["data-dir"] == mounts["data"]
        assert got["threads"] == env["TENSORD_THREADS"]
        assert got["shutdown-timeout"] == "30000ms" and got["session-ttl"] == "1800000ms"
        assert got["log-format"] == "json"


def test_k8s_ports_services_and_peers_agree():
    sts = one("StatefulSet")
    c = container()
    args = pod_args(c)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"wire": port_of(flag(args, "listen")),
                     "metrics": port_of(flag(args, "metrics-listen"))}
    assert port_of(flag(args, "advertise")) == ports["wire"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["selector"]["matchLabels"].items() <= labels.items()

    headless = one("Service", sts["spec"]["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["publishNotReadyAddresses"] is True
    # --advertise is the pod's DNS name under the StatefulSet's headless Service.
    host = flag(args, "advertise").rsplit(":", 1)[0]
    assert host == f"{POD}.{headless['metadata']['name']}.{NAMESPACE}.svc.cluster.local"
    # --peers resolves that Service, on the wire port it exposes.
    m = re.fullmatch(r"dns:([a-z0-9.-]+):(\d+)", flag(args, "peers"))
    assert m and m.group(1) == headless["metadata"]["name"]
    wire = [p for p in headless["spec"]["ports"] if p["targetPort"] == "wire"]
    assert len(wire) == 1 and wire[0]["port"] == int(m.group(2))

    for svc in (o for o in k8s_objects() if o["kind"] == "Service"):
        assert svc["spec"]["selector"].items() <= labels.items()
        for p in svc["spec"]["ports"]:
            assert p["targetPort"] in ports, p
    client = [s for s in k8s_objects()
              if s["kind"] == "Service" and s["metadata"]["name"] != headless["metadata"]["name"]]
    pdb = one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1 and sts["spec"]["replicas"] == 3
    assert client and all(s["spec"].get("clusterIP") != "None" for s in client)

    pol = one("NetworkPolicy")
    assert pol["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
    ingress = {p["port"] for rule in pol["spec"]["ingress"] for p in rule["ports"]}
    assert ingress == set(ports.values())
    # The nodes poll each other on the wire port: allowed both in and out.
    peer_in = [r for r in pol["spec"]["ingress"]
               if {"port": ports["wire"], "protocol": "TCP"} in r["ports"]]
    assert any(f.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()
               for r in peer_in for f in r["from"])
    egress = {p["port"] for rule in pol["spec"]["egress"] for p in rule["ports"]}
    assert {53, ports["wire"]} <= egress


def test_k8s_probes_point_at_served_endpoints():
    """Each probe's port is the metrics port of --metrics-listen, and a daemon started with a
    metrics listener answers its path 200 (and an unknown path 404, so a wrong one fails)."""
    c = container()
    args = pod_args(c)
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    probes = {k: c[k] for k in ("startupProbe", "livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert probes["readinessProbe"]["httpGet"]["path"] == "/readyz"
    d = Daemon("--metrics-listen", "127.0.0.1:0")
    try:
        m = re.search(r"metrics_listening addr=127\.0\.0\.1:(\d+)", d.text())
        assert d.port is not None and m, d.text()
        for kind, probe in probes.items():
            get = probe["httpGet"]
            port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
            assert port == port_of(flag(args, "metrics-listen")), kind
            url = f"http://127.0.0.1:{m.group(1)}{get['path']}"
            with urllib.request.urlopen(url, timeout=5) as resp:
                assert resp.status == 200, (kind, url)
        with pytest.raises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{m.group(1)}/ready", timeout=5)
        assert e.value.code == 404
    finally:
        assert d.stop() == 0


def test_k8s_resources_volume_and_grace_agree_with_the_limits():
    """Hand-derived from config.def's defaults: --max-bytes is half the memory the daemon may
    use (the cgroup's limit in a pod), --max-disk-bytes 4x --max-bytes (at most 64G),
    --session-max-bytes 4G; shutdown takes --shutdown-timeout (30s) plus writing the sessions,
    counted at a conservative 50 MB/s."""
    sts = one("StatefulSet")
    c = container()
    env = pod_env(c)
    res = c["resources"]
    assert res["requests"] == res["limits"], "Guaranteed QoS: requests equal limits"
    limit = quantity(res["limits"]["memory"])
    max_bytes = size(env["TENSORD_MAX_BYTES"]) if "TENSORD_MAX_BYTES" in env else limit // 2
    assert max_bytes <= limit // 2
    session_max = size(env.get("TENSORD_SESSION_MAX_BYTES", "4G"))
    assert session_max <= max_bytes
    max_disk = (size(env["TENSORD_MAX_DISK_BYTES"]) if "TENSORD_MAX_DISK_BYTES" in env
                else min(4 * max_bytes, 64 << 30))
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == flag(pod_args(c), "data-dir")
    assert quantity(claim["spec"]["resources"]["requests"]["storage"]) >= max_disk
    # The worker threads match the CPUs the pod may use (the daemon sees the machine's count).
    assert int(env["TENSORD_THREADS"]) == quantity(res["limits"]["cpu"])
    grace = sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    shutdown = seconds(env.get("TENSORD_SHUTDOWN_TIMEOUT", "30s"))
    assert grace >= shutdown + max_bytes / 50e6, (grace, shutdown, max_bytes)


def test_k8s_security_context_and_token_file():
    sts = one("StatefulSet")
    pod = sts["spec"]["template"]["spec"]
    c = container()
    uid = int(re.search(r"--uid (\d+)", DOCKERFILE.read_text()).group(1))
    assert uid == 10001
    psc, csc = pod["securityContext"], c["securityContext"]
    assert psc["runAsNonRoot"] is True and psc["runAsUser"] == uid
    assert psc["runAsGroup"] == uid and psc["fsGroup"] == uid
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["capabilities"]["drop"] == ["ALL"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False   # no TENSORD_PORT & co from the Service
    # The token file lies in the mounted Secret, readable by the daemon's group only.
    token = flag(pod_args(c), "auth-token-file")
    vols = {v["name"]: v for v in pod["volumes"]}
    (mount,) = [m for m in c["volumeMounts"]
                if "secret" in vols.get(m["name"], {}) and token.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    assert token[len(mount["mountPath"]) + 1:] == "token"
    assert vols[mount["name"]]["secret"]["defaultMode"] == 0o440
    for e in c.get("env", []):
        assert "TOKEN" not in e["name"], e
    # The token file kustomize reads is neither committed nor sent to an image build.
    patterns = [ln.strip() for ln in (K8S / ".gitignore").read_text().splitlines()
                if ln.strip() and not ln.startswith("#")]
    assert "token" in patterns
    ignored = (ROOT / "docker" / "Dockerfile.dockerignore").read_text().split()
    assert "deploy/kubernetes/token" in ignored


# ---- compose ----

def test_compose_three_nodes_advertise_their_host_ports_and_poll_each_other():
    doc = compose()
    svcs = doc["services"]
    assert sorted(svcs) == ["n0", "n1", "n2"]
    cmd0 = image_cmd()
    listen_port = port_of(flag(cmd0, "listen"))
    published = []
    for name, svc in svcs.items():
        argv = [str(a) for a in svc["command"]]
        assert flag(argv, "node-id") == name
        assert port_of(flag(argv, "listen")) == listen_port
        wire = [p for p in svc["ports"] if p.endswith(f":{listen_port}")]
        assert len(wire) == 1
        host, hport, _ = wire[0].rsplit(":", 2)
        assert host == "127.0.0.1"
        # Clients on the host are sent where they can reach this node: its published port.
        assert flag(argv, "advertise") == f"{host}:{hport}"
        published.append(f"{host}:{hport}")
        # The peers are the other services, by name, on the port they listen on.
        peers = sorted(flag(argv, "peers").split(","))
        assert peers == sorted(f"{o}:{listen_port}" for o in svcs if o != name)
        # Its own volume on the image's data directory; the token as a secret file.
        vols = [v.split(":") for v in svc["volumes"]]
        assert [v[1] for v in vols] == [image_env()["TENSORD_DATA_DIR"]]
        assert vols[0][0] == f"tensord-{name}" and vols[0][0] in doc["volumes"]
        assert svc["secrets"] == ["tensord_token"]
        assert flag(argv, "auth-token-file") == "/run/secrets/tensord_token"
        assert svc["read_only"] is True and svc["cap_drop"] == ["ALL"]
        grace = seconds(svc["stop_grace_period"])
        assert grace >= 2 * seconds(compose_env(svc).get("TENSORD_SHUTDOWN_TIMEOUT", "30s"))
    assert published == ["127.0.0.1:7878", "127.0.0.1:7879", "127.0.0.1:7880"]
    assert doc["secrets"]["tensord_token"]["file"] == "./secrets/tensord_token"
    # The README and the operations guide give clients this list.
    listed = "TENSORD_ADDR=" + ",".join(published)
    assert listed in (ROOT / "README.md").read_text()
    assert listed in (ROOT / "docs" / "operations.md").read_text()


def test_compose_settings_pass_check_config():
    rows = config_rows()
    known_env = {e for e in rows.values() if e}
    base_env = {k: v for k, v in image_env().items() if k.startswith("TENSORD_")}
    for name, svc in compose()["services"].items():
        argv = [str(a) for a in svc["command"]]
        env = {**base_env, **compose_env(svc)}
        for k in env:
            assert k in known_env, f"{k} is not a tensord variable"
        for f, _ in flags(argv):
            assert f in rows, f"--{f} is not a tensord flag"
        r = check_config(argv, env, {"token": "/run/secrets/tensord_token",
                                     "data": image_env()["TENSORD_DATA_DIR"]})
        assert r.returncode == 0, r.stdout + r.stderr
        got = r.settings
        assert got["node-id"] == name and got["advertise"] == flag(argv, "advertise")
        assert got["peers"] == flag(argv, "peers")
        assert got["auth-token-file"] == "/run/secrets/tensord_token"
        assert got["data-dir"] == "/var/lib/tensord"           # the image's ENV
        assert got["metrics-listen"] == "0.0.0.0:9090"         # the image's ENV
        assert got["session-ttl"] == "1800000ms" and got["log-format"] == "json"


# ---- kubectl ----

class _StubAPI(http.server.BaseHTTPRequestHandler):
    """Just enough of a Kubernetes API server for kubectl's client-side dry run: discovery of
    the kinds the manifests use, and 404 for every object (so each would be created)."""
    RESOURCES = {
        "/api/v1": [("namespaces", "Namespace", False), ("services", "Service", True),
                    ("secrets", "Secret", True)],
        "/apis/apps/v1": [("statefulsets", "StatefulSet", True)],
        "/apis/policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget", True)],
        "/apis/networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy", True)],
    }

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/api":
            body = {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        elif path == "/apis":
            groups = [p[len("/apis/"):] for p in self.RESOURCES if p.startswith("/apis/")]
            body = {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": g.split("/")[0], "versions": [{"groupVersion": g, "version": "v1"}],
                 "preferredVersion": {"groupVersion": g, "version": "v1"}} for g in groups]}
        elif path in self.RESOURCES:
            gv = "v1" if path == "/api/v1" else path[len("/apis/"):]
            body = {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv,
                    "resources": [{"name": n, "singularName": "", "namespaced": ns, "kind": k,
                                   "verbs": ["create", "get", "list", "patch", "update"]}
                                  for n, k, ns in self.RESOURCES[path]]}
        else:
            self.reply(404, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                             "status": "Failure", "reason": "NotFound", "code": 404,
                             "message": f"{path} not found"})
            return
        self.reply(200, body)

    def reply(self, code, body):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.mark.skipif(shutil.which("kubectl") is None,
                    reason="kubectl is not installed: the kustomize render and the client-side "
                           "dry run are not checked (every other deploy test ran)")
def test_kubectl_renders_and_dry_runs_the_manifests(tmp_path):
    copy = tmp_path / "kubernetes"
    shutil.copytree(K8S, copy)
    (copy / "token").write_text(TOKEN + "\n")
    r = subprocess.run(["kubectl", "kustomize", str(copy)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    rendered = [d for d in yaml.safe_load_all(r.stdout) if d]
    secrets = [d for d in rendered if d["kind"] == "Secret"]
    assert len(secrets) == 1
    assert base64.b64decode(secrets[0]["data"]["token"]).decode() == TOKEN + "\n"
    sts = [d for d in rendered if d["kind"] == "StatefulSet"][0]
    vols = sts["spec"]["template"]["spec"]["volumes"]
    # kustomize renamed the Secret (a hash suffix) and the pods' reference with it.
    assert [v["secret"]["secretName"] for v in vols if "secret" in v] == \
        [secrets[0]["metadata"]["name"]]
    assert all(d["metadata"].get("namespace", NAMESPACE) == NAMESPACE for d in rendered)
    out = tmp_path / "rendered.yaml"
    out.write_text(r.stdout)
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nmetadata:\n  name: x\n")   # no kind: kubectl refuses it

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubAPI)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump({
            "apiVersion": "v1", "kind": "Config", "current-context": "stub",
            "clusters": [{"name": "stub", "cluster": {
                "server": f"http://127.0.0.1:{server.server_address[1]}"}}],
            "users": [{"name": "stub", "user": {}}],
            "contexts": [{"name": "stub", "context": {"cluster": "stub", "user": "stub"}}]}))

        def apply(path):
            return subprocess.run(
                ["kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir",
                 str(tmp_path / "cache"), "--request-timeout=20s", "apply", "--dry-run=client",
                 "--validate=false", "-f", str(path)],
                capture_output=True, text=True, timeout=120, env={**os.environ,
                                                                  "HOME": str(tmp_path)})
        r = apply(out)
        assert r.returncode == 0, r.stdout + r.stderr
        created = re.findall(r"^(\S+) created \(dry run\)$", r.stdout, re.M)
        assert len(created) == len(rendered), r.stdout
        assert "statefulset.apps/tensord" in created
        assert apply(bad).returncode != 0
    finally:
        server.shutdown()
        server.server_close()
