#version 460
// R [H, G*Dh, Dh] packed per workgroup block for the per-step kernels (step_matvec.glsl): blocks of
// UNITS units per head, out[((head * blocks + block) * in4 + i4) * outs + o] =
// (W(o, 4 i4), .., W(o, 4 i4 + 3)), zero where a unit or an input index is out of range, with
//   forward  (backward = 0): o = g*UNITS + u, j = block*UNITS + u, W(o, k) = R[g*Dh + j][k], k < Dh;
//   backward (backward = 1): o = u, k = block*UNITS + u, W(o, r) = R[r][k], r < G*Dh.
// One invocation per output vec4 (writes coalesced); runs once per forward or backward call.
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"
#include "grid.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform Push
{
    F32Buffer source;
    F32x4Buffer destination;
    uint heads;
    uint dh;
    uint gates;
    uint units;
    uint backward;
} pc;

void main()
{
    uint rows = pc.gates * pc.dh, blocks = (pc.dh + pc.units - 1) / pc.units;
    uint outs = pc.backward != 0 ? pc.units : pc.gates * pc.units;
    uint inCount = pc.backward != 0 ? rows : pc.dh, in4 = (inCount + 3) / 4;
    GRID_LOOP(e, pc.heads * blocks * in4 * outs)
    {
        uint o = e % outs, i4 = (e / outs) % in4, hb = e / (outs * in4), head = hb / blocks, block = hb % blocks;
        uint u = o % pc.units, unit = block * pc.units + u;
        vec4 value = vec4(0.0);
        if (unit < pc.dh)
            for (uint q = 0; q < 4; q++)
            {
                uint i = 4 * i4 + q;
                if (i >= inCount) break;
                // forward: row g*Dh + unit, column i; backward: row i, column unit
                uint at = pc.backward != 0 ? (head * rows + i) * pc.dh + unit : (head * rows + (o / pc.units) * pc.dh + unit) * pc.dh + i;
                value[q] = pc.source.v[at];
            }
        pc.destination.v[e] = value;
    }
}
