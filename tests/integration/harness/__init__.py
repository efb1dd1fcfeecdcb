# Harness for the real-server integration tests: a private Dovecot, the service, a webhook receiver.
