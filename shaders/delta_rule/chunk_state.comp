#version 460
// Chunked delta rule, stage 2 (forward; rerun by the backward): the state pass. One workgroup per
// (slice of state rows, b H + h) walks the chunks in order (chunk_sequential.glsl); per chunk with
// S the chunk-start state (Dv x Dk):
//   store S (for the output stage and the backward)
//   U' = U - W S^T          (C x Dv: the chunk's "new values", stored)
//   S <- S + U'^T K
// Inputs k [B, T, H, Dk] (IN_DTYPE), W [B, T, H, Dk] and U [B, T, H, Dv] (f32, stage 1); outputs
// U' [B, T, H, Dv], chunk-start states [B H, ceil(T / C), Dv, Dk], optional final state (which may
// be the initial state: each workgroup reads and writes only its own rows).
//! variant chunk_state_f32 -DIN_DTYPE=0
//! variant chunk_state_f16 -DIN_DTYPE=1
//! variant chunk_state_bf16 -DIN_DTYPE=2
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_sequential.glsl"

shared float newValues[SUB][16];

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t w;
    uint64_t u;
    uint64_t uPrime;        // out
    uint64_t states;        // out
    uint64_t initialState;  // 0: zeros
    uint64_t finalState;    // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
} pc;

void main()
{
    uint v0 = gl_WorkGroupID.x * SLICE, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint id = gl_LocalInvocationID.x, ti = id / SLICE, tv = id % SLICE;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateSize = pc.dv * pc.dk;
    loadSlice(pc.initialState, bh * stateSize, v0, pc.dv, pc.dk);
    float update[OWNED];
    for (uint n = 0; n < chunks; n++)
    {
        uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0);
        barrier();
        storeSlice(pc.states, (bh * chunks + n) * stateSize, v0, pc.dv, pc.dk);
        [[unroll]] for (uint r = 0; r < OWNED; r++) update[r] = 0.0;
        for (uint s0 = 0; s0 < rows; s0 += SUB)
        {
            uint count = min(uint(SUB), rows - s0);
            uint keyOrigin = ((b * pc.t + t0 + s0) * pc.heads + h) * pc.dk;
            barrier();
            loadRowsA(pc.w, DTYPE_F32, keyOrigin, pc.heads * pc.dk, count, pc.dk, 1.0);
            loadRowsB(pc.k, IN_DTYPE, keyOrigin, pc.heads * pc.dk, count, pc.dk, 1.0);
            barrier();
            // U'[i][v] = U[i][v] - W[i] . S[v]
            float x = 0.0;
            if (ti < count && v0 + tv < pc.dv)
            {
                uint at = ((b * pc.t + t0 + s0 + ti) * pc.heads + h) * pc.dv + v0 + tv;
                float ws = 0.0;
                for (uint c = 0; c < pc.dk; c++) ws = fma(rowsA[ti][c], slice[tv][c], ws);
                x = F32Buffer(pc.u).v[at] - ws;
                F32Buffer(pc.uPrime).v[at] = x;
            }
            newValues[ti][tv] = x;
            barrier();
            // update[v][c] += sum_i U'[i][v] K[i][c]
            [[unroll]] for (uint r = 0; r < OWNED; r++)
            {
                uint e = id + r * groupSize(), v = e / pc.dk, c = e % pc.dk;
                if (e < SLICE * pc.dk)
                    [[unroll]] for (uint i = 0; i < SUB; i++) update[r] = fma(newValues[i][v], rowsB[i][c], update[r]);
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
    if (pc.finalState != 0ul) storeSlice(pc.finalState, bh * stateSize, v0, pc.dv, pc.dk);
}
