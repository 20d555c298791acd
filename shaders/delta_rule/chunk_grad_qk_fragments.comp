#version 460
// Chunked delta rule, backward, per-chunk gradients of q and k (and dW for the WY backward) on
// tensor-core fragments: the gradients of chunk_grad_qk.comp with every product a chain of 16 x 16 x 16
// bf16 fragment multiplies (f32 accumulation) whose results stay in accumulator fragments. One
// workgroup of 8 subgroups of 32 per (chunk, b H + h, 64 columns kb of Dk); subgroup s owns result
// tiles (tr, tc), tr = s / 2, tc = 2 (s % 2) + {0, 1}, of each 64 x 64 result. With S_0 and dS_C the
// chunk's start state and end-state gradient (their 64-column block kb of Dk), M causal with the
// diagonal:
//   dP = (dO U'^T) ⊙ M,  dP' = scale dP
//   dQ = scale dO S_0 + dP' K
//   dK = dP'^T Q + U' dS_C                 (partial: the WY backward adds its terms)
//   dW = -dU' S_0                          (f32 scratch for the WY backward)
// Dv is walked 64 columns vb at a time; per block the two shared regions hold, in turn,
//   (dO, U') -> dP,  (dO, S_0) -> dQ
// (each f32 operand as hi and lo bf16 parts), then dP' goes into region1 for its two products with K
// (dQ, then stored) and Q (dK), which are bf16 and copied into region2 for them; then
// a second walk over Dv with (dU', S_0) -> dW and (U', dS_C) -> dK. So at most two pairs of result
// tiles are live at once besides the staged one: with three pairs (dK in the first walk) the kernel
// took 129 registers per invocation, one workgroup per SM, and 542 us at B8 H16 T2048 D64 bf16 on the
// H100 (bench/results/2026-12-06-h100-run65.txt). Zero tiles of dP are skipped. Each staging's global
// reads are issued before the barrier that frees its region.
// Preconditions the host checks (VulkanBackend.DeltaRuleFragmentStagesFit): T a multiple of 64,
// Dk and Dv 64 or 128, bf16 keys, subgroups of 32. Same push constants as chunk_grad_qk.comp.
// Shared memory (46 KiB): two regions of 64 x 64 (hi, lo), rows padded by 8 bf16, and a 16 x 16 f32
// scratch tile per subgroup for the mask of dP.
//! variant chunk_grad_qk_fragments -O0
#extension GL_GOOGLE_include_directive : require
#include "chunk_fragments.glsl"

// Specialisation constant 4: with the operands rounded, stage two blocks per barrier pair, the second
// in each region's free lo plane (S_0 beside U' in the first walk over Dv, U' and dS_C beside dU' and
// S_0 in the second): half the workgroup barriers of each walk (VulkanBackend.DeltaRuleMergedStaging).
// Split operands ignore it.
layout(constant_id = 4) const bool MERGED_STAGING = false;
#define MERGED (MERGED_STAGING && !SPLIT_OPERANDS)

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t dOut;
    uint64_t uPrime;    // U', dU', S_0, dS_C, dW: bf16 where COMPACT (fragment_types.glsl), else f32
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

void main()
{
    // x: chunk and 64-column block of Dk, the blocks of a chunk adjacent so that they read its dO, U' and
    // dU' from L2 one after the other
    uint n = gl_WorkGroupID.x / (pc.keyDim / 64), kb = gl_WorkGroupID.x % (pc.keyDim / 64), bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = pc.t / CHUNK, tr = tileRow();
    uint keyStride = pc.heads * pc.keyDim, valueStride = pc.heads * pc.valueDim;   // between consecutive tokens
    uint firstToken = b * pc.t + n * CHUNK, keyColumn0 = h * pc.keyDim + 64 * kb;
    uint stateOrigin = (bh * chunks + n) * pc.valueDim * pc.keyDim + 64 * kb;
    Words4Buffer keys = Words4Buffer(pc.k), queries = Words4Buffer(pc.q);

    // The 64 x 64 block vb of a token-major Dv-wide tensor, or rows 64 vb .. of the state block (Dv x
    // 64, row stride Dk), into fetched / fetchedRaw (chunk_fragments.glsl, FETCH_BLOCK). compact: an
    // intermediate stored as bf16 (U', dU', S_0, dS_C where COMPACT); dO is always f32.
#define FETCH_TOKENS(buffer, compact, vb) FETCH_BLOCK(compact, fetchedRaw, fetched, buffer, firstToken * valueStride + h * pc.valueDim + 64 * (vb), valueStride)
#define FETCH_STATE(buffer, vb) FETCH_BLOCK(COMPACT, fetchedRaw, fetched, buffer, stateOrigin + 64 * (vb) * pc.keyDim, pc.keyDim)
#define PUT_FETCHED(REGION, compact) PUT_BLOCK(compact, fetchedRaw, fetched, REGION)
    // c += A B over the 4 depth slices, A = tile row tr of REGION_A, B = tile column tc of REGION_B
#define MULTIPLY_REGIONS(c, REGION_A, REGION_B, tc) \
    [[unroll]] for (uint d = 0; d < 4; d++) \
    { \
        FRAG_A aHi, aLo; \
        FRAG_B bHi, bLo; \
        LOAD_TILE_SPLIT(aHi, aLo, REGION_A, tr, d, gl_CooperativeMatrixLayoutRowMajor); \
        LOAD_TILE_SPLIT(bHi, bLo, REGION_B, d, tc, gl_CooperativeMatrixLayoutRowMajor); \
        MUL_SPLIT(c, aHi, aLo, bHi, bLo); \
    }

    ACC fetched[2], dp[2], dq[2];
    uvec4 fetchedRaw[2];
    [[unroll]] for (uint j = 0; j < 2; j++) { dp[j] = ACC(0.0); dq[j] = ACC(0.0); }
    uint valueBlocks = pc.valueDim / 64;
    for (uint vb = 0; vb < valueBlocks; vb++)
    {
        // (dO, U'): dP += dO U'^T on and below the diagonal; U'^T's slice d is the transpose of U''s tile (tc, d)
        FETCH_TOKENS(pc.dOut, false, vb);
        if (vb > 0) barrier();
        PUT_FETCHED(region1, false);
        FETCH_TOKENS(pc.uPrime, COMPACT, vb);
        PUT_FETCHED(region2, COMPACT);
        // MERGED_STAGING: S_0 into region2's lo plane in the same staging (rounded operands leave it free)
        if (MERGED)
        {
            FETCH_STATE(pc.states, vb);
            PUT_BLOCK_LO(COMPACT, fetchedRaw, fetched, region2);
        }
        barrier();
        [[unroll]] for (uint j = 0; j < 2; j++)
            if (tileColumn(j) <= tr)
                [[unroll]] for (uint d = 0; d < 4; d++)
                {
                    FRAG_A aHi, aLo;
                    FRAG_B bHi, bLo;
                    LOAD_TILE_SPLIT(aHi, aLo, region1, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                    LOAD_TILE_SPLIT(bHi, bLo, region2, tileColumn(j), d, gl_CooperativeMatrixLayoutColumnMajor);
                    MUL_SPLIT(dp[j], aHi, aLo, bHi, bLo);
                }
        // (dO, S_0): dQ += dO S_0
        if (MERGED)
        {
            [[unroll]] for (uint j = 0; j < 2; j++) MULTIPLY_PLANES(dq[j], region1, 0, region2, PLANE, tr, tileColumn(j));
        }
        else
        {
            FETCH_STATE(pc.states, vb);
            barrier();
            PUT_FETCHED(region2, COMPACT);
            barrier();
            [[unroll]] for (uint j = 0; j < 2; j++) MULTIPLY_REGIONS(dq[j], region1, region2, tileColumn(j));
        }
    }
    uint keyOrigin = (firstToken + 16 * tr) * keyStride + keyColumn0;
    barrier();   // region1 takes dP' = scale dP, masked (tiles above the diagonal are never read), region2 K and Q
    // K's block (columns 64 kb ..) into region2's hi plane, Q's into its lo plane: 414 -> 369 us at B8 H16
    // T2048 D64 bf16 and 1246 -> 1148 at D128 on the H100 against fragments loaded straight from the
    // tensors (bench/results/2026-12-06-h100-run71.txt)
    COPY_BLOCKS_TO_REGION2(keys, queries, firstToken, keyStride, keyColumn0)
    [[unroll]] for (uint j = 0; j < 2; j++)
        if (tileColumn(j) <= tr)
        {
            float x[8];
            laneValues(dp[j], x);
            [[unroll]] for (uint e = 0; e < 8; e++) x[e] = tileColumn(j) < tr || laneColumn() + e <= laneRow() ? pc.scale * x[e] : 0.0;
            PUT_LANE_SPLIT(region1, tr, tileColumn(j), x)
        }
    barrier();
    // dQ = scale dO S_0 + dP' K (slices d <= tr), stored; dK = dP'^T Q (slices d >= tr: the transpose of
    // dP''s tile (d, tr)), then U' dS_C below
    ACC dk[2];
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        dq[j] = dq[j] * pc.scale;
        dk[j] = ACC(0.0);
        [[unroll]] for (uint d = 0; d < 4; d++)
        {
            FRAG_A aHi, aLo;
            FRAG_B operand;
            uint at = 16 * d * ROW + 2 * tileColumn(j);
            if (d <= tr)
            {
                coopMatLoad(operand, region2, at, ROW, gl_CooperativeMatrixLayoutRowMajor);
                LOAD_TILE_SPLIT(aHi, aLo, region1, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                MUL_EXACT_B(dq[j], aHi, aLo, operand);
            }
            if (d >= tr)
            {
                coopMatLoad(operand, region2, PLANE + at, ROW, gl_CooperativeMatrixLayoutRowMajor);
                LOAD_TILE_SPLIT(aHi, aLo, region1, d, tr, gl_CooperativeMatrixLayoutColumnMajor);
                MUL_EXACT_B(dk[j], aHi, aLo, operand);
            }
        }
        coopMatStore(dq[j], F32Buffer(pc.dq).v, keyOrigin + 16 * tileColumn(j), keyStride, gl_CooperativeMatrixLayoutRowMajor);
    }

    // Second walk over Dv: (dU', S_0) -> dW = -dU' S_0, (U', dS_C) -> dK += U' dS_C
    ACC dw[2];
    [[unroll]] for (uint j = 0; j < 2; j++) dw[j] = ACC(0.0);
    for (uint vb = 0; vb < valueBlocks; vb++)
    {
        FETCH_TOKENS(pc.dUPrime, COMPACT, vb);
        barrier();   // both regions are read
        PUT_FETCHED(region1, COMPACT);
        FETCH_STATE(pc.states, vb);
        PUT_FETCHED(region2, COMPACT);
        if (MERGED)
        {
            // (U', dS_C) into the lo planes in the same staging
            FETCH_TOKENS(pc.uPrime, COMPACT, vb);
            PUT_BLOCK_LO(COMPACT, fetchedRaw, fetched, region1);
            FETCH_STATE(pc.dStates, vb);
            PUT_BLOCK_LO(COMPACT, fetchedRaw, fetched, region2);
            barrier();
            [[unroll]] for (uint j = 0; j < 2; j++)
            {
                MULTIPLY_PLANES(dw[j], region1, 0, region2, 0, tr, tileColumn(j));
                MULTIPLY_PLANES(dk[j], region1, PLANE, region2, PLANE, tr, tileColumn(j));
            }
            continue;
        }
        barrier();
        [[unroll]] for (uint j = 0; j < 2; j++) MULTIPLY_REGIONS(dw[j], region1, region2, tileColumn(j));
        FETCH_TOKENS(pc.uPrime, COMPACT, vb);
        barrier();
        PUT_FETCHED(region1, COMPACT);
        FETCH_STATE(pc.dStates, vb);
        PUT_FETCHED(region2, COMPACT);
        barrier();
        [[unroll]] for (uint j = 0; j < 2; j++) MULTIPLY_REGIONS(dk[j], region1, region2, tileColumn(j));
    }
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        ACC negated = dw[j] * -1.0;
        STORE_INTERMEDIATE(COMPACT, negated, pc.dw, keyOrigin + 16 * tileColumn(j), keyStride)
        coopMatStore(dk[j], F32Buffer(pc.dk).v, keyOrigin + 16 * tileColumn(j), keyStride, gl_CooperativeMatrixLayoutRowMajor);
    }
}
