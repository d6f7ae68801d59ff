"""Acoustic model: global CMVN [-> causal running mean] -> causal conv subsampling -> unidirectional RNN stack -> CTC.

The model holds no stream state. Streaming callers own a state dictionary
(see :meth:`CTCModel.init_state`) and pass it through :meth:`CTCModel.infer`;
training calls :meth:`CTCModel.forward`, which is ``infer`` from a fresh state.
Both paths run the same code, so a stream fed in any chunking gives the same
log-probabilities as one whole-utterance call.

State layout (every tensor has the batch on dim 0, so streams are stacked with
``torch.cat`` and split with ``torch.split``; see :func:`stack_states`):

* ``conv{i}``: ``(B, channels_in, kernel - stride)`` - the last input frames of
  conv layer ``i``, its causal left context;
* ``h``: ``(B, layers, hidden)`` - RNN hidden state; ``c``: same, LSTM only;
* ``cmn_sum``: ``(B, n_mels)`` float64 and ``cmn_n``: ``(B, 1)`` - the running sum and count of
  the (globally normalised) frames so far, with ``online_cmn`` only.

This module imports nothing from data, training or serving code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

__all__ = ["ModelConfig", "CTCModel", "quantize_int8", "stack_states", "unstack_states", "State"]

State = Dict[str, Tensor]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture; stored in every checkpoint (``ModelConfig(**ckpt["config"])``)."""

    n_mels: int = 80  # input feature bins (must match FeatureConfig.n_mels)
    vocab_size: int = 29  # CTC outputs including blank (id 0)
    conv_channels: int = 256  # channels of the subsampling convolutions
    conv_kernel: int = 3  # time kernel of each subsampling conv (causal: left context kernel-stride)
    conv_strides: Tuple[int, ...] = (2, 2)  # one entry per conv layer; product = frame-rate reduction
    rnn_type: str = "gru"  # "gru" or "lstm": the recurrent cell (compared at equal parameters)
    rnn_layers: int = 4  # stacked unidirectional layers
    rnn_hidden: int = 384  # hidden units per layer
    dropout: float = 0.1  # between RNN layers, training only
    online_cmn: float = 0.0  # causal running mean subtraction after the global CMVN, its prior weight in
    # frames (0 = off): frame t has the mean of frames 0..t subtracted, shrunk towards the global mean
    # (zero) as if ``online_cmn`` frames of it came first; follows a stream's channel (microphone, gain, EQ)
    # Layers are pre-LayerNorm with residual connections: LayerNorm helps CTC leave its
    # initial plateau and residuals keep deep stacks trainable.

    def __post_init__(self):
        if self.rnn_type not in ("gru", "lstm"):
            raise ValueError(f"rnn_type must be 'gru' or 'lstm', got {self.rnn_type!r}")
        object.__setattr__(self, "conv_strides", tuple(self.conv_strides))
        for name in ("n_mels", "vocab_size", "conv_channels", "rnn_layers", "rnn_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not self.conv_strides or min(self.conv_strides) < 1:
            raise ValueError(f"conv_strides must be one or more strides >= 1, got {list(self.conv_strides)}")
        if self.conv_kernel < max(self.conv_strides):
            raise ValueError("conv_kernel must be >= every conv stride")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if not self.online_cmn >= 0.0:
            raise ValueError(f"online_cmn must be >= 0 (frames of prior; 0 = off), got {self.online_cmn}")

    @property
    def subsampling(self) -> int:
        """Input frames per output step."""
        s = 1
        for x in self.conv_strides:
            s *= x
        return s

    def to_dict(self) -> dict:
        d = asdict(self)
        d["conv_strides"] = list(self.conv_strides)
        return d


class GlobalCMVN(nn.Module):
    """Per-bin global mean/variance normalisation; statistics are buffers saved with the model."""

    def __init__(self, n_mels: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(n_mels))
        self.register_buffer("istd", torch.ones(n_mels))

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        self.mean.copy_(mean)
        self.istd.copy_(1.0 / std.clamp_min(1e-5))

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.mean) * self.istd


def online_cmn(x: Tensor, lengths: Tensor, total: Tensor, count: Tensor, prior: float
               ) -> Tuple[Tensor, Tensor, Tensor]:
    """Causal running mean subtraction. x: ``(B, T, F)`` (zero past each item's length), lengths:
    ``(B,)``; total ``(B, F)`` float64 and count ``(B, 1)``: the sum and number of the frames before.

    Frame t becomes ``x_t - (total + x_0 + .. + x_t) / (prior + count + t + 1)``: its own
    stream's mean so far, shrunk towards zero (the global CMVN's mean) by ``prior`` frames. Sums
    are float64, so a stream fed in any chunking gets the same values to float32 rounding.
    Returns the normalised frames (zero past the lengths) and the new total and count.
    """
    T = x.shape[1]
    sums = total[:, None, :] + torch.cumsum(x.double(), dim=1)  # (B, T, F)
    n = count[:, None, :] + torch.arange(1, T + 1, device=x.device, dtype=torch.float64)[None, :, None]
    y = x - (sums / (prior + n)).to(x.dtype)
    valid = torch.arange(T, device=x.device)[None, :] < lengths[:, None]
    y = y * valid[..., None]
    last = (lengths - 1).clamp_min(0)
    new_total = torch.where((lengths > 0)[:, None], sums[torch.arange(x.shape[0]), last], total)
    return y, new_total, count + lengths[:, None].to(count.dtype)


class CausalConv(nn.Module):
    """1-D conv over time, causal, strided; left context carried as state.

    Input is consumed in whole stride blocks: ``T`` input frames give ``T // stride``
    outputs; output ``t`` sees input frames ``[(t+1)*stride - kernel, (t+1)*stride)``.
    The first call is left-padded with zeros (the initial state).
    """

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int):
        super().__init__()
        self.kernel, self.stride, self.c_in = kernel, stride, c_in
        self.context = kernel - stride
        self.conv = nn.Conv1d(c_in, c_out, kernel, stride)
        self.act = nn.GELU()

    def forward(self, x: Tensor, lengths: Tensor, cache: Tensor) -> Tuple[Tensor, Tensor, Tensor]:
        """x: (B, C_in, T); cache: (B, C_in, context). Returns (B, C_out, T//stride), lengths, new cache."""
        B, _, T = x.shape
        full = torch.cat([cache, x], dim=2)  # (B, C, context + T)
        n_out = T // self.stride
        z = full[:, :, : self.context + n_out * self.stride]
        y = self.act(self.conv(z) if torch.is_grad_enabled() else self._conv_gemm(z))
        out_lengths = torch.div(lengths, self.stride, rounding_mode="floor")
        # new cache: the `context` frames before each stream's first unconsumed frame
        if self.context > 0:
            end = out_lengths * self.stride + self.context  # index into `full`
            idx = end[:, None] - self.context + torch.arange(self.context, device=x.device)[None]
            new_cache = torch.gather(full, 2, idx[:, None, :].expand(B, full.shape[1], self.context))
        else:
            new_cache = cache
        return y, out_lengths, new_cache

    def _conv_gemm(self, z: Tensor) -> Tensor:
        """``self.conv(z)`` as one matrix product over unfolded windows (inference).

        Streaming steps run with oneDNN off (see :func:`asr.stream.decode_streams`), and
        ATen's fallback convolution is slow for batches of short inputs (~20 ms for 50
        streams x 6 frames at 256 channels vs ~0.6 ms as a GEMM); the values are equal up
        to float rounding.
        """
        w, b = self.conv.weight, self.conv.bias  # (C_out, C_in, kernel), (C_out,)
        u = z.unfold(2, self.kernel, self.stride)  # (B, C_in, T', kernel)
        B, C, Tp, K = u.shape
        y = torch.addmm(b, u.permute(0, 2, 1, 3).reshape(B * Tp, C * K), w.reshape(w.shape[0], C * K).t())
        return y.reshape(B, Tp, -1).transpose(1, 2)  # (B, C_out, T')


class CTCModel(nn.Module):
    """Streaming CTC acoustic model.

    ``forward(feats, lengths) -> (log_probs, out_lengths)`` for training;
    ``infer(feats, lengths, state) -> (log_probs, out_lengths, state)`` for streaming.

    feats: ``(B, T, n_mels)`` log-mel frames (10 ms each), *un*-normalised (the model
    applies its own global CMVN); lengths: ``(B,)`` valid frames per item.
    log_probs: ``(B, T // subsampling, vocab_size)``, one step per
    ``subsampling * 10`` ms. Only whole subsampling blocks are consumed: callers
    streaming audio keep the ``T % subsampling`` leftover frames for the next call.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.cmvn = GlobalCMVN(cfg.n_mels)
        convs = []
        c_in = cfg.n_mels
        for s in cfg.conv_strides:
            convs.append(CausalConv(c_in, cfg.conv_channels, cfg.conv_kernel, s))
            c_in = cfg.conv_channels
        self.convs = nn.ModuleList(convs)
        self.proj = nn.Linear(cfg.conv_channels, cfg.rnn_hidden)
        rnn_cls = nn.GRU if cfg.rnn_type == "gru" else nn.LSTM
        self.norms = nn.ModuleList(nn.LayerNorm(cfg.rnn_hidden) for _ in range(cfg.rnn_layers))
        self.rnns = nn.ModuleList(
            rnn_cls(cfg.rnn_hidden, cfg.rnn_hidden, batch_first=True) for _ in range(cfg.rnn_layers)
        )
        self.dropout = nn.Dropout(cfg.dropout)
        self.out_norm = nn.LayerNorm(cfg.rnn_hidden)
        self.output = nn.Linear(cfg.rnn_hidden, cfg.vocab_size)

    # ---- state ---------------------------------------------------------------------------
    def init_state(self, batch: int = 1) -> State:
        """Fresh state for ``batch`` streams (zeros: the same left padding training sees)."""
        p = next(self.parameters())
        st: State = {}
        c_in = self.cfg.n_mels
        for i, conv in enumerate(self.convs):
            st[f"conv{i}"] = p.new_zeros(batch, c_in, conv.context)
            c_in = self.cfg.conv_channels
        st["h"] = p.new_zeros(batch, self.cfg.rnn_layers, self.cfg.rnn_hidden)
        if self.cfg.online_cmn > 0:
            st["cmn_sum"] = p.new_zeros(batch, self.cfg.n_mels, dtype=torch.float64)
            st["cmn_n"] = p.new_zeros(batch, 1, dtype=torch.float64)
        if self.cfg.rnn_type == "lstm":
            st["c"] = p.new_zeros(batch, self.cfg.rnn_layers, self.cfg.rnn_hidden)
        return st

    # ---- compute -------------------------------------------------------------------------
    def forward(self, feats: Tensor, lengths: Tensor) -> Tuple[Tensor, Tensor]:
        log_probs, out_lengths, _ = self.infer(feats, lengths, None, need_state=False)
        return log_probs, out_lengths

    def infer(
        self, feats: Tensor, lengths: Tensor, state: Optional[State] = None, need_state: bool = True
    ) -> Tuple[Tensor, Tensor, State]:
        """Streaming step. ``need_state=False`` skips computing the returned state (training)."""
        B = feats.shape[0]
        if state is None:
            state = self.init_state(B)
        new_state: State = {}
        x = self.cmvn(feats)
        # zero the padding so it never leaks into the conv caches of shorter items
        T = x.shape[1]
        mask = torch.arange(T, device=x.device)[None, :] < lengths[:, None]
        x = x * mask[..., None]
        if self.cfg.online_cmn > 0:
            x, new_state["cmn_sum"], new_state["cmn_n"] = online_cmn(
                x, lengths, state["cmn_sum"], state["cmn_n"], self.cfg.online_cmn)
        x = x.transpose(1, 2)  # (B, n_mels, T)
        lens = lengths
        for i, conv in enumerate(self.convs):
            x, lens, new_state[f"conv{i}"] = conv(x, lens, state[f"conv{i}"])
        x = self.proj(x.transpose(1, 2))  # (B, T', H)
        Tp = x.shape[1]
        h0 = state["h"].transpose(0, 1).contiguous()  # (layers, B, H)
        c0 = state["c"].transpose(0, 1).contiguous() if "c" in state else None
        hs: List[Tensor] = []
        cs: List[Tensor] = []
        if Tp == 0:
            new_state["h"] = state["h"]
            if c0 is not None:
                new_state["c"] = state["c"]
            return x.new_zeros(B, 0, self.cfg.vocab_size), lens, new_state
        # Padding at the end of a batch never changes the valid outputs of a
        # unidirectional RNN, so the batch runs unpacked (packing is ~2x slower on CPU).
        # Each item's final state is read at its own length: for a GRU the output *is*
        # the hidden state; an LSTM's cell state is not an output, so a ragged LSTM
        # batch whose state is needed is packed.
        uniform = bool((lens == Tp).all())
        pack = (not uniform) and need_state and c0 is not None
        last = (lens - 1).clamp_min(0)
        has = (lens > 0)[None, :, None]
        for k, (norm, rnn) in enumerate(zip(self.norms, self.rnns)):
            y = norm(x)
            hx = h0[k : k + 1] if c0 is None else (h0[k : k + 1], c0[k : k + 1])
            if pack:
                packed = pack_padded_sequence(y, lens.clamp_min(1).cpu(), batch_first=True, enforce_sorted=False)
                y, hn = rnn(packed, hx)
                y, _ = pad_packed_sequence(y, batch_first=True, total_length=Tp)
            else:
                y, hn = rnn(y, hx)
            if need_state:
                if c0 is None:
                    hn_h = hn if uniform else y[torch.arange(B), last][None]
                else:
                    hn_h, hn_c = hn
                    cs.append(torch.where(has, hn_c, c0[k : k + 1]))
                # items with no new frames keep their old state
                hs.append(torch.where(has, hn_h, h0[k : k + 1]))
            x = x + self.dropout(y)
        if not need_state:
            logits = self.output(self.out_norm(x))
            return torch.log_softmax(logits, dim=-1), lens, {}
        new_state["h"] = torch.cat(hs, 0).transpose(0, 1)
        if c0 is not None:
            new_state["c"] = torch.cat(cs, 0).transpose(0, 1)
        logits = self.output(self.out_norm(x))
        return torch.log_softmax(logits, dim=-1), lens, new_state

    def deepen(self, rnn_layers: int) -> "CTCModel":
        """A copy with ``rnn_layers`` RNN layers: this model's, then new ones on top that start
        as exact identities, so the copy computes the same log-probabilities (and carries a
        larger state). Used to grow a trained model's depth and go on training it.

        A new layer's candidate (GRU ``n`` / LSTM ``g``) has zero input weights and biases: its
        hidden state starts at zero and stays there, so the residual stream passes unchanged,
        while the gradient reaches those input weights from the first step (unlike a layer
        whose gates were saturated shut). The other weights keep their random initialisation.
        """
        have = self.cfg.rnn_layers
        if rnn_layers < have:
            raise ValueError(f"deepen: rnn_layers={rnn_layers} is fewer than the model's {have}")
        grown = CTCModel(replace(self.cfg, rnn_layers=rnn_layers))
        missing, unexpected = grown.load_state_dict(self.state_dict(), strict=False)
        new = {f"{m}.{k}." for m in ("norms", "rnns") for k in range(have, rnn_layers)}
        assert not unexpected and all(any(n.startswith(p) for p in new) for n in missing), (missing, unexpected)
        H = self.cfg.rnn_hidden
        cand = slice(2 * H, 3 * H)  # rows of the candidate: GRU gates (r, z, n), LSTM gates (i, f, g, o)
        with torch.no_grad():
            for rnn in grown.rnns[have:]:
                rnn.weight_ih_l0[cand].zero_()
                rnn.bias_ih_l0[cand].zero_()
                rnn.bias_hh_l0[cand].zero_()
        return grown.train(self.training)

    def num_params(self) -> int:
        """Trainable parameters (of the float model, also after :func:`quantize_int8`)."""
        return getattr(self, "_float_params", None) or sum(p.numel() for p in self.parameters())


def quantize_int8(model: CTCModel) -> CTCModel:
    """An inference copy with int8 weights in the RNN and linear layers (dynamic quantisation).

    Weights are quantised once (int8, one scale per output channel); activations are quantised
    on the fly, per call. The copy has the same ``infer``/state interface and is
    about 4x smaller in memory where it matters: at batch 1 a streaming step is bound
    by reading the RNN weights, so this is where single-stream CPU time goes down.
    The float model's exact chunking invariance becomes approximate: each call's
    activation scale depends on the frames in that call, so outputs of different
    chunkings (or streams batched with different others) differ by quantisation noise
    (``tools/bench_rtf.py --int8`` and ``asr eval --int8`` measure speed and accuracy;
    README "How it works" has the figures). The float model is left unchanged.
    """
    import copy
    import warnings

    try:
        from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
    except ImportError as e:  # torch.ao.quantization is deprecated upstream; say so if it is gone
        raise RuntimeError(f"int8 needs torch.ao.quantization, which this torch ({torch.__version__}) lacks: {e}") from None
    if model.training:
        raise ValueError("quantize_int8 is for inference: call model.eval() first")
    n = model.num_params()
    with warnings.catch_warnings():
        # torch deprecates its eager quantisation API (in favour of torchao, which has no RNNs yet)
        warnings.filterwarnings("ignore", message=r"(?s).*deprecated")
        # per output channel: on the bundled model, mean |log-prob error| 0.08 vs 0.12 per tensor
        qconfig = {cls: per_channel_dynamic_qconfig for cls in (nn.GRU, nn.LSTM, nn.Linear)}
        q = quantize_dynamic(copy.deepcopy(model), qconfig, dtype=torch.qint8)
    q._float_params = n
    return q


def stack_states(states: List[State]) -> State:
    """Per-stream states (batch 1 or more each) -> one batched state."""
    return {k: torch.cat([s[k] for s in states], 0) for k in states[0]}


def unstack_states(state: State, sizes: Optional[List[int]] = None) -> List[State]:
    """Batched state -> per-stream states (batch 1 each, or ``sizes``)."""
    B = next(iter(state.values())).shape[0]
    sizes = sizes or [1] * B
    parts = {k: torch.split(v, sizes, 0) for k, v in state.items()}
    return [{k: parts[k][i] for k in state} for i in range(len(sizes))]
