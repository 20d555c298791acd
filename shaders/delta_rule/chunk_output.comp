#version 460
// Chunked delta rule, stage 3 (forward) and its mirror in the backward; one workgroup per
// (chunk, b H + h), all chunks in one dispatch, walking Dv 64 columns at a time with P formed once
// (one workgroup per 64 columns, each forming P again, took 779 us at D128 on the H200, run 33). With P = scale (Q K^T ⊙ M),
// M causal with the diagonal (M[i][j] = 1 for j <= i), S_0 the chunk-start state:
//   forward (VALUES_GRADIENT 0):   O = scale Q S_0^T + P U'
//   backward (VALUES_GRADIENT 1):  dU'_local = P^T dO    (the intra-chunk part of dU'; the state
//                                  pass adds K dS_C^T)
// P (or P^T) is formed in shared memory first; rows past the sequence end read as zero.
// q, k [B, T, H, Dk] (IN_DTYPE); U', dO, O, dU' [B, T, H, Dv] f32; states [B H, chunks, Dv, Dk].
// GATED (chunk_decay.glsl): P = scale (Q K^T ⊙ Gamma ⊙ M) and O = diag(gamma) scale Q S_0^T + P U'.
//! variant chunk_output_f32 -DIN_DTYPE=0 -DVALUES_GRADIENT=0
//! variant chunk_output_f16 -DIN_DTYPE=1 -DVALUES_GRADIENT=0
//! variant chunk_output_bf16 -DIN_DTYPE=2 -DVALUES_GRADIENT=0
//! variant chunk_values_grad_f32 -DIN_DTYPE=0 -DVALUES_GRADIENT=1
//! variant chunk_values_grad_f16 -DIN_DTYPE=1 -DVALUES_GRADIENT=1
//! variant chunk_values_grad_bf16 -DIN_DTYPE=2 -DVALUES_GRADIENT=1
//! variant chunk_output_gated_f32 -DIN_DTYPE=0 -DVALUES_GRADIENT=0 -DGATED=1
//! variant chunk_output_gated_f16 -DIN_DTYPE=1 -DVALUES_GRADIENT=0 -DGATED=1
//! variant chunk_output_gated_bf16 -DIN_DTYPE=2 -DVALUES_GRADIENT=0 -DGATED=1
//! variant chunk_output_gated_bf16_cm -DIN_DTYPE=2 -DVALUES_GRADIENT=0 -DGATED=1 -DCOOPMAT=1 -O0
//! variant chunk_values_grad_gated_f32 -DIN_DTYPE=0 -DVALUES_GRADIENT=1 -DGATED=1
//! variant chunk_values_grad_gated_f16 -DIN_DTYPE=1 -DVALUES_GRADIENT=1 -DGATED=1
//! variant chunk_values_grad_gated_bf16 -DIN_DTYPE=2 -DVALUES_GRADIENT=1 -DGATED=1
//! variant chunk_values_grad_gated_bf16_cm -DIN_DTYPE=2 -DVALUES_GRADIENT=1 -DGATED=1 -DCOOPMAT=1 -O0
//! variant chunk_output_bf16_cm -DIN_DTYPE=2 -DVALUES_GRADIENT=0 -DCOOPMAT=1 -O0
//! variant chunk_values_grad_bf16_cm -DIN_DTYPE=2 -DVALUES_GRADIENT=1 -DCOOPMAT=1 -O0
//! variant chunk_output_bf16_cm_g128 -DIN_DTYPE=2 -DVALUES_GRADIENT=0 -DCOOPMAT=1 -DGROUP=128 -O0
//! variant chunk_values_grad_bf16_cm_g128 -DIN_DTYPE=2 -DVALUES_GRADIENT=1 -DCOOPMAT=1 -DGROUP=128 -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_tiles.glsl"

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t values;    // forward: U'; backward: dO
    uint64_t states;    // forward: chunk-start states; backward: unused
    uint64_t result;    // forward: O; backward: dU'_local
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
#if GATED
    uint64_t alpha;     // f32 [B, T, H]
#endif
} pc;

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0);
    MatrixView queries = tokenRows(pc.q, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dk);
    MatrixView keys = tokenRows(pc.k, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dk);
    MatrixView values = tokenRows(pc.values, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.dv);

#if GATED
    loadLogDecays(pc.alpha, (b * pc.t + t0) * pc.heads + h, pc.heads, rows);
#endif
    clearAcc();
#if VALUES_GRADIENT
    // square = P^T: square[j][i] = scale k_j . q_i for i >= j (gated: times Gamma_ij)
    multiply(keys, transposed(queries), 0, 0, pc.dk);
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = accColumn(j);
#if GATED
        square[r][c] = c >= r ? pc.scale * acc[i][j] * decayBetween(c, r) : 0.0;
#else
        square[r][c] = c >= r ? pc.scale * acc[i][j] : 0.0;
#endif
    }
    barrier();
#else
    multiply(queries, transposed(keys), 0, 0, pc.dk);
#if GATED
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = accColumn(j);
        square[r][c] = c <= r ? pc.scale * acc[i][j] * decayBetween(r, c) : 0.0;
    }
    barrier();
#else
    accToSquare(1, pc.scale);
#endif
    uint chunks = (pc.t + CHUNK - 1) / CHUNK;
    MatrixView state = view(pc.states, DTYPE_F32, (bh * chunks + n) * pc.dv * pc.dk, 1u, pc.dk, pc.dk, pc.dv);
#endif
    uint origin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.dv);
    // square (P or P^T) stays as it is: the products below only read it
    for (uint v0 = 0; v0 < pc.dv; v0 += CHUNK)
    {
        clearAcc();
#if !VALUES_GRADIENT
        // acc = scale Q S_0^T: B(c, v) = S_0[v][c]
        multiply(queries, state, 0, v0, pc.dk);
#if GATED
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] *= pc.scale * decayTo(accRow(i));
#else
        scaleAcc(pc.scale);
#endif
#endif
        multiplySquareLeft(false, values, v0);
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = v0 + accColumn(j);
            if (r < rows && c < pc.dv) F32Buffer(pc.result).v[origin + r * pc.heads * pc.dv + c] = acc[i][j];
        }
    }
}
