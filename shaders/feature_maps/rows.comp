#version 460
// Feature maps and L2 normalisation over the last axis, one workgroup per row (grid-stride).
//   maps:   identity, relu, elu+1 elementwise; DPFP-nu: r = [relu(x), relu(-x)] (2d values),
//           y[(j-1) 2d + i] = r_i r_{(i+j) mod 2d}, j = 1..nu
//   sum normalisation: y = p / (sum p + 1e-6), p the map's output
//   L2:     y = x / n, n = sqrt(x . x + eps)
// Backward: elementwise maps dx = f'(x) dy; DPFP dr_i = sum_j dy[(j-1)2d+i] r_{(i+j)%2d} +
// dy[(j-1)2d+(i-j)%2d] r_{(i-j)%2d}, then dx_i = dr_i [x_i > 0] - dr_{d+i} [x_i < 0];
// sum normalisation dp = (dy - (dy . y)) / s; L2 dx = (dy - y (y . dy)) / n.
// Shared memory holds r (2d) and p or dp (Dout = 2d nu) of the row: d <= MAX_D.
#extension GL_GOOGLE_include_directive : require
#extension GL_KHR_shader_subgroup_arithmetic : require
#include "buffers.glsl"

#define MAX_D 512
#define MODE_MAP 0
#define MODE_MAP_BACKWARD 1
#define MODE_L2 2
#define MODE_L2_BACKWARD 3
#define KIND_IDENTITY 0
#define KIND_RELU 1
#define KIND_ELU_PLUS_ONE 2
#define KIND_DPFP 3

layout(local_size_x = 128) in;
layout(constant_id = 0) const uint MODE = 0;
layout(constant_id = 1) const uint KIND = 0;
layout(constant_id = 2) const uint NU = 1;
layout(constant_id = 3) const uint SUM_NORMALISE = 0;

layout(push_constant) uniform Push
{
    F32Buffer x;
    F32Buffer dy;      // backward modes
    F32Buffer y;       // forward: y; backward: dx
    uint rows;
    uint d;
    float eps;
} pc;

shared float r[2 * MAX_D];
shared float p[6 * MAX_D];
shared float partials[128];

// Sum of one value per invocation over the workgroup (all invocations must call it).
float workgroupSum(float value)
{
    value = subgroupAdd(value);
    if (subgroupElect()) partials[gl_SubgroupID] = value;
    barrier();
    float total = 0.0;
    for (uint s = 0; s < gl_NumSubgroups; s++) total += partials[s];
    barrier();
    return total;
}

float mapElement(float v)
{
    if (KIND == KIND_RELU) return max(v, 0.0);
    if (KIND == KIND_ELU_PLUS_ONE) return v > 0.0 ? v + 1.0 : exp(v);
    return v;
}

float mapDerivative(float v)
{
    if (KIND == KIND_RELU) return v > 0.0 ? 1.0 : 0.0;
    if (KIND == KIND_ELU_PLUS_ONE) return v > 0.0 ? 1.0 : exp(v);
    return 1.0;
}

void main()
{
    uint d = pc.d, twoD = 2 * d;
    uint outDim = KIND == KIND_DPFP ? twoD * NU : d;
    uint inDim = (MODE == MODE_MAP || MODE == MODE_MAP_BACKWARD) ? d : d;
    for (uint row = gl_WorkGroupID.x; row < pc.rows; row += gl_NumWorkGroups.x)
    {
        uint xBase = row * inDim;
        if (MODE == MODE_L2 || MODE == MODE_L2_BACKWARD)
        {
            float sq = 0.0;
            for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x) { float v = pc.x.v[xBase + i]; sq += v * v; }
            float n = sqrt(workgroupSum(sq) + pc.eps);
            if (MODE == MODE_L2)
            {
                for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x) pc.y.v[xBase + i] = pc.x.v[xBase + i] / n;
                continue;
            }
            float ydy = 0.0;
            for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x) ydy += pc.x.v[xBase + i] / n * pc.dy.v[xBase + i];
            ydy = workgroupSum(ydy);
            for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x)
                pc.y.v[xBase + i] = (pc.dy.v[xBase + i] - pc.x.v[xBase + i] / n * ydy) / n;
            continue;
        }

        uint yBase = row * outDim;
        // p = the map's (unnormalised) output, kept in shared memory; r for DPFP.
        if (KIND == KIND_DPFP)
        {
            for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x)
            {
                float v = pc.x.v[xBase + i];
                r[i] = max(v, 0.0);
                r[d + i] = max(-v, 0.0);
            }
            barrier();
            for (uint o = gl_LocalInvocationID.x; o < outDim; o += gl_WorkGroupSize.x)
            {
                uint j = o / twoD + 1, i = o % twoD;
                p[o] = r[i] * r[(i + j) % twoD];
            }
        }
        else
            for (uint o = gl_LocalInvocationID.x; o < outDim; o += gl_WorkGroupSize.x) p[o] = mapElement(pc.x.v[xBase + o]);
        barrier();
        float s = 1.0;
        if (SUM_NORMALISE != 0)
        {
            float part = 0.0;
            for (uint o = gl_LocalInvocationID.x; o < outDim; o += gl_WorkGroupSize.x) part += p[o];
            s = workgroupSum(part) + 1e-6;
        }
        if (MODE == MODE_MAP)
        {
            for (uint o = gl_LocalInvocationID.x; o < outDim; o += gl_WorkGroupSize.x) pc.y.v[yBase + o] = p[o] / s;
            barrier();
            continue;
        }
        // Backward: dp in shared memory (overwrites p once every invocation has read what it needs).
        float dyDotY = 0.0;
        if (SUM_NORMALISE != 0)
        {
            for (uint o = gl_LocalInvocationID.x; o < outDim; o += gl_WorkGroupSize.x) dyDotY += pc.dy.v[yBase + o] * p[o] / s;
            dyDotY = workgroupSum(dyDotY);
        }
        barrier();
        for (uint o = gl_LocalInvocationID.x; o < outDim; o += gl_WorkGroupSize.x)
            p[o] = SUM_NORMALISE != 0 ? (pc.dy.v[yBase + o] - dyDotY) / s : pc.dy.v[yBase + o];
        barrier();
        if (KIND == KIND_DPFP)
        {
            for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x)
            {
                // dr for r_i (i < d) and r_{d+i}
                float drPos = 0.0, drNeg = 0.0;
                for (uint j = 1; j <= NU; j++)
                {
                    uint block = (j - 1) * twoD;
                    uint a = i, b = d + i;
                    drPos += p[block + a] * r[(a + j) % twoD] + p[block + (a + twoD - j % twoD) % twoD] * r[(a + twoD - j % twoD) % twoD];
                    drNeg += p[block + b] * r[(b + j) % twoD] + p[block + (b + twoD - j % twoD) % twoD] * r[(b + twoD - j % twoD) % twoD];
                }
                float v = pc.x.v[xBase + i];
                pc.y.v[xBase + i] = (v > 0.0 ? drPos : 0.0) - (v < 0.0 ? drNeg : 0.0);
            }
        }
        else
            for (uint i = gl_LocalInvocationID.x; i < d; i += gl_WorkGroupSize.x) pc.y.v[xBase + i] = mapDerivative(pc.x.v[xBase + i]) * p[i];
        barrier();
    }
}
