"""What every DP trainer shares: the privacy plan and per-customer clipping."""
