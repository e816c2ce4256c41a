"""The embedded default: outcall whole on 127.0.0.1 with no AWS account and no Docker.

moto in server mode is the AWS endpoint, in a child process (local/moto_server.py); every
resource, route and trigger comes from template.yaml (local/template.py reads it); the gateway,
the pumps, the simulators and the handlers run in the `python -m local` process."""
