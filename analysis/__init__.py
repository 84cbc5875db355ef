"""Analysis-level quantities computed from reconstructed events (gamma/hadron discrimination, ...)."""
