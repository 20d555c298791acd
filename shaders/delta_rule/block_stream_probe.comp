#version 460
// A diagnostic, not an op: how fast a workgroup built like the parallel chunk stages on fragments
// (chunk_fragments.glsl: 8 subgroups of 32; 64 x 64 bf16 blocks read with 16-byte loads into
// registers, staged into the shared regions between workgroup barriers, multiplied from there) moves
// blocks from memory, as a function of how many blocks one barrier pair stages (BLOCKS_PER_PHASE: the
// stages stage one or two) and of whether the next phase's reads are issued before this phase's
// products (READ_AHEAD: a register prefetch) or only before the barrier that frees the planes (as the
// stages do). The question it answers (docs/benchmarks.md, "Block streaming probe"): is the rate the
// stages move their bytes at (45-64% of a copy's on the H100) set by this way of reading, or by the
// stages' own work?
// One workgroup per item; with X_0 .. X_{BLOCKS-1} the item's blocks (bf16 [items, BLOCKS, 64, 64]):
//   Y = sum_p X_p X_p        (64 x 64, f32 accumulation, stored f32 [items, 64, 64])
// so the result shows that every block was read and staged where its products expect it
// (BlockStreamProbeTests, against a float64 reference).
// The four 64 x 64 planes of region1 and region2 hold up to four blocks of a phase: slot 0 region1's
// hi plane, 1 its lo plane, 2 region2's hi plane, 3 its lo plane.
//! variant block_stream_probe -O0
#extension GL_GOOGLE_include_directive : require
#include "chunk_fragments.glsl"

layout(constant_id = 6) const uint BLOCKS_PER_PHASE = 1;   // 1, 2 or 4
layout(constant_id = 7) const bool READ_AHEAD = false;
layout(constant_id = 8) const uint BLOCKS = 8;             // a multiple of BLOCKS_PER_PHASE (the host checks)

layout(push_constant) uniform Push
{
    uint64_t blocks;   // bf16 [items, BLOCKS, 64, 64]
    uint64_t result;   // f32 [items, 64, 64]
} pc;

// The phase's blocks of this item into RAW[slot] (this invocation's pieces of each).
#define FETCH_PHASE(RAW, item, phase) \
    [[unroll]] for (uint s = 0; s < 4; s++) \
        if (s < BLOCKS_PER_PHASE) { LOAD_RAW_BLOCK(RAW[s], pc.blocks, ((item) * BLOCKS + (phase) * BLOCKS_PER_PHASE + s) * 4096u, 64); }

void main()
{
    uint item = gl_WorkGroupID.x, tr = tileRow(), phases = BLOCKS / BLOCKS_PER_PHASE;
    ACC y[2];
    [[unroll]] for (uint j = 0; j < 2; j++) y[j] = ACC(0.0);
    uvec4 raw[4][RAW_PIECES], ahead[4][RAW_PIECES];
    FETCH_PHASE(raw, item, 0)
    for (uint phase = 0; phase < phases; phase++)
    {
        if (phase > 0)
        {
            if (READ_AHEAD) raw = ahead;
            else { FETCH_PHASE(raw, item, phase) }
            barrier();   // the previous phase's planes are read
        }
        PUT_RAW_BLOCK_AT(raw[0], region1, 0, ROW);
        if (BLOCKS_PER_PHASE > 1) { PUT_RAW_BLOCK_AT(raw[1], region1, PLANE, ROW); }
        if (BLOCKS_PER_PHASE > 2)
        {
            PUT_RAW_BLOCK_AT(raw[2], region2, 0, ROW);
            PUT_RAW_BLOCK_AT(raw[3], region2, PLANE, ROW);
        }
        barrier();
        if (READ_AHEAD && phase + 1 < phases) { FETCH_PHASE(ahead, item, phase + 1) }
        // Y += X X for each staged block X
        [[unroll]] for (uint j = 0; j < 2; j++)
        {
            MULTIPLY_PLANES(y[j], region1, 0, region1, 0, tr, tileColumn(j))
            if (BLOCKS_PER_PHASE > 1) { MULTIPLY_PLANES(y[j], region1, PLANE, region1, PLANE, tr, tileColumn(j)) }
            if (BLOCKS_PER_PHASE > 2)
            {
                MULTIPLY_PLANES(y[j], region2, 0, region2, 0, tr, tileColumn(j))
                MULTIPLY_PLANES(y[j], region2, PLANE, region2, PLANE, tr, tileColumn(j))
            }
        }
    }
    [[unroll]] for (uint j = 0; j < 2; j++)
        coopMatStore(y[j], F32Buffer(pc.result).v, item * 4096u + 16 * tr * 64 + 16 * tileColumn(j), 64, gl_CooperativeMatrixLayoutRowMajor);
}
