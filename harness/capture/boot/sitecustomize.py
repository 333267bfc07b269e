"""Loaded by the interpreter at start-up under `python -m harness capture` (harness/capture/autostart.py)."""
import os
import sys

if os.environ.get("OPDIFF_CAPTURE"):
    try:
        from harness.capture.autostart import start

        start()
    except Exception as exc:   # a capture that cannot start must not stop the program
        sys.stderr.write(f"opdiff capture: not started: {type(exc).__name__}: {exc}\n")

# hand over to a sitecustomize further down the path, which this one shadows
_here = os.path.dirname(os.path.abspath(__file__))
_rest = [p for p in sys.path if os.path.abspath(p or ".") != _here]
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402

_spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _rest)
if _spec is not None and _spec.origin and os.path.dirname(os.path.abspath(_spec.origin)) != _here:
    _mod = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_mod)
