"""A compact trainable GoldFinch (Finch-C2 / Finch x060 + GOLD, RWKV-6 FFN) in plain PyTorch, for CPU training.

GoldFinch is github.com/recursal/GoldFinch-paper at commit 4fbc70c6 (src/model.py Transformer,
tmix/tmix_x060c2.py, tmix/tmix_x060.py, tmix/tmix_gold.py, cmix/cmix_x060.py; the formulas with
file:line references are in the GoldFinch notes the fixtures were made with). Parameters carry the
repository's names, shapes and registration order (state_dict keys == what its trainer saves), so
`torch.save(model.state_dict())` is a GoldFinch checkpoint and `load_pth` reads one strictly.

Layer kinds, told apart by each block's att.* keys (no config is stored in a checkpoint):
  x060  plain Finch time mix (rwkv_torch.TimeMix6, the RWKV-6 module, with the repository's key order:
        gate.weight before output.weight; has gate.weight, time_maa_g)
  c2    Finch-C2 (time_maa_v2, time_value2_w1/w2; no gate): u = 0, k *= 1 - exp(-exp(w)), y += v2,
        LayerNorm over all C channels
  gold  GOLD (query.weight, time_maa_v_cache; no key/value/receptance): softmax attention whose keys
        come from the shared k_cache (made once, after the last RWKV layer, by w_kv_cache_a/b) and
        whose values come from the token embeddings ln0(emb)
Every FFN is RWKV-6's (rwkv_torch.ChannelMix6's forward). GOLD layers are the contiguous top block.
Config facts that are NOT in a checkpoint take the repository's defaults: use_v2 = use_one_minus_w =
1, no RoPE, head_size_divisor 8 (GroupNorm eps 64e-5 in x060), GOLD head size = the RWKV layers'.

The forward pass is sequence mode from the empty state (what training needs): the RWKV recurrences by
rwkv_torch.wkv6 (chunked, checked against the loop), the GOLD attention by
F.scaled_dot_product_attention with a causal mask over the whole sequence (the repository's call,
is_causal = T > 1, which is correct from an empty state). No state/cache is carried between calls.
scripts/train/parity_goldfinch.py checks the logits against the repository's, committed in
fixtures/expected/goldfinch-*.logits.safetensors.

`upgrade_from_v6` is a Python stand-in of `rwkv-upgrade v6-to-goldfinch` (recipes preserve and
goldfinch), used to test the training comparison before the Swift tool exists and to cross-check
what it writes (scripts/train/goldfinch_experiment.py --check-upgrade).
"""
import math
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

import rwkv_torch
from rwkv_torch import _ddd, decay_ramp, shift_lora, token_shift, wkv6

GOLD_KV_RATIO = 16          # kv_cache_compression_ratio (configs.py:18)
INV_OTHER_LAYER_RATIO_UPGRADE = 6   # configs/goldfinch_upgrade.yaml


def rms_norm(x, eps=1e-8):
    """src/norm.py rms_norm: x / (‖x‖₂·D^−½ + eps), the eps added to the RMS."""
    return x / ((x.size(-1) ** -0.5) * x.norm(2, dim=-1, keepdim=True) + eps)


def split_layer(n_layer, inv_other_layer_ratio):
    """src/model.py get_second_submodel_layer_id: the first GOLD layer's index (float maths, truncation)."""
    return int(n_layer * (inv_other_layer_ratio - 1) / inv_other_layer_ratio)


def upgrade_layers(n_layer_old, ratio=INV_OTHER_LAYER_RATIO_UPGRADE):
    """The smallest L with split_layer(L) == n_layer_old: GOLD layers added on top of the Finch's."""
    L = n_layer_old + 1
    while split_layer(L, ratio) < n_layer_old:
        L += 1
    if split_layer(L, ratio) != n_layer_old:
        raise ValueError(f"no n_layer puts the first GOLD layer at {n_layer_old}")
    return L


def _ratios(layer_id, n_layer):
    r01 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
    return r01, 1.0 - layer_id / n_layer


# ---------------------------------------------------------------------------------------------
# Finch-C2 time mix (tmix/tmix_x060c2.py)


class TimeMixC2(nn.Module):
    def __init__(self, C, H, layer_id, n_layer, d_mix=32, d_decay=64):
        super().__init__()
        self.H, self.N = H, C // H
        r01, r10 = _ratios(layer_id, n_layer)
        ddd = _ddd(C)
        self.time_maa_x = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_r = nn.Parameter(1.0 - ddd ** (0.5 * r10))
        self.time_maa_k = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_v = nn.Parameter(1.0 - (ddd ** r10 + 0.3 * r01))
        self.time_maa_w = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_v2 = nn.Parameter(1.0 - (ddd ** r10 + 0.3 * r01))
        self.time_maa_w2 = nn.Parameter(torch.zeros(5, d_mix, C).uniform_(-0.01, 0.01))   # registered before w1
        self.time_maa_w1 = nn.Parameter(torch.zeros(C, d_mix * 5))
        self.time_decay = nn.Parameter(decay_ramp(C, r01).reshape(1, 1, C))
        self.time_decay_w1 = nn.Parameter(torch.zeros(C, d_decay))
        self.time_decay_w2 = nn.Parameter(torch.zeros(d_decay, C).uniform_(-0.01, 0.01))
        self.time_value2_w1 = nn.Parameter(torch.zeros(C, d_decay))
        self.time_value2_w2 = nn.Parameter(torch.zeros(d_decay, C).uniform_(-0.01, 0.01))
        n = torch.arange(C, dtype=torch.float32)
        # stored, but unused with use_v2 (u = 0): it gets no gradient, as in the repository
        self.time_faaaa = nn.Parameter((r01 * (1 - n / (C - 1)) + ((n + 1) % 3 - 1) * 0.1).reshape(H, C // H))
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.LayerNorm(C)

    def forward(self, x):
        B, T, C = x.shape
        H, N = self.H, self.N
        xx = token_shift(x) - x
        mr, mk, mv, mw, mv2 = shift_lora(self, x, xx)                      # ORDER r, k, v, w, v2
        xr = x + xx * (self.time_maa_r + mr)
        xk = x + xx * (self.time_maa_k + mk)
        xv = x + xx * (self.time_maa_v + mv)
        xw = x + xx * (self.time_maa_w + mw)
        xv2 = x + xx * (self.time_maa_v2 + mv2)
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        v2 = self.value(xv2) + torch.tanh(xv2 @ self.time_value2_w1) @ self.time_value2_w2
        w = self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
        k = k * (1 - torch.exp(-torch.exp(w)))                             # use_one_minus_w
        u = torch.zeros(H, N, dtype=x.dtype, device=x.device)              # use_v2: no bonus
        y = wkv6(*(z.view(B, T, H, N) for z in (r, k, v, -torch.exp(w))), u).reshape(B, T, C)
        y = self.ln_x(y + v2)
        return self.output(y)


# ---------------------------------------------------------------------------------------------
# GOLD time mix (tmix/tmix_gold.py)


class TimeMixGold(nn.Module):
    def __init__(self, C, H, layer_id, n_layer, d_mix=32, d_lora=None):
        super().__init__()
        self.H = H
        r01, r10 = _ratios(layer_id, n_layer)
        ddd = _ddd(C)
        d_lora = d_lora or max(C // 16, 64)
        self.time_maa_x = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_q = nn.Parameter(1.0 - ddd ** (0.5 * r10))
        self.time_maa_v_cache = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_k = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_v = nn.Parameter(1.0 - (ddd ** r10 + 0.3 * r01))
        self.time_maa_q_w1 = nn.Parameter(torch.zeros(C, d_mix))
        self.time_maa_q_w2 = nn.Parameter(torch.empty(d_mix, C).uniform_(-0.01, 0.01))
        self.time_maa_kv_w1 = nn.Parameter(torch.zeros(C, d_mix * 2))
        self.time_maa_kv_w2 = nn.Parameter(torch.empty(2, d_mix, C).uniform_(-0.01, 0.01))
        self.time_key_w1 = nn.Parameter(torch.zeros(C, d_lora))
        self.time_key_w2 = nn.Parameter(torch.zeros(d_lora, C).uniform_(-0.01, 0.01))
        self.time_value_w1 = nn.Parameter(torch.zeros(C, d_lora))
        self.time_value_w2 = nn.Parameter(torch.zeros(d_lora, C).uniform_(-0.01, 0.01))
        self.query = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_q = nn.LayerNorm(C)
        self.ln_k = nn.LayerNorm(C)
        self.ln_v = nn.LayerNorm(C)
        self.ln_x = nn.LayerNorm(C)

    def forward(self, x, xo, kc):
        """x: ln1 output [B, T, C]; xo: ln0(emb) [B, T, C]; kc: the k_cache [B, T, C]."""
        B, T, C = x.shape
        H = self.H
        K = C // H
        xx = token_shift(x) - x
        mq = torch.tanh((x + xx * self.time_maa_x) @ self.time_maa_q_w1) @ self.time_maa_q_w2
        o = rms_norm(xo)
        do = token_shift(o) - o
        h = torch.tanh((o + do * self.time_maa_v_cache) @ self.time_maa_kv_w1)
        h = h.view(B * T, self.time_maa_kv_w2.size(0), -1).transpose(0, 1)
        mk, mv = torch.bmm(h, self.time_maa_kv_w2).view(2, B, T, C).unbind(0)   # ORDER k, v
        dk = token_shift(kc) - kc
        xq = x + xx * (self.time_maa_q + mq)
        k = kc + dk * (self.time_maa_k + mk)
        v = o + do * (self.time_maa_v + mv)
        k = k + torch.tanh(k @ self.time_key_w1) @ self.time_key_w2
        v = v + torch.tanh(v @ self.time_value_w1) @ self.time_value_w2
        q = self.ln_q(self.query(xq))
        k = self.ln_k(k)
        v = self.ln_v(v)
        q, k, v = (z.view(B, T, H, K).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=T > 1)     # scale 1/sqrt(K)
        y = self.ln_x(y.transpose(1, 2).reshape(B, T, C))
        return self.output(y)


class TimeMixX060(rwkv_torch.TimeMix6):
    """tmix/tmix_x060.py: RWKV-6's time mix (same init, same forward); the repository registers gate
    before output (receptance, key, value, gate, output, ln_x), RWKV-LM output before gate."""

    def __init__(self, *args):
        super().__init__(*args)
        for name in ("gate", "output", "ln_x"):
            self._modules[name] = self._modules.pop(name)


class ChannelMixG(rwkv_torch.ChannelMix6):
    """cmix/cmix_x060.py: RWKV-6's channel mix (same forward); its token-shift init is 1 - ddd^r10."""

    def __init__(self, C, F_, layer_id, n_layer):
        super().__init__(C, F_, layer_id, n_layer)
        _, r10 = _ratios(layer_id, n_layer)
        with torch.no_grad():
            self.time_maa_k.copy_(1.0 - _ddd(C) ** r10)
            self.time_maa_r.copy_(1.0 - _ddd(C) ** r10)


# ---------------------------------------------------------------------------------------------
# Model


class Block(nn.Module):
    def __init__(self, kind, layer_id, cfg):
        super().__init__()
        C, L = cfg["n_embd"], cfg["n_layer"]
        self.kind, self.layer_id = kind, layer_id
        H = C // cfg["head_size"]
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C)
        if kind == "x060":
            self.att = TimeMixX060(C, H, layer_id, L, cfg["d_mix"], cfg["d_decay"])
        elif kind == "c2":
            self.att = TimeMixC2(C, H, layer_id, L, cfg["d_mix"], cfg["d_decay"])
        elif kind == "gold":
            self.att = TimeMixGold(C, H, layer_id, L, cfg["d_mix_gold"], cfg["d_lora_gold"])
        else:
            raise ValueError(kind)
        self.ffn = ChannelMixG(C, cfg["dim_ffn"], layer_id, L)

    def forward(self, x, xo=None, kc=None):
        if self.kind == "gold":
            x = x + self.att(self.ln1(x), xo, kc)
        else:
            x = x + self.att(self.ln1(x))
        return x + self.ffn(self.ln2(x))


class GoldFinch(nn.Module):
    """cfg: n_layer, n_embd, vocab, head_size, dim_ffn, d_mix, d_decay, kinds (one per layer) and, with GOLD
    layers, d_mix_gold, d_lora_gold, kv_dim (w_kv_cache_a's output width)."""

    arch = "goldfinch"

    def __init__(self, cfg):
        super().__init__()
        self.cfg = dict(cfg)
        kinds = cfg["kinds"]
        C = cfg["n_embd"]
        assert len(kinds) == cfg["n_layer"]
        self.split = kinds.index("gold") if "gold" in kinds else len(kinds)
        if any(k != "gold" for k in kinds[self.split:]):
            raise ValueError(f"GOLD layers must be the contiguous top block: {kinds}")
        if self.split == 0:
            raise ValueError("a GOLD layer needs an RWKV layer below it (its k_cache)")
        self.emb = nn.Embedding(cfg["vocab"], C)
        self.blocks = nn.ModuleList([Block(k, i, cfg) for i, k in enumerate(kinds)])
        self.ln_out = nn.LayerNorm(C)
        self.head = nn.Linear(C, cfg["vocab"], bias=False)
        if self.split < len(kinds):
            self.w_kv_cache_a = nn.Linear(C, cfg["kv_dim"], bias=False)
            self.w_kv_cache_b = nn.Linear(cfg["kv_dim"] + C, C, bias=False)

    def forward(self, idx):
        x = self.blocks[0].ln0(self.emb(idx))
        xo, kc = x, None
        for i, blk in enumerate(self.blocks):
            x = blk(x, xo, kc)
            if i == self.split - 1 and self.split < len(self.blocks):
                # k_cache from the residual stream after the last RWKV layer and the ln0 output
                kc = rms_norm(self.w_kv_cache_b(torch.cat([xo, self.w_kv_cache_a(x)], dim=-1)))
        return self.head(self.ln_out(x))


# ---------------------------------------------------------------------------------------------
# Checkpoints


def layer_kind(sd, i):
    a = f"blocks.{i}.att."
    has = lambda n: a + n in sd  # noqa: E731
    if has("query.weight") and has("time_maa_v_cache") and not (has("key.weight") or has("value.weight")
                                                                 or has("receptance.weight")):
        return "gold"
    if has("time_maa_v2") and has("time_value2_w1") and not (has("gate.weight") or has("time_maa_g")):
        return "c2"
    if has("gate.weight") and has("time_maa_g") and not has("time_maa_v2") and has("time_maa_w1"):
        return "x060"
    raise ValueError(f"block {i}: neither a Finch x060, a Finch-C2 nor a GOLD time mix")


def is_goldfinch(sd):
    """A GoldFinch checkpoint: a GOLD or Finch-C2 layer somewhere (a pure x060 file is an RWKV-6)."""
    if "w_kv_cache_a.weight" in sd:
        return True
    return any(k.endswith(".att.time_maa_v2") for k in sd)


def config_from_state_dict(sd):
    """Layer kinds and shapes read from the tensors (never from a formula)."""
    L = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    kinds = [layer_kind(sd, i) for i in range(L)]
    V, C = sd["emb.weight"].shape
    rwkv = [i for i, k in enumerate(kinds) if k != "gold"]
    if not rwkv:
        raise ValueError("no RWKV layer: the head size cannot be known")
    a = f"blocks.{rwkv[0]}.att."
    H, N = sd[a + "time_faaaa"].shape
    if H * N != C:
        raise ValueError(f"heads {H} x {N} != n_embd {C}")
    cfg = dict(n_layer=L, n_embd=C, vocab=V, head_size=N, dim_ffn=sd["blocks.0.ffn.key.weight"].shape[0],
               d_mix=sd[a + "time_maa_w2"].shape[1], d_decay=sd[a + "time_decay_w1"].shape[1], kinds=kinds)
    has_gold = "gold" in kinds
    if has_gold != ("w_kv_cache_a.weight" in sd and "w_kv_cache_b.weight" in sd):
        raise ValueError("w_kv_cache_a/b must be present exactly when there are GOLD layers")
    if has_gold:
        g = f"blocks.{kinds.index('gold')}.att."
        cfg.update(d_mix_gold=sd[g + "time_maa_q_w1"].shape[1], d_lora_gold=sd[g + "time_key_w1"].shape[1],
                   kv_dim=sd["w_kv_cache_a.weight"].shape[0])
        if tuple(sd["w_kv_cache_b.weight"].shape) != (C, C + cfg["kv_dim"]):
            raise ValueError(f"w_kv_cache_b.weight {tuple(sd['w_kv_cache_b.weight'].shape)} != ({C}, {C + cfg['kv_dim']})")
    return cfg


def load_state_dict(sd):
    model = GoldFinch(config_from_state_dict(sd))
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model


def load_pth(path):
    return load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


save_pth = rwkv_torch.save_pth   # a flat dict in registration order; refuses non-finite values


# ---------------------------------------------------------------------------------------------
# The upgrade, in Python (a stand-in and cross-check of `rwkv-upgrade v6-to-goldfinch`)


NEW_ZERO_IN_PRESERVE = ("att.output.weight", "ffn.value.weight")


@torch.no_grad()
def upgrade_from_v6(sd6, recipe="preserve", seed=0):
    """configs/goldfinch_upgrade.yaml applied to an RWKV-6 state dict: tmix x060, tmix2 gold, ratio 6,
    n_layer the smallest L with int(L·5/6) = L_old. Blocks 0..L_old-1 and emb/ln_out/head are the
    RWKV-6's tensors unchanged (as stored); every new tensor (GOLD blocks, w_kv_cache_a/b) is the
    repository's constructor value for its index in the new model (time_* ramps, LoRA first factors
    zero, second U(±0.01), LayerNorms ones/zeros, Linear weights torch's default kaiming-uniform,
    i.e. what load_partial leaves apart from the uninitialised matrices). recipe "preserve" then
    zeroes the GOLD blocks' att.output.weight and ffn.value.weight, so the logits are the RWKV-6's.
    Returns an OrderedDict in the repository's key order, fp32 for the new tensors."""
    if recipe not in ("preserve", "goldfinch"):
        raise ValueError(recipe)
    arch, c6 = rwkv_torch.config_from_state_dict(sd6)
    if arch != "v6":
        raise ValueError(f"an RWKV-6 is needed, not {arch}")
    L_old = c6["n_layer"]
    L = upgrade_layers(L_old)
    C = c6["n_embd"]
    cfg = dict(n_layer=L, n_embd=C, vocab=c6["vocab"], head_size=c6["head_size"], dim_ffn=c6["dim_ffn"],
               d_mix=c6["d_mix"], d_decay=c6["d_decay"], kinds=["x060"] * L_old + ["gold"] * (L - L_old),
               d_mix_gold=32, d_lora_gold=max(C // 16, 64), kv_dim=int(C / GOLD_KV_RATIO))
    torch.manual_seed(seed)
    fresh = GoldFinch(cfg).state_dict()
    out = OrderedDict()
    for k, v in fresh.items():
        if k in sd6:
            if tuple(sd6[k].shape) != tuple(v.shape):
                raise ValueError(f"{k}: {tuple(sd6[k].shape)} in the RWKV-6, {tuple(v.shape)} in the GoldFinch")
            out[k] = sd6[k]
        else:
            out[k] = v.clone()
            if recipe == "preserve" and k.startswith("blocks.") and k.endswith(NEW_ZERO_IN_PRESERVE):
                out[k].zero_()
    missing = [k for k in sd6 if k not in out]
    if missing:
        raise ValueError(f"RWKV-6 tensors with no place in the GoldFinch: {missing[:5]}")
    return out
