"""Thin Prefect flows over plm.stages."""
