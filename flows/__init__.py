"""Thin Prefect flows over plm.stages: one generic stage task (flows/stages.py), the DAG walked by run_until."""
