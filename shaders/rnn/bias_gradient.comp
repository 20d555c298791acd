#version 460
// Recurrent-bias gradient from the backward's per-head dq store [H, B*T, G*Dh]:
//   dbias[g*H*Dh + h*Dh + j] = sum over n < B*T of dq[h][n][g*Dh + j]
// (PyTorch's bias_hh layout: gate-major, then head). A workgroup sums 32 columns; its 8 rows of
// invocations take every 8th token each, then add their 8 partial sums in shared memory.
#extension GL_GOOGLE_include_directive : require
#include "buffers.glsl"

layout(local_size_x = 32, local_size_y = 8) in;

layout(push_constant) uniform Push
{
    F32Buffer dq;
    F32Buffer dbias;
    uint tokens;    // B*T
    uint heads;
    uint dh;
    uint gates;
} pc;

shared float partials[8][33];

void main()
{
    uint rows = pc.gates * pc.dh;
    uint column = gl_WorkGroupID.x * 32 + gl_LocalInvocationID.x;   // h*G*Dh + r
    bool valid = column < pc.heads * rows;
    uint head = valid ? column / rows : 0, r = column % rows;
    float sum = 0.0;
    if (valid)
        for (uint n = gl_LocalInvocationID.y; n < pc.tokens; n += 8) sum += pc.dq.v[(head * pc.tokens + n) * rows + r];
    partials[gl_LocalInvocationID.y][gl_LocalInvocationID.x] = sum;
    barrier();
    if (gl_LocalInvocationID.y == 0 && valid)
    {
        float total = 0.0;
        for (uint s = 0; s < 8; s++) total += partials[s][gl_LocalInvocationID.x];
        pc.dbias.v[(r / pc.dh) * pc.heads * pc.dh + head * pc.dh + r % pc.dh] = total;
    }
}
