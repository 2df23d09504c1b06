"""OpenVINO Model Server on the mini: the release archive chosen for its system (release.py),
fetched and verified, unpacked into a folder of its own and switched to only once whole; its
models (models.py), config.json and a systemd unit bound to loopback; and a wait until each model
generates."""

from __future__ import annotations

import json
import os
import shlex

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.api.exceptions import DeployError
from pyinfra.facts.files import File
from pyinfra.operations import server

from tasks import hostos, ops, pyenv, run
from tasks.ovms import models as ovms_models
from tasks.ovms import release as ovms_release
from tasks.pyenv import PythonEnv
from tasks.registry import PROXY_GROUP, Registry
from tasks.render import render
from tasks.schema import (
    GRAPH_DEFAULTS,
    NONE,
    DataError,
    Key,
    abs_path,
    archive_url,
    check_graph,
    ip,
    names,
    optional_archive_url,
    optional_url,
    port,
    positive,
    sha256,
    user,
)
from tasks.service import Port, StackService, answers_line, local_url
from tasks.shell import one
from tasks.units import Unit, Wait, managed_services, retire

KEYS = (
    Key(
        "ovms_version",
        str,
        "2025.4",
        "the pinned OVMS release (its tag is `v<version>`); names the install folder",
        ovms_release.check_version,
    ),
    Key(
        "ovms_python",
        bool,
        True,
        "the python_on build: chat templates with a system message and tools (python_off drops the system "
        "message); it needs the host's libpython and Jinja2, installed from the distribution",
    ),
    Key(
        "ovms_release_url",
        str,
        "https://github.com/openvinotoolkit/model_server/releases/download",
        "where releases are fetched: `<url>/v<version>/<asset>`, the asset chosen from the host's system "
        "(an http(s) URL, or a folder on the control machine)",
        archive_url,
        default_text="the official Ubuntu 24 build",
    ),
    Key(
        "ovms_archive_url",
        (str, NONE),
        None,
        "one archive instead of the chosen asset (an http(s) URL or a path on the control machine)",
        optional_archive_url,
    ),
    Key(
        "ovms_archive_sha256",
        (str, NONE),
        None,
        "the archive's sha256 (GitHub shows it beside each release asset); unset, the lock file holds it",
        sha256,
    ),
    Key(
        "ovms_lock_file",
        str,
        "ovms.lock",
        "control machine: release URL -> sha256 recorded once (relative to where pyinfra runs); commit it",
    ),
    Key("ovms_packages", list, ["libxml2", "curl"], "system packages the release links against", names),
    Key(
        "ovms_graph",
        dict,
        dict(GRAPH_DEFAULTS),
        "text-generation settings rendered into each model's graph.pbtxt: `device`, `cache_size` (GB of KV "
        "cache), `max_num_seqs`, `enable_prefix_caching`, optionally `tool_parser` and "
        "`enable_tool_guided_generation`; a model's `graph` overrides some and names its own `tool_parser`",
        check_graph,
    ),
    Key("ovms_rest_port", int, 9000, "OVMS's REST (OpenAI `/v3`) port", port),
    Key("ovms_bind_address", str, "127.0.0.1", "OVMS's address (only LiteLLM, on the same host, calls it)", ip),
    Key("ovms_user", str, "ovms", "OVMS's service user", user),
    Key("ovms_home", str, "/opt/ovms", "releases unpack into `<home>/<version>/`; `current` points at one", abs_path),
    Key("ovms_models_dir", str, "/var/lib/ovms/models", "`<dir>/<upstream id>/` holds each model's files", abs_path),
    Key("ovms_config_dir", str, "/etc/ovms", "config.json", abs_path),
    Key("ovms_start_timeout", int, 60, "seconds the deploy waits for `/v2/health/ready`", positive),
    Key(
        "ovms_hf_endpoint",
        (str, NONE),
        None,
        "where `ovms --pull` pulls a model's `source` from (OVMS's HF_ENDPOINT; unset: huggingface.co); the lab "
        "points it at its stand-in hub",
        optional_url,
    ),
)


def host_release(r: Registry, system: hostos.System) -> ovms_release.Release:
    """The archive for the proxy host and the digest it is held to (reads the lock file only)."""
    entry = r.hosts[r.proxy_host]
    try:
        return ovms_release.resolve(entry.settings, entry.sources, system.os, system.version, system.arch, r.workdir)
    except DataError as exc:
        raise DeployError(f"{host.name}: {exc}") from None


def release_dir(r: Registry, rel: ovms_release.Release) -> str:
    """Each archive unpacks into a folder named by its version and digest, so a new one never
    overwrites the one being served."""
    return f"{r.proxy['ovms_home']}/{rel.version}-{rel.sha256[:12]}"


def render_unit(r: Registry, rel: ovms_release.Release) -> str:
    s = r.proxy
    return render(
        "ovms/ovms.service.j2",
        python_path=python_path(r, rel),
        version=s["ovms_version"],
        user=s["ovms_user"],
        home=s["ovms_home"],
        models_dir=s["ovms_models_dir"],
        config_dir=s["ovms_config_dir"],
        bind=s["ovms_bind_address"],
        port=s["ovms_rest_port"],
    )


def generates(r: Registry) -> str:
    """A probe: every model reports ready and answers a one-token chat completion."""
    s = r.proxy
    base = f"http://{s['ovms_bind_address']}:{s['ovms_rest_port']}"
    checks = []
    for m in ovms_models.models(r):
        body = json.dumps({"model": m.upstream, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]})
        checks.append(f"curl -fsS -o /dev/null --max-time 5 {shlex.quote(f'{base}/v2/models/{m.upstream}/ready')}")
        checks.append(
            f"curl -fsS --max-time 30 -H 'Content-Type: application/json' -d {shlex.quote(body)} "
            f"{shlex.quote(f'{base}/v3/chat/completions')} | grep -q '\"choices\"'"
        )
    checks.append(f"curl -fsS -o /dev/null --max-time 5 {shlex.quote(f'{base}/v2/health/ready')}")
    return " && ".join(checks)


class OVMS(StackService):
    """One server for every OVMS model of the registry; when the host serves none, no server (a
    server the toolkit ran before is stopped and its unit removed)."""

    name = "ovms"
    group = PROXY_GROUP
    keys = KEYS

    def ports(self, r: Registry, host: str) -> list[Port]:
        models = r.served_by(host, "ovms")
        if not models:
            return []
        s = r.settings(host)
        return [
            Port(
                host,
                s["ovms_rest_port"],
                s["ovms_bind_address"],
                "ovms",
                ", ".join(m.name for m in models),
                "this host",
            )
        ]

    def status_command(self, r: Registry, host: str) -> str:
        """Each model's readiness, as OVMS reports it (`/v2/models/<id>/ready`)."""
        s = r.proxy
        lines = []
        for m in ovms_models.models(r):
            url = local_url(s["ovms_bind_address"], s["ovms_rest_port"], f"/v2/models/{m.upstream}/ready")
            lines.append(answers_line("ovms", url, f"{m.name} ({m.upstream}) ready"))
        return "\n".join(lines)

    def version_command(self, r: Registry, host: str) -> str:
        """The release folder `current` points at (`<version>-<digest>`)."""
        return f'echo ovms $(basename "$(readlink {shlex.quote(r.proxy["ovms_home"] + "/current")})")'

    def packages(self, r: Registry, system: hostos.System) -> list[str]:
        return packages(r, system)

    def python_env(self, r: Registry) -> PythonEnv | None:
        return python_env(r)

    def deploy(self, r: Registry, envs: dict) -> list[Wait]:
        return deploy_ovms(r, envs)


def python_env(r: Registry) -> PythonEnv | None:
    """The python_on build renders chat templates with the host's Python: Jinja2 and MarkupSafe
    at the versions OVMS's docs pin, in an environment of the system's python3 (the libpython
    version the release links against)."""
    if not r.proxy["ovms_python"] or not ovms_models.models(r):
        return None
    return PythonEnv("ovms", f"{r.proxy['ovms_home']}/python", ovms_release.TEMPLATE_REQUIREMENTS, imports=("jinja2",))


def python_path(r: Registry, rel: ovms_release.Release) -> str:
    """OVMS's PYTHONPATH: its own modules, then the template environment's."""
    home = r.proxy["ovms_home"]
    paths = [f"{home}/current/ovms/lib/python"]
    if r.proxy["ovms_python"] and rel.system_tag:
        paths.append(f"{home}/python/lib/python{ovms_release.PYTHON_VERSIONS[rel.system_tag]}/site-packages")
    return ":".join(paths)


def packages(r: Registry, system: hostos.System) -> list[str]:
    """The libraries the release links against, and for the python_on build its libpython and
    Jinja2 (the distribution's, on that interpreter's path); none while it serves no model."""
    if not ovms_models.models(r):
        return []
    rel = host_release(r, system)
    return list(r.proxy["ovms_packages"]) + ovms_release.python_packages(rel.system_tag, r.proxy["ovms_python"])


@deploy("OpenVINO Model Server")
def deploy_ovms(r: Registry, envs: dict) -> list[Wait]:
    """envs: service -> its pyenv.Built; OVMS's is the python_on build's template environment."""
    s = r.proxy
    if not ovms_models.models(r):
        # The registry's last OVMS model left it: the server is stopped and its unit removed (the
        # release, its models' files and config stay, for a model that comes back).
        retire("ovms", [], "OVMS")
        return []
    user, home = s["ovms_user"], s["ovms_home"]
    rel = host_release(r, run.system())
    target = release_dir(r, rel)
    archive = f"{home}/archives/{rel.asset}"

    ops.system_account(name=f"Create service user {user}", user=user, home=home)
    model_dirs = [ovms_models.model_dir(r, m) for m in ovms_models.models(r)]
    folders = [f"{home}/archives", s["ovms_models_dir"], *model_dirs, s["ovms_config_dir"]]
    ops.directories(name=f"Create {', '.join(folders)}", paths=folders, mode="755", public=True)
    # The archive is fetched and unpacked only while its folder is absent: a converged run reads
    # one file, not the archive's digest.
    if not host.get_fact(File, path=f"{target}/ovms/bin/ovms", **ops.AS_LOGIN):
        if rel.local and ovms_release.digest_of(rel.local) != rel.sha256:
            raise DeployError(
                f"{host.name}: {rel.local}: sha256 is not {rel.sha256} (from {rel.digest_from}): "
                f"the archive changed; nothing was touched"
            )
        if rel.local:
            ops.local_file(name=f"Upload the OVMS archive {rel.asset}", src=rel.local, dest=archive, public=True)
        else:
            # Into a partial file first: an interrupted download never looks like the archive.
            server.shell(
                name=f"Download the OVMS archive {rel.asset}",
                commands=[
                    f"curl -fsSL --retry 2 -o {shlex.quote(archive)}.part {shlex.quote(rel.url)} "
                    f"&& mv -f {shlex.quote(archive)}.part {shlex.quote(archive)}"
                ],
            )
        # Verified again whatever the source; the folder appears only whole, and the archive goes.
        server.shell(
            name=f"Verify {rel.asset} (sha256 from {rel.digest_from}) and unpack it into {target}",
            commands=[
                one(
                    [
                        f"echo {shlex.quote(rel.sha256 + '  ' + archive)} | sha256sum -c --quiet - || "
                        f"{{ echo 'the OVMS archive {rel.asset} does not match the sha256 from {rel.digest_from}'; "
                        f"rm -f {archive}; exit 1; }}",
                        f"rm -rf {target}.tmp && mkdir -p {target}.tmp",
                        f"tar -xzf {archive} -C {target}.tmp",
                        f"test -x {target}.tmp/ovms/bin/ovms",
                        f"mv {target}.tmp {target} && rm -f {archive}",
                    ]
                )
            ],
        )
    current = ops.link(
        name=f"Point {home}/current at {os.path.basename(target)}", path=f"{home}/current", target=target
    )
    models = ovms_models.provision(r)
    switched = pyenv.switch(envs["ovms"], s["uv_keep"]) if "ovms" in envs else None
    config = ops.text_files(
        name="Render OVMS config.json and each model's graph.pbtxt", files=ovms_models.rendered_files(r), public=True
    )
    started = managed_services(
        [Unit("ovms", render_unit(r, rel), restart_on=[current, config, *models, switched])], "OVMS"
    )["ovms"]
    return [Wait(generates(r), s["ovms_start_timeout"], "OVMS and its models", started)]


SERVICE = OVMS()
