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
    uint blocks = (pc.t + SUB - 1) / SUB, keyStride = pc.heads * pc.dk;
    bool mine = v0 + tv < pc.dv;
    loadSlice(pc.dFinal, bh * stateSize, v0, pc.dv, pc.dk);
    float update[OWNED];
    [[unroll]] for (uint r = 0; r < OWNED; r++) update[r] = 0.0;
    // Sub-blocks in reverse; each one's K, Q', W, dU'_local and dO are fetched one sub-block ahead.
    float nextK[PREFETCH], nextQ[PREFETCH], nextW[PREFETCH], nextLocal = 0.0, nextOut = 0.0;
    {
        uint t = (blocks - 1) * SUB, count = pc.t - t, origin = ((b * pc.t + t) * pc.heads + h) * pc.dk;
        fetchRows(pc.k, IN_DTYPE, origin, keyStride, count, pc.dk, 1.0, nextK);
        fetchRows(pc.q, IN_DTYPE, origin, keyStride, count, pc.dk, pc.scale, nextQ);
        fetchRows(pc.w, DTYPE_F32, origin, keyStride, count, pc.dk, 1.0, nextW);
        uint at = ((b * pc.t + t + ti) * pc.heads + h) * pc.dv + v0 + tv;
        if (ti < count && mine) { nextLocal = F32Buffer(pc.dUPrime).v[at]; nextOut = F32Buffer(pc.dOut).v[at]; }
    }
    for (int gg = int(blocks) - 1; gg >= 0; gg--)
    {
        uint g = uint(gg), t = g * SUB, count = min(uint(SUB), pc.t - t);
        if (g + 1 == blocks || (t + SUB) % CHUNK == 0)
        {
            // last sub-block of chunk n: dS_C = dS_0 of chunk n + 1, stored
            barrier();
            applyUpdate(update, pc.dk);
            barrier();
            storeSlice(pc.dStates, (bh * chunks + t / CHUNK) * stateSize, v0, pc.dv, pc.dk);
            [[unroll]] for (uint r = 0; r < OWNED; r++) update[r] = 0.0;
        }
        barrier();
        storeRowsA(nextK, pc.dk);
        float queries[PREFETCH], keysW[PREFETCH];
        [[unroll]] for (uint r = 0; r < PREFETCH; r++) { queries[r] = nextQ[r]; keysW[r] = nextW[r]; }
        float local = nextLocal, outputGrad = nextOut;
        barrier();
        if (g > 0)
        {
            uint tp = t - SUB, origin = ((b * pc.t + tp) * pc.heads + h) * pc.dk;
            fetchRows(pc.k, IN_DTYPE, origin, keyStride, SUB, pc.dk, 1.0, nextK);
            fetchRows(pc.q, IN_DTYPE, origin, keyStride, SUB, pc.dk, pc.scale, nextQ);
            fetchRows(pc.w, DTYPE_F32, origin, keyStride, SUB, pc.dk, 1.0, nextW);
            uint at = ((b * pc.t + tp + ti) * pc.heads + h) * pc.dv + v0 + tv;
            nextLocal = mine ? F32Buffer(pc.dUPrime).v[at] : 0.0;
            nextOut = mine ? F32Buffer(pc.dOut).v[at] : 0.0;
        }
        // dU'[i][v] = dU'_local[i][v] + K[i] . dS_C[v]
        float x = 0.0, gradient = 0.0;
        if (ti < count && mine)
        {
            x = local + rowDot(ti, tv, pc.dk);
            F32Buffer(pc.dUPrime).v[((b * pc.t + t + ti) * pc.heads + h) * pc.dv + v0 + tv] = x;
            gradient = outputGrad;
        }
        valueGrads[ti][tv] = x;
        outputGrads[ti][tv] = gradient;
        barrier();
        storeRowsA(queries, pc.dk);
        storeRowsB(keysW, pc.dk);
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
    applyUpdate(update, pc.dk);
    barrier();
    if (pc.dInitial != 0ul) storeSlice(pc.dInitial, bh * stateSize, v0, pc.dv, pc.dk);
}
