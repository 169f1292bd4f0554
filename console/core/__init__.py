"""Settings, time, file locks and logs: what every layer uses and which imports nothing of the console."""
