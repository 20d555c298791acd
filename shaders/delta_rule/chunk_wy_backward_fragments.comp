#version 460
// Chunked delta rule, backward through the WY form of each chunk on tensor-core fragments
// (chunk_fragments.glsl): the gradients of chunk_wy_backward.comp with every product's result in
// accumulator fragments. One workgroup per (chunk, b H + h).
// With X = A^-1 (stage 1, lower triangular), B_K = diag(beta) K, B_V = diag(beta) V, W = X B_K,
// U = X B_V and the incoming dU (= dU'), dW:
//   dX = dW B_K^T + dU B_V^T = (dW K^T + dU V^T) diag(beta)     (no read of W or U)
//   dA = -X^T dX X^T,  G = strictly_lower(dA)
//   dB_V = X^T dU:               dV = diag(beta) dB_V,             dbeta += rows(dB_V . V)
//   M = X^T dW + G K:            dK += diag(beta) M + G^T diag(beta) K,   dbeta += rows(M . K)
// (the same gradients as chunk_wy_backward.comp; dX X^T there is dU U^T + dW W^T, equal to the dX
// X^T here). X^T dW's part of dK and dbeta is added right away (dK updated in place), G K's and
// G^T diag(beta) K's at the end.
// K and V are bf16 (exact in one part), each 64-column block copied with 16-byte reads into the
// scratch tiles (between workgroup barriers) for its products; X, dU, dW, dX, X^T dX and G enter as
// two bf16 parts. Zero tiles of the triangular X and G are skipped.
// Preconditions the host checks (VulkanBackend.DeltaRuleFragmentStagesFit): T a multiple of
// 64, Dk 64 or 128, Dv 64 or 128, bf16 keys and values, subgroups of 32. Same push constants as
// chunk_wy_backward.comp (w and u are not read).
// Shared memory (46.75 KiB): region1 holds X (hi, lo), later G; region2 one 64-column block of dU or
// dW at a time, then dX, then Q = dX X^T, then diag(beta) G; all row-major bf16 with rows padded by 8
// elements against bank conflicts; the scratch tiles a block of V or K while its products run.
// Registers decide the speed: at 108 per invocation two workgroups share an SM. Holding X^T's
// fragments in registers (166) or reading each block of dU or dW during the previous block's products
// (129) leaves one, and both were slower: 620 and 631 us against 489 at B8 H16 T2048 D64 bf16 on the
// H100, 1062 and 1069 against 884 at D128 (bench/results/2026-12-06-h100-run64.txt).
// GATED=1 (chunk_wy_backward_fragments_gated; VulkanBackend.DeltaRuleGatedUsesWyBackwardFragments): the
// gated rule's WY backward (chunk_wy_backward.comp's GATED build, chunk_decay.glsl), f32 intermediates.
// Stage 1 formed B_K = diag(beta gamma) K and L with Gamma, so with G' = G ⊙ Gamma
//   dX = (dW K^T diag(gamma) + dU V^T) diag(beta)       (dW's blocks first, then dXraw's columns
//                                                        scaled by gamma, then dU's)
//   R = diag(gamma) X^T dW per block of dW:  dK += diag(beta) R,  dbeta += rows(R . K)
//   dK += diag(beta) G' K + G'^T diag(beta) K,          dbeta += rows(G' K . K)
//   dg_i = beta_i (R + G' K)_i . k_i - (G'^T diag(beta) K)_i . k_i   (into the last part of decayParts)
//! variant chunk_wy_backward_fragments -O0
//! variant chunk_wy_backward_fragments_gated -DGATED=1 -O0
#extension GL_GOOGLE_include_directive : require
#include "chunk_fragments.glsl"
#ifndef GATED
#define GATED 0
#endif
#if GATED
#include "chunk_decay.glsl"
#endif

// Specialisation constant 4: with the operands rounded, the walk over dU's and dW's blocks takes them
// in pairs, the second block in region2's lo plane and its V or K copy in region1's lo plane (X holds
// the hi plane alone): three workgroup barriers per pair instead of per block
// (VulkanBackend.DeltaRuleMergedWyBackwardStaging). Same products in the same order.
layout(constant_id = 4) const bool MERGED_STAGING = false;
#if GATED
#define MERGED false
#else
#define MERGED (MERGED_STAGING && !SPLIT_OPERANDS)
#endif

shared float betas[CHUNK];
shared float rowSums[CHUNK][2];

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t v;
    uint64_t beta;
    uint64_t x;         // X, dU', dW: bf16 where COMPACT (fragment_types.glsl), else f32
    uint64_t w;         // not read; where HALF_IO: out, dK (bf16)
    uint64_t u;         // not read
    uint64_t dUPrime;
    uint64_t dw;
    uint64_t dk;        // in: partial dK (f32; bf16 where COMPACT_SUMMANDS, with HALF_IO only); out: dK, unless HALF_IO
    uint64_t dv;        // out (bf16 where HALF_IO, else f32)
    uint64_t dbeta;     // out
    uint t;
    uint heads;
    uint keyDim;
    uint valueDim;
    uint betaDtype;
#if GATED
    uint64_t alpha;         // f32 [B, T, H]
    uint64_t decayParts;    // out: part Dk / 64 of f32 [blocks of Dk + 1, B, T, H]
#endif
} pc;

// A lane's run of 8 gradient values (low, high) at element `at` (a multiple of 8) of its row: into the
// f32 tensor `target` (F32x4Buffer), or, where HALF_IO, as bf16 rounded to nearest into the tensor at
// `halfAddress` (dv, or dK's final address in the `w` slot; the f32 partial dK stays where it was).
#define STORE_GRADIENT_RUN(halfAddress, target, at, low, high) \
    if (HALF_IO) \
    { \
        float run[8] = float[8](low.x, low.y, low.z, low.w, high.x, high.y, high.z, high.w); \
        Words4Buffer(halfAddress).v[(at) / 8] = packNearestBf16(run); \
    } \
    else { target.v[(at) / 4] = low; target.v[(at) / 4 + 1] = high; }

// dK's bf16 partial (COMPACT_SUMMANDS) at element `at`: its 8 values plus low, high, rounded to nearest again.
#define ADD_TO_HALF_PARTIAL(at, low, high) \
    { \
        float sum_[8]; \
        unpackBf16(Words4Buffer(pc.dk).v[(at) / 8], sum_); \
        [[unroll]] for (uint e_ = 0; e_ < 4; e_++) { sum_[e_] += low[e_]; sum_[4 + e_] += high[e_]; } \
        Words4Buffer(pc.dk).v[(at) / 8] = packNearestBf16(sum_); \
    }
// dK's partial at element `at` as two vec4 (widened where bf16).
#define READ_PARTIAL(at, low, high) \
    if (COMPACT_SUMMANDS) \
    { \
        float part_[8]; \
        unpackBf16(Words4Buffer(pc.dk).v[(at) / 8], part_); \
        low = vec4(part_[0], part_[1], part_[2], part_[3]); \
        high = vec4(part_[4], part_[5], part_[6], part_[7]); \
    } \
    else { low = F32x4Buffer(pc.dk).v[(at) / 4]; high = F32x4Buffer(pc.dk).v[(at) / 4 + 1]; }

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint t0 = n * CHUNK, chunks = pc.t / CHUNK, tr = tileRow(), id = gl_LocalInvocationID.x;
    uint keyStride = pc.heads * pc.keyDim, valueStride = pc.heads * pc.valueDim;   // between consecutive tokens
    uint keyBlocks = pc.keyDim / 64, valueBlocks = pc.valueDim / 64, blocks = valueBlocks + keyBlocks;
    uint firstToken = b * pc.t + t0;
    // The lane's row of every result tile it touches, and its beta.
    uint laneToken = firstToken + 16 * tr + laneRow();
    Words4Buffer keys = Words4Buffer(pc.k), values = Words4Buffer(pc.v);

    if (id < CHUNK) betas[id] = loadAs(pc.beta, pc.betaDtype, (firstToken + id) * pc.heads + h);
#if GATED
    loadLogDecays(pc.alpha, firstToken * pc.heads + h, pc.heads, CHUNK);   // T is a multiple of the chunk
    float decayPartial = 0.0;   // the lane's share of dg for its row
#endif

    // Block i of the f32 operands staged in region2: dU's 64-column blocks, then dW's.
#define BLOCK_ORIGIN(i) ((i) < valueBlocks ? firstToken * valueStride + h * pc.valueDim + 64 * (i) \
                                         : firstToken * keyStride + h * pc.keyDim + 64 * ((i) - valueBlocks))
    // pending / pendingRaw (chunk_fragments.glsl, FETCH_BLOCK; dU' and dW bf16 where COMPACT)
#define FETCH_OPERAND_BLOCK(i) FETCH_BLOCK(COMPACT, pendingRaw, pending, (i) < valueBlocks ? pc.dUPrime : pc.dw, BLOCK_ORIGIN(i), \
                                           (i) < valueBlocks ? valueStride : keyStride)
    ACC pending[2];
    uvec4 pendingRaw[2];

    // X (hi, lo) into region1: the tiles on and below the diagonal (X is unit lower triangular); compact
    // (bf16), the whole block as it is stored, zeros above the diagonal included.
    uint inverseOrigin = (bh * chunks + n) * CHUNK * CHUNK;
    if (COMPACT)
    {
        uvec4 inverseRaw[2];
        LOAD_RAW_BLOCK(inverseRaw, pc.x, inverseOrigin, CHUNK);
        PUT_RAW_BLOCK(inverseRaw, region1, ROW);
    }
    else
    {
        [[unroll]] for (uint j = 0; j < 2; j++)
            if (tileColumn(j) <= tr)
            {
                ACC tile;
                coopMatLoad(tile, F32Buffer(pc.x).v, inverseOrigin + 16 * tr * CHUNK + 16 * tileColumn(j), CHUNK, gl_CooperativeMatrixLayoutRowMajor);
                STORE_TILE_SPLIT(tile, region1, tr, tileColumn(j))
            }
    }
    barrier();
    float laneBeta = betas[16 * tr + laneRow()];
    // X^T's fragments of row tr: slice d is the transpose of X's tile (d, tr), zero for d < tr.
#define X_TRANSPOSED(hi, lo, d) LOAD_TILE_SPLIT(hi, lo, region1, d, tr, gl_CooperativeMatrixLayoutColumnMajor)
    float betaPartial = 0.0;   // the lane's share of dbeta for its row

    // Blocks of dU (with V), then of dW (with K):
    //   dXraw += block . (V or K block)^T       (64 x 64 over tokens)
    //   R = X^T block:  dU: dV = diag(beta) R, dbeta += rows(R . V)
    //                   dW: dK += diag(beta) R,  dbeta += rows(R . K)
    ACC dxRaw[2];
    [[unroll]] for (uint j = 0; j < 2; j++) dxRaw[j] = ACC(0.0);
    // Block i's names: whether it is a block of dU (else of dW), its V or K tensor, that tensor's row
    // stride and first column.
#define BLOCK_NAMES(i) \
    bool valueBlock = (i) < valueBlocks; \
    Words4Buffer inputs = valueBlock ? values : keys; \
    uint stride = valueBlock ? valueStride : keyStride, column0 = valueBlock ? h * pc.valueDim + 64 * (i) : h * pc.keyDim + 64 * ((i) - valueBlocks);
    // GATED: a block of dW's R is diag(gamma) X^T dW, and beta_i R_i . k_i goes into dg_i.
#if GATED
#define GATED_R_SCALE(x) if (!valueBlock) { float rowDecay = decayTo(16 * tr + laneRow()); [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= rowDecay; }
#define R_DOTS(x, packed) \
        { \
            float rowDot = 0.0; \
            [[unroll]] for (uint e = 0; e < 8; e++) \
                rowDot = fma(x[e], bf16ToFloat(e % 2 == 0 ? packed[e / 2] & 0xFFFFu : packed[e / 2] >> 16), rowDot); \
            betaPartial += rowDot; \
            if (!valueBlock) decayPartial = fma(laneBeta, rowDot, decayPartial); \
        }
#else
#define GATED_R_SCALE(x)
#define R_DOTS(x, packed) \
        [[unroll]] for (uint e = 0; e < 8; e++) \
            betaPartial = fma(x[e], bf16ToFloat(e % 2 == 0 ? packed[e / 2] & 0xFFFFu : packed[e / 2] >> 16), betaPartial);
#endif
    // R = X^T (the block at B_PLANE of region2), then its row scalings and dot products (BLOCK_NAMES
    // name the block's tensors)
#define R_OF_BLOCK(B_PLANE) \
    [[unroll]] for (uint j = 0; j < 2; j++) \
    { \
        ACC r = ACC(0.0); \
        [[unroll]] for (uint d = 0; d < 4; d++) \
            if (d >= tr) \
            { \
                FRAG_A xHi, xLo; \
                FRAG_B bHi, bLo; \
                X_TRANSPOSED(xHi, xLo, d); \
                LOAD_SPLIT(bHi, bLo, region2, PLANE, (B_PLANE) + 16 * d * ROW + 2 * tileColumn(j), ROW, gl_CooperativeMatrixLayoutRowMajor); \
                MUL_SPLIT(r, xHi, xLo, bHi, bLo); \
            } \
        float x[8]; \
        laneValues(r, x); \
        GATED_R_SCALE(x) \
        uint at = laneToken * stride + column0 + 16 * tileColumn(j) + laneColumn(); \
        uvec4 packed = inputs.v[at / 8]; \
        R_DOTS(x, packed) \
        F32x4Buffer target = F32x4Buffer(valueBlock ? pc.dv : pc.dk); \
        vec4 low = vec4(x[0], x[1], x[2], x[3]) * laneBeta, high = vec4(x[4], x[5], x[6], x[7]) * laneBeta; \
        if (valueBlock) { STORE_GRADIENT_RUN(pc.dv, target, at, low, high) } \
        else if (COMPACT_SUMMANDS) ADD_TO_HALF_PARTIAL(at, low, high) \
        else { target.v[at / 4] += low; target.v[at / 4 + 1] += high; }   /* dK's f32 partial, completed below */ \
    }
    if (MERGED)
    {
        // Blocks in pairs: block i in region2's hi plane with its V or K copy in the scratch, block i + 1
        // in region2's lo plane with its copy in region1's lo plane (X holds the hi plane alone)
        for (uint i = 0; i < blocks; i += 2)
        {
            bool second = i + 1 < blocks;
            if (i > 0) barrier();   // the previous pair's products are done reading region2, region1's lo plane and the scratch
            {
                BLOCK_NAMES(i)
                FETCH_OPERAND_BLOCK(i);
                COPY_BLOCK_TO_SCRATCH(inputs, firstToken, stride, column0)
                PUT_BLOCK(COMPACT, pendingRaw, pending, region2);
            }
            if (second)
            {
                BLOCK_NAMES(i + 1)
                FETCH_OPERAND_BLOCK(i + 1);
                COPY_BLOCK_INTO(region1, PLANE, inputs, firstToken, stride, column0)
                PUT_BLOCK_LO(COMPACT, pendingRaw, pending, region2);
            }
            barrier();
            // dXraw += block . (V or K block)^T for both blocks, in block order
            [[unroll]] for (uint j = 0; j < 2; j++)
                [[unroll]] for (uint d = 0; d < 4; d++)
                {
                    FRAG_A a;
                    FRAG_B transposed;
                    coopMatLoad(a, region2, 16 * tr * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor);
                    coopMatLoad(transposed, scratch, 16 * tileColumn(j) * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                    dxRaw[j] = coopMatMulAdd(a, transposed, dxRaw[j]);
                }
            if (second)
                [[unroll]] for (uint j = 0; j < 2; j++)
                    [[unroll]] for (uint d = 0; d < 4; d++)
                    {
                        FRAG_A a;
                        FRAG_B transposed;
                        coopMatLoad(a, region2, PLANE + 16 * tr * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor);
                        coopMatLoad(transposed, region1, PLANE + 16 * tileColumn(j) * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                        dxRaw[j] = coopMatMulAdd(a, transposed, dxRaw[j]);
                    }
            barrier();   // the copy in the scratch is read: it serves laneValues again
            {
                BLOCK_NAMES(i)
                R_OF_BLOCK(0)
            }
            if (second)
            {
                BLOCK_NAMES(i + 1)
                R_OF_BLOCK(PLANE)
            }
        }
    }
    else
#if GATED
    for (uint step = 0; step < blocks; step++)
    {
        uint i = step < keyBlocks ? valueBlocks + step : step - keyBlocks;   // dW's blocks first
        BLOCK_NAMES(i)
        if (step > 0) barrier();   // the previous block's products are done reading region2 and the scratch
#else
    for (uint i = 0; i < blocks; i++)
    {
        BLOCK_NAMES(i)
        if (i > 0) barrier();   // the previous block's products are done reading region2 and the scratch
#endif
        FETCH_OPERAND_BLOCK(i);
        COPY_BLOCK_TO_SCRATCH(inputs, firstToken, stride, column0)
        PUT_BLOCK(COMPACT, pendingRaw, pending, region2);
        barrier();
        // dXraw: A = the block's rows tr (split), B = (V or K)^T, a column-major load of its rows tc
        // from the copy in the scratch
        [[unroll]] for (uint j = 0; j < 2; j++)
            [[unroll]] for (uint d = 0; d < 4; d++)
            {
                FRAG_A aHi, aLo;
                FRAG_B transposed;
                LOAD_TILE_SPLIT(aHi, aLo, region2, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                coopMatLoad(transposed, scratch, 16 * tileColumn(j) * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                MUL_EXACT_B(dxRaw[j], aHi, aLo, transposed);
            }
        barrier();   // the copy is read: the scratch serves laneValues again
        R_OF_BLOCK(0)
#if GATED
        if (step == keyBlocks - 1)
            // dXraw = dW K^T so far: its columns (tokens j) times gamma_j before dU V^T is added
            [[unroll]] for (uint j = 0; j < 2; j++)
            {
                float x[8];
                laneValues(dxRaw[j], x);
                [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= decayTo(16 * tileColumn(j) + laneColumn() + e);
                dxRaw[j] = fromLaneValues(x);
            }
#endif
    }
    barrier();   // the last block's products are done reading region2

    // dX = dXraw diag(beta) (split) into region2
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        float x[8];
        laneValues(dxRaw[j], x);
        [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= betas[16 * tileColumn(j) + laneColumn() + e];
        PUT_LANE_SPLIT(region2, tr, tileColumn(j), x)
    }
    barrier();
    // Q = dX X^T: B slice d is the transpose of X's tile (tc, d), zero for d > tc
    ACC q[2];
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        q[j] = ACC(0.0);
        [[unroll]] for (uint d = 0; d < 4; d++)
            if (d <= tileColumn(j))
            {
                FRAG_A aHi, aLo;
                FRAG_B bHi, bLo;
                LOAD_TILE_SPLIT(aHi, aLo, region2, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                LOAD_TILE_SPLIT(bHi, bLo, region1, tileColumn(j), d, gl_CooperativeMatrixLayoutColumnMajor);
                MUL_SPLIT(q[j], aHi, aLo, bHi, bLo);
            }
    }
    barrier();   // dX and X are read: region1 is free, region2 takes Q
    [[unroll]] for (uint j = 0; j < 2; j++) STORE_TILE_SPLIT(q[j], region2, tr, tileColumn(j))
    barrier();
    // dA = -X^T Q on and below the diagonal tiles (G is zero above them)
    ACC da[2];
    [[unroll]] for (uint j = 0; j < 2; j++)
    {
        da[j] = ACC(0.0);
        if (tileColumn(j) <= tr)
            [[unroll]] for (uint d = 0; d < 4; d++)
                if (d >= tr)
                {
                    FRAG_A xHi, xLo;
                    FRAG_B bHi, bLo;
                    X_TRANSPOSED(xHi, xLo, d);
                    LOAD_TILE_SPLIT(bHi, bLo, region2, d, tileColumn(j), gl_CooperativeMatrixLayoutRowMajor);
                    MUL_SPLIT(da[j], xHi, xLo, bHi, bLo);
                }
    }
    barrier();   // Q is read: region2 takes diag(beta) G
    // G = strictly_lower(-dA) into region1, diag(beta) G into region2 (the tiles above the diagonal
    // are never read)
    [[unroll]] for (uint j = 0; j < 2; j++)
        if (tileColumn(j) <= tr)
        {
            float g[8];
            laneValues(da[j], g);
#if GATED
            uint row = 16 * tr + laneRow(), column0 = 16 * tileColumn(j) + laneColumn();
            [[unroll]] for (uint e = 0; e < 8; e++) g[e] = column0 + e < row ? -g[e] * decayBetween(row, column0 + e) : 0.0;   // G'
#else
            [[unroll]] for (uint e = 0; e < 8; e++)
                g[e] = tileColumn(j) < tr || laneColumn() + e < laneRow() ? -g[e] : 0.0;
#endif
            PUT_LANE_SPLIT(region1, tr, tileColumn(j), g)
            [[unroll]] for (uint e = 0; e < 8; e++) g[e] *= laneBeta;
            PUT_LANE_SPLIT(region2, tr, tileColumn(j), g)
        }
    barrier();

    // Per 64-column block of K: P = G K (slices d <= tr), N = (diag(beta) G)^T K (slices d >= tr);
    // dK += diag(beta) P + N, dbeta += rows(P . K)
    for (uint kb = 0; kb < keyBlocks; kb++)
    {
        uint column0 = h * pc.keyDim + 64 * kb;
        if (kb > 0) barrier();   // the previous block's laneValues are done with the scratch
        COPY_BLOCK_TO_SCRATCH(keys, firstToken, keyStride, column0)
        barrier();
        ACC p[2], nt[2];
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            p[j] = ACC(0.0);
            nt[j] = ACC(0.0);
            [[unroll]] for (uint d = 0; d < 4; d++)
            {
                FRAG_B keyTile;
                coopMatLoad(keyTile, scratch, 16 * d * ROW + 2 * tileColumn(j), ROW, gl_CooperativeMatrixLayoutRowMajor);
                FRAG_A aHi, aLo;
                if (d <= tr)
                {
                    LOAD_TILE_SPLIT(aHi, aLo, region1, tr, d, gl_CooperativeMatrixLayoutRowMajor);
                    MUL_EXACT_B(p[j], aHi, aLo, keyTile);
                }
                if (d >= tr)
                {
                    LOAD_TILE_SPLIT(aHi, aLo, region2, d, tr, gl_CooperativeMatrixLayoutColumnMajor);
                    MUL_EXACT_B(nt[j], aHi, aLo, keyTile);
                }
            }
        }
        barrier();   // the copy is read: the scratch serves laneValues again
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            float x[8], y[8];
            laneValues(p[j], x);
            laneValues(nt[j], y);
            uint at = laneToken * keyStride + column0 + 16 * tileColumn(j) + laneColumn();
            uvec4 packed = keys.v[at / 8];
#if GATED
            float keyDot = 0.0, transposedDot = 0.0;
            [[unroll]] for (uint e = 0; e < 8; e++)
            {
                float kValue = bf16ToFloat(e % 2 == 0 ? packed[e / 2] & 0xFFFFu : packed[e / 2] >> 16);
                keyDot = fma(x[e], kValue, keyDot);
                transposedDot = fma(y[e], kValue, transposedDot);
            }
            betaPartial += keyDot;
            decayPartial += laneBeta * keyDot - transposedDot;
#else
            [[unroll]] for (uint e = 0; e < 8; e++)
                betaPartial = fma(x[e], bf16ToFloat(e % 2 == 0 ? packed[e / 2] & 0xFFFFu : packed[e / 2] >> 16), betaPartial);
#endif
            F32x4Buffer target = F32x4Buffer(pc.dk);
            vec4 partLow, partHigh;
            READ_PARTIAL(at, partLow, partHigh)
            vec4 low = partLow + (vec4(x[0], x[1], x[2], x[3]) * laneBeta + vec4(y[0], y[1], y[2], y[3]));
            vec4 high = partHigh + (vec4(x[4], x[5], x[6], x[7]) * laneBeta + vec4(y[4], y[5], y[6], y[7]));
            STORE_GRADIENT_RUN(pc.w, target, at, low, high)
        }
    }

    // dbeta: the two lanes of a row, then the two subgroups of a tile row
    betaPartial += subgroupShuffleXor(betaPartial, 1);
    if (gl_SubgroupInvocationID % 2 == 0) rowSums[16 * tr + laneRow()][gl_SubgroupID % 2] = betaPartial;
    barrier();
    if (id < CHUNK) F32Buffer(pc.dbeta).v[(firstToken + id) * pc.heads + h] = rowSums[id][0] + rowSums[id][1];
#if GATED
    // dg likewise, into part Dk / 64 of decayParts
    decayPartial += subgroupShuffleXor(decayPartial, 1);
    barrier();   // rowSums is read
    if (gl_SubgroupInvocationID % 2 == 0) rowSums[16 * tr + laneRow()][gl_SubgroupID % 2] = decayPartial;
    barrier();
    if (id < CHUNK) F32Buffer(pc.decayParts).v[keyBlocks * pc.t * gl_NumWorkGroups.y + (firstToken + id) * pc.heads + h] = rowSums[id][0] + rowSums[id][1];
#endif
}
