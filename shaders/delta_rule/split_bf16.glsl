// Included after dtype.glsl, with GL_EXT_control_flow_attributes enabled, by the tensor-core products
// that stage f32 operands as two bf16 parts (chunk_tiles_coopmat.glsl, chunk_fragments.glsl).
// The hi and lo bf16 parts of 8 values, hi = bf16(x), lo = bf16(x - hi), packed two per uint (an f32
// operand of the split tensor-core products; x ~ hi + lo to about 2^-16 relative).
void splitBf16(float x[8], out uvec4 hi, out uvec4 lo)
{
    uint h[8], l[8];
    [[unroll]] for (uint e = 0; e < 8; e++)
    {
        h[e] = floatToBf16(x[e]);
        l[e] = floatToBf16(x[e] - bf16ToFloat(h[e]));
    }
    hi = uvec4(h[0] | (h[1] << 16), h[2] | (h[3] << 16), h[4] | (h[5] << 16), h[6] | (h[7] << 16));
    lo = uvec4(l[0] | (l[1] << 16), l[2] | (l[3] << 16), l[4] | (l[5] << 16), l[6] | (l[7] << 16));
}
