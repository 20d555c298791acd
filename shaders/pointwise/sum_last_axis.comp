#version 460
// y[r] = sum_j x[r, j]: one workgroup per row; each invocation sums a strided slice, then a
// subgroup reduction and a shared-memory pass over the subgroup partials.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "buffers.glsl"

layout(local_size_x = 256) in;

layout(push_constant) uniform Push
{
    F32Buffer x;
    F32Buffer y;
    uint rows;
    uint cols;
} pc;

shared float partials[256];

void main()
{
    for (uint row = gl_WorkGroupID.x; row < pc.rows; row += gl_NumWorkGroups.x)
    {
        float sum = 0.0;
        for (uint j = gl_LocalInvocationID.x; j < pc.cols; j += gl_WorkGroupSize.x) sum += pc.x.v[row * pc.cols + j];
        sum = subgroupAdd(sum);
        if (subgroupElect()) partials[gl_SubgroupID] = sum;
        barrier();
        if (gl_LocalInvocationID.x == 0)
        {
            float total = 0.0;
            for (uint s = 0; s < gl_NumSubgroups; s++) total += partials[s];
            pc.y.v[row] = total;
        }
        barrier();
    }
}
