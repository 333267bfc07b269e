"""Device against device (harness.devcheck): determinism over repeated launches, front-end pairs, graph mode.

The checks run here against stand-ins: the torch reference (deterministic), the fault backend's `flaky` knob
(a low bit flipped on every second launch), the torch_npu schema stand-ins (tests/npu_schemas.py) through the
eager front end, through torch_npu:graph (torch.compile; on CPU the compile backend is torch's eager one, as
there is no GE) and through a front end with a one-element wrapper defect.
"""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from ml_dtypes import bfloat16

from backends.torch_npu import _env as torch_npu_env
from backends.torch_npu import TorchNpuBackend
from backends.torch_npu._graph import TorchNpuGraphBackend, split_option, torchair_missing
from harness import devcheck, registry
from harness.devcheck import Checks, bitwise_diff
from harness.runner import run_case
from harness.timing import TimingConfig
from harness.verdicts import VERDICT_ORDER
from tests import fault_backend
from tests.npu_schemas import SchemaNamespace, wheel_dir

NO_TIMING = TimingConfig(enabled=False)
ROOT = wheel_dir()
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _first(op, pred=lambda c: True):
    spec = registry.op(op)
    return spec, next(c for c in spec.cases("smoke") if not c.negative and pred(c))


def _by(rows, backend):
    return [r for r in rows if r["backend"] == backend]


# ---- bitwise -------------------------------------------------------------------------------------------------
def test_bitwise_diff_counts_bits_not_values():
    a = np.array([[1.0, -0.0, np.nan], [2.0, 3.0, 4.0]], dtype=np.float16)
    assert bitwise_diff(a, a.copy()).count == 0          # NaN with the same payload is equal
    b = a.copy()
    b[0, 1] = 0.0                                          # -0 vs +0: a difference in bits
    b.view(np.uint16)[1, 2] ^= 1                           # the last bit of 4.0
    d = bitwise_diff(a, b)
    assert (d.count, d.numel, d.first, d.a_bits, d.b_bits) == (2, 6, (0, 1), "0x8000", "0x0000")
    assert "2 of 6 element(s) differ bitwise; first at index [0, 1]" in d.describe("x", "y")
    bf = np.array([1.0, 2.0], dtype=bfloat16)
    bf2 = bf.copy()
    bf2.view(np.uint16)[1] ^= 1
    assert bitwise_diff(bf, bf2).first == (1,)
    assert bitwise_diff(a, a.astype(np.float32)).note == "dtype float16 vs float32"
    assert "nondeterministic" in VERDICT_ORDER and VERDICT_ORDER.index("nondeterministic") > VERDICT_ORDER.index("fail")


# ---- determinism -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("op", ["paged_cache_load", "incre_flash_attention", "dequant_rope_quant_kvcache"])
def test_torch_reference_is_deterministic(op):
    spec, case = _first(op)
    rows = run_case(spec, case, [registry.backend("torch")], "smoke", 0, NO_TIMING, checks=Checks(determinism=3))
    det = _by(rows.rows, "determinism:torch")
    assert [r["output"] for r in det] == list(spec.outputs)
    assert all(r["verdict"] == "pass" and r["mismatch_count"] == 0 and r["ok"] for r in det), det
    assert "3 launches on the same inputs: bitwise identical" in det[0]["reason"]
    # the golden rows are the same as without the check
    plain = run_case(spec, case, [registry.backend("torch")], "smoke", 0, NO_TIMING, checks=Checks(determinism=1))
    assert [r["verdict"] for r in _by(rows.rows, "torch")] == [r["verdict"] for r in plain.rows]
    assert not _by(plain.rows, "determinism:torch")


def test_flaky_fault_is_flagged_with_the_count(monkeypatch):
    spec, case = _first("paged_cache_load")
    monkeypatch.setenv(fault_backend.ENV, f"flaky={case.id};flaky_n=3")
    fault_backend._LAUNCHES.clear()
    res = run_case(spec, case, [fault_backend.FaultBackend()], "smoke", 0, NO_TIMING, checks=Checks(determinism=3))
    assert all(r["verdict"] == "pass" for r in _by(res.rows, "fault")), res.rows   # launch 1 is clean
    det = _by(res.rows, "determinism:fault")
    assert [r["output"] for r in det] == list(spec.outputs)
    for r in det:
        assert r["verdict"] == "nondeterministic" and not r["ok"]
        assert r["mismatch_count"] == 3 and set(r["first_diff_index"].split(",")) == {"0"}
        assert "launch 2 of 3 on the same inputs differs from launch 1: 3 of" in r["reason"]
        assert "--determinism 3" in r["repro"]


def test_documented_nondeterminism_is_exempt(monkeypatch):
    spec, case = _first("paged_cache_load")
    monkeypatch.setenv(fault_backend.ENV, f"flaky={case.id}")
    fault_backend._LAUNCHES.clear()
    exempt = dataclasses.replace(spec, nondeterministic="atomic adds (doc clause X)")
    res = run_case(exempt, case, [fault_backend.FaultBackend()], "smoke", 0, NO_TIMING, checks=Checks(determinism=2))
    det = _by(res.rows, "determinism:fault")
    assert det and all(r["verdict"] == "skipped" and "atomic adds (doc clause X)" in r["reason"] for r in det)


def test_nightly_default_repeats_device_backends_only():
    dev = TorchNpuBackend(api=object())
    assert Checks().launches(dev, "nightly") == 2 and Checks().launches(dev, "smoke") == 1
    assert Checks().launches(registry.backend("torch"), "nightly") == 1
    assert Checks(determinism=4).launches(registry.backend("numpy"), "smoke") == 4


def test_cli_determinism_through_the_isolated_worker(tmp_path):
    """The fault backend runs in a worker (may_crash): --determinism travels with each request."""
    spec, case = _first("paged_cache_load")
    out = tmp_path / "run"
    env = {**os.environ, fault_backend.ENV: f"flaky={case.id};flaky_n=2"}
    p = subprocess.run([sys.executable, "-m", "tests.fault_backend", "run", "--ops", "paged_cache_load",
                        "--backends", "numpy,fault", "--case", case.id, "--determinism", "2", "--no-timing",
                        "--out", str(out)], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 1, p.stdout + p.stderr
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    det = {r["backend"]: r for r in rows if r["backend"].startswith("determinism:")}
    assert det["determinism:numpy"]["verdict"] == "pass"
    bad = [r for r in rows if r["backend"] == "determinism:fault"]
    assert bad and all(r["verdict"] == "nondeterministic" and r["mismatch_count"] == 2 for r in bad)
    assert "nondeterministic" in p.stdout and "determinism:fault" in p.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["plan_args"]["determinism"] == 2
    html = tmp_path / "r.html"
    rep = subprocess.run([sys.executable, "-m", "harness", "report", str(out), "-o", str(html)], cwd=REPO,
                         capture_output=True, text=True, timeout=300)
    assert rep.returncode == 0, rep.stderr
    page = html.read_text()
    assert "determinism:fault" in page and "nondeterministic" in page


# ---- front-end pairs and graph mode over the schema stand-ins --------------------------------------------------
needs_wheel = pytest.mark.skipif(ROOT is None, reason="torch-npu wheel not installed (pip install '.[npu-schemas]')")


class OneElementWrapper(TorchNpuBackend):
    """A front end over the same kernel whose wrapper changes one element's last bit: what a re-layout or a
    cast in a wrapper looks like when it stays within tolerance of the golden."""

    def fetch(self, prepared):
        out = super().fetch(prepared)
        return {k: fault_backend.flip_low_bits(v, 1) if k == "attention_out" else v for k, v in out.items()}


@pytest.fixture(scope="module")
def ns():
    from tests.npu_graph_standin import register_meta

    n = SchemaNamespace(ROOT)
    register_meta(n)
    return n


@needs_wheel
def test_graph_mode_wiring_and_pairs(ns):
    """torch_npu eager, torch_npu:graph (torch.compile over the stand-in; on CPU the compile backend is torch's
    eager one: there is no GE here) and a one-element wrapper defect, all on the same kernel."""
    spec, case = _first("incre_flash_attention")
    eager = TorchNpuBackend(api=ns.api)
    graph = TorchNpuGraphBackend(api=ns.api)
    defect = OneElementWrapper(api=ns.api)
    defect.name = "torch_npu[defect]"
    assert eager.kernel_key == graph.kernel_key == defect.kernel_key
    with ns.case(case.params):
        res = run_case(spec, case, [eager, graph, defect], "smoke", 0, NO_TIMING)
    for b in (eager, graph, defect):   # all three are within tolerance of the golden
        assert all(r["verdict"] in ("pass", "warn") for r in _by(res.rows, b.name)), _by(res.rows, b.name)
    nodes = [n for n in graph.last_graph.graph.nodes if n.op == "call_function"]
    assert len(nodes) == 1 and "npu_incre_flash_attention" in str(nodes[0].target)
    (same,) = _by(res.rows, f"pair:{eager.name}~{graph.name}")
    assert same["verdict"] == "pass" and same["mismatch_count"] == 0
    for a in (eager, graph):
        (diff,) = _by(res.rows, f"pair:{a.name}~{defect.name}")
        assert diff["verdict"] == "fail" and not diff["ok"] and diff["mismatch_count"] == 1
        zeros = [0] * len(diff["first_diff_index"].split(","))
        assert diff["first_diff_index"] == ",".join(map(str, zeros)) and len(zeros) >= 3
        assert "1 of" in diff["reason"] and f"first at index {zeros}" in diff["reason"]


@needs_wheel
def test_graph_mode_declines_ops_without_a_meta_kernel(ns):
    graph = TorchNpuGraphBackend(api=ns.api)
    spec, case = _first("nsa_compress_with_cache")
    why = graph.supports(spec, case)
    assert why and "has no Meta kernel" in why and "npu_nsa_compress_infer" in why
    spec, case = _first("incre_flash_attention")
    assert graph.supports(spec, case) is None


def test_graph_backend_skips_with_the_real_reason():
    b = registry.backend("torch_npu:graph")
    assert isinstance(b, TorchNpuGraphBackend) and b.name == "torch_npu:graph" and b.device == "npu:0"
    assert split_option("1+graph") == (True, "1") and registry.backend("torch_npu:1+graph").device == "npu:1"
    eager = torch_npu_env.npu_availability()
    if eager:
        pytest.skip("torch_npu is usable here: the skip reasons are for machines without it")
    assert not b.available()
    missing = torchair_missing()
    assert b.available().reason == (missing or f"graph mode needs torch_npu: {eager.reason}")


def test_torchair_missing_reasons(tmp_path):
    pkg = tmp_path / "torch_npu"
    pkg.mkdir()

    class Spec:
        submodule_search_locations = [str(pkg)]

    versions = {"torch": "2.13.0+cpu", "torch-npu": "2.13.0"}
    why = torchair_missing(lambda name: Spec, versions.get)
    assert "has no torchair" in why
    (pkg / "dynamo" / "torchair").mkdir(parents=True)
    (pkg / "dynamo" / "torchair" / "__init__.py").write_text("")
    assert torchair_missing(lambda name: Spec, versions.get) is None
    versions["torch"] = "2.12.1"
    assert torchair_missing(lambda name: Spec, versions.get) == (
        "torchair inside torch_npu 2.13.0 needs torch 2.13.0, but torch 2.12.1 is installed")
    assert "not installed" in torchair_missing(lambda name: None, versions.get)


def test_pairs_skip_with_the_reason_when_a_side_has_no_outputs():
    spec, case = _first("paged_cache_load")
    a, b = TorchNpuBackend(api=object()), TorchNpuBackend(api=object())
    b._api = a._api
    b.name = "torch_npu[other]"
    rows = devcheck.pair_rows(spec, case, [a, b], {a.name: {}}, "smoke", 0, {b.name: "rejected"})
    assert len(rows) == len(spec.outputs)
    assert all(r["verdict"] == "skipped" and "torch_npu[other] produced no outputs (rejected)" in r["reason"]
               for r in rows)


def test_report_lists_determinism_and_pair_rows(tmp_path):
    from tests.report_runs import good, row, write_run

    op = "incre_flash_attention"
    rows = [good(op, 0, "torch_npu"), good(op, 0, "aclnn"),
            row(op, "pw00-case", "determinism:torch_npu", "pass",
                reason="2 launches on the same inputs: bitwise identical"),
            row(op, "pw00-case", "determinism:aclnn", "nondeterministic", ok=False, mismatch_count=5,
                reason="launch 2 of 2 on the same inputs differs from launch 1: 5 of 64 element(s) differ bitwise; "
                       "first at index [0, 3]: launch 1 0x3c00 vs launch 2 0x3c01"),
            row(op, "pw00-case", "pair:torch_npu~aclnn", "fail", ok=False, mismatch_count=1,
                reason="same kernel, two front ends: 1 of 64 element(s) differ bitwise; first at index [0, 7]")]
    run = write_run(tmp_path / "run", rows)
    out = tmp_path / "r.html"
    p = subprocess.run([sys.executable, "-m", "harness", "report", str(run), "-o", str(out)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    page = out.read_text()
    assert "2 unexpected results" in page
    for text in ("pair:torch_npu~aclnn", "determinism:aclnn", "first at index [0, 7]", "first at index [0, 3]"):
        assert text in page, text
    from tests.html_dom import parse

    section = parse(page).by_id("devchecks")
    lines = [[c.text for c in tr.find_all("td")] for tr in section.find_all("tr") if tr.find_all("td")]
    assert [ln[:6] for ln in lines] == [[op, "determinism:aclnn", "1", "0", "1", "0"],
                                        [op, "determinism:torch_npu", "1", "1", "0", "0"],
                                        [op, "pair:torch_npu~aclnn", "1", "0", "1", "0"]]
    assert lines[2][6].startswith("pw00-case: same kernel, two front ends: 1 of 64")


@pytest.mark.parametrize("flaky", [False, True])
def test_pairs_through_the_isolated_worker(flaky):
    """Both front ends run in one worker, which compares the outputs it holds. With the flaky knob, the second
    front end's launch is the case's second in that process, so it differs in flaky_n elements."""
    from harness.isolate import IsolatedRunner

    spec, case = _first("paged_cache_load")
    env = {**os.environ, fault_backend.ENV: f"flaky={case.id};flaky_n=2" if flaky else ""}
    a, b = fault_backend.FaultBackend("a"), fault_backend.FaultBackend("b")
    with IsolatedRunner([a, b], "smoke", 0, NO_TIMING, timeout=120, env=env) as pool:
        res = pool.run_case(spec, case)
    pair = _by(res.rows, "pair:fault:a~fault:b")
    assert [r["output"] for r in pair] == list(spec.outputs)
    if flaky:
        assert all(r["verdict"] == "fail" and r["mismatch_count"] == 2 for r in pair), pair
    else:
        assert all(r["verdict"] == "pass" and r["mismatch_count"] == 0 for r in pair), pair
