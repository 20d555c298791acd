// Buffer references: every kernel reaches its tensors through device addresses passed in the
// push-constant block (no descriptor sets). One reference type per element type.
#extension GL_EXT_buffer_reference : require
#extension GL_EXT_buffer_reference2 : require
#extension GL_EXT_shader_explicit_arithmetic_types_int16 : require
#extension GL_EXT_shader_16bit_storage : require
#extension GL_EXT_shader_explicit_arithmetic_types_int64 : require

layout(buffer_reference, std430, buffer_reference_align = 4) buffer F32Buffer { float v[]; };
layout(buffer_reference, std430, buffer_reference_align = 16) buffer F32x4Buffer { vec4 v[]; };
// f16 and bf16 are read and written as raw 16-bit words and converted by hand, so the portable
// kernels need only 16-bit storage, not 16-bit arithmetic.
layout(buffer_reference, std430, buffer_reference_align = 2) buffer U16Buffer { uint16_t v[]; };
// Raw 16-byte words (8 bf16 or f16, or 4 f32): tensors read and written a vector at a time, from
// tensors that start at a multiple of 16 bytes.
layout(buffer_reference, std430, buffer_reference_align = 16) buffer Words4Buffer { uvec4 v[]; };
