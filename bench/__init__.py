"""Benchmarks (`make bench`); each module's `run()` measures one thing and writes bench/results/<name>.json."""

# What every benchmark process runs with: fake AWS credentials (moto), no X-Ray, no metrics output.
ENVIRONMENT = {
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_DEFAULT_REGION": "us-east-1",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "WARNING",
}
