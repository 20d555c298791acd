// Golden outputs and gradients of PyTorch's nn.LSTM and nn.GRU (libtorch through TorchSharp-cpu: the
// same ATen kernels as PyTorch on the CPU), for tests/Models.Tests/PyTorchGoldenTests.cs.
// Usage: TorchGolden <output folder>; writes lstm.json and gru.json.
// Each file: the module's state dict as PyTorch names it, an input x [B, T, input], initial states
// h0 (and c0) [1, B, hidden], the outputs y [B, T, hidden] and final states, and, for the loss
//   L = sum(y * wy) + sum(hn * wh) (+ sum(cn * wc))
// with random weights wy, wh, wc, the gradient of L for every parameter, for x and for the initial
// states. Every value is float32 written in the shortest form that reads back to the same float.
using System.Text.Json;
using TorchSharp;
using static TorchSharp.torch;

const int batch = 3, steps = 7, input = 5, hidden = 6;
string folder = args.Length > 0 ? args[0] : ".";
Directory.CreateDirectory(folder);
torch.set_num_threads(1);
foreach (string cell in new[] { "lstm", "gru" })
{
    torch.manual_seed(cell == "lstm" ? 20261206 : 20261207);
    bool lstm = cell == "lstm";
    var x = randn(batch, steps, input).requires_grad_();
    var h0 = randn(1, batch, hidden).mul(0.5).detach().requires_grad_();
    var c0 = randn(1, batch, hidden).mul(0.5).detach().requires_grad_();
    var wy = randn(batch, steps, hidden);
    var wh = randn(1, batch, hidden);
    var wc = randn(1, batch, hidden);
    var tensors = new Dictionary<string, object>();
    Tensor y, hn, loss;
    Tensor? cn = null;
    IEnumerable<(string Name, TorchSharp.Modules.Parameter Value)> parameters;
    if (lstm)
    {
        var m = nn.LSTM(input, hidden, batchFirst: true);
        (y, hn, cn) = m.forward(x, (h0, c0));
        parameters = m.named_parameters();
    }
    else
    {
        var m = nn.GRU(input, hidden, batchFirst: true);
        (y, hn) = m.forward(x, h0);
        parameters = m.named_parameters();
    }
    loss = (y * wy).sum() + (hn * wh).sum();
    if (cn is not null) loss = loss + (cn * wc).sum();
    loss.backward();
    var named = parameters.ToList();
    foreach (var (name, p) in named) tensors[name] = Entry(p);
    tensors["x"] = Entry(x);
    tensors["h0"] = Entry(h0);
    tensors["y"] = Entry(y);
    tensors["hn"] = Entry(hn);
    tensors["wy"] = Entry(wy);
    tensors["wh"] = Entry(wh);
    if (lstm) { tensors["c0"] = Entry(c0); tensors["cn"] = Entry(cn!); tensors["wc"] = Entry(wc); }
    foreach (var (name, p) in named) tensors["grad_" + name] = Entry(p.grad!);
    tensors["grad_x"] = Entry(x.grad!);
    tensors["grad_h0"] = Entry(h0.grad!);
    if (lstm) tensors["grad_c0"] = Entry(c0.grad!);
    var file = new Dictionary<string, object>
    {
        ["source"] = $"TorchSharp-cpu 0.107.0 (libtorch {torch.__version__}), nn.{(lstm ? "LSTM" : "GRU")}({input}, {hidden}, batch_first=True), tools/torch-golden",
        ["cell"] = cell, ["batch"] = batch, ["steps"] = steps, ["input"] = input, ["hidden"] = hidden,
        ["tensors"] = tensors,
    };
    File.WriteAllText(Path.Combine(folder, cell + ".json"), JsonSerializer.Serialize(file) + "\n");
    Console.WriteLine($"{cell}: loss {loss.item<float>()}, {tensors.Count} tensors");
}

static Dictionary<string, object> Entry(Tensor t) => new()
{
    ["shape"] = t.shape.Select(d => (int)d).ToArray(),
    ["values"] = t.detach().contiguous().data<float>().ToArray(),
};
