using System.Text.Json;
using FastWeights.Engine;
using FastWeights.Engine.Ops;
using FastWeights.Models.Layers;

namespace FastWeights.Models.Tests;

/// <summary>PyTorch's own numbers, not our reading of its documentation: Golden/{lstm,gru}.json hold a
/// state dict of nn.LSTM / nn.GRU (one layer, batch_first), an input, non-zero initial states, the
/// module's outputs and final states, and the gradients of L = sum(y wy) + sum(hn wh) (+ sum(cn wc))
/// for every parameter, the input and the initial states, all computed by libtorch (TorchSharp-cpu,
/// tools/torch-golden.sh). The state dict loads into a RecurrentLayer unchanged, and the layer must
/// reproduce every one of those tensors in f32 (|ours - PyTorch| &lt;= 1e-5 (1 + |PyTorch|)).</summary>
[TestClass]
public sealed class PyTorchGoldenTests
{
    private const double Tolerance = 1e-5;

    private sealed record Golden(RnnCell Cell, int Batch, int Steps, int Input, int Hidden, Dictionary<string, (float[] Values, int[] Shape)> Tensors)
    {
        public float[] this[string name] => Tensors.TryGetValue(name, out var t) ? t.Values : throw new KeyNotFoundException($"golden file of {Cell} has no '{name}'");
    }

    private static Golden Load(string cell)
    {
        string path = Path.Combine(AppContext.BaseDirectory, "Golden", cell + ".json");
        using var json = JsonDocument.Parse(File.ReadAllText(path));
        var root = json.RootElement;
        var tensors = new Dictionary<string, (float[], int[])>();
        foreach (var t in root.GetProperty("tensors").EnumerateObject())
            tensors[t.Name] = (t.Value.GetProperty("values").EnumerateArray().Select(v => v.GetSingle()).ToArray(),
                               t.Value.GetProperty("shape").EnumerateArray().Select(v => v.GetInt32()).ToArray());
        return new Golden(cell == "lstm" ? RnnCell.Lstm : RnnCell.Gru, root.GetProperty("batch").GetInt32(), root.GetProperty("steps").GetInt32(),
            root.GetProperty("input").GetInt32(), root.GetProperty("hidden").GetInt32(), tensors);
    }

    private static void AssertMatches(float[] expected, float[] actual, string what)
    {
        Assert.AreEqual(expected.Length, actual.Length, $"{what}: element count");
        for (int i = 0; i < expected.Length; i++)
            Assert.IsTrue(Math.Abs(expected[i] - actual[i]) <= Tolerance * (1 + Math.Abs(expected[i])),
                $"{what}[{i}]: PyTorch {expected[i]:R}, ours {actual[i]:R}");
    }

    [TestMethod]
    [DataRow("cpu", "lstm")]
    [DataRow("cpu", "gru")]
    [DataRow("vulkan", "lstm")]
    [DataRow("vulkan", "gru")]
    public void LayerReproducesPyTorchOutputsAndGradients(string backendName, string cell)
    {
        var g = Load(cell);
        IBackend backend = TestBackends.Get(backendName);
        var stateDict = new[] { "weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0" }.ToDictionary(n => n, n => g.Tensors[n]);
        using var layer = new RecurrentLayer(backend, g.Cell, g.Input, g.Hidden);
        layer.LoadStateDict(stateDict);

        // PyTorch's states are [layers = 1, B, hidden]: the same elements in the same order as ours, [B, hidden].
        bool lstm = g.Cell == RnnCell.Lstm;
        var stateShape = new Shape(g.Batch, g.Hidden);
        string[] states = lstm ? ["h", "c"] : ["h"];
        using var x = Tensor.FromArray(backend, g["x"], new Shape(g.Batch, g.Steps, g.Input));
        var initial = states.Select(s => Tensor.FromArray(backend, g[s + "0"], stateShape)).ToList();
        var final = states.Select(_ => Tensor.Empty(backend, stateShape)).ToList();
        var dFinal = states.Select(s => Tensor.FromArray(backend, g["w" + s], stateShape)).ToList();
        var dInitial = states.Select(_ => Tensor.Empty(backend, stateShape)).ToList();
        using var dy = Tensor.FromArray(backend, g["wy"], new Shape(g.Batch, g.Steps, g.Hidden));
        try
        {
            using var y = layer.Forward(x, initial.Cast<Tensor?>().ToList(), final.Cast<Tensor?>().ToList());
            AssertMatches(g["y"], y.ToArray(), $"{cell} y");
            for (int i = 0; i < states.Length; i++) AssertMatches(g[states[i] + "n"], final[i].ToArray(), $"{cell} {states[i]}n");

            using var dx = layer.Backward(dy, dFinal.Cast<Tensor?>().ToList(), dInitial.Cast<Tensor?>().ToList());
            foreach (var p in layer.Parameters) AssertMatches(g["grad_" + p.Name], p.Gradient!.ToArray(), $"{cell} grad {p.Name}");
            AssertMatches(g["grad_x"], dx.ToArray(), $"{cell} grad x");
            for (int i = 0; i < states.Length; i++) AssertMatches(g["grad_" + states[i] + "0"], dInitial[i].ToArray(), $"{cell} grad {states[i]}0");
        }
        finally
        {
            foreach (var t in initial.Concat(final).Concat(dFinal).Concat(dInitial)) t.Dispose();
        }
    }

    /// <summary>State gradients of the wrong shape are refused by the recurrence's backward, with the
    /// op, the argument and both shapes in the message.</summary>
    [TestMethod]
    public void BackwardRejectsStateGradientsOfTheWrongShape()
    {
        var g = Load("lstm");
        IBackend backend = TestBackends.Get("cpu");
        using var layer = new RecurrentLayer(backend, g.Cell, g.Input, g.Hidden);
        using var x = Tensor.FromArray(backend, g["x"], new Shape(g.Batch, g.Steps, g.Input));
        using var dy = Tensor.FromArray(backend, g["wy"], new Shape(g.Batch, g.Steps, g.Hidden));
        using var wrong = Tensor.Empty(backend, new Shape(g.Batch + 1, g.Hidden));
        using var y = layer.Forward(x);
        var e = Assert.ThrowsExactly<OpArgumentException>(() => layer.Backward(dy, dInitialStates: [null, wrong]));
        StringAssert.Contains(e.Message, "LstmBackward");
        StringAssert.Contains(e.Message, "dInitialStates[1]");
        StringAssert.Contains(e.Message, $"[{g.Batch + 1}, {g.Hidden}]");
        StringAssert.Contains(e.Message, $"[{g.Batch}, {g.Hidden}]");
    }
}
