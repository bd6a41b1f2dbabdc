"""Diameter: the Gy credit-control server that network elements ask for quota (python-diameter
does the protocol; `gy` translates its messages to and from `usage.quota`)."""
