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
    uint blocks = (pc.t + SUB - 1) / SUB, keyStride = pc.heads * pc.dk;
    loadSlice(pc.initialState, bh * stateSize, v0, pc.dv, pc.dk);
    float update[OWNED];
    [[unroll]] for (uint r = 0; r < OWNED; r++) update[r] = 0.0;
    // Sub-block g holds tokens SUB g .. SUB g + SUB - 1 of chunk g / (CHUNK / SUB); its W, K and
    // this invocation's U value are fetched one sub-block ahead.
    float nextW[PREFETCH], nextK[PREFETCH], nextU = 0.0;
    bool mine = v0 + tv < pc.dv;
    {
        uint count = min(uint(SUB), pc.t), origin = (b * pc.t * pc.heads + h) * pc.dk;
        fetchRows(pc.w, DTYPE_F32, origin, keyStride, count, pc.dk, 1.0, nextW);
        fetchRows(pc.k, IN_DTYPE, origin, keyStride, count, pc.dk, 1.0, nextK);
        if (ti < count && mine) nextU = F32Buffer(pc.u).v[((b * pc.t + ti) * pc.heads + h) * pc.dv + v0 + tv];
    }
    for (uint g = 0; g < blocks; g++)
    {
        uint t = g * SUB, count = min(uint(SUB), pc.t - t);
        if (t % CHUNK == 0)
        {
            // chunk start: S <- S + U'^T K of the previous chunk, then store S
            barrier();
            applyUpdate(update, pc.dk);
            barrier();
            storeSlice(pc.states, (bh * chunks + t / CHUNK) * stateSize, v0, pc.dv, pc.dk);
            [[unroll]] for (uint r = 0; r < OWNED; r++) update[r] = 0.0;
        }
        barrier();
        storeRowsA(nextW, pc.dk);
        storeRowsB(nextK, pc.dk);
        float u = nextU;
        barrier();
        if (g + 1 < blocks)
        {
            uint tn = t + SUB, countNext = min(uint(SUB), pc.t - tn), origin = ((b * pc.t + tn) * pc.heads + h) * pc.dk;
            fetchRows(pc.w, DTYPE_F32, origin, keyStride, countNext, pc.dk, 1.0, nextW);
            fetchRows(pc.k, IN_DTYPE, origin, keyStride, countNext, pc.dk, 1.0, nextK);
            nextU = ti < countNext && mine ? F32Buffer(pc.u).v[((b * pc.t + tn + ti) * pc.heads + h) * pc.dv + v0 + tv] : 0.0;
        }
        // U'[i][v] = U[i][v] - W[i] . S[v]
        float x = 0.0;
        if (ti < count && mine)
        {
            x = u - rowDot(ti, tv, pc.dk);
            F32Buffer(pc.uPrime).v[((b * pc.t + t + ti) * pc.heads + h) * pc.dv + v0 + tv] = x;
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
    applyUpdate(update, pc.dk);
    barrier();
    if (pc.finalState != 0ul) storeSlice(pc.finalState, bh * stateSize, v0, pc.dv, pc.dk);
}
