"""The tracking floor: the run model (every tag and metric name, typed records of sessions, attempts
and repairs), the store, the outage journal, the registry and the local server helper.

The only floor that imports mlflow. May import the training and domain floors.
"""
