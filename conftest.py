"""pytest integration: options, hypothesis profiles per tier, and the case matrix as tests.

    pytest                                         # smoke tier, all ops, the torch reference
    pytest --ops paged_cache_load --backends torch:cuda --tier nightly -k ND_int8

Tests that take the `op_case` fixture run once per positive case x backend; `negative_case`
tests run once per negative case x backend and expect a rejection. Ids read
`<op>-<case id>-<backend>` so `-k` can pick any of the three.
"""
from __future__ import annotations

import os

os.environ.setdefault("TORCH_DEVICE_BACKEND_AUTOLOAD", "0")  # torch-npu installed without CANN

import pytest  # noqa: E402

HYPOTHESIS_EXAMPLES = {"smoke": 3, "nightly": 25, "full": 200}


def pytest_addoption(parser):
    g = parser.getgroup("opdiff")
    g.addoption("--ops", default="all", help="comma list of operators to test (default all)")
    # default torch: the numpy backend is the golden itself, so its matrix rows would compare the golden with its
    # own rounding; that check is tests/meta/test_numpy_backend.py, one per op (pass --backends numpy to add them)
    g.addoption("--backends", default="torch", help="comma list of backends (default torch)")
    g.addoption("--tier", default="smoke", choices=("smoke", "nightly", "full"), help="case tier (default smoke)")
    g.addoption("--seed", type=int, default=0, help="input data seed (default 0)")
    g.addoption("--runslow", action="store_true", help="also run tests marked slow")
    g.addoption("--fail-on", default="fail", choices=("fail", "warn"),
                help="least severe verdict that fails a matrix test: fail (default) or warn")
    from harness.pytest_support import add_options

    add_options(g)  # --opdiff-out, --opdiff-devices, --known-issues, --isolate, --no-isolate, --opdiff-timeout


def pytest_configure(config):
    from harness.pytest_support import configure

    configure(config)  # first: pins an xdist worker to its device before any device runtime starts

    from hypothesis import HealthCheck, settings

    for tier, n in HYPOTHESIS_EXAMPLES.items():
        settings.register_profile(tier, max_examples=n, deadline=None, derandomize=(tier == "smoke"),
                                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    settings.load_profile(config.getoption("--tier"))


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_generate_tests(metafunc):
    wanted = {"op_case", "negative_case"} & set(metafunc.fixturenames)
    if not wanted:
        return
    from harness import registry
    from harness.ledger import pytest_marks as ledger_marks

    state = metafunc.config._opdiff  # harness.pytest_support.MatrixSession
    cases, backends = state.matrix()
    negative = "negative_case" in wanted
    params = []
    for spec, case in cases:
        if case.negative != negative:
            continue
        for bname in backends:
            b = registry.backend(bname)
            marks = []
            pid = f"{spec.name}-{case.id}-{bname}"
            avail = b.available()
            if not avail:
                marks.append(pytest.mark.skip(reason=f"{bname} unavailable: {avail.reason}"))
                state.unrun[pid] = f"unavailable: {avail.reason}"  # the skipped rows `run` writes
            elif b.supports(spec, case):
                marks.append(pytest.mark.skip(reason=f"{bname} declines: {b.supports(spec, case)}"))
                state.unrun[pid] = f"declined: {b.supports(spec, case)}"
            else:  # known issues: quarantine -> skip, xfail -> strict xfail
                marks += ledger_marks(state.ledger.match(spec, case, bname))
            params.append(pytest.param((spec, case), bname, id=pid, marks=marks))
    metafunc.parametrize(("negative_case" if negative else "op_case", "backend_name"), params)


def pytest_runtest_makereport(item, call):
    if call.when == "setup":
        from harness.pytest_support import record_unrun

        record_unrun(item)  # --opdiff-out: a test skipped for its backend still gets its skipped rows


def pytest_sessionfinish(session, exitstatus):
    from harness.pytest_support import finish

    finish(session)  # --opdiff-out: the controller consolidates every worker's rows


@pytest.fixture
def opdiff_run(request):
    """run(spec, case, backend name) -> CaseResult: one matrix test through the session's engine
    (harness.engine, isolation and known issues as `run` applies them), its rows into --opdiff-out."""
    return request.config._opdiff.run


@pytest.fixture
def opdiff_options(request):
    return {"tier": request.config.getoption("--tier"), "seed": request.config.getoption("--seed")}


@pytest.fixture
def fail_on(request):
    """--fail-on: `warn` makes a within-policy warning fail its matrix test (harness.verdicts)."""
    return request.config.getoption("--fail-on")
