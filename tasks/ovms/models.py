"""OVMS's models on the proxy host: each OVMS registry entry's files (uploaded from a folder on
the control machine, or pulled from Hugging Face by OVMS itself as the service user), the
graph.pbtxt that serves them, and config.json's model_config_list.

On the host, `<ovms_models_dir>/<upstream id>/` holds graph.pbtxt and the files: `model/` for
an uploaded folder; `hub/<org>/<name>/` for a pulled repo (where `ovms --pull` puts it), with
`source` naming what was pulled, so a pull happens only when that is absent or changes.
"""

from __future__ import annotations

import json
import shlex

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import QuoteString as Q
from pyinfra.api.command import StringCommand

from tasks import ops
from tasks.facts import FileState
from tasks.registry import Model, Registry
from tasks.render import render, sha256_text
from tasks.shell import joined_commands

SOURCE_MARKER = "source"


def model_dir(r: Registry, m: Model) -> str:
    return f"{r.proxy['ovms_models_dir']}/{m.upstream}"


def models_path(m: Model) -> str:
    """Where graph.pbtxt finds the model's files, relative to its own folder."""
    return "./model" if m.source_is_folder else f"./hub/{m.source}"


def models(r: Registry) -> list[Model]:
    return r.served_by(r.proxy_host, "ovms")


def render_graph(r: Registry, m: Model) -> str:
    return render("ovms/graph.pbtxt.j2", version=r.proxy["ovms_version"], graph=m.graph, models_path=models_path(m))


def render_config(r: Registry) -> str:
    """config.json: every model in model_config_list (mediapipe_config_list is deprecated); a
    base_path holding graph.pbtxt is served as a graph under the model's upstream id."""
    config = {"model_config_list": [{"config": {"name": m.upstream, "base_path": model_dir(r, m)}} for m in models(r)]}
    return render("ovms/config.json.j2", config_json=json.dumps(config, indent=2))


def pull_command(r: Registry, m: Model, repository: str) -> str:
    """`ovms --pull`: download the pre-converted repo into <repository>/<org>/<name> and exit."""
    s = r.proxy
    current = f"{s['ovms_home']}/current/ovms"
    return " ".join(
        [
            "env",
            f"HOME={shlex.quote(repository)}",
            f"LD_LIBRARY_PATH={current}/lib",
            f"PYTHONPATH={current}/lib/python",
            f"{current}/bin/ovms",
            "--pull",
            "--source_model",
            shlex.quote(m.source),
            "--model_repository_path",
            shlex.quote(repository),
            "--task",
            "text_generation",
            "--target_device",
            shlex.quote(m.graph["device"]),
        ]
    )


@operation()
@joined_commands
def hub_model(r: Registry, m: Model):
    """The repo m.source pulled by OVMS as its service user, only when it is not the one there:
    into a fresh folder first, so a failed pull leaves the model being served in place."""
    folder = model_dir(r, m)
    current = host.get_fact(FileState, path=f"{folder}/{SOURCE_MARKER}", **ops.AS_LOGIN)
    if current is not None and current["sha256"] == sha256_text(m.source + "\n"):
        return
    user = r.proxy["ovms_user"]
    tmp = f"{folder}/hub.tmp"
    yield StringCommand("rm", "-rf", Q(tmp))
    yield StringCommand("install", "-d", "-o", Q(user), "-g", Q(user), "-m", "755", Q(tmp))
    yield StringCommand("cd", "/", "&&", "runuser", "-u", Q(user), "--", pull_command(r, m, tmp))
    yield StringCommand("test", "-f", Q(f"{tmp}/{m.source}/openvino_model.xml"))
    yield StringCommand("rm", "-rf", Q(f"{folder}/hub"), "&&", "mv", Q(tmp), Q(f"{folder}/hub"))
    yield StringCommand("echo", Q(m.source), ">", Q(f"{folder}/{SOURCE_MARKER}"))


def rendered_files(r: Registry) -> dict[str, str]:
    """config.json and each model's graph.pbtxt: path on the host -> content."""
    return {
        f"{r.proxy['ovms_config_dir']}/config.json": render_config(r),
        **{f"{model_dir(r, m)}/graph.pbtxt": render_graph(r, m) for m in models(r)},
    }


def provision(r: Registry) -> list:
    """Every OVMS model's files; returns the operations whose change needs a restart."""
    changes = []
    for m in models(r):
        folder = model_dir(r, m)
        if m.source_is_folder:
            changes.append(
                ops.tree(name=f"Upload model {m.upstream} from {m.source}", src=m.source, dest=f"{folder}/model")
            )
        else:
            changes.append(hub_model(name=f"Pull model {m.upstream} from Hugging Face: {m.source}", r=r, m=m))
    return changes
