#version 460
// Chunked delta rule, stage 3 (forward) and its mirror in the backward on tensor-core fragments
// (chunk_fragments.glsl): the products of chunk_output.comp with every result in accumulator
// fragments. One workgroup per (chunk, b H + h) walking Dv 64 columns vb at a time with P formed once.
// With P' = scale (Q K^T ⊙ M), M causal with the diagonal, S_0 the chunk-start state:
//   forward (VALUES_GRADIENT 0):   O = scale Q S_0^T + P' U'
//   backward (VALUES_GRADIENT 1):  dU'_local = P'^T dO
// Q K^T: per 64 columns of Dk, Q's and K's bf16 blocks are copied into region2 (one plane each, 16-byte
// coalesced reads) and multiplied from there (K^T through column-major loads); the subgroup keeps
// Q's fragments of its tile row for Q S_0^T. (With Q and K^T loaded as fragments straight from the
// tensors this stage was slower than chunk_output.comp, 245 against 220 us at B8 H16 T2048 D64 bf16
// on the H100, run 67; so copied, 172 against 220, and 408 against 509 at D128, run 70.) P' goes into region1 as hi and lo parts (only the tiles
// on and below the diagonal, the others are never read). Per block vb region2 then holds, in turn,
// the rows of S_0 for that block (64 x 64 per 64 columns of Dk, read as S_0^T through column-major
// loads) and U' (or dO), each as hi and lo parts.
// GATED=1 (the _gated variants; VulkanBackend.DeltaRuleGatedUsesOutputFragments): the gated rule's
// stage (chunk_decay.glsl, as chunk_output.comp's GATED build), with every intermediate f32:
//   P' = scale (Q K^T ⊙ Gamma ⊙ M),  forward O = diag(gamma) scale Q S_0^T + P' U',  backward dU'_local = P'^T dO
// Gamma_ij = exp(g_i - g_j) multiplies P''s elements where the causal mask keeps them (never formed
// above the diagonal, where it could overflow); diag(gamma) scales the rows of Q S_0^T through the
// lane values before P' U' is added. The forward takes the separate stagings (no MERGED_STAGING).
// REGISTER_SCORES (chunk_fragments.glsl, specialisation constant 11; the ungated builds, rounded
// operands): P' is scaled, rounded and stored as fragments (STAGE_CAUSAL_TILE), only its diagonal tiles
// masked per element, instead of every tile's round trip through the scratch. Same bits.
// Preconditions the host checks (VulkanBackend.DeltaRuleFragmentStagesFit): T a multiple of 64, Dk
// and Dv 64 or 128, bf16 keys, subgroups of 32. Same push constants as chunk_output.comp (GATED: and alpha).
//! variant chunk_output_fragments -DVALUES_GRADIENT=0 -O0
//! variant chunk_values_grad_fragments -DVALUES_GRADIENT=1 -O0
//! variant chunk_output_fragments_gated -DVALUES_GRADIENT=0 -DGATED=1 -O0
//! variant chunk_values_grad_fragments_gated -DVALUES_GRADIENT=1 -DGATED=1 -O0
#extension GL_GOOGLE_include_directive : require
#include "chunk_fragments.glsl"
#ifndef GATED
#define GATED 0
#endif
#if GATED
#include "chunk_decay.glsl"
#endif

// Specialisation constant 4 (the forward only): with the operands rounded, stage S_0's blocks of the
// current 64 columns of Dv in region2's two planes and U''s block in region1's lo plane (P' holds its
// hi plane alone), so one barrier pair per block vb instead of one per staged block: 2 against 6 at
// Dk = 128, 2 against 4 at Dk = 64 (VulkanBackend.DeltaRuleMergedOutputStaging). The products, their
// operands and their order are those of the separate stagings.
layout(constant_id = 4) const bool MERGED_STAGING = false;
#if GATED
#define MERGED false
#else
#define MERGED (MERGED_STAGING && !SPLIT_OPERANDS && VALUES_GRADIENT == 0)
#endif

// Specialisation constant 12 (VulkanBackend.DeltaRuleOutputReadsAhead; the merged staging with compact
// intermediates): each block vb's S_0 blocks and U' block are read from memory before the barrier
// that frees their places, not after it, so those reads are in flight while the workgroup waits
// (two or three 64 x 64 bf16 blocks, 4 or 6 uvec4 an invocation). Same values staged in the same places.
layout(constant_id = 12) const bool READS_AHEAD = false;
#define READS_AHEAD_HERE (READS_AHEAD && COMPACT)

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t values;    // forward: U' (bf16 where COMPACT: fragment_types.glsl); backward: dO (bf16 where HALF_IO, else f32)
    uint64_t states;    // forward: chunk-start states (bf16 where COMPACT); backward: unused
    uint64_t result;    // forward: O (bf16 where HALF_IO, else f32); backward: dU'_local (f32; bf16 where COMPACT_SUMMANDS)
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
#if GATED
    uint64_t alpha;     // f32 [B, T, H]
#endif
} pc;

// Timing probe (specialisation constant 6, FASTWEIGHTS_STAGE_PROBE; for experiments only, the results
// are wrong whenever it is nonzero): each bit leaves out one kind of work, so the time that goes with
// it shows: 1 the global stores, 2 the DRAM traffic of the reads (every workgroup reads the blocks of
// chunk 0 of sequence 0, head 0, which stay in L2), 4 the workgroup barriers, 8 the products, 16 the
// per-element work on P' (its mask and scale through the scratch tiles).
layout(constant_id = 6) const uint STAGE_PROBE = 0;
#define PROBE_STORES ((STAGE_PROBE & 1u) == 0u)
#define PROBE_OWN_READS ((STAGE_PROBE & 2u) == 0u)
#define STAGE_BARRIER() if ((STAGE_PROBE & 4u) == 0u) barrier()
#define PROBE_PRODUCTS ((STAGE_PROBE & 8u) == 0u)
#define PROBE_LANES ((STAGE_PROBE & 16u) == 0u)

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = pc.t / CHUNK, tr = tileRow();
    uint keyStride = pc.heads * pc.dk, valueStride = pc.heads * pc.dv;   // between consecutive tokens
    uint firstToken = b * pc.t + n * CHUNK, keyBlocks = pc.dk / 64;
    Words4Buffer keys = Words4Buffer(pc.k), queries = Words4Buffer(pc.q);
    uint readToken = PROBE_OWN_READS ? firstToken : 0u, readHead = PROBE_OWN_READS ? h : 0u;
#if GATED
    loadLogDecays(pc.alpha, firstToken * pc.heads + h, pc.heads, CHUNK);   // T is a multiple of the chunk
#endif

    // P' = scale (Q K^T ⊙ M) on and below the diagonal into region1; Q's fragments of row tr kept
    FRAG_A queryFrags[8];   // slice 4 kb + d of Dk
    {
        ACC p[2];
        [[unroll]] for (uint j = 0; j < 2; j++) p[j] = ACC(0.0);
        [[unroll]] for (uint kb = 0; kb < 2; kb++)
            if (kb < keyBlocks)
            {
                if (kb > 0) STAGE_BARRIER();   // the previous block's fragments are read
                // Q into region2's hi plane, K into its lo plane
                COPY_BLOCKS_TO_REGION2(queries, keys, readToken, keyStride, readHead * pc.dk + 64 * kb)
                STAGE_BARRIER();
                [[unroll]] for (uint d = 0; d < 4; d++)
                {
                    coopMatLoad(queryFrags[4 * kb + d], region2, 16 * tr * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor);
                    [[unroll]] for (uint j = 0; j < 2; j++)
                        if (tileColumn(j) <= tr)
                        {
                            FRAG_B keyT;
                            coopMatLoad(keyT, region2, PLANE + 16 * tileColumn(j) * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                            if (PROBE_PRODUCTS) p[j] = coopMatMulAdd(queryFrags[4 * kb + d], keyT, p[j]);
                        }
                }
            }
#if !GATED
        if (SCORES_IN_REGISTERS)
        {
            [[unroll]] for (uint j = 0; j < 2; j++)
                if (tileColumn(j) <= tr && PROBE_LANES) STAGE_CAUSAL_TILE(region1, p[j], pc.scale, tr, tileColumn(j))
        }
        else
#endif
        [[unroll]] for (uint j = 0; j < 2; j++)
            if (tileColumn(j) <= tr && PROBE_LANES)
            {
                float x[8];
                laneValues(p[j], x);
#if GATED
                uint row = 16 * tr + laneRow(), column0 = 16 * tileColumn(j) + laneColumn();
                [[unroll]] for (uint e = 0; e < 8; e++) x[e] = column0 + e <= row ? pc.scale * x[e] * decayBetween(row, column0 + e) : 0.0;
#else
                [[unroll]] for (uint e = 0; e < 8; e++) x[e] = tileColumn(j) < tr || laneColumn() + e <= laneRow() ? pc.scale * x[e] : 0.0;
#endif
                PUT_LANE_SPLIT(region1, tr, tileColumn(j), x)
            }
    }

    uint stateOrigin = PROBE_OWN_READS ? (bh * chunks + n) * pc.dv * pc.dk : 0u;
    for (uint vb = 0; vb < pc.dv / 64; vb++)
    {
        ACC o[2];
        [[unroll]] for (uint j = 0; j < 2; j++) o[j] = ACC(0.0);
#if !VALUES_GRADIENT
        if (MERGED)
        {
            // S_0's block kb (rows 64 vb .., columns 64 kb ..) into region2's plane kb, U''s block vb into
            // region1's lo plane
            ACC fetched[2];
            uvec4 fetchedRaw[2];
            if (READS_AHEAD_HERE)
            {
                // every piece of the staging read before the barrier, so the reads' latency overlaps the wait
                uvec4 stateRaw0[2], stateRaw1[2];
                LOAD_RAW_BLOCK(stateRaw0, pc.states, stateOrigin + 64 * vb * pc.dk, pc.dk);
                if (keyBlocks > 1) LOAD_RAW_BLOCK(stateRaw1, pc.states, stateOrigin + 64 * vb * pc.dk + 64, pc.dk);
                LOAD_RAW_BLOCK(fetchedRaw, pc.values, readToken * valueStride + readHead * pc.dv + 64 * vb, valueStride);
                STAGE_BARRIER();   // as below
                PUT_RAW_BLOCK(stateRaw0, region2, ROW);
                if (keyBlocks > 1) PUT_RAW_BLOCK_AT(stateRaw1, region2, PLANE, ROW);
                PUT_RAW_BLOCK_AT(fetchedRaw, region1, PLANE, ROW);
            }
            else
            {
                STAGE_BARRIER();   // region2 (Q K^T's copies, or the previous block's S_0) and region1's lo plane are read
                [[unroll]] for (uint kb = 0; kb < 2; kb++)
                    if (kb < keyBlocks)
                    {
                        FETCH_BLOCK(COMPACT, fetchedRaw, fetched, pc.states, stateOrigin + 64 * vb * pc.dk + 64 * kb, pc.dk);
                        if (kb == 0) { PUT_BLOCK(COMPACT, fetchedRaw, fetched, region2); }
                        else { PUT_BLOCK_LO(COMPACT, fetchedRaw, fetched, region2); }
                    }
                FETCH_BLOCK(COMPACT, fetchedRaw, fetched, pc.values, readToken * valueStride + readHead * pc.dv + 64 * vb, valueStride);
                PUT_BLOCK_LO(COMPACT, fetchedRaw, fetched, region1);
            }
            STAGE_BARRIER();
            // scale Q S_0^T (S_0^T's slice d of column tile tc: the transpose of the block's tile (tc, d))
            [[unroll]] for (uint kb = 0; kb < 2; kb++)
                if (kb < keyBlocks)
                    [[unroll]] for (uint d = 0; d < 4; d++)
                        [[unroll]] for (uint j = 0; j < 2; j++)
                        {
                            FRAG_B s;
                            coopMatLoad(s, region2, kb * PLANE + 16 * tileColumn(j) * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutColumnMajor);
                            if (PROBE_PRODUCTS) o[j] = coopMatMulAdd(queryFrags[4 * kb + d], s, o[j]);
                        }
            [[unroll]] for (uint j = 0; j < 2; j++) o[j] = o[j] * pc.scale;
            // + P' U' (P''s slice d of row tr is zero for d > tr)
            [[unroll]] for (uint d = 0; d < 4; d++)
                if (d <= tr)
                {
                    FRAG_A pHi;
                    coopMatLoad(pHi, region1, 16 * tr * ROW + 2 * d, ROW, gl_CooperativeMatrixLayoutRowMajor);
                    [[unroll]] for (uint j = 0; j < 2; j++)
                    {
                        FRAG_B v;
                        coopMatLoad(v, region1, PLANE + 16 * d * ROW + 2 * tileColumn(j), ROW, gl_CooperativeMatrixLayoutRowMajor);
                        if (PROBE_PRODUCTS) o[j] = coopMatMulAdd(pHi, v, o[j]);
                    }
                }
            [[unroll]] for (uint j = 0; j < 2; j++)
                if (PROBE_STORES) STORE_RESULT(HALF_IO, o[j], pc.result, (firstToken + 16 * tr) * valueStride + h * pc.dv + 64 * vb + 16 * tileColumn(j), valueStride)
            continue;
        }
        // scale Q S_0^T: per 64 columns kb of Dk, region2 holds S_0's rows 64 vb .. and columns 64 kb ..;
        // S_0^T's slice d of column tile tc is the transpose of that block's tile (tc, d)
        [[unroll]] for (uint kb = 0; kb < 2; kb++)
            if (kb < keyBlocks)
            {
                ACC fetched[2];
                uvec4 fetchedRaw[2];   // compact states (chunk_fragments.glsl, FETCH_BLOCK)
                FETCH_BLOCK(COMPACT, fetchedRaw, fetched, pc.states, stateOrigin + 64 * vb * pc.dk + 64 * kb, pc.dk);
                STAGE_BARRIER();   // region2's previous contents are read
                PUT_BLOCK(COMPACT, fetchedRaw, fetched, region2);
                STAGE_BARRIER();
                [[unroll]] for (uint d = 0; d < 4; d++)
                    [[unroll]] for (uint j = 0; j < 2; j++)
                    {
                        FRAG_B sHi, sLo;
                        LOAD_TILE_SPLIT(sHi, sLo, region2, tileColumn(j), d, gl_CooperativeMatrixLayoutColumnMajor);
                        if (PROBE_PRODUCTS)
                        {
                            MUL_LO(o[j], queryFrags[4 * kb + d], sLo);
                            o[j] = coopMatMulAdd(queryFrags[4 * kb + d], sHi, o[j]);
                        }
                    }
            }
#if GATED
        // diag(gamma) scale Q S_0^T: row 16 tr + laneRow() of each tile scaled through the lane values
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            float x[8];
            laneValues(o[j], x);
            float rowScale = pc.scale * decayTo(16 * tr + laneRow());
            [[unroll]] for (uint e = 0; e < 8; e++) x[e] *= rowScale;
            o[j] = fromLaneValues(x);
        }
#else
        [[unroll]] for (uint j = 0; j < 2; j++) o[j] = o[j] * pc.scale;
#endif
#endif
        // U' (or dO) block vb into region2
        uint valueOrigin = (firstToken + 16 * tr) * valueStride + h * pc.dv + 64 * vb;
        ACC fetched[2];
        uvec4 fetchedRaw[2];   // compact U' (chunk_fragments.glsl, FETCH_BLOCK); dO bf16 where HALF_IO
        bool compactValues = VALUES_GRADIENT == 0 ? COMPACT : HALF_IO;
        FETCH_BLOCK(compactValues, fetchedRaw, fetched, pc.values, readToken * valueStride + readHead * pc.dv + 64 * vb, valueStride);
        STAGE_BARRIER();
        PUT_BLOCK(compactValues, fetchedRaw, fetched, region2);
        STAGE_BARRIER();
        // P''s slice d of row tr is zero for d > tr; P'^T's slice d of row tr, the transpose of P''s
        // tile (d, tr), is zero for d < tr
        [[unroll]] for (uint d = 0; d < 4; d++)
            if (VALUES_GRADIENT == 1 ? d >= tr : d <= tr)
            {
                FRAG_A pHi, pLo;
                if (VALUES_GRADIENT == 1) { LOAD_TILE_SPLIT(pHi, pLo, region1, d, tr, gl_CooperativeMatrixLayoutColumnMajor); }
                else { LOAD_TILE_SPLIT(pHi, pLo, region1, tr, d, gl_CooperativeMatrixLayoutRowMajor); }
                [[unroll]] for (uint j = 0; j < 2; j++)
                {
                    FRAG_B vHi, vLo;
                    LOAD_TILE_SPLIT(vHi, vLo, region2, d, tileColumn(j), gl_CooperativeMatrixLayoutRowMajor);
                    if (PROBE_PRODUCTS) { MUL_SPLIT(o[j], pHi, pLo, vHi, vLo); }
                }
            }
        [[unroll]] for (uint j = 0; j < 2; j++)   // O bf16 where HALF_IO, dU'_local where COMPACT_SUMMANDS
            if (PROBE_STORES) STORE_RESULT(VALUES_GRADIENT == 0 ? HALF_IO : COMPACT_SUMMANDS, o[j], pc.result, valueOrigin + 16 * tileColumn(j), valueStride)
    }
}
