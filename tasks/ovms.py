"""OpenVINO Model Server on the mini: the pinned release archive (downloaded or uploaded from
the control machine, verified by sha256), unpacked into a versioned directory, config.json from
the registry, and a systemd unit bound to loopback."""

from __future__ import annotations

import json
import os
import shlex
from urllib.parse import urlsplit

from pyinfra import host
from pyinfra.api import deploy
from pyinfra.facts.files import File
from pyinfra.operations import files, server

from tasks import hostos, ops
from tasks.registry import Registry
from tasks.render import render
from tasks.service import Service, Wait, answers_http, managed_services


def render_config(r: Registry) -> str:
    s = r.proxy
    servables = [
        {"name": m.upstream, "base_path": f"{s['ovms_models_dir']}/{m.upstream}"}
        for m in r.served_by(host=r.proxy_host, backend="ovms")
    ]
    config = {"model_config_list": [], "mediapipe_config_list": servables}
    return render("ovms/config.json.j2", config_json=json.dumps(config, indent=2))


def render_unit(r: Registry) -> str:
    s = r.proxy
    return render(
        "ovms/ovms.service.j2",
        version=s["ovms_version"],
        user=s["ovms_user"],
        home=s["ovms_home"],
        models_dir=s["ovms_models_dir"],
        config_dir=s["ovms_config_dir"],
        bind=s["ovms_bind_address"],
        port=s["ovms_rest_port"],
    )


def local_archive(url: str) -> str | None:
    """The archive's path on the control machine when ovms_archive_url is not http(s)."""
    if url.startswith("file://"):
        return urlsplit(url).path
    if os.path.isabs(url):
        return url
    return None


def python_env(r: Registry) -> None:
    return None


def packages(r: Registry, system: hostos.System) -> list[str]:
    """The libraries the OVMS release links against."""
    return list(r.proxy["ovms_packages"])


@deploy("OpenVINO Model Server")
def deploy_ovms(r: Registry, envs: dict) -> list[Wait]:
    """envs: unused (OVMS is no Python environment); the same signature as every service deploy."""
    s = r.proxy
    user, home, version = s["ovms_user"], s["ovms_home"], s["ovms_version"]
    release = f"{home}/{version}"
    archive = f"{home}/archives/ovms-{version}.tar.gz"

    ops.system_account(name=f"Create service user {user}", user=user, home=home)
    model_dirs = [f"{s['ovms_models_dir']}/{m.upstream}" for m in r.served_by(r.proxy_host, "ovms")]
    folders = [f"{home}/archives", s["ovms_models_dir"], *model_dirs, s["ovms_config_dir"]]
    ops.directories(name=f"Create {', '.join(folders)}", paths=folders, mode="755", public=True)
    local = local_archive(s["ovms_archive_url"])
    if local:
        fetched = ops.local_file(name=f"Upload the OVMS {version} archive", src=local, dest=archive, public=True)
    else:
        fetched = files.download(
            name=f"Download the OVMS {version} release",
            src=s["ovms_archive_url"],
            dest=archive,
            sha256sum=s["ovms_archive_sha256"],
        )
    unpacked = host.get_fact(File, path=f"{release}/ovms/bin/ovms", **ops.AS_LOGIN)
    # Verified again here whatever the source, so an upload is held to the same digest.
    server.shell(
        name=f"Verify and unpack OVMS {version} into {release}",
        commands=[
            f"echo {shlex.quote(s['ovms_archive_sha256'] + '  ' + archive)} | sha256sum -c --quiet -",
            f"rm -rf {release}.tmp && mkdir -p {release}.tmp",
            f"tar -xzf {archive} -C {release}.tmp",
            f"test -x {release}.tmp/ovms/bin/ovms",
            f"rm -rf {release} && mv {release}.tmp {release}",
        ],
        _if=lambda: fetched.did_change() or not unpacked,
    )
    current = files.link(
        name=f"Point {home}/current at {version}", path=f"{home}/current", target=release
    )
    config = ops.text_file(
        name="Render OVMS config.json", dest=f"{s['ovms_config_dir']}/config.json", content=render_config(r),
        public=True,
    )
    started = managed_services([Service("ovms", render_unit(r), restart_on=[current, config])], "OVMS")["ovms"]
    return [Wait(answers_http(f"http://{s['ovms_bind_address']}:{s['ovms_rest_port']}/v2/health/ready"),
                 s["ovms_start_timeout"], "OVMS", started)]
