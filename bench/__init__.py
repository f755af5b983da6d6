"""Throughput and memory benchmarks of the mailer against real servers (see bench/README.md)."""
