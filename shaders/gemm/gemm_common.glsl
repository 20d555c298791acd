// Shared by the GEMM kernels: C[b] = alpha op(A[b]) op(B[b]) + beta C[b], row-major, batch b in
// gl_WorkGroupID.z. op(A) is M x K stored as [M, K] or, transposed, [K, M]; op(B) is K x N stored
// as [K, N] or [N, K]. A batch stride of 0 shares one matrix across the batch. C is f32.
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require

layout(push_constant) uniform Push
{
    uint64_t a;
    uint64_t b;
    uint64_t c;
    uint m;
    uint n;
    uint k;
    uint transposeA;
    uint transposeB;
    uint batchStrideA;  // elements; 0 = shared
    uint batchStrideB;
    float alpha;
    float beta;
} pc;

// Element (row, col) of op(A) / op(B) as an offset from the batch's first element.
uint offsetA(uint row, uint col) { return pc.transposeA != 0 ? col * pc.m + row : row * pc.k + col; }
uint offsetB(uint row, uint col) { return pc.transposeB != 0 ? col * pc.k + row : row * pc.n + col; }

void storeC(uint batch, uint row, uint col, float value)
{
    if (row >= pc.m || col >= pc.n) return;
    uint i = batch * pc.m * pc.n + row * pc.n + col;
    F32Buffer c = F32Buffer(pc.c);
    c.v[i] = pc.beta == 0.0 ? pc.alpha * value : pc.alpha * value + pc.beta * c.v[i];
}

// (tile row, tile column) of this workgroup's block of C. groupRows > 1: consecutive workgroups walk
// groupRows tile rows column by column instead of one whole tile row, so the blocks of A and B that
// resident workgroups share stay in L2. With linear = y tilesN + x in dispatch order, group g holds
// tile rows [g groupRows, g groupRows + rows) and is walked rows-fastest.
uvec2 rasterisedTile(uint groupRows)
{
    if (groupRows <= 1) return uvec2(gl_WorkGroupID.y, gl_WorkGroupID.x);
    uint tilesN = gl_NumWorkGroups.x, tilesM = gl_NumWorkGroups.y;
    uint linear = gl_WorkGroupID.y * tilesN + gl_WorkGroupID.x;
    uint firstRow = (linear / (groupRows * tilesN)) * groupRows;
    uint rows = min(tilesM - firstRow, groupRows);
    uint within = linear - firstRow * tilesN;
    return uvec2(firstRow + within % rows, within / rows);
}
