"""Tooling outside the production package: simulators of the third-party APIs, synthetic worlds,
the demo and the DAG runner used by tests and benchmarks. Nothing under dags/, plugins/ or include/
imports it."""
