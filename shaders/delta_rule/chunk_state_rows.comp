#version 460
// Chunked delta rule, stage 2 (forward; rerun by the backward) with each subgroup owning 16 rows of
// the state outright. The delta rule updates every row of the Dv x Dk state on its own,
//   S[v, :] <- S[v, :] + (u[v] - S[v, :] w) k^T        (per token; per chunk in the WY form below),
// so a subgroup holding rows v0 .. v0 + 15 (all Dk columns, DK / 16 accumulator fragments) needs no
// other subgroup's rows, and the chain of chunks runs without a single workgroup barrier. Per chunk n
// (token rows t0 .. t0 + 63), with S the chunk-start rows:
//   store S                              (states[n], bf16: for the output stage and the backward)
//   P  = W S^T                           (64 x 16; W's fragments straight from the tensor)
//   U' = U - P                           (stored, bf16)
//   S <- S + U'^T K                      (16 x DK; K's fragments straight from the tensor)
// S and U' change fragment use (accumulator -> B and A operands) through a private staging area of
// the subgroup's own in shared memory, ordered by subgroup barriers only. The subgroups of a workgroup
// (SUBGROUPS of them, 16 SUBGROUPS rows) share nothing but the L1 cache that serves their reads of W
// and K; a subgroup whose rows start at or past Dv returns at once (there is no barrier to miss).
// chunk_state_fragments.comp instead spreads a slice's columns over eight subgroups, which must meet
// at four to six workgroup barriers a chunk; each subgroup here reads all of W and K (eight times the
// L1 traffic at Dk = 128) in exchange.
// Rounded operands with compact intermediates only (the host's default: SPLIT_OPERANDS false, COMPACT
// true): W, U' and the states are bf16 tensors, S and U' are rounded to nearest before each product.
// Preconditions the host checks (VulkanBackend.DeltaRuleUsesStateRows): T a multiple of 64, Dk = DK,
// Dv a multiple of 16, bf16 keys, subgroups of 32. Same inputs, outputs and push constants as
// chunk_state_fragments.comp without FUSED_OUTPUT.
//! variant chunk_state_rows_k64 -DDK=64 -O0
//! variant chunk_state_rows_k128 -DDK=128 -O0
#extension GL_GOOGLE_include_directive : require
#include "fragment_types.glsl"

#define CHUNK 64
#define SUBGROUPS 4
#define TK (DK / 16)            // 16-column blocks of Dk
#define S_ROW ((DK + 8) / 8)    // uvec4 per staged state row (DK bf16, padded by 8 against bank conflicts)
#define U_ROW 3                 // uvec4 per staged U' row (16 bf16, padded by 8)
#define S_AREA (16 * S_ROW)
#define U_AREA (CHUNK * U_ROW)

layout(local_size_x = 32 * SUBGROUPS) in;

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t w;             // bf16
    uint64_t u;
    uint64_t uPrime;        // out, bf16
    uint64_t states;        // out, bf16
    uint64_t initialState;  // 0: zeros
    uint64_t finalState;    // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
} pc;

shared uvec4 staging[SUBGROUPS * (S_AREA + U_AREA)];

// Orders this subgroup's accesses to its staging area (shared memory only: the global reads in
// flight are not waited for).
#define STAGING_BARRIER() controlBarrier(gl_ScopeSubgroup, gl_ScopeSubgroup, gl_StorageSemanticsShared, gl_SemanticsAcquireRelease)

void main()
{
    uint v0 = (gl_WorkGroupID.x * SUBGROUPS + gl_SubgroupID) * 16;
    if (v0 >= pc.dv) return;
    uint bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = pc.t / CHUNK;
    uint keyStride = pc.heads * DK, valueStride = pc.heads * pc.dv;   // between consecutive tokens
    uint sArea = gl_SubgroupID * (S_AREA + U_AREA), uArea = sArea + S_AREA;
    Words4Buffer keys = Words4Buffer(pc.k), w = Words4Buffer(pc.w);

    ACC s[TK];   // s[c]: rows v0 .., columns 16 c ..
    [[unroll]] for (uint c = 0; c < TK; c++)
    {
        if (pc.initialState == 0ul) s[c] = ACC(0.0);
        else coopMatLoad(s[c], F32Buffer(pc.initialState).v, (bh * pc.dv + v0) * DK + 16 * c, DK, gl_CooperativeMatrixLayoutRowMajor);
    }

    [[dont_unroll]] for (uint n = 0; n < chunks; n++)
    {
        uint row0 = b * pc.t + n * CHUNK;   // the chunk's first token row
        ACC u[4];
        [[unroll]] for (uint tr = 0; tr < 4; tr++)
            coopMatLoad(u[tr], F32Buffer(pc.u).v, (row0 + 16 * tr) * valueStride + h * pc.dv + v0, valueStride, gl_CooperativeMatrixLayoutRowMajor);

        STAGING_BARRIER();   // the previous chunk's reads of the staging area are done
        [[unroll]] for (uint c = 0; c < TK; c++)
        {
            ACC_BF16 rounded = ACC_BF16(nearestBf16(s[c]));
            coopMatStore(rounded, Words4Buffer(pc.states).v, (((bh * chunks + n) * pc.dv + v0) * DK + 16 * c) / 8, DK / 8, gl_CooperativeMatrixLayoutRowMajor);
            coopMatStore(rounded, staging, sArea + 2 * c, S_ROW, gl_CooperativeMatrixLayoutRowMajor);
        }
        STAGING_BARRIER();

        // P = W S^T: S^T's block (16 c .., all 16 rows) is S's staged rows read column-major
        ACC p[4];
        [[unroll]] for (uint tr = 0; tr < 4; tr++) p[tr] = ACC(0.0);
        [[unroll]] for (uint c = 0; c < TK; c++)
        {
            FRAG_B stateT;
            coopMatLoad(stateT, staging, sArea + 2 * c, S_ROW, gl_CooperativeMatrixLayoutColumnMajor);
            [[unroll]] for (uint tr = 0; tr < 4; tr++)
            {
                FRAG_A wFrag;
                coopMatLoad(wFrag, w.v, ((row0 + 16 * tr) * keyStride + h * DK + 16 * c) / 8, keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
                p[tr] = coopMatMulAdd(wFrag, stateT, p[tr]);
            }
        }

        // U' = U - P, stored and staged (row-major: token rows, the subgroup's 16 state rows as columns)
        [[unroll]] for (uint tr = 0; tr < 4; tr++)
        {
            ACC_BF16 rounded = ACC_BF16(nearestBf16(u[tr] - p[tr]));
            coopMatStore(rounded, Words4Buffer(pc.uPrime).v, ((row0 + 16 * tr) * valueStride + h * pc.dv + v0) / 8, valueStride / 8, gl_CooperativeMatrixLayoutRowMajor);
            coopMatStore(rounded, staging, uArea + 16 * tr * U_ROW, U_ROW, gl_CooperativeMatrixLayoutRowMajor);
        }
        if (n + 1 == chunks && pc.finalState == 0ul) break;   // nothing reads the last update
        STAGING_BARRIER();

        // S += U'^T K: U'^T's block (all 16 rows, tokens 16 tb ..) is U''s staged rows read column-major
        [[unroll]] for (uint tb = 0; tb < 4; tb++)
        {
            FRAG_A uPrimeT;
            coopMatLoad(uPrimeT, staging, uArea + 16 * tb * U_ROW, U_ROW, gl_CooperativeMatrixLayoutColumnMajor);
            [[unroll]] for (uint c = 0; c < TK; c++)
            {
                FRAG_B keyFrag;
                coopMatLoad(keyFrag, keys.v, ((row0 + 16 * tb) * keyStride + h * DK + 16 * c) / 8, keyStride / 8, gl_CooperativeMatrixLayoutRowMajor);
                s[c] = coopMatMulAdd(uPrimeT, keyFrag, s[c]);
            }
        }
    }
    if (pc.finalState != 0ul)
        [[unroll]] for (uint c = 0; c < TK; c++)
            coopMatStore(s[c], F32Buffer(pc.finalState).v, (bh * pc.dv + v0) * DK + 16 * c, DK, gl_CooperativeMatrixLayoutRowMajor);
}
