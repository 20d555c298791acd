#!/usr/bin/env python3
"""What storing the chunked delta rule's intermediates in bf16 would cost in precision (forward).

A numerics study for docs/ops.md, not part of the build: the chunked (WY) forward of the Vulkan
kernels on fragments written out in float64 with bf16 rounding (round to nearest even) applied at the
points where a kernel would store a tensor in bf16 or round a product's operands, each against a
float64 token-by-token reference on the tests' inputs (DeltaRuleTests.Inputs: bf16 q, k, v; k
L2-normalised; beta in (0.1, 1.9); initial state uniform in +-0.5; scale 0.7). Prints the norm-wise
relative error ||x - x_ref|| / ||x_ref|| of O and of the final state per variant.

Needs numpy (Debian: apt-get install python3-numpy). Run: /usr/bin/python3 tools/delta_bf16_storage.py
Rounding is to nearest, ties to even, as the tile products round by hand, except in the variant
rounded toward zero, which models the cooperative-matrix conversion of the H100 (docs/ops.md,
"Rounding"). Inputs are bf16 in every variant, so the reference sees the same rounded inputs.

Per chunk of 64 tokens (K, V, Q its rows, b its betas, S the chunk-start state, Dv x Dk):
  A = I + strictly_lower(diag(b) K K^T),  X = A^-1
  W = X diag(b) K,  U = X diag(b) V                       (stage 1; stored)
  U' = U - W S^T                                          (state pass; stored)
  O = scale Q S^T + scale (Q K^T (.) M) U'                (M causal with the diagonal)
  S <- S + U'^T K
"""
import numpy as np

CHUNK = 64


def bf16(x):
    """Rounds float64 values to bf16 (through f32, round to nearest even), back to float64."""
    f = np.asarray(x, dtype=np.float32)
    bits = f.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16) << 16
    return rounded.astype(np.uint32).view(np.float32).astype(np.float64)


def bf16_toward_zero(x):
    """Rounds float64 values to bf16 toward zero (drops the low 16 bits of the f32)."""
    f = np.asarray(x, dtype=np.float32)
    return (f.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32).astype(np.float64)


def inputs(rng, bh, t, dk, dv):
    q = bf16(rng.uniform(-1, 1, (bh, t, dk)))
    k = rng.uniform(-1, 1, (bh, t, dk))
    k = bf16(k / np.linalg.norm(k, axis=2, keepdims=True))
    v = bf16(rng.uniform(-1, 1, (bh, t, dv)))
    beta = bf16(rng.uniform(0.1, 1.9, (bh, t)))
    s0 = rng.uniform(-0.5, 0.5, (bh, dv, dk))
    return q, k, v, beta, s0


def recurrent(q, k, v, beta, s0, scale):
    """Token by token: S <- S + beta (v - S k) k^T, o = scale S q."""
    s = s0.copy()
    o = np.empty(v.shape)
    for i in range(q.shape[1]):
        kt, vt, qt = k[:, i], v[:, i], q[:, i]
        error = vt - np.einsum('bvk,bk->bv', s, kt)
        s += beta[:, i, None, None] * np.einsum('bv,bk->bvk', error, kt)
        o[:, i] = scale * np.einsum('bvk,bk->bv', s, qt)
    return o, s


def inverse(a, op):
    """A^-1 of the unit lower triangular A as the kernels form it: the 16 x 16 diagonal blocks inverted
    exactly, each block below them by block forward substitution, X_ij = -X_ii sum_k A_ik X_kj, whose
    products see rounded operands in the rounded mode (op)."""
    x = np.zeros(a.shape)
    blocks = a.shape[1] // 16
    for i in range(blocks):
        bi = slice(16 * i, 16 * i + 16)
        x[:, bi, bi] = np.linalg.inv(a[:, bi, bi])
        for j in range(i - 1, -1, -1):
            bj = slice(16 * j, 16 * j + 16)
            acc = sum(op(a[:, bi, 16 * m:16 * m + 16]) @ op(x[:, 16 * m:16 * m + 16, bj]) for m in range(j, i))
            x[:, bi, bj] = -op(x[:, bi, bi]) @ op(acc)
    return x


def chunked(q, k, v, beta, s0, scale, stored, operands, rounding=bf16):
    """The chunked forward; `stored`: the tensors written in bf16 (subset of W U S Up O P),
    `operands`: round every product's f32 operands to bf16 (the rounded mode), with `rounding`."""
    r = lambda x, name: rounding(x) if name in stored else x
    op = rounding if operands else (lambda x: x)
    bh, t, dk = k.shape
    s = s0.copy()
    o = np.empty(v.shape)
    mask = np.tril(np.ones((CHUNK, CHUNK)))
    for t0 in range(0, t, CHUNK):
        kc, vc, qc, bc = k[:, t0:t0 + CHUNK], v[:, t0:t0 + CHUNK], q[:, t0:t0 + CHUNK], beta[:, t0:t0 + CHUNK]
        n = kc.shape[1]
        a = np.eye(n) + np.tril(bc[:, :, None] * (kc @ kc.transpose(0, 2, 1)), -1)
        x = inverse(a, op)
        w = r(op(x) @ (bc[:, :, None] * kc), 'W')
        u = r(op(x) @ (bc[:, :, None] * vc), 'U')
        states = r(s, 'S')
        u_prime = u - op(w) @ op(s).transpose(0, 2, 1)
        u_stored = r(u_prime, 'Up')
        p = r(scale * (qc @ kc.transpose(0, 2, 1)) * mask[:n, :n], 'P')
        o[:, t0:t0 + n] = r(scale * qc @ op(states).transpose(0, 2, 1) + op(p) @ op(u_stored), 'O')
        s = s + op(u_prime).transpose(0, 2, 1) @ kc
    return o, s


def relative(x, ref):
    return np.linalg.norm(x - ref) / np.linalg.norm(ref)


VARIANTS = [
    ('all f32 (the default, split operands)', set(), False),
    ('operands rounded toward zero', set(), 'toward zero'),
    ('O written in bf16', {'O'}, False),
    ('S stored in bf16 (chunk-start states)', {'S'}, False),
    ("U' stored in bf16", {'Up'}, False),
    ("S and U' stored in bf16", {'S', 'Up'}, False),
    ('W and U stored in bf16', {'W', 'U'}, False),
    ('operands rounded to nearest', set(), True),
    ("operands rounded, S and U' stored in bf16", {'S', 'Up'}, True),
    ('everything in bf16 (W, U, S, U\', P\', O)', {'W', 'U', 'S', 'Up', 'P', 'O'}, True),
]


def main():
    scale = 0.7
    for bh, t, dk, dv in [(3, 192, 64, 96), (6, 512, 64, 64), (3, 512, 128, 128), (4, 1024, 64, 64)]:
        rng = np.random.default_rng(7 * t + dk + dv)
        q, k, v, beta, s0 = inputs(rng, bh, t, dk, dv)
        o_ref, s_ref = recurrent(q, k, v, beta, s0, scale)
        print(f'B*H {bh} T {t} Dk {dk} Dv {dv}: norm-wise relative error against the float64 recurrent form')
        for name, stored, operands in VARIANTS:
            rounding = bf16_toward_zero if operands == 'toward zero' else bf16
            o, s = chunked(q, k, v, beta, s0, scale, stored, bool(operands), rounding)
            print(f'  {name:48s} O {relative(o, o_ref):9.2e}   final state {relative(s, s_ref):9.2e}')


if __name__ == '__main__':
    main()
