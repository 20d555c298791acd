#version 460
// Chunked delta rule, stage 2 (forward; rerun by the backward): the state pass. One workgroup per
// (slice of state rows, b H + h) walks the chunks in order (chunk_sequential.glsl); per chunk with
// S the chunk-start state (Dv x Dk):
//   store S (for the output stage and the backward)
//   U' = U - W S^T          (C x Dv: the chunk's "new values", stored)      token product
//   S <- S + U'^T K                                                         state product
// Stages of a chunk: ceil(Dk / 16) of W^T (16 columns of Dk each), then 4 of K (16 tokens each).
// Inputs k [B, T, H, Dk] (IN_DTYPE), W [B, T, H, Dk] and U [B, T, H, Dv] (f32, stage 1); outputs
// U' [B, T, H, Dv], chunk-start states [B H, ceil(T / C), Dv, Dk], optional final state (which may
// be the initial state: each workgroup reads and writes only its own rows, all reads first).
// GATED (chunk_decay.glsl; W from the gated stage 1 carries diag(gamma)):
//   U' = U - W S^T,   S <- gamma_C S + (diag(tail) U')^T K
// (U' is stored undecayed; the decays scale the state product's A operand and the carried state).
//! variant chunk_state_f32 -DIN_DTYPE=0
//! variant chunk_state_f16 -DIN_DTYPE=1
//! variant chunk_state_bf16 -DIN_DTYPE=2
//! variant chunk_state_gated_f32 -DIN_DTYPE=0 -DGATED=1
//! variant chunk_state_gated_f16 -DIN_DTYPE=1 -DGATED=1
//! variant chunk_state_gated_bf16 -DIN_DTYPE=2 -DGATED=1
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_sequential.glsl"

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
#if GATED
    uint64_t alpha;         // f32 [B, T, H]
#endif
} pc;

uint b, h, keyStages;

// Stage s of chunk n into registers: W^T columns 16 s .. for s < keyStages, else K tokens 16 (s - keyStages) ..
void fetchStage(uint n, uint s)
{
    uint t0 = n * CHUNK, count = min(uint(CHUNK), pc.t - t0), rowStride = pc.heads * pc.dk;
    uint origin = ((b * pc.t + t0) * pc.heads + h) * pc.dk;
    if (s < keyStages)
        fetchTransposed(pc.w, DTYPE_F32, origin, rowStride, count, KSTEP * s, pc.dk, 1.0);
    else
    {
        uint i0 = KSTEP * (s - keyStages);
        fetchRows(pc.k, IN_DTYPE, origin + i0 * rowStride, rowStride, count > i0 ? count - i0 : 0u, pc.dk, 1.0);
    }
}

void main()
{
    uint v0 = gl_WorkGroupID.x * 4 * SLICE4, bh = gl_WorkGroupID.y;
    b = bh / pc.heads;
    h = bh % pc.heads;
    keyStages = (pc.dk + KSTEP - 1) / KSTEP;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateSize = pc.dv * pc.dk, stages = keyStages + CHUNK / KSTEP;
    uint valueStride = pc.heads * pc.dv;
    loadState(pc.initialState, bh * stateSize, v0, pc.dv, pc.dk);
    stateToShared();
    fetchStage(0, 0);
    for (uint n = 0; n < chunks; n++)
    {
        uint t0 = n * CHUNK, count = min(uint(CHUNK), pc.t - t0), valueOrigin = ((b * pc.t + t0) * pc.heads + h) * pc.dv;
        storeState(pc.states, (bh * chunks + n) * stateSize, v0, pc.dv, pc.dk);
        float u[4][4];
        loadTokenTile(pc.u, valueOrigin, valueStride, count, v0, pc.dv, u);
#if GATED
        loadLogDecays(pc.alpha, (b * pc.t + t0) * pc.heads + h, pc.heads, count);
#endif
        clearTokenAcc();
        for (uint s = 0; s < stages; s++)
        {
            barrier();
            if (s < keyStages) storeTransposed(); else storeRows();
            barrier();
            if (s + 1 < stages) fetchStage(n, s + 1);
            else if (n + 1 < chunks) fetchStage(n + 1, 0);
            if (s < keyStages) tokenProductStage(KSTEP * s);
            else stateProductStage(KSTEP * (s - keyStages), 1.0, false);
            if (s + 1 == keyStages)
            {
                // U' = U - W S^T, stored and kept as the A operand of the state product
                [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) tokenAcc[i][j] = u[i][j] - tokenAcc[i][j];
                storeTokenTile(pc.uPrime, valueOrigin, valueStride, count, v0, pc.dv, tokenAcc);
#if GATED
                // S <- gamma_C S + (diag(tail) U')^T K: nothing reads stateAcc before the state product
                [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) tokenAcc[i][j] *= decayToEnd(tokenRow(i));
                [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4 * KBLOCKS; j++) stateAcc[i][j] *= chunkDecay();
#endif
                tokenAccToTile(count);
            }
        }
        stateToShared();
    }
    if (pc.finalState != 0ul) storeState(pc.finalState, bh * stateSize, v0, pc.dv, pc.dk);
}
