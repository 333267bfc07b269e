"""`golden prune`: keeps what the cases of the given tiers and seeds read, removes the rest, and
removes nothing where a key cannot be formed."""
from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from harness import golden_prune, golden_store
from harness.cli import main
from harness.golden_store import GoldenStore, Key

BUILD = ["golden", "build", "--tier", "smoke", "--ops", "nsa_compress_with_cache", "--case", "edge-*", "--jobs", "1"]
RUN = ["run", "--ops", "nsa_compress_with_cache", "--case", "edge-*", "--no-timing"]
PRUNE = ["golden", "prune", "--tier", "smoke", "--ops", "nsa_compress_with_cache", "--json"]


@pytest.fixture
def store(tmp_path, monkeypatch):
    """A store that a build and a run filled, plus what prune must tell apart: an entry of another key,
    a killed builder's temporary, one being written, an old layout, a file of the user's."""
    monkeypatch.setenv(golden_store.ENV, "")  # restored (unset) afterwards: run sets it
    root = tmp_path / "store"
    assert main([*BUILD, "--store", str(root)]) == 0
    assert main([*RUN, "--golden-store", str(root), "--out", str(tmp_path / "fill")]) == 0   # negatives' inputs too
    s = GoldenStore(root)
    old_key = Key((("kind", "golden"), ("op", "nsa_compress_with_cache"), ("params", "{}"), ("seed", 0),
                   ("code", "an older golden module")))
    s.put(old_key, {"cache": np.arange(6.0)})
    bucket = s.path(old_key).parent
    killed = bucket / ".tmp-killed.part"
    killed.write_bytes(b"x" * 100)
    hour_ago = time.time() - 2 * golden_prune.STALE_TEMP_S
    os.utime(killed, (hour_ago, hour_ago))
    (bucket / ".tmp-writing.part").write_bytes(b"y" * 10)
    (root / "v3" / "ab").mkdir(parents=True)
    (root / "v3" / "ab" / "old.entry").write_bytes(b"z" * 50)
    (root / "NOTES.txt").write_text("the user's own file")
    return {"root": root, "old": s.path(old_key), "killed": killed, "tmp": tmp_path}


def _prune(capsys, root, *extra) -> tuple[int, dict]:
    rc = main([*PRUNE, "--store", str(root), *extra])
    return rc, json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def _files(root) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def test_dry_run_lists_and_removes_nothing(store, capsys):
    before = _files(store["root"])
    rc, d = _prune(capsys, store["root"])
    assert rc == 0 and d["dry_run"] and d["removed_files"] == 0
    assert _files(store["root"]) == before
    n_entries = len(golden_store.entries(store["root"]))
    assert (d["kept"], d["unreferenced"], d["temporaries"], d["writing"]) == (n_entries - 1, 1, 1, 1)
    assert d["old_layouts"] == ["v3"] and d["old_layout_bytes"] == 50
    assert d["other"] == [str(store["root"] / "NOTES.txt")]


def test_delete_keeps_what_a_run_reads(store, capsys):
    rc, d = _prune(capsys, store["root"], "--delete")
    assert rc == 0 and not d["dry_run"] and d["removed_files"] == 3
    left = _files(store["root"])
    assert not store["old"].exists() and not store["killed"].exists() and not (store["root"] / "v3").exists()
    assert "NOTES.txt" in left and any(name.endswith(".tmp-writing.part") for name in left)
    # the same selection runs from the store alone: every input, golden and baseline is a hit
    out = store["tmp"] / "after"
    assert main([*RUN, "--golden-store", str(store["root"]), "--out", str(out)]) == 0
    counts = json.loads((out / "run.json").read_text())["golden_store"]
    assert counts["miss"] == 0 and counts["write"] == 0 and counts["hit"] == len(golden_store.entries(store["root"]))
    rc, again = _prune(capsys, store["root"])
    assert (again["unreferenced"], again["temporaries"], again["old_layouts"]) == (0, 0, [])


def test_removed_bytes_are_counted(store, capsys):
    size = store["old"].stat().st_size
    rc, d = _prune(capsys, store["root"], "--delete")
    assert (d["removed_files"], d["removed_bytes"]) == (3, size + 100 + 50)


def test_baselines_are_keyed_as_a_run_keys_them(store, capsys):
    """A baseline's key names torch's thread count: prune keys it after the torch backend set its
    threads, as a run does, whatever the process had before."""
    import torch

    torch.set_num_threads(2)
    rc, d = _prune(capsys, store["root"])
    assert rc == 0 and d["unreferenced"] == 1


def test_nothing_is_removed_where_a_key_cannot_be_formed(store, capsys, monkeypatch):
    monkeypatch.setenv("OPDIFF_TORCH_THREADS", "x")   # the torch backend is unavailable: no baseline keys
    before = _files(store["root"])
    rc, d = _prune(capsys, store["root"], "--delete")
    assert rc == 1 and d["removed_files"] == 0 and _files(store["root"]) == before
    assert "OPDIFF_TORCH_THREADS" in d["unkeyed"][0]["error"]


def test_other_seeds_and_tiers_are_unreferenced(store, capsys):
    _, one = _prune(capsys, store["root"], "--seed", "1")
    assert one["kept"] == 0                      # every entry of the store is seed 0
    _, both = _prune(capsys, store["root"], "--seed", "0,1")
    assert both["kept"] == len(golden_store.entries(store["root"])) - 1


@pytest.mark.parametrize("args, message", [(["--tier", "weekly"], "--tier weekly: unknown"),
                                           (["--seed", "a"], "--seed 'a'"),
                                           (["--store", "/nonexistent/store"], "no such directory")])
def test_bad_arguments_are_usage_errors(store, capsys, args, message):
    cmd = ["golden", "prune", "--store", str(store["root"]), *args]
    assert main(cmd) == 2
    assert message in capsys.readouterr().err


def test_a_layout_named_directory_that_is_not_ours_is_left_alone(store, capsys):
    mine = store["root"] / "v2"
    (mine / "results").mkdir(parents=True)
    (mine / "results" / "table.csv").write_text("a user's own file, in a directory that looks like a layout")
    rc, d = _prune(capsys, store["root"], "--delete")
    assert rc == 0 and d["old_layouts"] == ["v3"] and str(mine) in d["other"]
    assert (mine / "results" / "table.csv").exists() and not (store["root"] / "v3").exists()
