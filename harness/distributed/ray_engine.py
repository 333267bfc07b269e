"""`run --engine ray`: the case plan across a Ray cluster, one run directory on the driver.

The driver plans the matrix once and sends it as cost-balanced chunks (harness.shard's LPT split),
each a Ray task that requests one device (`--ray-resource NPU=1` for NPU backends, a GPU for
torch:cuda, a CPU otherwise; Ray sets ASCEND_RT_VISIBLE_DEVICES / CUDA_VISIBLE_DEVICES per task).
A task is a streaming generator: it yields each case's rows as soon as the case is done, and the
driver writes them (flushed per case, so `--resume` works as for a local run).

    a worker that dies (segfault, OOM kill, lost node)   its case in flight gets `crash` rows; the
                                                          rest of its chunk is sent again (elsewhere)
    a worker whose environment differs from the driver's  refuses the chunk before running anything
    (commit, python/numpy/ml_dtypes/torch/torch_npu,      (RETRIES_ON_REFUSAL more tries; then its cases
    CANN)                                                 are `error` rows naming the difference)

Work crosses the wire as JSON text (case params, rows), never as pickled harness objects; each
worker rebuilds specs, cases and backends by name (backends through harness.isolate.backend_ref,
so test and plugin backends work too) and runs them through harness.engine.Engine, which applies
isolation and the known issues exactly as a local run does; the driver's own Engine settles the
rows of a case whose worker died.

Ray is an optional extra (`pip install -c constraints.txt -e '.[ray]'`), imported only here.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
from collections import deque

from .. import golden_store
from ..errors import UsageError
from ..runner import CaseResult

log = logging.getLogger(__name__)

#: fingerprint fields that must match between driver and worker (host, cpu, devices may differ)
ENV_KEYS = ("python", "numpy", "ml_dtypes", "torch", "torch_npu", "cann", "opdiff_commit")
#: chunks per schedulable slot: small enough to balance the tail, large enough to amortise a task
CHUNKS_PER_SLOT = 4
RETRIES_ON_REFUSAL = 2
#: fields of the run's arguments that a worker's Engine reads (Engine.from_args)
ENGINE_ARGS = ("tier", "seed", "isolate", "timeout", "known_issues", "determinism")
DEVICE_BACKENDS = ("aclnn", "torch_npu", "torch:npu")


def import_ray():
    try:
        import ray
    except ImportError as exc:
        raise UsageError(f"--engine ray needs Ray, which is not installed here ({exc}); install the extra: "
                         f"pip install -c constraints.txt -e '.[ray]'") from None
    return ray


def env_key(fp: dict) -> dict:
    return {k: fp.get(k) for k in ENV_KEYS}


def parse_resources(texts, backend_names) -> dict:
    """`--ray-resource NAME=N` (repeatable) -> Ray task options; the default follows the backends."""
    res = {}
    for t in texts or ():
        m = re.fullmatch(r"\s*([A-Za-z_][\w.-]*)\s*=\s*([0-9]*\.?[0-9]+)\s*", t)
        if not m:
            raise UsageError(f"--ray-resource {t!r}: expected NAME=AMOUNT, e.g. NPU=1, GPU=1 or CPU=2")
        res[m.group(1)] = float(m.group(2))
    if not res:
        if any(n.split(":")[0] in ("aclnn", "torch_npu") or n.startswith("torch:npu") for n in backend_names):
            res = {"NPU": 1.0}
        elif any(n.startswith("torch:cuda") for n in backend_names):
            res = {"GPU": 1.0}
        else:
            res = {"CPU": 1.0}
    opts = {"num_cpus": res.pop("CPU", 1.0 if not res else 0.0)}
    if "GPU" in res:
        opts["num_gpus"] = res.pop("GPU")
    if res:
        opts["resources"] = res
    return opts


def _case_msg(spec, case) -> dict:
    return {"op": spec.name, "case_id": case.id, "params": case.params_json(), "origin": case.origin,
            "violates": case.violates, "case_tier": case.tier}


def run_chunk(items_json: str, backends_json: str, opts_json: str, driver_env_json: str):
    """The Ray task body (a generator): yields one JSON text per case, or a refusal first."""
    from .. import registry
    from ..envinfo import fingerprint
    from ..engine import Engine
    from ..isolate import find_case, make_backend
    from ..results import json_safe
    from ..timing import TimingConfig

    mine, theirs = env_key(fingerprint()), json.loads(driver_env_json)
    if mine != theirs:
        diff = {k: [theirs.get(k), mine.get(k)] for k in ENV_KEYS if mine.get(k) != theirs.get(k)}
        yield json.dumps({"refused": diff})
        return
    opts = json.loads(opts_json)
    if opts.get("golden_store"):  # the driver's --golden-store: a path every node sees (shared storage)
        golden_store.activate(opts["golden_store"])
    else:  # a reused worker must not keep an earlier run's store
        os.environ.pop(golden_store.ENV, None)
    backend_cache: dict = {}
    backends = [make_backend(b, backend_cache) for b in json.loads(backends_json)]
    items = [dict(m, tier=opts["args"]["tier"]) for m in json.loads(items_json)]
    specs = {m["op"]: registry.op(m["op"]) for m in items}
    timing = TimingConfig(**opts["timing"]) if opts["timing"] else TimingConfig(enabled=False)
    ex = Engine.from_args(backends, _Args(**opts["args"]), timing)
    cases: dict = {}
    try:
        for m in items:
            spec = specs[m["op"]]
            case = find_case(spec, m, cases)
            res = ex.run_case(spec, case)
            yield json.dumps({"rows": res.rows, "samples": res.samples}, default=json_safe)
    finally:
        ex.close()


class _Args:
    def __init__(self, **kw):
        self.__dict__.update(kw)


@dataclasses.dataclass
class _Chunk:
    items: list          # [(spec, case)]
    refusals: int = 0


class RayEngine:
    """Runs (spec, case) pairs on a Ray cluster; `run(plan)` yields (spec, case, CaseResult) as they finish."""

    def __init__(self, backends, args, timing, fingerprint: dict, local):
        """`local`: the driver's harness.engine.Engine, which settles the rows of a lost case."""
        from ..isolate import backend_ref

        self.ray = import_ray()
        self.args, self.timing, self.local = args, timing, local
        self.backend_names = [b.name for b in backends]
        self.backends_json = json.dumps([backend_ref(b) for b in backends])
        self.task_opts = parse_resources(getattr(args, "ray_resource", None), self.backend_names)
        self.driver_env = json.dumps(env_key(fingerprint))
        self.opts_json = json.dumps({"args": {k: getattr(args, k, None) for k in ENGINE_ARGS},
                                     "timing": dataclasses.asdict(timing) if timing.enabled else None,
                                     "golden_store": os.environ.get(golden_store.ENV) or None})
        self.stats = {"engine": "ray", "address": getattr(args, "ray_address", None), "task_options": self.task_opts,
                      "chunks": 0, "resubmitted": 0, "crashes": [], "refusals": [], "workers": set()}

    def _init(self):
        ray = self.ray
        if not ray.is_initialized():
            ray.init(address=self.args.ray_address or None, include_dashboard=False, log_to_driver=False)
        self.remote = ray.remote(max_retries=0)(run_chunk)  # retries are ours: a crashed case is not rerun

    def _slots(self) -> int:
        total = self.ray.cluster_resources()
        need = dict(self.task_opts.get("resources", {}))
        if self.task_opts.get("num_gpus"):
            need["GPU"] = self.task_opts["num_gpus"]
        if self.task_opts.get("num_cpus"):
            need["CPU"] = self.task_opts["num_cpus"]
        missing = [k for k in need if total.get(k, 0) < need[k]]
        if missing:
            raise UsageError(f"the Ray cluster has no {', '.join(missing)} resource for a task needing {need} "
                             f"(cluster: {dict(sorted(total.items()))}); give --ray-resource")
        return max(1, int(min(total[k] // v for k, v in need.items())) if need else 1)

    def _chunks(self, plan) -> list:
        from .. import shard

        n = min(len(plan), CHUNKS_PER_SLOT * self._slots())
        owner = shard.assign(plan, n) if n > 1 else [0] * len(plan)
        chunks = [[] for _ in range(n)]
        for entry, k in zip(plan, owner):
            chunks[k].append(entry)
        # longest chunk first, so the tail of the run is short chunks
        return sorted((c for c in chunks if c), key=lambda c: -sum(shard.case_cost(*e) for e in c))

    def _submit(self, chunk: _Chunk):
        items = json.dumps([_case_msg(s, c) for s, c in chunk.items])
        self.stats["chunks"] += 1
        return self.remote.options(**self.task_opts).remote(items, self.backends_json, self.opts_json,
                                                            self.driver_env)

    def run(self, plan):
        if not plan:
            return
        self._init()
        ray = self.ray
        queue = deque(_Chunk(c) for c in self._chunks(plan))
        live: dict = {}   # generator -> [chunk, index of the next case]
        while queue or live:
            while queue:  # Ray queues tasks until a slot frees; submit everything
                ch = queue.popleft()
                live[self._submit(ch)] = [ch, 0]
            ready, _ = ray.wait(list(live), num_returns=1, timeout=None)
            for gen in ready:
                ch, i = live[gen]
                try:
                    text = ray.get(next(gen))
                except StopIteration:
                    del live[gen]
                    continue
                except ray.exceptions.RayError as exc:  # the worker died (or the task body raised)
                    del live[gen]
                    yield from self._lost(ch, i, exc, queue)
                    continue
                msg = json.loads(text)
                if "refused" in msg:
                    del live[gen]
                    yield from self._refused(ch, msg["refused"], queue)
                    continue
                spec, case = ch.items[i]
                live[gen][1] = i + 1
                yield spec, case, CaseResult(rows=msg["rows"], samples=msg["samples"])

    def _lost(self, ch, i, exc, queue):
        spec, case = ch.items[i]
        what = type(exc).__name__
        detail = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        reason = f"ray worker died while running this case ({what}: {detail})"
        self.stats["crashes"].append({"op": spec.name, "case_id": case.id, "error": f"{what}: {detail}"})
        log.warning("ray: %s/%s: %s; %d case(s) of its chunk sent again", spec.name, case.id, reason,
                    len(ch.items) - i - 1)
        res = CaseResult()
        for b in self.backend_names:
            res.rows += self.local.unrun_rows(spec, case, b, "crash", reason)
        yield spec, case, res
        rest = ch.items[i + 1:]
        if rest:
            self.stats["resubmitted"] += 1
            queue.append(_Chunk(rest))

    def _refused(self, ch, diff, queue):
        self.stats["refusals"].append(diff)
        if ch.refusals < RETRIES_ON_REFUSAL:
            ch.refusals += 1
            self.stats["resubmitted"] += 1
            queue.append(ch)
            return
        text = ", ".join(f"{k}: driver {d!r}, worker {w!r}" for k, (d, w) in diff.items())
        log.error("ray: %d case(s) refused by %d worker(s) with another environment (%s)", len(ch.items),
                  ch.refusals + 1, text)
        for spec, case in ch.items:
            res = CaseResult()
            for b in self.backend_names:
                res.rows += self.local.unrun_rows(spec, case, b, "error",
                                                  f"no ray worker with the driver's environment ran it ({text})")
            yield spec, case, res

    def summary(self) -> dict:
        out = dict(self.stats)
        out.pop("workers", None)
        return out
