// The state slice of the tile-product state passes (chunk_state_tiles.comp,
// chunk_state_backward_tiles.comp), after chunk_tiles.glsl: 64 rows v0 .. v0 + 63 of a Dv x Dk
// state (or of its gradient), seen as KEY_BLOCKS 64 x 64 blocks, block kb holding columns
// 64 kb .. 64 kb + 63, each laid out as chunk_tiles.glsl's acc (invocation (tx, ty) owns rows
// 4 ty + i and columns 4 tx + j).
// Between products the slice lives in global memory, in the per-chunk state tensor the pass writes
// anyway, not in registers: every invocation reads back only the elements it wrote itself, so no
// barrier or coherence is needed for it, and the pass keeps one accumulator tile (at D128 two tiles
// of state in registers cost the workgroup its second slot on an SM; bench/results run 31/32).
// Invariant: elements at rows >= Dv or columns >= Dk are never written and read as zero.

layout(constant_id = 2) const uint KEY_BLOCKS = 2;   // ceil(Dk / 64): 1 or 2

// acc = block kb of the [Dv, Dk] f32 state at `origin` (0 address: zeros).
void stateBlockToAcc(uint64_t base, uint origin, uint kb, uint v0, uint dv, uint dk)
{
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint v = v0 + accRow(i), c = 64 * kb + accColumn(j);
        acc[i][j] = base != 0ul && v < dv && c < dk ? F32Buffer(base).v[origin + v * dk + c] : 0.0;
    }
}

// Block kb of the state at `origin` = acc (inside Dv x Dk).
void accToStateBlock(uint64_t base, uint origin, uint kb, uint v0, uint dv, uint dk)
{
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint v = v0 + accRow(i), c = 64 * kb + accColumn(j);
        if (v < dv && c < dk) F32Buffer(base).v[origin + v * dk + c] = acc[i][j];
    }
}

// square[c][v] = S[v][64 kb + c] for the state at `origin`: block kb transposed, the B operand of a
// product with 64 columns of a token-major matrix on the left. Barriers on both sides: nobody still
// reads square, and it is complete when this returns.
void stateBlockToSquareTransposed(uint64_t base, uint origin, uint kb, uint v0, uint dv, uint dk)
{
    float s[4][4];
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++)
    {
        uint v = v0 + accRow(i), c = 64 * kb + accColumn(j);
        s[i][j] = v < dv && c < dk ? F32Buffer(base).v[origin + v * dk + c] : 0.0;
    }
    barrier();
    [[unroll]] for (uint i = 0; i < 4; i++) [[unroll]] for (uint j = 0; j < 4; j++) square[accColumn(j)][accRow(i)] = s[i][j];
    barrier();
}

// Columns 64 kb .. 64 kb + 63 of m (fewer where m ends).
MatrixView columnBlock(MatrixView m, uint kb)
{
    uint c0 = 64 * kb;
    m.origin += c0 * m.columnStride;
    m.columns = m.columns > c0 ? m.columns - c0 : 0u;
    return m;
}
