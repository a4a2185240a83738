"""Small shared utilities: logging, settings, durations, task supervision, clocks, retries."""
