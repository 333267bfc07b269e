"""Writes tests/data/msprobe_dump/ with msprobe's own dump code (mindstudio-probe 26.2.0), not ours.

The calls are smoke cases of three operators, called as a user calls the torch_npu functions
(positional tensors, keyword attributes); msprobe's TensorDataProcessor analyses each call's inputs and
outputs and saves the tensors (torch.save .pt), its DataWriter writes dump.json and stack.json, exactly
as in a `task: tensor` L1 dump. Regenerate (needs msprobe and its imports, not opdiff dependencies):

    pip download --no-deps mindstudio-probe -d /tmp/wheels && unzip -q /tmp/wheels/mindstudio_probe-*.whl -d /tmp/ms
    pip install --target /tmp/msdeps tqdm pandas pyyaml psutil pytz openpyxl einops tensorboard
    PYTHONPATH=/tmp/ms:/tmp/msdeps:. python tests/data/make_msprobe_dump.py tests/data/msprobe_dump
"""
from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

import torch  # noqa: E402
from msprobe.core.dump.data_dump.data_processor.base import ModuleForwardInputsOutputs  # noqa: E402
from msprobe.core.dump.data_dump.data_processor.pytorch_processor import TensorDataProcessor  # noqa: E402
from msprobe.core.dump.data_dump.json_writer import DataWriter  # noqa: E402

from backends.torch import to_torch  # noqa: E402
from harness import registry  # noqa: E402

# (op, which smoke case, torch_npu name as msprobe names it, positional arguments)
CALLS = [
    ("paged_cache_load", lambda p: p["layout"] == "ND" and p["k_dtype"] == "bfloat16", "npu_paged_cache_load", 4),
    ("incre_flash_attention", lambda p: p["dtype"] == "bfloat16" and p["quant2"] == "none" and p["batch"] > 1,
     "npu_incre_flash_attention", 3),
    ("nsa_compress_with_cache", lambda p: p["trigger"] != "none", "npu_nsa_compress_infer", 6),
]
SKIP = {"paged_cache_load": ("kv_cache_cfg",)}


def main(out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    rank = out / "step0" / "rank0"
    (rank / "dump_tensor_data").mkdir(parents=True)
    config = SimpleNamespace(data_mode=["all"], summary_mode="statistics", async_dump=False, precision="low",
                             slice_info=None, framework="pytorch", task="tensor", tensor_list=[], level="L1",
                             extra_info=True)
    writer = DataWriter()
    writer.dump_file_path, writer.stack_file_path = str(rank / "dump.json"), str(rank / "stack.json")
    writer.construct_file_path, writer.debug_file_path = str(rank / "construct.json"), str(rank / "debug.json")
    writer.dump_tensor_data_dir, writer.dump_error_info_path = str(rank / "dump_tensor_data"), str(rank / "err.log")
    writer.config = config
    writer.initialize_json_file(task="tensor", level="L1", framework="pytorch")
    proc = TensorDataProcessor(config, writer)
    dumped = {}
    for op, pick, api, npos in CALLS:
        spec = registry.op(op)
        case = next(c for c in spec.cases("smoke") if not c.negative and pick(c.params))
        inputs = {k: v for k, v in spec.make_inputs(case, 0).items() if k not in SKIP.get(op, ())}
        names = list(inputs)
        args = tuple(to_torch(inputs[k], "cpu") for k in names[:npos])
        kwargs = {k: to_torch(inputs[k], "cpu") for k in names[npos:]}
        name = f"NPU.{api}.0.forward"
        proc.update_api_or_module_name(name)
        data = proc.analyze_forward(name, None, ModuleForwardInputsOutputs(args, kwargs, args[0]))
        writer.update_data(data)
        writer.update_stack(name, (f"File serve.py, line {10 + npos}, in decode, \n torch_npu.{api}(...)",))
        sys.stdout.write(f"{name}: {case.id}\n")
        dumped[op] = {"id": case.id, "params": case.params}
    # an API of no interest here, as a real dump holds thousands
    name = "Torch.matmul.0.forward"
    proc.update_api_or_module_name(name)
    a = torch.ones(2, 2)
    writer.update_data(proc.analyze_forward(name, None, ModuleForwardInputsOutputs((a, a), {}, a @ a)))
    writer.write_json()
    for f in (rank / "construct.json", rank / "debug.json"):
        f.unlink(missing_ok=True)
    # the dumped cases' params: the test rebuilds them from here, as derivation moves on (other ids, params)
    cases = out.parent / f"{out.name}_cases.json"
    cases.write_text(json.dumps(dict(sorted(dumped.items())), indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
