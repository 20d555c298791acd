namespace FastWeights.Models; public static class Placeholder { }
