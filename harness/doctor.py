"""What a node has and lacks for the device backends: the checks behind `python -m harness doctor`.

Each check is a `Line` (what, status, the reason or the finding, and which backends need it). `environment()`
never raises and imports nothing heavy at module import: CANN is found and loaded through the aclnn backend's
discovery (backends/aclnn/_lib.py), torch_npu is imported only through backends/torch_npu/_env.py. `smoke()`
runs the smallest positive and one parameter-level negative case of every op on each available backend,
with the known-issue ledger applied, and reports each verdict.

Statuses: ok, missing (needed and absent: the backend cannot run), double (the C stand-in of CANN from
tests/aclnn_double: everything works, nothing is real), info (informative only), fail (a smoke verdict that
is not what the case expects).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from .envinfo import dist_version, release

log = logging.getLogger(__name__)

DEVICE_BACKENDS = ("aclnn", "torch_npu")
BAD = ("missing", "fail")
#: seconds one smoke case may take in the worker: a first launch compiles the op, a hang must still end
ISOLATED_TIMEOUT_S = 300.0
#: a symbol only the C double's runtime exports (tests/aclnn_double/opdiff_double.h)
DOUBLE_SYMBOL = "opdiff_double_set_fault"


@dataclass
class Line:
    item: str
    status: str
    detail: str
    needed_by: tuple[str, ...] = ()

    def blocks(self, backends) -> bool:
        """True when this line keeps one of `backends` from being ready."""
        return self.status in BAD and (not self.needed_by or bool(set(self.needed_by) & set(backends)))


# ---- versions -----------------------------------------------------------------------------------------------
def torch_versions() -> list[Line]:
    torch_v, npu_v = dist_version("torch"), dist_version("torch-npu") or dist_version("torch_npu")
    lines = [Line("torch", "ok" if torch_v else "missing", torch_v or "not installed", ("torch_npu",))]
    if npu_v is None:
        lines.append(Line("torch_npu", "missing", "not installed (pip install torch-npu==<torch version>)",
                          ("torch_npu",)))
        return lines
    # torch_npu X.Y.Z[.postN] is built for torch X.Y.Z (the torch-npu wheel pins it)
    match = torch_v is not None and release(torch_v) == release(npu_v)
    lines.append(Line("torch_npu", "ok" if match else "missing",
                      f"{npu_v}; torch {torch_v}: " + ("versions match" if match else
                                                       "versions do not match (torch_npu X.Y.Z needs torch X.Y.Z)"),
                      ("torch_npu",)))
    return lines


def cann_version(root: Path) -> str:
    """The toolkit version from its install files ('unknown' when none is readable)."""
    names = ("version.cfg", "version.info", "ascend_toolkit_install.info", "compiler/version.info",
             "runtime/version.info", "arm64-linux/ascend_toolkit_install.info",
             "x86_64-linux/ascend_toolkit_install.info")
    for rel in names:
        f = root / rel
        try:
            for line in f.read_text(errors="replace").splitlines():
                key, sep, value = line.partition("=")
                if sep and "version" in key.lower() and value.strip():
                    return f"{value.strip()} ({f})"
        except OSError:
            continue
    return "unknown (no version.cfg / version.info / ascend_toolkit_install.info under the root)"


# ---- CANN, ATB, the op symbols, devices --------------------------------------------------------------------------
def cann_lines() -> tuple[list[Line], object | None]:
    """Toolkit, ATB and symbol lines, and the loaded Cann (None when it cannot be loaded)."""
    from backends.aclnn._lib import CannUnavailable, atb_library_path, find_root, load

    need = DEVICE_BACKENDS
    root, why = find_root()
    try:
        cann = load() if root is not None else None
    except CannUnavailable as exc:
        why = f"found {root} but it cannot be used: {exc}"
        cann = None
    if cann is None:
        atb_path, atb_why = atb_library_path()
        lines = [Line("CANN toolkit", "missing", why, need),
                 Line("NNAL / ATB", "info" if atb_path else "missing",
                      f"{atb_path} (not loaded without the toolkit)" if atb_path else atb_why, need)]
        from backends.aclnn._binding import bindings

        lines += [Line(f"symbol {b.symbol}", "missing", f"{op}: not searched, no CANN toolkit", ("aclnn",))
                  for op, b in bindings().items()]
        return lines, None
    double = hasattr(cann.rt, DOUBLE_SYMBOL)
    if double:
        toolkit = Line("CANN toolkit", "double", f"{root}: the C test double of CANN (tests/aclnn_double), not a real "
                                                 f"toolkit: results say nothing about a device", need)
    else:
        toolkit = Line("CANN toolkit", "ok", f"{root}, version {cann_version(root)}", need)
    lines = [toolkit]
    atb_path, atb_why = atb_library_path()
    if cann.atb is not None:
        lines.append(Line("NNAL / ATB", "double" if double else "ok", str(atb_path), need))
    else:
        lines.append(Line("NNAL / ATB", "missing", cann.atb_reason or atb_why, need))
    if cann.op_lib_errors:
        lines.append(Line("op libraries", "info", "failed to load: " + "; ".join(cann.op_lib_errors)))
    return lines, cann


def symbol_lines(cann) -> list[Line]:
    """Per op: where its entry points are (custom op packages are searched first, as CANN does)."""
    from backends.aclnn._binding import bindings

    lines = []
    for op, b in bindings().items():
        item = f"symbol {b.symbol}"
        if b.family == "atb":
            ok = cann.atb is not None and hasattr(cann.atb, b.symbol + "GetWorkspaceSize")
            where = str(getattr(cann.atb, "_name", "libatb.so")) if ok else (cann.atb_reason or "libatb.so not loaded")
            lines.append(Line(item, "ok" if ok else "missing", f"{op}: {where}", ("aclnn",)))
            continue
        found = [str(p) for p, lib in cann.op_libs
                 if hasattr(lib, b.symbol + "GetWorkspaceSize") and hasattr(lib, b.symbol)]
        if found:
            custom = " (custom op package)" if "libcust_opapi" in found[0] else ""
            lines.append(Line(item, "ok", f"{op}: {found[0]}{custom}", ("aclnn",)))
        else:
            searched = ", ".join(str(p) for p, _ in cann.op_libs) or "no op library found"
            lines.append(Line(item, "missing", f"{op}: not exported by {searched}", ("aclnn",)))
    return lines


def aclnn_device_lines() -> list[Line]:
    from ctypes import byref, c_uint32

    from backends.aclnn import AclnnBackend
    from backends.torch_npu._env import visible_devices_note

    b = AclnnBackend()
    try:
        avail = b.available()
        if not avail:
            return [Line("devices (ACL)", "missing", avail.reason, ("aclnn",))]
        count = c_uint32(0)
        b._cann.rt.aclrtGetDeviceCount(byref(count))
        return [Line("devices (ACL)", "ok", f"{count.value} visible, SoC {b.soc_name() or '?'}; "
                                            f"{visible_devices_note()}", ("aclnn",))]
    finally:
        b.close()


def torch_npu_lines() -> list[Line]:
    from backends.torch_npu._env import load, npu_availability, task_queue_note, visible_devices_note

    lines = []
    avail = npu_availability()
    if not avail:
        lines.append(Line("torch_npu import / devices", "missing", avail.reason, ("torch_npu",)))
    else:
        npu = load().npu
        n = int(npu.device_count())
        names = []
        for i in range(n):
            try:
                names.append(f"npu:{i} {npu.get_device_name(i)}")
            except Exception as exc:  # a name is informative only
                names.append(f"npu:{i} (name unavailable: {exc})")
        lines.append(Line("torch_npu import / devices", "ok",
                          f"{n} visible: {', '.join(names)}; {visible_devices_note()}", ("torch_npu",)))
        from backends.torch_npu import nnal_missing

        why = nnal_missing()
        lines.append(Line("torch_npu.atb (NNAL)", "missing" if why else "ok", why or "torch_npu.atb loads libatb.so",
                          ("torch_npu",)))
    lines.append(Line("task queue", "info", task_queue_note()))
    return lines


def environment(backends) -> list[Line]:
    """Every environment line; nothing here raises (a check that breaks reports itself as missing). Lines name
    the device backends that need them; other backends (numpy, torch, plugins) need none of these."""
    lines: list[Line] = []
    try:
        cann, loaded = cann_lines()
        lines += cann
        if loaded is not None:
            lines += symbol_lines(loaded)
            lines += aclnn_device_lines()
    except Exception as exc:  # a broken install must still give a report
        lines.append(Line("CANN checks", "missing", f"{type(exc).__name__}: {exc}", DEVICE_BACKENDS))
    lines += torch_versions()
    try:
        lines += torch_npu_lines()
    except Exception as exc:
        lines.append(Line("torch_npu checks", "missing", f"{type(exc).__name__}: {exc}", ("torch_npu",)))
    return lines


# ---- the smallest cases, run ----------------------------------------------------------------------------------
def _cost(spec, case) -> float:
    try:
        return float(spec.cost(case.params)[0]) if spec.cost else 0.0
    except Exception:  # a cost model is a hint only
        return 0.0


def _param_level(spec, case) -> bool:
    """A negative case whose broken constraint is in its parameters, not its data (data faults are not
    checked by the kernels and may touch memory out of bounds: never on a first run)."""
    c = spec.constraint(case.violates)
    return c.check_inputs is None and "fault" not in c.params


def pick_cases(spec, backend):
    """(smallest positive case the backend runs, smallest parameter-level negative case), either may be None."""
    cases = spec.cases("smoke")
    pos = [c for c in cases if not c.negative and not backend.supports(spec, c)]
    neg = [c for c in cases if c.negative and _param_level(spec, c) and not backend.supports(spec, c)]
    pick = lambda cs: min(cs, key=lambda c: _cost(spec, c)) if cs else None  # noqa: E731
    return pick(pos), pick(neg)


def smoke(backend_names, ops=None, known_issues=None) -> list[Line]:
    """Verdict lines for every op x available device backend (unavailable ones were reported above)."""
    from . import ledger as ledger_mod
    from . import registry
    from .runner import run_case
    from .timing import TimingConfig

    specs = [registry.op(o) for o in ops] if ops else registry.ops()
    ledger = ledger_mod.load(known_issues, list(backend_names))
    lines = []
    timing = TimingConfig(enabled=False)
    for name in backend_names:
        backend = registry.backend.__wrapped__(name)   # a fresh instance, closed below (not the cached one)
        pool = None
        try:
            avail = backend.available()
            if not avail:
                lines.append(Line(f"{name}: smoke", "missing", f"not run: {avail.reason}", (name.partition(":")[0],)))
                continue
            if getattr(backend, "may_crash", False):
                # a first run on a node is where a kernel crash is likeliest: a worker process takes it (`crash`)
                from .isolate import IsolatedRunner

                pool = IsolatedRunner([backend], "smoke", 0, timing, ISOLATED_TIMEOUT_S)
                run = pool.run_case
            else:
                run = lambda spec, case: run_case(spec, case, [backend], "smoke", 0, timing)  # noqa: E731
            lines += _smoke_backend(name, backend, specs, ledger, run)
        finally:
            if pool is not None:
                pool.close()
            close = getattr(backend, "close", None)
            if close is not None:
                close()
    return lines


def _smoke_backend(name, backend, specs, ledger, run) -> list[Line]:
    lines = []
    for spec in specs:
        pos, neg = pick_cases(spec, backend)
        for kind, case in (("positive", pos), ("negative", neg)):
            item = f"{name}: {spec.name} {kind}"
            if case is None:
                lines.append(Line(item, "info", "no case of this kind runs on this backend (all declined)"))
                continue
            res = run(spec, case)
            ledger.apply(spec, case, res.rows)
            row = next((r for r in res.rows if not r["ok"]), res.rows[0])
            note = f" [{row['known_issue']}]" if row.get("known_issue") else ""
            lines.append(Line(item, "ok" if res.ok else "fail",
                              f"{case.id}: {row['verdict']}{note}: {row.get('reason') or ''}".strip(),
                              (name.partition(":")[0],)))
    return lines


def ready(lines, backends) -> bool:
    return not any(line.blocks([b.partition(":")[0] for b in backends]) for line in lines)
