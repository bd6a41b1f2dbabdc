"""The SIP server's configuration: Kamailio, rendered from deploy/kamailio/ and Duckline's settings."""
