"""Latency room: measurement settings, cache, isolation service, predictor, CLI."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import random
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

from hybridnas.errors import UserError
from hybridnas.latency import (
    LatencyCache,
    LatencyPredictor,
    LatencyResult,
    LatencyService,
    calibrate,
    measure,
    spec_parts,
)
from hybridnas.latency._predictor import _features, _fit_correction, _fit_fallback, measure_in_context
from hybridnas.spec import ArchSpec, StageSpec, StemSpec

FAST = dict(resolution=16, warmup=1, repeats=3, num_classes=4)


def tiny(block="mbconv", width=8, depth=1, second="transformer", width2=16, depth2=1):
    return ArchSpec(stem=StemSpec(kind="conv", widths=(8,), kernel=3),
                    stages=(StageSpec(block, depth=depth, width=width, stride=1),
                            StageSpec(second, depth=depth2, width=width2, stride=2, heads=2)
                            if second in ("transformer", "interleaved")
                            else StageSpec(second, depth=depth2, width=width2, stride=2)))


def random_tiny(rng: random.Random) -> ArchSpec:
    return tiny(rng.choice(["mbconv", "convnext"]), rng.choice([8, 16]), rng.choice([1, 2]),
                rng.choice(["transformer", "mbconv", "interleaved"]), rng.choice([16, 32]),
                rng.choice([1, 2]))


class Probe(nn.Module):
    """Records the state each forward call runs in."""

    def __init__(self):
        super().__init__()
        self.lin = nn.Conv2d(3, 4, 1)
        self.calls: list[tuple[bool, bool, int]] = []

    def forward(self, x):
        self.calls.append((self.training, torch.is_inference_mode_enabled(),
                           torch.get_num_threads()))
        return self.lin(x)


# ---- measure ---------------------------------------------------------------

def test_measure_respects_settings_and_restores_state():
    model = Probe().train()
    torch.set_num_threads(2)
    r = measure(model, device="cpu", batch_size=2, resolution=8, threads=1, warmup=3, repeats=7)
    assert len(model.calls) == 3 + 7
    assert all(call == (False, True, 1) for call in model.calls)  # eval, inference, 1 thread
    assert model.training and torch.get_num_threads() == 2  # both restored
    assert r.p10_ms <= r.median_ms <= r.p90_ms and r.median_ms > 0
    assert len(r.samples_ms) == 7
    s = r.settings
    assert (s["device"], s["batch_size"], s["resolution"], s["threads"], s["warmup"],
            s["repeats"], s["backend"]) == ("cpu", 2, 8, 1, 3, 7, "eager")


def test_measure_spec_records_arch_and_defaults_to_one_thread():
    spec = tiny()
    r = measure(spec, **FAST)
    assert r.settings["arch_id"] == spec.arch_id and r.settings["threads"] == 1
    assert r.settings["num_classes"] == 4 and r.settings["device_name"]


@pytest.mark.parametrize("kw, words", [
    ({"backend": "tensorrt"}, "backend='tensorrt'"),
    ({"device": "tpu"}, "device='tpu'"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"repeats": 0}, "repeats=0"),
    ({"clock": "cpu", "threads": 2}, "clock='cpu' needs"),
    ({"clock": "gpu"}, "clock='gpu'"),
])
def test_measure_bad_settings_are_user_errors(kw, words):
    with pytest.raises(UserError, match=words.replace("(", r"\(")):
        measure(Probe(), resolution=8, **kw)


def test_measure_cpu_clock_is_recorded_and_keyed():
    r = measure(Probe(), resolution=8, warmup=1, repeats=5, clock="cpu")
    assert r.settings["clock"] == "cpu" and r.median_ms > 0
    from hybridnas.latency._measure import settings_key

    assert settings_key(r.settings) != settings_key(dict(r.settings, clock="wall"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_measure_cuda_without_gpu_names_the_device():
    with pytest.raises(UserError, match="no CUDA device"):
        measure(Probe(), device="cuda", resolution=8)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_measure_cuda_uses_events_and_restores_device():
    model = Probe()
    r = measure(model, device="cuda", resolution=32, warmup=2, repeats=5)
    assert r.settings["device"].startswith("cuda:") and r.settings["threads"] is None
    assert r.median_ms > 0 and next(model.parameters()).device.type == "cpu"


# ---- cache -----------------------------------------------------------------

def _fake_result(ms: float, **settings) -> LatencyResult:
    base = {"device": "cpu", "device_name": "x", "backend": "eager", "batch_size": 1,
            "resolution": 32, "in_chans": 3, "num_classes": 10, "threads": 1,
            "dtype": "float32", "clock": "wall", "warmup": 5, "repeats": 20}
    base.update(settings)
    return LatencyResult(ms, ms * 0.9, ms * 1.1, base)


def test_cache_hits_only_for_same_settings(tmp_path):
    cache = LatencyCache(tmp_path / "lat.db")
    r = _fake_result(3.0)
    assert cache.get("abc", r.settings) is None
    cache.put("abc", r)
    hit = cache.get("abc", dict(r.settings, repeats=100))  # repeats is not part of the key
    assert hit is not None and hit.median_ms == 3.0 and hit.settings["cached"]
    assert cache.get("abc", dict(r.settings, batch_size=8)) is None
    assert cache.get("abd", r.settings) is None
    assert len(LatencyCache(tmp_path / "lat.db")) == 1  # persisted


def _cache_writer(path: str, worker: int) -> None:
    cache = LatencyCache(path)
    for i in range(25):
        cache.put(f"w{worker}-{i}", _fake_result(1.0 + i))


def test_cache_is_safe_with_concurrent_processes(tmp_path):
    path = str(tmp_path / "shared.db")
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_cache_writer, args=(path, w)) for w in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert len(LatencyCache(path)) == 75


def _cache_opener(path: str, barrier, results) -> None:
    barrier.wait()
    try:
        LatencyCache(path).put("x", _fake_result(1.0))
        results.put("ok")
    except Exception as e:  # noqa: BLE001 - reported to the test
        results.put(repr(e))


def test_processes_opening_a_new_cache_at_once_all_succeed(tmp_path):
    """Trials starting together open a cache file no one has created yet;
    switching it to WAL answers 'database is locked' without waiting, which
    once failed a trial. Six processes released by a barrier, 20 times
    (without the retry ~3 % of such opens failed here)."""
    ctx = mp.get_context("fork")
    outcomes = []
    for rep in range(20):
        path = str(tmp_path / f"fresh{rep}.db")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_cache_opener, args=(path, barrier, results))
                 for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(60)
        outcomes += [results.get(timeout=5) for _ in procs]
    assert outcomes == ["ok"] * 120, sorted(set(outcomes))


def test_cache_bad_path_is_user_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="latency cache"):
        LatencyCache(tmp_path / "file" / "lat.db")


# ---- service ---------------------------------------------------------------

def test_service_caches_repeated_architectures(tmp_path, monkeypatch):
    import hybridnas.latency._service as service_mod

    calls = []
    real = service_mod.measure
    monkeypatch.setattr(service_mod, "measure", lambda *a, **k: calls.append(1) or real(*a, **k))
    service = LatencyService(tmp_path / "lat", **FAST)
    first = service.measure(tiny())
    again = LatencyService.open(tmp_path / "lat").measure(tiny())  # as a trial would
    assert len(calls) == 1
    assert not first.settings["cached"] and again.settings["cached"]
    assert again.median_ms == first.median_ms
    service.measure(tiny(width=16))
    assert len(calls) == 2


def test_service_times_the_trials_own_model(tmp_path, monkeypatch):
    """A trial hands over the network it built: the service times that one
    (no second build) and gives it back in its training mode."""
    import hybridnas.builder
    from hybridnas.builder import build_model

    spec = tiny()
    model = build_model(spec, num_classes=FAST.get("num_classes", 10),
                        in_chans=FAST.get("in_chans", 3))
    model.train()
    seen = []
    import hybridnas.latency._service as service_mod
    real = service_mod.measure
    monkeypatch.setattr(service_mod, "measure", lambda m, **k: seen.append(m) or real(m, **k))
    monkeypatch.setattr(hybridnas.builder, "build_model",
                        lambda *a, **k: pytest.fail("the service built the network again"))
    result = LatencyService(tmp_path / "lat", **FAST).measure(spec, model=model)
    assert seen == [model] and result.median_ms > 0 and model.training


def test_service_open_without_service_is_user_error(tmp_path):
    with pytest.raises(UserError, match="no latency service"):
        LatencyService.open(tmp_path)


_TRAINER = """
import time
from hybridnas.latency import LatencyService
service = LatencyService.open({workdir!r})
with service.trainer(), open({log!r}, "w") as log:
    open({ready!r}, "w").close()
    end = time.time() + {seconds}
    while time.time() < end:
        x = sum(i * i for i in range(2000))   # a "training step"
        log.write(f"{{time.time()!r}}\\n"); log.flush()
"""


def _measurer(workdir: str, widths: list[int], out: str) -> None:
    torch.set_num_threads(1)
    service = LatencyService.open(workdir)
    rows = []
    for w in widths:
        r = service.measure(tiny(width=w))
        rows.append({k: r.settings[k] for k in ("started_at", "finished_at", "paused_trainers")})
    with open(out, "w") as fh:
        json.dump(rows, fh)


def test_isolation_serialises_measurements_and_pauses_trainers(tmp_path):
    workdir = str(tmp_path / "lat")
    LatencyService(workdir, resolution=16, warmup=2, repeats=40, num_classes=4)
    log, ready = tmp_path / "steps.log", tmp_path / "ready"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    trainer = subprocess.Popen([sys.executable, "-c", _TRAINER.format(
        root=root, workdir=workdir, log=str(log), ready=str(ready), seconds=600)])
    try:
        deadline = time.time() + 20
        while not ready.exists() and time.time() < deadline:
            time.sleep(0.05)
        assert ready.exists()
        ctx = mp.get_context("spawn")
        outs = [str(tmp_path / f"m{i}.json") for i in range(2)]
        procs = [ctx.Process(target=_measurer, args=(workdir, ws, out))
                 for ws, out in zip([[8, 16], [24, 32]], outs)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
        assert all(p.exitcode == 0 for p in procs)
    finally:
        trainer.kill()
        trainer.wait()
    intervals = sorted((r["started_at"], r["finished_at"], r["paused_trainers"])
                       for out in outs for r in json.load(open(out)))
    assert len(intervals) == 4
    for (_s0, e0, _), (s1, _e1, _) in zip(intervals, intervals[1:]):
        assert e0 <= s1, "two measurements overlapped"
    assert all(paused >= 1 for _, _, paused in intervals)
    steps = [float(t) for t in log.read_text().split()]
    inside = [t for t in steps for s, e, _ in intervals if s < t < e]
    assert not inside, f"the trainer ran {len(inside)} steps during measurements"
    assert any(t > intervals[-1][1] for t in steps), "the trainer was not resumed"


@pytest.mark.slow
def test_service_ray_actor_measures_for_trials(tmp_path):
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(num_cpus=2, include_dashboard=False, _temp_dir="/tmp/rt_lat",
             log_to_driver=False)
    try:
        service = LatencyService(tmp_path / "lat", **FAST).start_actor()

        @ray.remote(num_cpus=1)
        def trial(svc, spec):
            with svc.trainer():
                return svc.measure(spec).to_dict()

        results = ray.get([trial.remote(service, tiny(width=w)) for w in (8, 16, 8)])
        assert all(r["median_ms"] > 0 for r in results)
        assert len(LatencyCache(service.cache_path)) == 2
        opened = LatencyService.open(tmp_path / "lat")
        assert opened.actor_name == service.actor_name
        service.close()
    finally:
        ray.shutdown()


# ---- predictor -------------------------------------------------------------

def test_spec_parts_share_keys_and_count_repeats():
    a, b = tiny(depth=3), tiny(depth=1)
    pa, pb = spec_parts(a, 16), spec_parts(b, 16)
    assert [p.kind for p in pa] == ["stem", "first", "block", "first"]
    assert pa[2].count == 2
    assert pa[0].key == pb[0].key and pa[1].key == pb[1].key
    assert pa[-1].key == pb[-1].key  # same second stage, same input shape
    assert spec_parts(tiny(width=16), 16)[1].key != pa[1].key


def test_parts_timed_in_context_add_up_to_the_network():
    spec = tiny("mbconv", 16, 3, "transformer", 32, 2)
    settings = {"device": "cpu", "threads": 1, "warmup": 2, "repeats": 5, "clock": "wall",
                "num_classes": 4}
    times, total = measure_in_context(spec, settings, 16)
    parts = spec_parts(spec, 16)
    assert set(times) == {p.key for p in parts}
    assert all(ms > 0 for ms in times.values())
    summed = sum(times[p.key] * p.count for p in parts)  # all but the head and glue
    assert 0.3 * total < summed < 1.2 * total


def test_correction_fit_recovers_a_linear_overhead():
    sums = [1.0, 2.0, 3.5, 5.0, 8.0, 13.0]
    heads = [0.0] * 6
    fit = _fit_correction(sums, heads, [1.2 * s + 0.3 for s in sums])
    assert fit["scale"] == pytest.approx(1.2) and fit["offset"] == pytest.approx(0.3)


def test_predictor_round_trip_and_fallback(tmp_path):
    rng = random.Random(0)
    specs = [random_tiny(rng) for _ in range(8)]
    predictor = calibrate(specs, resolution=16, num_classes=4, warmup=1, repeats=3)
    assert set(predictor.report) >= {"parts", "networks", "fit_within_10pct"}
    path = tmp_path / "table.json"
    predictor.save(path)
    loaded = LatencyPredictor.load(path)
    for spec in specs:
        assert loaded.predict(spec) == pytest.approx(predictor.predict(spec))
        assert loaded.predict(spec) > 0 and loaded.coverage(spec) == 1.0
    unseen = tiny("convnext", 24, 3, "interleaved", 48, 2)
    assert loaded.coverage(unseen) < 1.0
    assert loaded.predict(unseen) > 0  # estimated by the fallback fit
    assert loaded.fill(unseen) > 0 and loaded.coverage(unseen) == 1.0


def test_fallback_fits_each_block_family_and_scales_a_near_first_block():
    # A synthetic table where every block type has its own cost law in the
    # size features: the per-family fit must recover it for a held-out part.
    law = {"mbconv": [0.002, 0.5, 0.01, 0.03], "convnext": [0.004, 0.1, 0.03, 0.01],
           "transformer": [0.003, 0.2, 0.02, 0.05], "interleaved": [0.001, 0.3, 0.05, 0.02]}

    def cost(part):
        block = part.build["stage"]["block"] if "stage" in part.build else "mbconv"
        return sum(c * f for c, f in zip(law[block], _features(part)))

    specs = [tiny(b1, w1, 2, b2, w2, 2) for b1 in ("mbconv", "convnext")
             for w1 in range(8, 88, 8) for b2 in ("transformer", "interleaved")
             for w2 in (16, 32, 48, 64)]
    parts = {p.key: p for s in specs for p in spec_parts(s, 16)}
    held = [p for p in parts.values() if p.kind == "block"
            and p.build["stage"]["width"] in (24, 40) and p.build["stage"]["stride"] == 1]
    table = {k: cost(p) for k, p in parts.items() if p not in held}
    predictor = LatencyPredictor({"resolution": 16}, table,
                                 fallback=_fit_fallback(table, [parts[k] for k in table]))
    assert held
    for part in held:
        ms, source = predictor._part_ms(part)
        assert source == "estimate" and ms == pytest.approx(cost(part), rel=0.02)
    # A first block missing from the table is the same block after another
    # width, scaled by the fit: exact when the table follows the fit's law.
    first = spec_parts(tiny("mbconv", 12, 2, "transformer", 32, 2), 16)[3]
    assert first.kind == "first" and first.key not in table
    ms, source = predictor._part_ms(first)
    assert source == "estimate" and ms == pytest.approx(cost(first), rel=0.02)


def test_predictor_load_errors(tmp_path):
    with pytest.raises(UserError, match="no latency table"):
        LatencyPredictor.load(tmp_path / "none.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"x": 1}')
    with pytest.raises(UserError, match="not a hybridnas latency table"):
        LatencyPredictor.load(bad)


def test_prediction_needs_no_torch(tmp_path):
    path = tmp_path / "t.json"
    calibrate([tiny(), tiny(width=16)], resolution=16, num_classes=4, warmup=1,
              repeats=2).save(path)
    code = ("import sys; from hybridnas.latency import LatencyPredictor; "
            "from hybridnas.spec import ArchSpec; "
            f"p = LatencyPredictor.load({str(path)!r}); "
            f"s = ArchSpec.from_json({tiny().to_json()!r}); "
            "assert p.predict(s) > 0; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---- CLI -------------------------------------------------------------------

def test_cli_measures_a_named_model(capsys):
    from hybridnas.cli import main

    assert main(["latency", "coatnet_0", "--resolution", "32", "--warmup", "1",
                 "--repeats", "2", "--num-classes", "10"]) == 0
    out = capsys.readouterr().out
    assert "coatnet_0" in out and "median" in out and "threads=1" in out


@pytest.mark.parametrize("argv, words", [
    (["latency", "calibrate"], "needs --space"),
    (["latency", "no_such_model"], "unknown architecture"),
    (["latency", "coatnet_0", "--space", "stagewise"], "--space and -n belong"),
])
def test_cli_errors_are_one_line(argv, words, capsys):
    from hybridnas.cli import main

    assert main(argv) == 2
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


class _FakeSpace:
    name = "fake"

    def __init__(self, resolution):
        self.resolution = resolution

    def sample(self, rng):  # rng: numpy Generator, as the real spaces take
        return random_tiny(random.Random(int(rng.integers(1 << 30))))


def test_cli_calibrate_then_check_on_a_space(tmp_path, monkeypatch, capsys):
    import types

    import hybridnas.spaces.cli  # noqa: F401  (the CLI imports it; the fake is no package)
    from hybridnas.cli import main

    fake = types.ModuleType("hybridnas.spaces")
    fake.load = lambda name, resolution=32: _FakeSpace(resolution)
    monkeypatch.setitem(sys.modules, "hybridnas.spaces", fake)
    monkeypatch.setattr("hybridnas.spaces", fake, raising=False)
    table = str(tmp_path / "t.json")
    common = ["--space", "fake", "--resolution", "16", "--table", table, "--num-classes", "4"]
    assert main(["latency", "calibrate", "-n", "6", "--repeats", "3"] + common) == 0
    assert json.load(open(table))["report"]["architectures"] == 6
    assert main(["latency", "check", "-n", "3", "--repeats", "3"] + common) == 0
    out = capsys.readouterr().out
    assert "within ±10%" in out and "one prediction" in out


def _die_while_pausing(pid: int) -> None:
    from hybridnas.latency._service import pause_processes

    with pause_processes([pid]):
        os.kill(os.getpid(), 9)  # the measurer is killed mid-measurement


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def test_trainers_resume_when_the_measurer_dies():
    trainer = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        killed = mp.get_context("fork").Process(target=_die_while_pausing, args=(trainer.pid,))
        killed.start()
        killed.join(30)
        assert killed.exitcode == -9
        deadline = time.time() + 10
        while _state(trainer.pid) in "Tt" and time.time() < deadline:
            time.sleep(0.02)
        assert _state(trainer.pid) not in "Tt", "the trainer stayed stopped"
    finally:
        trainer.kill()
        trainer.wait()


# ---- a timed model trains afterwards ----------------------------------------

_BLOCK_PARAMS = {
    "mbconv": {}, "convnext": {}, "interleaved": dict(heads=2, attention="rel", window=4),
    "transformer": dict(heads=2, attention="rel", window=4),
    "maxvit": dict(head_dim=8, window=2), "cvt": dict(heads=2), "levit": dict(heads=2, key_dim=8, window=4),
    "efficientformer": dict(attn_blocks=1, heads=2, key_dim=8, window=4),
}


@pytest.mark.parametrize("block", sorted(_BLOCK_PARAMS))
def test_a_model_timed_in_inference_mode_trains_afterwards(block):
    """measure() runs the network under torch.inference_mode; index caches
    that blocks build in their first forward must not be inference tensors,
    or the training that follows (a search trial timing its own network)
    fails with 'Inference tensors cannot be saved for backward'."""
    import torch

    from hybridnas.builder import build_model

    spec = ArchSpec(stem=StemSpec(kind="conv", widths=(8,), kernel=3),
                    stages=(StageSpec("mbconv", depth=1, width=8, stride=1),
                            StageSpec(block, depth=1, width=16, stride=2,
                                      **_BLOCK_PARAMS[block])))
    model = build_model(spec, num_classes=4, in_chans=3).train()
    measure(model, resolution=16, in_chans=3, num_classes=4, warmup=1, repeats=1)
    assert model.training
    loss = model(torch.randn(2, 3, 16, 16)).logsumexp(-1).mean()
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
