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
import time

from pyinfra import host
from pyinfra.api import operation
from pyinfra.api.command import FunctionCommand

from tasks import ops
from tasks.facts import FileState
from tasks.registry import Model, Registry
from tasks.render import render, sha256_text

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
    """`ovms --pull`: download the pre-converted repo into <repository>/<org>/<name> and exit
    (from ovms_hf_endpoint when the data names one: OVMS reads HF_ENDPOINT)."""
    s = r.proxy
    current = f"{s['ovms_home']}/current/ovms"
    endpoint = [f"HF_ENDPOINT={shlex.quote(s['ovms_hf_endpoint'])}"] if s["ovms_hf_endpoint"] else []
    return " ".join(
        [
            "env",
            f"HOME={shlex.quote(repository)}",
            *endpoint,
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


def pull_script(r: Registry, m: Model) -> str:
    """Shell: the pull as OVMS's service user into a fresh folder, swapped in only once it holds
    the model (a failed pull leaves the model being served in place), then the source recorded."""
    folder, user = model_dir(r, m), r.proxy["ovms_user"]
    tmp, q = f"{folder}/hub.tmp", shlex.quote
    return " && ".join(
        [
            f"rm -rf {q(tmp)}",
            f"install -d -o {q(user)} -g {q(user)} -m 755 {q(tmp)}",
            f"cd / && runuser -u {q(user)} -- {pull_command(r, m, tmp)}",
            f"test -f {q(f'{tmp}/{m.source}/openvino_model.xml')}",
            f"rm -rf {q(f'{folder}/hub')}",
            f"mv {q(tmp)} {q(f'{folder}/hub')}",
            f"echo {q(m.source)} > {q(f'{folder}/{SOURCE_MARKER}')}",
        ]
    )


def _pull(state, host, command: str, source: str) -> bool:
    """Run at execution time: the pull, its output (OVMS's progress) shown on the operator's
    terminal as it comes; then how long it took."""
    started = time.monotonic()
    ok, output = host.run_shell_command(
        command, print_output=True, print_input=False, _sudo=bool(host.data.get("_sudo"))
    )
    if not ok:
        host.log(f"pulling {source} failed: {' '.join(output.stderr_lines[-3:])}")
        return False
    host.log(f"pulled {source} in {time.monotonic() - started:.0f} s")
    return True


@operation()
def hub_model(r: Registry, m: Model):
    """The repo m.source pulled by OVMS as its service user (pull_script), only when it is not
    the one there."""
    current = host.get_fact(FileState, path=f"{model_dir(r, m)}/{SOURCE_MARKER}", **ops.AS_LOGIN)
    if current is not None and current["sha256"] == sha256_text(m.source + "\n"):
        return
    yield FunctionCommand(_pull, (pull_script(r, m), m.source), {})


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
