"""Analyses over finished experiments: pure functions of arrays and tables, no MLflow, no Optuna.

baselines (mean image, random candidates, held-out samples), memorisation and membership tests, trend
statistics with seeds as the unit, spatial statistics, curve steadiness and collapse, gene-space scoring,
the ResNet baseline and table 1, and the paper's claims with the report that judges them.
"""
