using FastWeights.Engine.Vulkan;

namespace FastWeights.Engine.Tests;

/// <summary>How many shapes a GEMM kernel variant gets specialised pipelines for (no tensor cores
/// needed: the policy only counts; TensorCoreGemmTests runs the kernels beyond the cap).</summary>
[TestClass]
public sealed class GemmSpecialisationTests
{
    [TestMethod]
    public void EachVariantSpecialisesAtMostTheCapThenSharesItsGenericPipeline()
    {
        var backend = (VulkanBackend)TestBackends.Get("vulkan");
        int savedCap = backend.MaxSpecialisedGemmShapes;
        bool savedSpecialise = backend.SpecialiseGemmShapes;
        // Variant names of this test only, so that the counts start empty whatever ran before.
        string first = $"test/cap-{Guid.NewGuid():N}", second = $"test/cap-{Guid.NewGuid():N}";
        try
        {
            backend.SpecialiseGemmShapes = true;
            backend.MaxSpecialisedGemmShapes = 2;
            Assert.IsTrue(backend.SpecialisesShape(first, 128, 256, 64, false, false));
            Assert.IsTrue(backend.SpecialisesShape(first, 256, 256, 64, false, false));
            Assert.IsFalse(backend.SpecialisesShape(first, 384, 256, 64, false, false), "a third shape is past the cap");
            Assert.IsFalse(backend.SpecialisesShape(first, 128, 256, 64, true, false), "transposed, it is another shape");
            Assert.IsTrue(backend.SpecialisesShape(first, 128, 256, 64, false, false), "a shape specialised before keeps its pipeline");
            Assert.IsTrue(backend.SpecialisesShape(second, 384, 256, 64, false, false), "each variant counts its own shapes");
            backend.SpecialiseGemmShapes = false;
            Assert.IsFalse(backend.SpecialisesShape(first, 128, 256, 64, false, false), "specialisation off");
        }
        finally
        {
            backend.MaxSpecialisedGemmShapes = savedCap;
            backend.SpecialiseGemmShapes = savedSpecialise;
        }
    }
}
