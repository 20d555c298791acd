using FastWeights.Cli;

// fastweights <command> [options]; see Usage.
return CommandLine.Run(args);
