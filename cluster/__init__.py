"""The cluster room: bringing things up and coordinating them. Ray (`ray_cluster.py`, `local.py` for
`ssp cluster up`, `state.py`, `env.py`), the scheduler's Redis (`redis_server.py`), the problem scheduler
(`scheduler.py` with its samplers in `samplers.py`, Lua scripts, import/export, simulation, CLI), the one metric
catalogue (`telemetry.py`), ray-job scripts (`jobs/`) and the Grafana dashboard. Imports only the ground
helpers below it."""
