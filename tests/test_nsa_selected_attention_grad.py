"""nsa_selected_attention_grad: the hand-written backward against the chain rule, the top-k
conventions, exact zeros on unselected rows, and rejection of every documented constraint."""
from __future__ import annotations

import math
import os

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from backends.numpy.nsa_selected_attention_grad import _segment_add, golden  # noqa: E402
from backends.torch import to_numpy, to_torch  # noqa: E402
from backends.torch.nsa_selected_attention_grad import reference  # noqa: E402
from cases._nsa_topk import make_topk  # noqa: E402
from cases.nsa_selected_attention_grad import SPEC  # noqa: E402
from harness import registry  # noqa: E402
from harness.errors import ConstraintViolation  # noqa: E402
from harness.spec import Case  # noqa: E402

OP = SPEC.name


def _case(**params) -> tuple[Case, dict]:
    case = SPEC.case(**params)
    return case, SPEC.make_inputs(case, seed=3)


def _naive_autograd(inputs, sparse_mode):
    """Straightforward attention in float64: per query and head, gather the selected rows in
    top-k order, softmax, weighted sum; gradients by torch autograd of sum(O * dY)."""
    q = torch.tensor(inputs["query"].astype(np.float64), requires_grad=True)
    k = torch.tensor(inputs["key"].astype(np.float64), requires_grad=True)
    v = torch.tensor(inputs["value"].astype(np.float64), requires_grad=True)
    dy = torch.tensor(inputs["grad"].astype(np.float64))
    topk = inputs["topk_indices"].astype(np.int64)
    bs, scale = inputs["select_block_size"], inputs["scale_value"]
    cu_q, cu_kv = [0] + list(inputs["actual_seq_qlen"]), [0] + list(inputs["actual_seq_kvlen"])
    t1, n1, _ = q.shape
    g = n1 // k.shape[1]
    outs, maxes, sums = [], [], []
    for t in range(t1):
        b = next(i for i in range(len(cu_q) - 1) if cu_q[i] <= t < cu_q[i + 1])
        s1, kv0 = t - cu_q[b], cu_kv[b]
        for h in range(n1):
            n2 = h // g
            pos = [int(blk) * bs + j for blk in topk[t, n2] for j in range(bs)]
            rows = torch.tensor([kv0 + p for p in pos])
            s = scale * (k[rows, n2] @ q[t, h])
            if sparse_mode == 2:
                s = s.masked_fill(torch.tensor([p > s1 for p in pos]), float("-inf"))
            m = s.max()
            e = torch.exp(s - m)
            outs.append((e / e.sum()) @ v[rows, n2])
            maxes.append(m.detach())
            sums.append(e.sum().detach())
    o = torch.stack(outs).reshape(t1, n1, -1)
    (o * dy).sum().backward()
    stats = lambda xs: torch.stack(xs).reshape(t1, n1, 1).expand(t1, n1, 8).numpy()  # noqa: E731
    return o.detach().numpy(), stats(maxes), stats(sums), q.grad.numpy(), k.grad.numpy(), v.grad.numpy()


AUTOGRAD_CASES = {
    "sparse2_nsa_late_gqa": dict(sparse_mode=2, topk_mode="nsa", q_lens=[40, 19], kv_lens=[48, 32], n1=4, n2=2,
                                 select_block_size=16, select_block_count=2, d_qk=192, d_v=128, dtype="bfloat16"),
    "sparse0_random": dict(sparse_mode=0, topk_mode="random", q_lens=[5, 3], kv_lens=[80, 48], n1=2, n2=1,
                           select_block_size=16, select_block_count=3, d_qk=128, d_v=128, dtype="float16"),
    "sparse0_duplicates": dict(sparse_mode=0, topk_mode="dup", q_lens=[6], kv_lens=[64], n1=3, n2=3,
                               select_block_size=16, select_block_count=4, d_qk=128, d_v=128, dtype="float16"),
    # batch 0 (1024 keys, 16 selected) takes the gathered path in forward64 and the golden, batch 1 the dense one
    "sparse0_mixed_paths": dict(sparse_mode=0, topk_mode="random", q_lens=[3, 2], kv_lens=[1024, 32], n1=1, n2=1,
                                select_block_size=16, select_block_count=1, d_qk=128, d_v=128, dtype="float16"),
    "sparse2_one_block": dict(sparse_mode=2, q_lens=[33], kv_lens=[48], n1=2, n2=1, select_block_size=16,
                              select_block_count=1, d_qk=128, d_v=128, dtype="float16", scale_value=0.3),
}


def test_mixed_paths_case_takes_both_paths():
    from cases._nsa_select import dense_is_cheaper

    assert not dense_is_cheaper(1024, 16, 1) and dense_is_cheaper(32, 16, 1)


@pytest.mark.parametrize("path", [None, "dense", "gathered"])
@pytest.mark.parametrize("name", sorted(AUTOGRAD_CASES))
def test_golden_equals_float64_autograd(name, path):
    case, inputs = _case(**AUTOGRAD_CASES[name])
    o, mx, sm, dq, dk, dv = _naive_autograd(inputs, case.params["sparse_mode"])
    # the builder's forward products are the float64 forward cast to the documented dtypes
    np.testing.assert_array_equal(inputs["attention_out"].astype(np.float64),
                                  o.astype(inputs["attention_out"].dtype).astype(np.float64))
    np.testing.assert_allclose(inputs["softmax_max"], mx, rtol=2**-23, atol=1e-30)
    np.testing.assert_allclose(inputs["softmax_sum"], sm, rtol=2**-23)
    # with unrounded forward products, the golden backward is the exact gradient
    exact = dict(inputs, attention_out=o, softmax_max=mx, softmax_sum=sm)
    out = golden(case.params, exact, path)
    for name_, want in (("dq", dq), ("dk", dk), ("dv", dv)):
        np.testing.assert_allclose(out[name_], want, rtol=1e-9, atol=1e-9 * np.abs(want).max(), err_msg=name_)


def test_duplicate_selection_accumulates_twice():
    """Selecting the same block twice in one query counts its keys twice in the softmax and adds
    both gradient contributions: equal to the same selection with the block listed once and its
    score shifted by log 2."""
    case, inputs = _case(sparse_mode=0, topk_mode="random", q_lens=[1], kv_lens=[64], n1=1, n2=1,
                         select_block_size=16, select_block_count=2, dtype="float16")
    topk = inputs["topk_indices"].copy()
    topk[0, 0, 1] = topk[0, 0, 0]
    dup = dict(inputs, topk_indices=topk)
    o, mx, sm, dq, dk, dv = _naive_autograd(dup, 0)
    exact = dict(dup, attention_out=o, softmax_max=mx, softmax_sum=sm)
    out = golden(case.params, exact)
    np.testing.assert_allclose(golden(case.params, exact, "gathered")["dv"], dv, rtol=1e-9, atol=1e-12)
    rows = slice(int(topk[0, 0, 0]) * 16, int(topk[0, 0, 0]) * 16 + 16)
    assert np.abs(out["dv"][rows]).max() > 0
    np.testing.assert_allclose(out["dv"], dv, rtol=1e-9, atol=1e-12)
    # two contributions of equal weight: dV rows are 2 * P_row * dY with P_row = e / (2 * sum e)
    s = inputs["scale_value"] * (inputs["key"][rows, 0].astype(np.float64) @ inputs["query"][0, 0].astype(np.float64))
    p = np.exp(s - s.max()) / (2 * np.exp(s - s.max()).sum())
    np.testing.assert_allclose(out["dv"][rows, 0], 2 * p[:, None] * inputs["grad"][0, 0].astype(np.float64)[None, :],
                               rtol=1e-9)


def test_dense_and_gathered_paths_agree_batch_by_batch():
    """A case whose batches take different paths (kv 64 against 32 selected keys: dense; kv 4096: 128
    times the selection, gathered) equals each path forced on every batch, zeros included."""
    from cases._nsa_select import dense_is_cheaper

    assert dense_is_cheaper(64, 32, 2) and not dense_is_cheaper(4096, 32, 2)
    zeros = lambda x: np.where(x == 0, np.signbit(x) + 1, 0)      # 1: +0.0, 2: -0.0  # noqa: E731
    for sparse_mode, topk_mode in ((0, "dup"), (2, "nsa")):
        case, inputs = _case(sparse_mode=sparse_mode, topk_mode=topk_mode, q_lens=[7, 5], kv_lens=[64, 4096],
                             n1=4, n2=2, select_block_size=16, select_block_count=2, dtype="float16")
        mixed = golden(case.params, inputs)
        for path in ("dense", "gathered"):
            forced = golden(case.params, inputs, path)
            for name in ("dq", "dk", "dv"):
                np.testing.assert_array_equal(zeros(mixed[name]), zeros(forced[name]), err_msg=f"{path} {name}")
                np.testing.assert_allclose(mixed[name], forced[name], rtol=1e-12,
                                           atol=1e-12 * np.abs(forced[name]).max(), err_msg=f"{path} {name}")
    with pytest.raises(ValueError, match="path must be"):
        golden(case.params, inputs, "sparse")


UNSELECTED_CASES = {
    "gqa_two_batches": dict(q_lens=[3, 2], kv_lens=[160, 96], n1=4, n2=2, select_block_size=16, select_block_count=2,
                            dtype="bfloat16"),
    # one query, one head: an unselected key's gradient is the single product +0 x q, -0 where q < 0
    "one_query_one_head": dict(q_lens=[1], kv_lens=[1024], n1=1, n2=1, select_block_size=64, select_block_count=2,
                               dtype="float16", d_qk=192, d_v=192),
}


@pytest.mark.parametrize("name", sorted(UNSELECTED_CASES))
def test_unselected_rows_get_exact_zero_in_both_references(name):
    case, inputs = _case(sparse_mode=0, topk_mode="random", **UNSELECTED_CASES[name])
    regions = SPEC.output_regions(case.params, inputs, "dk")
    assert [r.label for r in regions] == ["dk[selected]", "dk[unselected]"]
    unsel = regions[1].mask
    assert unsel.any() and (~unsel).any()
    g = golden(case.params, inputs)
    r = reference(case.params, {k: to_torch(v, "cpu") for k, v in inputs.items()}, "cpu")
    for name in ("dk", "dv"):
        assert np.all(g[name][unsel].view(np.uint64) == 0)               # +0.0, as the kernel leaves them
        for path in ("dense", "gathered"):
            assert np.all(golden(case.params, inputs, path)[name][unsel].view(np.uint64) == 0), path
        assert np.all(to_numpy(r[name]).view(np.uint16)[unsel] == 0)     # +0.0 bit patterns
        assert np.abs(g[name][~unsel]).max() > 0


def test_nsa_topk_convention():
    rng = np.random.default_rng(0)
    bs, count, n2 = 16, 3, 2
    q_lens, kv_lens = [70, 20], [80, 48]
    topk = make_topk(rng, "nsa", q_lens, kv_lens, n2, count, bs)
    assert topk.shape == (90, n2, count) and topk.dtype == np.int32
    s1 = np.r_[np.arange(70), np.arange(20)]
    early = s1 < count * bs
    assert np.all(topk[early] == np.arange(count))
    late = topk[~early]
    diag = (s1[~early] // bs)[:, None]
    assert np.all(np.diff(late, axis=2) > 0)                 # sorted and distinct
    assert np.all(late <= diag[:, :, None]) and np.all(late[:, :, -1] == diag)
    rnd = make_topk(rng, "random", q_lens, kv_lens, n2, count, bs)
    nblk = np.r_[np.full(70, 5), np.full(20, 3)][:, None, None]
    assert np.all((rnd >= 0) & (rnd < nblk))
    assert all(len(set(row)) == count for row in rnd.reshape(-1, count).tolist())
    dup = make_topk(rng, "dup", q_lens, kv_lens, n2, count, bs)
    assert np.all(dup[:, :, 1] == dup[:, :, 0]) and np.all((dup >= 0) & (dup < nblk))


def test_segment_add_matches_add_at():
    rng = np.random.default_rng(1)
    keys = rng.integers(0, 7, 200)
    vals = rng.normal(size=(200, 5))
    want = np.zeros((9, 5))
    np.add.at(want, keys, vals)
    got = np.zeros((9, 5))
    _segment_add(got, keys, vals)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("case", [c for c in SPEC.cases("nightly") if c.negative], ids=lambda c: c.id)
def test_negative_rejected_by_both_references(case):
    inputs = SPEC.make_inputs(case, seed=0)
    for name in ("numpy", "torch"):
        backend = registry.backend(name)
        with pytest.raises(ConstraintViolation) as exc:
            backend.run(SPEC, case, inputs)
        assert exc.value.constraint == case.violates, f"{name}: {exc.value}"


def _mutations():
    """Data-level breaks of a valid case's inputs: the references check the tensors themselves."""
    def topk_high(i):
        t = i["topk_indices"].copy()
        t[-1, 0, 0] = 99
        return dict(i, topk_indices=t)

    return {
        "atten_mask_unsupported": lambda i: dict(i, atten_mask=np.zeros((4, 64), np.uint8)),
        "stats_shape": lambda i: dict(i, softmax_max=np.ascontiguousarray(i["softmax_max"][..., :1])),
        "topk_shape": lambda i: dict(i, topk_indices=i["topk_indices"][:, :, :1]),
        "topk_in_range": topk_high,
        "head_num_matches_query": lambda i: dict(i, head_num=i["head_num"] + 1),
        "batch_equal": lambda i: dict(i, actual_seq_kvlen=i["actual_seq_kvlen"] + [i["actual_seq_kvlen"][-1] + 64]),
        "t1_range": lambda i: dict(i, actual_seq_qlen=[i["actual_seq_qlen"][0] + 1]),
        "dtype_supported": lambda i: dict(i, softmax_sum=i["softmax_sum"].astype(np.float64)),
        "kv_heads_equal": lambda i: dict(i, value=np.concatenate([i["value"]] * 2, axis=1)),
        "q_heads_equal": lambda i: dict(i, grad=i["grad"][:, :1]),
        "value_dims_equal": lambda i: dict(i, grad=np.ascontiguousarray(i["grad"][:, :, :64])),
    }


@pytest.mark.parametrize("name", sorted(_mutations()))
def test_data_level_checks(name):
    case, inputs = _case(sparse_mode=0, q_lens=[4], kv_lens=[64], n1=2, n2=1, select_block_size=16,
                         select_block_count=2, d_qk=128, d_v=128, dtype="float16")
    SPEC.validate(case.params, inputs)
    with pytest.raises(ConstraintViolation) as exc:
        SPEC.validate(case.params, _mutations()[name](inputs))
    assert exc.value.constraint == name


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_max_abs_on_bit_patterns_equals_the_float_max(dtype):
    """cancellation_noise's max|x| on 16-bit bit patterns: every finite pattern, inf, NaN."""
    from cases.nsa_selected_attention_grad import _max_abs
    from harness.dtypes import np_dtype

    every = np.arange(1 << 16, dtype=np.uint16).view(np_dtype(dtype))
    wide = every.astype(np.float32)
    finite = every[np.isfinite(wide)]
    rng = np.random.default_rng(0)
    for _ in range(100):
        x = rng.choice(finite, 40)
        assert _max_abs(x) == float(np.abs(x.astype(np.float32)).max())
    assert _max_abs(finite) == float(np.abs(wide[np.isfinite(wide)]).max())
    assert _max_abs(np.array([1.0, -np.inf], np.float32).astype(np_dtype(dtype))) == np.inf
    assert math.isnan(_max_abs(every))


def test_selected_rows_mask_marks_exactly_the_rows_of_selected_blocks():
    """Against a loop over every query, head and top-k entry (the mask is built from difference arrays)."""
    from cases._nsa_select import query_positions, selected_rows_mask

    rng = np.random.default_rng(4)
    bs, t2, n2, count = 4, 64, 2, 3
    cu_q, cu_kv = [5, 9], [32, 64]
    t1 = cu_q[-1]
    _, kv0 = query_positions(cu_q, cu_kv, t1)
    topk = np.stack([rng.choice(8, (n2, count), replace=True) for _ in range(t1)]).astype(np.int32)
    want = np.zeros((t2, n2), bool)
    for q in range(t1):
        for h in range(n2):
            for blk in topk[q, h]:
                want[kv0[q] + blk * bs: kv0[q] + (blk + 1) * bs, h] = True
    assert np.array_equal(selected_rows_mask(topk, cu_q, cu_kv, t2, bs), want)
    with pytest.raises(IndexError, match="outside"):
        selected_rows_mask(topk + 8, cu_q, cu_kv, t2, bs)
