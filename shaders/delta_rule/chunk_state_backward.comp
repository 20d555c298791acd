#version 460
// Chunked delta rule, backward state pass: one workgroup per (slice of state rows, b H + h) walks
// the chunks in reverse (chunk_sequential.glsl) carrying dS, the gradient reaching the end of the
// current chunk (dS_C), seeded by the final state's gradient. Per chunk, with Q' = scale Q:
//   store dS_C (for the per-chunk gradient stage)
//   dU' = dU'_local + K dS_C^T        (dU'_local = P^T dO from chunk_values_grad; overwritten in place)
//   dS_0 = dS_C + dO^T Q' - dU'^T W   (becomes the previous chunk's dS_C; after chunk 0, dS of S_0)
// q, k [B, T, H, Dk] (IN_DTYPE); W [B, T, H, Dk], dO and dU' [B, T, H, Dv] f32;
// dS_C [B H, chunks, Dv, Dk]; dFinal, dInitial [B, H, Dv, Dk] (0 address: none).
//! variant chunk_state_backward_f32 -DIN_DTYPE=0
//! variant chunk_state_backward_f16 -DIN_DTYPE=1
//! variant chunk_state_backward_bf16 -DIN_DTYPE=2
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_sequential.glsl"

shared float valueGrads[SUB][16];   // dU' of the sub-block
shared float outputGrads[SUB][16];  // dO of the sub-block

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t w;
    uint64_t dOut;
    uint64_t dUPrime;       // in: dU'_local; out: dU'
    uint64_t dStates;       // out: dS_C per chunk
    uint64_t dFinal;        // 0: zeros
    uint64_t dInitial;      // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
} pc;

void main()
{
    uint v0 = gl_WorkGroupID.x * SLICE, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint id = gl_LocalInvocationID.x, ti = id / SLICE, tv = id % SLICE;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateSize = pc.dv * pc.dk;
    loadSlice(pc.dFinal, bh * stateSize, v0, pc.dv, pc.dk);
    float update[OWNED];
    for (int nn = int(chunks) - 1; nn >= 0; nn--)
    {
        uint n = uint(nn), t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0);
        barrier();
        storeSlice(pc.dStates, (bh * chunks + n) * stateSize, v0, pc.dv, pc.dk);
        [[unroll]] for (uint r = 0; r < OWNED; r++) update[r] = 0.0;
        for (uint s0 = 0; s0 < rows; s0 += SUB)
        {
            uint count = min(uint(SUB), rows - s0);
            uint keyOrigin = ((b * pc.t + t0 + s0) * pc.heads + h) * pc.dk;
            barrier();
            loadRowsA(pc.k, IN_DTYPE, keyOrigin, pc.heads * pc.dk, count, pc.dk, 1.0);
            barrier();
            // dU'[i][v] = dU'_local[i][v] + K[i] . dS_C[v]
            float x = 0.0, g = 0.0;
            if (ti < count && v0 + tv < pc.dv)
            {
                uint at = ((b * pc.t + t0 + s0 + ti) * pc.heads + h) * pc.dv + v0 + tv;
                float ks = 0.0;
                for (uint c = 0; c < pc.dk; c++) ks = fma(rowsA[ti][c], slice[tv][c], ks);
                x = F32Buffer(pc.dUPrime).v[at] + ks;
                F32Buffer(pc.dUPrime).v[at] = x;
                g = F32Buffer(pc.dOut).v[at];
            }
            valueGrads[ti][tv] = x;
            outputGrads[ti][tv] = g;
            barrier();
            loadRowsA(pc.q, IN_DTYPE, keyOrigin, pc.heads * pc.dk, count, pc.dk, pc.scale);
            loadRowsB(pc.w, DTYPE_F32, keyOrigin, pc.heads * pc.dk, count, pc.dk, 1.0);
            barrier();
            // update[v][c] += sum_i dO[i][v] Q'[i][c] - dU'[i][v] W[i][c]
            [[unroll]] for (uint r = 0; r < OWNED; r++)
            {
                uint e = id + r * groupSize(), v = e / pc.dk, c = e % pc.dk;
                if (e < SLICE * pc.dk)
                    [[unroll]] for (uint i = 0; i < SUB; i++)
                        update[r] += outputGrads[i][v] * rowsA[i][c] - valueGrads[i][v] * rowsB[i][c];
            }
        }
        barrier();
        [[unroll]] for (uint r = 0; r < OWNED; r++)
        {
            uint e = id + r * groupSize();
            if (e < SLICE * pc.dk) slice[e / pc.dk][e % pc.dk] += update[r];
        }
    }
    barrier();
    if (pc.dInitial != 0ul) storeSlice(pc.dInitial, bh * stateSize, v0, pc.dv, pc.dk);
}
