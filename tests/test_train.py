"""Training invariants on tiny generated data: exact resume, DDP ranks stay in sync, configs build."""

import glob
import json
import os
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from asr.train import TrainConfig, lr_lambda, train
from conftest import speechlike

WORDS = "alpha bravo charlie delta echo foxtrot golf hotel".split()
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    d = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(0)
    for split, n in [("train", 12), ("dev", 4)]:
        with open(d / f"{split}.jsonl", "w") as f:
            for i in range(n):
                dur = 0.8 + 0.1 * i
                p = d / f"{split}{i}.wav"
                sf.write(p, speechlike(dur, seed=100 * (split == "dev") + i), 16000, subtype="PCM_16")
                text = " ".join(rng.choice(WORDS, size=2))
                f.write(json.dumps({"audio": str(p), "text": text, "duration": dur}) + "\n")
    return d


def tiny_cfg(d, **kw):
    base = dict(train_manifest=str(d / "train.jsonl"), dev_manifest=str(d / "dev.jsonl"), aug_dir="",
                units="char", rnn_layers=2, rnn_hidden=32, conv_channels=16, max_batch_seconds=4.0,
                num_workers=0, threads=1, cmvn_utts=5, log_every=1, epochs=3, warmup_steps=2)
    base.update(kw)
    return TrainConfig.from_dict(base)


def params(path):
    ck = torch.load(path, map_location="cpu", weights_only=True)
    return ck["model"], ck["progress"]


def test_resume_is_exact(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, max_steps=7)
    train(cfg, str(tmp_path / "straight"), progress=False)
    # same run, killed after 3 steps (mid-epoch) and resumed
    train(tiny_cfg(tiny_data, max_steps=3), str(tmp_path / "resumed"), progress=False)
    _, prog = params(tmp_path / "resumed" / "last.pt")
    assert prog["step"] == 3 and prog["batch"] == 3
    train(cfg, str(tmp_path / "resumed"), progress=False)
    a, pa = params(tmp_path / "straight" / "last.pt")
    b, pb = params(tmp_path / "resumed" / "last.pt")
    assert pa["step"] == pb["step"] == 7
    for k in a:
        assert torch.equal(a[k], b[k]), k
    logs = [json.loads(l) for l in open(tmp_path / "straight" / "log.jsonl")]
    assert any(r["type"] == "valid" for r in logs)
    assert (tmp_path / "straight" / "best.pt").exists()


SIGNALS = ["SIGINT", "SIGTERM"]


@pytest.fixture(scope="module")
def signalled_runs(tiny_data, tmp_path_factory):
    """One training process (one interpreter and torch start-up) runs, for each of ``SIGNALS``
    in turn, a run that gets that signal after logging step 5 (to the whole process group, data
    worker included). Returns ``{signal: (run directory, the process's stderr)}``."""
    import signal
    import subprocess
    import sys

    root = tmp_path_factory.mktemp("signalled")
    # checkpoints only every hour and a step budget that is never reached: only the signal
    # handler can produce last.pt here
    kw = dict(max_steps=100000, epochs=100000, ckpt_minutes=60.0, num_workers=1)
    # each run says on stdout when it has logged step 5 (its log is written by asr.trainsetup.RunLog),
    # and when train() has returned
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from test_train import tiny_cfg; "
            "from pathlib import Path; from asr.train import train; import asr.trainsetup as S; "
            "log = S.RunLog.__call__\n"
            "def tell(self, **rec):\n"
            "    log(self, **rec)\n"
            "    if rec['type'] == 'train' and rec['step'] == 5: print('step 5', flush=True)\n"
            "S.RunLog.__call__ = tell\n"
            "for exp in sys.argv[4:]:\n"
            "    train(tiny_cfg(Path(sys.argv[2]), **json.loads(sys.argv[3])), exp, progress=False)\n"
            "    print('returned', flush=True)")
    exps = [root / sig for sig in SIGNALS]
    proc = subprocess.Popen([sys.executable, "-c", code, str(ROOT / "tests"), str(tiny_data), json.dumps(kw),
                             *map(str, exps)], start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for sig in SIGNALS:
            line = proc.stdout.readline()  # blocks until step 5 is logged (or the process ends: "")
            assert line == "step 5\n", proc.communicate(timeout=60)[1]
            os.killpg(proc.pid, getattr(signal, sig))
            line = proc.stdout.readline()
            assert line == "returned\n", proc.communicate(timeout=60)[1]  # train() ended without raising
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    return {sig: (exp, err) for sig, exp in zip(SIGNALS, exps)}


@pytest.mark.parametrize("sig", SIGNALS)
def test_signal_stops_after_the_step_and_writes_last(tiny_data, signalled_runs, sig):
    """Ctrl-C (to the whole process group, data worker included) or SIGTERM: the run finishes
    its step, writes last.pt and returns; the same command then resumes from that step."""
    exp, err = signalled_runs[sig]
    assert f"stopped by {sig}" in err
    recs = [json.loads(l) for l in open(exp / "log.jsonl")]
    stop = recs[-1]
    assert stop["type"] == "stop" and stop["signal"] == sig
    assert all(r["loader_cpu_h"] >= 0 for r in recs if r["type"] == "train")  # the data worker's CPU time
    _, prog = params(exp / "last.pt")
    assert prog["step"] == stop["step"] >= 5
    train(tiny_cfg(tiny_data, max_steps=prog["step"] + 2, epochs=100000), str(exp), progress=False)
    _, prog2 = params(exp / "last.pt")
    assert prog2["step"] == prog["step"] + 2


def test_best_checkpoint_loads(tiny_data, tmp_path):
    from asr.checkpoint import load_model

    train(tiny_cfg(tiny_data, epochs=1), str(tmp_path / "e"), progress=False)
    rec = load_model(str(tmp_path / "e" / "best.pt"))
    assert rec.meta["dev"]["utts"] == 4
    rec.transcribe(speechlike(1.0))  # runs


def test_extra_train_manifests_join_the_training_pool(tiny_data, tmp_path):
    """extra_train utterances are trained on with the main manifest's (counted in the start record,
    batched each epoch) and named in the checkpoint; a missing one is refused before any work."""
    from asr.data import ManifestError

    extra = tmp_path / "short.jsonl"
    with open(extra, "w") as f:
        for i in range(3):
            p = tmp_path / f"short{i}.wav"
            sf.write(p, speechlike(0.5, seed=300 + i), 16000, subtype="PCM_16")
            f.write(json.dumps({"audio": str(p), "text": WORDS[i], "duration": 0.5}) + "\n")
    exp = tmp_path / "e"
    train(tiny_cfg(tiny_data, epochs=1, augment=False, extra_train=(str(extra),)), str(exp), progress=False)
    logs = [json.loads(l) for l in open(exp / "log.jsonl")]
    start = next(r for r in logs if r["type"] == "start")
    assert start["train_utts"] == 12 + 3
    base_hours = sum(0.8 + 0.1 * i for i in range(12)) / 3600
    assert start["train_hours"] == pytest.approx(base_hours + 1.5 / 3600)
    ck = torch.load(exp / "last.pt", map_location="cpu", weights_only=True)
    assert ck["meta"]["extra_train"] == [str(extra)]
    all_s = 12 * 0.8 + 0.1 * sum(range(12)) + 3 * 0.5
    # one epoch = both manifests (frames count a little under the duration: <= 3 frames per utterance)
    assert all_s - 15 * 0.03 <= ck["progress"]["audio_s"] <= all_s
    with pytest.raises(ManifestError, match="missing.jsonl"):
        train(tiny_cfg(tiny_data, extra_train=(str(tmp_path / "missing.jsonl"),)), str(tmp_path / "m"),
              progress=False)


def test_init_from_starts_from_the_checkpoint_weights(tiny_data, tmp_path):
    """A warm start takes weights, normalisation stats and tokenizer from the checkpoint,
    with a fresh optimizer; mismatched model options are refused."""
    from asr.checkpoint import load_model

    train(tiny_cfg(tiny_data, max_steps=4), str(tmp_path / "src"), progress=False)
    src = tmp_path / "src" / "last.pt"
    # lr=0 and no weight decay: the weights stay those of the source (the run still steps)
    train(tiny_cfg(tiny_data, max_steps=2, init_from=str(src), lr=0.0, weight_decay=0.0), str(tmp_path / "warm"),
          progress=False)
    a, _ = params(src)
    b, prog = params(tmp_path / "warm" / "last.pt")
    assert prog["step"] == 2 and prog["init_from"]["step"] == 4
    for k in a:
        assert torch.equal(a[k], b[k]), k
    assert load_model(str(tmp_path / "warm" / "last.pt")).tokenizer.to_dict() == load_model(str(src)).tokenizer.to_dict()
    start = json.loads(open(tmp_path / "warm" / "log.jsonl").readline())
    assert start["init_from"]["model"] == str(src)
    # a real step moves them, from the same start
    train(tiny_cfg(tiny_data, max_steps=1, init_from=str(src), lr=0.01), str(tmp_path / "warm2"), progress=False)
    c, _ = params(tmp_path / "warm2" / "last.pt")
    assert not torch.equal(a["output.weight"], c["output.weight"])
    with pytest.raises(ValueError, match="rnn_hidden"):
        train(tiny_cfg(tiny_data, max_steps=1, init_from=str(src), rnn_hidden=48), str(tmp_path / "bad"),
              progress=False)


def _frozen_warm_start(tiny_data, tmp_path, src_steps: int, **options):
    """A source run of ``src_steps`` steps and one step of a warm start from it with ``options`` at
    learning rate 0: (the source's last.pt, the source model, the warm-started model)."""
    from asr.checkpoint import load_model

    train(tiny_cfg(tiny_data, max_steps=src_steps), str(tmp_path / "src"), progress=False)
    src = tmp_path / "src" / "last.pt"
    train(tiny_cfg(tiny_data, max_steps=1, init_from=str(src), lr=0.0, weight_decay=0.0, **options),
          str(tmp_path / "warm0"), progress=False)
    return src, load_model(str(src)), load_model(str(tmp_path / "warm0" / "last.pt"))


def test_init_from_can_deepen_the_model(tiny_data, tmp_path):
    """rnn_layers above the checkpoint's: its layers are kept and new ones on top start as
    identities (same log-probabilities), then learn; fewer layers are refused."""
    src, a, b = _frozen_warm_start(tiny_data, tmp_path, 3, rnn_layers=3)
    assert (a.model.cfg.rnn_layers, b.model.cfg.rnn_layers) == (2, 3)
    feats = torch.randn(2, 60, 80)
    lengths = torch.tensor([60, 37])
    la, _, _ = a.model.infer(feats, lengths)
    lb, _, sb = b.model.infer(feats, lengths)
    assert torch.equal(la, lb) and sb["h"].shape == (2, 3, 32) and not sb["h"][:, 2].any()
    # a real step reaches the new layer through its zeroed candidate weights
    train(tiny_cfg(tiny_data, max_steps=1, init_from=str(src), rnn_layers=3, lr=0.01), str(tmp_path / "deep1"),
          progress=False)
    c, _ = params(tmp_path / "deep1" / "last.pt")
    assert c["rnns.2.weight_ih_l0"][64:].abs().max() > 0
    with pytest.raises(ValueError, match="rnn_layers"):
        train(tiny_cfg(tiny_data, max_steps=1, init_from=str(src), rnn_layers=1), str(tmp_path / "shallow"),
              progress=False)


def test_init_from_can_switch_on_online_cmn(tiny_data, tmp_path):
    """A warm start may add the causal running mean (no weights of its own): same weights, new
    config, the state carries its sums."""
    _, a, b = _frozen_warm_start(tiny_data, tmp_path, 2, online_cmn=200.0)
    assert (a.model.cfg.online_cmn, b.model.cfg.online_cmn) == (0.0, 200.0)
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    _, _, st = b.model.infer(torch.randn(1, 40, 80), torch.tensor([40]))
    assert st["cmn_n"].item() == 40


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _run_two_ranks(worker, *args, timeout_s: float = 240):
    """Runs ``worker(rank, 2, port, *args)`` in two processes; fails, instead of hanging, when
    they do not finish together within ``timeout_s`` (one rank waiting on a collective)."""
    import torch.multiprocessing as mp

    ctx = mp.spawn(worker, args=(2, _free_port(), *args), nprocs=2, join=False)
    deadline = time.time() + timeout_s
    while not ctx.join(timeout=5):
        if time.time() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the DDP ranks did not finish together (one waits on a collective)")


@pytest.fixture(scope="module")
def ddp_runs(tiny_data, tmp_path_factory):
    """One pair of ranks (one process spawn) runs both DDP scenarios below, one after the other."""
    out = tmp_path_factory.mktemp("ddp")
    _run_two_ranks(_ddp_worker, str(tiny_data), str(out))
    return out


def _ddp_worker(rank, world, port, data_dir, out_dir):
    _rank_env(rank, world, port)
    _ddp_sync_scenario(rank, Path(data_dir), Path(out_dir))
    import torch.distributed as dist

    dist.barrier()  # both ranks are done with the first run before the second starts
    _ddp_cpu_scenario(rank, Path(data_dir), Path(out_dir))
    _leave_process_group()


def test_ddp_two_processes_stay_in_sync(ddp_runs):
    p0 = torch.load(ddp_runs / "rank0.pt")
    p1 = torch.load(ddp_runs / "rank1.pt")
    assert p0.keys() == p1.keys()
    for k in p0:
        assert torch.equal(p0[k], p1[k]), k
    _, prog = params(ddp_runs / "ddp" / "last.pt")
    assert prog["step"] == 3


def _ddp_sync_scenario(rank, data_dir, out_dir):
    import asr.trainsetup as T  # where the model is built

    captured = {}
    orig = T.CTCModel

    class Capture(orig):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            captured["m"] = self

    T.CTCModel = Capture
    try:
        train(tiny_cfg(data_dir, max_steps=3, epochs=3), str(out_dir / "ddp"), progress=False)
    finally:
        T.CTCModel = orig
    torch.save({k: v.detach().clone() for k, v in captured["m"].state_dict().items()}, out_dir / f"rank{rank}.pt")


def test_ddp_ranks_stop_together_and_sum_their_cpu_time(ddp_runs):
    """Each rank gets a fake CPU clock, rank r's running (r + 1) s per step. A CPU budget of
    7.5 s must stop both ranks after step 3 (3 + 6 s): judged on its own clock, rank 1 would
    leave at step 4 and rank 0 at step 8, and the rank left behind would hang."""
    _, prog = params(ddp_runs / "ddp_cpu" / "last.pt")
    assert prog["step"] == 3
    assert prog["cpu_s"] == pytest.approx(9.0)  # the run's CPU time: both ranks' clocks summed


def _ddp_cpu_scenario(rank, data_dir, out_dir):
    import itertools

    ticks = itertools.count()
    time.process_time = lambda: float(next(ticks) * (rank + 1))  # this spawned process only
    train(tiny_cfg(data_dir, epochs=20, max_cpu_hours=7.5 / 3600), str(out_dir / "ddp_cpu"), progress=False)


def _rank_env(rank, world, port):
    """The environment torchrun gives a rank, which ``train`` reads to join the process group."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE=str(world), RANK=str(rank),
                      LOCAL_RANK=str(rank))


def _leave_process_group():
    """Both ranks leave together: a rank that tears down its connections while the other is
    still using them can abort it ("terminate called without an active exception")."""
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def test_lr_schedule_shape():
    cfg = TrainConfig(warmup_steps=10, decay_steps=100, final_lr_ratio=0.1)
    f = lr_lambda(cfg)
    assert f(0) == pytest.approx(0.1) and f(9) == pytest.approx(1.0)
    assert f(60) < f(20) < 1.0
    assert f(110) == pytest.approx(0.1) and f(10_000) == pytest.approx(0.1)


@pytest.mark.parametrize("conf", sorted(glob.glob(str(ROOT / "recipes" / "*" / "conf" / "*.toml"))))
def test_every_recipe_config_builds_a_model(conf):
    from dataclasses import replace

    from asr.model import CTCModel

    cfg = TrainConfig.from_sources(conf, [])
    assert cfg.train_manifest  # no default path: every recipe names its data
    model = CTCModel(replace(cfg.model, vocab_size=cfg.bpe_vocab if cfg.units == "bpe" else 29, n_mels=80))
    lp, lens = model(torch.randn(1, 100, 80), torch.tensor([100]))
    assert lp.shape == (1, 25, model.cfg.vocab_size)


def test_repeated_set_options_accumulate():
    """`--set a=1 --set b=2` keeps both (a plain nargs option silently dropped all but the last)."""
    from asr.cli import build_parser
    args = build_parser().parse_args(["train", "--exp", "x", "--set", "threads=1", "lr=1e-3",
                                      "--set", "conv_strides=[2,3]"])
    cfg = TrainConfig.from_sources(None, args.set)
    assert (cfg.threads, cfg.lr, cfg.model.conv_strides) == (1, 1e-3, (2, 3))


def test_config_overrides_and_errors(tmp_path):
    cfg = TrainConfig.from_sources(None, ["rnn_hidden=128", "conv_strides=[2,3]", "augment=false", "lr=1e-4"])
    assert cfg.model.rnn_hidden == 128 and cfg.model.conv_strides == (2, 3) and cfg.augmentation.augment is False
    assert cfg.lr == 1e-4
    with pytest.raises(ValueError, match="unknown training option"):
        TrainConfig.from_sources(None, ["nope=1"])
    with pytest.raises(ValueError, match="key=value"):
        TrainConfig.from_sources(None, ["rnn_hidden"])
    # each option is checked by the config that declares it
    with pytest.raises(ValueError, match="rnn_type"):
        TrainConfig.from_sources(None, ["rnn_type=rnn"])  # asr.model.ModelConfig
    with pytest.raises(ValueError, match="aug_prob"):
        TrainConfig.from_sources(None, ["aug_prob=2"])  # AugmentOptions
    with pytest.raises(ValueError, match="log_every"):
        TrainConfig.from_sources(None, ["log_every=0"])
    with pytest.raises(ValueError, match="unknown training option 'vocab_size'"):
        TrainConfig.from_sources(None, ["vocab_size=30"])  # from the tokenizer, not an option
    with pytest.raises(ValueError, match="train_manifest is not set"):
        train(TrainConfig(), str(tmp_path / "e"), progress=False)
    assert not (tmp_path / "e").exists()


def test_data_paths_expand_environment_variables(tmp_path, monkeypatch):
    """${VAR} and ${VAR:-default} in the data paths of a config file and of --set, nowhere else."""
    conf = tmp_path / "c.toml"
    conf.write_text('train_manifest = "${DATA}/train.jsonl"\n'
                    'extra_train = ["${DATA}/a.jsonl", "${ASR_TEST_UNSET:-/fallback}/b.jsonl"]\n'
                    'dev_manifest = "${ASR_TEST_UNSET:-/d}/dev.jsonl"\n')
    monkeypatch.setenv("DATA", "/data/x")
    monkeypatch.delenv("ASR_TEST_UNSET", raising=False)
    cfg = TrainConfig.from_sources(str(conf), ["aug_dir=${DATA}/aug", 'extra_dev=["${DATA}/e.jsonl"]'])
    assert cfg.train_manifest == "/data/x/train.jsonl"
    assert cfg.extra_train == ("/data/x/a.jsonl", "/fallback/b.jsonl")
    assert (cfg.dev_manifest, cfg.augmentation.aug_dir, cfg.extra_dev) == ("/d/dev.jsonl", "/data/x/aug", ("/data/x/e.jsonl",))
    monkeypatch.setenv("ASR_TEST_UNSET", "/set")
    assert TrainConfig.from_sources(str(conf), []).dev_manifest == "/set/dev.jsonl"
    # an unset variable without a default names the option and the variable
    with pytest.raises(ValueError, match=r"option train_manifest: environment variable NOPE_UNSET_VAR is not set"):
        TrainConfig.from_sources(None, ["train_manifest=${NOPE_UNSET_VAR}/t.jsonl"])
    # the stored config holds the expanded paths, and round-trips
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg and "${" not in json.dumps(cfg.to_dict())


# the flat options of the trainer before its configuration was split into parts (a last.pt's
# train_config, TOML files and --set use them): all still accepted, no more added by the split
OLD_KEYS = ("train_manifest extra_train dev_manifest select_metric extra_dev aug_dir max_utt_seconds valid_max_utts "
            "init_from units bpe_vocab rnn_type rnn_layers rnn_hidden conv_channels conv_kernel conv_strides dropout "
            "max_batch_seconds lr warmup_steps decay_steps final_lr_ratio weight_decay grad_clip epochs max_steps "
            "max_hours max_cpu_hours augment spec_augment voice_channel_prob aug_first_epoch aug_prob sorta_grad "
            "ckpt_minutes log_every cmvn_utts num_workers threads seed").split()
# keys added since the split (each with a default that keeps old runs unchanged)
NEW_KEYS = ["codec_prob", "online_cmn"]


def test_flat_options_are_those_of_old_checkpoints():
    cfg = TrainConfig.from_sources(str(ROOT / "recipes" / "synth" / "conf" / "lstm.toml"),
                                   ["extra_train=[\"a.jsonl\"]", "voice_channel_prob=0.5", "rnn_layers=5"])
    flat = cfg.to_dict()
    assert sorted(flat) == sorted(OLD_KEYS + NEW_KEYS)
    assert TrainConfig.from_dict(flat) == cfg
    assert (cfg.model.rnn_type, cfg.model.rnn_hidden, cfg.model.rnn_layers, cfg.extra_train) == ("lstm", 444, 5, ("a.jsonl",))
    # an old run's stored options (tuples, TOML lists) read back unchanged
    old = dict(flat, conv_strides=[2, 2], extra_dev=["x.jsonl"])
    assert TrainConfig.from_dict(old).to_dict() == dict(flat, conv_strides=(2, 2), extra_dev=("x.jsonl",))


def test_last_checkpoint_is_a_loadable_model(tiny_data, tmp_path):
    """last.pt (with optimizer and RNG state) loads safely (weights_only) as a model too."""
    from asr.checkpoint import load_model

    train(tiny_cfg(tiny_data, max_steps=2), str(tmp_path / "x"), progress=False)
    rec = load_model(str(tmp_path / "x" / "last.pt"))
    assert rec.model.num_params() > 0


def _plot_tool():
    """tools/plot_training.py as a module (tools/ is not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("plot_training", ROOT / "tools" / "plot_training.py")
    plot = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(plot)
    return plot


def test_plot_training_reads_logs(tiny_data, tmp_path, capsys):
    """tools/plot_training.py turns two runs' log.jsonl into a PNG and a table, on every x axis."""
    plot = _plot_tool()
    train(tiny_cfg(tiny_data, epochs=2), str(tmp_path / "a"), progress=False)
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "log.jsonl").write_text((tmp_path / "a" / "log.jsonl").read_text())
    for x in plot.XLABEL:
        out = tmp_path / f"curves_{x}.png"
        assert plot.main([str(tmp_path / "a"), str(tmp_path / "b" / "log.jsonl"), "--out", str(out), "--x", x]) == 0
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out.splitlines()
    rows = [l.split() for l in table if l.split()[:1] in (["a"], ["b"])]
    assert len(rows) == 2 * len(plot.XLABEL)
    assert all(0 <= float(r[6]) <= 2 and 0 <= float(r[7]) <= 2 for r in rows)  # dev WER, CER columns


def test_plot_training_places_validations_on_the_chosen_axis():
    """A validation record without the chosen quantity (older logs: no audio_h) is placed by
    the training records' value at its step, not by another quantity."""
    plot = _plot_tool()
    tr = [{"step": 100, "audio_h": 10.0, "wall_h": 0.5}, {"step": 200, "audio_h": 20.0, "wall_h": 1.0}]
    assert plot._valid_x({"step": 150, "wall_h": 0.8}, tr, "audio_h") == pytest.approx(15.0)
    assert plot._valid_x({"step": 150, "audio_h": 16.0}, tr, "audio_h") == 16.0


def test_children_cpu_clock_counts_live_and_finished_workers():
    """The training log's loader_cpu_h: CPU time of child processes, seen while they run
    (data-loading workers live for an epoch) and after they exit."""
    import subprocess
    import sys

    from asr.trainproc import children_cpu_seconds

    t0 = children_cpu_seconds()
    # burns 0.6 s of CPU, says so, then waits, alive, until its standard input is closed
    spin = ("import sys, time\nt = time.process_time()\nwhile time.process_time() - t < 0.6: pass\n"
            "print(flush=True)\nsys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", spin], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        proc.stdout.readline()  # it has burnt 0.6 s of CPU and now waits, still alive
        live = children_cpu_seconds() - t0
    finally:
        proc.stdin.close()  # it returns from its read and exits
        proc.wait(timeout=60)
    done = children_cpu_seconds() - t0
    if sys.platform.startswith("linux"):  # elsewhere live children are only counted once they exit
        assert live >= 0.5
    assert done >= 0.5 and done >= live - 0.05


def test_extra_dev_named_dev_and_selection_by_cer(tiny_data, tmp_path):
    """An extra dev manifest whose file is also called dev.jsonl is logged under its folder's name
    (it used to clash with the selection set's "dev" key and crash validation); with
    select_metric="cer" best.pt is chosen, and its meta reports, by dev CER."""
    other = tmp_path / "synth"
    other.mkdir()
    (other / "dev.jsonl").write_text((tiny_data / "dev.jsonl").read_text())
    exp = tmp_path / "e"
    train(tiny_cfg(tiny_data, epochs=2, extra_dev=(str(other / "dev.jsonl"),), select_metric="cer"), str(exp),
          progress=False)
    valid = [json.loads(l) for l in open(exp / "log.jsonl") if '"valid"' in l]
    assert len(valid) == 2 and all("synth_dev" in v and "cer" in v["dev"] for v in valid)
    best = min(valid, key=lambda v: v["dev"]["cer"])
    ck = torch.load(exp / "best.pt", map_location="cpu", weights_only=True)
    assert ck["meta"]["dev"]["cer"] == best["dev"]["cer"]
    assert ck["meta"]["step"] == best["step"]
