#version 460
// Chunked delta rule, stage 2 on the tile products (forward; rerun by the backward): the same state
// pass as chunk_state.comp, built from chunk_tiles.glsl's 64 x 64 products so that it runs on
// tensor cores where the parallel stages do. One workgroup (GROUP invocations: 256, or 128 for the
// tensor-core build the host takes at Dk > 64) per (64 state rows of Dv, b H + h)
// walks the chunks in order, its slice S (64 x Dk, Dk <= 64 KEY_BLOCKS) in registers as KEY_BLOCKS
// 64 x 64 accumulator tiles (block kb: columns 64 kb ..). Per chunk, with S the chunk-start state:
//   store S                                             (for the output stage and the backward)
//   U' = U - W S^T = U - sum_kb W_kb S_kb^T             (64 tokens x 64 rows: one product per
//                                                        block, S_kb^T staged in square)
//   S_kb <- S_kb + U'^T K_kb                             (U' staged in square; one product per block)
// W_kb, K_kb are the chunk's columns 64 kb .. of W and K. Rows past the sequence end read as zero
// (W, U, K), so U' is zero there and adds nothing to S; state columns >= Dk and rows >= Dv stay
// zero (their K columns and U columns read as zero). Same inputs, outputs and push constants as
// chunk_state.comp; the final state may be the initial one (each workgroup reads its own rows first).
//! variant chunk_state_tiles_f32 -DIN_DTYPE=0
//! variant chunk_state_tiles_f16 -DIN_DTYPE=1
//! variant chunk_state_tiles_bf16 -DIN_DTYPE=2
//! variant chunk_state_tiles_bf16_cm -DIN_DTYPE=2 -DCOOPMAT=1 -O0
//! variant chunk_state_tiles_bf16_cm_g128 -DIN_DTYPE=2 -DCOOPMAT=1 -DGROUP=128 -O0
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_control_flow_attributes : require
#include "chunk_tiles.glsl"
#include "chunk_state_tiles.glsl"

layout(push_constant) uniform Push
{
    uint64_t k;
    uint64_t w;
    uint64_t u;
    uint64_t uPrime;        // out
    uint64_t states;        // out
    uint64_t initialState;  // 0: zeros
    uint64_t finalState;    // 0: not written
    uint t;
    uint heads;
    uint dk;
    uint dv;
} pc;

void main()
{
    uint v0 = gl_WorkGroupID.x * CHUNK, bh = gl_WorkGroupID.y, b = bh / pc.heads, h = bh % pc.heads;
    uint chunks = (pc.t + CHUNK - 1) / CHUNK, stateSize = pc.dv * pc.dk, valueStride = pc.heads * pc.dv;
    loadStateTiles(pc.initialState, bh * stateSize, v0, pc.dv, pc.dk);
    for (uint n = 0; n < chunks; n++)
    {
        uint t0 = n * CHUNK, count = min(uint(CHUNK), pc.t - t0), valueOrigin = tokenOrigin(b, t0, h, pc.heads, pc.t, pc.dv);
        storeStateTiles(pc.states, (bh * chunks + n) * stateSize, v0, pc.dv, pc.dk);
        MatrixView wRows = tokenRows(pc.w, DTYPE_F32, b, t0, h, pc.heads, pc.t, pc.dk);
        MatrixView keys = tokenRows(pc.k, IN_DTYPE, b, t0, h, pc.heads, pc.t, pc.dk);

        // acc = W S^T, one 64-column block of Dk at a time
        clearAcc();
        [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++)
        {
            stateBlockToSquareTransposed(kb);
            multiplySquareRight(columnBlock(wRows, kb), 0);
        }
        // U' = U - W S^T, stored, and into square as the A operand (transposed) of the state update
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint r = accRow(i), v = v0 + accColumn(j);
            float uValue = r < count && v < pc.dv ? F32Buffer(pc.u).v[valueOrigin + r * valueStride + v] : 0.0;
            acc[i][j] = uValue - acc[i][j];
            if (r < count && v < pc.dv) F32Buffer(pc.uPrime).v[valueOrigin + r * valueStride + v] = acc[i][j];
        }
        if (n + 1 == chunks && pc.finalState == 0ul) break;   // nothing reads the last update
        accToSquare(0, 1.0);
        // S_kb += U'^T K_kb
        [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++)
        {
            stateBlockToAcc(kb);
            multiplySquareLeft(true, keys, 64 * kb);
            accToStateBlock(kb);
        }
    }
    if (pc.finalState != 0ul) storeStateTiles(pc.finalState, bh * stateSize, v0, pc.dv, pc.dk);
}
