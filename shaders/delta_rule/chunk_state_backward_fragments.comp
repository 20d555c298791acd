#version 460
// Chunked delta rule, backward state pass with the state gradient held as tensor-core accumulator
// fragments (state_fragments.glsl): the pass of chunk_state_backward_tiles.comp with a short chain
// per chunk, as chunk_state_fragments.comp is for the forward. One workgroup per (BV rows v0 .. of
// Dv, b H + h) walks the chunks in reverse carrying dS (BV x DK), the gradient reaching the end of
// the current chunk, seeded by the final state's gradient. Per chunk, with dO' = scale dO:
//   store dS_C                                 (dStates[n]: for the per-chunk gradient stage)
//   dU' = dU'_local + K dS_C^T                 (64 x BV, stored: in place of dU'_local, or compact)
//   dS_0 = dS_C + dO'^T Q - dU'^T W            (BV x DK)
// dS_0 becomes the previous chunk's dS_C; after chunk 0 it is the initial state's gradient. Every
// global read of chunk n - 1 is issued during chunk n. K and Q are bf16 (one part); dS, dO', dU' and
// W enter the products as hi and lo parts. Preconditions as for chunk_state_fragments.comp
// (VulkanBackend.DeltaRuleUsesStateFragments). Same inputs, outputs and push constants as
// chunk_state_backward_tiles.comp, and one more at the end: where dU' goes (dUPrime itself, or a bf16
// tensor where COMPACT: fragment_types.glsl).
// FUSED_VALUES=1 (the _values variants, DK = 64; VulkanBackend.DeltaRuleFusedValuesGradient): the pass
// also forms the intra-chunk part itself, dU'_local = P'^T dO = (P'^T dO') / scale, from the P' that
// chunk_wy_fragments.comp stored for the forward's fused state pass (pc.scores, bf16 hi and lo planes
// [B H chunks, 2, 64, 64]; P'^T's tiles through column-major loads, a chunk ahead like K) and the dO'
// it stages anyway, in place of chunk_values_grad and its f32 dU'_local (pc.dUPrime is not read).
// GATED=1 (the _gated variants; VulkanBackend.DeltaRuleGatedUsesStateFragments): the gated rule's
//   dU' = dU'_local + diag(tail) K dS_C^T,   dS_0 = gamma_C dS_C + dO'^T diag(gamma) Q - dU'^T W
// with f32 W and dU'_local from its parallel stages: the host passes keysToEnd = diag(tail) K and
// queriesFrom = diag(gamma) Q (chunk_decay_scale.comp) as the keys and queries, and dS_C is scaled by
// chunkDecays[bh, n] = gamma_C once it is stored and staged.
// SUBGROUPS=4 (the _narrow variants, DK = 128, BV = 32, ungated and GATED; the default for rounded
// operands and Dv a multiple of 64, VulkanBackend.DeltaRuleNarrowBackward): workgroups of 4 subgroups (128 invocations)
// for 32 rows, each subgroup holding the four dS tiles and the reads a subgroup holds at 64 rows, so
// about as many registers an invocation but half as many a workgroup: two workgroups, each its own
// chain of chunks, share an SM where a 64-row workgroup holds it alone. Twice the workgroups read each
// chunk's K, Q and W. The same products in the same order as at 64 rows: the same bits. H100 run 98,
// B8 H16 D128: the backward part of forward+backward 4% shorter than with the 64-row pass.
// RAW_TOKENS=1 (the _narrow_raw variants, rounded operands only, so PLANES=1): K and Q are read as
// 16-byte pieces, not as fragments straight from the tensors. A subgroup's fragments of them are its
// own (K: its 16 token rows, all of Dk; Q: all 64 token rows, its KB 16-column blocks), so each
// subgroup reads just those pieces a chunk ahead into registers, puts them into a slot of shared
// memory of its own right before use (K with the staging of dS, Q after the products with K, in the
// same slot) and loads its fragments from there. Only subgroup barriers guard the slot. A fragment
// load from a tensor gathers 4-byte pairs from 8 or 16 rows a row of 16 bf16 apart per instruction,
// a 16-byte piece fills a quarter of a 64-byte row segment, so the same bytes take a fraction of the
// load instructions and L1 requests. The same goes for the subgroup's 16 x BV rows of dO where
// HALF_IO (widened, scaled and rounded to nearest as SPLIT_STORE rounds, straight into region2) and of
// dU'_local where COMPACT_SUMMANDS (put into the slot after K's rows, widened from there); f32 ones are
// read as fragments as before. The fragments hold the same bf16 values and enter the same products in
// the same order: the same bits as the _narrow variants.
// Shared memory: region1 holds dS (hi, lo), then -dU'; region2 dO', then a 64-column block of W.
//! variant chunk_state_backward_fragments_k64_v64 -DDK=64 -DBV=64 -O0
//! variant chunk_state_backward_fragments_k64_v32 -DDK=64 -DBV=32 -O0
//! variant chunk_state_backward_fragments_k64_v64_values -DDK=64 -DBV=64 -DFUSED_VALUES=1 -O0
//! variant chunk_state_backward_fragments_k64_v32_values -DDK=64 -DBV=32 -DFUSED_VALUES=1 -O0
//! variant chunk_state_backward_fragments_k128_v32 -DDK=128 -DBV=32 -O0
//! variant chunk_state_backward_fragments_k128_v64 -DDK=128 -DBV=64 -DPLANES=1 -O0
//! variant chunk_state_backward_fragments_k128_v32_narrow -DDK=128 -DBV=32 -DSUBGROUPS=4 -O0
//! variant chunk_state_backward_fragments_k64_v64_gated -DDK=64 -DBV=64 -DGATED=1 -O0
//! variant chunk_state_backward_fragments_k64_v32_gated -DDK=64 -DBV=32 -DGATED=1 -O0
//! variant chunk_state_backward_fragments_k128_v32_gated -DDK=128 -DBV=32 -DGATED=1 -O0
//! variant chunk_state_backward_fragments_k128_v64_gated -DDK=128 -DBV=64 -DPLANES=1 -DGATED=1 -O0
//! variant chunk_state_backward_fragments_k128_v32_narrow_gated -DDK=128 -DBV=32 -DSUBGROUPS=4 -DGATED=1 -O0
//! variant chunk_state_backward_fragments_k128_v32_narrow_raw -DDK=128 -DBV=32 -DSUBGROUPS=4 -DPLANES=1 -DRAW_TOKENS=1 -O0
//! variant chunk_state_backward_fragments_k128_v32_narrow_raw_gated -DDK=128 -DBV=32 -DSUBGROUPS=4 -DPLANES=1 -DRAW_TOKENS=1 -DGATED=1 -O0
#extension GL_GOOGLE_include_directive : require
#include "state_fragments.glsl"

#ifndef FUSED_VALUES
#define FUSED_VALUES 0
#endif
#ifndef GATED
#define GATED 0
#endif
#ifndef RAW_TOKENS
#define RAW_TOKENS 0
#endif
#if RAW_TOKENS
// Each subgroup's slot: its K rows (16 x DK, STATE_ROW uvec4 a row) and its dU'_local rows (16 x BV,
// SLICE_ROW uvec4 a row, from LOCAL_AT), then, in turn, its Q columns (64 x 16 KB, QUERY_ROW uvec4 a
// row); rows padded by 8 bf16 as the regions' are.
#define QUERY_ROW (2 * KB + 1)
#define LOCAL_AT (16 * STATE_ROW)
#define TOKEN_SLOT max(LOCAL_AT + 16 * SLICE_ROW, CHUNK * QUERY_ROW)
#define TOKEN_PIECES (16 * BV / 8 / 32)        // uvec4 of dO (or of dU'_local) per invocation
#define KEY_PIECES (16 * DK / 8 / 32)          // uvec4 of K per invocation
#define QUERY_PIECES (CHUNK * 2 * KB / 32)     // uvec4 of Q per invocation
shared uvec4 tokenSlots[SUBGROUPS * TOKEN_SLOT];
#endif

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t w;             // bf16 where COMPACT
    uint64_t dOut;          // f32, or bf16 where HALF_IO
    uint64_t dUPrime;       // in: dU'_local (f32, or bf16 where COMPACT_SUMMANDS; FUSED_VALUES: not read)
    uint64_t dStates;       // out: dS_C per chunk (bf16 where COMPACT)
    uint64_t dFinal;        // 0: zeros
    uint64_t dInitial;      // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
    uint64_t dUPrimeOut;    // out: dU' (f32: may be dUPrime itself, each tile written after it is read; bf16 where COMPACT)
    uint64_t scores;        // FUSED_VALUES: P' = scale (Q K^T ⊙ M) as bf16 hi and lo planes (chunk_wy_fragments.comp)
#if GATED
    uint64_t chunkDecays;   // gamma_C of each chunk, f32 [B H, chunks] (chunk_decay_scale.comp)
#endif
} pc;

// State tile j of this subgroup: rows 16 stateTileRow(j) .., columns 16 stateTileColumn(j) ..; tile j
// lies in the 64-column block j % KB, so every subgroup has work in each block of W.
#if SUBGROUPS == 4
// (_narrow, BV = 32, DK = 128: tiles (j / 2, s + 4 (j % 2)), four per subgroup)
uint stateTileRow(uint j) { return j / KB; }
uint stateTileColumn(uint j) { return gl_SubgroupID + 4 * (j % KB); }
#else
uint stateTileRow(uint j) { return gl_SubgroupID / 4 + 2 * (j / KB); }
uint stateTileColumn(uint j) { return gl_SubgroupID % 4 + 4 * (j % KB); }
#endif

void main()
{
    uint v0 = gl_WorkGroupID.x * BV, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = pc.t / CHUNK, stateSize = pc.dv * pc.dk;
    uint keyStride = pc.heads * DK, valueStride = pc.heads * pc.dv;   // between consecutive tokens
    F32Buffer dOut = F32Buffer(pc.dOut), dUPrimeLocal = F32Buffer(pc.dUPrime);
    Words4Buffer keys = Words4Buffer(pc.k), queries = Words4Buffer(pc.q);

    ACC ds[STATE_TILES];
    [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
    {
        if (pc.dFinal == 0ul) ds[j] = ACC(0.0);
        else coopMatLoad(ds[j], F32Buffer(pc.dFinal).v, bh * stateSize + (v0 + 16 * stateTileRow(j)) * DK + 16 * stateTileColumn(j),
                         DK, gl_CooperativeMatrixLayoutRowMajor);
    }

    // Chunk n's operands, read during chunk n + 1: W's block tiles, dU'_local and dO for the token
    // tiles, K (every column block of the token tiles' rows) and Q (the state tiles' column blocks).
    ACC wTiles[KB][BLOCK_TILES];
    uvec4 wRaw[KB][RAW_PIECES];   // compact W (state_fragments.glsl, LOAD_W_BLOCK_OF)
    ACC dOutTiles[TOKEN_TILES];
    ACC_BF16 dOutHalf[TOKEN_TILES];   // HALF_IO: dO's tiles as read (bf16), widened where they are staged
#if FUSED_VALUES
    // P'^T's tiles (tokenTileRow, tb), tb >= tokenTileRow: the transposes of P''s tiles (tb, tokenTileRow)
    FRAG_A scoresHi[4], scoresLo[4];
#define FETCH_SCORES(n) \
    [[unroll]] for (uint tb = 0; tb < 4; tb++) \
        if (tb >= tokenTileRow()) \
        { \
            uint at = (bh * chunks + (n)) * 2 * CHUNK * 8 + 16 * tb * 8 + 2 * tokenTileRow();   /* uvec4 of 8 bf16 */ \
            coopMatLoad(scoresHi[tb], Words4Buffer(pc.scores).v, at, 8, gl_CooperativeMatrixLayoutColumnMajor); \
            if (SPLIT_OPERANDS) coopMatLoad(scoresLo[tb], Words4Buffer(pc.scores).v, at + CHUNK * 8, 8, gl_CooperativeMatrixLayoutColumnMajor); \
        }
#define FETCH_LOCAL_TILE(n, j)
#else
    ACC localTiles[TOKEN_TILES];
    ACC_BF16 localHalf[TOKEN_TILES];   // COMPACT_SUMMANDS: dU'_local's tiles as read, widened where dU' is formed
#define FETCH_SCORES(n)
#define FETCH_LOCAL_TILE(n, j) \
    if (COMPACT_SUMMANDS) coopMatLoad(localHalf[j], Words4Buffer(pc.dUPrime).v, (TOKEN_ORIGIN(n, tokenTileRow()) + 16 * tokenTileColumn(j)) / 8, valueStride / 8, \
                                      gl_CooperativeMatrixLayoutRowMajor); \
    else coopMatLoad(localTiles[j], dUPrimeLocal.v, TOKEN_ORIGIN(n, tokenTileRow()) + 16 * tokenTileColumn(j), valueStride, gl_CooperativeMatrixLayoutRowMajor);
#endif
#if RAW_TOKENS
    uvec4 kRaw[KEY_PIECES], qRaw[QUERY_PIECES];
    uint slot = gl_SubgroupID * TOKEN_SLOT, lane = gl_SubgroupInvocationID;
    // piece p of this invocation: K row e / (DK / 8), uvec4 e % (DK / 8) of the subgroup's 16 rows;
    // Q row e / (2 KB), uvec4 e % (2 KB) of the subgroup's columns (block stateTileColumn(kb) for kb = that / 2)
#define FETCH_KEYS(n) \
    [[unroll]] for (uint p = 0; p < KEY_PIECES; p++) \
    { \
        uint e = 32 * p + lane, r = e / (DK / 8), c = e % (DK / 8); \
        kRaw[p] = keys.v[((b * pc.t + (n) * CHUNK + 16 * tokenTileRow() + r) * keyStride + h * DK) / 8 + c]; \
    }
#define FETCH_QUERIES(n) \
    [[unroll]] for (uint p = 0; p < QUERY_PIECES; p++) \
    { \
        uint e = 32 * p + lane, r = e / (2 * KB), c = e % (2 * KB); \
        qRaw[p] = queries.v[((b * pc.t + (n) * CHUNK + r) * keyStride + h * DK) / 8 + 2 * stateTileColumn(c / 2) + c % 2]; \
    }
#define PUT_KEYS() \
    [[unroll]] for (uint p = 0; p < KEY_PIECES; p++) \
    { \
        uint e = 32 * p + lane; \
        tokenSlots[slot + (e / (DK / 8)) * STATE_ROW + e % (DK / 8)] = kRaw[p]; \
    }
#define PUT_QUERIES() \
    [[unroll]] for (uint p = 0; p < QUERY_PIECES; p++) \
    { \
        uint e = 32 * p + lane; \
        tokenSlots[slot + (e / (2 * KB)) * QUERY_ROW + e % (2 * KB)] = qRaw[p]; \
    }
    // piece p of this invocation: row e / (BV / 8), uvec4 e % (BV / 8) of the subgroup's 16 token rows
    uvec4 dOutRaw[TOKEN_PIECES], localRaw[TOKEN_PIECES];
#define TOKEN_PIECE_AT(n, e) ((TOKEN_ORIGIN(n, tokenTileRow()) + ((e) / (BV / 8)) * valueStride) / 8 + (e) % (BV / 8))
#define FETCH_TOKEN_PIECES(n) \
    [[unroll]] for (uint p = 0; p < TOKEN_PIECES; p++) \
    { \
        uint e = 32 * p + lane; \
        if (HALF_IO) dOutRaw[p] = Words4Buffer(pc.dOut).v[TOKEN_PIECE_AT(n, e)]; \
        if (COMPACT_SUMMANDS) localRaw[p] = Words4Buffer(pc.dUPrime).v[TOKEN_PIECE_AT(n, e)]; \
    }
// dO' = scale dO rounded to nearest into region2 (as SPLIT_STORE rounds), dU'_local into the slot
#define PUT_TOKEN_PIECES() \
    [[unroll]] for (uint p = 0; p < TOKEN_PIECES; p++) \
    { \
        uint e = 32 * p + lane, r = e / (BV / 8), c = e % (BV / 8); \
        if (HALF_IO) \
        { \
            float x[8]; \
            unpackBf16(dOutRaw[p], x); \
            [[unroll]] for (uint i = 0; i < 8; i++) x[i] = x[i] * pc.scale; \
            region2[(16 * tokenTileRow() + r) * SLICE_ROW + c] = packNearestBf16(x); \
        } \
        if (COMPACT_SUMMANDS) tokenSlots[slot + LOCAL_AT + r * SLICE_ROW + c] = localRaw[p]; \
    }
#define FETCH_KEY_FRAGMENTS(n)
#else
    FRAG_A kFrags[TK];
    FRAG_B qFrags[KB][4];
#define FETCH_KEY_FRAGMENTS(n) \
    [[unroll]] for (uint kb16 = 0; kb16 < TK; kb16++) \
        coopMatLoad(kFrags[kb16], keys.v, ((b * pc.t + (n) * CHUNK + 16 * tokenTileRow()) * keyStride + h * DK + 16 * kb16) / 8, \
                    keyStride / 8, gl_CooperativeMatrixLayoutRowMajor); \
    [[unroll]] for (uint kb = 0; kb < KB; kb++) [[unroll]] for (uint tb = 0; tb < 4; tb++) \
        coopMatLoad(qFrags[kb][tb], queries.v, ((b * pc.t + (n) * CHUNK + 16 * tb) * keyStride + h * DK + 16 * stateTileColumn(kb)) / 8, \
                    keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
#endif
#define TOKEN_ORIGIN(n, tb) ((b * pc.t + (n) * CHUNK + 16 * (tb)) * valueStride + h * pc.dv + v0)
#define FETCH_W(n) \
    [[unroll]] for (uint kb = 0; kb < KB; kb++) { LOAD_W_BLOCK_OF(b * pc.t + (n) * CHUNK, kb) }
#if RAW_TOKENS
// Where bf16, dO and dU'_local come as pieces (FETCH_TOKEN_PIECES); only f32 ones as fragments.
#define IF_LOCAL_FRAGMENTS if (COMPACT_SUMMANDS == false)
#define IF_DOUT_FRAGMENTS if (HALF_IO == false)
#else
#define IF_LOCAL_FRAGMENTS
#define IF_DOUT_FRAGMENTS
#endif
#define FETCH_TOKENS(n) \
    FETCH_SCORES(n) \
    [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++) \
    { \
        IF_LOCAL_FRAGMENTS { FETCH_LOCAL_TILE(n, j) } \
        IF_DOUT_FRAGMENTS { \
        if (HALF_IO) coopMatLoad(dOutHalf[j], Words4Buffer(pc.dOut).v, (TOKEN_ORIGIN(n, tokenTileRow()) + 16 * tokenTileColumn(j)) / 8, valueStride / 8, \
                                 gl_CooperativeMatrixLayoutRowMajor); \
        else coopMatLoad(dOutTiles[j], dOut.v, TOKEN_ORIGIN(n, tokenTileRow()) + 16 * tokenTileColumn(j), valueStride, gl_CooperativeMatrixLayoutRowMajor); } \
    } \
    FETCH_KEY_FRAGMENTS(n)
    FETCH_W(chunks - 1)
    FETCH_TOKENS(chunks - 1)
#if RAW_TOKENS
    FETCH_KEYS(chunks - 1)
    FETCH_QUERIES(chunks - 1)
    FETCH_TOKEN_PIECES(chunks - 1)
#endif

    [[dont_unroll]] for (int nn = int(chunks) - 1; nn >= 0; nn--)
    {
        uint n = uint(nn);
        CHUNK_BARRIER();   // the previous chunk's update is done reading both regions
        [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
        {
            uint vb = stateTileRow(j), kb16 = stateTileColumn(j);
            if (PROBE_STORES && UNSTAGED_STORES) STORE_INTERMEDIATE(COMPACT, ds[j], pc.dStates, ((bh * chunks + n) * pc.dv + v0 + 16 * vb) * DK + 16 * kb16, DK)
            if (PROBE_STAGING) SPLIT_STORE(ds[j], region1, REGION1_PLANE, 16 * vb * STATE_ROW + 2 * kb16, STATE_ROW)
        }
        IF_DOUT_FRAGMENTS
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++)
        {
            ACC scaled;
            if (HALF_IO) scaled = ACC(dOutHalf[j]);   // exact: bf16 widens to f32
            else scaled = dOutTiles[j];
            scaled = scaled * pc.scale;
            if (PROBE_STAGING) SPLIT_STORE(scaled, region2, REGION2_PLANE, 16 * tokenTileRow() * SLICE_ROW + 2 * tokenTileColumn(j), SLICE_ROW)
        }
#if RAW_TOKENS
        // K (and dU'_local) into the slot (its last reads, chunk n + 1's Q, are behind the barriers
        // since), dO' into region2; their registers take chunk n - 1's at once
        if (PROBE_STAGING) { PUT_KEYS() PUT_TOKEN_PIECES() }
        if (PROBE_FETCHES && n > 0) { FETCH_KEYS(n - 1) FETCH_TOKEN_PIECES(n - 1) }
#endif
        CHUNK_BARRIER();
        // dS_C's staged copy (region1's hi plane) out to dStates[n]
        if (STAGED_STORES && PROBE_STORES)
            COPY_STAGED_ROWS(region1, STATE_ROW, BV, DK / 8, pc.dStates, ((bh * chunks + n) * pc.dv + v0) * DK, DK, 0u)
        // dU' goes out from its staged (negated) copy below, unless the loop ends before staging it
        bool stagedDUPrime = STAGED_STORES && (n > 0 || pc.dInitial != 0ul);

        // dU' = dU'_local + K dS_C^T, stored
        ACC du[TOKEN_TILES];
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++)
        {
#if FUSED_VALUES
            // dU'_local = (P'^T dO') / scale: P'^T is upper triangular by tiles (P' lower)
            du[j] = ACC(0.0);
            [[unroll]] for (uint tb = 0; tb < 4; tb++)
                if (tb >= tokenTileRow())
                {
                    FRAG_B oHi, oLo;
                    LOAD_SPLIT(oHi, oLo, region2, REGION2_PLANE, 16 * tb * SLICE_ROW + 2 * tokenTileColumn(j), SLICE_ROW, gl_CooperativeMatrixLayoutRowMajor);
                    if (PROBE_PRODUCTS) { MUL_SPLIT(du[j], scoresHi[tb], scoresLo[tb], oHi, oLo); }
                }
            du[j] = du[j] * (1.0 / pc.scale);
#else
#if RAW_TOKENS
            if (COMPACT_SUMMANDS)
            {
                ACC_BF16 local;
                coopMatLoad(local, tokenSlots, slot + LOCAL_AT + 2 * tokenTileColumn(j), SLICE_ROW, gl_CooperativeMatrixLayoutRowMajor);
                du[j] = ACC(local);   // exact: bf16 widens to f32
            }
#else
            if (COMPACT_SUMMANDS) du[j] = ACC(localHalf[j]);   // exact: bf16 widens to f32
#endif
            else du[j] = localTiles[j];
#endif
            [[unroll]] for (uint kb16 = 0; kb16 < TK; kb16++)
            {
                FRAG_B sHi, sLo;
                LOAD_SPLIT(sHi, sLo, region1, REGION1_PLANE, 16 * tokenTileColumn(j) * STATE_ROW + 2 * kb16, STATE_ROW, gl_CooperativeMatrixLayoutColumnMajor);
#if RAW_TOKENS
                FRAG_A kFrag;
                coopMatLoad(kFrag, tokenSlots, slot + 2 * kb16, STATE_ROW, gl_CooperativeMatrixLayoutRowMajor);
#define K_FRAG kFrag
#else
#define K_FRAG kFrags[kb16]
#endif
                if (PROBE_PRODUCTS)
                {
                    MUL_LO(du[j], K_FRAG, sLo);
                    du[j] = coopMatMulAdd(K_FRAG, sHi, du[j]);
                }
#undef K_FRAG
            }
            if (PROBE_STORES && stagedDUPrime == false) STORE_INTERMEDIATE(COMPACT, du[j], pc.dUPrimeOut, TOKEN_ORIGIN(n, tokenTileRow()) + 16 * tokenTileColumn(j), valueStride)
        }
#if GATED
        {
            float chunkDecay = F32Buffer(pc.chunkDecays).v[bh * chunks + n];
            [[unroll]] for (uint j = 0; j < STATE_TILES; j++) ds[j] = ds[j] * chunkDecay;   // dS_C is stored and staged
        }
#endif
#if RAW_TOKENS
        // K's fragments are loaded (subgroup scope: the slot is this subgroup's alone); Q takes the slot,
        // and its registers chunk n - 1's Q
        subgroupMemoryBarrierShared();
        subgroupBarrier();
        if (PROBE_STAGING) { PUT_QUERIES() }
        if (PROBE_FETCHES && n > 0) { FETCH_QUERIES(n - 1) }
        subgroupMemoryBarrierShared();
        subgroupBarrier();
#endif
        // dS += dO'^T Q (dO'^T through column-major loads of dO')
        [[unroll]] for (uint tb = 0; tb < 4; tb++)
            [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
            {
                FRAG_A oHi, oLo;
                LOAD_SPLIT(oHi, oLo, region2, REGION2_PLANE, 16 * tb * SLICE_ROW + 2 * stateTileRow(j), SLICE_ROW, gl_CooperativeMatrixLayoutColumnMajor);
#if RAW_TOKENS
                FRAG_B qFrag;
                coopMatLoad(qFrag, tokenSlots, slot + 16 * tb * QUERY_ROW + 2 * (j % KB), QUERY_ROW, gl_CooperativeMatrixLayoutRowMajor);
                if (PROBE_PRODUCTS) { MUL_EXACT_B(ds[j], oHi, oLo, qFrag); }
#else
                if (PROBE_PRODUCTS) { MUL_EXACT_B(ds[j], oHi, oLo, qFrags[j % KB][tb]); }
#endif
            }
        if (PROBE_FETCHES && n > 0) { FETCH_TOKENS(n - 1) }
        if (n == 0 && pc.dInitial == 0ul) break;   // nothing reads the last update

        CHUNK_BARRIER();   // both regions are read
        [[unroll]] for (uint j = 0; j < TOKEN_TILES; j++)
        {
            ACC negated = du[j] * -1.0;
            if (PROBE_STAGING) SPLIT_STORE(negated, region1, REGION1_PLANE, 16 * tokenTileRow() * SLICE_ROW + 2 * tokenTileColumn(j), SLICE_ROW)
        }
        // dS -= dU'^T W, one 64-column block of W at a time
        [[unroll]] for (uint kb = 0; kb < KB; kb++)
        {
            if (kb > 0) CHUNK_BARRIER();   // the previous block's products are done reading region2
            if (PROBE_STAGING) { STAGE_W_BLOCK(kb) }
            if (PROBE_FETCHES && kb + 1 == KB && n > 0) { FETCH_W(n - 1) }
            CHUNK_BARRIER();
            if (kb == 0 && stagedDUPrime && PROBE_STORES)
                COPY_STAGED_ROWS(region1, SLICE_ROW, CHUNK, BV / 8, pc.dUPrimeOut, TOKEN_ORIGIN(n, 0), valueStride, 0x80008000u)
            [[unroll]] for (uint tb = 0; tb < 4; tb++)
                [[unroll]] for (uint j = kb; j < STATE_TILES; j += KB)
                {
                    FRAG_A uHi, uLo;
                    FRAG_B wHi, wLo;
                    LOAD_SPLIT(uHi, uLo, region1, REGION1_PLANE, 16 * tb * SLICE_ROW + 2 * stateTileRow(j), SLICE_ROW, gl_CooperativeMatrixLayoutColumnMajor);
                    LOAD_SPLIT(wHi, wLo, region2, REGION2_PLANE, 16 * tb * BLOCK_ROW + 2 * (stateTileColumn(j) % 4), BLOCK_ROW, gl_CooperativeMatrixLayoutRowMajor);
                    if (PROBE_PRODUCTS) { MUL_SPLIT(ds[j], uHi, uLo, wHi, wLo); }
                }
        }
    }
    if (pc.dInitial != 0ul)
        [[unroll]] for (uint j = 0; j < STATE_TILES; j++)
            coopMatStore(ds[j], F32Buffer(pc.dInitial).v, bh * stateSize + (v0 + 16 * stateTileRow(j)) * DK + 16 * stateTileColumn(j),
                         DK, gl_CooperativeMatrixLayoutRowMajor);
}
