"""A compact trainable RWKV-5.2 (x052), RWKV-6 (x060) and RWKV-7 (x070) in plain PyTorch, for CPU training.

Parameters carry the official BlinkDL names and shapes (state_dict keys == the .pth keys), and are
registered in RWKV-LM's order. Initialisation follows RWKV-LM's trainers:
  RWKV-5.2: RWKV-v5/src/model.py (RWKV_Tmix_x052, RWKV_CMix_x052, RWKV.generate_init_weight),
  RWKV-6: RWKV-v5/src/model.py (RWKV_Tmix_x060, RWKV_CMix_x060, RWKV.generate_init_weight),
  RWKV-7: RWKV-v7/train_temp/src/model.py (RWKV_Tmix_x070, RWKV_CMix_x070, generate_init_weight),
          the version of BlinkDL/RWKV-LM at commit 524481d (model.py last changed e6f74b6, 2026-07-16).
The forward pass is sequence mode: GEMMs over all tokens, the WKV state recurrence written out in
torch (RWKV-5.2 and RWKV-6 chunked with a numerically safe pairwise decay, RWKV-7 as a loop over
time), no CUDA kernels. scripts/train/parity.py checks the logits against the official `rwkv` package.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

HEAD_SIZE = 64


def shift_lora(mix, x, xx):
    """RWKV-6's token-shift LoRA (also Finch-C2's): tanh((x + xx * time_maa_x) @ time_maa_w1),
    split into five, each through its slice of time_maa_w2; the five offsets, in the module's order."""
    B, T, C = x.shape
    m = torch.tanh((x + xx * mix.time_maa_x) @ mix.time_maa_w1).view(B * T, 5, -1).transpose(0, 1)
    return torch.bmm(m, mix.time_maa_w2).view(5, B, T, C).unbind(0)


def _ddd(C):
    return (torch.arange(C, dtype=torch.float32) / C).reshape(1, 1, C)


def _ortho(shape, scale):
    """RWKV-v7 trainer's ortho_init: orthogonal, gain sqrt(rows/cols) when rows > cols."""
    x = torch.empty(shape)
    gain = math.sqrt(shape[0] / shape[1]) if shape[0] > shape[1] else 1
    nn.init.orthogonal_(x, gain=gain * scale)
    return x


def token_shift(x):
    """x[t-1] (zeros at t = 0): nn.ZeroPad2d((0, 0, 1, -1)) of the trainers."""
    return F.pad(x, (0, 0, 1, -1))


# ---------------------------------------------------------------------------------------------
# WKV recurrences (B, T, H, N) -> (B, T, H, N), state zero at t = 0


def wkv6(r, k, v, logw, u, chunk=16):
    """RWKV-6: y_t = r_t (diag(u) k_tᵀ v_t + S_{t-1});  S_t = diag(w_t) S_{t-1} + k_tᵀ v_t.

    logw = log w_t <= 0, unbounded below. Within a chunk, pairs s < t need exp(cum_{t-1} - cum_s) <= 1:
    factored into two matmuls when the chunk's total decay allows it in fp32, else pairwise (never an
    overflow, however fast the decay); between chunks the state is carried.
    """
    B, T, H, N = r.shape
    L = chunk
    pad = (-T) % L
    if pad:
        r, k, v, logw = (F.pad(z, (0, 0, 0, 0, 0, pad)) for z in (r, k, v, logw))
    Tp = T + pad
    nc = Tp // L
    r, k, v, lw = (z.view(B, nc, L, H, N).transpose(2, 3) for z in (r, k, v, logw))  # B nc H L N
    cum = lw.cumsum(dim=3)                      # inclusive: cum_t = sum_{s<=t} log w_s
    cum_ex = cum - lw                           # exclusive: cum_{t-1}
    # intra-chunk, s < t: A[t,s] = sum_i r_t,i k_s,i exp(cum_{t-1,i} - cum_{s,i})
    if float(-cum[:, :, :, -1, :].detach().min()) < 60:  # exp(+-60) fits fp32: factor into two matmuls
        A = (r * cum_ex.exp()) @ (k * (-cum).exp()).transpose(-1, -2)
        A = A.masked_fill(~torch.ones(L, L, dtype=torch.bool, device=r.device).tril(-1), 0.0)
    else:  # fast decays: the pairwise form, every exponent <= 0
        diff = cum_ex.unsqueeze(4) - cum.unsqueeze(3)       # B nc H L(t) L(s) N
        mask = torch.ones(L, L, dtype=torch.bool, device=r.device).tril(-1)
        diff = diff.masked_fill(~mask.view(1, 1, 1, L, L, 1), -float("inf"))
        A = torch.einsum("bchtn,bchsn,bchtsn->bchts", r, k, diff.exp())
    y = A @ v                                                         # B nc H L N
    y = y + (r * k * u.view(1, 1, H, 1, N)).sum(-1, keepdim=True) * v  # bonus, current token
    # inter-chunk: state S[i][j] (key i, value j)
    rq = r * cum_ex.exp()                                   # r_t decayed from the chunk start
    kq = k * (cum[:, :, :, -1:, :] - cum).exp()             # k_s decayed to the chunk end
    wend = cum[:, :, :, -1, :].exp()                        # B nc H N
    S = r.new_zeros(B, H, N, N)
    outs = []
    for c in range(nc):
        outs.append(rq[:, c] @ S)
        S = wend[:, c].unsqueeze(-1) * S + kq[:, c].transpose(-1, -2) @ v[:, c]
    y = y + torch.stack(outs, dim=1)
    y = y.transpose(2, 3).reshape(B, Tp, H, N)
    return y[:, :T]


def wkv7(r, w, k, v, a, b):
    """RWKV-7: S_t = S_{t-1} (diag(w_t) + a_tᵀ b_t) + v_tᵀ k_t;  y_t = S_t r_t  (S[value][key]).

    With a = -kk and b = kk * iclr, as in the official package; a loop over time.
    """
    B, T, H, N = r.shape
    S = r.new_zeros(B, H, N, N)
    ys = []
    for t in range(T):
        sa = S @ a[:, t].unsqueeze(-1)                                   # B H N 1
        S = S * w[:, t].unsqueeze(-2) + sa * b[:, t].unsqueeze(-2) + v[:, t].unsqueeze(-1) * k[:, t].unsqueeze(-2)
        ys.append((S @ r[:, t].unsqueeze(-1)).squeeze(-1))
    return torch.stack(ys, dim=1)


def wkv7_chunked(r, w, k, v, a, b, chunk=16):
    """wkv7 computed a chunk at a time (the same numbers up to fp32 rounding, several times faster).

    Within a chunk, with g_t = prod_{s<=t} w_s (per key channel) and z_t = S_{t-1} a_t:
      S_t = S_0 G_t + sum_{s<=t} (z_s b_sᵀ + v_s k_sᵀ) G_t G_s⁻¹,
      z_t = S_0 (g_{t-1} a_t) + sum_{s<t} [z_s (b_s g_{t-1}/g_s)ᵀ a_t + v_s (k_s g_{t-1}/g_s)ᵀ a_t],
    a unit lower-triangular system for the z's; y_t = S_t r_t likewise.
    """
    B, T, H, N = r.shape
    L = chunk
    pad = (-T) % L
    if pad:
        r, k, v, a, b = (F.pad(z, (0, 0, 0, 0, 0, pad)) for z in (r, k, v, a, b))
        w = F.pad(w, (0, 0, 0, 0, 0, pad), value=1.0)
    Tp = T + pad
    nc = Tp // L
    r, w, k, v, a, b = (z.view(B, nc, L, H, N).transpose(2, 3) for z in (r, w, k, v, a, b))  # B nc H L N
    lw = torch.log(w)
    cum = lw.cumsum(dim=3)
    cum_ex = cum - lw
    # RWKV-7 decays are >= exp(-e^-0.5) = 0.545 per token, so |cum| <= 0.61 L within a chunk and the
    # ratios factor into exp(cum_t) * exp(-cum_s) without overflow (e^9.7 at L = 16): plain matmuls.
    inv = (-cum).exp()
    strict = torch.ones(L, L, dtype=torch.bool, device=r.device).tril(-1)
    incl = torch.ones(L, L, dtype=torch.bool, device=r.device).tril(0)
    a_ex, r_in = a * cum_ex.exp(), r * cum.exp()
    b_inv, k_inv = (b * inv).transpose(-1, -2), (k * inv).transpose(-1, -2)
    A_ab = (a_ex @ b_inv).masked_fill(~strict, 0.0)
    A_ak = (a_ex @ k_inv).masked_fill(~strict, 0.0)
    A_rb = (r_in @ b_inv).masked_fill(~incl, 0.0)
    A_rk = (r_in @ k_inv).masked_fill(~incl, 0.0)
    eye = torch.eye(L, device=r.device, dtype=r.dtype)
    M = eye - A_ab
    a_g, r_g = a_ex, r_in                        # a_t g_{t-1}, r_t g_t
    T1 = torch.linalg.solve_triangular(M, a_g, upper=False, unitriangular=True)          # B nc H L N(key)
    Zv = torch.linalg.solve_triangular(M, A_ak @ v, upper=False, unitriangular=True)     # B nc H L N(value)
    y_in = A_rk @ v                                                                        # B nc H L N
    to_end = (cum[:, :, :, -1:, :] - cum).exp()  # g_L / g_s
    b_end, k_end = b * to_end, k * to_end
    g_end = cum[:, :, :, -1, :].exp()            # B nc H N(key)
    S = r.new_zeros(B, H, N, N)                  # S[value][key]
    ys = []
    for c in range(nc):
        St = S.transpose(-1, -2)                                 # key x value
        Z = T1[:, c] @ St + Zv[:, c]                             # B H L N(value)
        ys.append(r_g[:, c] @ St + A_rb[:, c] @ Z + y_in[:, c])
        S = S * g_end[:, c].unsqueeze(-2) + Z.transpose(-1, -2) @ b_end[:, c] + v[:, c].transpose(-1, -2) @ k_end[:, c]
    y = torch.stack(ys, dim=1).transpose(2, 3).reshape(B, Tp, H, N)
    return y[:, :T]


# ---------------------------------------------------------------------------------------------
# RWKV-5.2 ("Eagle" before RWKV-6: static token shift and decay, GroupNorm per head)


def decay_ramp(C, r01):
    """RWKV-LM's RWKV-5.2/6 time_decay init: -6 + 5·(c/(C-1))^(0.7 + 1.3·r01)."""
    n = torch.arange(C, dtype=torch.float32)
    return -6 + 5 * (n / (C - 1)) ** (0.7 + 1.3 * r01)


def add_bonus_projections_norm(module, C, H, r01):
    """What RWKV-5.2's and RWKV-6's time mixes register alike after the decay, in RWKV-LM's order:
    the bonus (its zigzag init), the receptance/key/value/output/gate projections and ln_x."""
    n = torch.arange(C, dtype=torch.float32)
    zig = ((n + 1) % 3 - 1) * 0.1
    module.time_faaaa = nn.Parameter((r01 * (1 - n / (C - 1)) + zig).reshape(H, C // H))
    module.receptance = nn.Linear(C, C, bias=False)
    module.key = nn.Linear(C, C, bias=False)
    module.value = nn.Linear(C, C, bias=False)
    module.output = nn.Linear(C, C, bias=False)
    module.gate = nn.Linear(C, C, bias=False)
    module.ln_x = nn.GroupNorm(H, C, eps=64e-5)


class TimeMix5(nn.Module):
    """RWKV_Tmix_x052: kx = x·μ_k + x_prev·(1 − μ_k) (likewise v, r, g); per-channel decay
    w = exp(−exp(time_decay)) and bonus u = time_faaaa, both (H, N) and the same at every token.
    The trainer's ln_x(x / head_size_divisor) with GroupNorm eps 1e-5 and divisor 8 is GroupNorm with
    eps 64e-5 on x itself (the official package's form): the same function."""

    def __init__(self, C, H, layer_id, n_layer):
        super().__init__()
        self.H, self.N = H, C // H
        r01 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
        r10 = 1.0 - layer_id / n_layer
        ddd = _ddd(C)
        self.time_mix_k = nn.Parameter(ddd ** r10)
        self.time_mix_v = nn.Parameter(ddd ** r10 + 0.3 * r01)
        self.time_mix_r = nn.Parameter(ddd ** (0.5 * r10))
        self.time_mix_g = nn.Parameter(ddd ** (0.5 * r10))
        self.time_decay = nn.Parameter(decay_ramp(C, r01).reshape(H, C // H))
        add_bonus_projections_norm(self, C, H, r01)

    def forward(self, x):
        B, T, C = x.shape
        H, N = self.H, self.N
        xx = token_shift(x)
        mix = lambda m: x * m + xx * (1 - m)  # noqa: E731
        r, k, v = self.receptance(mix(self.time_mix_r)), self.key(mix(self.time_mix_k)), self.value(mix(self.time_mix_v))
        g = F.silu(self.gate(mix(self.time_mix_g)))
        logw = (-torch.exp(self.time_decay)).view(1, 1, H, N).expand(B, T, H, N)
        y = wkv6(*(z.view(B, T, H, N) for z in (r, k, v)), logw, self.time_faaaa)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * g)


class ChannelMix5(nn.Module):
    """RWKV_CMix_x052: the RWKV-6 channel mix with static lerps time_mix_k, time_mix_r."""

    def __init__(self, C, F_, layer_id, n_layer):
        super().__init__()
        r10 = 1.0 - layer_id / n_layer
        ddd = _ddd(C)
        self.time_mix_k = nn.Parameter(ddd ** r10)
        self.time_mix_r = nn.Parameter(ddd ** r10)
        self.key = nn.Linear(C, F_, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(F_, C, bias=False)

    def forward(self, x):
        xx = token_shift(x)
        k = torch.relu(self.key(x * self.time_mix_k + xx * (1 - self.time_mix_k))) ** 2
        return torch.sigmoid(self.receptance(x * self.time_mix_r + xx * (1 - self.time_mix_r))) * self.value(k)


# ---------------------------------------------------------------------------------------------
# RWKV-6


class TimeMix6(nn.Module):
    def __init__(self, C, H, layer_id, n_layer, d_mix=32, d_decay=64):
        super().__init__()
        self.H, self.N = H, C // H
        r01 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
        r10 = 1.0 - layer_id / n_layer
        ddd = _ddd(C)
        self.time_maa_x = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_w = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_k = nn.Parameter(1.0 - ddd ** r10)
        self.time_maa_v = nn.Parameter(1.0 - (ddd ** r10 + 0.3 * r01))
        self.time_maa_r = nn.Parameter(1.0 - ddd ** (0.5 * r10))
        self.time_maa_g = nn.Parameter(1.0 - ddd ** (0.5 * r10))
        self.time_maa_w1 = nn.Parameter(torch.zeros(C, d_mix * 5))
        self.time_maa_w2 = nn.Parameter(torch.zeros(5, d_mix, C).uniform_(-0.01, 0.01))
        n = torch.arange(C, dtype=torch.float32)
        self.time_decay = nn.Parameter(decay_ramp(C, r01).reshape(1, 1, C))
        self.time_decay_w1 = nn.Parameter(torch.zeros(C, d_decay))
        self.time_decay_w2 = nn.Parameter(torch.zeros(d_decay, C).uniform_(-0.01, 0.01))
        add_bonus_projections_norm(self, C, H, r01)

    def forward(self, x):
        B, T, C = x.shape
        H, N = self.H, self.N
        xx = token_shift(x) - x
        mw, mk, mv, mr, mg = shift_lora(self, x, xx)
        xw = x + xx * (self.time_maa_w + mw)
        xk = x + xx * (self.time_maa_k + mk)
        xv = x + xx * (self.time_maa_v + mv)
        xr = x + xx * (self.time_maa_r + mr)
        xg = x + xx * (self.time_maa_g + mg)
        r, k, v = self.receptance(xr), self.key(xk), self.value(xv)
        g = F.silu(self.gate(xg))
        w = self.time_decay + torch.tanh(xw @ self.time_decay_w1) @ self.time_decay_w2
        logw = -torch.exp(w)
        y = wkv6(*(z.view(B, T, H, N) for z in (r, k, v, logw)), self.time_faaaa)
        y = self.ln_x(y.reshape(B * T, C)).view(B, T, C)
        return self.output(y * g)


class ChannelMix6(nn.Module):
    def __init__(self, C, F_, layer_id, n_layer):
        super().__init__()
        r10 = 1.0 - layer_id / n_layer
        ddd = _ddd(C)
        self.time_maa_k = nn.Parameter(1.0 - ddd ** (r10 ** 3))
        self.time_maa_r = nn.Parameter(1.0 - ddd ** (r10 ** 3))
        self.key = nn.Linear(C, F_, bias=False)
        self.receptance = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(F_, C, bias=False)

    def forward(self, x):
        xx = token_shift(x) - x
        k = torch.relu(self.key(x + xx * self.time_maa_k)) ** 2
        return torch.sigmoid(self.receptance(x + xx * self.time_maa_r)) * self.value(k)


# ---------------------------------------------------------------------------------------------
# RWKV-7


def v7_ranks(C):
    """LoRA ranks the RWKV-v7/train_temp trainer builds for width C (decay, iclr, value, gate)."""
    d = lambda f: max(32, int(round(f * C ** 0.5 / 32) * 32))  # noqa: E731
    return dict(d_decay=d(2.5), d_iclr=d(2.5), d_value=d(1.7), d_gate=d(5.0))


class TimeMix7(nn.Module):
    def __init__(self, C, H, layer_id, n_layer, d_decay, d_iclr, d_value, d_gate):
        super().__init__()
        self.H, self.N, self.layer_id = H, C // H, layer_id
        N = C // H
        r01 = layer_id / (n_layer - 1) if n_layer > 1 else 0.0
        r10 = 1.0 - layer_id / n_layer
        ddd = _ddd(C)
        self.x_r = nn.Parameter(1.0 - ddd ** (0.2 * r10))
        self.x_w = nn.Parameter(1.0 - ddd ** (0.9 * r10))
        self.x_k = nn.Parameter(1.0 - ddd ** (0.7 * r10))
        self.x_v = nn.Parameter(1.0 - ddd ** (0.7 * r10))
        self.x_a = nn.Parameter(1.0 - ddd ** (0.9 * r10))
        self.x_g = nn.Parameter(1.0 - ddd ** (0.2 * r10))
        n = torch.arange(C, dtype=torch.float32)
        linear = n / (C - 1) - 0.5
        zz = ((n % N) - (N - 1) / 2) / ((N - 1) / 2)
        zigzag = zz * zz.abs()
        www = -6 + 6 * (n / (C - 1)) ** (1 + 1 * r01 ** 0.3)
        self.w1 = nn.Parameter(torch.zeros(C, d_decay))
        self.w2 = nn.Parameter(_ortho((d_decay, C), 0.1))
        self.w0 = nn.Parameter((www + 0.5 + zigzag * 2.5).reshape(1, 1, C))
        self.a1 = nn.Parameter(torch.zeros(C, d_iclr))
        self.a2 = nn.Parameter(_ortho((d_iclr, C), 0.1))
        self.a0 = nn.Parameter((-0.19 + zigzag * 0.3 + linear * 0.4).reshape(1, 1, C))
        self.v1 = nn.Parameter(torch.zeros(C, d_value))
        self.v2 = nn.Parameter(_ortho((d_value, C), 0.1))
        self.v0 = nn.Parameter((0.73 - linear * 0.4).reshape(1, 1, C))
        self.g1 = nn.Parameter(torch.zeros(C, d_gate))
        self.g2 = nn.Parameter(_ortho((d_gate, C), 0.1))
        self.k_k = nn.Parameter((0.71 - linear * 0.1).reshape(1, 1, C))
        self.k_a = nn.Parameter(torch.zeros(1, 1, C) + 1.02)
        self.r_k = nn.Parameter(torch.zeros(H, N) - 0.04)
        self.receptance = nn.Linear(C, C, bias=False)
        self.key = nn.Linear(C, C, bias=False)
        self.value = nn.Linear(C, C, bias=False)
        self.output = nn.Linear(C, C, bias=False)
        self.ln_x = nn.GroupNorm(H, C, eps=64e-5)

    def forward(self, x, v_first):
        B, T, C = x.shape
        H, N = self.H, self.N
        xx = token_shift(x) - x
        xr, xw, xk, xv, xa, xg = (x + xx * m for m in (self.x_r, self.x_w, self.x_k, self.x_v, self.x_a, self.x_g))
        r = self.receptance(xr)
        w = self.w0 + torch.tanh(xw @ self.w1) @ self.w2
        k = self.key(xk)
        v = self.value(xv)
        if self.layer_id == 0:
            v_first = v
        else:
            v = v + (v_first - v) * torch.sigmoid(self.v0 + (xv @ self.v1) @ self.v2)
        a = torch.sigmoid(self.a0 + (xa @ self.a1) @ self.a2)
        g = torch.sigmoid(xg @ self.g1) @ self.g2
        kk = F.normalize((k * self.k_k).view(B, T, H, N), dim=-1, p=2.0).view(B, T, C)
        k = k * (1 + (a - 1) * self.k_a)
        decay = torch.exp(-0.606531 * torch.sigmoid(w))  # = exp(-exp(-softplus(-w) - 0.5))
        hv = lambda z: z.view(B, T, H, N)  # noqa: E731
        y = wkv7_chunked(hv(r), hv(decay), hv(k), hv(v), hv(-kk), hv(kk * a)).reshape(B * T, C)
        y = self.ln_x(y).view(B, T, C)
        y = y + ((hv(r) * hv(k) * self.r_k).sum(-1, keepdim=True) * hv(v)).view(B, T, C)
        return self.output(y * g), v_first


class ChannelMix7(nn.Module):
    def __init__(self, C, F_, layer_id, n_layer):
        super().__init__()
        r10 = 1.0 - layer_id / n_layer
        self.x_k = nn.Parameter(1.0 - _ddd(C) ** (r10 ** 4))
        self.key = nn.Linear(C, F_, bias=False)
        self.value = nn.Linear(F_, C, bias=False)

    def forward(self, x):
        xx = token_shift(x) - x
        return self.value(torch.relu(self.key(x + xx * self.x_k)) ** 2)


# ---------------------------------------------------------------------------------------------
# Model


class Block(nn.Module):
    def __init__(self, arch, layer_id, cfg):
        super().__init__()
        C, L = cfg["n_embd"], cfg["n_layer"]
        self.layer_id, self.arch = layer_id, arch
        self.ln1 = nn.LayerNorm(C)
        self.ln2 = nn.LayerNorm(C)
        if layer_id == 0:
            self.ln0 = nn.LayerNorm(C)
        H = C // cfg["head_size"]
        if arch == "v5":
            self.att = TimeMix5(C, H, layer_id, L)
            self.ffn = ChannelMix5(C, cfg["dim_ffn"], layer_id, L)
        elif arch == "v6":
            self.att = TimeMix6(C, H, layer_id, L, cfg["d_mix"], cfg["d_decay"])
            self.ffn = ChannelMix6(C, cfg["dim_ffn"], layer_id, L)
        else:
            self.att = TimeMix7(C, H, layer_id, L, cfg["d_decay"], cfg["d_iclr"], cfg["d_value"], cfg["d_gate"])
            self.ffn = ChannelMix7(C, cfg["dim_ffn"], layer_id, L)

    def forward(self, x, v_first):
        if self.layer_id == 0:
            x = self.ln0(x)
        if self.arch in ("v5", "v6"):
            x = x + self.att(self.ln1(x))
        else:
            dx, v_first = self.att(self.ln1(x), v_first)
            x = x + dx
        return x + self.ffn(self.ln2(x)), v_first


class RWKV(nn.Module):
    """arch "v5" (5.2), "v6" or "v7"; cfg: n_layer, n_embd, vocab, head_size, dim_ffn and the LoRA ranks."""

    def __init__(self, arch, cfg):
        super().__init__()
        assert arch in ("v5", "v6", "v7")
        self.arch, self.cfg = arch, dict(cfg)
        self.emb = nn.Embedding(cfg["vocab"], cfg["n_embd"])
        self.blocks = nn.ModuleList([Block(arch, i, cfg) for i in range(cfg["n_layer"])])
        self.ln_out = nn.LayerNorm(cfg["n_embd"])
        self.head = nn.Linear(cfg["n_embd"], cfg["vocab"], bias=False)

    def forward(self, idx):
        x = self.emb(idx)
        v_first = None
        for blk in self.blocks:
            x, v_first = blk(x, v_first)
        return self.head(self.ln_out(x))


def default_config(arch, n_layer, n_embd, vocab=256, head_size=HEAD_SIZE):
    """The shapes RWKV-LM's trainers build: RWKV-5.2 FFN 3.5C (rounded down to 32); RWKV-6 the same FFN,
    D_MIX 32, D_DECAY 64; RWKV-7 FFN 4C and the LoRA ranks of v7_ranks."""
    cfg = dict(n_layer=n_layer, n_embd=n_embd, vocab=vocab, head_size=head_size)
    if arch == "v5":
        cfg.update(dim_ffn=int((n_embd * 3.5) // 32 * 32))
    elif arch == "v6":
        cfg.update(dim_ffn=int((n_embd * 3.5) // 32 * 32), d_mix=32, d_decay=64)
    else:
        cfg.update(dim_ffn=n_embd * 4, **v7_ranks(n_embd))
    return cfg


@torch.no_grad()
def init_model(arch, cfg, seed=0):
    """A new model initialised as RWKV-LM's trainers do (module init, then generate_init_weight)."""
    torch.manual_seed(seed)
    model = RWKV(arch, cfg)
    V, C, L = cfg["vocab"], cfg["n_embd"], cfg["n_layer"]
    for name, p in model.named_parameters():
        if ("ln_" in name or ".ln" in name or "time_" in name or name.endswith("_w1")
                or name.endswith("_w2") or ".weight" not in name):
            if "ln_x.weight" in name:
                p.fill_(((1 + int(name.split(".")[1])) / L) ** 0.7)
        elif name == "emb.weight":
            nn.init.uniform_(p, a=-1e-4, b=1e-4)
        elif name == "head.weight":
            nn.init.orthogonal_(p, gain=0.5 * math.sqrt(V / C) if V > C else 0.5)
        else:
            scale = 1.0
            if any(s in name for s in (".att.output.", ".ffn.value.", ".ffn.receptance.")):
                scale = 0.0
            if ".att.key." in name or ".att.gate." in name:
                scale = 0.1
            if scale == 0:
                p.zero_()
            else:
                nn.init.orthogonal_(p, gain=scale)
    return model


# ---------------------------------------------------------------------------------------------
# BlinkDL .pth files


def config_from_state_dict(sd):
    """Architecture and shapes read from the tensors (never from a formula)."""
    a = "blocks.0.att."
    if a + "r_k" in sd:
        arch = "v7"
    elif a + "time_maa_w1" in sd and a + "time_faaaa" in sd:
        arch = "v6"
    elif (a + "time_mix_k" in sd and a + "time_faaaa" in sd and a + "gate.weight" in sd
          and sd[a + "time_decay"].dim() == 2 and sd[a + "time_decay"].shape[1] > 1):
        arch = "v5"  # 5.2 (as the official package tells it): time_decay (H, N), N > 1; 5.0 / 5.1 are not handled
    else:
        raise ValueError("neither RWKV-5.2 (att.time_mix_k, 2-D att.time_decay), RWKV-6 (att.time_maa_w1) "
                         "nor RWKV-7 (att.r_k) keys found")
    V, C = sd["emb.weight"].shape
    L = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    cfg = dict(n_layer=L, n_embd=C, vocab=V, dim_ffn=sd["blocks.0.ffn.key.weight"].shape[0])
    if arch == "v5":
        H, N = sd[a + "time_faaaa"].shape
        cfg.update(head_size=N)
    elif arch == "v7":
        H, N = sd[a + "r_k"].shape
        cfg.update(head_size=N, d_decay=sd[a + "w1"].shape[1], d_iclr=sd[a + "a1"].shape[1],
                   d_value=sd[a + "v1"].shape[1], d_gate=sd[a + "g1"].shape[1])
    else:
        H, N = sd[a + "time_faaaa"].shape
        cfg.update(head_size=N, d_mix=sd[a + "time_maa_w2"].shape[1], d_decay=sd[a + "time_decay_w1"].shape[1])
    if H * N != C:
        raise ValueError(f"heads {H} x {N} != n_embd {C}")
    return arch, cfg


def load_pth(path):
    sd = torch.load(path, map_location="cpu", weights_only=True)
    arch, cfg = config_from_state_dict(sd)
    model = RWKV(arch, cfg)
    model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return model


def save_pth(model, path, dtype=torch.bfloat16):
    """torch.save of a flat dict in RWKV-LM's parameter order (bf16 like the released files)."""
    sd = {k: v.detach().to(dtype).clone().contiguous() for k, v in model.state_dict().items()}
    for k, v in sd.items():
        if not torch.isfinite(v).all():
            raise ValueError(f"{k}: non-finite values")
    torch.save(sd, path)
