using System.Runtime.CompilerServices;

// The tests run kernels that no public op reaches on their own, on lavapipe: chunk_decay_scale.comp,
// whose only readers (the gated state passes on fragments) need tensor cores.
[assembly: InternalsVisibleTo("Engine.Tests")]
