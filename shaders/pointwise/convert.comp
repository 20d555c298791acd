#version 460
// y = x converted between f32, f16 and bf16 (round to nearest even).
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#include "buffers.glsl"
#include "dtype.glsl"
#include "grid.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint SOURCE_DTYPE = 0;
layout(constant_id = 1) const uint DESTINATION_DTYPE = 0;

layout(push_constant) uniform Push
{
    uint64_t source;
    uint64_t destination;
    uint n;
} pc;

void main()
{
    GRID_LOOP(i, pc.n) storeAs(pc.destination, DESTINATION_DTYPE, i, loadAs(pc.source, SOURCE_DTYPE, i));
}
