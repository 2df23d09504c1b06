"""The lab's OpenVINO side, built once into the cache: the pinned engine versions, the export tools'
venv, the tiny model written as OpenVINO IR (paths.TINY_OV) and the engine libraries that the OVMS
stand-in archive bundles (paths.OVMS_STANDIN_LIBS).

Nothing here downloads anything but packages from the package index: the model is the lab's own
tiny model (trained by lab/toolmodel.py), written as IR by lab/ovir.py with OpenVINO's Python API (the graph
optimum-intel exports for a Llama, which OVMS reads), its tokenizer converted by openvino-tokenizers
as `optimum-cli export openvino` does. No torch: a fresh machine gets everything from the index.

Each product is keyed on what makes it (pins, Python, inputs) and is rebuilt only when that key
changes; the key is written last, so an interrupted build is redone, never half-used.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lab import paths, toolvenv
from lab.proc import LabError, log

# The engine of OVMS 2025.4 (its Makefile pins the OpenVINO, GenAI and tokenizers releases/2025/4
# branches; PRODUCT_VERSION 2025.4.0): the same releases from PyPI.
OPENVINO = "2025.4.0"
OPENVINO_GENAI = "2025.4.0.0"
OPENVINO_TOKENIZERS = "2025.4.0.0"

# The engine as the stand-in archive bundles it (ovms/lib/python), every package pinned and
# installed without dependency resolution. openvino-telemetry, which openvino requires, is left
# out on purpose: `import openvino` then uses its built-in stub, where with it it would send a usage
# event to Google Analytics at every start (from a forked process). The lab sends nothing out.
ENGINE_PINS = (
    f"openvino=={OPENVINO}",
    f"openvino-genai=={OPENVINO_GENAI}",
    f"openvino-tokenizers=={OPENVINO_TOKENIZERS}",
    "numpy==2.2.6",
    "packaging==26.4",
)
NO_TELEMETRY = "openvino-telemetry"  # never installed, in the archive or the export venv


# The systems the archive can be built for: those OVMS builds for (Ubuntu 22.04/24.04) and Debian
# 12. The engine is installed for the system's python3 and C library; the mini's system is read
# from lab/hosts.py (SYSTEMS["mini"]), so the archive follows the lab when its mini changes.
@dataclass(frozen=True)
class Target:
    system: str  # as lab/hosts.py names the distribution
    python: str  # the host's python3 (the stand-in's interpreter, /usr/bin/python3)
    glibc: tuple[int, int]
    release_tag: str  # the release asset's system name (ovms_<tag>...tar.gz); "" for none
    arch: str = "x86_64"


TARGETS = (
    Target("Debian 12", "3.11", (2, 36), ""),
    Target("Ubuntu 22.04", "3.10", (2, 35), "ubuntu22"),
    Target("Ubuntu 24.04", "3.12", (2, 39), "ubuntu24"),
)
DEFAULT_SYSTEM = "Debian 12"
OVMS_RELEASE = "2025.4"  # the release the stand-in stands in for (its folder in the releases layout)


def mini_target() -> Target:
    """The lab mini's system, as lab/hosts.py builds it (Debian 12 where it names none)."""
    try:
        from lab import hosts

        system = hosts.SYSTEMS["mini"].name
    except (ImportError, AttributeError, KeyError):
        system = DEFAULT_SYSTEM
    for target in TARGETS:
        if target.system == system:
            return target
    raise LabError(
        f"no OVMS stand-in target for the mini's system {system!r} (known: "
        f"{', '.join(t.system for t in TARGETS)}): add it to lab/ovexport.py TARGETS"
    )


def local_target() -> Target:
    """This machine's interpreter, for running the stand-in here (tests)."""
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    return Target(f"local Python {version}", version, (2, 28), "")


# The export tools: OpenVINO's own Python API writes the model (lab/ovir.py), openvino-tokenizers
# converts the Hugging Face tokenizer, which transformers loads (without torch: no framework is
# needed for a tokenizer). Every package pinned (a `pip freeze` of a working install, less
# openvino-telemetry) and installed without dependency resolution.
EXPORT_PINS = (
    f"openvino=={OPENVINO}",
    f"openvino-tokenizers=={OPENVINO_TOKENIZERS}",
    "transformers==4.57.6",
    "tokenizers==0.22.2",
    "huggingface-hub==0.36.2",
    "safetensors==0.8.0",
    "numpy==2.2.6",
    "packaging==26.4",
    "pyyaml==6.0.4",
    "regex==2026.11.19",
    "requests==2.34.2",
    "urllib3==2.8.0",
    "idna==3.20",
    "certifi==2026.10.19.post1",
    "charset-normalizer==3.5.3",
    "filelock==4.3.1",
    "fsspec==2026.9.0",
    "hf-xet==1.8.0",
    "tqdm==4.70.1",
    "typing-extensions==4.16.0",
)
WRITER = paths.ROOT / "lab" / "ovir.py"
# What an OVMS LLM folder needs from the export (the deploy adds graph.pbtxt).
EXPORT_FILES = (
    "openvino_model.xml",
    "openvino_model.bin",
    "openvino_tokenizer.xml",
    "openvino_tokenizer.bin",
    "openvino_detokenizer.xml",
    "openvino_detokenizer.bin",
    "config.json",
    "generation_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
)


def find_python(version: str) -> str | None:
    """A working python<version> on this machine (the system's, or one pyenv installed even
    when it is not the selected one), or None."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return getattr(sys, "_base_executable", None) or sys.executable
    candidates = [f"/usr/bin/python{version}", f"/usr/local/bin/python{version}", shutil.which(f"python{version}")]
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates += sorted(str(p) for p in pyenv.glob(f"{version}.*/bin/python{version}"))
    for candidate in candidates:
        if not candidate or not os.access(candidate, os.X_OK):
            continue
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if out.returncode == 0 and out.stdout.strip() == version:
            return candidate
    return None


def _pip_cert() -> list[str]:
    """pip's --cert for the system's CA bundle, which also holds a TLS-intercepting proxy's CA
    where one is on the way (pip's own bundle would not)."""
    return ["--cert", paths.CA_BUNDLE] if os.path.isfile(paths.CA_BUNDLE) else []


# --- the export tools' venv -------------------------------------------------------------------


def _check_no_telemetry(folder: Path) -> None:
    found = [str(p) for p in folder.rglob("openvino_telemetry") if p.is_dir()]
    if found:
        raise LabError(f"{NO_TELEMETRY} was installed ({', '.join(found)}): it would send usage data out")


def venv_key() -> str:
    return toolvenv.key(paths.OV_EXPORT_VENV.name, EXPORT_PINS)


def export_venv() -> Path:
    """The venv with OpenVINO, openvino-tokenizers and transformers, installed once."""
    return toolvenv.ensure(
        paths.OV_EXPORT_VENV,
        EXPORT_PINS,
        "the OpenVINO export tools",
        check=lambda venv: _check_no_telemetry(venv / "lib"),
    )


# --- the tiny model in OpenVINO IR ------------------------------------------------------------


def export_key() -> str:
    model = paths.TINY_MODEL
    files = sorted(p for p in model.iterdir() if p.is_file())
    return toolvenv.digest(
        "tiny-ov/2", venv_key(), WRITER.read_bytes(), *(part for p in files for part in (p.name, p.read_bytes()))
    )


def export_tiny_model() -> Path:
    """paths.TINY_OV: the tiny model as an OVMS LLM folder without graph.pbtxt (the deploy writes
    it): openvino_model, openvino_tokenizer and openvino_detokenizer IR plus the HF config and
    tokenizer files. Exported once per tiny model, writer and tool versions."""
    if not (paths.TINY_MODEL / "model.safetensors").exists():
        raise LabError(f"no tiny model in {paths.TINY_MODEL}: build the artifacts first")
    key = export_key()
    out, key_file = paths.TINY_OV, paths.TINY_OV_KEY
    if out.is_dir() and key_file.exists() and key_file.read_text() == key:
        return out
    venv = export_venv()
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    log(f"exporting the tiny model to OpenVINO IR in {out}")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "OPENVINO_TELEMETRY_DISABLE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "TRANSFORMERS_VERBOSITY": "error",
    }
    seconds = toolvenv.run_step(
        [str(venv / "bin" / "python"), str(WRITER), str(paths.TINY_MODEL), str(tmp)], "ov-export", env=env, cwd="/"
    )
    missing = [name for name in EXPORT_FILES if not (tmp / name).is_file()]
    if missing:
        raise LabError(f"the OpenVINO export of {paths.TINY_MODEL} lacks {', '.join(missing)}")
    key_file.unlink(missing_ok=True)
    toolvenv.swap_in(tmp, out)
    key_file.write_text(key)
    log(f"exported the tiny model in {seconds:.1f} s")
    return out


# --- the engine libraries for the stand-in archive --------------------------------------------


def target_platforms(target: Target) -> list[str]:
    """pip's --platform tags for the target host: every manylinux level its glibc runs."""
    major, minor = target.glibc
    tags = [f"manylinux_{major}_{m}_{target.arch}" for m in range(minor, 4, -1)]
    return tags + [f"manylinux2014_{target.arch}", f"manylinux2010_{target.arch}", f"manylinux1_{target.arch}"]


def libs_key(target: Target) -> str:
    return toolvenv.digest("engine-libs/2", target.python, target.arch, repr(target.glibc), *ENGINE_PINS)


def libs_dir(target: Target) -> Path:
    return paths.OVMS_STANDIN_LIBS.with_name(f"{paths.OVMS_STANDIN_LIBS.name}-py{target.python}")


def engine_libs(target: Target) -> Path:
    """openvino, openvino-genai and openvino-tokenizers installed with `pip install --target` for
    the target host's Python and C library: the archive's ovms/lib/python."""
    out = libs_dir(target)
    stamp = out / ".lab-key"
    key = libs_key(target)
    if stamp.exists() and stamp.read_text() == key:
        return out
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    paths.CACHE.mkdir(parents=True, exist_ok=True)
    log(f"installing the OpenVINO engine for Python {target.python} ({target.system}) into {out}")
    platforms = [arg for tag in target_platforms(target) for arg in ("--platform", tag)]
    # Any pip installs for another Python (--python-version): the lab's own (labctl's venv has one).
    if not importlib.util.find_spec("pip"):
        raise LabError(f"{sys.executable} has no pip, which installs the engine for the mini's Python")
    seconds = toolvenv.run_step(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            *_pip_cert(),
            "--target",
            str(tmp),
            "--no-compile",
            "--no-deps",
            "--only-binary=:all:",
            "--implementation",
            "cp",
            "--python-version",
            target.python,
            *platforms,
            *ENGINE_PINS,
        ],
        f"ov-engine-libs-py{target.python}",
    )
    _check_no_telemetry(tmp)
    # Console scripts name this machine's interpreter: no use on the host.
    shutil.rmtree(tmp / "bin", ignore_errors=True)
    (tmp / ".lab-key").write_text(key)
    toolvenv.swap_in(tmp, out)
    log(f"installed the OpenVINO engine libraries in {seconds:.1f} s")
    return out


def versions(target: Target) -> dict[str, str]:
    """What the stand-in archive's STANDIN.txt states."""
    return {
        "openvino": OPENVINO,
        "openvino-genai": OPENVINO_GENAI,
        "openvino-tokenizers": OPENVINO_TOKENIZERS,
        "system": target.system,
        "python": target.python,
        "platform": f"manylinux_{target.glibc[0]}_{target.glibc[1]}_{target.arch}",
    }


if __name__ == "__main__":
    print(json.dumps({"tiny_ov": str(export_tiny_model()), "libs": str(engine_libs(mini_target()))}))
