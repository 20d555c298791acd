#version 460
// Chunked delta rule, backward through the WY form of each chunk; one workgroup per
// (chunk, b H + h), all chunks in one dispatch. X = A^-1 (stage 1), B_K = diag(beta) K,
// B_V = diag(beta) V, W = X B_K, U = X B_V; given dU = dU' and dW:
//   dX X^T = dU U^T + dW W^T,  dA = -X^T (dX X^T) ... = -X^T dX X^T,  G = strictly_lower(dA)
//   dB_V = X^T dU,  dB_K = X^T dW
//   dV = diag(beta) dB_V
//   dK += diag(beta) (dB_K + G K) + G^T diag(beta) K
//   dbeta_i = dB_V[i] . V[i] + (dB_K + G K)[i] . K[i]      (k_i . (G K)_i = sum_j G[i][j] k_i . k_j)
// k [B, T, H, Dk], v [B, T, H, Dv] (IN_DTYPE); beta [B, T, H] (betaDtype); X [B H, chunks, C, C];
// W, dW, dK [B, T, H, Dk], U, dU', dV [B, T, H, Dv] f32; dbeta [B, T, H] f32.
// GATED (chunk_decay.glsl): B_K = diag(beta gamma) K and L carries Gamma, so with G' = G ⊙ Gamma
//   dK += diag(beta) (diag(gamma) dB_K + G' K) + G'^T diag(beta) K
//   dbeta_i = dB_V[i] . V[i] + (diag(gamma) dB_K + G' K)[i] . K[i]
//   dg_i = beta_i (diag(gamma) dB_K + G' K)[i] . K[i] - (G'^T diag(beta) K)[i] . K[i]
// (the decays in B_K and, as +dg_i and -dg_j of beta_i G'_ij k_i . k_j, in L), written to the last
// part of decayParts for chunk_decay_grad.comp.
//! variant chunk_wy_backward_f32 -DIN_DTYPE=0
//! variant chunk_wy_backward_f16 -DIN_DTYPE=1
//! variant chunk_wy_backward_bf16 -DIN_DTYPE=2
//! variant chunk_wy_backward_gated_f32 -DIN_DTYPE=0 -DGATED=1
//! variant chunk_wy_backward_gated_f16 -DIN_DTYPE=1 -DGATED=1
//! variant chunk_wy_backward_gated_bf16 -DIN_DTYPE=2 -DGATED=1
//! variant chunk_wy_backward_gated_bf16_cm -DIN_DTYPE=2 -DGATED=1 -DCOOPMAT=1 -O0
//! variant chunk_wy_backward_bf16_cm -DIN_DTYPE=2 -DCOOPMAT=1 -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_tiles.glsl"

shared float rowSums[CHUNK][17];

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t v;
    uint64_t beta;
    uint64_t x;
    uint64_t w;
    uint64_t u;
    uint64_t dUPrime;
    uint64_t dw;
    uint64_t dk;        // in: partial dK; out: dK
    uint64_t dv;        // out
    uint64_t dbeta;     // out
    uint t;
    uint heads;
    uint keyDim;
    uint valueDim;
    uint betaDtype;
#if GATED
    uint64_t alpha;         // f32 [B, T, H]
    uint64_t decayParts;    // out: part ceil(Dk / 64) of f32 [blocks of Dk + 1, B, T, H]
#endif
} pc;

void main()
{
    uint n = gl_WorkGroupID.x, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint t0 = n * CHUNK, rows = min(uint(CHUNK), pc.t - t0), id = gl_LocalInvocationID.x;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK;
    uint betaOrigin = (b * pc.t + t0) * pc.heads + h;
    MatrixView keys = tokenRows(pc.k, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.keyDim);
    MatrixView values = tokenRows(pc.v, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.valueDim);
    MatrixView wy = tokenRows(pc.w, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.keyDim);
    MatrixView uy = tokenRows(pc.u, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.valueDim);
    MatrixView dU = tokenRows(pc.dUPrime, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.valueDim);
    MatrixView dW = tokenRows(pc.dw, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.keyDim);
    // X^T as a view: (i, j) -> X[j][i]
    MatrixView inverseT = view(pc.x, DTYPE_F32, (bh * chunks + n) * CHUNK * CHUNK, 1u, CHUNK, CHUNK, CHUNK);
    float betaRow[ACC_ROWS];
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++)
    {
        uint r = accRow(i);
        betaRow[i] = r < rows ? loadAs(pc.beta, pc.betaDtype, betaOrigin + r * pc.heads) : 0.0;
    }
#if GATED
    loadLogDecays(pc.alpha, betaOrigin, pc.heads, rows);
    float keyPartial[ACC_ROWS], transposedPartial[ACC_ROWS];   // (.. + G' K)[i] . K[i], (G'^T diag(beta) K)[i] . K[i]
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) keyPartial[i] = transposedPartial[i] = 0.0;
#endif

    // square = dX X^T = dU U^T + dW W^T, then G = strictly_lower(-X^T square)
    clearAcc();
    multiply(dU, transposed(uy), 0, 0, pc.valueDim);
    multiply(dW, transposed(wy), 0, 0, pc.keyDim);
    accToSquare(0, 1.0);
    clearAcc();
    multiplySquareRight(inverseT, 0);
#if GATED
    // G' = strictly_lower(-X^T square) ⊙ Gamma
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint r = accRow(i), c = accColumn(j);
        square[r][c] = c < r ? -acc[i][j] * decayBetween(r, c) : 0.0;
    }
    barrier();
#else
    accToSquare(2, -1.0);
#endif

    float partial[ACC_ROWS];
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) partial[i] = 0.0;
    // dV = diag(beta) X^T dU; dbeta += dB_V . V
    uint valueOrigin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.valueDim);
    for (uint c0 = 0; c0 < pc.valueDim; c0 += CHUNK)
    {
        clearAcc();
        multiply(inverseT, dU, 0, c0, CHUNK);
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = c0 + accColumn(j);
            if (r < rows && c < pc.valueDim)
            {
                uint at = valueOrigin + r * pc.heads * pc.valueDim + c;
                partial[i] = fma(acc[i][j], loadAs(pc.v, IN_DTYPE, at), partial[i]);
                F32Buffer(pc.dv).v[at] = betaRow[i] * acc[i][j];
            }
        }
    }
    // dK += diag(beta) (X^T dW + G K) + G^T diag(beta) K; dbeta += (X^T dW + G K) . K
    uint keyOrigin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.keyDim);
    MatrixView betaKeys = scaledRows(keys, pc.beta, pc.betaDtype, betaOrigin, pc.heads);
    for (uint c0 = 0; c0 < pc.keyDim; c0 += CHUNK)
    {
        clearAcc();
        multiply(inverseT, dW, 0, c0, CHUNK);
#if GATED
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] *= decayTo(accRow(i));
#endif
        multiplySquareLeft(false, keys, c0);
        float first[ACC_ROWS][4];
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = c0 + accColumn(j);
            first[i][j] = acc[i][j];
#if GATED
            if (r < rows && c < pc.keyDim)
            {
                float kc = loadAs(pc.k, IN_DTYPE, keyOrigin + r * pc.heads * pc.keyDim + c);
                partial[i] = fma(acc[i][j], kc, partial[i]);
                keyPartial[i] = fma(acc[i][j], kc, keyPartial[i]);
            }
#else
            if (r < rows && c < pc.keyDim) partial[i] = fma(acc[i][j], loadAs(pc.k, IN_DTYPE, keyOrigin + r * pc.heads * pc.keyDim + c), partial[i]);
#endif
        }
        clearAcc();
        multiplySquareLeft(true, betaKeys, c0);
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), c = c0 + accColumn(j);
            if (r < rows && c < pc.keyDim)
            {
                uint at = keyOrigin + r * pc.heads * pc.keyDim + c;
                F32Buffer(pc.dk).v[at] += betaRow[i] * first[i][j] + acc[i][j];
#if GATED
                transposedPartial[i] = fma(acc[i][j], loadAs(pc.k, IN_DTYPE, at), transposedPartial[i]);
#endif
            }
        }
    }
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) rowSums[accRow(i)][id % 16] = partial[i];
    barrier();
    if (id < rows)
    {
        float sum = 0.0;
        for (uint j = 0; j < 16; j++) sum += rowSums[id][j];
        F32Buffer(pc.dbeta).v[betaOrigin + id * pc.heads] = sum;
    }
#if GATED
    barrier();   // rowSums read
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) rowSums[accRow(i)][id % 16] = betaRow[i] * keyPartial[i] - transposedPartial[i];
    barrier();
    if (id < rows)
    {
        float sum = 0.0;
        for (uint j = 0; j < 16; j++) sum += rowSums[id][j];
        uint part = (pc.keyDim + CHUNK - 1) / CHUNK, tokens = pc.t * gl_NumWorkGroups.y;   // y: B H
        F32Buffer(pc.decayParts).v[part * tokens + betaOrigin + id * pc.heads] = sum;
    }
#endif
}
