"""The embedded default: outcall whole on 127.0.0.1 with no AWS account and no Docker.

moto in server mode is the AWS endpoint; every resource, route and trigger comes from
template.yaml (local/template.py reads it); handlers run in this process."""
