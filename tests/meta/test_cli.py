"""The CLI: exit codes, messages, and the files a run writes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from harness import registry
from harness.cli import main
from harness.results import RESULT_COLUMNS

ROOT = Path(__file__).resolve().parents[2]
ONE_CASE = ["--ops", "paged_cache_load", "--case", "base-*", "--no-timing"]


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "harness", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def test_run_exit_0_and_files(tmp_path):
    out = tmp_path / "run"
    p = _cli("run", "--ops", "paged_cache_load", "--backends", "numpy,torch", "--tier", "smoke", "--out", str(out),
             "--case", "base-*", "--case", "neg-nz_no_cumsum-*")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "paged_cache_load" in p.stdout and "pass" in p.stdout
    meta = json.loads((out / "run.json").read_text())
    assert meta["status"] == "finished" and meta["tier"] == "smoke"
    for key in ("python", "numpy", "torch", "torch_npu", "cann", "opdiff_commit", "host", "devices"):
        assert key in meta["env"]
    table = pq.read_table(out / "results.parquet")
    assert set(RESULT_COLUMNS) <= set(table.column_names)
    rows = table.to_pylist()
    assert {r["backend"] for r in rows} == {"numpy", "torch"}
    assert {r["verdict"] for r in rows if r["negative"]} == {"rejected"}
    assert {r["verdict"] for r in rows if not r["negative"]} == {"pass"}
    assert all(r["latency_median_us"] > 0 and r["n_samples"] >= 3 for r in rows if not r["negative"])
    assert (out / "samples.parquet").exists()


@pytest.mark.parametrize("args, needle", [
    (["--ops", "nope"], "unknown op 'nope'; known ops: "),
    (["--backends", "numpy,nope"], "unknown backend 'nope'; known backends: "),
    (["--tier", "huge"], "invalid choice: 'huge'"),
    (["--case", "no-such-case"], "no case matches"),
])
def test_usage_errors_exit_2_naming_valid_choices(tmp_path, args, needle):
    p = _cli("run", "--out", str(tmp_path / "x"), *args)
    assert p.returncode == 2
    assert needle in p.stderr
    if "known" in needle:
        assert "paged_cache_load" in p.stderr or "numpy" in p.stderr


class GarbageBackend:
    """Returns outputs with one flipped element: must make `run` exit 1."""

    name = "garbage"
    may_crash = False

    def available(self):
        from backends.base import Availability

        return Availability(True)

    def supports(self, spec, case):
        return None

    def run(self, spec, case, inputs):
        out = registry.backend("numpy").run(spec, case, inputs)
        key = out["key"].copy()
        key.reshape(-1).view(np.uint8)[0] ^= 1
        return dict(out, key=key)

    def prepare(self, spec, case, inputs):
        return (spec, case, inputs)

    def launch(self, prepared):
        self.run(*prepared)

    def synchronize(self):
        pass

    def timer(self):
        from harness.timing import HostTimer

        return HostTimer()

    def device_name(self):
        return "cpu"


def test_run_exit_1_when_a_backend_is_wrong(tmp_path, capsys):
    registry.register_backend("garbage", GarbageBackend)
    try:
        rc = main(["run", *ONE_CASE, "--backends", "garbage", "--out", str(tmp_path / "g")])
    finally:
        registry.unregister_backend("garbage")
    out = capsys.readouterr().out
    assert rc == 1
    assert "differ bitwise" in out and "repro: python -m harness run --ops paged_cache_load --backends garbage" in out


def test_list_shows_constraints_with_citations_and_counts():
    p = _cli("list", "--op", "paged_cache_load")
    assert p.returncode == 0
    assert "nz_no_cumsum" in p.stdout and "003_5c277c3930bec26e.txt" in p.stdout
    assert "smoke:" in p.stdout and "nightly:" in p.stdout and "full:" in p.stdout
    assert _cli("list", "--op", "nope").returncode == 2


def test_report_escapes_html(tmp_path):
    out = tmp_path / "r"
    assert main(["run", *ONE_CASE, "--backends", "numpy", "--out", str(out)]) == 0
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    rows[0]["reason"] = "<script>alert(1)</script>"
    (out / "results.parquet").unlink()
    (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "paged_cache_load" in html and "python -m harness run" in html


def test_report_on_a_missing_dir_is_a_usage_error(tmp_path):
    assert main(["report", str(tmp_path / "missing")]) == 2


def test_fail_on_warn_turns_a_warning_into_exit_1(tmp_path):
    """A within-policy warning (an int8 output with > 5% off-by-ones) passes by default and fails
    under --fail-on warn (issue 13)."""
    case = ["--ops", "dequant_rope_quant_kvcache", "--backends", "torch", "--no-timing",
            "--case", "edge-bias_dtype_supported-1-int32-bfloat16_x3d_b1s2_q4kv1d32_page_c2x8_off-v_only_bias-*"]
    p = _cli("run", *case, "--out", str(tmp_path / "a"))
    assert p.returncode == 0, p.stdout + p.stderr
    rows = [json.loads(line) for line in (tmp_path / "a" / "results.jsonl").read_text().splitlines()]
    assert "warn" in {r["verdict"] for r in rows}
    p = _cli("run", *case, "--fail-on", "warn", "--out", str(tmp_path / "b"))
    assert p.returncode == 1, p.stdout + p.stderr
    assert "warn: off-by-one fraction" in p.stdout
