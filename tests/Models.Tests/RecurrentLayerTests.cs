using FastWeights.Engine;
using FastWeights.Engine.Cpu;
using FastWeights.Engine.Numerics;
using FastWeights.Engine.Ops;
using FastWeights.Models.Layers;

namespace FastWeights.Models.Tests;

[TestClass]
public sealed class RecurrentLayerTests
{
    private static float[] Random(int n, ulong seed, float scale = 0.5f)
    {
        var v = new float[n];
        new SeededRandom(seed).FillUniform(v, -scale, scale);
        return v;
    }

    // nn.LSTM / nn.GRU (one layer, batch_first) exactly as PyTorch's documentation writes them.
    private static double[] PyTorchEquations(RnnCell cell, float[] x, Dictionary<string, (float[] Values, int[] Shape)> sd, int batch, int steps, int input, int hidden)
    {
        double S(double v) => 1 / (1 + Math.Exp(-v));
        float[] wih = sd["weight_ih_l0"].Values, whh = sd["weight_hh_l0"].Values, bih = sd["bias_ih_l0"].Values, bhh = sd["bias_hh_l0"].Values;
        var y = new double[batch * steps * hidden];
        for (int b = 0; b < batch; b++)
        {
            var h = new double[hidden]; var c = new double[hidden];
            for (int t = 0; t < steps; t++)
            {
                double Wx(int row) { double s = bih[row]; for (int k = 0; k < input; k++) s += wih[row * input + k] * x[(b * steps + t) * input + k]; return s; }
                double Wh(int row) { double s = bhh[row]; for (int k = 0; k < hidden; k++) s += whh[row * hidden + k] * h[k]; return s; }
                var hNew = new double[hidden];
                for (int j = 0; j < hidden; j++)
                {
                    if (cell == RnnCell.Lstm)
                    {
                        double i = S(Wx(j) + Wh(j)), f = S(Wx(hidden + j) + Wh(hidden + j)), g = Math.Tanh(Wx(2 * hidden + j) + Wh(2 * hidden + j)), o = S(Wx(3 * hidden + j) + Wh(3 * hidden + j));
                        c[j] = f * c[j] + i * g;
                        hNew[j] = o * Math.Tanh(c[j]);
                    }
                    else
                    {
                        double r = S(Wx(j) + Wh(j)), z = S(Wx(hidden + j) + Wh(hidden + j));
                        double n = Math.Tanh(Wx(2 * hidden + j) + r * Wh(2 * hidden + j));
                        hNew[j] = (1 - z) * n + z * h[j];
                    }
                }
                h = hNew;
                for (int j = 0; j < hidden; j++) y[(b * steps + t) * hidden + j] = h[j];
            }
        }
        return y;
    }

    private static Dictionary<string, (float[], int[])> StateDict(RnnCell cell, int input, int hidden)
    {
        int g = cell.Gates();
        return new()
        {
            ["weight_ih_l0"] = (Random(g * hidden * input, 1), [g * hidden, input]),
            ["weight_hh_l0"] = (Random(g * hidden * hidden, 2), [g * hidden, hidden]),
            ["bias_ih_l0"] = (Random(g * hidden, 3), [g * hidden]),
            ["bias_hh_l0"] = (Random(g * hidden, 4), [g * hidden]),
        };
    }

    [TestMethod]
    [DataRow("cpu", RnnCell.Lstm)]
    [DataRow("cpu", RnnCell.Gru)]
    [DataRow("vulkan", RnnCell.Lstm)]
    [DataRow("vulkan", RnnCell.Gru)]
    public void PyTorchStateDictLoadsUnchangedAndGivesTheSameOutputs(string backendName, RnnCell cell)
    {
        IBackend backend = TestBackends.Get(backendName);
        const int batch = 3, steps = 6, input = 5, hidden = 7;
        var sd = StateDict(cell, input, hidden);
        float[] x = Random(batch * steps * input, 9, 1f);
        using var layer = new RecurrentLayer(backend, cell, input, hidden);
        layer.LoadStateDict(sd);
        using var tx = Tensor.FromArray(backend, x, new Shape(batch, steps, input));
        using var y = layer.Forward(tx);
        var expected = PyTorchEquations(cell, x, sd, batch, steps, input, hidden);
        float[] actual = y.ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.AreEqual(expected[i], actual[i], 1e-5 + 1e-5 * Math.Abs(expected[i]), $"{cell} output {i}");
    }

    [TestMethod]
    [DataRow(RnnCell.Lstm, 1)]
    [DataRow(RnnCell.Gru, 1)]
    [DataRow(RnnCell.SLstm, 2)]
    [DataRow(RnnCell.Elman, 3)]
    public void BackwardMatchesFiniteDifferences(RnnCell cell, int heads)
    {
        var cpu = CpuBackend.Shared;
        const int batch = 2, steps = 4, input = 3, hidden = 6;
        using var layer = new RecurrentLayer(cpu, cell, input, hidden, heads, seed: 5);
        float[] x = Random(batch * steps * input, 11, 1f), w = Random(batch * steps * hidden, 12, 1f);
        using var tx = Tensor.FromArray(cpu, x, new Shape(batch, steps, input));
        using var dy = Tensor.FromArray(cpu, w, new Shape(batch, steps, hidden));
        double Loss()
        {
            using var y = layer.Forward(tx);
            return y.ToArray().Select((v, i) => (double)v * w[i]).Sum();
        }
        using var y0 = layer.Forward(tx);       // the backward reads the outputs: keep them alive until then
        using var dx = layer.Backward(dy);
        // float32 forward: central differences with a step of 1e-2 on a smooth loss, loose tolerance
        foreach (var p in layer.Parameters.Append(new Parameter("x", tx)))
        {
            float[] values = p.Value.ToArray();
            float[] analytic = p.Name == "x" ? dx.ToArray() : p.Gradient!.ToArray();
            for (int i = 0; i < values.Length; i += Math.Max(1, values.Length / 7))
            {
                float keep = values[i];
                values[i] = keep + 1e-2f; p.Value.CopyFrom(values); double up = Loss();
                values[i] = keep - 1e-2f; p.Value.CopyFrom(values); double down = Loss();
                values[i] = keep; p.Value.CopyFrom(values);
                Assert.AreEqual((up - down) / 2e-2, analytic[i], 2e-3 + 2e-3 * Math.Abs(analytic[i]), $"{cell} d{p.Name}[{i}]");
            }
        }
    }

    /// <summary>The layer's backward on Vulkan (the recurrence's BPTT kernel, dR by GEMM, the input
    /// projection's gradients) gives the CPU's gradients.</summary>
    [TestMethod]
    [DataRow(RnnCell.Lstm, 1)]
    [DataRow(RnnCell.Gru, 2)]
    [DataRow(RnnCell.SLstm, 2)]
    [DataRow(RnnCell.Elman, 3)]
    public void VulkanBackwardMatchesCpu(RnnCell cell, int heads)
    {
        const int batch = 3, steps = 5, input = 4, hidden = 12;
        float[] x = Random(batch * steps * input, 21, 1f), w = Random(batch * steps * hidden, 22, 1f);
        (float[] Dx, float[][] Grads) Run(IBackend backend)
        {
            using var layer = new RecurrentLayer(backend, cell, input, hidden, heads, seed: 9);
            using var tx = Tensor.FromArray(backend, x, new Shape(batch, steps, input));
            using var dy = Tensor.FromArray(backend, w, new Shape(batch, steps, hidden));
            using var y = layer.Forward(tx);
            using var dx = layer.Backward(dy);
            return (dx.ToArray(), layer.Parameters.Select(p => p.Gradient!.ToArray()).ToArray());
        }
        var (dxCpu, gradsCpu) = Run(CpuBackend.Shared);
        var (dxVulkan, gradsVulkan) = Run(TestBackends.Vulkan());
        for (int i = 0; i < dxCpu.Length; i++) Assert.AreEqual(dxCpu[i], dxVulkan[i], 1e-5 + 1e-4 * Math.Abs(dxCpu[i]), $"{cell} dx[{i}]");
        for (int p = 0; p < gradsCpu.Length; p++)
            for (int i = 0; i < gradsCpu[p].Length; i++)
                Assert.AreEqual(gradsCpu[p][i], gradsVulkan[p][i], 1e-5 + 1e-4 * Math.Abs(gradsCpu[p][i]), $"{cell} parameter {p} [{i}]");
    }
}
