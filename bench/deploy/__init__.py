"""Parts of ``make deploy-check`` (bench/deploy_check.py): the engine, image builds, the Compose stack, the
job sequence through it, the stop check, and the replay of Kubernetes container specs with ``docker run``."""
