"""Settings → Sysinfo (A1111's modules.sysinfo): the system, packages, extensions and settings as one JSON, for bug
reports; secrets (logins, keys, tokens, passwords) are redacted."""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import re
import sys

from modules import extensions, paths_internal
from modules.shared_cmd_options import cmd_opts

REDACTED = "<hidden>"
# a flag, setting or variable whose name says it holds a secret
SECRET_NAME = re.compile(r"auth|token|key|secret|password|passwd|credential", re.IGNORECASE)
ENVIRONMENT = ("COMMANDLINE_ARGS", "PYTORCH_CUDA_ALLOC_CONF", "CUDA_VISIBLE_DEVICES", "HF_HOME", "HF_HUB_OFFLINE",
               "TORCH_COMMAND", "GRADIO_ANALYTICS_ENABLED", "PYTHONPATH")


def redact_argv(argv: list[str]) -> list[str]:
    """The command line with the value of every secret flag (`--gradio-auth u:p`, `--api-auth=...`) hidden."""
    out, hide_next = [], False
    for arg in argv:
        if hide_next:
            out.append(REDACTED)
            hide_next = False
        elif arg.startswith("--") and SECRET_NAME.search(arg.split("=", 1)[0]):
            out.append(f"{arg.split('=', 1)[0]}={REDACTED}" if "=" in arg else arg)
            hide_next = "=" not in arg
        else:
            out.append(arg)
    return out


def redact(values: dict) -> dict:
    return {key: REDACTED if SECRET_NAME.search(key) and value not in (None, "", [], False) else value
            for key, value in values.items()}


def get_dict(settings=None) -> dict:
    from modules import job_context

    settings = settings if settings is not None else job_context.settings()
    import torch

    return {
        "Platform": platform.platform(),
        "Python": platform.python_version(),
        "Version": _version(),
        "Script path": paths_internal.script_path,
        "Data path": paths_internal.data_path,
        "Commandline": redact_argv(sys.argv),
        "Torch": {"version": torch.__version__, "cuda": torch.version.cuda,
                  "devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]},
        "CPU": {"model": platform.processor(), "count": os.cpu_count()},
        "Environment": redact({name: os.environ[name] for name in ENVIRONMENT if name in os.environ}),
        "Flags": redact({key: value for key, value in vars(cmd_opts).items() if _jsonable(value)}),
        "Extensions": [{"name": e.name, "path": e.path, "enabled": e.enabled} for e in extensions.extensions],
        "Config": redact({key: value for key, value in settings.data.items() if _jsonable(value)}),
        "Packages": sorted(f"{d.metadata['Name']}=={d.version}" for d in importlib.metadata.distributions()
                           if d.metadata["Name"]),
    }


def _version() -> str:
    from modules import processing
    return processing.VERSION


def _jsonable(value) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def get() -> str:
    return json.dumps(get_dict(), indent=4, ensure_ascii=False)


def licenses() -> list[tuple[str, str]]:
    """(package, its license) of every installed distribution, as their metadata declare them."""
    found = []
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if not name:
            continue
        text = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
        if not text or len(text) > 80:  # a whole license text in the field: its classifier names it better
            classifiers = [c.split(" :: ")[-1] for c in dist.metadata.get_all("Classifier") or [] if c.startswith("License ::")]
            text = ", ".join(classifiers) or (text.splitlines()[0] if text else "not declared")
        found.append((name, text))
    return sorted(set(found), key=lambda item: item[0].lower())
