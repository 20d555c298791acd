// The state slice of the tile-product state passes (chunk_state_tiles.comp,
// chunk_state_backward_tiles.comp), after chunk_tiles.glsl: 64 rows v0 .. v0 + 63 of a Dv x Dk
// state (or of its gradient) as KEY_BLOCKS 64 x 64 tiles in registers, block kb holding columns
// 64 kb .. 64 kb + 63, each tile laid out as chunk_tiles.glsl's acc (invocation (tx, ty) holds rows
// ACC_ROWS ty + i and columns 4 tx + j). Invariant: elements at rows >= Dv or columns >= Dk are zero.
// (Keeping the slice in the per-chunk states the pass writes instead, each invocation rereading its
// own elements, saved registers but not enough for a second workgroup per SM at D128, and the
// rereads made both passes 5-9% slower on the H200: bench/results/2026-12-01-h200-run32.txt.)

layout(constant_id = 2) const uint KEY_BLOCKS = 2;   // ceil(Dk / 64): 1 or 2

float stateTiles[2][ACC_ROWS][4];

// stateTiles = rows v0 .. of the [Dv, Dk] f32 state at `origin` (0 address: zeros).
void loadStateTiles(uint64_t base, uint origin, uint v0, uint dv, uint dk)
{
    [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++)
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint v = v0 + accRow(i), c = 64 * kb + accColumn(j);
            stateTiles[kb][i][j] = base != 0ul && v < dv && c < dk ? F32Buffer(base).v[origin + v * dk + c] : 0.0;
        }
}

void storeStateTiles(uint64_t base, uint origin, uint v0, uint dv, uint dk)
{
    [[unroll]] for (uint kb = 0; kb < KEY_BLOCKS; kb++)
        [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++)
        {
            uint v = v0 + accRow(i), c = 64 * kb + accColumn(j);
            if (v < dv && c < dk) F32Buffer(base).v[origin + v * dk + c] = stateTiles[kb][i][j];
        }
}

// square[c][v] = S[v][64 kb + c]: block kb transposed, the B operand of a product with 64 columns
// of a token-major matrix on the left. Barriers on both sides: nobody still reads square, and it is
// complete when this returns.
void stateBlockToSquareTransposed(uint kb)
{
    barrier();
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) square[accColumn(j)][accRow(i)] = stateTiles[kb][i][j];
    barrier();
}

void stateBlockToAcc(uint kb)
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) acc[i][j] = stateTiles[kb][i][j];
}

void accToStateBlock(uint kb)
{
    [[unroll]] for (uint i = 0; i < ACC_ROWS; i++) [[unroll]] for (uint j = 0; j < 4; j++) stateTiles[kb][i][j] = acc[i][j];
}

// Columns 64 kb .. 64 kb + 63 of m (fewer where m ends).
MatrixView columnBlock(MatrixView m, uint kb)
{
    uint c0 = 64 * kb;
    m.origin += c0 * m.columnStride;
    m.columns = m.columns > c0 ? m.columns - c0 : 0u;
    return m;
}
