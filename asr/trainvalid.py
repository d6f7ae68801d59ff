"""Validation during training, and the choice of ``EXP/best.pt``.

At each epoch's end (or when a step or time budget ends the run) rank 0 scores the selection
set (``dev_manifest``) and the reported ones (``extra_dev``) with greedy decoding, logs a
``valid`` record, and writes ``best.pt`` when ``select_metric`` on the selection set is the
lowest so far.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict, Sequence

import torch

from .checkpoint import save_checkpoint
from .data import BucketBatchSampler, SpeechDataset, collate
from .decoding import greedy_decode
from .features import LogMel
from .model import CTCModel
from .trainstate import checkpoint_meta

__all__ = ["evaluate_manifest", "validate", "extra_dev_names"]

# keys of a "valid" log record; an extra dev set named like one of them is renamed
_VALID_KEYS = {"time", "type", "step", "epoch", "partial_epoch", "dev", "wall_h", "cpu_h", "loader_cpu_h", "audio_h"}


def extra_dev_names(paths: Sequence[str]) -> Dict[str, str]:
    """Log key -> manifest path: the file stem, or "folder_stem" ("synth_dev" for
    .../synth/dev.jsonl) when the stem is taken (log keys must not clash)."""
    names: Dict[str, str] = {}
    for p in paths:
        name = Path(p).stem
        if name in _VALID_KEYS or name in names:
            name = f"{Path(p).parent.name}_{name}"
        names[name] = p
    return names


@torch.no_grad()
def evaluate_manifest(model: CTCModel, tok, logmel: LogMel, utts, step_s: float, max_seconds: float = 200.0):
    """Dev loss per token, WER and CER (greedy, offline forward == streaming path, with the
    stream's tail padding), scored by :func:`asr.evaluate.score` like every other evaluation."""
    from .evaluate import score
    from .stream import TAIL_PADDING_S

    model.eval()
    ds = SpeechDataset(utts, tok, logmel, tail_padding_s=TAIL_PADDING_S)
    sampler = BucketBatchSampler([u.duration for u in utts], max_seconds, sorta_grad=True, max_duration=1e9)
    loader = torch.utils.data.DataLoader(ds, batch_sampler=sampler, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(0))
    ctc = torch.nn.CTCLoss(blank=0, reduction="sum", zero_infinity=True)
    refs, hyps = {}, {}
    tot_loss, tot_tok = 0.0, 0
    for x, xl, y, yl, idx in loader:
        lp, ol = model(x, xl)
        tot_loss += float(ctc(lp.transpose(0, 1), y, ol, yl))
        tot_tok += int(yl.sum())
        for b, i in enumerate(idx):
            hyps[i] = greedy_decode(lp[b], int(ol[b]), tok, step_s).text
            refs[i] = utts[i].text
    keys = sorted(refs)
    r = [refs[k] for k in keys]
    h = [hyps[k] for k in keys]
    sc = score(r, h)
    model.train()
    return {"loss": tot_loss / max(tot_tok, 1), "wer": sc.wer, "cer": sc.cer, "utts": len(keys),
            "examples": [{"ref": r[i], "hyp": h[i]} for i in range(min(3, len(r)))]}


def _numbers(res: dict) -> dict:
    return {k: v for k, v in res.items() if k != "examples"}


def validate(run, epoch: int, partial_epoch: bool) -> None:
    """Scores a :class:`asr.trainsetup.TrainRun`'s dev sets, logs them, and writes ``best.pt`` on
    a new best ``select_metric`` (kept in ``run.state["best_wer"]``: the key predates the option)."""
    cfg, st, data = run.cfg, run.state, run.data
    res = evaluate_manifest(run.model, run.tok, run.logmel, data.dev, run.step_s)
    extra = {name: evaluate_manifest(run.model, run.tok, run.logmel, u, run.step_s) for name, u in data.extra_dev.items()}
    run.log(type="valid", step=st["step"], epoch=epoch, partial_epoch=partial_epoch, dev=res,
            **{k: _numbers(v) for k, v in extra.items()},
            wall_h=st["wall_s"] / 3600, cpu_h=st["cpu_s"] / 3600,
            loader_cpu_h=st["loader_cpu_s"] / 3600, audio_h=st["audio_s"] / 3600)
    print(f"epoch {epoch}: dev loss {res['loss']:.3f} WER {res['wer']:.3f} CER {res['cer']:.3f}  "
          + "  ".join(f"{k} WER {v['wer']:.3f}" for k, v in extra.items()), file=sys.stderr)
    if st["best_wer"] is None or res[cfg.select_metric] < st["best_wer"]:
        st["best_wer"], st["best_step"] = res[cfg.select_metric], st["step"]
        meta = checkpoint_meta(cfg, st, run.model)
        meta["dev"] = _numbers(res)
        meta["extra_dev"] = {k: _numbers(v) for k, v in extra.items()}
        save_checkpoint(run.exp_dir / "best.pt", run.model, run.tok, run.fcfg, meta=meta)
