"""Host side of onenode: container specs, the Docker seam, run_cluster and the simulated cluster."""
