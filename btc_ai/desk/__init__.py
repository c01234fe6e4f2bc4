"""The desk floor: what a user reads and keeps: the session report, backup and restore, chaos, fetched data.

May import every floor below it (recovery, tracking, training, domain); MLflow only through the
tracking floor's run model.
"""
