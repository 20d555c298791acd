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


def forward_saving(q, k, v, beta, s0, scale, stored, op, rounding):
    """The chunked forward keeping what the backward reads, per chunk: X, W, S (chunk start), U', each
    as stored (rounded where named in `stored`)."""
    r = lambda x, name: rounding(x) if name in stored else x
    bh, t, dk = k.shape
    s = s0.copy()
    saved = []
    for t0 in range(0, t, CHUNK):
        kc, vc, bc = k[:, t0:t0 + CHUNK], v[:, t0:t0 + CHUNK], beta[:, t0:t0 + CHUNK]
        a = np.eye(kc.shape[1]) + np.tril(bc[:, :, None] * (kc @ kc.transpose(0, 2, 1)), -1)
        x = inverse(a, op)
        w = r(op(x) @ (bc[:, :, None] * kc), 'W')
        u = r(op(x) @ (bc[:, :, None] * vc), 'U')
        u_prime = u - op(w) @ op(s).transpose(0, 2, 1)
        saved.append((r(x, 'X'), w, r(s, 'S'), r(u_prime, 'Up')))
        s = s + op(u_prime).transpose(0, 2, 1) @ kc
    return saved, s


def backward(q, k, v, beta, s0, d_out, d_final, scale, stored=frozenset(), operands=False, rounding=bf16):
    """The chunked backward as the Vulkan stages split it (values gradient, backward state pass, q and
    k gradients, WY backward), with the tensors named in `stored` kept in bf16 between stages (forward:
    X W U S Up; backward: dUp dS dW; the gradients written: grads) and every product's f32 operands
    rounded when `operands`. Returns dq, dk, dv, dbeta, dS0."""
    op = rounding if operands else (lambda x: x)
    r = lambda x, name: rounding(x) if name in stored else x
    saved, _ = forward_saving(q, k, v, beta, s0, scale, stored, op, rounding)
    bh, t, dk = k.shape
    mask = np.tril(np.ones((CHUNK, CHUNK)))
    dq, dkk, dv, dbeta = np.zeros(q.shape), np.zeros(k.shape), np.zeros(v.shape), np.zeros(beta.shape)
    ds = d_final.copy()                       # dS_C, carried in f32 by the backward state pass
    T = lambda m: m.transpose(0, 2, 1)
    for ci in range(len(saved) - 1, -1, -1):
        t0 = ci * CHUNK
        sl = slice(t0, t0 + CHUNK)
        kc, vc, qc, bc, doc = k[:, sl], v[:, sl], q[:, sl], beta[:, sl], d_out[:, sl]
        x, w, s_start, u_prime = saved[ci]
        n = kc.shape[1]
        p = scale * (qc @ T(kc)) * mask[:n, :n]
        du_local = r(T(p) @ doc, 'dUp')                               # values gradient
        ds_stored = r(ds, 'dS')
        du = r(du_local + kc @ T(op(ds)), 'dUp')                      # backward state pass
        ds = ds + scale * T(op(doc)) @ qc - T(op(du)) @ op(w)
        dp = (op(doc) @ T(op(u_prime))) * mask[:n, :n]                # q, k gradients
        dq[:, sl] = scale * op(doc) @ op(s_start) + scale * op(dp) @ kc
        dk_partial = scale * T(op(dp)) @ qc + op(u_prime) @ op(ds_stored)
        dw = r(-op(du) @ op(s_start), 'dW')
        kb, vb = bc[:, :, None] * kc, bc[:, :, None] * vc              # WY backward
        dx = op(dw) @ T(kb) + op(du) @ T(vb)
        da = -T(op(x)) @ op(op(dx) @ T(op(x)))
        g = np.tril(da, -1)
        dkb = T(op(x)) @ op(dw) + op(g) @ kc
        dvb = T(op(x)) @ op(du)
        dkk[:, sl] = dk_partial + bc[:, :, None] * dkb + T(op(g)) @ kb
        dv[:, sl] = bc[:, :, None] * dvb
        dbeta[:, sl] = np.sum(dkb * kc, axis=2) + np.sum(dvb * vc, axis=2)
    return [r(g, 'grads') for g in (dq, dkk, dv)] + [dbeta, ds]


def finite_difference_check(rng):
    """The exact backward (nothing rounded) against central differences of
    L = sum(O dO) + sum(S_T dFinal) at a few random entries of every input; returns the largest
    relative disagreement."""
    bh, t, dk, dv, scale = 2, 128, 32, 48, 0.7
    q, k, v, beta, s0 = inputs(rng, bh, t, dk, dv)
    d_out, d_final = rng.uniform(-1, 1, (bh, t, dv)), rng.uniform(-1, 1, (bh, dv, dk))
    grads = backward(q, k, v, beta, s0, d_out, d_final, scale)
    loss = lambda qq, kk, vv, bb, ss: (lambda o, s: np.sum(o * d_out) + np.sum(s * d_final))(*recurrent(qq, kk, vv, bb, ss, scale))
    worst = 0.0
    for which, grad in enumerate(grads):
        for _ in range(4):
            args = [q.copy(), k.copy(), v.copy(), beta.copy(), s0.copy()]
            target = args[[0, 1, 2, 3, 4][which]]
            index = tuple(rng.integers(0, extent) for extent in target.shape)
            h = 1e-6
            target[index] += h
            plus = loss(*args)
            target[index] -= 2 * h
            minus = loss(*args)
            numeric = (plus - minus) / (2 * h)
            worst = max(worst, abs(numeric - grad[index]) / max(abs(numeric), 1e-3))
    return worst


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


BACKWARD_VARIANTS = [
    ('operands rounded toward zero', set(), 'toward zero'),
    ('gradients written in bf16 (dq, dk, dv)', {'grads'}, False),
    ("dU' stored in bf16", {'dUp'}, False),
    ('dS stored in bf16', {'dS'}, False),
    ('dW stored in bf16', {'dW'}, False),
    ("dU', dS, dW stored in bf16", {'dUp', 'dS', 'dW'}, False),
    ("forward's X, W, U, S, U' stored in bf16", {'X', 'W', 'U', 'S', 'Up'}, False),
    ('operands rounded to nearest', set(), True),
    ('operands rounded, every intermediate stored in bf16', {'X', 'W', 'U', 'S', 'Up', 'dUp', 'dS', 'dW'}, True),
    ('the same, gradients written in bf16 too', {'X', 'W', 'U', 'S', 'Up', 'dUp', 'dS', 'dW', 'grads'}, True),
]


def main_backward():
    scale = 0.7
    print(f'backward: exact chunked gradients against central differences, worst relative disagreement '
          f'{finite_difference_check(np.random.default_rng(1)):.1e}')
    for bh, t, dk, dv in [(3, 192, 64, 96), (2, 256, 128, 128), (4, 512, 64, 64)]:
        rng = np.random.default_rng(7 * t + dk + dv)
        q, k, v, beta, s0 = inputs(rng, bh, t, dk, dv)
        d_out, d_final = rng.uniform(-1, 1, (bh, t, dv)), rng.uniform(-1, 1, (bh, dv, dk))
        exact = backward(q, k, v, beta, s0, d_out, d_final, scale)
        print(f'B*H {bh} T {t} Dk {dk} Dv {dv}: backward, norm-wise relative error against the exact chunked gradients')
        for name, stored, operands in BACKWARD_VARIANTS:
            rounding = bf16_toward_zero if operands == 'toward zero' else bf16
            grads = backward(q, k, v, beta, s0, d_out, d_final, scale, stored, bool(operands), rounding)
            errors = '  '.join(f'{label} {relative(g, e):8.2e}' for label, g, e in zip(('dq', 'dk', 'dv', 'dbeta', 'dS0'), grads, exact))
            print(f'  {name:52s} {errors}')


if __name__ == '__main__':
    main()
    main_backward()
