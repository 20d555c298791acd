namespace FastWeights.Bench; internal static class Placeholder { }
