"""Start a capture inside a program run by `python -m harness capture DIR -- CMD ...`.

The command sets OPDIFF_CAPTURE (the settings as JSON) and puts harness/capture/boot first on
PYTHONPATH; its sitecustomize.py calls `start()` as the interpreter starts. torch_npu is wrapped the
moment it is imported (an import hook on sys.meta_path), or at once if it already is, and the summary
is written when the interpreter exits. A child process started by the program inherits both
variables and writes its own records and capture-<pid>.json into the same directory.
"""
from __future__ import annotations

import atexit
import importlib.abc
import importlib.util
import json
import logging
import os
import sys

ENV = "OPDIFF_CAPTURE"
log = logging.getLogger(__name__)


class _Loader(importlib.abc.Loader):
    def __init__(self, inner, callback):
        self.inner, self.callback = inner, callback

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module):
        self.inner.exec_module(module)
        self.callback(module)


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs `callback(module)` once the named module has executed."""

    def __init__(self, name: str, callback):
        self.name, self.callback = name, callback

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)   # one shot; and find_spec below must not find us again
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader, self.callback)
        return spec


def start() -> None:
    settings = json.loads(os.environ[ENV])
    from .recorder import Capture

    cap = Capture(settings["dir"], settings.get("ops"), settings.get("max_calls", 1000), settings.get("sample", 1),
                  settings.get("per_signature", 1), settings.get("max_bytes", 2 << 30))

    def install(module):
        cap.start(module)
        atexit.register(cap.stop)

    if "torch_npu" in sys.modules:
        install(sys.modules["torch_npu"])
    else:
        sys.meta_path.insert(0, _AfterImport("torch_npu", install))
