namespace FastWeights.Models; internal static class Placeholder { }
