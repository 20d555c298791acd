#version 460
// Chunked delta rule, stage 1 (forward; rerun by the backward): the WY form of one chunk of C = 64
// tokens per workgroup, all chunks of all (batch, head) pairs in one dispatch (x: chunk, y: b H + h).
//   A = I + L,  L = strictly_lower(diag(beta) K K^T)        (C x C)
//   X = A^-1 (unit lower triangular), blocked by 16 x 16: the four diagonal blocks inverted at once
//       by forward substitution, then the blocks below them block row by block row
//       (triangular_inverse.glsl states the math)
//   W = X diag(beta) K   (C x Dk),   U = X diag(beta) V   (C x Dv)
// Rows past the sequence end have beta = 0, K = V = 0: their L rows vanish and X stays the identity
// there, so a partial last chunk needs no special case. Outputs (f32): W [B, T, H, Dk], U [B, T, H, Dv],
// and, when the backward asks for it, X [B H, ceil(T / C), C, C]. Where the fragment stages apply,
// chunk_wy_fragments.comp runs instead (VulkanBackend.DeltaRuleUsesWyFragments).
// GATED (chunk_decay.glsl): the key Gram matrix decays and W carries the decay since the chunk start,
//   L = strictly_lower(diag(beta) (K K^T ⊙ Gamma)),   W = X diag(beta gamma) K,   U = X diag(beta) V,
// so that U' = U - W S_0^T = X (diag(beta) V - diag(beta gamma) K S_0^T) as the gated state pass needs.
//! variant chunk_wy_f32 -DIN_DTYPE=0
//! variant chunk_wy_f16 -DIN_DTYPE=1
//! variant chunk_wy_bf16 -DIN_DTYPE=2
//! variant chunk_wy_gated_f32 -DIN_DTYPE=0 -DGATED=1
//! variant chunk_wy_gated_f16 -DIN_DTYPE=1 -DGATED=1
//! variant chunk_wy_gated_bf16 -DIN_DTYPE=2 -DGATED=1
//! variant chunk_wy_gated_bf16_cm -DIN_DTYPE=2 -DGATED=1 -DCOOPMAT=1 -O0
//! variant chunk_wy_bf16_cm -DIN_DTYPE=2 -DCOOPMAT=1 -O0
//! variant chunk_wy_bf16_cm_g128 -DIN_DTYPE=2 -DCOOPMAT=1 -DGROUP=128 -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_tiles.glsl"
#include "triangular_inverse.glsl"

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t v;
    uint64_t beta;
    uint64_t w;         // out
    uint64_t u;         // out
    uint64_t x;         // out, 0: not kept
    uint t;
    uint heads;
    uint dk;
    uint dv;
    uint betaDtype;
#if GATED
    uint64_t alpha;     // f32 [B, T, H]
#endif
} pc;

#if GATED
// acc (rows < `rows`, 64 columns from c0) into the token-major [B, T, H, width] target. (The ungated
// builds keep their loops inline, so their SPIR-V stays what the GPU runs measured.)
void storeTokenTile(uint64_t target, uint origin, uint rows, uint c0, uint width)
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = c0 + accColumn(j);
        if (r < rows && c < width) F32Buffer(target).v[origin + r * pc.heads * width + c] = acc[i][j];
    }
}
#endif

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0), id = gl_LocalInvocationID.x;
    MatrixView keys = tokenRows(pc.k, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dk);
    MatrixView values = tokenRows(pc.v, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dv);
    uint betaOrigin = (b * pc.t + t0) * pc.heads + h;

#if GATED
    loadLogDecays(pc.alpha, betaOrigin, pc.heads, rows);
#endif
    // L = strictly_lower(diag(beta) K K^T) into square (gated: K K^T ⊙ Gamma).
    clearAcc();
    multiply(keys, transposed(keys), 0, 0, pc.dk);
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++)
    {
        uint r = accRow(i);
        float betaRow = r < rows ? loadAs(pc.beta, pc.betaDtype, betaOrigin + r * pc.heads) : 0.0;
        [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint c = accColumn(j);
#if GATED
            square[r][c] = c < r ? betaRow * acc[i][j] * decayBetween(r, c) : 0.0;
#else
            square[r][c] = c < r ? betaRow * acc[i][j] : 0.0;
#endif
        }
    }
    barrier();

    // X = (I + L)^-1 in place of L: blocked by 16 (triangular_inverse.glsl).
    invertUnitLowerSquare();

    if (pc.x != 0ul)
    {
        uint origin = (bh * ((pc.t + CHUNK - 1) / CHUNK) + n) * CHUNK * CHUNK;
        for (uint e = id; e < CHUNK * CHUNK; e += GROUP) F32Buffer(pc.x).v[origin + e] = square[e / CHUNK][e % CHUNK];
    }

    // W = X (diag(beta) K), U = X (diag(beta) V), 64 columns at a time.
    MatrixView betaKeys = scaledRows(keys, pc.beta, pc.betaDtype, betaOrigin, pc.heads);
    MatrixView betaValues = scaledRows(values, pc.beta, pc.betaDtype, betaOrigin, pc.heads);
    uint wOrigin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.dk), uOrigin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.dv);
#if GATED
    // U = X diag(beta) V first; then X diag(gamma) in place (columns), and W = (X diag(gamma)) diag(beta) K.
    for (uint c0 = 0; c0 < pc.dv; c0 += CHUNK)
    {
        clearAcc();
        multiplySquareLeft(false, betaValues, c0);
        storeTokenTile(pc.u, uOrigin, rows, c0, pc.dv);
    }
    barrier();
    for (uint e = id; e < CHUNK * CHUNK; e += GROUP) square[e / CHUNK][e % CHUNK] *= decayTo(e % CHUNK);
    barrier();
    for (uint c0 = 0; c0 < pc.dk; c0 += CHUNK)
    {
        clearAcc();
        multiplySquareLeft(false, betaKeys, c0);
        storeTokenTile(pc.w, wOrigin, rows, c0, pc.dk);
    }
#else
    for (uint c0 = 0; c0 < pc.dk; c0 += CHUNK)
    {
        clearAcc();
        multiplySquareLeft(false, betaKeys, c0);
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = c0 + accColumn(j);
            if (r < rows && c < pc.dk) F32Buffer(pc.w).v[wOrigin + r * pc.heads * pc.dk + c] = acc[i][j];
        }
    }
    for (uint c0 = 0; c0 < pc.dv; c0 += CHUNK)
    {
        clearAcc();
        multiplySquareLeft(false, betaValues, c0);
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = c0 + accColumn(j);
            if (r < rows && c < pc.dv) F32Buffer(pc.u).v[uOrigin + r * pc.heads * pc.dv + c] = acc[i][j];
        }
    }
#endif
}
