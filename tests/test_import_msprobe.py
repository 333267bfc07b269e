"""import-msprobe: msprobe PyTorch dumps -> records -> replayed cases (harness/capture/msprobe.py).

tests/data/msprobe_dump was written by msprobe's own dump code (mindstudio-probe 26.2.0: its
TensorDataProcessor and DataWriter, run on CPU by tests/data/make_msprobe_dump.py) from three smoke cases.
The synthetic dumps below follow the same documented layout, to reach the entries a real dump can hold that
do not convert.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backends.torch import to_torch
from harness import registry
from harness.capture import msprobe, replay
from harness.cli import main
from harness.dtypes import name_of
from harness.runner import run_case
from harness.spec import Case
from harness.timing import TimingConfig

torch = pytest.importorskip("torch")
DUMP = Path(__file__).parent / "data" / "msprobe_dump"
DUMPED = json.loads((DUMP.parent / "msprobe_dump_cases.json").read_text(encoding="utf-8"))
NO_TIMING = TimingConfig(enabled=False)
FIRST_TENSOR = {"paged_cache_load": "key_cache", "incre_flash_attention": "query", "nsa_compress_with_cache": "input"}


def _original(spec, inputs):
    """The smoke case whose inputs the dump holds, rebuilt from the params make_msprobe_dump.py recorded
    (derivation may since have moved its ids and free values); its inputs must be the dump's, bitwise."""
    rec = DUMPED[spec.name]
    case = Case(spec.name, rec["id"], rec["params"], origin=rec["id"].split("-")[0], tier="smoke")
    want, key = spec.make_inputs(case, 0), FIRST_TENSOR[spec.name]
    assert np.asarray(want[key]).shape == inputs[key].shape and np.array_equal(
        np.asarray(want[key]).view(np.uint8), np.ascontiguousarray(inputs[key]).view(np.uint8)), \
        f"{spec.name}: the recorded case {rec['id']} does not have the dump's {key}"
    return case, want


def test_msprobe_written_dump_imports_and_replays_with_the_original_verdicts(tmp_path, capsys):
    rc = main(["import-msprobe", str(DUMP), str(tmp_path / "rec")])
    out = capsys.readouterr().out
    assert rc == 0 and "4 entries: 3 call(s) converted" in out and "1 entries of other APIs" in out
    report = json.loads((tmp_path / "rec" / "import-msprobe.json").read_text())
    assert report["other_apis"] == {"matmul": 1} and report["unusable"] == []
    specs = [registry.op(n) for n in FIRST_TENSOR]
    planned, rep = replay.plan(tmp_path / "rec", specs, "smoke")
    assert rep["unusable"] == [] and rep["findings"] == [] and len(planned) == 3
    backends = [registry.backend("numpy"), registry.backend("torch")]
    for spec, case in planned:
        inputs = spec.make_inputs(case, 0)
        orig, want = _original(spec, inputs)
        for k, v in want.items():                     # every tensor came through, bitwise (bf16 .pt included)
            if isinstance(v, np.ndarray):
                assert np.array_equal(np.asarray(inputs[k]).view(np.uint8), np.ascontiguousarray(v).view(np.uint8)), k
            elif k in inputs:
                assert inputs[k] == v or list(inputs[k]) == list(v), k
        got = run_case(spec, case, backends, "smoke", 0, NO_TIMING).rows
        before = run_case(spec, orig, backends, "smoke", 0, NO_TIMING).rows
        assert [(r["backend"], r["output"], r["verdict"]) for r in got] == \
               [(r["backend"], r["output"], r["verdict"]) for r in before]
        assert all(r["ok"] for r in got)
    rec = json.loads(next((tmp_path / "rec").glob("paged_cache_load-*/manifest.json")).read_text())
    assert rec["source"] == "msprobe" and rec["msprobe"]["key"] == "NPU.npu_paged_cache_load.0.forward"
    assert rec["stack"] == ["File serve.py, line 14, in decode, \n torch_npu.npu_paged_cache_load(...)"]
    assert rec["tensors"]["key_cache"]["dtype"] == "bfloat16"


def _t(dtype, shape, name=None):
    d = {"type": "torch.Tensor", "dtype": f"torch.{dtype}", "shape": list(shape), "Max": 0, "Min": 0,
         "requires_grad": False}
    if name:
        d["data_name"] = name
    return d


def test_synthetic_dump_entries_that_do_not_convert_are_reported(tmp_path):
    """A dump in msprobe's documented layout: one good call (a .npy file among the .pt), and one of each kind of
    entry that cannot become a record, each reported with the file and the reason."""
    rank = tmp_path / "dump" / "step0" / "rank1"
    data = rank / "dump_tensor_data"
    data.mkdir(parents=True)
    spec = registry.op("paged_cache_load")
    case = next(c for c in spec.cases("smoke") if not c.negative and c.params["layout"] == "ND")
    inp = spec.make_inputs(case, 0)
    key = "NPU.npu_paged_cache_load.3.forward"
    args = []
    for i, k in enumerate(("key_cache", "value_cache", "block_table", "context_lens")):
        name = f"{key}.input.{i}." + ("npy" if k == "context_lens" else "pt")
        if k == "context_lens":
            np.save(data / name, inp[k], allow_pickle=False)
        else:
            torch.save(to_torch(inp[k], "cpu"), data / name)
        args.append(_t(name_of(inp[k]), np.shape(inp[k]), name))
    kwargs = {"seq_starts": None, "cumsum": {"type": "bool", "value": bool(case.params["cumsum"])}}
    if inp["seq_starts"] is not None:
        torch.save(torch.from_numpy(inp["seq_starts"]), data / f"{key}.kwargs.seq_starts.pt")
        kwargs["seq_starts"] = _t("int32", inp["seq_starts"].shape, f"{key}.kwargs.seq_starts.pt")
    good = {"input_args": args, "input_kwargs": kwargs, "output": []}
    stats_only = {"input_args": [dict(a, data_name=None) for a in args], "input_kwargs": kwargs}
    lying = json.loads(json.dumps(good))
    lying["input_args"][2]["shape"] = [99, 1]
    dump = {"task": "tensor", "level": "L1", "framework": "pytorch", "dump_data_dir": "/gone", "data": {
        key: good,
        "NPU.npu_paged_cache_load.4.forward": stats_only,
        "NPU.npu_paged_cache_load.5.forward": lying,
        "NPU.npu_paged_cache_load.5.backward": {"input": [], "output": []},
        "NPU.npu_incre_flash_attention.0.forward": {"output": []},
        "Tensor.add.0.forward": {"input_args": [], "input_kwargs": {}},
    }}
    (rank / "dump.json").write_text(json.dumps(dump))
    other = tmp_path / "dump" / "step0" / "rank2"
    other.mkdir()
    (other / "dump.json").write_text(json.dumps({"framework": "mindspore", "data": {}}))
    report = msprobe.convert(tmp_path / "dump", tmp_path / "rec")
    assert report["dump_files"] == 2 and report["converted"] == 1 and report["backward_skipped"] == 1
    assert report["other_apis"] == {"add": 1}
    why = {u["key"] or Path(u["file"]).parent.name: u["reason"] for u in report["unusable"]}
    assert set(why) == {"NPU.npu_paged_cache_load.4.forward", "NPU.npu_paged_cache_load.5.forward",
                        "NPU.npu_incre_flash_attention.0.forward", "rank2"}
    assert "statistics only" in why["NPU.npu_paged_cache_load.4.forward"]
    assert f"{key}.input.2.pt" in why["NPU.npu_paged_cache_load.5.forward"] and \
        "dump.json says int32[99, 1]" in why["NPU.npu_paged_cache_load.5.forward"]
    assert "no input_args" in why["NPU.npu_incre_flash_attention.0.forward"]
    assert "mindspore" in why["rank2"]
    planned, rep = replay.plan(tmp_path / "rec", [spec], "smoke")
    (_, rcase), = planned
    rows = run_case(spec, rcase, [registry.backend("numpy"), registry.backend("torch")], "smoke", 0, NO_TIMING).rows
    assert {r["verdict"] for r in rows} == {"pass"}


def test_pickled_objects_are_refused(tmp_path):
    """A .pt holding something other than tensors is not unpickled (weights_only=True), and the call is reported."""
    rank = tmp_path / "d"
    shutil.copytree(DUMP / "step0" / "rank0", rank)
    pt = rank / "dump_tensor_data" / "NPU.npu_paged_cache_load.0.forward.input.2.pt"
    torch.save({"payload": Path("/etc")}, pt)   # a pickled PosixPath: not loadable under weights_only
    report = msprobe.convert(rank, tmp_path / "rec")
    (u,) = report["unusable"]
    assert u["key"] == "NPU.npu_paged_cache_load.0.forward" and str(pt) in u["reason"] and "cannot be read" in u["reason"]
    assert report["converted"] == 2
