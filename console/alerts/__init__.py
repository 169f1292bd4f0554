"""Alerts: rules over the stored runs, incidents, and their notifications on channels."""
