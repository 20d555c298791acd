namespace FastWeights.Engine;

/// <summary>Process-wide switches.</summary>
public static class EngineOptions
{
    /// <summary>When on, ops also check the values of their inputs (NaN/Inf, beta in (0, 2), alpha in
    /// (0, 1]) and throw <see cref="OpArgumentException"/> on violation. Costs a download per checked
    /// tensor, so it is off by default; <c>FASTWEIGHTS_CHECK=1</c> turns it on.</summary>
    public static bool CheckValues { get; set; } = Environment.GetEnvironmentVariable("FASTWEIGHTS_CHECK") == "1";
}
