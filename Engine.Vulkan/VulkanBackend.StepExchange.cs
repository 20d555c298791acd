namespace FastWeights.Engine.Vulkan;

// The host side of step_exchange.glsl, for kernels whose workgroups wait on each other inside one
// dispatch (the persistent per-step recurrent kernels): the zeroed exchange ring of each call and
// the fault word. A kernel sets the fault word when a wait timed out because its workgroups were
// not all resident at once, in which case the outputs are invalid. The word stays set until the host
// reads it at the next download or synchronisation (CheckExchangeFault), which then throws, naming the op.
public sealed partial class VulkanBackend
{
    private Tensor? _faultWord;
    private string? _faultOp;     // the last op that ran a waiting kernel since the last check

    /// <summary>The fault word to push to a waiting kernel of <paramref name="op"/>.</summary>
    private Tensor FaultWord(string op)
    {
        if (_faultWord is null)
        {
            _faultWord = Tensor.Empty(this, new Shape(1));
            Fill(_faultWord, 0f);
        }
        _faultOp = op;
        return _faultWord;
    }

    /// <summary>A zeroed exchange ring of <paramref name="pairs"/> (value, tag) pairs.</summary>
    private Tensor ExchangeRing(long pairs)
    {
        var ring = Tensor.Empty(this, new Shape(checked((int)(2 * pairs))));
        Fill(ring, 0f);
        return ring;
    }

    /// <summary>Throws when a waiting kernel recorded since the last check timed out (waits for the
    /// GPU). Downloads and Synchronize call it.</summary>
    private void CheckExchangeFault()
    {
        if (_faultOp is not { } op || _faultWord is null) return;
        _faultOp = null;
        var s = Own(_faultWord.Storage);
        Span<byte> word = stackalloc byte[sizeof(uint)];
        Stream.Download(s.Block.Buffer, s.Offset + _faultWord.ByteOffset, word);
        if (BitConverter.ToUInt32(word) == 0) return;
        Stream.FillBuffer(s.Block.Buffer, s.Offset + _faultWord.ByteOffset, sizeof(uint), 0);
        throw new InvalidOperationException(
            $"{op}: the persistent kernel's workgroups did not all run at once on {Capabilities.Name} (a wait between them timed out), " +
            "so the outputs of that call are invalid; set VulkanBackend.RnnPersistent = false (FASTWEIGHTS_RNN_PERSISTENT=0) to run one dispatch per step");
    }
}
