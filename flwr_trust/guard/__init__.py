"""The guard's server-side core: reply screening, integrity audit and gate policies."""
