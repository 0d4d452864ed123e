#!/usr/bin/python3
"""Runs deploy/docker-compose.yml's services with `podman run`, one by one, as Compose would.

Debian 12 has no Compose v2 (the file needs it: top-level name:, depends_on conditions), and
podman-compose 1.0.3 / docker-compose 1.29 would put the services on a bridge network. This
reads the compose file itself, so the images, entrypoints, commands, volumes, environment,
healthcheck and depends_on conditions run are the file's own; what differs, by design:

  * network: the services share one network namespace (loopback only, nothing leaves the
    machine), held by a `sleep infinity` container as a Kubernetes pod's is by its pause container,
    so that a restarted coordinator rejoins it; a hosts file maps the service name "coordinator"
    to 127.0.0.1; `ports:` are not published;
  * `--rounds=` of the coordinator is replaced by --rounds (fewer rounds, same flags otherwise);
  * `restart:` policies are not emulated: a container that fails fails the run;
  * the healthcheck runs by `podman healthcheck run` polled here (podman's own timers need systemd).

Exit 0 when certs exits 0, the coordinator turns healthy, every client exits 0, the coordinator
exits 0 after the last round, metrics.jsonl has one line per round and the last accuracy is at
least --min-accuracy. With --sigterm-after-round K, the coordinator is also stopped with SIGTERM
(`podman stop` with the file's stop_grace_period) once K rounds are committed, must exit by itself
within that time (not SIGKILLed), and is started again: it must resume after round K and the run
still complete. Prints a summary; with --summary-json writes it too.
"""
import argparse
import json
import os
import shlex
import subprocess
import sys
import time

import yaml


def log(msg):
    print(f"compose_podman: {msg}", flush=True)


class Podman:
    def __init__(self, cmd):
        self.cmd = shlex.split(cmd)

    def run(self, *args, check=True, capture=True, timeout=None):
        r = subprocess.run(self.cmd + list(args), capture_output=capture, text=True,
                           timeout=timeout)
        if check and r.returncode != 0:
            raise RuntimeError(f"{' '.join(self.cmd + list(args))} -> {r.returncode}\n"
                               f"{r.stdout}{r.stderr}")
        return r


def seconds(v):
    """Compose durations as used in the file: '5s', '1m30s', '300ms'."""
    total, num = 0.0, ""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    i = 0
    while i < len(v):
        c = v[i]
        if c.isdigit() or c == ".":
            num += c
            i += 1
            continue
        unit = "ms" if v[i:i + 2] == "ms" else c
        total += float(num) * units[unit]
        num = ""
        i += len(unit)
    if num:
        total += float(num)
    return total


def dependency_order(services):
    order, seen = [], set()

    def visit(name, stack=()):
        if name in seen:
            return
        if name in stack:
            raise ValueError(f"depends_on cycle at {name}")
        for dep in services[name].get("depends_on", {}) or {}:
            visit(dep, stack + (name,))
        seen.add(name)
        order.append(name)

    for name in services:
        visit(name)
    return order


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--compose", required=True)
    ap.add_argument("--image", required=True, help="value for ${FEDKIT_IMAGE}")
    ap.add_argument("--podman", default="podman", help="podman command with global options")
    ap.add_argument("--prefix", required=True, help="container/volume name prefix for this run")
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-accuracy", type=float, default=0.70)
    ap.add_argument("--timeout", type=float, default=1800, help="whole run, seconds")
    ap.add_argument("--health-script", help="grpc_health_check.py: also call grpc.health.v1 "
                    "inside the coordinator's network namespace, over TLS and plaintext")
    ap.add_argument("--k8s-statefulset", help="deploy/k8s/coordinator-statefulset.yaml: also run "
                    "its readinessProbe command in the coordinator container")
    ap.add_argument("--sigterm-after-round", type=int, default=0)
    ap.add_argument("--read-only", action="store_true", help="run the coordinator and clients "
                    "with a read-only root file system and a tmpfs /tmp, as deploy/k8s does")
    ap.add_argument("--summary-json")
    ap.add_argument("--keep", action="store_true", help="keep containers and volumes")
    a = ap.parse_args()

    pm = Podman(a.podman)
    compose_dir = os.path.dirname(os.path.abspath(a.compose))
    with open(a.compose) as f:
        doc = yaml.safe_load(f)
    services = doc["services"]
    deadline = time.monotonic() + a.timeout
    os.makedirs(a.workdir, exist_ok=True)
    hosts = os.path.join(a.workdir, "hosts")
    with open(hosts, "w") as f:
        f.write("127.0.0.1 localhost coordinator\n::1 localhost ip6-localhost\n")

    # The one network namespace, for the coordinator and the services that depend on it; the
    # one-shot certs job runs in its own empty one.
    netns_owner = "coordinator"
    assert netns_owner in services, "compose file has no coordinator service"
    netns_holder = f"{a.prefix}-net"

    summary = {"rounds": a.rounds, "services": {}, "health": {}}
    created_volumes, created_containers = [], []

    def cname(svc):
        return f"{a.prefix}-{svc}"

    def argv_for(name, svc):
        image = svc["image"]
        if image != "${FEDKIT_IMAGE:-fedkit:latest}":
            raise ValueError(f"{name}: unexpected image {image!r}")
        args = ["run", "-d", "--name", cname(name), "-v", f"{hosts}:/etc/hosts:ro"]
        if name == netns_owner or name in depends_on_coordinator:
            args += ["--network", f"container:{netns_holder}"]
        else:
            args += ["--network", "none"]
        if "entrypoint" in svc:
            ep = svc["entrypoint"]
            args += ["--entrypoint", json.dumps(ep if isinstance(ep, list) else shlex.split(ep))]
        for v in svc.get("volumes", []) or []:
            parts = v.split(":")
            src = parts[0]
            if src.startswith(".") or src.startswith("/"):
                src = os.path.normpath(os.path.join(compose_dir, src))
            else:
                src = f"{a.prefix}-{src}"
            args += ["-v", ":".join([src] + parts[1:])]
        for e in svc.get("environment", []) or []:
            if "=" in e:
                args += ["-e", e]
            elif e in os.environ:  # Compose passes a bare name through only when it is set
                args += ["-e", f"{e}={os.environ[e]}"]
        hc = svc.get("healthcheck")
        if hc:
            test = hc["test"]
            if test[0] != "CMD":
                raise ValueError(f"{name}: healthcheck form {test[0]} not handled")
            args += ["--health-cmd", json.dumps(test[1:])]
            for key, flag in (("interval", "--health-interval"), ("timeout", "--health-timeout"),
                              ("start_period", "--health-start-period")):
                if key in hc:
                    args += [flag, hc[key]]
            if "retries" in hc:
                args += ["--health-retries", str(hc["retries"])]
        if a.read_only and name in depends_on_coordinator | {netns_owner}:
            args += ["--read-only", "--tmpfs", "/tmp"]
        args.append(a.image)
        cmd = list(svc.get("command", []) or [])
        if name == "coordinator":
            rounds = [i for i, c in enumerate(cmd) if c.startswith("--rounds=")]
            if len(rounds) != 1:
                raise ValueError("coordinator command has no single --rounds=")
            summary["compose_rounds"] = cmd[rounds[0]]
            cmd[rounds[0]] = f"--rounds={a.rounds}"
        return args + cmd

    depends_on_coordinator = {n for n, s in services.items()
                              if netns_owner in (s.get("depends_on") or {})}

    def wait_exit(name):
        left = max(1, deadline - time.monotonic())
        r = pm.run("wait", cname(name), timeout=left)
        return int(r.stdout.strip().splitlines()[-1])

    def wait_healthy(name):
        hc = services[name]["healthcheck"]
        interval = seconds(hc.get("interval", "30s"))
        limit = seconds(hc.get("start_period", "0s")) + interval * hc.get("retries", 3)
        t0 = time.monotonic()
        tries = []
        while time.monotonic() - t0 < limit + interval:
            r = pm.run("healthcheck", "run", cname(name), check=False)
            tries.append((round(time.monotonic() - t0, 1), r.returncode, r.stdout.strip()))
            if r.returncode == 0:
                return tries
            state = pm.run("inspect", "--format", "{{.State.Status}}", cname(name)).stdout.strip()
            if state != "running":
                raise RuntimeError(f"{name} is {state} before it turned healthy")
            time.sleep(interval)
        raise RuntimeError(f"{name} not healthy after {limit + interval:.0f} s: {tries}")

    def dump_logs():
        for c in created_containers:
            r = pm.run("logs", c, check=False)
            print(f"----- logs of {c} -----\n{r.stdout}{r.stderr}", flush=True)

    ok = False
    try:
        for vol in (doc.get("volumes") or {}):
            pm.run("volume", "create", f"{a.prefix}-{vol}")
            created_volumes.append(f"{a.prefix}-{vol}")
        pm.run("run", "-d", "--name", netns_holder, "--network", "none", "-v",
               f"{hosts}:/etc/hosts:ro", a.image, "sleep", "infinity")
        created_containers.append(netns_holder)
        started = time.monotonic()
        for name in dependency_order(services):
            svc = services[name]
            for dep, cond in (svc.get("depends_on") or {}).items():
                cond = cond.get("condition", "service_started") if isinstance(cond, dict) else \
                    "service_started"
                if cond == "service_completed_successfully":
                    code = summary["services"].setdefault(dep, {}).get("exit")
                    if code is None:
                        code = wait_exit(dep)
                        summary["services"][dep]["exit"] = code
                    if code != 0:
                        raise RuntimeError(f"{dep} exited {code}; {name} depends on its success")
                elif cond == "service_healthy":
                    if "healthy_after" not in summary["services"].get(dep, {}):
                        tries = wait_healthy(dep)
                        summary["services"][dep]["healthy_after"] = tries[-1][0]
                        summary["health"]["compose_healthcheck_tries"] = tries
                        log(f"{dep} healthy after {tries[-1][0]} s ({len(tries)} checks: "
                            f"{[t[2] for t in tries]})")
                        if a.health_script:
                            summary["health"].update(grpc_health(a, dep))
                        if a.k8s_statefulset:
                            summary["health"].update(k8s_readiness(a, dep))
                elif cond != "service_started":
                    raise ValueError(f"{name}: depends_on condition {cond} not handled")
            argv = argv_for(name, svc)
            log(f"start {name}: podman {' '.join(shlex.quote(x) for x in argv)}")
            pm.run(*argv)
            created_containers.append(cname(name))
            summary["services"].setdefault(name, {})

        state = pm.run("volume", "inspect", "--format", "{{.Mountpoint}}",
                       f"{a.prefix}-state").stdout.strip()
        if a.sigterm_after_round:
            summary["sigterm"] = sigterm_check(a, pm, services["coordinator"], cname("coordinator"),
                                               state, lambda: wait_healthy("coordinator"), deadline)
        for name in services:
            if "exit" not in summary["services"][name]:
                summary["services"][name]["exit"] = wait_exit(name)
                log(f"{name} exited {summary['services'][name]['exit']}")
        summary["wall_seconds"] = round(time.monotonic() - started, 1)
        bad = {n: s["exit"] for n, s in summary["services"].items() if s["exit"] != 0}
        if bad:
            raise RuntimeError(f"non-zero exits: {bad}")

        with open(os.path.join(state, "metrics.jsonl")) as f:
            rows = [json.loads(line) for line in f if line.strip()]
        summary["accuracy_per_round"] = [r.get("accuracy") for r in rows]
        summary["participants_per_round"] = [r.get("participants") for r in rows]
        summary["model_pt_bytes"] = os.path.getsize(os.path.join(state, "model.pt"))
        summary["checkpoints"] = sorted(os.listdir(os.path.join(state, "checkpoints")))
        if [r["round"] for r in rows] != list(range(1, a.rounds + 1)) and \
                [r["round"] for r in rows] != list(range(a.rounds)):
            raise RuntimeError(f"metrics.jsonl rounds {[r['round'] for r in rows]}, "
                               f"expected {a.rounds} rounds")
        final = rows[-1]["accuracy"]
        summary["final_accuracy"] = final
        if not final >= a.min_accuracy:
            raise RuntimeError(f"final accuracy {final} < {a.min_accuracy}")
        if not summary["checkpoints"]:
            raise RuntimeError("no checkpoint written")
        if a.sigterm_after_round:
            log_text = pm.run("logs", cname("coordinator"), check=False)
            want = f"resumed after round {summary['sigterm']['after_round']}"
            if want not in log_text.stdout + log_text.stderr:
                raise RuntimeError(f"coordinator log lacks '{want}'")
            summary["sigterm"]["resumed"] = want
        ok = True
    except Exception as e:  # noqa: BLE001 - report and fail
        log(f"FAILED: {e}")
        dump_logs()
    finally:
        if ok:
            coord_log = pm.run("logs", cname("coordinator"), check=False)
            with open(os.path.join(a.workdir, "coordinator.log"), "w") as f:
                f.write(coord_log.stdout + coord_log.stderr)
        if not a.keep:
            # Newest first: the network namespace's holder cannot go while others use it.
            for c in reversed(created_containers):
                r = pm.run("rm", "-f", "-t", "0", c, check=False)
                if r.returncode != 0:
                    log(f"could not remove {c}: {r.stderr.strip()}")
            for v in created_volumes:
                pm.run("volume", "rm", "-f", v, check=False)
        summary["ok"] = ok
        print(json.dumps(summary, indent=1), flush=True)
        if a.summary_json:
            with open(a.summary_json, "w") as f:
                json.dump(summary, f, indent=1)
    return 0 if ok else 1


def grpc_health(a, name):
    """grpc.health.v1 inside the container's network namespace, from the host's python3-grpcio:
    over TLS with the demo CA (expected SERVING), and in plaintext as the kubelet's built-in
    grpc probe would call it (expected to fail: the port serves TLS only)."""
    pm = Podman(a.podman)
    pid = pm.run("inspect", "--format", "{{.State.Pid}}", f"{a.prefix}-{name}").stdout.strip()
    tls = pm.run("volume", "inspect", "--format", "{{.Mountpoint}}",
                 f"{a.prefix}-tls").stdout.strip()
    out = {}
    for label, extra in (("tls", ["--tls-ca", os.path.join(tls, "ca.pem"),
                                  "--server-name", "coordinator"]),
                         ("plaintext", [])):
        r = subprocess.run(["nsenter", "-t", pid, "-n", "/usr/bin/python3", a.health_script,
                            "127.0.0.1:50051", "--timeout", "5"] + extra,
                           capture_output=True, text=True)
        out[f"grpc_health_{label}"] = {"exit": r.returncode,
                                       "output": (r.stdout + r.stderr).strip()}
        log(f"grpc.health.v1 Check ({label}): exit {r.returncode}: {(r.stdout + r.stderr).strip()}")
    if out["grpc_health_tls"]["exit"] != 0:
        raise RuntimeError(f"grpc.health.v1 over TLS: {out['grpc_health_tls']}")
    if out["grpc_health_plaintext"]["exit"] == 0:
        raise RuntimeError("grpc.health.v1 in plaintext answered on a TLS-only port")
    return out


def sigterm_check(a, pm, svc, container, state, wait_healthy, deadline):
    """SIGTERM once --sigterm-after-round rounds are committed, as `docker compose stop`, a
    Kubernetes pod deletion or a node drain sends it; then start again and see it resume."""
    metrics = os.path.join(state, "metrics.jsonl")
    while True:
        rows = 0
        if os.path.exists(metrics):
            with open(metrics) as f:
                rows = sum(1 for line in f if line.strip())
        if rows >= a.sigterm_after_round:
            break
        if time.monotonic() > deadline:
            raise RuntimeError("timed out waiting for rounds before SIGTERM")
        time.sleep(1)
    grace = seconds(svc.get("stop_grace_period", "10s"))
    t0 = time.monotonic()
    pm.run("stop", "-t", str(int(grace)), container, check=False)
    took = round(time.monotonic() - t0, 1)
    code = int(pm.run("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip())
    log(f"SIGTERM after round {rows}: exited {code} in {took} s (grace {grace:.0f} s)")
    if code == 137 or took >= grace:
        raise RuntimeError(f"coordinator ignored SIGTERM: SIGKILLed after {took} s (exit {code})")
    pm.run("start", container)
    tries = wait_healthy()
    log(f"coordinator restarted, healthy after {tries[-1][0]} s")
    return {"after_round": rows, "exit": code, "stop_seconds": took, "grace_seconds": grace}


def k8s_readiness(a, name):
    """The Kubernetes StatefulSet's readinessProbe exec command, run in the compose coordinator
    (the Secret's ca.crt is compose's ca.pem): it must pass with the demo CA and fail with a CA
    that did not sign the server certificate (Debian's public CA bundle)."""
    pm = Podman(a.podman)
    with open(a.k8s_statefulset) as f:
        sts = next(d for d in yaml.safe_load_all(f) if d and d.get("kind") == "StatefulSet")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    command = container["readinessProbe"]["exec"]["command"]
    out = {}
    for label, ca, want_ok in (("demo_ca", "/etc/fedkit/tls/ca.pem", True),
                               ("wrong_ca", "/etc/ssl/certs/ca-certificates.crt", False)):
        cmd = [c.replace("/etc/fedkit/tls/ca.crt", ca) for c in command]
        if cmd == command:
            raise RuntimeError("readinessProbe command does not use /etc/fedkit/tls/ca.crt")
        r = pm.run("exec", f"{a.prefix}-{name}", *cmd, check=False)
        out[f"k8s_readiness_{label}"] = {"exit": r.returncode}
        log(f"k8s readinessProbe ({label}): exit {r.returncode}")
        if (r.returncode == 0) != want_ok:
            raise RuntimeError(f"k8s readinessProbe with {ca}: exit {r.returncode}")
    return out


if __name__ == "__main__":
    sys.exit(main())
