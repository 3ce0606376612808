"""Developer tools on top of the server and the training side: the demo and the benchmarks."""
