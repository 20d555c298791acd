#version 460
// Chunked delta rule, backward state pass on the tile products: the same pass as
// chunk_state_backward.comp, built from chunk_tiles.glsl's 64 x 64 products (tensor cores where the
// parallel stages use them). One workgroup (GROUP invocations, as for chunk_state_tiles.comp) per
// (64 rows of Dv, b H + h) walks the chunks in
// reverse carrying dS (64 x Dk, chunk_state_tiles.glsl), the gradient reaching the end of the
// current chunk, seeded by the final state's gradient. Per chunk, with Q' = scale Q:
//   store dS_C                                 (for the per-chunk gradient stage)
//   dU' = dU'_local + K dS_C^T                 (one product per 64-column block of Dk; overwritten
//                                               in place)
//   dS_0 = dS_C + scale dO^T Q - dU'^T W       (per block: dO^T Q_kb, then -dU' staged in square)
// dS_0 becomes the previous chunk's dS_C; after chunk 0 it is the initial state's gradient. Rows
// past the sequence end read as zero everywhere. Same inputs, outputs and push constants as
// chunk_state_backward.comp.
//! variant chunk_state_backward_tiles_f32 -DIN_DTYPE=0
//! variant chunk_state_backward_tiles_f16 -DIN_DTYPE=1
//! variant chunk_state_backward_tiles_bf16 -DIN_DTYPE=2
//! variant chunk_state_backward_tiles_bf16_cm -DIN_DTYPE=2 -DCOOPMAT=1 -O0
//! variant chunk_state_backward_tiles_bf16_cm_g128 -DIN_DTYPE=2 -DCOOPMAT=1 -DGROUP=128 -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_tiles.glsl"
#include "chunk_state_tiles.glsl"

layout(push_constant) uniform Push
{
    uint64_t q;
    uint64_t k;
    uint64_t w;
    uint64_t dOut;
    uint64_t dUPrime;       // in: dU'_local; out: dU'
    uint64_t dStates;       // out: dS_C per chunk
    uint64_t dFinal;        // 0: zeros
    uint64_t dInitial;      // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
    float scale;
} pc;

void main()
{
    uint v0 = gl_WorkGroupID.x * CHUNK, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateSize = pc.dv * pc.dk, valueStride = pc.heads * pc.dv;
    loadStateTiles(pc.dFinal, bh * stateSize, v0, pc.dv, pc.dk);
    for (int nn = int(chunks) - 1; nn >= 0; nn--)
    {
        uint n = uint(nn), t0 = n * CHUNK, count = min(uint(CHUNK), pc.t - t0), valueOrigin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.dv);
        storeStateTiles(pc.dStates, (bh * chunks + n) * stateSize, v0, pc.dv, pc.dk);
        MatrixView queries = tokenRows(pc.q, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dk);
        MatrixView keys = tokenRows(pc.k, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dk);
        MatrixView wRows = tokenRows(pc.w, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.dk);
        // dO^T for rows v0 .. of Dv: element (v, t) = dO[t][v0 + v]
        MatrixView dOutT = view(pc.dOut, DTYPE_F32, valueOrigin + v0, 1u, valueStride, v0 < pc.dv ? pc.dv - v0 : 0u, count);

        // acc = K dS_C^T, one 64-column block of Dk at a time
        clearAcc();
        [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++)
        {
            stateBlockToSquareTransposed(kb);
            multiplySquareRight(columnBlock(keys, kb), 0);
        }
        // dU' = dU'_local + K dS_C^T, stored in place; -dU' into square for the state update
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), v = v0 + accColumn(j);
            bool inside = r < count && v < pc.dv;
            acc[i][j] += inside ? F32Buffer(pc.dUPrime).v[valueOrigin + r * valueStride + v] : 0.0;
            if (inside) F32Buffer(pc.dUPrime).v[valueOrigin + r * valueStride + v] = acc[i][j];
        }
        if (n == 0 && pc.dInitial == 0ul) break;   // nothing reads the last update
        accToSquare(0, -1.0);
        // dS_kb <- dS_kb + scale dO^T Q_kb - dU'^T W_kb
        [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++)
        {
            clearAcc();
            multiply(dOutT, queries, 0, 64 * kb, CHUNK);
            scaleAcc(pc.scale);
            [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] += stateTiles[kb][i][j];
            multiplySquareLeft(true, wRows, 64 * kb);
            accToStateBlock(kb);
        }
    }
    if (pc.dInitial != 0ul) storeStateTiles(pc.dInitial, bh * stateSize, v0, pc.dv, pc.dk);
}
