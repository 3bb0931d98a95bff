"""Reports and records of what the monitor saw and did."""
