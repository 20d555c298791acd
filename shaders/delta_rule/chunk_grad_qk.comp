#version 460
// Chunked delta rule, backward, per-chunk gradients once dU' and every dS_C are known; one workgroup
// per (chunk, b H + h, 64 columns of Dk), all chunks in one dispatch. (Walking Dk inside one
// workgroup with dP formed once, as chunk_output does with Dv, took 131 registers instead of 128:
// one workgroup per SM instead of two, 504 -> 789 us at D64 and 1602 -> 2200 at D128 on the H200,
// bench/results/2026-12-01-h200-run37.txt.) With Q' = scale Q,
// P = (Q' K^T) ⊙ M, S_0 and dS_C the chunk's start state and end-state gradient:
//   dP = (dO U'^T) ⊙ M                     (in shared memory)
//   dQ = scale (dO S_0 + dP K)
//   dK = dP^T Q' + U' dS_C                 (partial: the WY backward adds its terms)
//   dW = -dU' S_0                          (f32 scratch for the WY backward)
// q, k [B, T, H, Dk] (IN_DTYPE); dO, U', dU' [B, T, H, Dv] f32; dQ, dK, dW [B, T, H, Dk] f32;
// states, dS_C [B H, chunks, Dv, Dk].
// GATED (chunk_decay.glsl; docs/ops.md "Gated chunked form"): with H = (dO U'^T) ⊙ Gamma ⊙ M,
//   dQ = scale (diag(gamma) dO S_0 + H K)
//   dK = H^T Q' + diag(tail) U' dS_C       (partial, as above)
//   dW = -dU' S_0
// and this block of Dk's share of the gradient of the cumulative log decays g (decayParts[z], summed
// and turned into dalpha by chunk_decay_grad.comp):
//   dg_i += gamma_i (dO S_0)_i . q'_i                     (O's decayed read of S_0)
//   dg_i += sum_j D_ij,  dg_j -= sum_i D_ij,  D = H ⊙ (Q' K^T)   (the decays in P)
//   dg_i -= e_i,  dg_{n-1} += sum_i e_i + gamma_C <dS_C, S_0>,  e_i = tail_i (U' dS_C)_i . k_i   (in S_C)
//! variant chunk_grad_qk_f32 -DIN_DTYPE=0
//! variant chunk_grad_qk_f16 -DIN_DTYPE=1
//! variant chunk_grad_qk_bf16 -DIN_DTYPE=2
//! variant chunk_grad_qk_gated_f32 -DIN_DTYPE=0 -DGATED=1
//! variant chunk_grad_qk_gated_f16 -DIN_DTYPE=1 -DGATED=1
//! variant chunk_grad_qk_gated_bf16 -DIN_DTYPE=2 -DGATED=1
//! variant chunk_grad_qk_gated_bf16_cm -DIN_DTYPE=2 -DGATED=1 -DCOOPMAT=1 -O0
//! variant chunk_grad_qk_bf16_cm -DIN_DTYPE=2 -DCOOPMAT=1 -O0
//! variant chunk_grad_qk_bf16_cm_g128 -DIN_DTYPE=2 -DCOOPMAT=1 -DGROUP=128 -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_tiles.glsl"

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t dOut;
    uint64_t uPrime;
    uint64_t dUPrime;
    uint64_t states;
    uint64_t dStates;
    uint64_t dq;        // out
    uint64_t dk;        // out (partial)
    uint64_t dw;        // out
    uint t;
    uint heads;
    uint keyDim;
    uint valueDim;
    float scale;
#if GATED
    uint64_t alpha;         // f32 [B, T, H]
    uint64_t decayParts;    // out: f32 [blocks of Dk + 1, B, T, H]; this workgroup writes part z
#endif
} pc;

void storeKeyTile(uint64_t base, uint origin, uint rows, uint c0, float factor)
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = c0 + accColumn(j);
        if (r < rows && c < pc.keyDim) F32Buffer(base).v[origin + r * pc.heads * pc.keyDim + c] = factor * acc[i][j];
    }
}

#if GATED
shared float rowParts[CHUNK][17];   // per row, the 16 partial sums of the invocations holding it
shared float totals[GROUP];

// Sum over the row of this invocation's acc[i][.] times the elements of a token-major input.
float rowDot(uint i, uint64_t base, uint origin, uint rows, uint c0)
{
    float sum = 0.0;
    uint r = accRow(i);
    [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint c = c0 + accColumn(j);
        if (r < rows && c < pc.keyDim) sum = fma(acc[i][j], loadAs(base, IN_DTYPE, origin + r * pc.heads * pc.keyDim + c), sum);
    }
    return sum;
}
#endif

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads, c0 = gl_WorkGroupID.z * CHUNK;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0);
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateOrigin = (bh * chunks + n) * pc.valueDim * pc.keyDim;
    MatrixView queries = tokenRows(pc.q, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.keyDim);
    MatrixView keys = tokenRows(pc.k, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.keyDim);
    MatrixView outputGrads = tokenRows(pc.dOut, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.valueDim);
    MatrixView newValues = tokenRows(pc.uPrime, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.valueDim);
    MatrixView newValueGrads = tokenRows(pc.dUPrime, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.valueDim);
    // As the B operand: (v, c) -> S[v][c], a Dv x Dk row-major matrix.
    MatrixView state = view(pc.states, DTYPE_F32, stateOrigin, pc.keyDim, 1u, pc.valueDim, pc.keyDim);
    MatrixView stateGrad = view(pc.dStates, DTYPE_F32, stateOrigin, pc.keyDim, 1u, pc.valueDim, pc.keyDim);
    uint origin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.keyDim);

#if GATED
    uint decayOrigin = (b * pc.t + t0) * pc.heads + h, id = gl_LocalInvocationID.x;
    loadLogDecays(pc.alpha, decayOrigin, pc.heads, rows);
    float dg[ACC_ROWS], tailed = 0.0;   // this invocation's share of dg per row; of sum_i e_i
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) dg[i] = 0.0;

    // square = H = (dO U'^T) ⊙ Gamma ⊙ M
    clearAcc();
    multiply(outputGrads, transposed(newValues), 0, 0, pc.valueDim);
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = accColumn(j);
        square[r][c] = c <= r ? acc[i][j] * decayBetween(r, c) : 0.0;
    }
    barrier();

    // dQ = scale (diag(gamma) dO S_0 + H K)
    clearAcc();
    multiply(outputGrads, state, 0, c0, pc.valueDim);
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++)
    {
        float gamma = decayTo(accRow(i));
        dg[i] += pc.scale * gamma * rowDot(i, pc.q, origin, rows, c0);
        [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] *= gamma;
    }
    multiplySquareLeft(false, keys, c0);
    storeKeyTile(pc.dq, origin, rows, c0, pc.scale);

    // dK = diag(tail) U' dS_C + H^T Q'
    clearAcc();
    multiply(newValues, stateGrad, 0, c0, pc.valueDim);
    float first[ACC_ROWS][4];
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++)
    {
        float tail = decayToEnd(accRow(i)), e = tail * rowDot(i, pc.k, origin, rows, c0);
        dg[i] -= e;
        tailed += e;
        [[unroll]] for (uint j = 0; j < 4; j++) first[i][j] = tail * acc[i][j];
    }
    clearAcc();
    multiplySquareLeft(true, queries, c0);
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = fma(pc.scale, acc[i][j], first[i][j]);
    storeKeyTile(pc.dk, origin, rows, c0, 1.0);

    clearAcc();
    multiply(newValueGrads, state, 0, c0, pc.valueDim);
    storeKeyTile(pc.dw, origin, rows, c0, -1.0);

    // D = H ⊙ (Q' K^T) over this block's columns of Dk, into square (each invocation its own elements)
    uint width = min(uint(CHUNK), pc.keyDim - c0);
    MatrixView queryBlock = queries, keyBlock = keys;
    queryBlock.origin += c0;
    keyBlock.origin += c0;
    queryBlock.columns = keyBlock.columns = width;
    clearAcc();
    multiply(queryBlock, transposed(keyBlock), 0, 0, width);
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = accColumn(j);
        square[r][c] *= pc.scale * acc[i][j];
    }
    // gamma_C <dS_C, S_0> over this block's columns
    float overlap = 0.0;
    for (uint e = id; e < pc.valueDim * width; e += GROUP)
    {
        uint at = stateOrigin + (e / width) * pc.keyDim + c0 + e % width;
        overlap = fma(F32Buffer(pc.dStates).v[at], F32Buffer(pc.states).v[at], overlap);
    }
    totals[id] = tailed + chunkDecay() * overlap;
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) rowParts[accRow(i)][id % 16] = dg[i];
    barrier();
    if (id < rows)
    {
        float sum = 0.0;
        for (uint j = 0; j < 16; j++) sum += rowParts[id][j];
        for (uint c = 0; c < CHUNK; c++) sum += square[id][c] - square[c][id];
        if (id == rows - 1) for (uint j = 0; j < GROUP; j++) sum += totals[j];
        F32Buffer(pc.decayParts).v[gl_WorkGroupID.z * pc.t * gl_NumWorkGroups.y + decayOrigin + id * pc.heads] = sum;   // part z of [parts, B, T, H]
    }
#else
    clearAcc();
    multiply(outputGrads, transposed(newValues), 0, 0, pc.valueDim);
    accToSquare(1, 1.0);

    clearAcc();
    multiply(outputGrads, state, 0, c0, pc.valueDim);
    multiplySquareLeft(false, keys, c0);
    storeKeyTile(pc.dq, origin, rows, c0, pc.scale);

    clearAcc();
    multiplySquareLeft(true, queries, c0);
    scaleAcc(pc.scale);
    multiply(newValues, stateGrad, 0, c0, pc.valueDim);
    storeKeyTile(pc.dk, origin, rows, c0, 1.0);

    clearAcc();
    multiply(newValueGrads, state, 0, c0, pc.valueDim);
    storeKeyTile(pc.dw, origin, rows, c0, -1.0);
#endif
}
