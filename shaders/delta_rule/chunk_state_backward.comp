#version 460
// Chunked delta rule, backward state pass: one workgroup per (slice of state rows, b H + h) walks
// the chunks in reverse (chunk_sequential.glsl) carrying dS, the gradient reaching the end of the
// current chunk (dS_C), seeded by the final state's gradient. Per chunk, with Q' = scale Q:
//   store dS_C (for the per-chunk gradient stage)
//   dU' = dU'_local + K dS_C^T        (dU'_local = P^T dO from chunk_values_grad; overwritten in
//                                      place)                                        token product
//   dS_0 = dS_C + dO^T Q' - dU'^T W   (becomes the previous chunk's dS_C; after chunk 0, dS of S_0)
//                                                                                    state product
// Stages of a chunk: ceil(Dk / 16) of K^T, then 4 of (Q', dO) and 4 of W (16 tokens each).
// q, k [B, T, H, Dk] (IN_DTYPE); W [B, T, H, Dk], dO and dU' [B, T, H, Dv] f32;
// dS_C [B H, chunks, Dv, Dk]; dFinal, dInitial [B, H, Dv, Dk] (0 address: none).
// GATED (chunk_decay.glsl; W from the gated stage 1 carries diag(gamma)):
//   dU' = dU'_local + diag(tail) K dS_C^T,   dS_0 = gamma_C dS_C + dO^T diag(gamma) Q' - dU'^T W
//! variant chunk_state_backward_f32 -DIN_DTYPE=0
//! variant chunk_state_backward_f16 -DIN_DTYPE=1
//! variant chunk_state_backward_bf16 -DIN_DTYPE=2
//! variant chunk_state_backward_gated_f32 -DIN_DTYPE=0 -DGATED=1
//! variant chunk_state_backward_gated_f16 -DIN_DTYPE=1 -DGATED=1
//! variant chunk_state_backward_gated_bf16 -DIN_DTYPE=2 -DGATED=1
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_sequential.glsl"

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
#if GATED
    uint64_t alpha;         // f32 [B, T, H]
#endif
} pc;

uint b, h, v0, keyStages;
const uint TOKEN_STAGES = CHUNK / KSTEP;

// Stage s of chunk n into registers: K^T (s < keyStages), then (Q', dO), then W.
void fetchStage(uint n, uint s)
{
    uint t0 = n * CHUNK, count = min(uint(CHUNK), pc.t - t0), rowStride = pc.heads * pc.dk, valueStride = pc.heads * pc.dv;
    uint origin = ((b * pc.t + t0) * pc.heads + h) * pc.dk;
    if (s < keyStages)
    {
        fetchTransposed(pc.k, IN_DTYPE, origin, rowStride, count, KSTEP * s, pc.dk, 1.0);
        return;
    }
    bool queries = s < keyStages + TOKEN_STAGES;
    uint i0 = KSTEP * ((s - keyStages) % TOKEN_STAGES), rows = count > i0 ? count - i0 : 0u;
    if (queries)
    {
        fetchRows(pc.q, IN_DTYPE, origin + i0 * rowStride, rowStride, rows, pc.dk, pc.scale);
        fetchStreamA(pc.dOut, ((b * pc.t + t0 + i0) * pc.heads + h) * pc.dv, valueStride, rows, v0, pc.dv);
#if GATED
        // diag(gamma) dO: row i0 + k of the chunk (this chunk's logDecay is loaded by now)
        [[unroll]] for (uint r = 0; r < 4; r++) stagedA[r] *= decayTo(i0 + (gl_LocalInvocationID.x + r * GROUP) / (4 * SLICE4));
#endif
    }
    else
        fetchRows(pc.w, DTYPE_F32, origin + i0 * rowStride, rowStride, rows, pc.dk, 1.0);
}

void main()
{
    uint bh = gl_WorkGroupID.y;
    v0 = gl_WorkGroupID.x * 4 * SLICE4;
    b = bh / pc.heads;
    h = bh % pc.heads;
    keyStages = (pc.dk + KSTEP - 1) / KSTEP;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateSize = pc.dv * pc.dk, stages = keyStages + 2 * TOKEN_STAGES;
    uint valueStride = pc.heads * pc.dv;
    loadState(pc.dFinal, bh * stateSize, v0, pc.dv, pc.dk);
    stateToShared();
    fetchStage(chunks - 1, 0);
    for (int nn = int(chunks) - 1; nn >= 0; nn--)
    {
        uint n = uint(nn), t0 = n * CHUNK, count = min(uint(CHUNK), pc.t - t0), valueOrigin = ((b * pc.t + t0) * pc.heads + h) * pc.dv;
        storeState(pc.dStates, (bh * chunks + n) * stateSize, v0, pc.dv, pc.dk);
        float local[4][4];
        loadTokenTile(pc.dUPrime, valueOrigin, valueStride, count, v0, pc.dv, local);
#if GATED
        loadLogDecays(pc.alpha, (b * pc.t + t0) * pc.heads + h, pc.heads, count);
#endif
        clearTokenAcc();
        for (uint s = 0; s < stages; s++)
        {
            bool queries = s >= keyStages && s < keyStages + TOKEN_STAGES;
            barrier();
            if (s < keyStages) storeTransposed();
            else storeRows();
            if (queries) storeStreamA();
            barrier();
            if (s + 1 < stages) fetchStage(n, s + 1);
            else if (n > 0) fetchStage(n - 1, 0);
            if (s < keyStages) tokenProductStage(KSTEP * s);
            else if (queries) stateProductStage(0, 1.0, true);
            else stateProductStage(KSTEP * (s - keyStages - TOKEN_STAGES), -1.0, false);
            if (s + 1 == keyStages)
            {
                // dU' = dU'_local + K dS_C^T, stored and kept as the A operand of - dU'^T W
#if GATED
                // gated: diag(tail) K dS_C^T, and dS_C decays over the chunk before the state product
                [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) tokenAcc[i][j] *= decayToEnd(tokenRow(i));
                [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4 * KBLOCKS; j++) stateAcc[i][j] *= chunkDecay();
#endif
                [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) tokenAcc[i][j] += local[i][j];
                storeTokenTile(pc.dUPrime, valueOrigin, valueStride, count, v0, pc.dv, tokenAcc);
                tokenAccToTile(count);
            }
        }
        stateToShared();
    }
    if (pc.dInitial != 0ul) storeState(pc.dInitial, bh * stateSize, v0, pc.dv, pc.dk);
}
