#version 460
// Chunked delta rule, backward state pass with each subgroup owning 16 rows of the state gradient
// outright: the pass of chunk_state_backward_fragments.comp without workgroup barriers, as
// chunk_state_rows.comp is for the forward. Row v of dS depends on row v of dO, dU'_local and dS
// alone, so the subgroup holding rows v0 .. v0 + 15 (all Dk columns) walks the chunks in reverse on
// its own, carrying dS, the gradient reaching the end of the current chunk, seeded by the final
// state's gradient. Per chunk, with dO' = scale dO:
//   store dS_C                                 (dStates[n], bf16: for the per-chunk gradient stage)
//   dU' = dU'_local + K dS_C^T                 (64 x 16, stored as bf16)
//   dS_0 = dS_C + dO'^T Q - dU'^T W            (16 x DK)
// dS_0 becomes the previous chunk's dS_C; after chunk 0 it is the initial state's gradient. K, Q and
// W's fragments come straight from the tensors; dS, dO' and -dU' change fragment use through the
// subgroup's own staging area in shared memory (subgroup barriers only). Rounded operands with compact
// intermediates only; the same products in the same order as the fragment pass, so the same bits.
// Preconditions the host checks (VulkanBackend.DeltaRuleUsesStateRows): as chunk_state_rows.comp. Same
// push constants as chunk_state_backward_fragments.comp without FUSED_VALUES (dU'_local is read).
//! variant chunk_state_backward_rows_k64 -DDK=64 -O0
//! variant chunk_state_backward_rows_k128 -DDK=128 -O0
#extension GL_GOOGLE_include_directive : require
#include "fragment_types.glsl"

#define CHUNK 64
#define SUBGROUPS 4
#define TK (DK / 16)            // 16-column blocks of Dk
#define S_ROW ((DK + 8) / 8)    // uvec4 per staged gradient row (DK bf16, padded by 8 against bank conflicts)
#define U_ROW 3                 // uvec4 per staged token row (16 bf16, padded by 8)
#define U_AREA (CHUNK * U_ROW)
#define A_AREA max(16 * S_ROW, U_AREA)   // dS's rows, then -dU'
#define AREAS (A_AREA + U_AREA)          // and dO'

layout(local_size_x = 32 * SUBGROUPS) in;

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t w;             // bf16
    uint64_t dOut;
    uint64_t dUPrime;       // in: dU'_local (f32)
    uint64_t dStates;       // out: dS_C per chunk, bf16
    uint64_t dFinal;        // 0: zeros
    uint64_t dInitial;      // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
    uint64_t dUPrimeOut;    // out: dU', bf16
    uint64_t scores;        // not read
} pc;

shared uvec4 staging[SUBGROUPS * AREAS];

#define STAGING_BARRIER() controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease)

void main()
{
    uint v0 = (gl_WorkGroupID.x * SUBGROUPS + gl_SubgroupID) * 16;
    if (v0 >= pc.dv) return;
    uint bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = pc.t / CHUNK;
    uint keyStride = pc.heads * DK, valueStride = pc.heads * pc.dv;   // between consecutive tokens
    uint aArea = gl_SubgroupID * AREAS, oArea = aArea + A_AREA;
    Words4Buffer keys = Words4Buffer(pc.k), queries = Words4Buffer(pc.q), w = Words4Buffer(pc.w);

    ACC ds[TK];   // ds[c]: rows v0 .., columns 16 c ..
    [[unroll]] for (uint c = 0; c < TK; c++)
    {
        if (pc.dFinal == 0ul) ds[c] = ACC(0.0);
        else coopMatLoad(ds[c], F32Buffer(pc.dFinal).v, (bh * pc.dv + v0) * DK + 16 * c, DK, gl_CooperativeMatrixLayoutRowMajor);
    }

    [[dont_unroll]] for (int nn = int(chunks) - 1; nn >= 0; nn--)
    {
        uint n = uint(nn), row0 = b * pc.t + n * CHUNK;   // the chunk's first token row
        ACC du[4], dOutTiles[4];
        [[unroll]] for (uint tr = 0; tr < 4; tr++)
        {
            uint origin = (row0 + 16 * tr) * valueStride + h * pc.dv + v0;
            coopMatLoad(du[tr], F32Buffer(pc.dUPrime).v, origin, valueStride, gl_CooperativeMatrixLayoutRowMajor);
            coopMatLoad(dOutTiles[tr], F32Buffer(pc.dOut).v, origin, valueStride, gl_CooperativeMatrixLayoutRowMajor);
        }

        STAGING_BARRIER();   // the previous chunk's reads of both areas are done
        [[unroll]] for (uint c = 0; c < TK; c++)
        {
            ACC_BF16 rounded = ACC_BF16(nearestBf16(ds[c]));
            coopMatStore(rounded, Words4Buffer(pc.dStates).v, (((bh * chunks + n) * pc.dv + v0) * DK + 16 * c) / 8, DK / 8, gl_CooperativeMatrixLayoutRowMajor);
            coopMatStore(rounded, staging, aArea + 2 * c, S_ROW, gl_CooperativeMatrixLayoutRowMajor);
        }
        [[unroll]] for (uint tr = 0; tr < 4; tr++)
            coopMatStore(ACC_BF16(nearestBf16(dOutTiles[tr] * pc.scale)), staging, oArea + 16 * tr * U_ROW, U_ROW, gl_CooperativeMatrixLayoutRowMajor);
        STAGING_BARRIER();

        // dU' = dU'_local + K dS_C^T (dS_C^T's block c: the staged rows read column-major), stored
        [[unroll]] for (uint c = 0; c < TK; c++)
        {
            FRAG_B gradientT;
            coopMatLoad(gradientT, staging, aArea + 2 * c, S_ROW, gl_CooperativeMatrixLayoutColumnMajor);
            [[unroll]] for (uint tr = 0; tr < 4; tr++)
            {
                FRAG_A keyFrag;
                coopMatLoad(keyFrag, keys.v, ((row0 + 16 * tr) * keyStride + h * DK + 16 * c) / 8, keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
                du[tr] = coopMatMulAdd(keyFrag, gradientT, du[tr]);
            }
        }
        [[unroll]] for (uint tr = 0; tr < 4; tr++)
            coopMatStore(ACC_BF16(nearestBf16(du[tr])), Words4Buffer(pc.dUPrimeOut).v, ((row0 + 16 * tr) * valueStride + h * pc.dv + v0) / 8, valueStride / 8,
                         gl_CooperativeMatrixLayoutRowMajor);

        // dS += dO'^T Q (dO'^T's block tb: the staged dO' rows read column-major)
        [[unroll]] for (uint tb = 0; tb < 4; tb++)
        {
            FRAG_A outT;
            coopMatLoad(outT, staging, oArea + 16 * tb * U_ROW, U_ROW, gl_CooperativeMatrixLayoutColumnMajor);
            [[unroll]] for (uint c = 0; c < TK; c++)
            {
                FRAG_B queryFrag;
                coopMatLoad(queryFrag, queries.v, ((row0 + 16 * tb) * keyStride + h * DK + 16 * c) / 8, keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
                ds[c] = coopMatMulAdd(outT, queryFrag, ds[c]);
            }
        }
        if (n == 0 && pc.dInitial == 0ul) break;   // nothing reads the last update

        STAGING_BARRIER();   // dS_C's staged rows are read
        [[unroll]] for (uint tr = 0; tr < 4; tr++)
            coopMatStore(ACC_BF16(nearestBf16(du[tr] * -1.0)), staging, aArea + 16 * tr * U_ROW, U_ROW, gl_CooperativeMatrixLayoutRowMajor);
        STAGING_BARRIER();
        // dS -= dU'^T W, as dS += (-dU')^T W
        [[unroll]] for (uint tb = 0; tb < 4; tb++)
        {
            FRAG_A negatedT;
            coopMatLoad(negatedT, staging, aArea + 16 * tb * U_ROW, U_ROW, gl_CooperativeMatrixLayoutColumnMajor);
            [[unroll]] for (uint c = 0; c < TK; c++)
            {
                FRAG_B wFrag;
                coopMatLoad(wFrag, w.v, ((row0 + 16 * tb) * keyStride + h * DK + 16 * c) / 8, keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
                ds[c] = coopMatMulAdd(negatedT, wFrag, ds[c]);
            }
        }
    }
    if (pc.dInitial != 0ul)
        [[unroll]] for (uint c = 0; c < TK; c++)
            coopMatStore(ds[c], F32Buffer(pc.dInitial).v, (bh * pc.dv + v0) * DK + 16 * c, DK, gl_CooperativeMatrixLayoutRowMajor);
}
