namespace FastWeights.Models.Tests;

[TestClass]
public sealed class PlaceholderUntilModelsLand
{
    [TestMethod]
    public void ModelsAssemblyLoads() => Assert.AreEqual("FastWeights.Models", typeof(FastWeights.Models.Placeholder).Assembly.GetName().Name);
}
