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
//! variant chunk_grad_qk_f32 -DIN_DTYPE=0
//! variant chunk_grad_qk_f16 -DIN_DTYPE=1
//! variant chunk_grad_qk_bf16 -DIN_DTYPE=2
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
} pc;

void storeKeyTile(uint64_t base, uint origin, uint rows, uint c0, float factor)
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = c0 + accColumn(j);
        if (r < rows && c < pc.keyDim) F32Buffer(base).v[origin + r * pc.heads * pc.keyDim + c] = factor * acc[i][j];
    }
}

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
}
