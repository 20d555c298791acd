#version 460
// R^T per head for the per-step backward: out[h][k][r] = in[h][r][k], in [H, rows, cols],
// out [H, cols, rows]. One invocation per output element (writes coalesced); runs once per backward.
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"
#include "grid.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform Push
{
    F32Buffer source;
    F32Buffer destination;
    uint heads;
    uint rows;
    uint cols;
} pc;

void main()
{
    uint perHead = pc.rows * pc.cols;
    GRID_LOOP(e, pc.heads * perHead)
    {
        uint head = e / perHead, rest = e % perHead, k = rest / pc.rows, r = rest % pc.rows;
        pc.destination.v[e] = pc.source.v[head * perHead + r * pc.cols + k];
    }
}
