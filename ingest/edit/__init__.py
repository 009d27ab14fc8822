"""Editing a model with a circuit: interventions (circuit and edge pruning), mask apply and bake."""
