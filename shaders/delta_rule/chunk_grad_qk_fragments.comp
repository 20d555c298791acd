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
// H100 (bench/results/2026-12-06-h100-run65.txt). Zero tiles of dP are skipped. Each staging's first
// block is read before the barrier that frees its region, its other blocks (and the copy of K and Q)
// after it.
// GATED=1 (chunk_grad_qk_fragments_gated; VulkanBackend.DeltaRuleGatedUsesGradQKFragments): the gated
// rule's q, k gradients (chunk_grad_qk.comp's GATED build, chunk_decay.glsl), f32 intermediates:
//   H' = scale (dO U'^T) ⊙ Gamma ⊙ M                  (Gamma on dP's elements where the mask keeps them)
//   dQ = diag(scale gamma) dO S_0 + H' K               (the rows of dO S_0 scaled through the lane values)
//   dK = H'^T Q + diag(tail) U' dS_C                   (U' dS_C in its own tiles in the second walk)
//   dW = -dU' S_0
// and this block of Dk's part of the log decays' gradient (decayParts[kb], [blocks of Dk + 1, B, T, H]).
// chunk_grad_qk.comp forms it as
//   dg_i += scale gamma_i (dO S_0)_i . q_i + sum_j D_ij,  dg_j -= sum_i D_ij + e_j,  D = H ⊙ (Q' K^T),
//   e_j = tail_j (U' dS_C)_j . k_j,  dg_{63} += sum_j e_j + gamma_C <dS_C, S_0>
// and since sum_j D_ij = q_i . (H' K)_i and sum_i D_ij = k_j . (H'^T Q)_j, the row terms are dot
// products with this block's dQ and dK rows:  dg_i += q_i . dQ_i - k_i . dK_i,  with no Q' K^T formed.
// Each lane dots its 8 values of a row with q's and k's bf16 (Q from region2's lo plane, K from the
// tensor); two lanes hold a row's 16 columns of a tile pair and two subgroups a tile row (rowParts).
// REGISTER_SCORES (chunk_fragments.glsl, specialisation constant 11; the ungated build, rounded
// operands): dP' is scaled, rounded and stored as fragments (STAGE_CAUSAL_TILE), only its diagonal
// tiles masked per element. Same bits.
// Preconditions the host checks (VulkanBackend.DeltaRuleFragmentStagesFit): T a multiple of 64,
// Dk and Dv 64 or 128, bf16 keys, subgroups of 32. Same push constants as chunk_grad_qk.comp.
// Shared memory (46 KiB): two regions of 64 x 64 (hi, lo), rows padded by 8 bf16, and a 16 x 16 f32
// scratch tile per subgroup for the mask of dP (GATED: and 1,056 bytes of decays and partial sums).
//! variant chunk_grad_qk_fragments -O0
//! variant chunk_grad_qk_fragments_gated -DGATED=1 -O0
#extension GL_GOOGLE_include_directive : require
#include "chunk_fragments.glsl"
#ifndef GATED
#define GATED 0
#endif
#if GATED
#include "chunk_decay.glsl"
shared float rowParts[CHUNK][2];   // per row, the sums of the two subgroups of its tile row
shared float totals[8];            // per subgroup, its share of the last row's term

// x . (the 8 bf16 packed in w, in order)
float dotBf16(float x[8], uvec4 w)
{
    float sum = 0.0;
    uint words[4] = uint[4](w.x, w.y, w.z, w.w);
    [[unroll]] for (uint i = 0; i < 4; i++)
    {
        sum = fma(x[2 * i], bf16ToFloat(words[i]), sum);
        sum = fma(x[2 * i + 1], uintBitsToFloat(words[i] & 0xFFFF0000u), sum);
    }
    return sum;
}
#endif

// Specialisation constant 4: with the operands rounded, stage two blocks per barrier pair, the second
// in each region's free lo plane (S_0 beside U' in the first walk over Dv, U' and dS_C beside dU' and
// S_0 in the second): half the workgroup barriers of each walk (VulkanBackend.DeltaRuleMergedStaging).
// Split operands ignore it.
layout(constant_id = 4) const bool MERGED_STAGING = false;
#if GATED
#define MERGED false
#else
#define MERGED (MERGED_STAGING && !SPLIT_OPERANDS)
#endif

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t dOut;      // f32, or bf16 where HALF_IO
    uint64_t uPrime;    // U', dU', S_0, dS_C, dW: bf16 where COMPACT (fragment_types.glsl), else f32
    uint64_t dUPrime;
    uint64_t states;
    uint64_t dStates;
    uint64_t dq;        // out (bf16 where HALF_IO)
    uint64_t dk;        // out (partial, f32)
    uint64_t dw;        // out
    uint t;
    uint heads;
    uint keyDim;
    uint valueDim;
    float scale;
#if GATED
    uint64_t alpha;         // f32 [B, T, H]
    uint64_t decayParts;    // out: f32 [blocks of Dk + 1, B, T, H]; this workgroup writes part kb
#endif
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
#if GATED
    loadLogDecays(pc.alpha, firstToken * pc.heads + h, pc.heads, CHUNK);   // T is a multiple of the chunk
    float dgLane = 0.0, totalLane = 0.0;   // this lane's share of dg of its row; of the last row's term
#endif

    // The 64 x 64 block vb of a token-major Dv-wide tensor, or rows 64 vb .. of the state block (Dv x
    // 64, row stride Dk), into fetched / fetchedRaw (chunk_fragments.glsl, FETCH_BLOCK). compact: an
    // intermediate stored as bf16 (U', dU', S_0, dS_C where COMPACT); dO bf16 where HALF_IO, else f32.
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
        FETCH_TOKENS(pc.dOut, HALF_IO, vb);
        if (vb > 0) barrier();
        PUT_FETCHED(region1, HALF_IO);
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
#if !GATED
    if (SCORES_IN_REGISTERS)
    {
        [[unroll]] for (uint j = 0; j < 2; j++)
            if (tileColumn(j) <= tr) STAGE_CAUSAL_TILE(region1, dp[j], pc.scale, tr, tileColumn(j))
    }
    else
#endif
    [[unroll]] for (uint j = 0; j < 2; j++)
        if (tileColumn(j) <= tr)
        {
            float x[8];
            laneValues(dp[j], x);
#if GATED
            uint row = 16 * tr + laneRow(), column0 = 16 * tileColumn(j) + laneColumn();
            [[unroll]] for (uint e = 0; e < 8; e++) x[e] = column0 + e <= row ? pc.scale * x[e] * decayBetween(row, column0 + e) : 0.0;
#else
            [[unroll]] for (uint e = 0; e < 8; e++) x[e] = tileColumn(j) < tr || laneColumn() + e <= laneRow() ? pc.scale * x[e] : 0.0;
#endif
            PUT_LANE_SPLIT(region1, tr, tileColumn(j), x)
        }
    barrier();
    // dQ = scale dO S_0 + dP' K (slices d <= tr), stored; dK = dP'^T Q (slices d >= tr: the transpose of
    // dP''s tile (d, tr)), then U' dS_C below
    ACC dk[2];
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
#if GATED
        {
            float x[8];
            laneValues(dq[j], x);
            float rowScale = pc.scale * decayTo(16 * tr + laneRow());
            [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= rowScale;
            dq[j] = fromLaneValues(x);
        }
#else
        dq[j] = dq[j] * pc.scale;
#endif
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
#if GATED
        {
            // dg_i += q_i . dQ_i (q's bf16 run of this lane from Q's copy in region2's lo plane)
            float x[8];
            laneValues(dq[j], x);
            dgLane += dotBf16(x, region2[PLANE + (16 * tr + laneRow()) * ROW + 2 * tileColumn(j) + laneColumn() / 8]);
        }
#endif
        STORE_RESULT(HALF_IO, dq[j], pc.dq, keyOrigin + 16 * tileColumn(j), keyStride)   // bf16 where HALF_IO
    }

    // Second walk over Dv: (dU', S_0) -> dW = -dU' S_0, (U', dS_C) -> dK += U' dS_C
    ACC dw[2];
    [[unroll]] for (uint j = 0; j < 2; j++) dw[j] = ACC(0.0);
#if GATED
    ACC ud[2];   // U' dS_C, row-scaled by tail at the end
    [[unroll]] for (uint j = 0; j < 2; j++) ud[j] = ACC(0.0);
#define U_DS ud
#else
#define U_DS dk
#endif
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
        [[unroll]] for (uint j = 0; j < 2; j++) MULTIPLY_REGIONS(U_DS[j], region1, region2, tileColumn(j));
    }
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        ACC negated = dw[j] * -1.0;
        STORE_RESULT(COMPACT, negated, pc.dw, keyOrigin + 16 * tileColumn(j), keyStride)
#if GATED
        {
            // dK = H'^T Q + diag(tail) U' dS_C; e_i = tail_i (U' dS_C)_i . k_i into the last row's term;
            // dg_i -= k_i . dK_i (the column sums of D and e_i)
            float x[8], y[8];
            laneValues(ud[j], x);
            laneValues(dk[j], y);
            float tail = decayToEnd(16 * tr + laneRow());
            uvec4 kRun = keys.v[(keyOrigin + laneRow() * keyStride + 16 * tileColumn(j) + laneColumn()) / 8];
            [[unroll]] for (uint e = 0; e < 8; e++) { x[e] *= tail; y[e] += x[e]; }
            totalLane += dotBf16(x, kRun);
            dgLane -= dotBf16(y, kRun);
            dk[j] = fromLaneValues(y);
        }
#endif
        STORE_RESULT(COMPACT_SUMMANDS, dk[j], pc.dk, keyOrigin + 16 * tileColumn(j), keyStride)   // partial dK: bf16 where COMPACT_SUMMANDS
    }
#if GATED
    // gamma_C <dS_C, S_0> over this block's 64 columns: f32 states, or bf16 (COMPACT) read 8 at a time
    float overlap = 0.0;
    if (COMPACT)
    {
        for (uint e = gl_LocalInvocationID.x; e < pc.valueDim * 8; e += 256)   // e: a run of 8 columns
        {
            uint at = stateOrigin + (e / 8) * pc.keyDim + 8 * (e % 8);
            uvec4 gradient = Words4Buffer(pc.dStates).v[at / 8], state = Words4Buffer(pc.states).v[at / 8];
            [[unroll]] for (uint i = 0; i < 4; i++)
            {
                overlap = fma(bf16ToFloat(gradient[i] & 0xFFFFu), bf16ToFloat(state[i] & 0xFFFFu), overlap);
                overlap = fma(uintBitsToFloat(gradient[i] & 0xFFFF0000u), uintBitsToFloat(state[i] & 0xFFFF0000u), overlap);
            }
        }
    }
    else
        for (uint e = gl_LocalInvocationID.x; e < pc.valueDim * 64; e += 256)
        {
            uint at = stateOrigin + (e / 64) * pc.keyDim + e % 64;
            overlap = fma(F32Buffer(pc.dStates).v[at], F32Buffer(pc.states).v[at], overlap);
        }
    totalLane += chunkDecay() * overlap;
    dgLane += subgroupShuffleXor(dgLane, 1);   // the row's other 8 columns of each tile
    [[unroll]] for (uint m = 1; m < 32; m *= 2) totalLane += subgroupShuffleXor(totalLane, m);
    if (laneColumn() == 0) rowParts[16 * tr + laneRow()][gl_SubgroupID % 2] = dgLane;
    if (gl_SubgroupInvocationID == 0) totals[gl_SubgroupID] = totalLane;
    barrier();
    uint id = gl_LocalInvocationID.x;
    if (id < CHUNK)
    {
        float sum = rowParts[id][0] + rowParts[id][1];
        if (id == CHUNK - 1) [[unroll]] for (uint sg = 0; sg < 8; sg++) sum += totals[sg];
        F32Buffer(pc.decayParts).v[kb * pc.t * gl_NumWorkGroups.y + (firstToken + id) * pc.heads + h] = sum;   // part kb of [parts, B, T, H]
    }
#endif
}
