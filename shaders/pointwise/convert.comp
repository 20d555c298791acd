#version 460
// y = x converted between f32, f16 and bf16 (round to nearest even).
// VEC4 = 1 (the host's choice when n % 4 == 0 and both tensors start 16-byte aligned): invocation
// i4 converts elements 4 i4 .. 4 i4 + 3 with one 16-byte (f32) or 8-byte (f16/bf16) load and store,
// element by element the same conversion as VEC4 = 0, which handles one element per iteration.
#extension GL_GOOGLE_include_directive : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require
#include "buffers.glsl"
#include "dtype.glsl"
#include "grid.glsl"

layout(local_size_x = 256) in;
layout(constant_id = 0) const uint SOURCE_DTYPE = 0;
layout(constant_id = 1) const uint DESTINATION_DTYPE = 0;
layout(constant_id = 2) const uint VEC4 = 0;

// Four 16-bit elements per 8-byte word pair; element 4 i4 + q is half q of the pair (low half first).
layout(buffer_reference, std430, buffer_reference_align = 8) buffer Half4Buffer { uvec2 v[]; };

layout(push_constant) uniform Push
{
    uint64_t source;
    uint64_t destination;
    uint n;
} pc;

float halfToFloat(uint bits) { return SOURCE_DTYPE == DTYPE_F16 ? f16ToFloat(bits) : bf16ToFloat(bits); }
uint floatToHalf(float value) { return DESTINATION_DTYPE == DTYPE_F16 ? floatToF16(value) : floatToBf16(value); }

vec4 load4(uint i4)
{
    if (SOURCE_DTYPE == DTYPE_F32) return F32x4Buffer(pc.source).v[i4];
    uvec2 words = Half4Buffer(pc.source).v[i4];
    return vec4(halfToFloat(words.x & 0xFFFFu), halfToFloat(words.x >> 16), halfToFloat(words.y & 0xFFFFu), halfToFloat(words.y >> 16));
}

void store4(uint i4, vec4 value)
{
    if (DESTINATION_DTYPE == DTYPE_F32) { F32x4Buffer(pc.destination).v[i4] = value; return; }
    Half4Buffer(pc.destination).v[i4] = uvec2(floatToHalf(value.x) | (floatToHalf(value.y) << 16), floatToHalf(value.z) | (floatToHalf(value.w) << 16));
}

void main()
{
    if (VEC4 != 0) { GRID_LOOP(i4, pc.n / 4) store4(i4, load4(i4)); }
    else { GRID_LOOP(i, pc.n) storeAs(pc.destination, DESTINATION_DTYPE, i, loadAs(pc.source, SOURCE_DTYPE, i)); }
}
