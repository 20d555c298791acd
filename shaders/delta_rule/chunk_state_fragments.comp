#version 460
// Chunked delta rule, stage 2 (forward; rerun by the backward) with the state held as tensor-core
// accumulator fragments (state_fragments.glsl): the state pass of chunk_state_tiles.comp with a
// short chain per chunk. One workgroup per (BV state rows v0 .., b H + h) walks the chunks in order,
// its slice S (BV x DK of the Dv x Dk state) in registers. Per chunk n (token rows t0 .. t0 + 63),
// with S the chunk-start state:
//   store S                                    (states[n]: for the output stage and the backward)
//   U' = U - W S^T                             (64 x BV: stored, and the A operand below)
//   S <- S + U'^T K                            (BV x DK)
// Under EARLY_FETCH (the default; below) the update S += U'^T K of chunk n runs at the
// start of the loop's next pass, with K's fragments of chunk n + 1 read right after it.
// What makes the chain short: every global read of chunk n + 1 (W, U and K, as fragments) is issued
// during chunk n, the products read their operands straight from shared memory and registers, and
// a chunk costs four workgroup barriers (six at DK = 128) where the tile pass takes about sixteen.
// Preconditions the host checks (VulkanBackend.DeltaRuleUsesStateFragments): T a multiple of 64 (the
// fragments are read and written whole, straight from the tensors), Dk = DK, Dv a multiple of BV,
// bf16 keys, subgroups of 32. Same inputs, outputs and push constants as chunk_state_tiles.comp.
// PREFETCH_W=0 (the _lean variant): W's tiles are read right before they are split, not a chunk
// ahead, which saves 32 registers per invocation at DK = 128.
// JIT_FETCH=1 (the _jit variants, DK = 128, BV = 64, lean, one plane; VulkanBackend.DeltaRuleStateFragmentsJit, and
// DeltaRuleGatedStateFragmentsJit for the gated build):
// nothing is read a chunk ahead: U's tiles are read right after the W S^T products that precede their
// use, K's fragments right after U' is formed, and the order is the late one whatever EARLY_FETCH says.
// It holds 126 registers per invocation on the H100, so two workgroups share an SM and the 256
// workgroups of B8 H16 Dv 128 run in one wave (the prefetching 64-row passes hold 154-176, one per SM,
// two waves; the 32-row lean pass 125, two per SM, but 512 workgroups); each workgroup waits out its
// reads. 5% faster than the 32-row lean pass there (bench/results/2026-12-07-h100-run94.txt): the
// waves were not the whole cost, the reads each chain waits on are most of the rest. Built with 32
// rows it held 96 registers (three workgroups per SM, 512 workgroups) and was slower than both
// (392.5 us at B8 H16 T2048 D128, run 95).
// Same products in the same order as the _lean variant with late reads, so the same bits.
// FUSED_OUTPUT=1 (the _fused variants, DK = 64, for a plain forward: VulkanBackend.DeltaRuleFusedOutput)
// also forms the chunk's outputs for the slice, in place of the output stage (chunk_output_fragments.comp):
//   O = scale Q S^T + P' U'        (64 x BV; P' = scale (Q K^T ⊙ M) from chunk_wy_fragments.comp)
// Q S^T shares S^T's fragments with W S^T (Q's fragments read straight from the tensor a chunk
// ahead), P' is read as bf16 hi and lo fragments, U' from its parts in region2. S and U'
// are stored only where given (the backward reads them; a plain forward needs neither).
// GATED=1 (the _gated variants; VulkanBackend.DeltaRuleGatedUsesStateFragments) runs the gated rule's
// chunk recurrence S <- gamma_C S + (diag(tail) U')^T K with f32 W, U and U' from its parallel stages:
// the host passes keysToEnd = diag(tail) K (chunk_decay_scale.comp) as the keys, and each update first
// scales S by chunkDecays[bh, n] = gamma_C.
// COMPACT_SUMMANDS (fragment_types.glsl; the _jit variants only, VulkanBackend.DeltaRuleCompactU): U is
// bf16. Its 64 x 64 block is read as two 16-byte pieces per invocation (LOAD_RAW_BLOCK, where the _jit
// pass reads U's tiles), copied into uStage before the barrier that ends the W S^T products, and
// widened from there as bf16 accumulator fragments into U' = U - W S^T after it: the same barriers,
// and no bf16 accumulator loads from global memory, which cost the pass 469 us at B8 H16 T8192 D128
// (H100 run 116).
// RAW_KEYS=1 (the _jit_raw variants; VulkanBackend.DeltaRuleRawKeyReads): K's 64 x DK block is read
// as 16-byte pieces (four per invocation, where the _jit pass reads K's fragments) and put into
// region1, whose copy of S is dead once every W S^T product is done, with U''s staging; the update
// S += U'^T K loads its K fragments from there after the barrier that publishes U'. The _jit pass
// reads each subgroup's 64 x 16 column of K as B fragments straight from the tensor, whose pairs of
// a row lie a row of keys (4 KB at H16 D128) apart; the same values enter the same products in the
// same order, so the same bits (DeltaRuleRawReadsTests).
// Shared memory: region1 holds S (hi, lo), region2 a 64-column block of W, then U' (hi, lo).
//! variant chunk_state_fragments_k64_v64 -DDK=64 -DBV=64 -O0
//! variant chunk_state_fragments_k64_v32 -DDK=64 -DBV=32 -O0
//! variant chunk_state_fragments_k128_v32 -DDK=128 -DBV=32 -O0
//! variant chunk_state_fragments_k128_v32_lean -DDK=128 -DBV=32 -DPREFETCH_W=0 -O0
//! variant chunk_state_fragments_k128_v64 -DDK=128 -DBV=64 -DPLANES=1 -O0
//! variant chunk_state_fragments_k128_v64_lean -DDK=128 -DBV=64 -DPREFETCH_W=0 -DPLANES=1 -O0
//! variant chunk_state_fragments_k128_v64_jit -DDK=128 -DBV=64 -DPREFETCH_W=0 -DJIT_FETCH=1 -DPLANES=1 -O0
//! variant chunk_state_fragments_k64_v64_gated -DDK=64 -DBV=64 -DGATED=1 -O0
//! variant chunk_state_fragments_k64_v32_gated -DDK=64 -DBV=32 -DGATED=1 -O0
//! variant chunk_state_fragments_k128_v32_gated -DDK=128 -DBV=32 -DGATED=1 -O0
//! variant chunk_state_fragments_k128_v32_lean_gated -DDK=128 -DBV=32 -DPREFETCH_W=0 -DGATED=1 -O0
//! variant chunk_state_fragments_k128_v64_gated -DDK=128 -DBV=64 -DPLANES=1 -DGATED=1 -O0
//! variant chunk_state_fragments_k128_v64_lean_gated -DDK=128 -DBV=64 -DPREFETCH_W=0 -DPLANES=1 -DGATED=1 -O0
//! variant chunk_state_fragments_k128_v64_jit_gated -DDK=128 -DBV=64 -DPREFETCH_W=0 -DJIT_FETCH=1 -DPLANES=1 -DGATED=1 -O0
//! variant chunk_state_fragments_k128_v64_jit_raw -DDK=128 -DBV=64 -DPREFETCH_W=0 -DJIT_FETCH=1 -DPLANES=1 -DRAW_KEYS=1 -O0
//! variant chunk_state_fragments_k128_v64_jit_raw_gated -DDK=128 -DBV=64 -DPREFETCH_W=0 -DJIT_FETCH=1 -DPLANES=1 -DRAW_KEYS=1 -DGATED=1 -O0
//! variant chunk_state_fragments_k64_v64_fused -DDK=64 -DBV=64 -DFUSED_OUTPUT=1 -O0
//! variant chunk_state_fragments_k64_v32_fused -DDK=64 -DBV=32 -DFUSED_OUTPUT=1 -O0
#extension GL_GOOGLE_include_directive : require
#include "state_fragments.glsl"
// Where the next chunk's global reads are issued (specialisation constant 2, VulkanBackend
// DeltaRuleStateEarlyFetch). Early (true, the default): each read is issued as soon as the registers it
// fills are free: the update S += U'^T K moves to the start of the next pass through the loop with K's
// fragments read right after it, the fused pass reads Q right after its products, the lean pass W's
// block 0 at the top. Late (false): the order of the run-79 kernels. Early took 7-9% off each forward
// pass on the H100 (run 81); the backward pass gained nothing from the same reordering at Dk = 64 and
// lost 6% at Dk = 128, so it keeps the late order.
#ifndef JIT_FETCH
#define JIT_FETCH 0
#endif
#if JIT_FETCH
layout(constant_id = 2) const bool EARLY_FETCH_ASKED = true;   // not followed: the late order
#define EARLY_FETCH false
#else
layout(constant_id = 2) const bool EARLY_FETCH = true;
#endif
#ifndef PREFETCH_W
#define PREFETCH_W 1
#endif
// U bf16, read as raw pieces and staged (COMPACT_SUMMANDS, _jit only: the others read U a chunk
// ahead, and the host never sets the constant for them). Both forms spelled out (state_fragments.glsl).
#if JIT_FETCH
#define U_RAW COMPACT_SUMMANDS
#define U_F32 (!COMPACT_SUMMANDS)
// U's 64 x 64 bf16 block (BV = 64), rows of BLOCK_ROW uvec4; one word where U is f32, so the default
// pass keeps its shared memory (and the L1 it leaves)
shared uvec4 uStage[COMPACT_SUMMANDS ? CHUNK * BLOCK_ROW : 1];
ACC_BF16 uStagedTile(uint j)
{
    ACC_BF16 tile;
    coopMatLoad(tile, uStage, 16 * tokenTileRow() * BLOCK_ROW + 2 * tokenTileColumn(j), BLOCK_ROW, gl_CooperativeMatrixLayoutRowMajor);
    return tile;
}
#else
#define U_RAW false
#define U_F32 true
#endif
#ifndef FUSED_OUTPUT
#define FUSED_OUTPUT 0
#endif
#ifndef GATED
#define GATED 0
#endif
#ifndef RAW_KEYS
#define RAW_KEYS 0
#endif
#if RAW_KEYS
#define KEY_PIECES (CHUNK * DK / 8 / 256)   // uvec4 of K's block per invocation
#endif

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t w;             // bf16 where COMPACT
    uint64_t u;
    uint64_t uPrime;        // out (FUSED_OUTPUT: 0, not stored); bf16 where COMPACT
    uint64_t states;        // out (FUSED_OUTPUT: 0, not stored); bf16 where COMPACT
    uint64_t initialState;  // 0: zeros
    uint64_t finalState;    // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
#if FUSED_OUTPUT
    uint64_t q;
    uint64_t pPrime;        // P' of each chunk as bf16 hi and lo planes [B H chunks, 2, 64, 64] (rounded: hi only)
    uint64_t outputs;       // out: O (bf16 where HALF_IO, else f32)
    float scale;
#endif
#if GATED
    uint64_t chunkDecays;   // gamma_C of each chunk, f32 [B H, chunks] (chunk_decay_scale.comp)
#endif
} pc;

// State tile j of this subgroup: rows 16 stateTileRow(j) .. of the slice, columns 16 stateTileColumn() ..
// (one column block per subgroup, so the subgroup needs K's fragments of that block only).
uint stateTileRow(uint j) { return gl_SubgroupID / TK + j * (SUBGROUPS / TK); }
uint stateTileColumn() { return gl_SubgroupID % TK; }

void main()
{
    uint v0 = gl_WorkGroupID.x * BV, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = pc.t / CHUNK, stateSize = pc.dv * pc.dk;
    uint keyStride = pc.heads * DK, valueStride = pc.heads * pc.dv;   // between consecutive tokens
    F32Buffer u = F32Buffer(pc.u);
    Words4Buffer keys = Words4Buffer(pc.k);

    ACC s[STATE_TILES];
    [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
    {
        if (pc.initialState == 0ul) s[j] = ACC(0.0);
        else coopMatLoad(s[j], F32Buffer(pc.initialState).v, bh * stateSize + (v0 + 16 * stateTileRow(j)) * DK + 16 * stateTileColumn(),
                         DK, gl_CooperativeMatrixLayoutRowMajor);
    }

    // Chunk n's operands, read during chunk n - 1: W's block tiles (two of each 64-column block), U
    // for the U' tiles, K for the state tiles' column block.
    ACC wTiles[KB][2];
    uvec4 wRaw[KB][2];   // compact W (state_fragments.glsl, LOAD_W_BLOCK_OF)
    ACC uTiles[TOKEN_TILES];
    uvec4 uRaw[RAW_PIECES];   // U_RAW: this invocation's pieces of U's 64 x 64 bf16 block
    FRAG_B kFrags[4];
#define FETCH_W(n) \
    [[unroll]] for (uint kb = 0; kb < KB; kb++) { LOAD_W_BLOCK_OF(b * pc.t + (n) * CHUNK, kb) }
#define FETCH_U(n) \
    if (U_RAW) { LOAD_RAW_BLOCK(uRaw, pc.u, (b * pc.t + (n) * CHUNK) * valueStride + h * pc.dv + v0, valueStride); } \
    else \
    { \
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++) \
            coopMatLoad(uTiles[j], u.v, (b * pc.t + (n) * CHUNK + 16 * tokenTileRow()) * valueStride + h * pc.dv + v0 + 16 * tokenTileColumn(j), \
                        valueStride, gl_CooperativeMatrixLayoutRowMajor); \
    }
#if FUSED_OUTPUT
    FRAG_A queryFrags[KB][4];   // Q's tiles (tokenTileRow, 4 kb + kk) of chunk n, read during chunk n - 1
#define FETCH_Q(n) \
    [[unroll]] for (uint kb = 0; kb < KB; kb++) [[unroll]] for (uint kk = 0; kk < 4; kk++) \
        coopMatLoad(queryFrags[kb][kk], Words4Buffer(pc.q).v, ((b * pc.t + (n) * CHUNK + 16 * tokenTileRow()) * keyStride + h * DK + 64 * kb + 16 * kk) / 8, \
                    keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
#else
#define FETCH_Q(n)
#endif
#if RAW_KEYS
    // piece p of this invocation: row e / (DK / 8), uvec4 e % (DK / 8) of K's block, e = 256 p + id
    uvec4 kRaw[KEY_PIECES];
#define FETCH_K(n) \
    [[unroll]] for (uint p = 0; p < KEY_PIECES; p++) \
    { \
        uint e = 256 * p + gl_LocalInvocationID.x; \
        kRaw[p] = keys.v[((b * pc.t + (n) * CHUNK + e / (DK / 8)) * keyStride + h * DK) / 8 + e % (DK / 8)]; \
    }
#define PUT_K() \
    [[unroll]] for (uint p = 0; p < KEY_PIECES; p++) \
    { \
        uint e = 256 * p + gl_LocalInvocationID.x; \
        region1[(e / (DK / 8)) * STATE_ROW + e % (DK / 8)] = kRaw[p]; \
    }
#define K_FRAGMENT(tb) FRAG_B kFrag; coopMatLoad(kFrag, region1, 16 * (tb) * STATE_ROW + 2 * stateTileColumn(), STATE_ROW, gl_CooperativeMatrixLayoutRowMajor);
#define K_OPERAND(tb) kFrag
#else
#define FETCH_K(n) \
    [[unroll]] for (uint tb = 0; tb < 4; tb++) \
        coopMatLoad(kFrags[tb], keys.v, ((b * pc.t + (n) * CHUNK + 16 * tb) * keyStride + h * DK + 16 * stateTileColumn()) / 8, \
                    keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
#define K_FRAGMENT(tb)
#define K_OPERAND(tb) kFrags[tb]
#endif
    // Lean: W's block tiles of chunk n (rows from firstRow), one 64-column block at a time.
#define LOAD_W_BLOCK(n, kb) LOAD_W_BLOCK_OF(b * pc.t + (n) * CHUNK, kb)
    // S += U'^T K of chunk m, whose U' is in region2 and whose K is in kFrags: U'^T (BV x 64)
    // through column-major loads of U' (64 x BV). Gated, S is first scaled by gamma_C of chunk m.
#if GATED
#define DECAY_STATE(m) \
    { \
        float chunkDecay = F32Buffer(pc.chunkDecays).v[bh * chunks + (m)]; \
        [[unroll]] for (uint j = 0; j < STATE_TILES; j++) s[j] = s[j] * chunkDecay; \
    }
#else
#define DECAY_STATE(m)
#endif
#define UPDATE_STATE(m) \
    DECAY_STATE(m) \
    [[unroll]] for (uint tb = 0; tb < 4; tb++) \
    { \
        K_FRAGMENT(tb) \
        [[unroll]] for (uint j = 0; j < STATE_TILES; j++) \
        { \
            FRAG_A uHi, uLo; \
            LOAD_SPLIT(uHi, uLo, region2, REGION2_PLANE, 16 * tb * SLICE_ROW + 2 * stateTileRow(j), SLICE_ROW, gl_CooperativeMatrixLayoutColumnMajor); \
            if (PROBE_PRODUCTS) { MUL_EXACT_B(s[j], uHi, uLo, K_OPERAND(tb)); } \
        } \
    }
    if (PREFETCH_W != 0) { FETCH_W(0) }
#if !JIT_FETCH
    FETCH_U(0)
    if (!EARLY_FETCH) { FETCH_K(0) }
#endif
    FETCH_Q(0)

    [[dont_unroll]] for (uint n = 0; n < chunks; n++)
    {
        uint t0 = n * CHUNK;
        bool fetching = PROBE_FETCHES || n == 0;
        if (EARLY_FETCH)
        {
            if (n > 0) { UPDATE_STATE(n - 1) }   // chunk n - 1's
            if (fetching) { FETCH_K(n) }
            if (PREFETCH_W == 0 && fetching) { LOAD_W_BLOCK(n, 0) }
        }
        CHUNK_BARRIER();   // the previous chunk's update is done reading region2 (U')
        [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
        {
            uint vb = stateTileRow(j), kb = stateTileColumn();
            if (PROBE_STORES && (FUSED_OUTPUT == 0 || pc.states != 0ul) && UNSTAGED_STORES)
                STORE_INTERMEDIATE(COMPACT, s[j], pc.states, ((bh * chunks + n) * pc.dv + v0 + 16 * vb) * DK + 16 * kb, DK)
            if (PROBE_STAGING) SPLIT_STORE(s[j], region1, REGION1_PLANE, 16 * vb * STATE_ROW + 2 * kb, STATE_ROW)
        }

        // P = W S^T, one 64-column block of Dk at a time
        ACC p[TOKEN_TILES];
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++) p[j] = ACC(0.0);
#if FUSED_OUTPUT
        ACC o[TOKEN_TILES];   // scale Q S^T, then O
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++) o[j] = ACC(0.0);
#endif
        [[unroll]] for (uint kb = 0; kb < KB; kb++)
        {
            // Lean and early: block 0 was read at the top, a later block before the barrier (not during
            // the previous block's products, which would hold both blocks' registers at once).
            if (PREFETCH_W == 0 && EARLY_FETCH && kb > 0 && fetching) { LOAD_W_BLOCK(n, kb) }
            if (kb > 0) CHUNK_BARRIER();   // the previous block's products are done reading region2
            if (PREFETCH_W == 0 && !EARLY_FETCH && fetching) { LOAD_W_BLOCK(n, kb) }
            if (PROBE_STAGING) { STAGE_W_BLOCK(kb) }
            if (PROBE_FETCHES && PREFETCH_W != 0 && kb + 1 == KB && n + 1 < chunks) { FETCH_W(n + 1) }
            CHUNK_BARRIER();
            // S's staged copy (region1's hi plane) out to states[n]
            if (kb == 0 && STAGED_STORES && PROBE_STORES && (FUSED_OUTPUT == 0 || pc.states != 0ul))
                COPY_STAGED_ROWS(region1, STATE_ROW, BV, DK / 8, pc.states, ((bh * chunks + n) * pc.dv + v0) * DK, DK, 0u)
            [[unroll]] for (uint kk = 0; kk < 4; kk++)
                [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++)
                {
                    FRAG_A wHi, wLo;
                    FRAG_B sHi, sLo;
                    LOAD_SPLIT(wHi, wLo, region2, REGION2_PLANE, 16 * tokenTileRow() * BLOCK_ROW + 2 * kk, BLOCK_ROW, gl_CooperativeMatrixLayoutRowMajor);
                    // S^T block (64 kb + 16 kk .., 16 vb ..) as column-major S
                    LOAD_SPLIT(sHi, sLo, region1, REGION1_PLANE, 16 * tokenTileColumn(j) * STATE_ROW + 8 * kb + 2 * kk, STATE_ROW,
                               gl_CooperativeMatrixLayoutColumnMajor);
                    if (PROBE_PRODUCTS)
                    {
                        MUL_SPLIT(p[j], wHi, wLo, sHi, sLo);
#if FUSED_OUTPUT
                        MUL_LO(o[j], queryFrags[kb][kk], sLo);
                        o[j] = coopMatMulAdd(queryFrags[kb][kk], sHi, o[j]);
#endif
                    }
                }
        }
        if (EARLY_FETCH && PROBE_FETCHES && n + 1 < chunks) { FETCH_Q(n + 1) }
        // U' = U - P, stored (from its staged copy below where STAGED_STORES, unless the loop ends before staging it)
        bool stagedUPrime = STAGED_STORES && (FUSED_OUTPUT != 0 || n + 1 < chunks || pc.finalState != 0ul);
#if JIT_FETCH
        if (fetching) { FETCH_U(n) }
#endif
#define FORM_U_PRIME(uTile) \
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++) \
        { \
            p[j] = (uTile) - p[j]; \
            if (PROBE_STORES && (FUSED_OUTPUT == 0 || pc.uPrime != 0ul) && stagedUPrime == false) \
                STORE_INTERMEDIATE(COMPACT, p[j], pc.uPrime, (b * pc.t + t0 + 16 * tokenTileRow()) * valueStride + h * pc.dv + v0 + 16 * tokenTileColumn(j), \
                                   valueStride) \
        }
        if (U_F32) { FORM_U_PRIME(uTiles[j]) }
#if JIT_FETCH
        if (fetching && (n + 1 < chunks || pc.finalState != 0ul)) { FETCH_K(n) }
#else
        if (PROBE_FETCHES && n + 1 < chunks) { FETCH_U(n + 1) }
#endif
#if FUSED_OUTPUT
        // P' tiles (tokenTileRow, d), d <= tokenTileRow, for O += P' U'
        FRAG_A scoresHi[4], scoresLo[4];
        uint scoresOrigin = (bh * chunks + n) * 2 * CHUNK * 8;   // uvec4 of 8 bf16; the lo plane CHUNK * 8 further
        [[unroll]] for (uint d = 0; d < 4; d++)
            if (d <= tokenTileRow() && fetching)
            {
                coopMatLoad(scoresHi[d], Words4Buffer(pc.pPrime).v, scoresOrigin + 16 * tokenTileRow() * 8 + 2 * d, 8, gl_CooperativeMatrixLayoutRowMajor);
                if (SPLIT_OPERANDS) coopMatLoad(scoresLo[d], Words4Buffer(pc.pPrime).v, scoresOrigin + CHUNK * 8 + 16 * tokenTileRow() * 8 + 2 * d, 8, gl_CooperativeMatrixLayoutRowMajor);
            }
#else
        if (U_F32 && n + 1 == chunks && pc.finalState == 0ul) break;   // nothing reads the last update
#endif

#if JIT_FETCH
        if (U_RAW) { PUT_RAW_BLOCK(uRaw, uStage, BLOCK_ROW); }
#endif
        CHUNK_BARRIER();   // every product is done reading W from region2 (and U's block is in uStage)
#if JIT_FETCH
        if (U_RAW)
        {
            FORM_U_PRIME(ACC(uStagedTile(j)))   // exact: bf16 widens to f32
            if (n + 1 == chunks && pc.finalState == 0ul) break;   // nothing reads the last update
        }
#endif
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++)
            if (PROBE_STAGING) SPLIT_STORE(p[j], region2, REGION2_PLANE, 16 * tokenTileRow() * SLICE_ROW + 2 * tokenTileColumn(j), SLICE_ROW)
#if RAW_KEYS
        // K's block into region1 (the W S^T products and S's staged store are behind the last barrier)
        if (PROBE_STAGING) { PUT_K() }
#endif
        CHUNK_BARRIER();
        if (stagedUPrime && PROBE_STORES && (FUSED_OUTPUT == 0 || pc.uPrime != 0ul))
            COPY_STAGED_ROWS(region2, SLICE_ROW, CHUNK, BV / 8, pc.uPrime, (b * pc.t + t0) * valueStride + h * pc.dv + v0, valueStride, 0u)
#if FUSED_OUTPUT
        // O = scale Q S^T + P' U' (U' row-major from its parts), stored
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++)
        {
            o[j] = o[j] * pc.scale;
            [[unroll]] for (uint d = 0; d < 4; d++)
                if (d <= tokenTileRow())
                {
                    FRAG_B uHi, uLo;
                    LOAD_SPLIT(uHi, uLo, region2, REGION2_PLANE, 16 * d * SLICE_ROW + 2 * tokenTileColumn(j), SLICE_ROW, gl_CooperativeMatrixLayoutRowMajor);
                    if (PROBE_PRODUCTS) { MUL_SPLIT(o[j], scoresHi[d], scoresLo[d], uHi, uLo); }
                }
            if (PROBE_STORES)
                STORE_INTERMEDIATE(HALF_IO, o[j], pc.outputs, (b * pc.t + t0 + 16 * tokenTileRow()) * valueStride + h * pc.dv + v0 + 16 * tokenTileColumn(j), valueStride)
        }
        if (!EARLY_FETCH && PROBE_FETCHES && n + 1 < chunks) { FETCH_Q(n + 1) }
        if (n + 1 == chunks && pc.finalState == 0ul) break;   // nothing reads the last update
#endif
        if (!EARLY_FETCH)
        {
            UPDATE_STATE(n)
#if !JIT_FETCH
            if (PROBE_FETCHES && n + 1 < chunks) { FETCH_K(n + 1) }
#endif
        }
    }
    // Early: the last chunk's update (its U' is in region2, its K in kFrags)
    if (EARLY_FETCH && pc.finalState != 0ul) { UPDATE_STATE(chunks - 1) }
    if (pc.finalState != 0ul)
        [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
            coopMatStore(s[j], F32Buffer(pc.finalState).v, bh * stateSize + (v0 + 16 * stateTileRow(j)) * DK + 16 * stateTileColumn(),
                         DK, gl_CooperativeMatrixLayoutRowMajor);
}
