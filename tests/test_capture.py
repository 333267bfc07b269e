"""Capture, msprobe import and replay (harness/capture), on CPU with a stand-in torch_npu module.

The stand-in (tests/capture_standin.py) is the real torch_npu schemas from the wheel registered over the
torch references, so the calls the torch_npu backend makes are the calls a user's model makes. Smoke cases
run through it under harness.capture; their records are replayed through numpy, torch and the stand-in and
must reach the same verdicts, on bitwise the same inputs.
"""
from __future__ import annotations

import json
import types

import ml_dtypes
import numpy as np
import pytest

import harness
from backends.torch_npu._adapters import adapter, adapters
from backends.torch_npu import TorchNpuBackend
from harness import ledger as ledger_mod
from harness import registry
from harness.capture import record, replay, tensorfile
from harness.capture.entry_points import ENTRY_POINTS
from harness.runner import run_case
from harness.timing import TimingConfig
from tests.npu_schemas import real_schemas, wheel_dir

NO_TIMING = TimingConfig(enabled=False)
LEDGER = ledger_mod.load(backends=["torch_npu"])
ROOT = wheel_dir()
needs_wheel = pytest.mark.skipif(ROOT is None, reason="torch-npu wheel not installed (pip install '.[npu-schemas]')")
CASES_PER_OP = 2


@pytest.fixture(scope="module")
def standin():
    from tests import capture_standin

    return capture_standin.module()


def _verdicts(rows):
    return {(r["backend"], r["output"]): r["verdict"] for r in rows}


def _expressible(spec, case):
    """Neither declined by the adapter nor a positive under a known issue (cases/known_issues/torch_npu.toml: the
    stand-in refuses ND PagedCacheLoad without seq_starts as ATB does)."""
    ad = adapter(spec.name)
    if not case.negative and LEDGER.match(spec, case, "torch_npu") is not None:
        return False
    return ad.case_decline is None or not ad.case_decline(case.params, spec.make_inputs(case, 0))


def _smoke(op, n=CASES_PER_OP):
    spec = registry.op(op)
    return spec, [c for c in spec.cases("smoke") if not c.negative and _expressible(spec, c)][:n]


# ---- the entry points are the wheel's ------------------------------------------------------------------------
@needs_wheel
def test_entry_point_arguments_are_the_wheels_schemas():
    import torch

    schemas = real_schemas(ROOT)
    for api, e in ENTRY_POINTS.items():
        names = {tuple(a.name for a in torch._C.parse_schema(s).arguments) for s in schemas[api]}
        assert e.arguments in names or e.arguments == max(names, key=len), (api, names)
    assert ENTRY_POINTS["atb.npu_paged_cache_load"].outputs_only == ("key", "value")


# ---- safetensors files ---------------------------------------------------------------------------------------
def test_tensor_file_round_trips_bfloat16_and_matches_the_safetensors_library(tmp_path):
    torch = pytest.importorskip("torch")
    st = pytest.importorskip("safetensors.torch")
    rng = np.random.default_rng(0)
    arrays = {"bf": rng.normal(size=(3, 5)).astype(ml_dtypes.bfloat16), "i8": rng.integers(-128, 127, (4,), np.int8),
              "f16": rng.normal(size=(2, 2, 2)).astype(np.float16), "b": np.array([True, False]),
              "empty": np.zeros((0, 3), np.int32)}
    arrays["bf"][0, 0] = np.nan
    ours = tmp_path / "ours.safetensors"
    tensorfile.write(ours, arrays, {"k": "v"})
    back, meta = tensorfile.read(ours)
    assert meta == {"k": "v"}
    for k, a in arrays.items():
        assert back[k].dtype == a.dtype and back[k].shape == a.shape
        assert np.array_equal(back[k].view(np.uint8), a.view(np.uint8)), k   # bitwise, NaN included
    loaded = st.load_file(str(ours))             # the reference implementation reads our file
    assert loaded["bf"].dtype == torch.bfloat16
    assert np.array_equal(loaded["bf"].view(torch.int16).numpy().view(np.uint16), arrays["bf"].view(np.uint16))
    theirs = tmp_path / "theirs.safetensors"
    st.save_file({"x": torch.arange(6, dtype=torch.float32).reshape(2, 3).to(torch.bfloat16)}, str(theirs))
    got, _ = tensorfile.read(theirs)             # and we read theirs
    assert got["x"].dtype == ml_dtypes.bfloat16 and got["x"].astype(np.float32).tolist() == [[0, 1, 2], [3, 4, 5]]


def test_truncated_tensor_file_names_the_file(tmp_path):
    p = tmp_path / "t.safetensors"
    tensorfile.write(p, {"a": np.arange(100, dtype=np.float32)})
    p.write_bytes(p.read_bytes()[:-40])
    with pytest.raises(tensorfile.TensorFileError, match=r"t\.safetensors: tensor 'a': bytes \[0, 400\) lie outside"):
        tensorfile.read(p)


# ---- capture: sampling, dedup, bounds, in-place snapshots ----------------------------------------------------
def _toy_module(log):
    """torch_npu-shaped toy: npu_nsa_compress_infer writes its cache in place and returns it."""
    def compress(input, weight, slot_mapping, compress_block_size, compress_stride, page_block_size, *,
                 block_table=None, actual_seq_len=None, cache):
        log.append(cache)
        cache.add_(1)
        return cache

    mod = types.ModuleType("torch_npu")
    mod.npu_nsa_compress_infer = compress
    return mod


def _compress_args(torch, rows=4):
    return ((torch.ones(1, 64, 1, 16), torch.ones(16, 1), torch.zeros(1, dtype=torch.int32), 16, 16, 64),
            {"block_table": torch.zeros(1, 1, dtype=torch.int32), "actual_seq_len": [16],
             "cache": torch.zeros(rows, 1, 16)})


def test_capture_dedups_samples_bounds_and_snapshots_in_place_inputs(tmp_path):
    torch = pytest.importorskip("torch")
    log = []
    mod = _toy_module(log)
    with harness.capture(tmp_path / "c", ops=["nsa_compress_with_cache"], sample=2, module=mod) as cap:
        results = []
        for i in range(6):                       # calls 0, 2, 4 looked at; 2 and 4 repeat 0's signature
            args, kwargs = _compress_args(torch)
            results.append((mod.npu_nsa_compress_infer(*args, **kwargs), kwargs["cache"]))
        args, kwargs = _compress_args(torch, rows=5)     # call 6: a new signature
        mod.npu_nsa_compress_infer(*args, **kwargs)
    assert mod.npu_nsa_compress_infer.__name__ == "compress"     # restored on exit
    assert all(out is cache and float(out.max()) == 1.0 for out, cache in results)   # the call's result, unchanged
    s = cap.summary()
    assert s["counts"]["npu_nsa_compress_infer"] == {"seen": 7, "sampled_out": 3, "duplicate": 2, "recorded": 2}
    assert s["recorded"] == 2 and s["not_recorded"]["duplicate"] == 2
    on_disk = json.loads(next((tmp_path / "c").glob("capture-*.json")).read_text())
    assert on_disk["counts"] == s["counts"]
    recs = [record.read(p) for p in record.find(tmp_path / "c")]
    assert sorted(r.tensors["cache"].shape[0] for r in recs) == [4, 5]
    assert all(float(r.tensors["cache"].max()) == 0.0 for r in recs)   # the cache as the op read it
    r = recs[0]
    assert r.manifest["attributes"]["actual_seq_len"] == [16] and r.manifest["attributes"]["compress_stride"] == 16
    assert r.manifest["call_site"]["function"] == "test_capture_dedups_samples_bounds_and_snapshots_in_place_inputs"
    assert r.manifest["versions"]["python"] and r.manifest["api"] == "npu_nsa_compress_infer"

    log.clear()
    with harness.capture(tmp_path / "m", max_calls=1, module=mod) as cap:
        for rows in (4, 5, 6):
            args, kwargs = _compress_args(torch, rows)
            mod.npu_nsa_compress_infer(*args, **kwargs)
    assert cap.summary()["counts"]["npu_nsa_compress_infer"] == {"seen": 3, "recorded": 1, "over_max_calls": 2}
    assert len(log) == 3                          # every call still ran

    budget = 8192 + 4 * (64 * 16 + 16 + 1 + 1 + 4 * 16) + 100   # fits the 4-row call, not the 6-row one
    with harness.capture(tmp_path / "d", max_bytes=budget, module=mod) as cap:
        for rows in (6, 4):
            args, kwargs = _compress_args(torch, rows)
            mod.npu_nsa_compress_infer(*args, **kwargs)
    assert cap.summary()["counts"]["npu_nsa_compress_infer"] == {"seen": 2, "over_disk_budget": 1, "recorded": 1}
    assert sum(f.stat().st_size for f in (tmp_path / "d").rglob("*") if f.is_file() and "capture-" not in f.name) \
        <= budget


def test_capture_failure_is_counted_and_the_call_still_runs(tmp_path):
    torch = pytest.importorskip("torch")
    mod = _toy_module([])
    with harness.capture(tmp_path / "c", module=mod) as cap:
        args, kwargs = _compress_args(torch)
        kwargs["actual_seq_len"] = object()       # an attribute a record cannot hold
        out = mod.npu_nsa_compress_infer(*args, **kwargs)
    assert float(out.max()) == 1.0
    s = cap.summary()
    assert s["counts"]["npu_nsa_compress_infer"]["failed"] == 1 and "cannot be recorded" in s["failures"][0]["reason"]
    assert s["recorded"] == 0 and s["bytes"] == 0 and cap.signatures[next(iter(cap.signatures))] == 0   # given back
    assert set(cap.missing) == set(ENTRY_POINTS) - {"npu_nsa_compress_infer"}   # reported, not silently absent


# ---- capture -> replay: the same verdicts ---------------------------------------------------------------------
def _worst(rows):
    """Worst verdict per (backend, output): a replay has no construction-only regions (the `ties` of a case
    built on exact .5 ties), so regions are folded into their output."""
    from harness.compare import worst_verdict

    by = {}
    for r in rows:
        by.setdefault((r["backend"], r["output"].split("[")[0]), []).append(r["verdict"])
    return {k: worst_verdict(v) for k, v in by.items()}


def _capture_and_replay(tmp_path, standin, spec, cases):
    """Run `cases` through numpy, torch and the stand-in under a capture; replay every record; return
    [(case, replayed case, original rows, replayed rows)] and the replay report."""
    mod, ns = standin
    backends = [registry.backend("numpy"), registry.backend("torch"), TorchNpuBackend(api=mod)]
    calls = []
    with harness.capture(tmp_path, ops=[spec.name], per_signature=1000, module=mod) as cap:
        for case in cases:
            before = cap.recorded
            with ns.case(case.params):
                rows = run_case(spec, case, backends, "smoke", 0, NO_TIMING).rows
            calls.append((case, rows, cap.recorded - before))
    planned, report = replay.plan(tmp_path, [spec], "smoke")
    replayed = iter(sorted(planned, key=lambda p: p[1].id))   # record ids number the calls in order
    out = []
    for case, rows, n in calls:
        assert n <= 1, f"{case.id}: {n} calls (timing is off: one call per case)"
        if n:
            rspec, rcase = next(replayed)
            with ns.case(rcase.params):
                out.append((case, rcase, rows, run_case(rspec, rcase, backends, "smoke", 0, NO_TIMING).rows))
    return out, report


@needs_wheel
@pytest.mark.parametrize("op", sorted(adapters()))
def test_captured_smoke_calls_replay_to_the_same_verdicts(tmp_path, standin, op):
    spec, cases = _smoke(op)
    # and one negative case the wrapper passes on: the stand-in refuses it, the record is a finding
    neg = [c for c in spec.cases("smoke") if c.negative and _expressible(spec, c)
           and TorchNpuBackend(api=standin[0]).supports(spec, c) is None][:1]
    assert cases and neg
    done, report = _capture_and_replay(tmp_path, standin, spec, cases + neg)
    assert report["unusable"] == [] and len(done) == len(cases) + 1
    assert [f["case_id"] for f in report["findings"]] and {f["case_id"] for f in report["findings"]} == {done[-1][1].id}
    for case, rcase, before, after in done:
        assert rcase.id.startswith(f"replay-{spec.name}-p") and rcase.origin == "replay"
        assert rcase.negative == case.negative
        want, got = spec.make_inputs(case, 0), spec.make_inputs(rcase, 0)
        for k, v in want.items():
            if isinstance(v, np.ndarray) and k in got:
                assert np.array_equal(np.asarray(got[k]).view(np.uint8), np.ascontiguousarray(v).view(np.uint8)), k
        assert {b for b, _ in _worst(before)} == {"numpy", "torch", "torch_npu[injected]"}
        assert _verdicts(after) == _verdicts(before), (case.id, after[0]["reason"])
        assert all(r["ok"] for r in after)
        assert f"--replay {rcase.params['replay_record']}" in after[0]["repro"]


@pytest.mark.slow
@needs_wheel
@pytest.mark.parametrize("op", sorted(adapters()))
def test_captured_smoke_session_replays_to_the_same_verdicts(tmp_path, standin, op):
    """Done-when of issue 20: the whole smoke matrix, negatives included, captured and replayed."""
    spec = registry.op(op)
    # neg-cache_contiguous: the backend hands torch_npu contiguous copies, so the call the capture sees (and
    # records) is a valid one; no record of that case can be a negative
    cases = [c for c in spec.cases("smoke") if c.violates != "cache_contiguous"]
    done, report = _capture_and_replay(tmp_path, standin, spec, cases)
    assert report["unusable"] == [] and len(done) > len(cases) // 3
    bad = [(c.id, _worst(b), _worst(a)) for c, _, b, a in done if _worst(a) != _worst(b)]
    assert not bad, bad[:5]
    assert {f["case_id"] for f in report["findings"]} == {rc.id for c, rc, _, _ in done if c.negative}


# ---- bad records: reported, not fatal -------------------------------------------------------------------------
def _records_of(tmp_path, op="paged_cache_load", n=3):
    """n records of `op` written straight from smoke cases (ND caches), and the cases."""
    spec = registry.op(op)
    cases = [c for c in spec.cases("smoke") if not c.negative and c.params.get("layout", "ND") == "ND"][:n]
    e = next(e for e in ENTRY_POINTS.values() if e.op == op)
    for i, case in enumerate(cases):
        inputs = spec.make_inputs(case, 0)
        args = {k: inputs[k] for k in e.arguments if k in inputs}
        tensors = {k: np.ascontiguousarray(v) for k, v in args.items() if isinstance(v, np.ndarray)}
        attrs = {k: v for k, v in args.items() if k not in tensors}
        record.write(tmp_path / f"r{i}", {"id": f"{op}-r{i}", "op": op, "api": e.api, "arguments": list(args),
                                          "attributes": attrs}, tensors)
    return spec, cases


def test_bad_records_are_reported_and_the_others_run(tmp_path, capsys):
    spec, cases = _records_of(tmp_path)
    t = tmp_path / "r0" / record.TENSORS
    t.write_bytes(t.read_bytes()[:-7])                                   # truncated tensor file
    m = tmp_path / "r1" / record.MANIFEST
    man = json.loads(m.read_text())
    man["tensors"]["key_cache"]["shape"][0] += 1                         # a manifest that lies about a shape
    m.write_text(json.dumps(man))
    planned, report = replay.plan(tmp_path, [spec], "smoke")
    reasons = {u["record"]: u["reason"] for u in report["unusable"]}
    assert set(reasons) == {str(tmp_path / "r0"), str(tmp_path / "r1")}
    assert str(t) in reasons[str(tmp_path / "r0")] and "truncated" in reasons[str(tmp_path / "r0")]
    assert str(m) in reasons[str(tmp_path / "r1")] and "'key_cache'" in reasons[str(tmp_path / "r1")] \
        and "the manifest says" in reasons[str(tmp_path / "r1")]
    assert [c.id for _, c in planned] == ["replay-paged_cache_load-r2"]
    from harness.cli import main

    out = tmp_path.parent / (tmp_path.name + "-run")
    rc = main(["run", "--replay", str(tmp_path), "--ops", "paged_cache_load", "--backends", "numpy,torch",
               "--no-timing", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "3 record(s), 1 case(s), 0 finding(s), 2 unusable" in err and str(t) in err
    summary = json.loads((out / "run.json").read_text())
    assert summary["cases"] == 1 and len(summary["replay"]["unusable"]) == 2


def test_a_call_breaking_a_documented_constraint_is_a_finding(tmp_path):
    spec, _ = _records_of(tmp_path, "nsa_compress_with_cache", n=1)
    m = tmp_path / "r0" / record.MANIFEST
    man = json.loads(m.read_text())
    man["attributes"]["compress_stride"] = 24                           # not a multiple of 16
    m.write_text(json.dumps(man))
    planned, report = replay.plan(tmp_path, [spec], "smoke")
    (f,) = [f for f in report["findings"] if f["constraint"] == "cbs_stride_multiple_of_16"]
    assert "compress_stride=24" in f["detail"] and f["source"].startswith(spec.seed)
    (_, case), = planned
    assert case.negative and case.violates == report["findings"][0]["constraint"]
    res = run_case(spec, case, [registry.backend("numpy"), registry.backend("torch")], "smoke", 0, NO_TIMING)
    assert {r["verdict"] for r in res.rows} == {"rejected"} and all(r["ok"] for r in res.rows)


# ---- `python -m harness capture DIR -- CMD`: a whole program --------------------------------------------------
SERVE = '''
import sys
sys.path.insert(0, {repo!r})
import torch_npu                       # the stand-in package below: wrapped by the capture as it is imported
from backends.torch_npu import TorchNpuBackend
from backends.torch_npu._adapters import adapters
from harness.runner import run_case
from harness.timing import TimingConfig
from tests.test_capture import _smoke
backend = TorchNpuBackend(api=torch_npu)
for op in sorted(adapters()):
    spec, cases = _smoke(op, 1)
    for _ in range(2):                 # the same call twice: recorded once
        with torch_npu.NS.case(cases[0].params):
            rows = run_case(spec, cases[0], [backend], "smoke", 0, TimingConfig(enabled=False)).rows
        assert all(r["ok"] for r in rows), rows
'''
STANDIN_PACKAGE = '''
import os
from pathlib import Path
from tests.capture_standin import module
from tests.npu_schemas import SchemaNamespace
_mod, NS = module(SchemaNamespace(Path(os.environ["OPDIFF_TEST_WHEEL"])))   # the real wheel's schemas
globals().update({k: v for k, v in vars(_mod).items() if not k.startswith("__")})
'''


@needs_wheel
def test_capture_command_records_a_program_and_its_records_replay(tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    repo = str(Path(__file__).resolve().parent.parent)
    pkg = tmp_path / "site" / "torch_npu"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(STANDIN_PACKAGE)
    (tmp_path / "serve.py").write_text(SERVE.format(repo=repo))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path / "site"), repo]), OPDIFF_TEST_WHEEL=str(ROOT))
    out = tmp_path / "caps"
    proc = subprocess.run([sys.executable, "-m", "harness", "capture", str(out), "--", sys.executable,
                           str(tmp_path / "serve.py")], env=env, cwd=repo, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    n = len(adapters())
    assert f"{n} record(s) in {out}" in proc.stdout, proc.stdout + proc.stderr[-2000:]
    (summary,) = [json.loads(p.read_text()) for p in out.glob("capture-*.json")]
    assert summary["recorded"] == n and summary["not_recorded"]["duplicate"] == n
    assert summary["missing_entry_points"] == {}
    planned, report = replay.plan(out, registry.ops(), "smoke")
    assert len(planned) == n and report["unusable"] == [] and report["findings"] == []
    site = record.read(Path(planned[0][1].params["replay_record"])).manifest["call_site"]
    # the frame that called torch_npu (here the backend's launch; in a model, the model's line)
    assert site["file"].endswith(os.path.join("backends", "torch_npu", "__init__.py")) and site["function"] == "launch"


def test_replay_shards_and_resumes_like_any_plan(tmp_path):
    from collections import Counter

    from harness.cli import main
    from harness.results import load_run

    recs = tmp_path / "recs"
    _records_of(recs, n=3)
    common = ["run", "--replay", str(recs), "--ops", "paged_cache_load", "--backends", "numpy", "--no-timing"]
    ids = []
    for i in (1, 2):
        assert main(common + ["--shard", f"{i}/2", "--out", str(tmp_path / f"s{i}")]) == 0
        ids += sorted({r["case_id"] for r in load_run(tmp_path / f"s{i}")[1]})
    assert sorted(ids) == [f"replay-paged_cache_load-r{i}" for i in range(3)]   # each record in exactly one shard
    out = tmp_path / "full"
    assert main(common + ["--out", str(out)]) == 0
    meta, before = load_run(out)[:2]
    assert meta["plan_args"]["replay"] == str(recs)
    assert main(["run", "--resume", str(out)]) == 0        # the plan is the records again, not the derived matrix
    after = load_run(out)[1]
    key = lambda r: (r["case_id"], r["backend"], r["output"])   # noqa: E731
    assert Counter(map(key, after)) == Counter(map(key, before)) and len(before) == 3 * 2


def test_a_second_session_in_the_same_directory_overwrites_nothing(tmp_path):
    torch = pytest.importorskip("torch")
    mod = _toy_module([])
    for _ in range(2):                            # same process, same directory, same first call
        with harness.capture(tmp_path, module=mod):
            args, kwargs = _compress_args(torch)
            mod.npu_nsa_compress_infer(*args, **kwargs)
    assert len(record.find(tmp_path)) == 2 and len(list(tmp_path.glob("capture-*.json"))) == 2
    planned, report = replay.plan(tmp_path, [registry.op("nsa_compress_with_cache")], "smoke")
    assert len(planned) == 2 and report["unusable"] == []


def test_replayed_case_params_carry_the_records_content_digest(tmp_path):
    spec, _ = _records_of(tmp_path, n=2)
    (a, b) = [c.params["replay_sha1"] for _, c in replay.plan(tmp_path, [spec], "smoke")[0]]
    assert a != b and len(a) == 40
    t = tmp_path / "r0" / record.TENSORS
    data = bytearray(t.read_bytes())
    data[-1] ^= 1                                  # same shapes, one bit of data changed
    t.write_bytes(bytes(data))
    (a2, b2) = [c.params["replay_sha1"] for _, c in replay.plan(tmp_path, [spec], "smoke")[0]]
    assert a2 != a and b2 == b
