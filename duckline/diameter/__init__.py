"""Diameter: the Gy credit-control server that network elements ask for quota. python-diameter's
messages and dictionary encode and decode (`codec`), `peers` runs the connections on asyncio,
`server` routes credit control to `usage.quota`, `gy` translates its messages."""
